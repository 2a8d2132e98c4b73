"""A real OpenID Connect provider on loopback: npm oidc-provider (tests/browser), started and
stopped by PID."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from dcmtk_peers import free_port, stop, wait_listening

SCRIPT = Path(__file__).parent / "browser" / "oidc-provider.mjs"
CLIENT_SECRET = "test-client-secret"


@contextmanager
def running_oidc_provider(redirect_uri: str, log: Path) -> Iterator[str]:
    """The issuer URL of a provider that accepts `redirect_uri` for client vid2dcm."""
    if not (SCRIPT.parent / "node_modules" / "oidc-provider").is_dir():
        pytest.fail("npm packages missing: run make setup (npm ci in tests/browser)")
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen([shutil.which("node") or "node", str(SCRIPT), str(port),
                                 redirect_uri], stdout=out, stderr=out, start_new_session=True)
        try:
            wait_listening(port, proc, seconds=30)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop(proc)
