"""WebRTC live ingest (aiortc): a browser, or any WebRTC sender, streams its camera to the
gateway, which records the received video track into a capture piece under the data folder
(the user never holds the file); on stop the piece becomes an upload owned by the sender and a
job is created with the same identity rules as POST /jobs.

Signalling is one request (`POST /webrtc/offer`, SDP offer in, SDP answer out, no trickle ICE):
the page waits for its ICE gathering to finish, so no second round trip is needed. aiortc
hands over decoded frames only, not the received RTP payload, so the sender's bitstream
cannot be kept as it is: `PieceWriter` encodes them to H.264 (no B-frames, timestamps from
the sender's RTP clock, rebased to zero, strictly increasing) in Matroska, which the pipeline
then copies into DICOM unchanged (PS3.5 A.4.14). aiortc's own MediaRecorder was not used: its
Matroska output had packets without DTS, which the pipeline's MP4 rewrite refuses.
Sessions live in this process (`vid2dcm serve` runs one uvicorn process)."""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.apps.gateway.deps import AuditDep, QueueDep, Settings, StoreDep, Uploader
from vid2dcm.apps.gateway.models import Created, JobRequest
from vid2dcm.apps.gateway.routes.jobs import create_job

router = APIRouter(tags=["webrtc"])
MAX_SESSIONS = 8
_CLOSING: set[asyncio.Future[None]] = set()
START_TIMEOUT_S = 20.0
"""An offer whose video never arrives is dropped after this long."""


class Offer(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sdp: str = Field(max_length=100_000)
    type: Literal["offer"] = "offer"


class Answer(BaseModel):
    id: str
    sdp: str
    type: str


class LiveStop(BaseModel):
    """What POST /jobs takes, less the upload (the gateway holds the recording)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sop: Literal["photographic", "endoscopic", "microscopic", "ultrasound", "sc"] = (
        "photographic")
    accession: str | None = Field(default=None, max_length=16)
    unidentified: bool = False


class PieceWriter:
    """Encode one received video track into an H.264 Matroska piece as frames arrive."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.container: Any = None
        self.stream: Any = None
        self.task: asyncio.Future[None] | None = None
        self.first: int | None = None
        self.last = -1
        self.frames = 0

    def add(self, track: Any) -> None:
        self.task = asyncio.ensure_future(self._run(track))

    async def _run(self, track: Any) -> None:
        from aiortc.mediastreams import MediaStreamError

        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            self._write(frame)

    def _write(self, frame: Any) -> None:
        import av

        if frame.pts is None:
            return
        if self.container is None:
            self.container = av.open(str(self.path), "w", format="matroska")
            stream = self.container.add_stream(
                "libx264", rate=30, options={"preset": "veryfast", "tune": "zerolatency"})
            stream.width = frame.width - frame.width % 2  # 4:2:0 needs even sizes
            stream.height = frame.height - frame.height % 2
            stream.pix_fmt = "yuv420p"
            stream.codec_context.time_base = Fraction(1, 90_000)
            self.stream = stream
            self.first = frame.pts
        assert self.first is not None
        pts = int((frame.pts - self.first) * frame.time_base * 90_000)
        if pts <= self.last:
            return  # a late or repeated frame: timestamps must rise
        self.last = pts
        image = frame.reformat(width=self.stream.width, height=self.stream.height,
                               format="yuv420p")
        image.pts, image.time_base = pts, Fraction(1, 90_000)
        for packet in self.stream.encode(image):
            self.container.mux(packet)
        self.frames += 1

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.container is not None:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            self.container.close()
            self.container = None


@dataclass
class LiveSession:
    owner: str
    folder: Path
    pc: Any
    recorder: PieceWriter
    started: float = field(default_factory=time.monotonic)
    video: bool = False

    @property
    def piece(self) -> Path:
        return self.folder / "live.mkv"


def _sessions(request: Request) -> dict[str, LiveSession]:
    state = request.app.state
    if not hasattr(state, "webrtc_sessions"):
        state.webrtc_sessions = {}
    sessions: dict[str, LiveSession] = state.webrtc_sessions
    return sessions


@router.post("/webrtc/offer", response_model=Answer)
async def offer(body: Offer, request: Request, who: Uploader, settings: Settings,
                audit: AuditDep) -> Answer:
    """Answer a sender's SDP offer and record its video track until POST /webrtc/{id}/stop."""
    from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

    if "\nm=video " not in body.sdp.replace("\r\n", "\n"):
        raise HTTPException(400, "sdp: the offer carries no video track")
    sessions = _sessions(request)
    if len(sessions) >= MAX_SESSIONS:
        raise HTTPException(503, "too many live streams at once; try again shortly")
    live_id = uuid.uuid4().hex
    folder = settings.data_dir / "webrtc" / live_id
    folder.mkdir(parents=True, mode=0o700)
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    recorder = PieceWriter(folder / "live.mkv")
    session = LiveSession(who.name, folder, pc, recorder)

    @pc.on("track")
    def on_track(track: Any) -> None:
        if track.kind == "video" and not session.video:
            session.video = True
            recorder.add(track)

    @pc.on("connectionstatechange")
    async def on_state() -> None:
        # the sender vanished (page closed, network gone): close the piece so what arrived is
        # a complete file; POST /webrtc/{id}/stop still makes it a job
        if pc.connectionState in ("failed", "closed"):
            await recorder.stop()

    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body.sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except (ValueError, RuntimeError) as exc:
        await pc.close()
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(400, f"sdp: the offer cannot be answered ({exc})") from exc
    sessions[live_id] = session
    asyncio.get_running_loop().call_later(START_TIMEOUT_S, _drop_if_silent, sessions, live_id)
    audit("live stream started (webrtc)")
    local = pc.localDescription
    return Answer(id=live_id, sdp=local.sdp, type=local.type)


def _drop_if_silent(sessions: dict[str, LiveSession], live_id: str) -> None:
    session = sessions.get(live_id)
    if session is not None and not session.video:
        sessions.pop(live_id, None)
        _CLOSING.add(task := asyncio.ensure_future(_close(session)))
        task.add_done_callback(_CLOSING.discard)


async def _close(session: LiveSession) -> None:
    try:
        await session.recorder.stop()
    finally:
        await session.pc.close()


@router.post("/webrtc/{live_id}/stop", status_code=201, response_model=Created)
async def stop(live_id: str, body: LiveStop, request: Request, who: Uploader,
               store: StoreDep, settings: Settings, queue: QueueDep,
               audit: AuditDep) -> Created:
    """End the stream, close the recorded piece, and make it a job (patient rules of
    POST /jobs apply; a refused request leaves nothing behind)."""
    sessions = _sessions(request)
    session = sessions.get(live_id)
    if session is None or session.owner != who.name:
        raise HTTPException(404, "no such live stream")
    sessions.pop(live_id)
    await _close(session)
    piece = session.piece
    if not session.video or not piece.is_file() or piece.stat().st_size == 0:
        raise HTTPException(409, "no video arrived on this stream")
    piece.chmod(0o600)
    upload_id = store.add_upload("live.mkv", piece, piece.stat().st_size, owner=who.name)
    audit("live stream stopped (webrtc)", upload=upload_id)
    job = JobRequest(upload_id=upload_id, sop=body.sop, accession=body.accession,
                     unidentified=body.unidentified)
    # create_job is synchronous (worklist lookup, SQLite): keep the event loop free for RTP
    try:
        return await asyncio.to_thread(create_job, job, who, store, settings, queue, audit)
    except HTTPException:
        store.forget_upload(upload_id)
        piece.unlink(missing_ok=True)
        raise
