"""The job store: SQLite in the data folder, so a restarted server or worker loses nothing.

Every SQL statement of the gateway lives in this module (jobs, uploads, audit, accounts,
sessions, tokens), so moving the store to another database is a change here only."""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from vid2dcm.apps.gateway.models import AuditEntry, FailureKind, JobRequest, JobResult, JobState

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, problem TEXT, owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, job TEXT, upload TEXT,
    study TEXT, role TEXT NOT NULL DEFAULT '', client TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, upload_id TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL,
    request TEXT NOT NULL, result TEXT, error TEXT, created REAL NOT NULL, started REAL,
    finished REAL, attempts INTEGER NOT NULL DEFAULT 0, failure_kind TEXT,
    owner TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    scopes TEXT NOT NULL, expires REAL, revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS login_failures (at REAL NOT NULL, user TEXT NOT NULL,
    client TEXT NOT NULL);
"""
ADDED_COLUMNS = {"uploads": ("owner TEXT NOT NULL DEFAULT ''",),
                 "audit": ("role TEXT NOT NULL DEFAULT ''", "client TEXT NOT NULL DEFAULT ''"),
                 "jobs": ("failure_kind TEXT", "owner TEXT NOT NULL DEFAULT ''")}
"""Columns newer than the first release, added to a data folder made by an older one."""
STATES: tuple[JobState, ...] = ("queued", "running", "held", "done", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    upload_id: str
    status: JobState
    progress: float
    request: JobRequest
    result: JobResult | None
    error: str | None
    failure_kind: FailureKind | None
    created: float
    started: float | None
    finished: float | None
    attempts: int
    owner: str


@dataclass(frozen=True)
class Upload:
    id: str
    name: str
    path: Path
    size: int
    problem: str | None
    owner: str


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    disabled: bool


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: str
    scopes: tuple[str, ...]
    expires: float | None
    revoked: bool


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self._db() as db:
            db.executescript(SCHEMA)
            for table, columns in ADDED_COLUMNS.items():
                have = {row["name"] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in columns:
                    if column.split()[0] not in have:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column}")
        for suffix in ("", "-wal", "-shm"):
            sibling = Path(str(path) + suffix)
            if sibling.exists():
                os.chmod(sibling, 0o600)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        old = os.umask(0o077)
        try:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        finally:
            os.umask(old)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    # -- uploads ---------------------------------------------------------------------------

    def add_upload(self, name: str, path: Path, size: int, upload_id: str | None = None,
                   problem: str | None = None, owner: str = "") -> str:
        upload_id = upload_id or uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO uploads (id, name, path, size, created, problem, owner) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (upload_id, name, str(path), size, time.time(), problem, owner))
        return upload_id

    def upload(self, upload_id: str) -> Upload | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return Upload(row["id"], row["name"], Path(row["path"]), row["size"], row["problem"],
                      row["owner"]) if row else None

    def removable_uploads(self, older_than: float) -> list[tuple[str, Path]]:
        """Uploads whose every job has succeeded, or that are broken, and that are old enough;
        an upload with a queued, running, held or failed job is kept (it may be retried)."""
        with self._db() as db:
            rows = db.execute(
                "SELECT u.id, u.path FROM uploads u WHERE u.created < ? AND ("
                " u.problem IS NOT NULL OR ("
                "  EXISTS (SELECT 1 FROM jobs j WHERE j.upload_id = u.id) AND"
                "  NOT EXISTS (SELECT 1 FROM jobs j WHERE j.upload_id = u.id"
                "              AND j.status != 'done')))", (older_than,)).fetchall()
        return [(row["id"], Path(row["path"])) for row in rows]

    def forget_upload(self, upload_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def used_bytes(self) -> int:
        with self._db() as db:
            row = db.execute("SELECT COALESCE(SUM(size), 0) AS total FROM uploads").fetchone()
        return int(row["total"])

    # -- jobs ------------------------------------------------------------------------------

    def add_job(self, request: JobRequest, owner: str = "") -> str:
        job_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, upload_id, status, progress, request, created, "
                       "owner) VALUES (?, ?, 'queued', 0, ?, ?, ?)",
                       (job_id, request.upload_id, self._seal(request), time.time(), owner))
        return job_id

    def job(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def jobs(self, limit: int = 100, owner: str | None = None) -> list[Job]:
        """The newest jobs; only those `owner` created when given."""
        with self._db() as db:
            if owner is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?",
                                  (limit,)).fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs WHERE owner = ? ORDER BY created DESC "
                                  "LIMIT ?", (owner, limit)).fetchall()
        return [self._job(r) for r in rows]

    def claim(self, job_id: str) -> bool:
        """Mark a queued (or interrupted running) job as running; False if it is finished."""
        with self._db() as db:
            cursor = db.execute(
                "UPDATE jobs SET status='running', started=?, attempts=attempts+1, progress=0 "
                "WHERE id=? AND status IN ('queued', 'running')", (time.time(), job_id))
            return cursor.rowcount == 1

    def progress(self, job_id: str, fraction: float) -> None:
        with self._db() as db:
            db.execute("UPDATE jobs SET progress=? WHERE id=? AND status='running'",
                       (round(fraction, 3), job_id))

    def finish(self, job_id: str, result: JobResult | None, error: str | None = None,
               kind: FailureKind | None = None, held: bool = False) -> None:
        """Record a job's end: failed (error and kind), held (converted, waiting for its
        patient) or done."""
        status = "failed" if error else "held" if held else "done"
        with self._db() as db:
            db.execute("UPDATE jobs SET status=?, progress=?, result=?, error=?, "
                       "failure_kind=?, finished=? WHERE id=? AND status='running'",
                       (status, 0.0 if error else 1.0,
                        result.model_dump_json() if result is not None else None, error,
                        kind if error else None, time.time(), job_id))

    def set_status(self, job_id: str, status: JobState, allowed_from: tuple[str, ...]) -> bool:
        marks = ",".join("?" * len(allowed_from))
        with self._db() as db:
            cursor = db.execute(f"UPDATE jobs SET status=?, error=NULL, failure_kind=NULL "
                                f"WHERE id=? AND status IN ({marks})",
                                (status, job_id, *allowed_from))
            return cursor.rowcount == 1

    def reissue(self, job_id: str, request: JobRequest) -> bool:
        """A held job gets its patient: the new request replaces the old, and the job is queued
        to be converted again (new identity, new UIDs)."""
        with self._db() as db:
            cursor = db.execute("UPDATE jobs SET status='queued', request=?, result=NULL, "
                                "error=NULL, failure_kind=NULL, progress=0 "
                                "WHERE id=? AND status='held'", (self._seal(request), job_id))
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        found = {row["status"]: int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in STATES}

    def failure_kinds(self) -> dict[str, int]:
        """Failed jobs by kind (stored from the exception class when the job failed)."""
        with self._db() as db:
            rows = db.execute("SELECT COALESCE(failure_kind, 'internal') AS kind, COUNT(*) AS n "
                              "FROM jobs WHERE status='failed' GROUP BY kind").fetchall()
        return {row["kind"]: int(row["n"]) for row in rows}

    def finished_durations(self) -> list[float]:
        with self._db() as db:
            rows = db.execute("SELECT finished - started AS d FROM jobs WHERE status IN "
                              "('done', 'failed', 'held') AND started IS NOT NULL").fetchall()
        return [float(r["d"]) for r in rows if r["d"] is not None]

    # -- audit -----------------------------------------------------------------------------

    def audit(self, who: str, action: str, job: str | None = None, upload: str | None = None,
              study: str | None = None, role: str = "", client: str = "") -> None:
        """Who (and in which role, from which address) did what to which job, upload and
        study, and when: identifiers only, no patient data."""
        with self._db() as db:
            db.execute("INSERT INTO audit (at, who, action, job, upload, study, role, client) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (time.time(), who, action, job, upload, study, role, client))

    def audit_log(self, limit: int = 1000) -> list[AuditEntry]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM audit ORDER BY at DESC LIMIT ?",
                              (limit,)).fetchall()
        return [AuditEntry.model_validate(dict(row)) for row in rows]

    # -- people and machines ---------------------------------------------------------------

    def put_user(self, name: str, role: str, password_hash: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO users (name, role, password_hash, disabled, created) "
                       "VALUES (?, ?, ?, 0, ?) ON CONFLICT(name) DO UPDATE SET role=excluded.role,"
                       " password_hash=excluded.password_hash, disabled=0",
                       (name, role, password_hash, time.time()))

    def user(self, name: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return User(row["name"], row["role"], row["password_hash"],
                    bool(row["disabled"])) if row else None

    def disable_user(self, name: str) -> bool:
        with self._db() as db:
            changed = db.execute("UPDATE users SET disabled=1 WHERE name=?", (name,)).rowcount
            db.execute("DELETE FROM sessions WHERE user=?", (name,))
        return changed == 1

    def add_session(self, digest: str, user: str) -> None:
        now = time.time()
        with self._db() as db:
            db.execute("INSERT INTO sessions VALUES (?, ?, ?, ?)", (digest, user, now, now))

    def touch_session(self, digest: str, idle_s: float, max_s: float) -> str | None:
        """The session's user if it is still alive (seen within idle_s, younger than max_s);
        its last-seen time moves to now. A dead session is removed."""
        now = time.time()
        with self._db() as db:
            row = db.execute("SELECT * FROM sessions WHERE digest=?", (digest,)).fetchone()
            if row is None:
                return None
            if now - row["seen"] > idle_s or now - row["created"] > max_s:
                db.execute("DELETE FROM sessions WHERE digest=?", (digest,))
                return None
            db.execute("UPDATE sessions SET seen=? WHERE digest=?", (now, digest))
        return str(row["user"])

    def end_session(self, digest: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM sessions WHERE digest=?", (digest,))

    def login_failed(self, user: str, client: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO login_failures VALUES (?, ?, ?)", (time.time(), user, client))
            db.execute("DELETE FROM login_failures WHERE at < ?", (time.time() - 3600,))

    def recent_failures(self, user: str, client: str, within_s: float) -> tuple[int, float]:
        """Failed sign-ins within the window for this user or this client, and the time of
        the oldest of them (when the window frees up)."""
        with self._db() as db:
            row = db.execute("SELECT COUNT(*) AS n, MIN(at) AS first FROM login_failures "
                             "WHERE at >= ? AND (user = ? OR client = ?)",
                             (time.time() - within_s, user, client)).fetchone()
        return int(row["n"]), float(row["first"] or 0.0)

    def add_token(self, sha256: str, name: str, role: str, scopes: tuple[str, ...],
                  expires: float | None) -> str:
        token_id = uuid.uuid4().hex[:12]
        with self._db() as db:
            db.execute("INSERT INTO tokens (id, sha256, name, role, scopes, expires, created) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?)",
                       (token_id, sha256, name, role, json.dumps(list(scopes)), expires,
                        time.time()))
        return token_id

    def token(self, sha256: str) -> TokenRecord | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM tokens WHERE sha256=?", (sha256,)).fetchone()
        return _token(row) if row else None

    def tokens(self) -> list[TokenRecord]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM tokens ORDER BY created").fetchall()
        return [_token(r) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._db() as db:
            return db.execute("UPDATE tokens SET revoked=1 WHERE id=?",
                              (token_id,)).rowcount == 1

    # -- rows <-> records ------------------------------------------------------------------

    def _seal(self, request: JobRequest) -> str:
        return request.model_dump_json(exclude_unset=True)

    def _open(self, raw: str) -> JobRequest:
        return JobRequest.model_validate_json(raw)

    def _job(self, row: sqlite3.Row) -> Job:
        return Job(row["id"], row["upload_id"], row["status"], row["progress"],
                   self._open(row["request"]),
                   JobResult.model_validate_json(row["result"]) if row["result"] else None,
                   row["error"], row["failure_kind"], row["created"], row["started"],
                   row["finished"], row["attempts"], row["owner"])


def _token(row: sqlite3.Row) -> TokenRecord:
    scopes: list[str] = json.loads(row["scopes"])
    return TokenRecord(row["id"], row["name"], row["role"], tuple(scopes), row["expires"],
                       bool(row["revoked"]))

