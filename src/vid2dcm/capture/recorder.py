"""Record one live source into crash-safe MPEG-TS pieces, surviving a real network.

Why MPEG-TS while recording: it needs no index written at the end, so a killed recorder or a
power cut loses at most the packets not yet flushed; the pieces become DICOM afterwards
(finalize.py), where the existing pipeline copies them into MP4 inside Pixel Data.

The loop, from measured failure signatures (docs/recording.md):
- a source that ends (demux() simply stops), raises (refused, invalid data, AVERROR_EXIT
  from the read timeout) or goes silent is reconnected with exponential backoff; every new
  connection starts a new piece at its first key frame;
- a timestamp jump (gap < 0 or > max_gap on the video stream) is one discontinuity event:
  the piece ends and a new one starts at the next key frame; audio whose clock is far from
  the video's is dropped until it follows, so a late audio jump cannot make a stray piece;
- pieces are cut only at video key frames (--max-segment), each independently playable;
- a ring buffer of whole GOPs keeps the last N seconds before the trigger (pre-record);
- a disk guard stops the recording cleanly before the disk fills;
- a watchdog notices silence and kills a relay process, which PyAV's own timeouts cannot.
Video that DICOM cannot hold as it comes (raw frames from lavfi or a capture card, MJPEG...)
is encoded to H.264 with a key frame every gop_s; H.264, HEVC and MPEG-2 are copied.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vid2dcm.capture.hls import Segment, newest_segment
from vid2dcm.capture.pieces import PieceRecord, SnapshotRecord, TimeMethod, write_json
from vid2dcm.capture.sources import SourceKind, SourceSpec

log = logging.getLogger(__name__)
DISK_CHECK_S = 0.25

COPIED_VIDEO = {"h264", "hevc", "mpeg2video"}
"""Codecs a DICOM video transfer syntax can hold as they come (the planner decides the rest
at finalisation; these only avoid a needless encode while recording)."""
COPIED_AUDIO = {"aac", "mp2", "mp3", "ac3", "opus"}
"""Audio MPEG-TS carries; finalisation copies or re-encodes it to what DICOM allows."""


@dataclass(frozen=True)
class RecorderSettings:
    max_segment_s: float | None = None
    max_segment_bytes: int | None = None
    pre_record_s: float = 0.0
    open_timeout_s: float = 10.0
    read_timeout_s: float = 5.0
    backoff_first_s: float = 0.5
    backoff_max_s: float = 8.0
    max_gap_s: float = 5.0
    """A jump larger than this (or backwards) on the video clock is a discontinuity."""
    min_free_bytes: int = 256 * 2**20
    """The disk guard: stop cleanly when the recording folder's disk has less free."""
    gop_s: float = 1.0
    """Key-frame interval when the recorder has to encode."""
    audio: bool = True
    watchdog_s: float | None = None
    """Silence after which the watchdog intervenes (default: twice the read timeout)."""


@dataclass(frozen=True)
class LiveState:
    """What a status line or the gateway shows; a snapshot, safe to hand to other threads."""

    source: str
    status: str = "starting"
    """starting, connecting, buffering (pre-record), recording, reconnecting, stopped, failed."""
    bytes: int = 0
    frames: int = 0
    duration_s: float = 0.0
    pieces: int = 0
    connections: int = 0
    reconnects: int = 0
    discontinuities: int = 0
    watchdog_trips: int = 0
    snapshots: int = 0
    reconnect_s: tuple[float, ...] = ()
    """Seconds from losing the source to the first frame of the next connection."""
    last_error: str | None = None
    stop_reason: str | None = None
    bitstream: str | None = None
    """For a pushed source (capture.pushed): kept as sent, or re-encoded and why."""


@dataclass
class _Packet:
    """A copy of a demuxed (or encoded) packet: muxing consumes an av.Packet's buffer, and the
    ring buffer and snapshots need the bytes after that."""

    video: bool
    data: bytes
    pts: int | None
    dts: int
    time_base: Fraction
    key: bool
    arrival: float

    @property
    def t(self) -> float:
        return float(self.dts * self.time_base)


@dataclass
class _Gop:
    packets: list[_Packet] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.packets[0].t


class DiskFull(Exception):
    pass


class Recorder:
    """Runs in its own thread; start(), trigger() (for pre-record), snapshot(), stop(), state.

    Writes folder/piece-NNNN.ts + .json and folder/snap-NNNN.png + .json."""

    def __init__(self, spec: SourceSpec, folder: Path, settings: RecorderSettings | None = None,
                 *, armed: bool = False,
                 on_piece: Callable[[PieceRecord], None] | None = None,
                 free_space: Callable[[Path], int] | None = None) -> None:
        """free_space(folder) -> bytes free (default: the file system's; a quota in tests)."""
        self.spec = spec
        self.folder = folder
        self.settings = settings or RecorderSettings()
        folder.mkdir(parents=True, exist_ok=True)
        self._triggered = threading.Event()
        if not armed:
            self._triggered.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._state = LiveState(spec.name)
        self._thread: threading.Thread | None = None
        self._watchdog: threading.Thread | None = None
        self._relay: subprocess.Popen[bytes] | None = None
        self._snap_requests = 0
        self._last_activity = time.monotonic()
        self._connected = False
        self._on_piece = on_piece
        self._free_space = free_space or (lambda path: shutil.disk_usage(path).free)
        self._piece_index = 0
        self._snap_index = 0
        self.started_at: float | None = None
        self._done: list[float] = [0, 0, 0.0]
        """Frames, bytes and seconds of the pieces already closed."""
        self._hls_before: Segment | None = None
        """The newest HLS segment just before the open (see capture.hls)."""

    # -- control, from any thread ------------------------------------------------------------
    def start(self) -> None:
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._run, name=f"rec-{self.spec.name}",
                                        daemon=True)
        self._thread.start()
        self._watchdog = threading.Thread(target=self._watch, name=f"dog-{self.spec.name}",
                                          daemon=True)
        self._watchdog.start()

    def trigger(self) -> None:
        """Start keeping what comes (after the pre-record buffer)."""
        self._triggered.set()

    def snapshot(self) -> None:
        with self._lock:
            self._snap_requests += 1

    def stop(self, reason: str = "stopped") -> None:
        self._update(stop_reason=self._state.stop_reason or reason)
        self._stop.set()

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

    # -- the connection loop -------------------------------------------------------------------
    def _run(self) -> None:
        s = self.settings
        backoff = s.backoff_first_s
        lost_at: float | None = None
        connection = 0
        try:
            while not self._stop.is_set():
                self._update(status="connecting" if lost_at is None else "reconnecting")
                try:
                    self._check_disk()
                    container = self._open()
                except DiskFull as exc:
                    self._update(stop_reason=str(exc))
                    self._stop.set()
                    break
                except (av.FFmpegError, OSError, RuntimeError) as exc:
                    self._update(last_error=self._describe(exc))
                    self._stop_relay()
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, s.backoff_max_s)
                    continue
                connection += 1
                self._update(connections=connection)
                frames_before = self.state.frames
                try:
                    conn = _Connection(self, container, connection, lost_at)
                    conn.pump()
                except DiskFull as exc:
                    self._update(stop_reason=str(exc))
                    self._stop.set()
                except (av.FFmpegError, OSError, RuntimeError, ValueError) as exc:
                    self._update(last_error=self._describe(exc))
                finally:
                    self._connected = False
                    with contextlib.suppress(av.FFmpegError, OSError):
                        container.close()
                    self._stop_relay()
                if self._stop.is_set():
                    break
                if lost_at is None or self.state.frames > frames_before:
                    lost_at = time.monotonic()  # else: still lost since the last time
                if self.state.frames > frames_before:
                    backoff = s.backoff_first_s  # it worked for a while: retry soon
                self._update(reconnects=self.state.reconnects + 1)
                log.info("%s: source lost, reconnecting", self.spec.name)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, s.backoff_max_s)
            self._update(status="stopped")
        except BaseException as exc:  # a bug must not leave a silent dead thread
            self._update(status="failed", last_error=self._describe(exc))
            raise
        finally:
            self._stop_relay()

    def _open(self) -> Any:
        spec, s = self.spec, self.settings
        url = spec.url
        if spec.relay is not None:
            port = free_udp_port()
            url = url.format(port=port)
            command = [part.format(port=port) for part in spec.relay.command]
            self._relay = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                           stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
        options = spec.option_dict
        self._hls_before = newest_segment(url) if spec.kind is SourceKind.HLS else None
        self._last_activity = time.monotonic()
        if spec.kind is SourceKind.LAVFI:
            return av.open(url, format=spec.format, options=options)
        return av.open(url, format=spec.format, options=options,
                       timeout=(s.open_timeout_s, s.read_timeout_s))

    def _describe(self, exc: BaseException) -> str:
        """FFmpeg's messages quote the URL: show the one without credentials instead."""
        text = _describe(exc)
        if self.spec.url and self.spec.url != self.spec.display:
            text = text.replace(self.spec.url, self.spec.display)
        return text

    def _stop_relay(self) -> None:
        relay, self._relay = self._relay, None
        if relay is not None and relay.poll() is None:
            relay.terminate()
            try:
                relay.wait(3)
            except subprocess.TimeoutExpired:
                relay.kill()
                relay.wait()

    def _watch(self) -> None:
        """Silence beyond watchdog_s while connected: the state says "stalled" at once (for a
        status line or the gateway) and the trip is counted; a relay is killed so the next
        connection starts a fresh one. Ending the blocked read itself is left to PyAV's read
        timeout (its interrupt callback): nothing else can interrupt a read inside FFmpeg."""
        s = self.settings
        limit = s.watchdog_s or 2 * s.read_timeout_s
        while not self._stop.wait(0.25):
            if not self._connected:
                continue
            if time.monotonic() - self._last_activity > limit:
                self._update(watchdog_trips=self.state.watchdog_trips + 1, status="stalled",
                             last_error=f"no data for {limit:.1f} s")
                relay = self._relay
                if relay is not None and relay.poll() is None:
                    relay.kill()
                self._last_activity = time.monotonic()

    def _check_disk(self, reserve: int = 0) -> None:
        """reserve: what the next checks' worth of recording will need, so the margin holds
        at the current bitrate rather than being eaten before the next look."""
        free = self._free_space(self.folder)
        if free - reserve < self.settings.min_free_bytes:
            raise DiskFull(f"disk space low ({free // 2**20} MiB free, at least "
                           f"{self.settings.min_free_bytes // 2**20} MiB kept free): "
                           "recording stopped")

    def _next_piece_index(self) -> int:
        self._piece_index += 1
        return self._piece_index

    def _next_snap_index(self) -> int:
        self._snap_index += 1
        return self._snap_index

    def _take_snap_requests(self) -> int:
        with self._lock:
            n, self._snap_requests = self._snap_requests, 0
            return n


class _Connection:
    """One open source: demux, (encode), detect discontinuities, cut pieces, buffer GOPs."""

    def __init__(self, rec: Recorder, container: Any, number: int, lost_at: float | None
                 ) -> None:
        self.rec = rec
        self.container = container
        self.number = number
        self.lost_at = lost_at
        video = container.streams.video
        if not video:
            raise ValueError("the source has no video stream")
        self.vin = video[0]
        audio = [a for a in container.streams.audio
                 if a.codec_context.name in COPIED_AUDIO] if rec.settings.audio else []
        self.ain = audio[0] if audio else None
        self.encoder: _Encoder | None = None
        if self.vin.codec_context.name not in COPIED_VIDEO:
            self.encoder = _Encoder(self.vin, rec.settings.gop_s)
        self.piece: _PieceWriter | None = None
        self.gops: deque[_Gop] = deque()
        self.current_gop: _Gop | None = None
        self.last_video_t: float | None = None
        self.offset: float | None = None
        """Unix time minus media time: the smallest seen, i.e. the earliest arrival."""
        self.method: TimeMethod = "arrival"
        self.clock_seen = False
        self.waiting_for_key = True
        self.last_frame: Any = None

    def pump(self) -> None:
        """Until the source ends, fails or we stop; the open piece is always closed properly
        (a demux error or the disk guard must not leave it for --recover)."""
        reason = "connection ended"
        try:
            self._pump()
        except DiskFull:
            reason = "disk space low"
            raise
        except (av.FFmpegError, OSError) as exc:
            reason = f"connection lost ({type(exc).__name__})"
            raise
        finally:
            self.end(reason)

    def _pump(self) -> None:
        rec = self.rec
        streams = [self.vin] + ([self.ain] if self.ain is not None else [])
        next_disk_check = 0.0
        written_at_check = rec.state.bytes
        for packet in self.container.demux(streams):
            now_m = time.monotonic()
            rec._last_activity = now_m
            rec._connected = True
            if rec._stop.is_set():
                break
            if now_m >= next_disk_check:
                written = rec.state.bytes
                rec._check_disk(reserve=2 * (written - written_at_check))
                written_at_check = written
                next_disk_check = now_m + DISK_CHECK_S
            if packet.dts is None and packet.pts is None:
                continue
            arrival = time.time()
            if packet.stream is self.vin:
                if self.encoder is not None:
                    for out in self.encoder.encode(packet, self):
                        self.on_video(out)
                else:
                    self.on_video(_copy(packet, True, arrival))
            else:
                self.on_audio(_copy(packet, False, arrival))
            if rec._snap_requests:
                self.take_snapshots(rec._take_snap_requests())

    # -- the clock ---------------------------------------------------------------------------
    def observe_clock(self, p: _Packet) -> None:
        if self.method == "PDT":
            return
        first, self.clock_seen = not self.clock_seen, True
        if first and self.rec.spec.kind is SourceKind.HLS and self._program_date_time(p):
            return
        realtime = getattr(self.container, "start_time_realtime", None)
        if realtime and p.pts is not None:
            self.method = "RTCP"
            self.offset = realtime / 1e6
            return
        if self.method == "RTCP":
            return
        offset = p.arrival - p.t  # packets arrive in decode order: the DTS clock
        if self.offset is None or offset < self.offset:
            self.offset = offset

    def _program_date_time(self, first: _Packet) -> bool:
        """Map the first packet to its segment's PROGRAM-DATE-TIME if that segment is certain."""
        before = self.rec._hls_before
        if before is None or before.program_date_time is None:
            return False
        after = newest_segment(self.rec.spec.url)
        if after is None or after.sequence != before.sequence:
            return False
        self.method = "PDT"
        self.offset = before.program_date_time - first.t
        return True

    def wall(self, t: float) -> float | None:
        if self.offset is None:
            return None
        latency = self.rec.spec.latency_s if self.method == "arrival" else 0.0
        return self.offset + t - latency

    # -- packets -------------------------------------------------------------------------------
    def on_video(self, p: _Packet) -> None:
        rec, s = self.rec, self.rec.settings
        t = p.t
        if self.last_video_t is not None:
            gap = t - self.last_video_t
            if gap < 0 or gap > s.max_gap_s:
                rec._update(discontinuities=rec.state.discontinuities + 1)
                log.info("%s: timestamps jumped by %.3f s: new piece at the next key frame",
                         rec.spec.name, gap)
                self.close_piece("discontinuity")
                self.gops.clear()
                self.current_gop = None
                if self.method != "RTCP":  # a PDT mapping does not survive a jump either
                    self.method, self.offset = "arrival", None
                self.waiting_for_key = True
                self.next_reason = "discontinuity"
        self.last_video_t = t
        self.observe_clock(p)
        if p.key:
            self.waiting_for_key = False
            self.current_gop = _Gop([p])
            if not rec._triggered.is_set():
                self.gops.append(self.current_gop)
                while len(self.gops) >= 2 and t - self.gops[1].start >= s.pre_record_s:
                    self.gops.popleft()
                rec._update(status="buffering")
                return
            if self.piece is None:
                self.open_piece(p)
                return
            if self.piece.full(s):
                self.close_piece("max-segment")
                self.next_reason = "max-segment"
                self.open_piece(p)
                return
        elif self.waiting_for_key:
            return
        elif self.current_gop is not None:
            self.current_gop.packets.append(p)
        if self.piece is not None:
            self.piece.write(p)
            self.publish()

    def on_audio(self, p: _Packet) -> None:
        if self.last_video_t is None or abs(p.t - self.last_video_t) > 1.0:
            return  # before the first picture, or still on the other side of a jump
        if self.piece is not None:
            self.piece.write(p)
        elif self.gops and self.current_gop is self.gops[-1]:
            self.current_gop.packets.append(p)  # pre-record: kept with its GOP

    next_reason = "start"

    def open_piece(self, key: _Packet) -> None:
        rec = self.rec
        index = rec._next_piece_index()
        buffered = list(self.gops)
        if buffered and buffered[-1] is self.current_gop:
            buffered.pop()
        first = buffered[0].packets[0] if buffered else key
        reason = self.next_reason
        if reason == "start" and self.number > 1:
            reason = "reconnect"
        self.piece = _PieceWriter(rec.folder, index, self, first, reason)
        self.piece.record.pre_record_s = round(key.t - first.t, 6)
        for gop in buffered:
            for p in gop.packets:
                self.piece.write(p)
        self.gops.clear()
        self.piece.write(key)
        self.next_reason = "start"
        if self.lost_at is not None:
            rec._update(reconnect_s=(*rec.state.reconnect_s,
                                     round(time.monotonic() - self.lost_at, 3)))
            self.lost_at = None
        rec._update(status="recording", pieces=rec.state.pieces + 1)
        self.publish()

    def close_piece(self, reason: str) -> None:
        if self.piece is not None:
            record = self.piece.close(reason, self.wall(self.piece.origin))
            self.piece = None
            self.publish(closed=record)
            if self.rec._on_piece is not None:
                self.rec._on_piece(record)

    def end(self, reason: str) -> None:
        if self.rec._snap_requests:  # a still asked for just before stop is still taken
            self.take_snapshots(self.rec._take_snap_requests())
        if self.encoder is not None and self.piece is not None:
            with contextlib.suppress(av.FFmpegError, ValueError):
                for out in self.encoder.flush(self):
                    self.piece.write(out)
        self.close_piece(reason if not self.rec._stop.is_set() else "stopped")

    def publish(self, closed: PieceRecord | None = None) -> None:
        rec = self.rec
        with rec._lock:
            if self.piece is not None and rec._state.status == "stalled":
                rec._state = replace(rec._state, status="recording")
            done = rec._done
            if closed is not None:
                done[0] += closed.frames
                done[1] += closed.bytes
                done[2] += closed.duration_s
            live = self.piece
            rec._state = replace(
                rec._state,
                frames=int(done[0]) + (live.frames if live else 0),
                bytes=int(done[1]) + (live.bytes if live else 0),
                duration_s=round(done[2] + (live.duration if live else 0.0), 3))
        if self.piece is not None:
            self.piece.checkpoint(self.wall(self.piece.origin))

    # -- stills --------------------------------------------------------------------------------
    def take_snapshots(self, count: int) -> None:
        """Decode the current GOP up to the newest picture (or take the encoder's input frame)
        and store it losslessly as PNG; finalisation makes it a DICOM image."""
        frame = self.last_frame if self.encoder is not None else self._decode_current()
        if frame is None:
            return
        rec = self.rec
        for _ in range(count):
            index = rec._next_snap_index()
            path = rec.folder / f"snap-{index:04d}.png"
            _write_png(frame, path)
            write_json(path.with_suffix(".json"), SnapshotRecord(
                index=index, file=path.name, source=rec.spec.name, wall=time.time(),
                piece=self.piece.record.index if self.piece else None))
            rec._update(snapshots=rec.state.snapshots + 1)

    def _decode_current(self) -> Any:
        gop = self.current_gop
        if gop is None:
            return None
        decoder = av.CodecContext.create(self.vin.codec_context.name, "r")
        if self.vin.codec_context.extradata:
            decoder.extradata = self.vin.codec_context.extradata
        last = None
        for p in gop.packets:
            if not p.video:
                continue
            packet = av.Packet(p.data)
            packet.pts, packet.dts, packet.time_base = p.pts, p.dts, p.time_base
            try:
                for frame in decoder.decode(packet):
                    last = frame
            except av.FFmpegError:
                continue
        try:
            for frame in decoder.decode(None):
                last = frame
        except av.FFmpegError:
            pass
        return last


class _Encoder:
    """Raw or non-storable video -> H.264 with a fixed key-frame interval (libx264,
    zerolatency: no look-ahead delay, so the arrival clock stays true)."""

    def __init__(self, stream: Any, gop_s: float) -> None:
        rate = stream.average_rate or stream.guessed_rate or Fraction(25)
        self.rate = Fraction(rate)
        self.width = stream.codec_context.width
        self.height = stream.codec_context.height
        self.width -= self.width % 2
        self.height -= self.height % 2
        enc = av.CodecContext.create("libx264", "w")
        enc.width, enc.height, enc.pix_fmt = self.width, self.height, "yuv420p"
        enc.time_base = 1 / self.rate
        enc.framerate = self.rate
        enc.gop_size = max(1, round(gop_s * float(self.rate)))
        enc.options = {"preset": "veryfast", "tune": "zerolatency",
                       "x264-params": "scenecut=0", "crf": "20"}
        self.ctx = enc
        self.time_base = Fraction(1) / self.rate
        self.decoder = stream.codec_context
        self.count = 0
        self.arrival: dict[int, float] = {}

    def encode(self, packet: Any, conn: _Connection) -> list[_Packet]:
        out: list[_Packet] = []
        arrival = time.time()
        for frame in self.decoder.decode(packet):
            frame = frame.reformat(width=self.width, height=self.height, format="yuv420p")
            frame.pts = self.count
            frame.time_base = self.time_base
            frame.pict_type = av.video.frame.PictureType.NONE
            self.arrival[self.count] = arrival
            self.count += 1
            conn.last_frame = frame
            for p in self.ctx.encode(frame):
                out.append(self._copy(p))
        return out

    def flush(self, conn: _Connection) -> list[_Packet]:
        try:
            return [self._copy(p) for p in self.ctx.encode(None)]
        except av.FFmpegError:
            return []

    def _copy(self, p: Any) -> _Packet:
        arrival = self.arrival.pop(p.pts, time.time())
        for stale in [k for k in self.arrival if k < p.pts - 100]:
            self.arrival.pop(stale)
        return _Packet(True, bytes(p), p.pts, p.dts if p.dts is not None else p.pts,
                       self.time_base, p.is_keyframe, arrival)


class _PieceWriter:
    """One MPEG-TS file, flushed packet by packet; timestamps rebased to the key frame."""

    def __init__(self, folder: Path, index: int, conn: _Connection, first: _Packet,
                 reason: str) -> None:
        self.path = folder / f"piece-{index:04d}.ts"
        self.origin = first.t
        self.container = av.open(str(self.path), "w", format="mpegts",
                                 options={"flush_packets": "1"})
        enc = conn.encoder
        if enc is not None:
            self.vout = self.container.add_stream("h264", rate=enc.rate)
            self.vout.width, self.vout.height, self.vout.pix_fmt = enc.width, enc.height, \
                "yuv420p"
            self.vout.time_base = enc.time_base
        else:
            self.vout = self.container.add_stream_from_template(conn.vin)
        self.aout = (self.container.add_stream_from_template(conn.ain)
                     if conn.ain is not None else None)
        self.last_dts: dict[bool, int] = {}
        self.frames = 0
        self.bytes = 0
        self.end = 0.0
        self.first_arrival: float | None = None
        self.last_arrival = 0.0
        self.record = PieceRecord(index=index, file=self.path.name, source=conn.rec.spec.name,
                                  connection=conn.number, time_method=conn.method,
                                  opened_because=reason, transcoded=enc is not None)
        self.json = self.path.with_suffix(".json")
        self.conn = conn
        self.next_checkpoint = 0.0
        self.checkpoint(conn.wall(self.origin))

    @property
    def duration(self) -> float:
        """First to last picture plus one (average) frame interval."""
        span = max(0.0, self.end - self.origin)
        return span * self.frames / (self.frames - 1) if self.frames > 1 else 0.0

    def full(self, s: RecorderSettings) -> bool:
        return bool((s.max_segment_s and self.duration >= s.max_segment_s)
                    or (s.max_segment_bytes and self.bytes >= s.max_segment_bytes))

    def write(self, p: _Packet) -> None:
        if p.t < self.origin and not p.video:
            return
        stream = self.vout if p.video else self.aout
        if stream is None:
            return
        shift = int(self.origin / p.time_base)
        dts = p.dts - shift
        last = self.last_dts.get(p.video)
        if last is not None and dts <= last:
            dts = last + 1
        pts = max(dts, p.pts - shift) if p.pts is not None else dts
        self.last_dts[p.video] = dts
        packet = av.Packet(p.data)
        packet.time_base = p.time_base
        packet.pts, packet.dts = pts, dts
        packet.is_keyframe = p.key
        packet.stream = stream
        self.container.mux(packet)
        self.bytes += len(p.data)
        if p.video:
            self.frames += 1
            self.end = max(self.end, p.t)
            if self.first_arrival is None:
                self.first_arrival = p.arrival
            self.last_arrival = p.arrival

    def checkpoint(self, start_wall: float | None, force: bool = False) -> None:
        """Keep the sidecar current (at most once a second) for --recover."""
        now = time.monotonic()
        if not force and now < self.next_checkpoint:
            return
        self.next_checkpoint = now + 1.0
        self.record.start_wall = start_wall
        self.record.time_method = self.conn.method
        self.record.frames, self.record.bytes = self.frames, self.bytes
        self.record.duration_s = round(self.duration, 6)
        if self.first_arrival is not None:
            self.record.arrival_span_s = round(self.last_arrival - self.first_arrival, 6)
            self.record.media_span_s = round(self.end - self.origin, 6)
        write_json(self.json, self.record)

    def close(self, reason: str, start_wall: float | None) -> PieceRecord:
        self.container.close()
        self.record.closed_because = reason
        self.checkpoint(start_wall, force=True)
        return self.record


def _copy(packet: Any, video: bool, arrival: float) -> _Packet:
    dts = packet.dts if packet.dts is not None else packet.pts
    return _Packet(video, bytes(packet), packet.pts, dts, packet.time_base, packet.is_keyframe,
                   arrival)


def _write_png(frame: Any, path: Path) -> None:
    rgb = frame.reformat(format="rgb24")
    with av.open(str(path), "w", format="image2", options={"update": "1"}) as out:
        stream = out.add_stream("png")
        stream.width, stream.height, stream.pix_fmt = rgb.width, rgb.height, "rgb24"
        for p in stream.encode(rgb):
            out.mux(p)
        for p in stream.encode(None):
            out.mux(p)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]
