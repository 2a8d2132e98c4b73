"""The job store: SQLite in the data folder, so a restarted server or worker loses nothing."""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, path TEXT NOT NULL, size INTEGER NOT NULL,
    created REAL NOT NULL, problem TEXT);
CREATE TABLE IF NOT EXISTS audit (
    at REAL NOT NULL, who TEXT NOT NULL, action TEXT NOT NULL, job TEXT, upload TEXT,
    study TEXT);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, upload_id TEXT NOT NULL, status TEXT NOT NULL, progress REAL NOT NULL,
    request TEXT NOT NULL, result TEXT, error TEXT, created REAL NOT NULL, started REAL,
    finished REAL, attempts INTEGER NOT NULL DEFAULT 0);
"""
STATES = ("queued", "running", "done", "failed", "cancelled")


@dataclass(frozen=True)
class Job:
    id: str
    upload_id: str
    status: str
    progress: float
    request: dict[str, Any]
    result: dict[str, Any] | None
    error: str | None
    created: float
    started: float | None
    finished: float | None
    attempts: int


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        with self._db() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            db.execute("PRAGMA journal_mode=WAL")
            yield db
        finally:
            db.close()

    def add_upload(self, name: str, path: Path, size: int, upload_id: str | None = None,
                   problem: str | None = None) -> str:
        upload_id = upload_id or uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?)",
                       (upload_id, name, str(path), size, time.time(), problem))
        return upload_id

    def upload(self, upload_id: str) -> tuple[str, Path, int] | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return (row["name"], Path(row["path"]), row["size"]) if row else None

    def upload_problem(self, upload_id: str) -> str | None:
        with self._db() as db:
            row = db.execute("SELECT problem FROM uploads WHERE id = ?", (upload_id,)).fetchone()
        return row["problem"] if row else None

    def removable_uploads(self, older_than: float) -> list[tuple[str, Path]]:
        """Uploads whose every job has succeeded, or that are broken, and that are old enough;
        an upload with a queued, running or failed job is kept (it may be retried)."""
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

    def add_job(self, upload_id: str, request: dict[str, Any]) -> str:
        job_id = uuid.uuid4().hex
        with self._db() as db:
            db.execute("INSERT INTO jobs (id, upload_id, status, progress, request, created) "
                       "VALUES (?, ?, 'queued', 0, ?, ?)",
                       (job_id, upload_id, json.dumps(request), time.time()))
        return job_id

    def job(self, job_id: str) -> Job | None:
        with self._db() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def jobs(self, limit: int = 100) -> list[Job]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY created DESC LIMIT ?",
                              (limit,)).fetchall()
        return [_job(r) for r in rows]

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

    def finish(self, job_id: str, result: dict[str, Any] | None, error: str | None) -> None:
        status = "failed" if error else "done"
        with self._db() as db:
            db.execute("UPDATE jobs SET status=?, progress=?, result=?, error=?, finished=? "
                       "WHERE id=? AND status='running'",
                       (status, 1.0 if not error else 0.0,
                        json.dumps(result) if result is not None else None, error, time.time(),
                        job_id))

    def set_status(self, job_id: str, status: str, allowed_from: tuple[str, ...]) -> bool:
        marks = ",".join("?" * len(allowed_from))
        with self._db() as db:
            cursor = db.execute(f"UPDATE jobs SET status=?, error=NULL WHERE id=? AND status IN "
                                f"({marks})", (status, job_id, *allowed_from))
            return cursor.rowcount == 1

    def counts(self) -> dict[str, int]:
        with self._db() as db:
            rows = db.execute("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status").fetchall()
        found = {row["status"]: int(row["n"]) for row in rows}
        return {state: found.get(state, 0) for state in STATES}

    def failure_reasons(self) -> dict[str, int]:
        """Failed jobs by the kind of error (its first words, never patient data)."""
        with self._db() as db:
            rows = db.execute("SELECT error FROM jobs WHERE status='failed'").fetchall()
        reasons: dict[str, int] = {}
        for row in rows:
            kind = _reason_kind(row["error"] or "")
            reasons[kind] = reasons.get(kind, 0) + 1
        return reasons

    def finished_durations(self) -> list[float]:
        with self._db() as db:
            rows = db.execute("SELECT finished - started AS d FROM jobs WHERE status IN "
                              "('done', 'failed') AND started IS NOT NULL").fetchall()
        return [float(r["d"]) for r in rows if r["d"] is not None]

    def audit(self, who: str, action: str, job: str | None = None, upload: str | None = None,
              study: str | None = None) -> None:
        """Who did what to which job, upload and study, and when: identifiers only, no patient
        data."""
        with self._db() as db:
            db.execute("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?)",
                       (time.time(), who, action, job, upload, study))

    def audit_log(self, limit: int = 1000) -> list[dict[str, Any]]:
        with self._db() as db:
            rows = db.execute("SELECT * FROM audit ORDER BY at DESC LIMIT ?",
                              (limit,)).fetchall()
        return [dict(row) for row in rows]

    def used_bytes(self) -> int:
        with self._db() as db:
            row = db.execute("SELECT COALESCE(SUM(size), 0) AS total FROM uploads").fetchone()
        return int(row["total"])


def _reason_kind(error: str) -> str:
    if error.startswith("delivery failed"):
        return "delivery"
    if "cannot copy" in error or "transcod" in error:
        return "not storable"
    if "not a readable" in error or "damaged" in error or "no picture" in error:
        return "unreadable input"
    if error.startswith("internal error"):
        return "internal"
    return "other"


def _job(row: sqlite3.Row) -> Job:
    return Job(row["id"], row["upload_id"], row["status"], row["progress"],
               json.loads(row["request"]), json.loads(row["result"]) if row["result"] else None,
               row["error"], row["created"], row["started"], row["finished"], row["attempts"])
