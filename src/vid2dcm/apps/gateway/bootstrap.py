"""A first start on embedded defaults (what `make run` does): a data folder with service.toml,
an admin token for scripts (admin-token.txt) and an `admin` account for the staff page
(admin-password.txt), both files 0600 and shown once on the console."""

from __future__ import annotations

import secrets
from pathlib import Path

from vid2dcm.apps.gateway.auth import add_user
from vid2dcm.apps.gateway.settings import hash_token, load_settings


def embedded_defaults(data: Path) -> tuple[str, str]:
    """(admin token, admin password) of this data folder, made on its first start; text in
    parentheses when they were set up some other way."""
    data.mkdir(parents=True, exist_ok=True)
    config = data / "service.toml"
    token_file, password_file = data / "admin-token.txt", data / "admin-password.txt"
    if not config.exists():
        token = secrets.token_urlsafe(32)
        _private(token_file, token)
        config.write_text(f'[service]\ntokens = [{{ sha256 = "{hash_token(token)}", '
                          'role = "admin", name = "make run" }]\n')
        password = secrets.token_urlsafe(12)
        add_user(load_settings(data), "admin", "admin", password)
        _private(password_file, password)
    token = token_file.read_text().strip() if token_file.exists() else "(see service.toml)"
    password = (password_file.read_text().strip() if password_file.exists()
                else "(set with vid2dcm user add)")
    return token, password


def _private(path: Path, text: str) -> None:
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(text + "\n")
