"""Jobs: create (with the identity rules), list and show (need to know), cancel, retry,
assign a patient to a held job, download and preview the output. Every call is audited."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException
from fastapi.responses import FileResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask

from vid2dcm.apps.gateway.deps import (
    Admin,
    AuditDep,
    Exporter,
    QueueDep,
    Reader,
    Reviewer,
    Settings,
    StoreDep,
    Uploader,
    visible_job,
)
from vid2dcm.apps.gateway.export import (
    checked_profile,
    export_job,
    finished_job,
    receipts_of,
    research_destination,
)
from vid2dcm.apps.gateway.jobs import order_fields
from vid2dcm.apps.gateway.models import (
    Created,
    ExportView,
    JobRequest,
    JobView,
    Notification,
    PublicRequest,
    StatusAnswer,
)
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Export, Job, Parcel, Store
from vid2dcm.core.errors import UsageError, Vid2DcmError
from vid2dcm.core.metadata import Metadata
from vid2dcm.reading.reader import VideoObject, open_video_object

CHUNK = 1 << 20
IDENTITY = ("patient_id", "patient_name")
NOT_IDENTITY = frozenset({"uid_seed", "uid_root"})
"""Typed fields that say nothing about who or what the video is of."""

router = APIRouter(tags=["jobs"])


class AssignRequest(BaseModel):
    """The patient of a held job: a worklist order, or typed fields with ID and name."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    accession: str | None = Field(default=None, max_length=16)
    metadata: Metadata = Metadata()


def view(job: Job, parcels: list[Parcel]) -> JobView:
    from vid2dcm.apps.gateway.integration import is_notice

    notices = tuple(Notification(name=p.destination, state=p.state, attempts=p.attempts,
                                 error=p.error,
                                 next_try=p.next_try if p.state == "waiting" else None)
                    for p in parcels if is_notice(p.destination))
    parcels = [p for p in parcels if not is_notice(p.destination)]
    waiting = [p.next_try for p in parcels if p.state == "waiting"]
    next_try = min(waiting) if waiting else None
    return JobView(id=job.id, upload_id=job.upload_id, status=job.status,
                   progress=job.progress, request=PublicRequest.of(job.request),
                   result=job.result, error=job.error, failure_kind=job.failure_kind,
                   created=job.created, started=job.started, finished=job.finished,
                   attempts=job.attempts, owner=job.owner,
                   state_text=state_text(job, parcels, next_try), next_try=next_try,
                   notifications=notices)


PLAIN_FAILURES = {
    "unreadable input": "the file is not a video this gateway can read; check it plays, "
                        "then upload it again",
    "not storable": "this video cannot be stored as DICOM as it is; ask IT",
    "delivery": "the PACS did not take it; IT has been told in the log, an admin can retry",
    "output": "the gateway could not write the result; ask IT",
    "request": "the request was not valid; check the patient and destination",
    "internal": "something went wrong in the gateway; ask IT",
}


def state_text(job: Job, parcels: list[Parcel], next_try: float | None) -> str:
    """What the job card says: words, not codes, never a server path or an errno."""
    if job.status == "queued":
        return "queued"
    if job.status == "running":
        return "converting"
    if job.status == "waiting":
        if next_try is None or not any(p.attempts for p in parcels):
            return "sending to PACS"
        at = time.strftime("%H:%M:%S", time.localtime(next_try))
        return f"waiting for PACS (next try at {at})"
    if job.status == "held":
        return "held: converted, waiting for a reviewer to confirm the patient"
    if job.status == "done":
        deliveries = job.result.deliveries if job.result else ()
        if not deliveries:
            return "converted (no destination)"
        if all(d.committed for d in deliveries):
            return "archived in PACS"
        return "stored in PACS"
    if job.status == "cancelled":
        return "cancelled"
    return f"failed: {PLAIN_FAILURES.get(job.failure_kind or 'internal', 'ask IT')}"


@router.post("/jobs", status_code=201, response_model=Created)
def create_job(request: JobRequest, who: Uploader, store: StoreDep, settings: Settings,
               queue: QueueDep, audit: AuditDep) -> Created:
    if request.issue:
        raise HTTPException(400, "issue: set by the gateway, not by a client")
    upload = store.upload(request.upload_id)
    if upload is None or not who.sees(upload.owner, ""):
        raise HTTPException(404, "no such upload")
    if upload.problem:
        raise HTTPException(409, f"the upload cannot be used: {upload.problem}")
    check_identity(settings, request.accession, request.metadata, request.unidentified,
                   bool(request.destinations or settings.default_destinations
                        or settings.routing))
    job_id = store.add_job(request, owner=who.name, ward=who.ward)
    audit("create job", job=job_id, upload=request.upload_id,
          study=request.metadata.study_instance_uid)
    queue.enqueue(job_id)
    return Created(id=job_id)


def check_identity(settings: ServiceSettings, accession: str | None, metadata: Metadata,
                   unidentified: bool, to_pacs: bool) -> None:
    """Identity is never guessed. An order plus typed fields that differ from it: 409, naming
    the fields. A job bound for a PACS with neither an order nor a typed Patient ID and Name:
    422, unless the client says the patient is unknown (`unidentified`), and then the job is
    held after conversion, never delivered, until a reviewer assigns the patient."""
    typed = {k: v for k, v in metadata.model_dump(exclude_unset=True).items()
             if k not in NOT_IDENTITY}
    if accession:
        try:
            order = order_fields(settings, accession)
        except UsageError as exc:
            raise HTTPException(422, str(exc)) from exc
        except Vid2DcmError as exc:
            raise HTTPException(502, f"worklist unavailable: {exc}") from exc
        differ = sorted(k for k, v in typed.items() if k in order and not _same(v, order[k]))
        if differ:
            raise HTTPException(409, f"the typed {', '.join(differ)} differ(s) from order "
                                     f"{accession}: clear the typed fields or pick the right "
                                     "order")
        identified = True
    else:
        identified = all(typed.get(k) for k in IDENTITY)
        if not identified and any(typed.get(k) for k in IDENTITY):
            missing = [k for k in IDENTITY if not typed.get(k)]
            raise HTTPException(422, f"both Patient ID and Patient Name are needed "
                                     f"({', '.join(missing)} is empty)")
    if identified and unidentified:
        raise HTTPException(422, "the request names a patient and says the patient is "
                                 "unknown (unidentified); choose one")
    if to_pacs and not identified and not unidentified:
        raise HTTPException(422, "no patient: choose a worklist order or type Patient ID and "
                                 "Name; if the patient is not known yet, send "
                                 '"unidentified": true and the job is held until a reviewer '
                                 "assigns the patient")


def _same(typed: object, ordered: object) -> bool:
    def norm(value: object) -> str:
        if isinstance(value, date):
            return value.strftime("%Y%m%d")
        return str(value).strip().rstrip("^").upper()
    return norm(typed) == norm(ordered)


@router.get("/jobs", response_model=list[JobView])
def list_jobs(who: Reader, store: StoreDep) -> list[JobView]:
    """The newest jobs this caller may see (an uploader: their own). Not audited: a job view
    carries no patient data, and the page polls this every few seconds."""
    jobs = store.jobs(owner=None if who.sees_all_jobs else who.name, ward=who.ward)
    return [view(job, store.parcels(job.id)) for job in jobs]


@router.get("/jobs/{job_id}", response_model=JobView)
def get_job(job_id: str, who: Reader, store: StoreDep, audit: AuditDep) -> JobView:
    job = visible_job(store, who, job_id)
    audit("view job", job=job.id)
    return view(job, store.parcels(job.id))


@router.post("/jobs/{job_id}/cancel", response_model=StatusAnswer)
def cancel(job_id: str, who: Admin, store: StoreDep, audit: AuditDep) -> StatusAnswer:
    job = visible_job(store, who, job_id)
    if not store.set_status(job.id, "cancelled", ("queued", "held", "waiting")):
        raise HTTPException(409, "only a queued, held or waiting job can be cancelled")
    audit("cancel job", job=job.id)
    return StatusAnswer(status="cancelled")


@router.post("/jobs/{job_id}/retry", response_model=StatusAnswer)
def retry(job_id: str, who: Admin, store: StoreDep, queue: QueueDep,
          audit: AuditDep) -> StatusAnswer:
    job = visible_job(store, who, job_id)
    if not store.set_status(job.id, "queued", ("failed", "cancelled")):
        raise HTTPException(409, "only a failed or cancelled job can be retried")
    audit("retry job", job=job.id)
    queue.enqueue(job.id)
    return StatusAnswer(status="queued")


@router.post("/jobs/{job_id}/assign", response_model=StatusAnswer)
def assign(job_id: str, body: AssignRequest, who: Reviewer, store: StoreDep,
           settings: Settings, queue: QueueDep, audit: AuditDep) -> StatusAnswer:
    """Bind a held job to its patient: the job is converted again with the patient's
    identity (and the order's study, if an accession is given) under new UIDs, then
    delivered. The held output was never sent anywhere."""
    job = visible_job(store, who, job_id)
    if job.status != "held":
        raise HTTPException(409, "only a held job can be assigned a patient")
    if not body.accession and not all(getattr(body.metadata, k) for k in IDENTITY):
        raise HTTPException(422, "give an accession number, or metadata with Patient ID and "
                                 "Name")
    check_identity(settings, body.accession, body.metadata, False, True)
    request = job.request.model_copy(update={
        "accession": body.accession, "metadata": body.metadata, "unidentified": False,
        "issue": job.request.issue + 1})
    if not store.reissue(job.id, JobRequest.model_validate(request.model_dump())):
        raise HTTPException(409, "the job changed meanwhile; reload and try again")
    audit("assign patient", job=job.id, study=body.metadata.study_instance_uid)
    queue.enqueue(job.id)
    return StatusAnswer(status="queued")


def output_file(settings: ServiceSettings, job: Job, index: int) -> Path:
    if job.result is None:
        raise HTTPException(404, "no files for this job")
    if not 0 <= index < len(job.result.files):
        raise HTTPException(404, "no such file")
    path = Path(settings.outputs / job.id / job.result.files[index].name)
    if not path.exists():
        raise HTTPException(410, "the converted video was removed after the retention time; "
                                 "the PACS has it")
    return path


@router.get("/jobs/{job_id}/files/{index}")
def download(job_id: str, index: int, who: Reader, store: StoreDep, settings: Settings,
             audit: AuditDep) -> FileResponse:
    job = visible_job(store, who, job_id)
    path = output_file(settings, job, index)
    audit("download", job=job.id)
    return FileResponse(path, media_type="application/dicom", filename=path.name)


@router.post("/jobs/{job_id}/export")
def export(job_id: str, who: Exporter, store: StoreDep, settings: Settings, audit: AuditDep,
           profile: str = "basic") -> FileResponse:
    """The job's instances de-identified (PS3.15 Annex E, vid2dcm deidentify) as a ZIP of
    DICOM files and their JSON reports (reviewers and admins)."""
    job = visible_job(store, who, job_id)
    archive, folder = export_job(settings, store, job.id, profile)
    audit(f"export de-identified ({profile})", job=job.id)
    return FileResponse(archive, media_type="application/zip",
                        filename=f"deidentified-{job.id}.zip",
                        background=BackgroundTask(shutil.rmtree, folder, ignore_errors=True))


@router.post("/jobs/{job_id}/export/send", status_code=202, response_model=ExportView)
def export_send(job_id: str, who: Exporter, store: StoreDep, settings: Settings,
                queue: QueueDep, audit: AuditDep, profile: str = "basic") -> ExportView:
    """Send the job's instances, de-identified, to the research destination of the settings
    ([deidentify] research_destination) by the normal delivery path (outbox, retries). The
    worker de-identifies and sends; GET /exports/{id} tells how it went."""
    job = finished_job(store, visible_job(store, who, job_id).id)
    destination = research_destination(settings)
    export_id = store.add_export(job.id, checked_profile(profile), destination, who.name)
    audit(f"export de-identified ({profile}) to {destination}", job=job.id)
    queue.enqueue_export(export_id)
    return export_view(store, export_id)


class ExportConfig(BaseModel):
    """What the staff page needs to offer exports (reviewers and admins)."""

    model_config = ConfigDict(frozen=True)
    research: bool
    """A research destination is configured ([deidentify] research_destination): the page
    offers "Send to research". Its name and address stay on the server."""


@router.get("/export/config", response_model=ExportConfig)
def export_config(_who: Reviewer, settings: Settings) -> ExportConfig:
    return ExportConfig(research=bool(settings.deidentify
                                      and settings.deidentify.research_destination))


@router.get("/jobs/{job_id}/exports", response_model=list[ExportView])
def job_exports(job_id: str, who: Exporter, store: StoreDep) -> list[ExportView]:
    """The research exports of a job, oldest first (no patient data: pseudonymous UIDs)."""
    job = visible_job(store, who, job_id)
    return [export_view(store, e.id, e) for e in store.exports(job.id)]


@router.get("/exports/{export_id}", response_model=ExportView)
def get_export(export_id: str, _who: Reviewer, store: StoreDep) -> ExportView:
    if not re.fullmatch(r"[0-9a-f]{32}", export_id):
        raise HTTPException(400, "malformed export id")
    return export_view(store, export_id)


def export_view(store: Store, export_id: str, export: Export | None = None) -> ExportView:
    export = export or store.export(export_id)
    if export is None:
        raise HTTPException(404, "no such export")
    receipts, attempts, next_try, problem = receipts_of(store, export.id)
    return ExportView(id=export.id, job=export.job, profile=export.profile,
                      destination=export.destination, who=export.who, state=export.state,
                      created=export.created, finished=export.finished,
                      error=export.error or problem,
                      result=export.result, deliveries=receipts, attempts=attempts,
                      next_try=next_try)


@router.get("/jobs/{job_id}/files/{index}/video")
def preview(job_id: str, index: int, who: Reader, store: StoreDep, settings: Settings,
            audit: AuditDep,
            range_header: Annotated[str | None, Header(alias="range")] = None) -> Response:
    """The embedded video of a stored instance, with HTTP Range support, so a browser can
    play and seek it without downloading the whole file first."""
    job = visible_job(store, who, job_id)
    path = output_file(settings, job, index)
    video = open_video_object(path)
    length = video.bitstream_length
    start, end = byte_range(range_header, length)
    media = "video/mp4" if _is_mp4(video) else "video/mp2t"
    if start == 0:
        audit("preview", job=job.id)

    def body() -> Iterator[bytes]:
        with video.open_bitstream() as raw:
            raw.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = raw.read(min(CHUNK, left))
                if not chunk:
                    return
                left -= len(chunk)
                yield chunk

    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)}
    if range_header:
        headers["Content-Range"] = f"bytes {start}-{end}/{length}"
    return StreamingResponse(body(), status_code=206 if range_header else 200,
                             media_type=media, headers=headers)


def byte_range(header: str | None, length: int) -> tuple[int, int]:
    if not header:
        return 0, length - 1
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or not (match[1] or match[2]):
        raise HTTPException(416, "unsupported Range", headers={"Content-Range":
                                                              f"bytes */{length}"})
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), length - 1) if match[2] else length - 1
    else:
        start, end = max(0, length - int(match[2])), length - 1
    if start > end or start >= length:
        raise HTTPException(416, "Range not satisfiable",
                            headers={"Content-Range": f"bytes */{length}"})
    return start, end


def _is_mp4(video: VideoObject) -> bool:
    with video.open_bitstream() as raw:
        return raw.read(8)[4:8] == b"ftyp"
