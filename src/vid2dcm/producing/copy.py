"""copy_packets: rewrite the container around an untouched bitstream (no decoding, no encoding).

Only the container changes: video (and any allowed audio) packets go into MP4 or MPEG-TS exactly
as they were coded. Raw elementary streams have no timestamps, so those are made from the
frame rate and the display order (found by one decoding pass, the only way to learn it).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from math import ceil
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast

import av

from vid2dcm.core.errors import InputError, OutputError
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.planning.plan import OutputContainer, Segment

MUXER_OPTIONS: dict[OutputContainer, dict[str, str]] = {
    OutputContainer.MP4: {"movflags": "+faststart"},
    OutputContainer.MPEG_TS: {},
    OutputContainer.MPEG_PS: {},
}


@dataclass(frozen=True)
class CopiedStream:
    """One container file holding a segment of the source, with what went into it."""

    path: Path | None
    """None when the container was written straight into a caller's file object."""
    segment: Segment
    video_packets: int
    audio_packets: int


class PartSinks(Protocol):
    """Where each segment's container goes when it is written straight into its final file
    (a DICOM instance's Pixel Data): opened when the segment's first packet arrives, closed
    once its container is complete."""

    def open(self, number: int) -> BinaryIO: ...

    def close(self, number: int) -> None: ...


class _OneSink:
    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink

    def open(self, number: int) -> BinaryIO:
        return self.sink

    def close(self, number: int) -> None:
        pass


def copy_packets(info: MediaInfo, audio_indexes: tuple[int, ...], container: OutputContainer,
                 segments: tuple[Segment, ...], out_dir: Path | None,
                 progress: Callable[[float], None] | None = None,
                 sink: BinaryIO | None = None, parts: PartSinks | None = None
                 ) -> list[CopiedStream]:
    """Write one container file per segment into out_dir, in a single pass over the input.

    With sink (one segment) or parts (one sink per segment, in order), each container goes
    straight into a seekable file object instead: an MP4 then reserves room for its index at
    the front rather than moving it there afterwards (faststart would rewrite the whole
    file). progress, if given, receives the fraction of video frames copied so far.
    """
    if sink is not None:
        if len(segments) != 1 or parts is not None:
            raise ValueError("a sink takes exactly one segment")
        parts = _OneSink(sink)
    if parts is None and out_dir is None:
        raise ValueError("copy_packets needs an out_dir or sinks")
    total = info.video.timing.frame_count
    retimer: Retimer | CleanClock | None = (
        Retimer.for_elementary(info) if not info.video.has_timestamps else None)
    cut_times = [_segment_start(info, s) for s in segments]
    results: list[CopiedStream] = []
    frame = 0
    try:
        with av.open(str(info.path)) as source:
            vsrc = source.streams[info.video.index]
            asrcs = [source.streams[i] for i in audio_indexes]
            if retimer is None:
                cut_times[0] = _start_time([vsrc, *asrcs])
                retimer = CleanClock.for_stream(info, vsrc)
            writer: _SegmentWriter | None = None
            seg_no = 0
            for packet in source.demux([vsrc, *asrcs]):
                if packet.size == 0:
                    continue
                is_video = packet.stream.index == vsrc.index
                if is_video and frame >= total:
                    break  # a cut-off last frame or trailing damage probe left out
                if is_video:
                    while seg_no < len(segments) and frame >= segments[seg_no].end_frame:
                        seg_no += 1
                    if writer is None or writer.segment is not segments[seg_no]:
                        if writer is not None:
                            results.append(writer.close())
                            if parts is not None:
                                parts.close(len(results) - 1)
                        seg = segments[seg_no]
                        name = f"segment{seg_no:03d}.{container.extension}"
                        target = (parts.open(seg_no) if parts is not None
                                  else cast(Path, out_dir) / name)
                        in_place = seg if parts is not None else None
                        writer = _SegmentWriter(target, container, vsrc, asrcs, seg,
                                                cut_times[seg_no], _muxer_options(
                                                    container, info, in_place),
                                                retimer.time_base if retimer else None)
                    if retimer is not None:
                        retimer.stamp(packet, frame)
                    writer.mux(packet, video=True)
                    frame += 1
                    if progress is not None and frame % 32 == 0:
                        progress(frame / total)
                elif writer is not None:
                    nxt = seg_no + 1
                    if nxt < len(segments):
                        t = _seconds(packet)
                        if t is not None and t >= cut_times[nxt]:
                            continue
                    writer.mux(packet, video=False)
            if writer is not None:
                results.append(writer.close())
    except av.error.FFmpegError as exc:
        if frame < total or writer is None or not isinstance(exc, av.error.InvalidDataError):
            raise OutputError(f"rewriting the container failed: {exc}") from exc
        results.append(writer.close())  # damage after the last frame probe kept
    if frame != info.video.timing.frame_count:
        raise InputError(f"{info.path}: read {frame} frames, probe counted "
                         f"{info.video.timing.frame_count}; the file changed or is damaged")
    if parts is not None and results:
        parts.close(len(results) - 1)
    return results


def _seconds(packet: Any) -> float | None:
    ts = packet.dts if packet.dts is not None else packet.pts
    return None if ts is None else float(ts * packet.time_base)


def _start_time(streams: list[Any]) -> float:
    starts = [float(s.start_time * s.time_base) for s in streams if s.start_time is not None]
    return min(starts, default=0.0)


def _segment_start(info: MediaInfo, segment: Segment) -> float:
    """Time subtracted from a segment so it starts at zero (keeps players from waiting)."""
    for kf in info.video.keyframes:
        if kf.frame_index == segment.first_frame and kf.pts_s is not None:
            return kf.pts_s
    return 0.0


def _muxer_options(container: OutputContainer, info: MediaInfo, streamed: Segment | None
                   ) -> dict[str, str]:
    if streamed is None or container is not OutputContainer.MP4:
        return MUXER_OPTIONS[container]
    return {"moov_size": str(moov_reserve(info, streamed))}


def moov_reserve(info: MediaInfo, segment: Segment | None = None) -> int:
    """Bytes to keep free at the front of an MP4 for its index: at most about 40 bytes per
    sample (size, offset, timing, composition offset, chunk map), with a margin. A segment
    gets its share: its frames and the audio packets of as long a stretch."""
    frames = info.video.timing.frame_count
    part = frames if segment is None else segment.end_frame - segment.first_frame
    audio = -(-info.audio_packets * part // max(frames, 1))
    return 65536 + 64 * (part + audio) + 4096


class _SegmentWriter:
    def __init__(self, target: Path | BinaryIO, container: OutputContainer, vsrc: Any,
                 asrcs: list[Any], segment: Segment, start_s: float,
                 options: dict[str, str], video_time_base: Fraction | None = None) -> None:
        self.path = target if isinstance(target, Path) else None
        self.segment = segment
        self.offset_s = start_s
        self.out = av.open(str(target) if isinstance(target, Path) else target, "w",
                           format=container.value, options=options)
        self.map = {vsrc.index: self.out.add_stream_from_template(vsrc)}
        tag_for_apple(self.map[vsrc.index], container)
        if video_time_base is not None:
            self.map[vsrc.index].time_base = video_time_base
        for a in asrcs:
            self.map[a.index] = self.out.add_stream_from_template(a)
        self.video_packets = 0
        self.audio_packets = 0
        self._shifts: dict[Fraction, int] = {}

    def mux(self, packet: Any, video: bool) -> None:
        if self.offset_s:
            time_base = packet.time_base
            shift = self._shifts.get(time_base)
            if shift is None:  # Fraction arithmetic once per time base, not per packet
                shift = round(Fraction(self.offset_s).limit_denominator(10**9) / time_base)
                self._shifts[time_base] = shift
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
        packet.stream = self.map[packet.stream.index]
        self.out.mux(packet)
        if video:
            self.video_packets += 1
        else:
            self.audio_packets += 1

    def close(self) -> CopiedStream:
        self.out.close()
        return CopiedStream(self.path, self.segment, self.video_packets, self.audio_packets)


def tag_for_apple(stream: Any, container: OutputContainer) -> None:
    """HEVC in MP4 as 'hvc1' (FFmpeg's default is 'hev1'): Apple's players (QuickTime,
    Safari, iOS) play only 'hvc1'; other players accept both (ISO/IEC 14496-15 8.4.1)."""
    if container is OutputContainer.MP4 and stream.codec_context.name in ("hevc", "libx265"):
        stream.codec_context.codec_tag = "hvc1"


class CleanClock:
    """Exact timestamps for a constant-rate stream whose own are only rounded.

    Matroska, WebM and FLV count milliseconds, so 30 fps arrives as 0, 33, 67, 100 ... and,
    copied as they are, a demuxer measures 33/34 ms steps (a Frame Time Vector, or a Frame
    Time that disagrees with the header). Each timestamp is moved to the nearest slot of the
    exact rate on a time base fine enough for the start offset (>= 90 kHz), so the stored
    container is as constant as the stream's rate says. Frames keep their order and slots."""

    def __init__(self, rate: Fraction, source_time_base: Fraction, start_s: float) -> None:
        multiple = max(1, ceil(90000 / rate.numerator))
        self.time_base = Fraction(1, rate.numerator * multiple)
        self.period = rate.denominator * multiple
        self.rate = float(rate)
        self.source_tick = float(source_time_base)
        self.start_s = start_s
        self.start_ticks = round(Fraction(start_s).limit_denominator(10**9) / self.time_base)

    @classmethod
    def for_stream(cls, info: MediaInfo, stream: Any) -> CleanClock | None:
        """A clock when the probed timing is constant (None for variable-rate streams)."""
        timing = info.video.timing
        if timing.variable or stream.time_base is None:
            return None
        first = next((k.pts_s for k in info.video.keyframes if k.pts_s is not None), None)
        start = float(stream.start_time * stream.time_base) if stream.start_time is not None \
            else (first or 0.0)
        return cls(timing.rate, stream.time_base, start)

    def ticks(self, ts: int) -> int:
        slot = round((ts * self.source_tick - self.start_s) * self.rate)
        return self.start_ticks + slot * self.period

    def stamp(self, packet: Any, _frame: int = 0) -> None:
        if packet.pts is not None:
            packet.pts = self.ticks(packet.pts)
        if packet.dts is not None:
            packet.dts = self.ticks(packet.dts)
        packet.duration = self.period
        packet.time_base = self.time_base


class Retimer:
    """Timestamps for a raw elementary stream: constant rate, display order from one decode."""

    def __init__(self, rate: Fraction, display_position: array[int]) -> None:
        self.time_base = 1 / rate
        self.display_position = display_position
        self.delay = max((i - p for i, p in enumerate(display_position)), default=0)

    @classmethod
    def for_elementary(cls, info: MediaInfo) -> Retimer:
        return cls(info.video.timing.rate, _display_order(info))

    def stamp(self, packet: Any, frame: int) -> None:
        packet.time_base = self.time_base
        pos = self.display_position[frame] if frame < len(self.display_position) else frame
        packet.pts = pos
        packet.dts = frame - self.delay
        packet.duration = 1


def _display_order(info: MediaInfo) -> array[int]:
    """display_position[decode_index]: tag each packet with its index and read them back in
    the order the decoder emits pictures."""
    order = array("q", [0] * info.video.timing.frame_count)
    emitted = 0
    with av.open(str(info.path)) as source:
        stream = source.streams.video[0]
        if stream.index != info.video.index:
            stream = next(s for s in source.streams.video if s.index == info.video.index)
        stream.thread_type = "AUTO"
        for index, packet in enumerate(source.demux(stream)):
            if packet.size:
                packet.pts = packet.dts = index
            for picture in stream.decode(packet if packet.size else None):
                if picture.pts is not None and 0 <= picture.pts < len(order):
                    order[picture.pts] = emitted
                emitted += 1
    if emitted != len(order):
        raise InputError(f"{info.path}: {len(order)} frames in the stream but {emitted} decode")
    return order

