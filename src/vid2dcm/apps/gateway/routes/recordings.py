"""Recordings: start one from configured sources for a patient (the identity rules of jobs),
take stills, stop it (it becomes a job), and watch it live. Need to know as for jobs: an
uploader sees the recordings they (or their ward) started; another's is 404. Every change is
audited; the polled views are not (they carry no patient data)."""

from __future__ import annotations

import re
import weakref
from typing import Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.apps.gateway.auth import Principal
from vid2dcm.apps.gateway.deps import (
    Audit,
    AuditDep,
    QueueDep,
    Reader,
    Settings,
    StoreDep,
    Uploader,
)
from vid2dcm.apps.gateway.jobs import from_worklist
from vid2dcm.apps.gateway.models import Created, JobRequest, StatusAnswer
from vid2dcm.apps.gateway.queue import JobQueue
from vid2dcm.apps.gateway.recordings import (
    LiveRecording,
    Recordings,
    close_mpps,
    configured_source,
    folder_bytes,
    identity_free,
    mpps_now,
    new_folder,
    sop_choice,
    start_mpps,
)
from vid2dcm.apps.gateway.routes.jobs import check_identity
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store
from vid2dcm.capture.finalize import MANIFEST
from vid2dcm.capture.recorder import RecorderSettings
from vid2dcm.capture.session import RecordingSession
from vid2dcm.core.errors import UsageError, Vid2DcmError
from vid2dcm.core.metadata import Metadata

_REGISTRIES: weakref.WeakSet[Recordings] = weakref.WeakSet()


def _stop_all() -> None:
    """A gateway shutting down stops its recordings cleanly (each folder keeps its manifest
    and closed pieces; `vid2dcm record --recover DIR` turns it into DICOM)."""
    for live in list(_REGISTRIES):
        live.stop_all()


router = APIRouter(tags=["recordings"], on_shutdown=[_stop_all])

SOURCE_NAME = r"^[A-Za-z][A-Za-z0-9_.-]{0,31}$"
"""A configured source's name; anything URL-like fails this pattern (400)."""


class RecordingRequest(BaseModel):
    """What a client may ask: source names from the gateway's settings, the patient as for a
    job (an order's accession, typed fields, or unidentified), the IOD and destinations."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sources: tuple[str, ...] = Field(min_length=1, max_length=8)
    metadata: Metadata = Metadata()
    accession: str | None = Field(default=None, max_length=16)
    unidentified: bool = False
    sop: Literal["photographic", "endoscopic", "microscopic", "ultrasound", "sc"] = (
        "photographic")
    destinations: tuple[str, ...] = ()


class StopRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    discontinued: Literal["equipment", "patient", "cancelled"] | None = None
    """Set when the procedure was not completed: MPPS DISCONTINUED with this reason (CID
    9300); what was recorded is still stored."""


class SourceView(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    status: str
    bytes: int
    frames: int
    duration_s: float
    reconnects: int
    snapshots: int
    last_error: str | None
    bitstream: str | None = None
    """A WebRTC source: the received bitstream kept as sent, or re-encoded and why."""


class RecordingView(BaseModel):
    """A recording as the API shows it: no patient data."""

    model_config = ConfigDict(frozen=True)
    id: str
    owner: str
    state: str
    """recording, stopping, stopped."""
    started: float
    elapsed_s: float
    bytes: int
    frames: int
    duration_s: float
    reconnects: int
    snapshots: int
    sources: tuple[SourceView, ...]
    stop_reason: str | None
    job_id: str | None
    mpps: str


def registry(request: Request) -> Recordings:
    """The app's recordings (made on first use, so create_app needs no change but its
    router)."""
    state = request.app.state
    if not hasattr(state, "recordings"):
        state.recordings = Recordings()
        _REGISTRIES.add(state.recordings)
    found: Recordings = state.recordings
    return found


def view(r: LiveRecording, store: Store | None = None) -> RecordingView:
    s = r.state
    sources = tuple(SourceView(name=x.source, status=x.status, bytes=x.bytes, frames=x.frames,
                               duration_s=round(x.duration_s, 3), reconnects=x.reconnects,
                               snapshots=x.snapshots, last_error=x.last_error,
                               bitstream=x.bitstream)
                    for x in s.sources)
    return RecordingView(
        id=r.id, owner=r.owner, state=r.status, started=r.started,
        elapsed_s=round(s.elapsed_s, 3), bytes=s.bytes, frames=s.frames,
        duration_s=round(max((x.duration_s for x in s.sources), default=0.0), 3),
        reconnects=sum(x.reconnects for x in s.sources),
        snapshots=sum(x.snapshots for x in s.sources), sources=sources,
        stop_reason=s.stop_reason, job_id=r.job_id,
        mpps=mpps_now(r, store) if store is not None else r.mpps)


def visible(request: Request, who: Principal, recording_id: str) -> LiveRecording:
    """The recording if this caller may see it; another uploader's is 404, as for jobs."""
    if not re.fullmatch(r"[0-9a-f]{32}", recording_id):
        raise HTTPException(400, "malformed recording id")
    found = registry(request).get(recording_id)
    if found is None or not who.sees(found.owner, found.ward):
        raise HTTPException(404, "no such recording")
    return found


@router.post("/recordings", status_code=201, response_model=Created)
def start(body: RecordingRequest, request: Request, who: Uploader, settings: Settings,
          store: StoreDep, audit: AuditDep) -> Created:
    if len(set(body.sources)) != len(body.sources):
        raise HTTPException(422, "a source is named twice")
    for name in body.sources:
        if not re.fullmatch(SOURCE_NAME, name):
            raise HTTPException(400, "sources: names of configured sources only, not URLs")
    try:
        specs = [configured_source(settings, name) for name in body.sources]
    except UsageError as exc:
        raise HTTPException(422, str(exc)) from exc
    check_identity(settings, body.accession, body.metadata, body.unidentified,
                   bool(body.destinations or settings.default_destinations))
    if store.used_bytes() >= settings.quota_bytes:
        raise HTTPException(413, "the gateway's storage quota is used up: no room to record")
    metadata = body.metadata
    if body.accession:
        try:
            metadata = from_worklist(settings, body.accession, metadata)
        except Vid2DcmError as exc:
            raise HTTPException(502, f"worklist unavailable: {exc}") from exc
    recording_id, folder = new_folder(settings)
    try:
        session = RecordingSession(
            specs, folder, identity_free(metadata), sop=sop_choice(body.sop),
            settings=RecorderSettings(max_segment_s=settings.recording_max_segment_s))
    except Vid2DcmError as exc:
        raise HTTPException(422, str(exc)) from exc
    recording = LiveRecording(
        id=recording_id, owner=who.name, ward=who.ward, session=session, folder=folder,
        sop=body.sop, destinations=body.destinations, accession=body.accession,
        unidentified=body.unidentified, request_metadata=body.metadata)
    start_mpps(settings, recording, metadata)
    session.start()
    registry(request).add(recording)
    audit("start recording", upload=recording_id, study=session.study_uid)
    return Created(id=recording_id)


@router.get("/recordings", response_model=list[RecordingView])
def list_recordings(request: Request, who: Reader, store: StoreDep) -> list[RecordingView]:
    """The recordings this caller may see, newest first, with live state. Not audited: no
    patient data, and the page polls it."""
    return [view(r, store) for r in registry(request).all() if who.sees(r.owner, r.ward)]


@router.get("/recordings/sources", response_model=list[str])
def sources(who: Uploader, settings: Settings) -> list[str]:
    """The names of the sources this gateway records from (never their addresses)."""
    return sorted(settings.recording_sources)


@router.get("/recordings/{recording_id}", response_model=RecordingView)
def get_recording(recording_id: str, request: Request, who: Reader, store: StoreDep
                  ) -> RecordingView:
    return view(visible(request, who, recording_id), store)


@router.post("/recordings/{recording_id}/snapshot", response_model=StatusAnswer)
def snapshot(recording_id: str, request: Request, who: Uploader, audit: AuditDep,
             source: str | None = None) -> StatusAnswer:
    """A still of the current frame (of one source, or of every source), stored in the same
    study when the recording is stopped."""
    recording = visible(request, who, recording_id)
    if recording.status != "recording":
        raise HTTPException(409, "the recording has stopped")
    if source is not None and source not in {s.name for s in recording.session.manifest.sources}:
        raise HTTPException(404, "no such source in this recording")
    recording.session.snapshot(source)
    recording.snapshots += 1
    audit("snapshot", upload=recording.id)
    return StatusAnswer(status="recording")


@router.post("/recordings/{recording_id}/stop", response_model=StatusAnswer)
def stop(recording_id: str, request: Request, who: Uploader, settings: Settings,
         store: StoreDep, queue: QueueDep, audit: AuditDep,
         body: StopRequest | None = None) -> StatusAnswer:
    """Stop the sources, close the MPPS step, and hand the recording to the worker as a job
    (like an upload): it is converted, then delivered or held by the same rules."""
    recording = visible(request, who, recording_id)
    if not finish(recording, settings, store, queue, audit,
                  body.discontinued if body else None):
        raise HTTPException(409, "the recording was already stopped")
    return StatusAnswer(status="stopped")


def finish(recording: LiveRecording, settings: ServiceSettings, store: Store, queue: JobQueue,
           audit: Audit, discontinued: str | None = None, reason: str = "stopped") -> bool:
    """Stop the sources, close the MPPS step and queue the job; False when another stop got
    there first. Also what the gateway does itself when a WebRTC sender goes away."""
    with recording.lock:
        if recording.status != "recording":
            return False
        recording.status = "stopping"
    recording.session.stop(reason)
    own_stop = recording.session.manifest.stop_reason not in (None, "stopped")
    nothing = recording.state.frames == 0  # no source ever sent a picture
    mpps_reason = discontinued or ("equipment" if own_stop or nothing else None)
    recording.job_id = to_job(settings, store, recording)
    close_mpps(settings, store, recording, mpps_reason, queue.later)  # retried in the outbox
    recording.status = "stopped"
    audit("stop recording", job=recording.job_id, upload=recording.id,
          study=recording.session.study_uid)
    audit("create job", job=recording.job_id, upload=recording.id,
          study=recording.session.study_uid)
    queue.enqueue(recording.job_id)
    return True


def to_job(settings: ServiceSettings, store: Store, recording: LiveRecording) -> str:
    """The recording folder becomes an upload of its owner (its manifest is the upload's
    path), and a job of that upload with the recording's patient, IOD and destinations."""
    upload_id = store.add_upload("recording", recording.folder / MANIFEST,
                                 folder_bytes(recording.folder), upload_id=recording.id,
                                 owner=recording.owner)
    job = JobRequest(upload_id=upload_id, metadata=recording.request_metadata,
                     sop=recording.sop,  # type: ignore[arg-type]
                     destinations=recording.destinations, accession=recording.accession,
                     unidentified=recording.unidentified)
    return store.add_job(job, owner=recording.owner, ward=recording.ward)
