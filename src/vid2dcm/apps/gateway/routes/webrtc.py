"""WebRTC live ingest (aiortc): a browser, or any WebRTC sender, streams its camera to the
gateway, which records it as a recording like a network camera's (apps/gateway/recordings.py):
listed by GET /recordings with its state and pieces, stopped by POST /recordings/{id}/stop
(which closes the MPPS step and makes one job), snapshots by POST /recordings/{id}/snapshot.
The user never holds the file.

Signalling is one request (`POST /webrtc/offer`, SDP offer and the recording's patient in, SDP
answer and the recording id out, no trickle ICE): the page waits for its ICE gathering to
finish. The patient is confirmed before the stream starts (as for POST /recordings), so the
MPPS step can be IN PROGRESS while it records.

The bitstream: capture.webrtc taps the receiver's H.264 access units before decoding, and
capture.pushed keeps them as sent when core.conformance says a DICOM video transfer syntax can
hold them, else encodes the decoded frames (VP8 always; Chromium's Constrained Baseline H.264
too, since DICOM lists H.264 High profiles only). H.264 is put first in the answer (when the
sender offers it), so a sender that can send High profile has its stream kept.
Sessions live in this process (`vid2dcm serve` runs one uvicorn process)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.apps.gateway.deps import AuditDep, QueueDep, Settings, StoreDep, Uploader
from vid2dcm.apps.gateway.jobs import from_worklist
from vid2dcm.apps.gateway.recordings import (
    LiveRecording,
    finish_mpps,
    identity_free,
    new_folder,
    sop_choice,
    start_mpps,
)
from vid2dcm.apps.gateway.routes.jobs import check_identity
from vid2dcm.apps.gateway.routes.recordings import finish, registry
from vid2dcm.capture.pushed import PushedRecorder
from vid2dcm.capture.recorder import RecorderSettings
from vid2dcm.capture.session import RecordingSession
from vid2dcm.capture.sources import SourceKind, SourceSpec
from vid2dcm.capture.webrtc import accept_h264_high, h264_rank, pump, tap
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.core.metadata import Metadata

log = logging.getLogger(__name__)
router = APIRouter(tags=["webrtc"])
MAX_SESSIONS = 8
START_TIMEOUT_S = 20.0
"""An offer whose video never arrives is dropped after this long (MPPS DISCONTINUED)."""
SOURCE = SourceSpec(name="webrtc", kind=SourceKind.WEBRTC, url="", display="WebRTC sender")
_TASKS: set[asyncio.Future[Any]] = set()


class Offer(BaseModel):
    """The SDP offer, and the recording as POST /recordings takes it (less the sources)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sdp: str = Field(max_length=100_000)
    type: Literal["offer"] = "offer"
    sop: Literal["photographic", "endoscopic", "microscopic", "ultrasound", "sc"] = (
        "photographic")
    metadata: Metadata = Metadata()
    accession: str | None = Field(default=None, max_length=16)
    unidentified: bool = False
    destinations: tuple[str, ...] = ()
    prefer: Literal["h264", "vp8"] = "h264"
    """The video codec put first in the answer when the sender offers both."""


class Answer(BaseModel):
    id: str
    """The recording's id (GET/POST /recordings/{id}...)."""
    sdp: str
    type: str


def _prefer(pc: Any, codec: str) -> None:
    """Put the preferred video codec first in the answer (the sender sends the first one),
    H.264 High before Constrained Baseline; RTX entries last (they only repair). aiortc has
    no public way to order an answer (setCodecPreferences must precede the offer that
    creates the transceiver), so the negotiated list is reordered in place."""
    from aiortc.codecs import is_rtx

    def rank(c: Any) -> int:
        if is_rtx(c):
            return 9
        if codec == "h264":
            return h264_rank(c)
        return 0 if c.name.lower() == codec else 3

    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            transceiver._codecs = sorted(transceiver._codecs, key=rank)


def _spawn(coro: Any) -> None:
    task = asyncio.ensure_future(coro)
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


@router.post("/webrtc/offer", response_model=Answer)
async def offer(body: Offer, request: Request, who: Uploader, settings: Settings,
                store: StoreDep, queue: QueueDep, audit: AuditDep) -> Answer:
    """Answer a sender's SDP offer and record its video track as a recording until
    POST /recordings/{id}/stop (identity rules of POST /recordings)."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
    from aiortc.exceptions import (
        InternalError,
        InvalidAccessError,
        InvalidStateError,
        OperationError,
    )

    if "\nm=video " not in body.sdp.replace("\r\n", "\n"):
        raise HTTPException(400, "sdp: the offer carries no video track")
    live = registry(request)
    if sum(1 for r in live.all() if r.status == "recording"
           and isinstance(r.session.recorders[0], PushedRecorder)) >= MAX_SESSIONS:
        raise HTTPException(503, "too many live streams at once; try again shortly")
    check_identity(settings, body.accession, body.metadata, body.unidentified,
                   bool(body.destinations or settings.default_destinations))
    if store.used_bytes() >= settings.quota_bytes:
        raise HTTPException(413, "the gateway's storage quota is used up: no room to record")
    metadata = body.metadata
    if body.accession:
        try:
            metadata = await asyncio.to_thread(from_worklist, settings, body.accession, metadata)
        except Vid2DcmError as exc:
            raise HTTPException(502, f"worklist unavailable: {exc}") from exc
    loop = asyncio.get_running_loop()
    accept_h264_high()
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))

    def close_pc() -> None:  # from the thread that stops the recording
        with contextlib.suppress(RuntimeError):  # the loop has ended: so has the connection
            loop.call_soon_threadsafe(lambda: _spawn(pc.close()))

    recording_id, folder = new_folder(settings)
    session = RecordingSession(
        [SOURCE], folder, identity_free(metadata), sop=sop_choice(body.sop),
        settings=RecorderSettings(max_segment_s=settings.recording_max_segment_s),
        pushed=True, on_stop=close_pc)
    recorder = session.recorders[0]
    assert isinstance(recorder, PushedRecorder)
    recording = LiveRecording(
        id=recording_id, owner=who.name, ward=who.ward, session=session, folder=folder,
        sop=body.sop, destinations=body.destinations, accession=body.accession,
        unidentified=body.unidentified, request_metadata=body.metadata)
    state = {"video": False, "started": False}

    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind != "video" or state["video"]:
            return
        state["video"] = True
        receiver = next((r for r in pc.getReceivers() if r.track is track), None)
        if receiver is None or not tap(receiver, recorder):
            log.warning("webrtc: the received bitstream cannot be tapped: it is re-encoded")
        _spawn(pump(track, recorder))

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        # the sender vanished (page closed, network gone; WebRTC does not come back on its
        # own): what arrived is closed into a complete piece, and the gateway stops the
        # recording itself, so it still becomes a job (MPPS DISCONTINUED, equipment); a
        # stop of ours closes the connection too, and then there is nothing left to do
        if (pc.connectionState in ("failed", "closed") and state["started"]
                and recording.status == "recording"):
            recorder.lost(f"WebRTC connection {pc.connectionState}")
            await asyncio.to_thread(finish, recording, settings, store, queue, audit,
                                    "equipment", "WebRTC sender gone")

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body.sdp, type="offer"))
        _prefer(pc, body.prefer)
        await pc.setLocalDescription(await pc.createAnswer())
    except (ValueError, RuntimeError, InternalError, InvalidAccessError, InvalidStateError,
            OperationError) as exc:  # OperationError: no codec in common
        await pc.close()
        shutil.rmtree(folder, ignore_errors=True)  # nothing is left of a refused offer
        raise HTTPException(400, f"sdp: the offer cannot be answered ({exc})") from exc
    await asyncio.to_thread(start_mpps, settings, recording, metadata)
    session.start()
    live.add(recording)
    state["started"] = True
    loop.call_later(START_TIMEOUT_S, lambda: _spawn(_drop_if_silent(recording)))
    audit("start recording", upload=recording_id, study=session.study_uid)
    local = pc.localDescription
    return Answer(id=recording_id, sdp=local.sdp, type=local.type)


async def _drop_if_silent(recording: LiveRecording) -> None:
    """No picture within START_TIMEOUT_S: the recording ends (MPPS DISCONTINUED, equipment)
    without a job; its empty folder is removed."""
    if recording.state.frames > 0:
        return
    with recording.lock:
        if recording.status != "recording":
            return
        recording.status = "stopping"
    await asyncio.to_thread(recording.session.stop, "no video arrived")
    await asyncio.to_thread(finish_mpps, recording, "equipment")
    recording.status = "stopped"
    with contextlib.suppress(OSError):
        shutil.rmtree(recording.folder)
