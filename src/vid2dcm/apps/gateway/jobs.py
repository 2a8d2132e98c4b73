"""What a worker does with one job (convert, then deliver or hold), and the periodic clean-up.

Queue-free: `make_queue` (queue.py) wires these functions to huey; tests may call them
directly."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path

from vid2dcm.apps.gateway.audit import record
from vid2dcm.apps.gateway.models import (
    DeliveryResult,
    FailureKind,
    FileResult,
    JobRequest,
    JobResult,
)
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store
from vid2dcm.core.errors import (
    DeliveryError,
    InputError,
    NotStorableError,
    OutputError,
    UsageError,
    Vid2DcmError,
)
from vid2dcm.core.metadata import Metadata

FAILURE_KINDS: tuple[tuple[type[BaseException], FailureKind], ...] = (
    (InputError, "unreadable input"),
    (NotStorableError, "not storable"),
    (DeliveryError, "delivery"),
    (OutputError, "output"),
    (UsageError, "request"),
)
"""The exception class decides the kind (first match, subclasses included)."""


def failure_kind(exc: BaseException) -> FailureKind:
    for cls, kind in FAILURE_KINDS:
        if isinstance(exc, cls):
            return kind
    return "internal"


def uid_seed(job_id: str, request: JobRequest) -> str:
    """Repeatable UIDs: a re-run writes the same instances (the PACS keeps one copy); a job
    whose patient was assigned later gets new ones (its first output was never sent)."""
    return job_id if request.issue == 0 else f"{job_id}.{request.issue}"


def execute(settings: ServiceSettings, job_id: str) -> None:
    """Convert (and deliver, or hold) one job; every outcome is recorded in the store."""
    from vid2dcm.pipeline import convert
    from vid2dcm.planning.plan import Request

    store = Store(settings.database)
    if not store.claim(job_id):
        return
    job = store.job(job_id)
    assert job is not None
    request = job.request
    try:
        upload = store.upload(request.upload_id)
        if upload is None:
            raise InputError("the upload of this job no longer exists")
        out_dir = settings.outputs / job_id
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, mode=0o700)
        metadata = request.metadata.model_copy(update={"uid_seed": uid_seed(job_id, request)})
        if request.accession:
            metadata = from_worklist(settings, request.accession, metadata)
        result = convert(upload.path, out_dir, metadata=metadata,
                         options=Request(sop=request.sop,  # type: ignore[arg-type]
                                         transcode=request.transcode),  # type: ignore[arg-type]
                         overwrite=True,
                         progress=lambda _stage, done: store.progress(job_id, done or 0.0))
        files = tuple(FileResult(name=f.path.name, sop_instance_uid=f.sop_instance_uid,
                                 transfer_syntax_uid=f.transfer_syntax_uid, frames=f.frames,
                                 bytes=f.size_bytes) for f in result.files)
        held = request.unidentified
        deliveries = () if held else deliver(settings, request, [f.path for f in result.files])
        summary = JobResult(files=files, action=result.plan.action.value,
                            warnings=tuple(result.warnings), deliveries=deliveries,
                            worker=f"{socket.gethostname()}:{os.getpid()}")
        failed = [d for d in deliveries if not d.ok]
        for name in sorted({d.destination for d in deliveries}):
            ok = all(d.ok for d in deliveries if d.destination == name)
            record(store, settings.audit_syslog, f"worker:{name}",
                   "delivery" if ok else "delivery failed", job=job_id,
                   study=metadata.study_instance_uid, role="system")
        if failed:
            store.finish(job_id, summary, f"delivery failed: {failed[0].message}", "delivery")
        else:
            store.finish(job_id, summary, held=held)
    except Vid2DcmError as exc:
        store.finish(job_id, None, str(exc), failure_kind(exc))
    except Exception as exc:  # a job must end in a state, whatever happened
        store.finish(job_id, None, f"internal error: {type(exc).__name__}", "internal")


def order_fields(settings: ServiceSettings, accession: str) -> dict[str, object]:
    """The patient and study of the worklist entry with this accession number."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.worklist import the_order

    if not settings.worklist:
        raise UsageError("this gateway has no worklist configured")
    return the_order(parse_destination(settings.worklist, settings.destinations_file),
                     accession).metadata_fields()


def from_worklist(settings: ServiceSettings, accession: str, metadata: Metadata) -> Metadata:
    """The order's patient and study; typed fields the order lacks are kept (fields that
    contradict the order were refused when the job was created)."""
    order = order_fields(settings, accession)
    typed = metadata.model_dump(exclude_unset=True)
    return Metadata.model_validate({**typed, **order})


def deliver(settings: ServiceSettings, request: JobRequest, files: list[Path]
            ) -> tuple[DeliveryResult, ...]:
    names = request.destinations or settings.default_destinations
    if not names:
        return ()
    from vid2dcm.delivery.destinations import load_destinations
    from vid2dcm.delivery.send import deliver as send

    named = load_destinations(settings.destinations_file) if settings.destinations_file else {}
    done: list[DeliveryResult] = []
    for name in names:
        if name not in named:
            done.append(DeliveryResult(destination=name, ok=False,
                                       message="unknown destination"))
            continue
        try:
            receipts = send(files, named[name])
            done.extend(DeliveryResult(destination=name, ok=r.ok, message=r.message,
                                       sop_instance_uid=r.sop_instance_uid) for r in receipts)
        except Vid2DcmError as exc:
            done.append(DeliveryResult(destination=name, ok=False, message=str(exc)))
    return tuple(done)


UPLOAD_RETENTION_S = 24 * 3600
TUS_EXPIRY_S = 7 * 24 * 3600
"""Resumable uploads not finished within a week are given up (tus advertises the expiry)."""


def clean_up(settings: ServiceSettings, now: float | None = None) -> list[str]:
    """Delete uploads once every job made from them has succeeded (or they arrived damaged)
    and a day has passed; nothing is removed while a job might still need it. Returns ids."""
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
