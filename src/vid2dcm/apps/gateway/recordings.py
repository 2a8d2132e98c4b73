"""Live recordings in the gateway: sources are names from the gateway's settings (never a URL
from a client, so a client cannot make the gateway connect anywhere), one
capture.session.RecordingSession per recording, and a recording that stops becomes an ordinary
job whose "upload" is the recording folder (same identity rules, outbox, delivery and audit).

Why the session runs in the gateway process and not in a worker: a recording is a long-lived,
stateful thing that staff steer while it runs (snapshot, stop) and watch (bytes, frames,
reconnects). huey workers run tasks to completion with no channel back into a running task,
and a task would hold a worker slot for the whole procedure. The recorder threads only copy
packets (no decoding unless the source codec is not storable), so they are cheap in the web
process; the expensive part, turning the pieces into DICOM, happens after stop, in the worker,
as a job. Consequence: recordings are held in memory by the one gateway process; if it
restarts mid-recording the folder stays in data/uploads and can be finalised with
`vid2dcm record --recover`.

MPPS (PS3.4 F.7): when `recording_mpps` is set, N-CREATE IN PROGRESS at start and N-SET
COMPLETED (or DISCONTINUED with a CID 9300 reason) at stop, listing one Performed Series per
source; the N-SET is a notice of the recording's job in the outbox, retried while the RIS is
down (close_mpps). The series' image references are left empty (Referenced Image Sequence is Type 2,
PS3.4 F.7.2.2.2): the instances are only made after stop, by the worker.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from vid2dcm.apps.gateway.models import FileResult
from vid2dcm.apps.gateway.outbox import Later
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store
from vid2dcm.capture.finalize import MANIFEST, finalize
from vid2dcm.capture.pieces import SessionManifest, write_json
from vid2dcm.capture.session import RecordingSession, SessionState
from vid2dcm.capture.sources import SourceSpec, parse_source
from vid2dcm.core.errors import UsageError, Vid2DcmError
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import Metadata
from vid2dcm.core.uids import UidSource

MODALITY = {"endoscopic": "ES", "photographic": "XC", "microscopic": "GM", "ultrasound": "US",
            "sc": "OT"}
"""The MPPS Modality for the IOD the recording will become."""


def configured_source(settings: ServiceSettings, name: str) -> SourceSpec:
    """The source configured under this name; UsageError when there is none."""
    url = settings.recording_sources.get(name)
    if url is None:
        raise UsageError(f"this gateway has no recording source named {name!r}")
    spec = parse_source(f"{name}={url}")
    return spec


@dataclass
class LiveRecording:
    """One recording the gateway runs: who started it, the session, and what became of it."""

    id: str
    owner: str
    ward: str
    session: RecordingSession
    folder: Path
    sop: str
    destinations: tuple[str, ...]
    accession: str | None
    unidentified: bool
    request_metadata: Metadata
    """The metadata as the client typed it (what the job will carry)."""
    started: float = field(default_factory=time.time)
    status: str = "recording"
    """recording, stopping, stopped."""
    job_id: str | None = None
    mpps: str = "off"
    """off, in progress, completed, discontinued, or failed: <reason>."""
    mpps_step: object | None = None
    mpps_final: str = ""
    """completed or discontinued: what the N-SET at stop says (sent or still retried)."""
    snapshots: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def state(self) -> SessionState:
        return self.session.state


class Recordings:
    """The gateway's running and recently stopped recordings (in memory, per process)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._all: dict[str, LiveRecording] = {}

    KEEP_S = 12 * 3600
    """A stopped recording stays listed this long (one shift); its job stays in the store."""

    def add(self, recording: LiveRecording) -> None:
        with self._lock:
            old = time.time() - self.KEEP_S
            for rid in [r.id for r in self._all.values()
                        if r.status == "stopped" and r.started < old]:
                del self._all[rid]
            self._all[recording.id] = recording

    def get(self, recording_id: str) -> LiveRecording | None:
        with self._lock:
            return self._all.get(recording_id)

    def all(self) -> list[LiveRecording]:
        with self._lock:
            return sorted(self._all.values(), key=lambda r: r.started, reverse=True)

    def stop_all(self) -> None:
        for r in self.all():
            if r.status == "recording":
                r.session.stop("gateway stopped")


def new_folder(settings: ServiceSettings) -> tuple[str, Path]:
    """The recording's id and folder: data/uploads/<id>/, so the upload clean-up removes it
    with the rest once its job is done and the retention time has passed."""
    recording_id = uuid.uuid4().hex
    return recording_id, settings.uploads / recording_id


def start_mpps(settings: ServiceSettings, recording: LiveRecording, metadata: Metadata) -> None:
    """N-CREATE IN PROGRESS; a RIS that is down does not stop the procedure being recorded
    (the failure shows in the recording's state)."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.mpps import start_procedure_step

    if not settings.recording_mpps or recording.unidentified:
        return
    try:
        dest = parse_destination(settings.recording_mpps, settings.destinations_file)
        recording.mpps_step = start_procedure_step(
            dest, metadata, study_instance_uid=recording.session.study_uid,
            modality=MODALITY.get(recording.sop, "OT"))
        recording.mpps = "in progress"
    except Vid2DcmError as exc:
        recording.mpps = f"failed: {exc}"


def finish_mpps(recording: LiveRecording, discontinued: str | None) -> None:
    """N-SET COMPLETED, or DISCONTINUED with the reason (a recorder that stopped on its own,
    e.g. the disk guard, counts as equipment failure); one try. For a recording that made no
    job (a WebRTC offer that never sent a picture); one that did goes through close_mpps."""
    from vid2dcm.delivery.transports.mpps import (
        PerformedSeries,
        ProcedureStep,
        complete_procedure_step,
        discontinue_procedure_step,
    )

    step = recording.mpps_step
    if not isinstance(step, ProcedureStep):
        return
    series = [PerformedSeries(s.series_instance_uid, s.name, ())
              for s in recording.session.manifest.sources]
    try:
        if discontinued:
            discontinue_procedure_step(step, series, discontinued)
            recording.mpps = "discontinued"
        else:
            complete_procedure_step(step, series)
            recording.mpps = "completed"
    except Vid2DcmError as exc:
        recording.mpps = f"failed: {exc}"


def close_mpps(settings: ServiceSettings, store: Store, recording: LiveRecording,
               discontinued: str | None, later: Later | None = None) -> None:
    """At stop, once the recording's job exists: the N-SET as a notice of that job in the
    outbox (integration.end_recording_step), so a RIS that is down at stop still gets it,
    once, when it is back. The recording's `mpps` says what happened to the first try."""
    from vid2dcm.apps.gateway.integration import end_recording_step
    from vid2dcm.delivery.transports.mpps import PerformedSeries, ProcedureStep

    step = recording.mpps_step
    if not isinstance(step, ProcedureStep) or recording.job_id is None:
        return
    series = [PerformedSeries(s.series_instance_uid, s.name, ())
              for s in recording.session.manifest.sources]
    parcel = end_recording_step(settings, store, recording.job_id, recording.accession, step,
                                series, discontinued, later)
    recording.mpps_final = "discontinued" if discontinued else "completed"
    _show(recording, parcel.state, parcel.error)


RETRYING = "; will be tried again"


def _show(recording: LiveRecording, state: str, error: str | None) -> None:
    if state == "sent":
        recording.mpps = recording.mpps_final
    elif state == "waiting":
        recording.mpps = f"{recording.mpps_final}, not sent yet: {error}{RETRYING}"
    else:
        recording.mpps = f"failed: {error}"


def mpps_now(recording: LiveRecording, store: Store) -> str:
    """The recording's MPPS state, following its N-SET parcel while the outbox retries it."""
    if recording.job_id and recording.mpps.endswith(RETRYING):
        for parcel in store.parcels(recording.job_id):
            if parcel.destination.startswith("mpps:"):
                _show(recording, parcel.state, parcel.error)
    return recording.mpps


def identity_free(metadata: Metadata) -> Metadata:
    """What the recording folder keeps while it records: the UIDs' inputs only. The patient
    and order live in the job store (sealed) and in memory; they are written into the
    manifest only for the moment the worker finalises it (privacy at rest)."""
    return Metadata(study_instance_uid=metadata.study_instance_uid,
                    series_number=metadata.series_number, uid_root=metadata.uid_root)


def is_recording(path: Path) -> bool:
    """An upload that is a recording folder (its path is the folder's manifest)."""
    return path.name == MANIFEST


def finalize_recording(manifest_path: Path, out_dir: Path, metadata: Metadata, issue: int
                       ) -> tuple[tuple[FileResult, ...], str]:
    """What the worker does for a recording job: the job's patient and order go into the
    manifest (a held recording assigned later gets new study and series UIDs, issue > 0, as
    an upload's job does), then capture.finalize makes one series per source (plus stills).
    Returns the files and the Study Instance UID."""
    from pydicom import dcmread

    folder = manifest_path.parent
    manifest = SessionManifest.model_validate_json(manifest_path.read_text("utf-8"))
    if issue > 0:
        uids = UidSource(metadata.uid_root, metadata.uid_seed)
        manifest.study_instance_uid = metadata.study_instance_uid or uids.new("study")
        manifest.sources = [s.model_copy(update={
            "series_instance_uid": uids.new(f"series-{s.name}")}) for s in manifest.sources]
    # uid_seed stays per series (finalize seeds every piece from its series UID)
    manifest.metadata = metadata.model_copy(update={
        "uid_seed": None, "study_instance_uid": manifest.study_instance_uid})
    manifest.finalized = False
    write_json(manifest_path, manifest)
    try:
        result = finalize(folder, out_dir, overwrite=True)
    finally:  # the patient leaves the folder again (a re-run or an assign writes it anew)
        done = SessionManifest.model_validate_json(manifest_path.read_text("utf-8"))
        done.metadata = identity_free(done.metadata)
        write_json(manifest_path, done)
    files = []
    for path in result.files:
        ds = dcmread(path, stop_before_pixels=True)
        files.append(FileResult(name=path.name, sop_instance_uid=str(ds.SOPInstanceUID),
                                transfer_syntax_uid=str(ds.file_meta.TransferSyntaxUID),
                                frames=int(getattr(ds, "NumberOfFrames", 1) or 1),
                                bytes=path.stat().st_size))
    return tuple(files), result.study_instance_uid


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def sop_choice(sop: str) -> SopChoice:
    return SopChoice(sop)
