"""A recorder fed from outside: a WebRTC receiver (or any code holding the media) pushes H.264
access units as they arrive, and decoded frames; this writes the same crash-safe MPEG-TS
pieces and sidecars as capture.recorder, so a RecordingSession, finalize() and --recover
treat it like any network camera.

Keep or encode: the first H.264 key frame's SPS is decoded once and the stream is put to
core.conformance.choose_transfer_syntax (the same rule the planner applies; nothing is
re-decided here). A stream a DICOM video transfer syntax can hold as it comes is written
access unit by access unit, bit-exact (the sender's SPS, PPS and slices; no encoder of ours
touches it). Anything else - VP8, or H.264 Constrained Baseline, which PS3.5 8.2.8-8.2.11 do
not list (High profiles only) - is encoded from the decoded frames to H.264 High with a key
frame every gop_s, as capture.recorder does for raw sources. The frame rate the level check
needs is not known before frames arrive: a WebRTC camera sends at most 30 frames/s, so 30 is
used (the planner checks the real rate again at finalisation).

Timestamps: the RTP clock (90 kHz) of the access units, rebased to the piece's first frame;
the time base is the receiver's arrival clock (time_method "arrival": WebRTC's RTCP Sender
Reports are not exposed by the receiver).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vid2dcm.capture.pieces import PieceRecord, SnapshotRecord, write_json
from vid2dcm.capture.recorder import DISK_CHECK_S, LiveState, RecorderSettings, _write_png
from vid2dcm.capture.sources import SourceSpec
from vid2dcm.core.conformance import choose_transfer_syntax
from vid2dcm.core.media_info import FrameTiming, VideoStreamInfo
from vid2dcm.probing.probe import chroma_subsampling

log = logging.getLogger(__name__)
RTP_VIDEO = Fraction(1, 90_000)
WEBRTC_MAX_RATE = Fraction(30)
"""The rate assumed for the level check before any frame has arrived (see the module doc)."""
IDR, SPS = 5, 7


@dataclass(frozen=True)
class KeepDecision:
    """Whether the received bitstream is stored as it came, and why not when it is not."""

    keep: bool
    codec: str
    profile: str | None = None
    reasons: tuple[str, ...] = ()
    size: tuple[int, int] | None = None
    """Width and height of the decoded key frame."""

    def describe(self) -> str:
        """One line for the recording's state (no patient data in it)."""
        what = f"{self.codec.upper()} {self.profile}" if self.profile else self.codec.upper()
        if self.keep:
            return f"{what}: kept as sent"
        return f"{what}: re-encoded to H.264 High ({'; '.join(self.reasons)})"


def nal_types(access_unit: bytes) -> list[int]:
    """NAL unit types of an Annex B access unit (start code 00 00 01, optionally 00 00 00 01)."""
    types = []
    pos = access_unit.find(b"\x00\x00\x01")
    while pos >= 0 and pos + 3 < len(access_unit):
        types.append(access_unit[pos + 3] & 0x1F)
        pos = access_unit.find(b"\x00\x00\x01", pos + 3)
    return types


def decide_h264(access_unit: bytes) -> KeepDecision:
    """Decode the key frame once and ask core.conformance whether its stream is storable as
    it is (profile, level, size, chroma, bit depth from the SPS)."""
    ctx = av.CodecContext.create("h264", "r")
    frames: list[Any] = []
    with contextlib.suppress(av.FFmpegError):
        frames = list(ctx.decode(av.Packet(access_unit)))
        frames += list(ctx.decode(None))
    if not frames:
        return KeepDecision(False, "h264", reasons=("the first key frame does not decode",))
    frame = frames[0]
    pix_fmt = frame.format.name
    info = VideoStreamInfo(
        index=0, codec="h264", codec_tag="", profile=ctx.profile, level=ctx.level or None,
        tier=None, width=frame.width, height=frame.height, pix_fmt=pix_fmt,
        chroma=chroma_subsampling(pix_fmt), bit_depth=int(frame.format.components[0].bits),
        sample_aspect_ratio=None, rotation=0, interlaced=False, color_range="tv",
        timing=FrameTiming(frame_count=0, rate=WEBRTC_MAX_RATE, duration_s=0.0, variable=True,
                           frame_time_ms=1000 / float(WEBRTC_MAX_RATE),
                           frame_deltas_ms=None, count_source="live"),
        keyframes=(), packet_bytes=len(access_unit), has_timestamps=True)
    syntax, broken = choose_transfer_syntax(info)
    return KeepDecision(syntax is not None, "h264", ctx.profile, tuple(broken),
                        (frame.width, frame.height))


@dataclass
class _Unit:
    data: bytes
    pts: int
    """In time_base units from the source's first unit."""
    time_base: Fraction
    key: bool
    arrival: float


class _Piece:
    """One MPEG-TS piece of H.264 Annex B units, flushed unit by unit."""

    def __init__(self, folder: Path, index: int, source: str, first: _Unit, size: tuple[int, int],
                 reason: str, transcoded: bool) -> None:
        self.path = folder / f"piece-{index:04d}.ts"
        self.origin = first.pts
        self.time_base = first.time_base
        self.container = av.open(str(self.path), "w", format="mpegts",
                                 options={"flush_packets": "1"})
        self.stream = self.container.add_stream("h264", rate=WEBRTC_MAX_RATE)
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.time_base = RTP_VIDEO
        self.frames = self.bytes = 0
        self.last = -1
        self.end = 0
        self.first_arrival = first.arrival
        self.last_arrival = first.arrival
        self.record = PieceRecord(index=index, file=self.path.name, source=source, connection=1,
                                  time_method="arrival", opened_because=reason,
                                  transcoded=transcoded)
        self.json = self.path.with_suffix(".json")
        self.next_checkpoint = 0.0

    @property
    def duration(self) -> float:
        span = float((self.end - self.origin) * self.time_base)
        return span * self.frames / (self.frames - 1) if self.frames > 1 else 0.0

    def write(self, unit: _Unit) -> None:
        pts = int((unit.pts - self.origin) * self.time_base / RTP_VIDEO)
        if pts <= self.last:
            pts = self.last + 1  # the RTP clock repeated or went back: keep it rising
        self.last = pts
        packet = av.Packet(unit.data)
        packet.time_base = RTP_VIDEO
        packet.pts = packet.dts = pts
        packet.is_keyframe = unit.key
        packet.stream = self.stream
        self.container.mux(packet)
        self.frames += 1
        self.bytes += len(unit.data)
        self.end = max(self.end, unit.pts)
        self.last_arrival = unit.arrival

    def checkpoint(self, start_wall: float | None, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now < self.next_checkpoint:
            return
        self.next_checkpoint = now + 1.0
        r = self.record
        r.start_wall = start_wall
        r.frames, r.bytes, r.duration_s = self.frames, self.bytes, round(self.duration, 6)
        r.arrival_span_s = round(self.last_arrival - self.first_arrival, 6)
        r.media_span_s = round(float((self.end - self.origin) * self.time_base), 6)
        write_json(self.json, r)

    def close(self, reason: str, start_wall: float | None) -> PieceRecord:
        self.container.close()
        self.record.closed_because = reason
        self.checkpoint(start_wall, force=True)
        return self.record


class PushedRecorder:
    """The capture.recorder.Recorder interface (start, trigger, snapshot, stop, join, state,
    stopping) for media pushed in: put_access_unit() for H.264 as received, put_frame() for
    decoded pictures. Both may be called from any thread; one worker thread writes."""

    def __init__(self, spec: SourceSpec, folder: Path, settings: RecorderSettings | None = None,
                 *, on_stop: Callable[[], None] | None = None,
                 free_space: Callable[[Path], int] | None = None) -> None:
        """free_space(folder) -> bytes free (default: the file system's; a quota in tests)."""
        self.spec = spec
        self.folder = folder
        self.settings = settings or RecorderSettings()
        folder.mkdir(parents=True, exist_ok=True)
        self._queue: queue.Queue[tuple[str, Any, float] | None] = queue.Queue()
        self._lock = threading.Lock()
        self._state = LiveState(spec.name, status="connecting")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._on_stop = on_stop
        self._snap_requests = 0
        self.decision: KeepDecision | None = None
        """Set at the first H.264 key frame (or the first frame of another codec)."""
        self.started_at: float | None = None
        self._piece: _Piece | None = None
        self._index = 0
        self._snap_index = 0
        self._offset: float | None = None
        self._encoder: Any = None
        self._encoded = 0
        self._size: tuple[int, int] | None = None
        self._last_frame: Any = None
        self._done = [0, 0, 0.0]
        self._free_space = free_space or (lambda path: shutil.disk_usage(path).free)
        self._next_disk_check = 0.0

    # -- fed from the receiver ------------------------------------------------------------
    def put_access_unit(self, data: bytes, rtp_timestamp: int) -> None:
        """An H.264 access unit as received (Annex B), with its RTP timestamp (90 kHz)."""
        if not self._stop.is_set():
            self._queue.put(("au", (data, rtp_timestamp), time.time()))

    def put_frame(self, frame: Any) -> None:
        """A decoded picture (any codec): encoded when the bitstream is not kept, and the
        picture a snapshot takes in every case."""
        if not self._stop.is_set():
            self._queue.put(("frame", frame, time.time()))

    # -- the Recorder interface -----------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"push-{self.spec.name}",
                                        daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """No pre-record for a pushed source: it records from the first key frame."""

    def snapshot(self) -> None:
        with self._lock:
            self._snap_requests += 1

    def stop(self, reason: str = "stopped") -> None:
        self._update(stop_reason=self._state.stop_reason or reason)
        self._stop.set()
        self._queue.put(None)
        on_stop, self._on_stop = self._on_stop, None  # once (the disk guard stops first)
        if on_stop is not None:
            on_stop()

    def lost(self, reason: str) -> None:
        """The sender went away (connection failed or closed): close what arrived."""
        if not self._stop.is_set():
            self._update(last_error=reason, status="lost")
            self._queue.put(("lost", reason, time.time()))

    def join(self, timeout: float | None = None) -> bool:
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    @property
    def state(self) -> LiveState:
        with self._lock:
            return self._state

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._state = replace(self._state, **changes)

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            while True:
                item = self._queue.get()
                if item is None:
                    break
                kind, payload, arrival = item
                if kind == "au":
                    self._on_unit(payload[0], payload[1], arrival)
                elif kind == "frame":
                    self._on_frame(payload, arrival)
                else:
                    self._close("connection lost")
                if self._snap_requests:
                    self._take_snapshots()
            if self._snap_requests:  # asked for just before stop: the API said yes, keep it
                self._take_snapshots()
            self._flush_encoder()
            self._close("stopped")
            self._update(status="stopped")
        except BaseException as exc:  # a bug must not leave a silent dead thread
            self._update(status="failed", last_error=f"{type(exc).__name__}: {exc}"[:300])
            with contextlib.suppress(Exception):
                self._close("failed")
            raise

    def _on_unit(self, data: bytes, rtp: int, arrival: float) -> None:
        types = nal_types(data)
        key = IDR in types
        extended = self._unwrap(rtp)
        if key and SPS in types:
            sps = _nal_units(data, SPS)
            if sps != self._sps:
                # the first key frame, or the sender changed its stream (a browser lowers
                # the resolution when the network tightens): decide again, in a new piece
                self._sps = sps
                changed = self.decision is not None
                self.decision = decide_h264(data)
                self._update(bitstream=self.decision.describe())
                log.info("%s: H.264 %s received: %s", self.spec.name, self.decision.profile,
                         "kept as sent" if self.decision.keep else "re-encoded")
                if changed:
                    self._flush_encoder()
                    self._close("format change")
                    self._next_reason = "format change"
                self._size = self.decision.size if self.decision.keep else None
        if self.decision is None or not self.decision.keep:
            return
        if self._piece is None and not key:
            return
        self._write(_Unit(data, extended, RTP_VIDEO, key, arrival), transcoded=False)

    _sps: bytes | None = None
    _next_reason = "start"

    _rtp_last: int | None = None
    _rtp_extended = 0

    def _unwrap(self, rtp: int) -> int:
        """The 32-bit RTP clock made continuous: a step of more than half the range is a
        step back (or a wrap), never four billion ticks forward."""
        if self._rtp_last is not None:
            step = (rtp - self._rtp_last) % 2**32
            self._rtp_extended += step - 2**32 if step >= 2**31 else step
        self._rtp_last = rtp
        return self._rtp_extended

    def _on_frame(self, frame: Any, arrival: float) -> None:
        self._last_frame = frame
        if self.decision is None and frame.format is not None:
            if self._codec_hint == "h264":
                return  # the key frame's SPS decides; until then nothing is written
            self.decision = KeepDecision(False, self._codec_hint or "unknown",
                                         reasons=(f"{self._codec_hint} has no DICOM video "
                                                  "transfer syntax",))
            self._update(bitstream=self.decision.describe())
        if self.decision is None or self.decision.keep:
            return
        if frame.pts is None or frame.time_base is None:
            return
        for unit in self._encode(frame, arrival):
            self._write(unit, transcoded=True)

    _codec_hint: str | None = None

    def codec(self, name: str) -> None:
        """The negotiated codec (H264, VP8) once the receiver knows it."""
        self._codec_hint = name.lower()

    def _encode(self, frame: Any, arrival: float) -> list[_Unit]:
        if self._encoder is None:
            w, h = frame.width - frame.width % 2, frame.height - frame.height % 2
            enc = av.CodecContext.create("libx264", "w")
            enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
            enc.time_base = RTP_VIDEO
            enc.framerate = WEBRTC_MAX_RATE
            enc.gop_size = max(1, round(self.settings.gop_s * float(WEBRTC_MAX_RATE)))
            enc.options = {"preset": "veryfast", "tune": "zerolatency", "profile": "high",
                           "x264-params": f"scenecut=0:keyint={enc.gop_size}", "crf": "20"}
            self._encoder = enc
            self._size = (w, h)
            self._first_pts: int = int(frame.pts * frame.time_base / RTP_VIDEO)
            self._last_pts = -1
        enc = self._encoder
        pts = int(frame.pts * frame.time_base / RTP_VIDEO) - self._first_pts
        if pts <= self._last_pts:
            return []  # a late or repeated frame: timestamps must rise
        self._last_pts = pts
        image = frame.reformat(width=enc.width, height=enc.height, format="yuv420p")
        image.pts, image.time_base = pts, RTP_VIDEO
        image.pict_type = av.video.frame.PictureType.NONE
        return [_Unit(bytes(p), p.pts, RTP_VIDEO, p.is_keyframe, arrival)
                for p in enc.encode(image)]

    def _flush_encoder(self) -> None:
        if self._encoder is not None:
            with contextlib.suppress(av.FFmpegError):
                for p in self._encoder.encode(None):
                    self._write(_Unit(bytes(p), p.pts, RTP_VIDEO, p.is_keyframe, time.time()),
                                transcoded=True)
            self._encoder = None

    def _write(self, unit: _Unit, transcoded: bool) -> None:
        s = self.settings
        if self._disk_low():
            return
        piece = self._piece
        if (piece is not None and unit.key and s.max_segment_s
                and piece.duration >= s.max_segment_s):
            self._close("max-segment")
            piece = None
            self._next_reason = "max-segment"
        if piece is None:
            if not unit.key or self._size is None:
                return
            self._index += 1
            piece = self._piece = _Piece(self.folder, self._index, self.spec.name, unit,
                                         self._size, self._next_reason, transcoded)
            self._next_reason = "reconnect"
            self._update(status="recording", pieces=self._index)
        offset = unit.arrival - float(unit.pts * unit.time_base)
        if self._offset is None or offset < self._offset:
            self._offset = offset  # the earliest arrival relative to the media clock
        piece.write(unit)
        self._publish()
        piece.checkpoint(self._wall(piece))

    def _disk_low(self) -> bool:
        """The disk guard of capture.recorder: stop cleanly, the piece closed, before the
        disk fills (checked every DISK_CHECK_S)."""
        if self._stop.is_set():
            return self.state.stop_reason is not None and "disk" in self.state.stop_reason
        now = time.monotonic()
        if now < self._next_disk_check:
            return False
        self._next_disk_check = now + DISK_CHECK_S
        free = self._free_space(self.folder)
        if free >= self.settings.min_free_bytes:
            return False
        self._update(stop_reason=(f"disk space low ({free // 2**20} MiB free, at least "
                                  f"{self.settings.min_free_bytes // 2**20} MiB kept free): "
                                  "recording stopped"))
        self._stop.set()
        self._close("disk space low")
        return True

    def _wall(self, piece: _Piece) -> float | None:
        if self._offset is None:
            return None
        return self._offset + float(piece.origin * piece.time_base) - self.spec.latency_s

    def _close(self, reason: str) -> None:
        piece, self._piece = self._piece, None
        if piece is None:
            return
        record = piece.close(reason, self._wall(piece))
        self._done[0] += record.frames
        self._done[1] += record.bytes
        self._done[2] += record.duration_s
        self._publish()

    def _publish(self) -> None:
        live, done = self._piece, self._done
        self._update(frames=int(done[0]) + (live.frames if live else 0),
                     bytes=int(done[1]) + (live.bytes if live else 0),
                     duration_s=round(done[2] + (live.duration if live else 0.0), 3))

    def _take_snapshots(self) -> None:
        with self._lock:
            count, self._snap_requests = self._snap_requests, 0
        if self._last_frame is None:
            return
        for _ in range(count):
            self._snap_index += 1
            path = self.folder / f"snap-{self._snap_index:04d}.png"
            _write_png(self._last_frame, path)
            write_json(path.with_suffix(".json"), SnapshotRecord(
                index=self._snap_index, file=path.name, source=self.spec.name, wall=time.time(),
                piece=self._piece.record.index if self._piece else None))
            self._update(snapshots=self.state.snapshots + 1)


def _nal_units(access_unit: bytes, nal_type: int) -> bytes:
    """The NAL units of one type in an Annex B access unit, start codes dropped, joined."""
    found = []
    for chunk in access_unit.split(b"\x00\x00\x01")[1:]:
        unit = chunk.rstrip(b"\x00")
        if unit and unit[0] & 0x1F == nal_type:
            found.append(unit)
    return b"".join(found)
