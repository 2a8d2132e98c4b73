"""The job store: SQLite in the data folder by default, PostgreSQL when several machines share
the work (settings.database_url, VID2DCM_DATABASE_URL=postgresql+psycopg://...), so a restarted
server or worker loses nothing.

Every SQL statement of the gateway lives in this module (jobs, uploads, audit, accounts,
sessions, tokens), written with SQLAlchemy Core so one code path serves both databases. The
schema is made and changed by the Alembic migrations in migrations/, applied when a process
first opens the store (several processes starting at once: one migrates, the others wait).
Patient fields (a job's request, an upload's file name) are sealed with AES-GCM (sealing.py):
no patient name or ID is readable in the database. Upload paths are kept relative to the data
folder, so machines that mount the shared folder at different paths agree on them."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Float,
    Integer,
    MetaData,
    RowMapping,
    Table,
    Text,
    and_,
    case,
    create_engine,
    delete,
    event,
    exists,
    func,
    insert,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import NullPool

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

REVISIONS = ("0001", "0002", "0003", "0004", "0005")
"""The schema revisions this release knows (migrations/versions), oldest first: a store at
the last one needs no migration; one at a revision not listed was made by a newer release."""
HEAD_REVISION = REVISIONS[-1]

metadata = MetaData()
"""Today's tables as the migrations leave them (the queries are written against these)."""
uploads_t = Table(
    "uploads", metadata, Column("id", Text, primary_key=True), Column("name", Text),
    Column("path", Text), Column("size", Integer), Column("created", Float),
    Column("problem", Text), Column("owner", Text))
audit_t = Table(
    "audit", metadata, Column("at", Float), Column("who", Text), Column("action", Text),
    Column("job", Text), Column("upload", Text), Column("study", Text), Column("role", Text),
    Column("client", Text))
jobs_t = Table(
    "jobs", metadata, Column("id", Text, primary_key=True), Column("upload_id", Text),
    Column("status", Text), Column("progress", Float), Column("request", Text),
    Column("result", Text), Column("error", Text), Column("created", Float),
    Column("started", Float), Column("finished", Float), Column("attempts", Integer),
    Column("failure_kind", Text), Column("owner", Text), Column("ward", Text),
    Column("worker", Text), Column("lease_until", Float), Column("recoveries", Integer))
users_t = Table(
    "users", metadata, Column("name", Text, primary_key=True), Column("role", Text),
    Column("password_hash", Text), Column("disabled", Integer), Column("created", Float),
    Column("ward", Text))
sessions_t = Table(
    "sessions", metadata, Column("digest", Text, primary_key=True), Column("user", Text),
    Column("created", Float), Column("seen", Float))
tokens_t = Table(
    "tokens", metadata, Column("id", Text, primary_key=True), Column("sha256", Text),
    Column("name", Text), Column("role", Text), Column("scopes", Text),
    Column("expires", Float), Column("revoked", Integer), Column("created", Float))
outbox_t = Table(
    "outbox", metadata, Column("job", Text, primary_key=True),
    Column("destination", Text, primary_key=True), Column("state", Text),
    Column("attempts", Integer), Column("first_try", Float), Column("next_try", Float),
    Column("error", Text), Column("receipts", Text))
sign_ons_t = Table(
    "sign_ons", metadata, Column("state", Text, primary_key=True), Column("nonce", Text),
    Column("verifier", Text), Column("created", Float))
login_failures_t = Table(
    "login_failures", metadata, Column("at", Float), Column("user", Text),
    Column("client", Text))
exports_t = Table(
    "exports", metadata, Column("id", Text, primary_key=True), Column("job", Text),
    Column("profile", Text), Column("destination", Text), Column("who", Text),
    Column("state", Text), Column("created", Float), Column("finished", Float),
    Column("error", Text), Column("result", Text))

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
    worker: str | None = None
    """Who runs it (host:pid:nonce) while running, and until when its lease holds."""
    lease_until: float | None = None
    recoveries: int = 0
    """How often it was taken over from a worker that died (the attempt limit counts these)."""


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
    return Store(settings.database_url or settings.database, Sealer(key),
                 data_dir=settings.data_dir)


LOST_WORKER = ("its worker stopped without finishing {n} times (its lease expired): not run "
               "again automatically; retry it once the cause is known")
"""The reason given to a job whose re-run worker died too (the attempt limit was reached)."""

_ENGINES: dict[tuple[int, str], Engine] = {}
_MIGRATED: set[tuple[int, str]] = set()
_ENGINES_LOCK = threading.Lock()


def engine_for(url: str) -> Engine:
    """One engine (and for PostgreSQL one connection pool) per database per process: a pool
    inherited through fork() is never reused (the key holds the process id).

    SQLite: a connection per use (as before SQLAlchemy), WAL journal, 30 s busy timeout,
    autocommit (each statement its own transaction). Statement parameters are kept out of
    error messages (hide_parameters), so no sealed or plain value reaches a log."""
    key = (os.getpid(), url)
    with _ENGINES_LOCK:
        if key in _ENGINES:
            return _ENGINES[key]
        engine: Engine
        if url.startswith("sqlite"):
            engine = create_engine(url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                   connect_args={"timeout": 30}, hide_parameters=True)

            @event.listens_for(engine, "connect")
            def _wal(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA busy_timeout=30000")
                _journal_wal(cursor)
                cursor.close()
        else:
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10,
                                   hide_parameters=True, connect_args={"connect_timeout": 10})
        _ENGINES[key] = engine
        return engine


def _journal_wal(cursor: Any, within_s: float = 30.0) -> None:
    """Put a SQLite database in WAL mode (persistent: once set, later connections only read it).
    Switching the journal mode needs the database to itself; when waiting could deadlock
    (this connection holds a read lock while another process waits to commit, e.g. two
    workers starting together while one migrates) SQLite answers "database is locked" at once
    without calling its busy handler (seen once in CI). The failed statement drops its lock, so
    waiting a moment and retrying, within the 30 s a busy statement would wait, resolves it."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            mode = cursor.execute("PRAGMA journal_mode").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def schema_revision(engine: Engine) -> str | None:
    """The Alembic revision the database is at; None for an empty database or one made
    before migrations existed."""
    with engine.connect() as db:
        if not db.dialect.has_table(db, "alembic_version"):
            return None
        row = db.execute(text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row else None


def migrate(engine: Engine, data_dir: Path | None, lock_file: Path | None = None) -> None:
    """Bring the database to this release's schema (the migrations in migrations/versions).

    Two processes starting at once must not both migrate: PostgreSQL takes a transaction-level
    advisory lock (the whole upgrade is one transaction there, DDL included; the second process
    finds the work done), SQLite an exclusive lock on a file beside the database (one machine
    only, as SQLite itself). The upgrade is skipped without importing Alembic when the store
    is already at the newest revision."""
    if schema_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    config.attributes["data_dir"] = data_dir
    if engine.dialect.name == "postgresql":
        with engine.begin() as db:
            db.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
            config.attributes["connection"] = db
            command.upgrade(config, "head")
        return
    import fcntl

    assert lock_file is not None
    with open(lock_file, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with engine.begin() as db:
                config.attributes["connection"] = db
                command.upgrade(config, "head")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


MIGRATION_LOCK = 0x76696432
"""The PostgreSQL advisory lock key migrations hold ("vid2" in ASCII)."""


class Store:
    def __init__(self, where: Path | str, sealer: Sealer | None = None,
                 data_dir: Path | None = None) -> None:
        """`where`: the SQLite file, or a SQLAlchemy URL (postgresql+psycopg://...).
        `data_dir`: the folder upload paths are relative to (default: the SQLite file's
        folder). `sealer` may be left out only by code that never reads or writes patient
        fields (state changes in tests)."""
        if isinstance(where, Path):
            self.path: Path | None = where
            url = f"sqlite:///{where}"
            data_dir = data_dir or where.parent
        else:
            url = where
            self.path = Path(where.removeprefix("sqlite:///")) \
                if where.startswith("sqlite:///") else None
            if data_dir is None:
                raise ValueError("a Store on a database URL needs data_dir")
        self.data_dir = Path(os.path.abspath(data_dir))
        self._sealer = sealer
        self._engine = engine_for(url)
        key = (os.getpid(), url)
        if key not in _MIGRATED:
            if self.path is not None and not self.path.exists():
                old = os.umask(0o077)
                try:
                    self.path.touch(mode=0o600)
                finally:
                    os.umask(old)
            migrate(self._engine, self.data_dir,
                    self.path.with_name(self.path.name + ".lock") if self.path else None)
            _MIGRATED.add(key)
        if self.path is not None:
            for suffix in ("", "-wal", "-shm", ".lock"):
                sibling = Path(str(self.path) + suffix)
                if sibling.exists():
                    os.chmod(sibling, 0o600)

    @contextmanager
    def _db(self) -> Iterator[Connection]:
        with self._engine.begin() as db:
            yield db

    def _insert(self, table: Table) -> Any:
        """INSERT with the dialect's ON CONFLICT clauses available."""
        if self._engine.dialect.name == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)

    def _relative(self, path: Path) -> str:
        """An upload's path as stored: relative to the data folder when inside it."""
        full = Path(os.path.abspath(path))
        try:
            return full.relative_to(self.data_dir).as_posix()
        except ValueError:
            return str(full)

    def _absolute(self, stored: str) -> Path:
        path = Path(stored)
        return path if path.is_absolute() else self.data_dir / path

    # -- uploads ---------------------------------------------------------------------------

    def add_upload(self, name: str, path: Path, size: int, upload_id: str | None = None,
                   problem: str | None = None, owner: str = "") -> str:
        upload_id = upload_id or uuid.uuid4().hex
        with self._db() as db:
            db.execute(insert(uploads_t).values(
                id=upload_id, name=self._sealing().seal(name, upload_id),
                path=self._relative(path), size=size, created=time.time(), problem=problem,
                owner=owner))
        return upload_id

    def upload(self, upload_id: str) -> Upload | None:
        with self._db() as db:
            row = db.execute(select(uploads_t).where(uploads_t.c.id == upload_id)).first()
        if row is None:
            return None
        r = row._mapping
        return Upload(r["id"], self._sealing().open(r["name"], r["id"]),
                      self._absolute(r["path"]), r["size"], r["problem"], r["owner"])

    def removable_uploads(self, older_than: float) -> list[tuple[str, Path]]:
        """Uploads whose every job has succeeded, or that are broken, and that are old enough;
        an upload with a queued, running, held or failed job is kept (it may be retried)."""
        u, j = uploads_t, jobs_t
        any_job = exists().where(j.c.upload_id == u.c.id)
        unfinished = exists().where(and_(j.c.upload_id == u.c.id, j.c.status != "done"))
        with self._db() as db:
            rows = db.execute(select(u.c.id, u.c.path).where(
                u.c.created < older_than,
                or_(u.c.problem.is_not(None), and_(any_job, ~unfinished)))).all()
        return [(str(r[0]), self._absolute(r[1])) for r in rows]

    def finished_jobs(self, before: float) -> list[str]:
        """Jobs done (stored everywhere) before this time."""
        with self._db() as db:
            rows = db.execute(select(jobs_t.c.id).where(jobs_t.c.status == "done",
                                                        jobs_t.c.finished < before)).all()
        return [str(r[0]) for r in rows]

    def forget_upload(self, upload_id: str) -> None:
        with self._db() as db:
            db.execute(delete(uploads_t).where(uploads_t.c.id == upload_id))

    def used_bytes(self) -> int:
        with self._db() as db:
            total = db.execute(select(func.coalesce(func.sum(uploads_t.c.size), 0))).scalar()
        return int(total or 0)

    # -- jobs ------------------------------------------------------------------------------

    def add_job(self, request: JobRequest, owner: str = "", ward: str = "") -> str:
        job_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute(insert(jobs_t).values(
                id=job_id, upload_id=request.upload_id, status="queued", progress=0.0,
                request=self._seal(request, job_id), created=time.time(), attempts=0,
                owner=owner, ward=ward, recoveries=0))
        return job_id

    def job(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute(select(jobs_t).where(jobs_t.c.id == job_id)).first()
        return self._job(row._mapping) if row else None

    def jobs(self, limit: int = 100, owner: str | None = None, ward: str = "") -> list[Job]:
        """The newest jobs; when `owner` is given, only those they created or (with a ward)
        that were created on their ward."""
        query = select(jobs_t).order_by(jobs_t.c.created.desc()).limit(limit)
        if owner is not None:
            query = query.where(or_(jobs_t.c.owner == owner, jobs_t.c.ward == ward)
                                if ward else jobs_t.c.owner == owner)
        with self._db() as db:
            rows = db.execute(query).all()
        return [self._job(r._mapping) for r in rows]

    def claim(self, job_id: str, worker: str = "", lease_s: float = 60.0,
              recoveries: int = 1) -> bool:
        """Take a job to run it, atomically (one UPDATE): a queued job, or a running one whose
        worker's lease has expired (the worker died) and that has been taken over fewer than
        `recoveries` times. A running job whose lease is alive belongs to a live worker and is
        never taken (False); so is a finished one. A job whose worker died once more than
        allowed is failed here with a plain reason instead of being run again."""
        now = time.time()
        j = jobs_t
        expired = and_(j.c.status == "running",
                       or_(j.c.lease_until.is_(None), j.c.lease_until < now))
        with self._db() as db:
            taken = db.execute(update(j).where(
                j.c.id == job_id,
                or_(j.c.status == "queued", and_(expired, j.c.recoveries < recoveries))
            ).values(status="running", started=now, attempts=j.c.attempts + 1, progress=0.0,
                     worker=worker, lease_until=now + lease_s,
                     recoveries=case((j.c.status == "queued", 0),
                                     else_=j.c.recoveries + 1))).rowcount == 1
            if not taken:
                db.execute(update(j).where(j.c.id == job_id, expired,
                                           j.c.recoveries >= recoveries).values(
                    status="failed", progress=0.0, finished=now, failure_kind="internal",
                    error=LOST_WORKER.format(n=recoveries + 1), lease_until=None))
        return taken

    def renew(self, job_id: str, worker: str | None, lease_s: float) -> bool:
        """The worker running this job is alive: its lease runs lease_s from now. False once
        the job is no longer running under this worker (finished, or taken over). worker None:
        whoever holds it (the chunk tasks and the join of a job split over the workers)."""
        mine = jobs_t.c.worker == worker if worker is not None else true()
        with self._db() as db:
            return db.execute(update(jobs_t).where(
                jobs_t.c.id == job_id, jobs_t.c.status == "running", mine).values(
                lease_until=time.time() + lease_s)).rowcount == 1

    def expired_jobs(self, now: float | None = None) -> list[str]:
        """Running jobs whose worker's lease has expired (the worker died or was cut off)."""
        now = time.time() if now is None else now
        with self._db() as db:
            rows = db.execute(select(jobs_t.c.id).where(
                jobs_t.c.status == "running",
                or_(jobs_t.c.lease_until.is_(None), jobs_t.c.lease_until < now))).all()
        return [str(r[0]) for r in rows]

    def progress(self, job_id: str, fraction: float) -> None:
        with self._db() as db:
            db.execute(update(jobs_t).where(jobs_t.c.id == job_id,
                                            jobs_t.c.status == "running")
                       .values(progress=round(fraction, 3)))

    def finish(self, job_id: str, result: JobResult | None, error: str | None = None,
               kind: FailureKind | None = None, held: bool = False) -> None:
        """Record a job's end: failed (error and kind), held (converted, waiting for its
        patient) or done."""
        status = "failed" if error else "held" if held else "done"
        with self._db() as db:
            db.execute(update(jobs_t).where(jobs_t.c.id == job_id,
                                            jobs_t.c.status == "running").values(
                status=status, progress=0.0 if error else 1.0,
                result=result.model_dump_json() if result is not None else None, error=error,
                failure_kind=kind if error else None, finished=time.time(),
                lease_until=None))

    def await_delivery(self, job_id: str, result: JobResult, destinations: tuple[str, ...],
                       keep: tuple[str, ...] = ()) -> None:
        """Converted: the job waits for its destinations, each a parcel in the outbox (a
        re-run keeps parcels already sent: they are not sent twice). Unsent parcels whose
        name starts with one of `keep` (notices such as a recording's waiting N-SET) are left
        as they are, attempts and retry window included."""
        now = time.time()
        with self._db() as db:
            db.execute(update(jobs_t).where(jobs_t.c.id == job_id,
                                            jobs_t.c.status == "running").values(
                status="waiting", progress=1.0, result=result.model_dump_json(), error=None,
                failure_kind=None, lease_until=None))
            db.execute(delete(outbox_t).where(
                outbox_t.c.job == job_id, outbox_t.c.state != "sent",
                *(outbox_t.c.destination.not_like(f"{k}%") for k in keep)))
            if destinations:
                db.execute(self._insert(outbox_t).on_conflict_do_nothing(), [
                    {"job": job_id, "destination": d, "state": "waiting", "attempts": 0,
                     "first_try": now, "next_try": now, "error": None, "receipts": None}
                    for d in destinations])

    def parcels(self, job_id: str) -> list[Parcel]:
        with self._db() as db:
            rows = db.execute(select(outbox_t).where(outbox_t.c.job == job_id)
                              .order_by(outbox_t.c.destination)).all()
        return [_parcel(r._mapping) for r in rows]

    def add_parcels(self, job_id: str, destinations: tuple[str, ...]) -> None:
        """Parcels for a job in any state (results notices after storage, issue 15); one of
        the same name left by an earlier run of the job starts again from nothing."""
        if not destinations:
            return
        now = time.time()
        statement = self._insert(outbox_t)
        with self._db() as db:
            db.execute(statement.on_conflict_do_update(
                index_elements=["job", "destination"],
                set_={"state": "waiting", "attempts": 0,
                      "first_try": statement.excluded.first_try,
                      "next_try": statement.excluded.next_try, "error": None,
                      "receipts": None}),
                [{"job": job_id, "destination": d, "state": "waiting", "attempts": 0,
                  "first_try": now, "next_try": now, "error": None, "receipts": None}
                 for d in destinations])

    def due_notices(self, now: float, kinds: tuple[str, ...]) -> list[tuple[str, str]]:
        """Due parcels named "kind:..." of jobs that are done or failed (their notices); each
        kind ends with its one colon ("hl7:")."""
        o, j = outbox_t, jobs_t
        with self._db() as db:
            rows = db.execute(select(o.c.job, o.c.destination).join(j, j.c.id == o.c.job)
                              .where(j.c.status.in_(("done", "failed")),
                                     o.c.state == "waiting", o.c.next_try <= now)).all()
        return [(str(r[0]), str(r[1])) for r in rows
                if str(r[1])[:str(r[1]).find(":") + 1] in kinds]

    def due_parcels(self, now: float) -> list[tuple[str, str]]:
        o, j = outbox_t, jobs_t
        with self._db() as db:
            rows = db.execute(select(o.c.job, o.c.destination).join(j, j.c.id == o.c.job)
                              .where(j.c.status == "waiting", o.c.state == "waiting",
                                     o.c.next_try <= now)).all()
        return [(str(r[0]), str(r[1])) for r in rows]

    def oldest_waiting_parcel(self) -> float | None:
        """When the oldest parcel not yet delivered was first tried (None: outbox empty)."""
        o, j = outbox_t, jobs_t
        with self._db() as db:
            first = db.execute(select(func.min(o.c.first_try)).join(j, j.c.id == o.c.job)
                               .where(j.c.status == "waiting", o.c.state == "waiting")
                               ).scalar()
        return float(first) if first is not None else None

    def take_parcel(self, job_id: str, destination: str, lease_s: float) -> bool:
        """Claim a due parcel for one delivery attempt (no other worker takes it for
        lease_s); False if it is not due, or another worker has it."""
        now = time.time()
        o = outbox_t
        with self._db() as db:
            return db.execute(update(o).where(
                o.c.job == job_id, o.c.destination == destination, o.c.state == "waiting",
                o.c.next_try <= now).values(next_try=now + lease_s)).rowcount == 1

    def parcel_tried(self, job_id: str, destination: str, state: str,
                     receipts: tuple[DeliveryResult, ...], error: str | None,
                     next_try: float) -> None:
        o = outbox_t
        with self._db() as db:
            db.execute(update(o).where(o.c.job == job_id, o.c.destination == destination)
                       .values(state=state, attempts=o.c.attempts + 1, next_try=next_try,
                               error=error, receipts=json.dumps(
                                   [r.model_dump(mode="json") for r in receipts])))

    def settle(self, job_id: str, result: JobResult, error: str | None,
               kind: FailureKind | None) -> bool:
        """A waiting job ends: done (every parcel sent) or failed."""
        with self._db() as db:
            return db.execute(update(jobs_t).where(
                jobs_t.c.id == job_id, jobs_t.c.status == "waiting").values(
                status="failed" if error else "done", result=result.model_dump_json(),
                error=error, failure_kind=kind, finished=time.time())).rowcount == 1

    # -- de-identified exports (issue 16) ------------------------------------------------------

    def add_export(self, job_id: str, profile: str, destination: str, who: str) -> str:
        export_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute(insert(exports_t).values(
                id=export_id, job=job_id, profile=profile, destination=destination, who=who,
                state="preparing", created=time.time(), finished=None, error=None,
                result=None))
        return export_id

    def export(self, export_id: str) -> Export | None:
        with self._db() as db:
            row = db.execute(select(exports_t).where(exports_t.c.id == export_id)).first()
        return _export(row._mapping) if row else None

    def exports(self, job_id: str | None = None, state: str | None = None) -> list[Export]:
        query = select(exports_t).order_by(exports_t.c.created)
        if job_id is not None:
            query = query.where(exports_t.c.job == job_id)
        if state is not None:
            query = query.where(exports_t.c.state == state)
        with self._db() as db:
            rows = db.execute(query).all()
        return [_export(r._mapping) for r in rows]

    def export_prepared(self, export_id: str, result: ExportResult) -> bool:
        """De-identified: the copy waits in the outbox for its destination. False if the
        export is no longer being prepared. The state and its parcel change together, or
        neither (one transaction; on SQLite, whose connections here autocommit, an explicit
        BEGIN IMMEDIATE)."""
        now = time.time()
        e = exports_t
        explicit = self._engine.dialect.name == "sqlite"
        with self._db() as db:
            if explicit:
                db.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                row = db.execute(update(e).where(e.c.id == export_id, e.c.state == "preparing")
                                 .values(state="sending", result=result.model_dump_json())
                                 .returning(e.c.destination)).first()
                if row is not None:
                    db.execute(self._insert(outbox_t).on_conflict_do_nothing().values(
                        job=export_id, destination=row[0], state="waiting", attempts=0,
                        first_try=now, next_try=now, error=None, receipts=None))
            except BaseException:
                if explicit:
                    db.exec_driver_sql("ROLLBACK")
                raise
            if explicit:
                db.exec_driver_sql("COMMIT")
        return row is not None

    def export_finished(self, export_id: str, error: str | None) -> bool:
        """Sent (error None) or failed; only once."""
        e = exports_t
        with self._db() as db:
            return db.execute(update(e).where(
                e.c.id == export_id, e.c.state.in_(("preparing", "sending"))).values(
                state="failed" if error else "sent", error=error,
                finished=time.time())).rowcount == 1

    def due_export_parcels(self, now: float) -> list[str]:
        o, e = outbox_t, exports_t
        with self._db() as db:
            rows = db.execute(select(o.c.job).join(e, e.c.id == o.c.job).where(
                e.c.state == "sending", o.c.state == "waiting", o.c.next_try <= now)).all()
        return [str(r[0]) for r in rows]

    def set_status(self, job_id: str, status: JobState, allowed_from: tuple[str, ...]) -> bool:
        with self._db() as db:
            return db.execute(update(jobs_t).where(
                jobs_t.c.id == job_id, jobs_t.c.status.in_(allowed_from)).values(
                status=status, error=None, failure_kind=None)).rowcount == 1

    def reissue(self, job_id: str, request: JobRequest) -> bool:
        """A held job gets its patient: the new request replaces the old, and the job is queued
        to be converted again (new identity, new UIDs)."""
        with self._db() as db:
            return db.execute(update(jobs_t).where(
                jobs_t.c.id == job_id, jobs_t.c.status == "held").values(
                status="queued", request=self._seal(request, job_id), result=None, error=None,
                failure_kind=None, progress=0.0)).rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute(select(jobs_t.c.status, func.count())
                              .group_by(jobs_t.c.status)).all()
        found = {str(r[0]): int(r[1]) for r in rows}
        return {state: found.get(state, 0) for state in STATES}

    def failure_kinds(self) -> dict[str, int]:
        """Failed jobs by kind (stored from the exception class when the job failed)."""
        kind = func.coalesce(jobs_t.c.failure_kind, "internal")
        with self._db() as db:
            rows = db.execute(select(kind, func.count()).where(jobs_t.c.status == "failed")
                              .group_by(kind)).all()
        return {str(r[0]): int(r[1]) for r in rows}

    def finished_durations(self) -> list[float]:
        with self._db() as db:
            rows = db.execute(select(jobs_t.c.finished - jobs_t.c.started).where(
                jobs_t.c.status.in_(("done", "failed", "held")),
                jobs_t.c.started.is_not(None))).all()
        return [float(r[0]) for r in rows if r[0] is not None]

    # -- audit -----------------------------------------------------------------------------

    def audit(self, who: str, action: str, job: str | None = None, upload: str | None = None,
              study: str | None = None, role: str = "", client: str = "") -> None:
        """Who (and in which role, from which address) did what to which job, upload and
        study, and when: identifiers only, no patient data."""
        with self._db() as db:
            db.execute(insert(audit_t).values(at=time.time(), who=who, action=action, job=job,
                                              upload=upload, study=study, role=role,
                                              client=client))

    def audit_log(self, limit: int = 1000) -> list[AuditEntry]:
        with self._db() as db:
            rows = db.execute(select(audit_t).order_by(audit_t.c.at.desc()).limit(limit)).all()
        return [AuditEntry.model_validate(dict(r._mapping)) for r in rows]

    # -- people and machines ---------------------------------------------------------------

    def put_user(self, name: str, role: str, password_hash: str, ward: str = "") -> None:
        statement = self._insert(users_t).values(name=name, role=role,
                                                 password_hash=password_hash, disabled=0,
                                                 created=time.time(), ward=ward)
        with self._db() as db:
            db.execute(statement.on_conflict_do_update(index_elements=["name"], set_={
                "role": statement.excluded.role,
                "password_hash": statement.excluded.password_hash, "disabled": 0,
                "ward": statement.excluded.ward}))

    def user(self, name: str) -> User | None:
        with self._db() as db:
            row = db.execute(select(users_t).where(users_t.c.name == name)).first()
        if row is None:
            return None
        r = row._mapping
        return User(r["name"], r["role"], r["password_hash"], bool(r["disabled"]), r["ward"])

    def disable_user(self, name: str) -> bool:
        with self._db() as db:
            changed = db.execute(update(users_t).where(users_t.c.name == name)
                                 .values(disabled=1)).rowcount
            db.execute(delete(sessions_t).where(sessions_t.c.user == name))
        return changed == 1

    def add_session(self, digest: str, user: str) -> None:
        now = time.time()
        with self._db() as db:
            db.execute(insert(sessions_t).values(digest=digest, user=user, created=now,
                                                 seen=now))

    def touch_session(self, digest: str, idle_s: float, max_s: float) -> str | None:
        """The session's user if it is still alive (seen within idle_s, younger than max_s);
        its last-seen time moves to now. A dead session is removed."""
        now = time.time()
        s = sessions_t
        with self._db() as db:
            row = db.execute(select(s).where(s.c.digest == digest)).first()
            if row is None:
                return None
            r = row._mapping
            if now - r["seen"] > idle_s or now - r["created"] > max_s:
                db.execute(delete(s).where(s.c.digest == digest))
                return None
            db.execute(update(s).where(s.c.digest == digest).values(seen=now))
        return str(r["user"])

    def end_session(self, digest: str) -> None:
        with self._db() as db:
            db.execute(delete(sessions_t).where(sessions_t.c.digest == digest))

    def add_sign_on(self, state: str, nonce: str, verifier: str) -> None:
        with self._db() as db:
            db.execute(insert(sign_ons_t).values(state=state, nonce=nonce, verifier=verifier,
                                                 created=time.time()))

    def take_sign_on(self, state: str, within_s: float) -> tuple[str, str] | None:
        """(nonce, PKCE verifier) of a pending sign-on, once; None if unknown or too old."""
        s = sign_ons_t
        with self._db() as db:
            row = db.execute(select(s).where(s.c.state == state)).first()
            db.execute(delete(s).where(or_(s.c.state == state,
                                           s.c.created < time.time() - within_s)))
        if row is None or row._mapping["created"] < time.time() - within_s:
            return None
        return str(row._mapping["nonce"]), str(row._mapping["verifier"])

    def login_failed(self, user: str, client: str) -> None:
        f = login_failures_t
        with self._db() as db:
            db.execute(insert(f).values(at=time.time(), user=user, client=client))
            db.execute(delete(f).where(f.c.at < time.time() - 3600))

    def recent_failures(self, user: str, client: str, within_s: float) -> tuple[int, float]:
        """Failed sign-ins within the window for this user or this client, and the time of
        the oldest of them (when the window frees up)."""
        f = login_failures_t
        with self._db() as db:
            row = db.execute(select(func.count(), func.min(f.c.at)).where(
                f.c.at >= time.time() - within_s,
                or_(f.c.user == user, f.c.client == client))).one()
        return int(row[0]), float(row[1] or 0.0)

    def add_token(self, sha256: str, name: str, role: str, scopes: tuple[str, ...],
                  expires: float | None) -> str:
        token_id = uuid.uuid4().hex[:12]
        with self._db() as db:
            db.execute(insert(tokens_t).values(id=token_id, sha256=sha256, name=name, role=role,
                                               scopes=json.dumps(list(scopes)),
                                               expires=expires, revoked=0,
                                               created=time.time()))
        return token_id

    def token(self, sha256: str) -> TokenRecord | None:
        with self._db() as db:
            row = db.execute(select(tokens_t).where(tokens_t.c.sha256 == sha256)).first()
        return _token(row._mapping) if row else None

    def tokens(self) -> list[TokenRecord]:
        with self._db() as db:
            rows = db.execute(select(tokens_t).order_by(tokens_t.c.created)).all()
        return [_token(r._mapping) for r in rows]

    def revoke_token(self, token_id: str) -> bool:
        with self._db() as db:
            return db.execute(update(tokens_t).where(tokens_t.c.id == token_id)
                              .values(revoked=1)).rowcount == 1

    # -- rows <-> records ------------------------------------------------------------------

    @property
    def sealer(self) -> Sealer:
        """The store's key, for other patient data kept at rest (the orders)."""
        return self._sealing()

    def _sealing(self) -> Sealer:
        if self._sealer is None:
            raise RuntimeError("this Store was opened without its key (use open_store)")
        return self._sealer

    def _seal(self, request: JobRequest, job_id: str) -> str:
        return self._sealing().seal(request.model_dump_json(exclude_unset=True), job_id)

    def _job(self, row: RowMapping) -> Job:
        request = JobRequest.model_validate_json(self._sealing().open(row["request"], row["id"]))
        return Job(row["id"], row["upload_id"], row["status"], row["progress"], request,
                   JobResult.model_validate_json(row["result"]) if row["result"] else None,
                   row["error"], row["failure_kind"], row["created"], row["started"],
                   row["finished"], row["attempts"], row["owner"], row["ward"],
                   row["worker"], row["lease_until"], row["recoveries"])


def _export(row: RowMapping) -> Export:
    return Export(row["id"], row["job"], row["profile"], row["destination"], row["who"],
                  row["state"], row["created"], row["finished"], row["error"],
                  ExportResult.model_validate_json(row["result"]) if row["result"] else None)


def _parcel(row: RowMapping) -> Parcel:
    receipts = [DeliveryResult.model_validate(r) for r in json.loads(row["receipts"] or "[]")]
    return Parcel(row["job"], row["destination"], row["state"], row["attempts"],
                  row["first_try"], row["next_try"], row["error"], tuple(receipts))


def _token(row: RowMapping) -> TokenRecord:
    scopes: list[str] = json.loads(row["scopes"])
    return TokenRecord(row["id"], row["name"], row["role"], tuple(scopes), row["expires"],
                       bool(row["revoked"]))
