"""The job queue, made from settings: huey on SQLite in the data folder by default, on Redis
when settings.queue_url is redis://... so several workers share one queue. One code path for
both; nothing is created at import time."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from huey import Huey, RedisHuey, SqliteHuey, crontab

from vid2dcm.apps.gateway.chunking import encode_job_chunk
from vid2dcm.apps.gateway.export import deliver_export, run_export
from vid2dcm.apps.gateway.jobs import (
    clean_up,
    deliver_job,
    execute,
    failure_kind,
    hold_lease,
)
from vid2dcm.apps.gateway.outbox import due_jobs
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import open_store


@dataclass(frozen=True)
class JobQueue:
    """A huey instance with the gateway's tasks registered on it."""

    huey: Huey
    run_job: Callable[[str], object]
    run_export: Callable[[str], object] | None = None
    """De-identify and send an export (issue 16)."""
    later: Callable[[str, float], None] | None = None
    """Try a job's parcels again in so many seconds (a recording's N-SET at stop)."""

    def enqueue(self, job_id: str) -> None:
        self.run_job(job_id)

    def enqueue_export(self, export_id: str) -> None:
        assert self.run_export is not None
        self.run_export(export_id)

    def run_worker(self, workers: int = 1) -> None:
        """Consume jobs until stopped (what `vid2dcm worker` runs)."""
        from huey.consumer import Consumer

        # max_delay: an idle worker polls the SQLite queue at least every 2 s (huey's default
        # backs off to 10 s), so the chunk tasks of a split job are taken promptly
        Consumer(self.huey, workers=workers, worker_type="process", max_delay=2.0).run()


def make_queue(settings: ServiceSettings) -> JobQueue:
    settings.prepare()
    url = settings.queue_url or ""
    huey: Huey
    if url.startswith("redis://"):
        huey = RedisHuey("vid2dcm", url=url)
    else:
        huey = SqliteHuey("vid2dcm", filename=str(settings.data_dir / "queue.sqlite"))

    def later(job_id: str, delay: float) -> None:
        deliver_task.schedule(args=(job_id,), delay=delay)

    @huey.task(name="run_job")  # type: ignore[untyped-decorator]
    def run_job(job_id: str) -> None:
        execute(settings, job_id, later, split=lambda job, n: chunk_task(job, n))

    # chunked transcoding across workers (issue 17): chunk tasks, then the join
    @huey.task(name="transcode_chunk")  # type: ignore[untyped-decorator]
    def chunk_task(job_id: str, index: int) -> None:
        with hold_lease(settings, job_id):  # the split job is alive while a chunk encodes
            encode_job_chunk(settings, job_id, index, lambda job: join_task(job),
                             failure_kind)

    @huey.task(name="join_chunks")  # type: ignore[untyped-decorator]
    def join_task(job_id: str) -> None:
        execute(settings, job_id, later)

    @huey.task(name="deliver")  # type: ignore[untyped-decorator]
    def deliver_task(job_id: str) -> None:
        deliver_job(settings, job_id, later)

    # de-identified exports (issue 16): the same outbox, keyed by the export id
    def export_later(export_id: str, delay: float) -> None:
        deliver_export_task.schedule(args=(export_id,), delay=delay)

    @huey.task(name="export")  # type: ignore[untyped-decorator]
    def export_task(export_id: str) -> None:
        run_export(settings, export_id, export_later)

    @huey.task(name="deliver_export")  # type: ignore[untyped-decorator]
    def deliver_export_task(export_id: str) -> None:
        deliver_export(settings, export_id, export_later)

    @huey.periodic_task(crontab(minute="*"))  # type: ignore[untyped-decorator]
    def sweep_outbox() -> None:
        """The outbox is the truth: a due parcel whose scheduled try was lost (queue wiped,
        worker replaced) is tried within a minute; so is a due notice (MPPS, ORU, FHIR)."""
        store = open_store(settings)
        for job_id in due_jobs(store, time.time()):
            deliver_task(job_id)
        for export_id in sorted(set(store.due_export_parcels(time.time()))):
            deliver_export_task(export_id)

    @huey.periodic_task(crontab(minute="*"))  # type: ignore[untyped-decorator]
    def requeue_interrupted() -> None:
        """A job left 'running' by a worker that died (its lease expired: no heartbeat for
        lease_s) is queued again; store.claim runs it again once, then fails it. A job whose
        worker is alive, here or on another machine, is left alone."""
        for job_id in open_store(settings).expired_jobs():
            run_job(job_id)

    @huey.on_startup()  # type: ignore[untyped-decorator]
    def on_start() -> None:
        requeue_interrupted()
        # exports hold no lease: one left preparing is prepared again at start, as before
        for export in open_store(settings).exports(state="preparing"):
            export_task(export.id)
        sweep_outbox()

    @huey.periodic_task(crontab(minute="*/15"))  # type: ignore[untyped-decorator]
    def scheduled_cleanup() -> None:
        clean_up(settings)

    return JobQueue(huey, run_job, export_task, later)
