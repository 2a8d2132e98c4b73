"""The job store: SQLite in the data folder, so a restarted server or worker loses nothing.

Every SQL statement of the gateway lives in this module (jobs, uploads, audit, accounts,
sessions, tokens), so moving the store to another database is a change here only. Patient
fields (a job's request, an upload's file name) are sealed with AES-GCM (sealing.py): no
patient name or ID is readable in the SQLite files."""

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

from vid2dcm.apps.gateway.models import (
    AuditEntry,
    DeliveryResult,
    ExportResult,
    ExportState,
    FailureKind,
    JobRequest,
    JobResult,
    JobState,
)
from vid2dcm.apps.gateway.sealing import Sealer, load_key
from vid2dcm.apps.gateway.settings import ServiceSettings

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
    owner TEXT NOT NULL DEFAULT '', ward TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS users (
    name TEXT PRIMARY KEY, role TEXT NOT NULL, password_hash TEXT NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0, created REAL NOT NULL, ward TEXT NOT NULL DEFAULT '');
CREATE TABLE IF NOT EXISTS sessions (
    digest TEXT PRIMARY KEY, user TEXT NOT NULL, created REAL NOT NULL, seen REAL NOT NULL);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY, sha256 TEXT UNIQUE NOT NULL, name TEXT NOT NULL, role TEXT NOT NULL,
    scopes TEXT NOT NULL, expires REAL, revoked INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS outbox (
    job TEXT NOT NULL, destination TEXT NOT NULL, state TEXT NOT NULL, attempts INTEGER NOT NULL,
    first_try REAL NOT NULL, next_try REAL NOT NULL, error TEXT, receipts TEXT,
    PRIMARY KEY (job, destination));
CREATE TABLE IF NOT EXISTS sign_ons (
    state TEXT PRIMARY KEY, nonce TEXT NOT NULL, verifier TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS login_failures (at REAL NOT NULL, user TEXT NOT NULL,
    client TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS exports (
    id TEXT PRIMARY KEY, job TEXT NOT NULL, profile TEXT NOT NULL, destination TEXT NOT NULL,
    who TEXT NOT NULL, state TEXT NOT NULL, created REAL NOT NULL, finished REAL, error TEXT,
    result TEXT);
"""
ADDED_COLUMNS = {"uploads": ("owner TEXT NOT NULL DEFAULT ''",),
                 "audit": ("role TEXT NOT NULL DEFAULT ''", "client TEXT NOT NULL DEFAULT ''"),
                 "jobs": ("failure_kind TEXT", "owner TEXT NOT NULL DEFAULT ''",
                          "ward TEXT NOT NULL DEFAULT ''"),
                 "users": ("ward TEXT NOT NULL DEFAULT ''",)}
"""Columns newer than the first release, added to a data folder made by an older one."""
STATES: tuple[JobState, ...] = ("queued", "running", "waiting", "held", "done", "failed",
                                "cancelled")


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
    ward: str


@dataclass(frozen=True)
class Upload:
    id: str
    name: str
    path: Path
    size: int
    problem: str | None
    owner: str


@dataclass(frozen=True)
class Parcel:
    """One job's delivery to one destination, kept until it is stored there or the retry
    window has passed: the durable outbox."""

    job: str
    destination: str
    state: str
    """waiting, sent or gave up"""
    attempts: int
    first_try: float
    next_try: float
    error: str | None
    receipts: tuple[DeliveryResult, ...]


@dataclass(frozen=True)
class Export:
    """A de-identified copy of a job's instances on its way to the research destination; its
    delivery is a parcel in the same outbox as a job's (keyed by the export id)."""

    id: str
    job: str
    profile: str
    destination: str
    who: str
    state: ExportState
    created: float
    finished: float | None
    error: str | None
    result: ExportResult | None


@dataclass(frozen=True)
class User:
    name: str
    role: str
    password_hash: str
    disabled: bool
    ward: str


@dataclass(frozen=True)
class TokenRecord:
    id: str
    name: str
    role: str
    scopes: tuple[str, ...]
    expires: float | None
    revoked: bool


def open_store(settings: ServiceSettings) -> Store:
    """The store of these settings, with its sealing key (made on first start)."""
    settings.prepare()
    key = load_key(settings.key_file, create=settings.store_key_file is None)
    return Store(settings.database, Sealer(key))


class Store:
    def __init__(self, path: Path, sealer: Sealer | None = None) -> None:
        """`sealer` may be left out only by code that never reads or writes patient fields
        (state changes in tests)."""
        self.path = path
        self._sealer = sealer
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
                       (upload_id, self._sealing().seal(name, upload_id), str(path), size,
                        time.time(), problem, owner))
        return upload_id

    def upload(self, upload_id: str) -> Upload | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        if row is None:
            return None
        return Upload(row["id"], self._sealing().open(row["name"], row["id"]), Path(row["path"]),
                      row["size"], row["problem"], row["owner"])

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

    def finished_jobs(self, before: float) -> list[str]:
        """Jobs done (stored everywhere) before this time."""
        with self._db() as db:
            rows = db.execute("SELECT id FROM jobs WHERE status='done' AND finished < ?",
                              (before,)).fetchall()
        return [str(r["id"]) for r in rows]

    def forget_upload(self, upload_id: str) -> None:
        with self._db() as db:
            db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    def used_bytes(self) -> int:
        with self._db() as db:
            row = db.execute("SELECT COALESCE(SUM(size), 0) AS total FROM uploads").fetchone()
        return int(row["total"])

    # -- jobs ------------------------------------------------------------------------------

    def add_job(self, request: JobRequest, owner: str = "", ward: str = "") -> str:
        job_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, upload_id, status, progress, request, created, "
                       "owner, ward) VALUES (?, ?, 'queued', 0, ?, ?, ?, ?)",
                       (job_id, request.upload_id, self._seal(request, job_id), time.time(),
                        owner, ward))
        return job_id

    def job(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return self._job(row) if row else None

    def jobs(self, limit: int = 100, owner: str | None = None, ward: str = "") -> list[Job]:
        """The newest jobs; when `owner` is given, only those they created or (with a ward)
        that were created on their ward."""
        with self._db() as db:
            if owner is None:
                rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?",
                                  (limit,)).fetchall()
            else:
                rows = db.execute("SELECT * FROM jobs WHERE owner = ? OR (? != '' AND ward = ?)"
                                  " ORDER BY created DESC LIMIT ?",
                                  (owner, ward, ward, limit)).fetchall()
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

    def await_delivery(self, job_id: str, result: JobResult, destinations: tuple[str, ...]
                       ) -> None:
        """Converted: the job waits for its destinations, each a parcel in the outbox (a
        re-run keeps parcels already sent: they are not sent twice)."""
        now = time.time()
        with self._db() as db:
            db.execute("UPDATE jobs SET status='waiting', progress=1, result=?, error=NULL, "
                       "failure_kind=NULL WHERE id=? AND status='running'",
                       (result.model_dump_json(), job_id))
            db.execute("DELETE FROM outbox WHERE job=? AND state != 'sent'", (job_id,))
            db.executemany("INSERT OR IGNORE INTO outbox VALUES (?, ?, 'waiting', 0, ?, ?, "
                           "NULL, NULL)", [(job_id, d, now, now) for d in destinations])

    def parcels(self, job_id: str) -> list[Parcel]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM outbox WHERE job=? ORDER BY destination",
                              (job_id,)).fetchall()
        return [_parcel(r) for r in rows]

    def add_parcels(self, job_id: str, destinations: tuple[str, ...]) -> None:
        """Parcels for a job in any state (results notices after storage, issue 15); one of
        the same name left by an earlier run of the job starts again from nothing."""
        now = time.time()
        with self._db() as db:
            db.executemany("INSERT INTO outbox VALUES (?, ?, 'waiting', 0, ?, ?, NULL, NULL) "
                           "ON CONFLICT(job, destination) DO UPDATE SET state='waiting', "
                           "attempts=0, first_try=excluded.first_try, "
                           "next_try=excluded.next_try, error=NULL, receipts=NULL",
                           [(job_id, d, now, now) for d in destinations])

    def due_notices(self, now: float, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
        """Due parcels named "kind:..." of jobs that are done or failed (their notices)."""
        marks = ",".join("?" * len(kinds))
        with self._db() as db:
            rows = db.execute("SELECT o.job, o.destination FROM outbox o JOIN jobs j ON "
                              "j.id = o.job WHERE j.status IN ('done', 'failed') AND "
                              "o.state='waiting' AND o.next_try <= ? AND substr(o.destination,"
                              f" 1, instr(o.destination, ':')) IN ({marks})",
                              (now, *kinds)).fetchall()
        return [(r["job"], r["destination"]) for r in rows]

    def due_parcels(self, now: float) -> list[tuple[str, str]]:
        with self._db() as db:
            rows = db.execute("SELECT o.job, o.destination FROM outbox o JOIN jobs j ON "
                              "j.id = o.job WHERE j.status='waiting' AND o.state='waiting' "
                              "AND o.next_try <= ?", (now,)).fetchall()
        return [(r["job"], r["destination"]) for r in rows]

    def take_parcel(self, job_id: str, destination: str, lease_s: float) -> bool:
        """Claim a due parcel for one delivery attempt (no other worker takes it for
        lease_s); False if it is not due, or another worker has it."""
        now = time.time()
        with self._db() as db:
            return db.execute("UPDATE outbox SET next_try=? WHERE job=? AND destination=? AND "
                              "state='waiting' AND next_try <= ?",
                              (now + lease_s, job_id, destination, now)).rowcount == 1

    def parcel_tried(self, job_id: str, destination: str, state: str,
                     receipts: tuple[DeliveryResult, ...], error: str | None,
                     next_try: float) -> None:
        with self._db() as db:
            db.execute("UPDATE outbox SET state=?, attempts=attempts+1, next_try=?, error=?, "
                       "receipts=? WHERE job=? AND destination=?",
                       (state, next_try, error,
                        json.dumps([r.model_dump(mode="json") for r in receipts]), job_id,
                        destination))

    def settle(self, job_id: str, result: JobResult, error: str | None,
               kind: FailureKind | None) -> bool:
        """A waiting job ends: done (every parcel sent) or failed."""
        with self._db() as db:
            return db.execute("UPDATE jobs SET status=?, result=?, error=?, failure_kind=?, "
                              "finished=? WHERE id=? AND status='waiting'",
                              ("failed" if error else "done", result.model_dump_json(), error,
                               kind, time.time(), job_id)).rowcount == 1

    # -- de-identified exports (issue 16) ------------------------------------------------------

    def add_export(self, job_id: str, profile: str, destination: str, who: str) -> str:
        export_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO exports VALUES (?, ?, ?, ?, ?, 'preparing', ?, NULL, NULL, "
                       "NULL)", (export_id, job_id, profile, destination, who, time.time()))
        return export_id

    def export(self, export_id: str) -> Export | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM exports WHERE id=?", (export_id,)).fetchone()
        return _export(row) if row else None

    def exports(self, job_id: str | None = None, state: str | None = None) -> list[Export]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM exports WHERE (? IS NULL OR job=?) AND "
                              "(? IS NULL OR state=?) ORDER BY created",
                              (job_id, job_id, state, state)).fetchall()
        return [_export(r) for r in rows]

    def export_prepared(self, export_id: str, result: ExportResult) -> bool:
        """De-identified: the copy waits in the outbox for its destination. False if the
        export is no longer being prepared."""
        now = time.time()
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")  # the state and its parcel together, or neither
            row = db.execute("UPDATE exports SET state='sending', result=? WHERE id=? AND "
                             "state='preparing' RETURNING destination",
                             (result.model_dump_json(), export_id)).fetchone()
            if row is not None:
                db.execute("INSERT OR IGNORE INTO outbox VALUES (?, ?, 'waiting', 0, ?, ?, "
                           "NULL, NULL)", (export_id, row["destination"], now, now))
            db.execute("COMMIT")
        return row is not None

    def export_finished(self, export_id: str, error: str | None) -> bool:
        """Sent (error None) or failed; only once."""
        with self._db() as db:
            return db.execute("UPDATE exports SET state=?, error=?, finished=? WHERE id=? AND "
                              "state IN ('preparing', 'sending')",
                              ("failed" if error else "sent", error, time.time(),
                               export_id)).rowcount == 1

    def due_export_parcels(self, now: float) -> list[str]:
        with self._db() as db:
            rows = db.execute("SELECT o.job FROM outbox o JOIN exports e ON e.id = o.job "
                              "WHERE e.state='sending' AND o.state='waiting' AND "
                              "o.next_try <= ?", (now,)).fetchall()
        return [r["job"] for r in rows]

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
                                "WHERE id=? AND status='held'",
                                (self._seal(request, job_id), job_id))
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

    def put_user(self, name: str, role: str, password_hash: str, ward: str = "") -> None:
        with self._db() as db:
            db.execute("INSERT INTO users (name, role, password_hash, disabled, created, ward) "
                       "VALUES (?, ?, ?, 0, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                       "role=excluded.role, password_hash=excluded.password_hash, disabled=0, "
                       "ward=excluded.ward", (name, role, password_hash, time.time(), ward))

    def user(self, name: str) -> User | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return User(row["name"], row["role"], row["password_hash"],
                    bool(row["disabled"]), row["ward"]) if row else None

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

    def add_sign_on(self, state: str, nonce: str, verifier: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO sign_ons VALUES (?, ?, ?, ?)",
                       (state, nonce, verifier, time.time()))

    def take_sign_on(self, state: str, within_s: float) -> tuple[str, str] | None:
        """(nonce, PKCE verifier) of a pending sign-on, once; None if unknown or too old."""
        with self._db() as db:
            row = db.execute("SELECT * FROM sign_ons WHERE state=?", (state,)).fetchone()
            db.execute("DELETE FROM sign_ons WHERE state=? OR created < ?",
                       (state, time.time() - within_s))
        if row is None or row["created"] < time.time() - within_s:
            return None
        return str(row["nonce"]), str(row["verifier"])

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

    def _sealing(self) -> Sealer:
        if self._sealer is None:
            raise RuntimeError("this Store was opened without its key (use open_store)")
        return self._sealer

    def _seal(self, request: JobRequest, job_id: str) -> str:
        return self._sealing().seal(request.model_dump_json(exclude_unset=True), job_id)

    def _job(self, row: sqlite3.Row) -> Job:
        request = JobRequest.model_validate_json(self._sealing().open(row["request"], row["id"]))
        return Job(row["id"], row["upload_id"], row["status"], row["progress"], request,
                   JobResult.model_validate_json(row["result"]) if row["result"] else None,
                   row["error"], row["failure_kind"], row["created"], row["started"],
                   row["finished"], row["attempts"], row["owner"], row["ward"])


def _export(row: sqlite3.Row) -> Export:
    return Export(row["id"], row["job"], row["profile"], row["destination"], row["who"],
                  row["state"], row["created"], row["finished"], row["error"],
                  ExportResult.model_validate_json(row["result"]) if row["result"] else None)


def _parcel(row: sqlite3.Row) -> Parcel:
    receipts = [DeliveryResult.model_validate(r) for r in json.loads(row["receipts"] or "[]")]
    return Parcel(row["job"], row["destination"], row["state"], row["attempts"],
                  row["first_try"], row["next_try"], row["error"], tuple(receipts))


def _token(row: sqlite3.Row) -> TokenRecord:
    scopes: list[str] = json.loads(row["scopes"])
    return TokenRecord(row["id"], row["name"], row["role"], tuple(scopes), row["expires"],
                       bool(row["revoked"]))

