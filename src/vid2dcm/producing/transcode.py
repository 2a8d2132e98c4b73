"""transcode: make a storable stream from one that is not, in a single pass.

Video is decoded, passed through the target's filter chain and encoded (x264/x265 with frame
threading), or its packets are copied when only the audio needs work. Audio streams are copied,
re-encoded or left out as planned. The result is a container the copy path then wraps: the same
planner checks that what the encoder made qualifies for the target transfer syntax.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
from av.video.frame import PictureType

from vid2dcm.core.errors import InputError, OutputError
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.planning.plan import AudioDecision, OutputContainer
from vid2dcm.planning.video_target import VideoTarget
from vid2dcm.producing.audio import AudioTranscoder
from vid2dcm.producing.copy import MUXER_OPTIONS, CleanClock, Retimer, tag_for_apple
from vid2dcm.producing.filters import MaskBox, PictureFilter


@dataclass(frozen=True)
class TranscodeStats:
    packets_in: int
    frames_out: int
    damaged_packets: int
    seconds: float

    @property
    def lost_frames(self) -> int:
        return max(0, self.packets_in - self.frames_out)

    @property
    def frames_per_second(self) -> float:
        return self.frames_out / self.seconds if self.seconds > 0 else 0.0


def encoder_options(target: VideoTarget) -> dict[str, str]:
    """Encoder settings for a target: High/Main profile, signalled level, capped bit rate."""
    vbv = f"vbv-maxrate={target.max_rate_kbit}:vbv-bufsize={target.buffer_kbit}"
    if target.encoder == "libx264":
        params = vbv + (":interlaced=1:tff=1" if target.interlaced else "")
        return {"preset": target.preset, "crf": str(target.crf), "profile": "high",
                "level": target.level, "x264-params": params}
    params = f"level-idc={target.level}:{vbv}:log-level=error"
    if target.short_clip:
        params += ":bframes=0"
    return {"preset": target.preset, "crf": str(target.crf), "profile": "main",
            "x265-params": params}


def transcode(info: MediaInfo, target: VideoTarget | None, audio: tuple[AudioDecision, ...],
              container: OutputContainer, out_path: Path,
              progress: Callable[[float], None] | None = None,
              masks: tuple[MaskBox, ...] = (),
              mute: tuple[tuple[float, float], ...] = ()) -> TranscodeStats:
    """Write out_path with the video encoded for target (or copied when target is None).

    masks (de-identification) are drawn into the decoded pictures before encoding; mute
    silences intervals (seconds on the source clock) of re-encoded audio."""
    started = time.monotonic()
    retimer: Retimer | CleanClock | None = (
        Retimer.for_elementary(info) if not info.video.has_timestamps and not target else None)
    total = max(info.video.timing.frame_count, 1)
    packets_in = damaged = 0
    try:
        with av.open(str(info.path)) as source, av.open(
                str(out_path), "w", format=container.value,
                options=MUXER_OPTIONS[container]) as out:
            vin = next(s for s in source.streams.video if s.index == info.video.index)
            video: VideoEncoder | None = None
            vcopy: Any = None
            keep = info.video.has_timestamps and vin.time_base is not None
            clock = CleanClock.for_stream(info, vin) if keep else None
            if target is not None:
                vin.thread_type = "AUTO"
                base = clock.time_base if clock else (
                    vin.time_base if keep and vin.time_base else 1 / target.rate)
                video = VideoEncoder(out, target, base, keep, clock, masks)
                tag_for_apple(video.stream, container)
            else:
                vcopy = out.add_stream_from_template(vin)
                tag_for_apple(vcopy, container)
                if clock is not None:
                    vcopy.time_base = clock.time_base
                    retimer = clock
            handlers = _audio_handlers(source, out, audio, mute)
            wanted = [vin, *(source.streams[i] for i in handlers)]
            try:
                for packet in source.demux(wanted):
                    index = packet.stream.index
                    if index == vin.index:
                        if packet.size == 0:
                            continue
                        packets_in += 1
                        if video is not None:
                            damaged += video.decode_and_encode(vin, packet)
                        else:
                            if retimer is not None:
                                retimer.stamp(packet, packets_in - 1)
                            packet.stream = vcopy
                            out.mux(packet)
                        if progress is not None and packets_in % 16 == 0:
                            progress(min(packets_in / total, 1.0))
                    elif packet.size:
                        _audio(handlers[index], packet, out)
            except av.error.InvalidDataError:
                damaged += 1  # the demuxer gave up: keep what was read
            if video is not None:
                damaged += video.decode_and_encode(vin, None)
                video.finish()
                frames_out = video.frames_out
            else:
                frames_out = packets_in
            for handler in handlers.values():
                if isinstance(handler, AudioTranscoder):
                    handler.finish()
    except InputError:
        out_path.unlink(missing_ok=True)
        raise
    except av.error.FFmpegError as exc:
        out_path.unlink(missing_ok=True)
        raise OutputError(f"transcoding failed: {exc}") from exc
    if frames_out == 0:
        out_path.unlink(missing_ok=True)
        raise InputError(f"{info.path}: no picture could be decoded; the video cannot be "
                         "salvaged")
    return TranscodeStats(packets_in, frames_out, damaged, time.monotonic() - started)


def _audio_handlers(source: Any, out: Any, audio: tuple[AudioDecision, ...],
                    mute: tuple[tuple[float, float], ...] = ()) -> dict[int, Any]:
    handlers: dict[int, Any] = {}
    for decision in audio:
        stream = source.streams[decision.stream_index]
        if decision.copy:
            handlers[stream.index] = out.add_stream_from_template(stream)
        elif decision.transcode_to:
            handlers[stream.index] = AudioTranscoder(stream, out, decision.transcode_to, mute)
    return handlers


def _audio(handler: Any, packet: Any, out: Any) -> None:
    if isinstance(handler, AudioTranscoder):
        handler.push(packet)
    else:
        packet.stream = handler
        out.mux(packet)


class VideoEncoder:
    """Filter and encode decoded pictures into one stream of an open container (also used
    per chunk by producing/chunks.py, so chunks get exactly the settings of a single pass)."""

    def __init__(self, out: Any, target: VideoTarget, time_base: Fraction,
                 source_has_timestamps: bool, clock: CleanClock | None = None,
                 masks: tuple[MaskBox, ...] = ()) -> None:
        self.out = out
        self.clock = clock
        """Moves a constant-rate source's rounded timestamps onto its exact rate."""
        self.step = clock.period if clock is not None else 1
        self.target = target
        self.time_base = time_base
        self.keep_timestamps = source_has_timestamps
        self.masks = masks
        stream = cast(av.VideoStream, out.add_stream(target.encoder, rate=target.rate))
        stream.width, stream.height, stream.pix_fmt = target.width, target.height, "yuv420p"
        stream.time_base = time_base
        stream.codec_context.time_base = time_base
        stream.thread_type = "FRAME"
        stream.options = cast(dict[str, object], encoder_options(target))
        self.stream = stream
        self.filter: PictureFilter | None = None
        self.next_pts = 0
        self.last_pts: int | None = None
        self.frames_out = 0

    def decode_and_encode(self, source: Any, packet: Any) -> int:
        """Returns 1 when the packet could not be decoded (the decoder skips past damage)."""
        try:
            frames = source.decode(packet)
        except av.error.FFmpegError:
            # a damaged or cut-off packet (a truncated raw frame is EINVAL, a damaged PNG an
            # "external library" error): skipped like any decoder skips damage; a stream that
            # never decodes ends with "no picture could be decoded"
            return 1
        for frame in frames:
            self._filter_and_encode(frame)
        return 0

    def push(self, frame: av.VideoFrame) -> None:
        """One decoded picture, in display order."""
        self._filter_and_encode(frame)

    def _filter_and_encode(self, frame: av.VideoFrame) -> None:
        if self.filter is None:
            self.filter = PictureFilter(self.target, frame.width, frame.height,
                                        frame.format.name, self.time_base, masks=self.masks)
        if not self.keep_timestamps or frame.pts is None:
            frame.pts = self.next_pts
        elif self.clock is not None:
            frame.pts = self.clock.ticks(frame.pts)
        frame.time_base = self.time_base
        self.next_pts = frame.pts + self.step
        for ready in self.filter.push(frame):
            self._encode(ready)

    def _encode(self, frame: av.VideoFrame) -> None:
        if self.last_pts is not None and frame.pts is not None and frame.pts <= self.last_pts:
            frame.pts = self.last_pts + 1
        self.last_pts = frame.pts
        frame.pict_type = PictureType.NONE  # let the encoder place its own key frames
        for packet in self.stream.encode(frame):
            self.out.mux(packet)
        self.frames_out += 1

    def finish(self) -> None:
        if self.filter is not None:
            for ready in self.filter.push(None):
                self._encode(ready)
        for packet in self.stream.encode(None):
            self.out.mux(packet)
