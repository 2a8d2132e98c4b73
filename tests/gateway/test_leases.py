"""Worker leases with heartbeats (issue 17), with real `vid2dcm worker` processes sharing one
data folder and one job store (SQLite, and a real PostgreSQL):

- a job held by a live worker is never taken by a second worker started mid-job (the review's
  double-run bug: both converted it, and a stray temp folder was left), even when the job is
  queued twice and the lease period has passed several times over (the heartbeat renews it);
- a job whose worker was SIGKILLed is run again, once, by a worker started after its lease
  expired, and the output is a valid DICOM file (read back by the usual battery).

The job is held mid-job deterministically: its accession binds it to an order, and the test
holds an exclusive lock on the order store, so the worker waits inside the job (after it
claimed it and made its output folder) until the test lets go."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcmtk_peers import stop
from postgres import Postgres, postgres_server  # noqa: F401 (fixture)
from readback import read_back
from vid2dcm.apps.gateway.integration import order_store
from vid2dcm.apps.gateway.jobs import execute
from vid2dcm.apps.gateway.models import JobRequest
from vid2dcm.apps.gateway.queue import make_queue
from vid2dcm.apps.gateway.settings import ServiceSettings, load_settings
from vid2dcm.apps.gateway.store import Job, Store, open_store
from vid2dcm.core.metadata import Metadata
from vid2dcm.orders.order import Order
from vid2dcm.producing.synth import ClipSpec, synthesize

pytestmark = pytest.mark.integration

VID2DCM = Path(sys.executable).with_name("vid2dcm")
LEASE_S = 3.0
Gate = Any
"""A database connection holding the lock the worker waits on (sqlite3 or psycopg)."""


@dataclass
class Site:
    """One data folder shared by the workers (as on a shared filesystem) and its store."""

    settings: ServiceSettings
    store: Store
    job_id: str
    gate: Gate
    logs: list[Path]

    @property
    def data(self) -> Path:
        return self.settings.data_dir

    def job(self) -> Job:
        job = self.store.job(self.job_id)
        assert job is not None
        return job

    def worker(self) -> subprocess.Popen[bytes]:
        log = self.data.parent / f"worker{len(self.logs)}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            return subprocess.Popen([str(VID2DCM), "worker", "--data", str(self.data)],
                                    stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)

    def wait(self, what: str, done: Callable[[], bool], seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while not done():
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text(errors="replace")[-1500:] for p in self.logs)
                pytest.fail(f"timed out waiting for {what}; job {self.job()}\n{logs}")
            time.sleep(0.1)

    def open_gate(self) -> None:
        if isinstance(self.gate, sqlite3.Connection):
            self.gate.execute("COMMIT")
        else:
            self.gate.commit()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs_postgres)])
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    data = tmp_path / "data"
    data.mkdir()
    toml = f"[service]\nlease_s = {LEASE_S}\nheartbeat_s = 0.5\n"
    if request.param == "postgresql":
        server: Postgres = request.getfixturevalue("postgres_server")
        toml += f'database_url = "{server.new_database()}"\n'
    (data / "service.toml").write_text(toml)
    settings = load_settings(data)
    store = open_store(settings)
    upload_id = "c" * 32
    (settings.uploads / upload_id).mkdir()
    clip = synthesize(settings.uploads / upload_id / "clip.mp4", ClipSpec(
        width=64, height=48, frames=10, options={"preset": "superfast", "profile": "high"}))
    store.add_upload("clip.mp4", clip, clip.stat().st_size, upload_id)
    order_store(settings).put(Order(placer_order_number="P1", metadata=Metadata(
        patient_name="Doe^Jane", patient_id="PID1", accession_number="ACC1")))
    job_id = store.add_job(JobRequest(upload_id=upload_id, accession="ACC1"))
    # The worker waits inside the job, reading the order, until open_gate(): SQLite's
    # exclusive lock on orders.sqlite (rollback journal: readers wait), PostgreSQL's ACCESS
    # EXCLUSIVE lock on the orders table (SELECTs wait).
    gate: Gate
    if settings.database_url:
        import psycopg

        gate = psycopg.connect(settings.database_url.replace("+psycopg", ""))
        gate.execute("LOCK TABLE orders IN ACCESS EXCLUSIVE MODE")
    else:
        gate = sqlite3.connect(data / "orders.sqlite", isolation_level=None, timeout=5)
        gate.execute("BEGIN EXCLUSIVE")
    try:
        yield Site(settings, store, job_id, gate, [])
    finally:
        gate.close()


def _converted_once(site: Site, tmp_path: Path) -> None:
    """One output folder, holding only the finished file, which reads back clean."""
    assert [p.name for p in site.settings.outputs.iterdir()] == [site.job_id]
    out = site.settings.outputs / site.job_id
    assert [p.name for p in out.iterdir()] == ["video.dcm"]
    read_back(out / "video.dcm", tmp_path)


def test_a_live_workers_job_is_never_taken_by_a_second_worker(site: Site,
                                                              tmp_path: Path) -> None:
    queue = make_queue(site.settings)
    queue.enqueue(site.job_id)
    first = site.worker()
    second = None
    try:
        site.wait("the first worker to be inside the job (its output folder made)",
                  lambda: site.job().status == "running"
                  and (site.settings.outputs / site.job_id).is_dir())
        holder = site.job().worker
        time.sleep(LEASE_S * 1.5)  # without heartbeats the lease would have run out by now
        assert site.job().lease_until > time.time()  # type: ignore[operator]
        assert site.store.expired_jobs() == []
        # A second worker starts mid-job (its start-up looks for interrupted jobs), and the
        # job reaches the queue again; a third "worker" calls execute() directly.
        second = site.worker()
        queue.enqueue(site.job_id)
        site.wait("the second worker to drain the queue",
                  lambda: queue.huey.pending_count() == 0)
        time.sleep(1.0)
        execute(site.settings, site.job_id)  # returns at once: the lease is held
        job = site.job()
        assert (job.status, job.worker, job.attempts) == ("running", holder, 1)
        assert (site.settings.outputs / site.job_id).is_dir()  # not wiped by another worker
        site.open_gate()
        site.wait("the first worker to finish", lambda: site.job().status == "done")
        job = site.job()
        assert (job.attempts, job.recoveries, job.worker) == (1, 0, holder)
        _converted_once(site, tmp_path)
    finally:
        for proc in (first, second):
            if proc is not None:
                stop(proc)


def test_a_killed_workers_job_is_run_again_once_after_its_lease_expires(
        site: Site, tmp_path: Path) -> None:
    make_queue(site.settings).enqueue(site.job_id)
    first = site.worker()
    rescuer = None
    try:
        site.wait("the first worker to start the job", lambda: site.job().status == "running")
        holder = site.job().worker
        os.killpg(first.pid, signal.SIGKILL)  # no clean-up, no goodbye: a crashed machine
        first.wait()
        site.open_gate()
        lease = site.job().lease_until
        assert lease is not None
        if time.time() < lease - 1.0:  # the dead worker's lease still holds: not taken yet
            execute(site.settings, site.job_id)
            assert (site.job().status, site.job().attempts) == ("running", 1)
        site.wait("the lease to expire", lambda: site.job_id in site.store.expired_jobs(),
                  LEASE_S + 10)
        rescuer = site.worker()  # its start-up finds the job and runs it again
        site.wait("the job to be run again", lambda: site.job().status == "done")
        job = site.job()
        assert (job.attempts, job.recoveries) == (2, 1)
        assert job.worker != holder
        _converted_once(site, tmp_path)
    finally:
        stop(first)
        if rescuer is not None:
            stop(rescuer)
