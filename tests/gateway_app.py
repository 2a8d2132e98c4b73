"""The gateway in-process for tests: `create_app(settings)` under Starlette's TestClient with
a real huey queue in immediate mode (a job is converted inside the request that creates it, by
the same code a worker runs), four accounts and a tiny clip."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi.testclient import TestClient

from dcmtk_peers import free_port
from vid2dcm.apps.gateway.api import create_app
from vid2dcm.apps.gateway.auth import add_user
from vid2dcm.apps.gateway.queue import make_queue
from vid2dcm.apps.gateway.settings import ServiceSettings, TokenEntry, hash_token
from vid2dcm.apps.gateway.store import Store, open_store
from vid2dcm.producing.synth import ClipSpec, synthesize

PASSWORD = "correct horse battery"
TOKEN = "machine-token-from-service-toml"


@dataclass
class Gateway:
    settings: ServiceSettings
    client: TestClient
    clip: Path

    def person(self, name: str) -> TestClient:
        """A second browser: its own cookie jar, signed in as `name`."""
        other = TestClient(self.client.app)
        assert other.post("/auth/login", json={"username": name,
                                               "password": PASSWORD}).status_code == 200
        return other

    def upload(self, who: TestClient) -> str:
        answer = who.put("/uploads/clip.mp4", content=self.clip.read_bytes())
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])


ACCOUNTS = (("nurse", "uploader"), ("nurse2", "uploader"), ("doc", "reviewer"), ("it", "admin"))
_TEMPLATE: dict[str, Path] = {}


def _accounts_once() -> Path:
    """A data folder with the four accounts, made once per test session (argon2 hashing is
    slow on purpose) and copied into each test's folder."""
    if "data" not in _TEMPLATE:
        folder = Path(tempfile.mkdtemp(prefix="vid2dcm-accounts-")) / "data"
        settings = ServiceSettings(data_dir=folder)
        for name, role in ACCOUNTS:
            add_user(settings, name, role, PASSWORD)
        _TEMPLATE["data"] = folder
    return _TEMPLATE["data"]


@contextmanager
def in_process_gateway(tmp_path: Path, **overrides: object) -> Iterator[Gateway]:
    destinations = tmp_path / "destinations.toml"
    destinations.write_text(f'[destinations.pacs]\nae_title = "NOBODY"\nhost = "127.0.0.1"\n'
                            f"port = {free_port()}\nretries = 1\n")
    settings = ServiceSettings(data_dir=tmp_path / "data", destinations_file=destinations,
                               default_destinations=("pacs",), session_idle_s=60,
                               session_max_s=3600,
                               tokens=(TokenEntry(sha256=hash_token(TOKEN), role="uploader",
                                                  name="recorder"),),
                               **overrides)  # type: ignore[arg-type]
    shutil.copytree(_accounts_once(), settings.data_dir)
    if settings.database_url:  # the accounts move to that database (hashes as they are)
        template = Store(settings.database)
        shared = open_store(settings)
        for name, _role in ACCOUNTS:
            user = template.user(name)
            assert user is not None
            shared.put_user(user.name, user.role, user.password_hash, user.ward)
    queue = make_queue(settings)
    queue.huey.immediate = True
    clip = synthesize(tmp_path / "clip.mp4", ClipSpec(
        width=64, height=48, frames=10, options={"preset": "superfast", "profile": "high"}))
    with TestClient(create_app(settings, queue)) as client:
        yield Gateway(settings, client, clip)
