"""Conversion jobs on the huey queue: SQLite in the data folder by default, Redis when
VID2DCM_QUEUE_URL=redis://... so several workers share one queue. One code path for both."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Literal

from huey import Huey, RedisHuey, SqliteHuey, crontab
from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.apps.gateway.settings import QUEUE_ENV, ServiceSettings, load_settings
from vid2dcm.apps.gateway.store import Store
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.core.metadata import Metadata


class JobRequest(BaseModel):
    """What a client may ask of a job; destinations are names from the gateway's own
    configuration, never addresses, so a client cannot make the gateway connect anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    upload_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    metadata: Metadata = Metadata()
    sop: Literal["photographic", "endoscopic", "microscopic", "ultrasound", "sc"] = (
        "photographic")
    transcode: Literal["auto", "never", "always"] = "auto"
    destinations: tuple[str, ...] = ()
    accession: str | None = Field(default=None, max_length=16)
    """Fill patient and order from the gateway's worklist entry with this accession number."""


def make_huey() -> Huey:
    url = os.environ.get(QUEUE_ENV, "")
    if url.startswith("redis://"):
        return RedisHuey("vid2dcm", url=url)
    settings = load_settings()
    settings.prepare()
    return SqliteHuey("vid2dcm", filename=str(settings.data_dir / "queue.sqlite"))


huey = make_huey() if os.environ.get("VID2DCM_DATA") or os.environ.get(QUEUE_ENV) else None


def enqueue(job_id: str) -> None:
    if huey is None:
        raise RuntimeError("no queue configured (set VID2DCM_DATA)")
    run_job(job_id)


if huey is not None:
    @huey.task()  # type: ignore[untyped-decorator]
    def run_job(job_id: str) -> None:
        execute(load_settings(), job_id)

    @huey.on_startup()  # type: ignore[untyped-decorator]
    def requeue_interrupted() -> None:
        """A job left 'running' by a worker that died is run again from its input."""
        store = Store(load_settings().database)
        for job in store.jobs(limit=1000):
            if job.status == "running":
                run_job(job.id)
    @huey.periodic_task(crontab(minute="*/15"))  # type: ignore[untyped-decorator]
    def scheduled_cleanup() -> None:
        clean_up(load_settings())
else:  # imported without a queue (tests of the pure parts, the API in-process)
    def run_job(job_id: str) -> None:
        raise RuntimeError("no queue configured")


UPLOAD_RETENTION_S = 24 * 3600


def clean_up(settings: ServiceSettings, now: float | None = None) -> list[str]:
    """Delete uploads once every job made from them has succeeded (or they arrived damaged)
    and a day has passed; nothing is removed while a job might still need it. Returns ids."""
    import shutil
    import time

    store = Store(settings.database)
    removed = []
    for upload_id, path in store.removable_uploads((now or time.time()) - UPLOAD_RETENTION_S):
        if path.parent.parent == settings.uploads:
            shutil.rmtree(path.parent, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".info").unlink(missing_ok=True)
        store.forget_upload(upload_id)
        removed.append(upload_id)
    removed += _expired_partial_uploads(settings, store, (now or time.time()) - TUS_EXPIRY_S)
    return removed


TUS_EXPIRY_S = 7 * 24 * 3600
"""Resumable uploads not finished within a week are given up (tus advertises the expiry)."""


def _expired_partial_uploads(settings: ServiceSettings, store: Store, older_than: float
                             ) -> list[str]:
    folder = settings.data_dir / "tus"
    if not folder.is_dir():
        return []
    removed = []
    for info in folder.glob("*.info"):
        data = info.with_suffix("")
        if store.upload(data.name) is None and info.stat().st_mtime < older_than:
            data.unlink(missing_ok=True)
            info.unlink(missing_ok=True)
            removed.append(data.name)
    return removed


def execute(settings: ServiceSettings, job_id: str) -> None:
    """Convert (and deliver) one job; every outcome is recorded in the store."""
    from vid2dcm.pipeline import convert
    from vid2dcm.planning.plan import Request

    store = Store(settings.database)
    if not store.claim(job_id):
        return
    job = store.job(job_id)
    assert job is not None
    try:
        request = JobRequest.model_validate(job.request)
        upload = store.upload(request.upload_id)
        if upload is None:
            raise Vid2DcmError("the upload of this job no longer exists")
        _name, path, _size = upload
        out_dir = settings.outputs / job_id
        out_dir.mkdir(parents=True, exist_ok=True)
        metadata = request.metadata.model_copy(update={"uid_seed": job_id})
        if request.accession:
            metadata = _from_worklist(settings, request.accession, metadata)
        result = convert(path, out_dir, metadata=metadata,
                         options=Request(sop=request.sop,  # type: ignore[arg-type]
                                         transcode=request.transcode),  # type: ignore[arg-type]
                         overwrite=True,
                         progress=lambda _stage, done: store.progress(job_id, done or 0.0))
        summary: dict[str, Any] = {
            "files": [{"name": f.path.name, "sop_instance_uid": f.sop_instance_uid,
                       "transfer_syntax_uid": f.transfer_syntax_uid, "frames": f.frames,
                       "bytes": f.size_bytes} for f in result.files],
            "action": result.plan.action.value,
            "warnings": list(result.warnings),
            "deliveries": _deliver(settings, request, [f.path for f in result.files]),
            "worker": f"{socket.gethostname()}:{os.getpid()}",
        }
        failed = [d for d in summary["deliveries"] if not d["ok"]]
        store.finish(job_id, summary, f"delivery failed: {failed[0]['message']}"
                     if failed else None)
    except Vid2DcmError as exc:
        store.finish(job_id, None, str(exc))
    except Exception as exc:  # a job must end in a state, whatever happened
        store.finish(job_id, None, f"internal error: {type(exc).__name__}: {exc}")


def _from_worklist(settings: ServiceSettings, accession: str, metadata: Metadata) -> Metadata:
    """The order's patient and study, with anything the client typed in taking precedence."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.worklist import the_order

    if not settings.worklist:
        raise Vid2DcmError("this gateway has no worklist configured")
    order = the_order(parse_destination(settings.worklist, settings.destinations_file),
                      accession).metadata_fields()
    typed = metadata.model_dump(exclude_unset=True)
    return Metadata.model_validate({**order, **typed})


def _deliver(settings: ServiceSettings, request: JobRequest, files: list[Path]
             ) -> list[dict[str, Any]]:
    names = request.destinations or settings.default_destinations
    if not names:
        return []
    from vid2dcm.delivery.destinations import load_destinations
    from vid2dcm.delivery.send import deliver

    named = load_destinations(settings.destinations_file) if settings.destinations_file else {}
    done: list[dict[str, Any]] = []
    for name in names:
        if name not in named:
            done.append({"destination": name, "ok": False, "message": "unknown destination"})
            continue
        try:
            receipts = deliver(files, named[name])
            done.extend({"destination": name, "ok": r.ok, "message": r.message,
                         "sop_instance_uid": r.sop_instance_uid} for r in receipts)
        except Vid2DcmError as exc:
            done.append({"destination": name, "ok": False, "message": str(exc)})
    return done
