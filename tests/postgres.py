"""A real PostgreSQL for the tests: Debian's server binaries on loopback, a cluster made by
initdb in a temporary folder, started and stopped by PID; one empty database per test.

initdb and postgres refuse to run as root, so as root they run as the `postgres` system user
(made by the Debian package) through setpriv, which execs in place: the PID we hold is the
server's own.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from dcmtk_peers import free_port

BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def _tool(name: str) -> str:
    for folder in BIN_DIRS:
        if (folder / name).exists():
            return str(folder / name)
    found = shutil.which(name)
    if not found:
        pytest.fail(f"PostgreSQL's {name} is missing: scripts/install-system-deps installs "
                    "Debian postgresql")
    return found


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(f"host=127.0.0.1 port={self.port} user={self.user} "
                             "dbname=postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_server_user(argv: list[str]) -> tuple[list[str], str]:
    if os.geteuid() != 0:
        return argv, pwd.getpwuid(os.geteuid()).pw_name
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv], \
        "postgres"


@contextmanager
def running_postgres() -> Iterator[Postgres]:
    folder = Path(tempfile.mkdtemp(prefix="vid2dcm-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "cluster"
    argv, user = _as_server_user([_tool("initdb"), "-D", str(data), "-A", "trust", "-U",
                                  "postgres" if os.geteuid() == 0 else
                                  pwd.getpwuid(os.geteuid()).pw_name, "--no-sync",
                                  "-E", "UTF8", "--locale=C"])
    made = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    assert made.returncode == 0, made.stderr
    port = free_port()
    argv, _ = _as_server_user([_tool("postgres"), "-D", str(data), "-k", str(folder),
                               "-h", "127.0.0.1", "-p", str(port), "-F",
                               "-c", "max_connections=200"])
    log = (folder / "server.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            ready = subprocess.run([_tool("pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                                   capture_output=True, check=False)
            if ready.returncode == 0:
                break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("PostgreSQL did not start: "
                                   + (folder / "server.log").read_text(errors="replace"))
            time.sleep(0.1)
        yield Postgres(port, user)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # fast shutdown: ends sessions, stops cleanly
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Postgres]:
    """One server for the session (initdb takes a few seconds); each test makes its own
    database with new_database()."""
    with running_postgres() as server:
        yield server
