"""What a worker does with one job (convert, then deliver or hold), and the periodic clean-up.

Queue-free: `make_queue` (queue.py) wires these functions to huey; tests may call them
directly."""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from vid2dcm.apps.gateway.audit import record
from vid2dcm.apps.gateway.chunking import forget_chunks, joined_chunks, split_job
from vid2dcm.apps.gateway.models import (
    DeliveryResult,
    FailureKind,
    FileResult,
    JobRequest,
    JobResult,
)
from vid2dcm.apps.gateway.outbox import NOTICE_KINDS, Later, backoff
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Job, Parcel, Store, open_store
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


def execute(settings: ServiceSettings, job_id: str, later: Later | None = None,
            split: Callable[[str, int], None] | None = None) -> None:
    """Convert one job, then hold it (no patient yet), finish it (no destination) or put its
    deliveries in the outbox and try them; every outcome is recorded in the store.

    With split (queue one chunk task), a long transcode is first spread over the workers
    (chunking.py) and this returns; the join runs this again with the chunks encoded.

    The job is taken with a lease (store.claim) renewed by a heartbeat while it runs, so a
    second worker never runs it at the same time; a worker that dies leaves the lease to
    expire, and the job is run again (once; settings.lease_recoveries) by another. The
    chunk tasks and the join of a split job renew the same lease (hold_lease)."""
    store = open_store(settings)
    pieces = joined_chunks(settings, job_id)  # the join of a job spread over the workers
    worker = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    if pieces is None and not store.claim(job_id, worker, settings.lease_s,
                                          settings.lease_recoveries):
        return  # queued no more, or held by a live worker (its lease holds)
    if pieces is not None and getattr(store.job(job_id), "status", None) != "running":
        forget_chunks(settings, job_id)
        return
    with heartbeat(store, job_id, worker if pieces is None else None, settings):
        _run(settings, store, job_id, later, split, pieces)


@contextmanager
def heartbeat(store: Store, job_id: str, worker: str | None, settings: ServiceSettings
              ) -> Iterator[None]:
    """Renew the lease on the job every heartbeat_s while the block runs, from a thread (the
    conversion holds this one): another worker takes the job only after the lease has run
    out, which happens only when this process is gone or cut off. worker None: whoever holds
    it (a chunk task or the join of a split job keeps the job's lease alive)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(settings.heartbeat_s):
            try:
                if not store.renew(job_id, worker, settings.lease_s):
                    return  # finished (or taken over): nothing left to hold
            except Exception:  # a database hiccup: try again at the next beat
                continue

    thread = threading.Thread(target=beat, name=f"lease-{job_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def hold_lease(settings: ServiceSettings, job_id: str) -> AbstractContextManager[None]:
    """The lease of a split job, renewed while one of its chunk tasks encodes."""
    return heartbeat(open_store(settings), job_id, None, settings)


def _run(settings: ServiceSettings, store: Store, job_id: str, later: Later | None,
         split: Callable[[str, int], None] | None,
         pieces: tuple[list[Path], list[str]] | None) -> None:
    """The claimed job's conversion and what follows it (execute's body, under its lease)."""
    from pydicom import dcmread

    from vid2dcm.apps.gateway.integration import (
        Subject,
        find_order,
        finish_step,
        mpps_start,
        routed,
        set_status,
    )
    from vid2dcm.apps.gateway.recordings import finalize_recording, is_recording
    from vid2dcm.core.uids import UidSource
    from vid2dcm.orders.order import OrderStatus
    from vid2dcm.pipeline import convert
    from vid2dcm.planning.plan import Request

    notices: list[str] = []
    order = None
    job = store.job(job_id)
    assert job is not None
    request = job.request
    unmade = Subject(job_id, request.accession, None, False)  # the MPPS of a failed conversion
    try:
        upload = store.upload(request.upload_id)
        if upload is None:
            raise InputError("the upload of this job no longer exists")
        if (pieces is None and split is not None and not is_recording(upload.path)
                and split_job(settings, job_id, upload.path, request.sop, request.transcode,
                              split)):
            return  # the chunk tasks take it from here (chunking.py)
        out_dir = settings.outputs / job_id
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, mode=0o700)
        metadata = request.metadata.model_copy(update={"uid_seed": uid_seed(job_id, request)})
        if request.accession:
            metadata = from_worklist(settings, request.accession, metadata)
        order = find_order(settings, request.accession)
        recording = is_recording(upload.path)  # a stopped recording (routes/recordings.py)
        if order is not None:
            set_status(settings, order, OrderStatus.IN_PROGRESS)
        if order is not None and not recording:  # a recording told its own MPPS already
            # MPPS IN PROGRESS needs the study UID before conversion
            study_uid = metadata.study_instance_uid or UidSource(
                metadata.uid_root, metadata.uid_seed).new("study")
            metadata = metadata.model_copy(update={"study_instance_uid": study_uid})
            notices.append(mpps_start(settings, job_id, metadata,
                                      order.modality or SOP_MODALITY.get(request.sop, "OT")))
        if recording:
            files, study = finalize_recording(upload.path, out_dir, metadata, request.issue)
            summary = JobResult(files=files, action="recording", study_instance_uid=study,
                                worker=f"{socket.gethostname()}:{os.getpid()}")
        else:
            result = convert(upload.path, out_dir / "video.dcm", metadata=metadata,
                             options=Request(sop=request.sop,  # type: ignore[arg-type]
                                             transcode=request.transcode,  # type: ignore[arg-type]
                                             jobs=settings.chunk_count if pieces else 1,
                                             min_chunk_s=settings.chunk_min_s),
                             overwrite=True, encoded_chunks=pieces[0] if pieces else None,
                             progress=lambda _stage, done: store.progress(job_id, done or 0.0))
            files = tuple(FileResult(name=f.path.name, sop_instance_uid=f.sop_instance_uid,
                                     transfer_syntax_uid=f.transfer_syntax_uid,
                                     frames=f.frames, bytes=f.size_bytes)
                          for f in result.files)
            study = str(dcmread(result.files[0].path,
                                stop_before_pixels=True).StudyInstanceUID)
            summary = JobResult(files=files, action=result.plan.action.value,
                                warnings=tuple(result.warnings), study_instance_uid=study,
                                worker=f"{socket.gethostname()}:{os.getpid()}" + (
                                    f" (joined chunks encoded by {', '.join(pieces[1])})"
                                    if pieces else ""))
        if settings.kos:
            files += (key_images(out_dir, [out_dir / f.name for f in files], metadata),)
            summary = summary.model_copy(update={"files": files})
    except Vid2DcmError as exc:
        notices.append(finish_step(settings, store, unmade, later))
        store.finish(job_id, _noticed(None, notices), str(exc), failure_kind(exc))
        return
    except Exception as exc:  # a job must end in a state, whatever happened
        notices.append(finish_step(settings, store, unmade, later))
        store.finish(job_id, _noticed(None, notices),
                     f"internal error: {type(exc).__name__}", "internal")
        return
    finally:
        if pieces is not None:
            forget_chunks(settings, job_id)
    summary = _noticed(summary, notices) or summary
    destinations = request.destinations or settings.default_destinations
    if not request.destinations and settings.routing is not None:
        decision = routed(settings, order, [out_dir / f.name for f in files])
        assert decision is not None
        destinations = decision.destinations
        summary = summary.model_copy(update={"routing": tuple(decision.explain())})
    if request.unidentified or not destinations:
        if not request.unidentified:  # performed, kept here: the procedure step is complete
            kept = Subject(job_id, request.accession, summary, True)
            summary = _noticed(summary, [finish_step(settings, store, kept, later)]) or summary
        store.finish(job_id, summary, held=request.unidentified)
        return
    # a recording's N-SET may already wait in the outbox: it keeps its attempts and window
    store.await_delivery(job_id, summary, tuple(destinations), keep=NOTICE_KINDS)
    deliver_job(settings, job_id, later)


def try_parcel(settings: ServiceSettings, store: Store, owner: str, parcel: Parcel,
               files: list[Path], later: Later | None) -> tuple[str | None, str | None]:
    """One try of one waiting DICOM parcel of `owner` (a job or an export): take it (no other
    worker sends it meanwhile), send, and record sent / gave up (unknown destination, or the
    delivery window is over) / waiting with the next try backed off and scheduled. Returns
    (new state, error); state None when the parcel was not waiting or another worker holds it."""
    if parcel.state != "waiting" or not store.take_parcel(owner, parcel.destination,
                                                          DELIVERY_LEASE_S):
        return None, None
    receipts, error = send_to(settings, parcel.destination, files)
    now = time.time()
    if error is None:
        store.parcel_tried(owner, parcel.destination, "sent", receipts, None, now)
        return "sent", None
    if error == UNKNOWN_DESTINATION or now - parcel.first_try >= settings.delivery_window_s:
        store.parcel_tried(owner, parcel.destination, "gave up", receipts, error, now)
        return "gave up", error
    delay = backoff(settings, parcel.attempts + 1)
    store.parcel_tried(owner, parcel.destination, "waiting", receipts, error, now + delay)
    if later is not None:
        later(owner, delay)
    return "waiting", error


DELIVERY_LEASE_S = 600.0
"""A worker taking a parcel holds it this long; one that died mid-send frees it after."""


def deliver_job(settings: ServiceSettings, job_id: str, later: Later | None = None) -> None:
    """Try every due parcel of a waiting job once. Sent: recorded. Not sent: tried again
    after a backoff until the retry window (default 24 h) has passed, then given up with a
    plain reason. The same files (same UIDs) go every time, so the PACS keeps one copy."""
    from vid2dcm.apps.gateway.integration import is_notice, retry_notices

    store = open_store(settings)
    job = store.job(job_id)
    if job is not None and job.status in ("done", "failed"):  # its notices (issue 15)
        retry_notices(settings, store, job, later)
        return
    if job is not None:  # a recording's N-SET does not wait for its job
        retry_notices(settings, store, job, later)
    if job is None or job.status != "waiting" or job.result is None:
        return
    files = [settings.outputs / job_id / f.name for f in job.result.files]
    for parcel in store.parcels(job_id):
        if is_notice(parcel.destination):
            continue
        state, error = try_parcel(settings, store, job_id, parcel, files, later)
        if state in (None, "waiting"):
            continue
        record(store, settings, f"worker:{parcel.destination}",
               "delivery" if error is None else "delivery failed", job=job_id,
               study=job.result.study_instance_uid, role="system")
    _conclude(store, job_id, settings, later)


def _conclude(store: Store, job_id: str, settings: ServiceSettings, later: Later | None = None
              ) -> None:
    from vid2dcm.apps.gateway.integration import Subject, finish_step, is_notice

    job = store.job(job_id)
    parcels = [p for p in store.parcels(job_id) if not is_notice(p.destination)]
    if job is None or job.result is None or any(p.state == "waiting" for p in parcels):
        return
    deliveries = tuple(r for p in parcels for r in p.receipts) + tuple(
        DeliveryResult(destination=p.destination, ok=False, message=p.error or "")
        for p in parcels if p.state == "gave up" and not p.receipts)
    result = job.result.model_copy(update={"deliveries": deliveries})
    gave_up = [p for p in parcels if p.state == "gave up"]
    if gave_up:
        first = gave_up[0]
        lost = Subject(job_id, job.request.accession, result, False)
        result = _noticed(result, [finish_step(settings, store, lost, later)]) or result
        store.settle(job_id, result, f"not stored in {first.destination} after "
                                     f"{first.attempts} tries: {first.error}", "delivery")
    else:
        store.settle(job_id, stored(settings, store, job, result, later), None, None)


def stored(settings: ServiceSettings, store: Store, job: Job, result: JobResult,
           later: Later | None = None) -> JobResult:
    """After every parcel of a job was stored: MPPS COMPLETED, the order completed, the ORU
    to the HIS and the ImagingStudy to the FHIR server, each a notice parcel in the outbox
    (retried there); what the first try did goes in the notices."""
    from vid2dcm.apps.gateway.integration import (
        Subject,
        announce,
        find_order,
        finish_step,
        set_status,
    )
    from vid2dcm.orders.order import OrderStatus

    if not result.study_instance_uid:
        return result
    order = find_order(settings, job.request.accession)
    subject = Subject(job.id, job.request.accession, result, True)
    notes = [finish_step(settings, store, subject, later)]
    notes += announce(settings, store, subject, order, later)
    if order is not None:
        set_status(settings, order, OrderStatus.COMPLETED)
    return _noticed(result, notes) or result


def _noticed(result: JobResult | None, notes: list[str]) -> JobResult | None:
    """`result` with these notice lines added (empty lines are things not configured)."""
    lines = tuple(n for n in notes if n)
    if not lines:
        return result
    base = result or JobResult()
    return base.model_copy(update={"notices": base.notices + lines})


SOP_MODALITY = {"photographic": "XC", "endoscopic": "ES", "microscopic": "GM",
                "ultrasound": "US", "sc": "OT"}
"""Modality of the MPPS when the order names none: the one each SOP class writes."""


def key_images(out_dir: Path, paths: list[Path], metadata: Metadata) -> FileResult:
    """A Key Object Selection manifest (delivery.kos) referencing the job's instances,
    delivered with them (the building block of an IHE XDS-I.b manifest)."""
    from pydicom import dcmread

    from vid2dcm.delivery.kos import build_kos

    kos = build_kos(paths, out_dir / "kos.dcm", uid_seed=metadata.uid_seed)
    ds = dcmread(kos, stop_before_pixels=True)
    return FileResult(name=kos.name, sop_instance_uid=str(ds.SOPInstanceUID),
                      transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID), frames=0,
                      bytes=kos.stat().st_size)


UNKNOWN_DESTINATION = "this gateway has no destination of that name"


def send_to(settings: ServiceSettings, name: str, files: list[Path]
            ) -> tuple[tuple[DeliveryResult, ...], str | None]:
    """One attempt: the receipts, and the first problem (None when every file was stored)."""
    from vid2dcm.delivery.destinations import load_destinations
    from vid2dcm.delivery.send import deliver as send

    named = load_destinations(settings.destinations_file) if settings.destinations_file else {}
    if name not in named:
        return (), UNKNOWN_DESTINATION
    try:
        receipts = send(files, named[name])
    except Vid2DcmError as exc:
        return (), str(exc)
    results = tuple(DeliveryResult(destination=name, ok=r.ok, message=r.message,
                                   sop_instance_uid=r.sop_instance_uid, committed=r.committed)
                    for r in receipts)
    failed = [r for r in results if not r.ok]
    return results, failed[0].message if failed else None


def order_fields(settings: ServiceSettings, accession: str) -> dict[str, object]:
    """The patient and study of the order (HL7/FHIR, kept by the gateway) or worklist entry
    with this accession number: both bind a job by the same identity rules."""
    from vid2dcm.apps.gateway.integration import find_order
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.worklist import the_order

    order = find_order(settings, accession)
    if order is not None:
        return order.metadata_fields()
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


TUS_EXPIRY_S = 7 * 24 * 3600
"""Resumable uploads not finished within a week are given up (tus advertises the expiry)."""


def clean_up(settings: ServiceSettings, now: float | None = None) -> list[str]:
    """Delete uploads once every job made from them has succeeded (or they arrived damaged)
    and upload_retention_s has passed, and the outputs of jobs done output_retention_s ago;
    nothing is removed while a job might still need it. Returns the ids removed."""
    store = open_store(settings)
    removed = []
    now = now or time.time()
    for job_id in store.finished_jobs(before=now - settings.output_retention_s):
        folder = settings.outputs / job_id
        if folder.is_dir():
            shutil.rmtree(folder)
            removed.append(job_id)
    for upload_id, path in store.removable_uploads(now - settings.upload_retention_s):
        if path.parent.parent == settings.uploads:
            shutil.rmtree(path.parent, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
            path.with_name(path.name + ".info").unlink(missing_ok=True)
        store.forget_upload(upload_id)
        removed.append(upload_id)
    removed += _expired_partial_uploads(settings, store, now - TUS_EXPIRY_S)
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
