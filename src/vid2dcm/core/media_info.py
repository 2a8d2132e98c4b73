"""What probing learns about an input: typed records passed from probe to plan and on."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from fractions import Fraction
from pathlib import Path


@dataclass(frozen=True)
class FrameTiming:
    """Exact frame facts, taken from packet timestamps (never from decoding when avoidable)."""

    frame_count: int
    rate: Fraction
    duration_s: float
    variable: bool
    frame_time_ms: float
    frame_deltas_ms: tuple[float, ...] | None
    """Display-order frame intervals when the rate varies and there are few enough to keep."""
    count_source: str
    """Where the frame count came from, for people who must trust it."""
    rate_source: str = "packet timestamps"
    """Where the frame rate came from: packet timestamps (measured), a standard rate the
    rounded timestamps fit exactly, the SPS/VPS VUI timing, the stream header, or --frame-rate."""
    null_frames: int = 0
    """Index entries without a coded picture (AVI 'drop'/repeat frames): the previous picture
    stays on screen, so they lengthen the frame before them instead of counting as frames."""

    @property
    def cine_rate(self) -> int:
        return round(float(self.rate))


@dataclass(frozen=True)
class KeyFrame:
    """A random-access point: where an independently playable piece may start."""

    frame_index: int
    bytes_before: int
    """Payload bytes of all demuxed packets before this key frame."""
    pts_s: float | None = None
    """Presentation time of the key frame, where the container has timestamps."""


@dataclass(frozen=True)
class VideoStreamInfo:
    index: int
    codec: str
    codec_tag: str
    profile: str | None
    level: int | None
    """As the bitstream signals it: H.264 level_idc (41 = 4.1), HEVC general_level_idc (153 = 5.1),
    MPEG-2 level code (8 = Main, 4 = High)."""
    tier: str | None
    width: int
    height: int
    pix_fmt: str
    chroma: str
    bit_depth: int
    sample_aspect_ratio: Fraction | None
    rotation: int
    interlaced: bool
    color_range: str
    timing: FrameTiming
    keyframes: tuple[KeyFrame, ...]
    packet_bytes: int
    has_timestamps: bool
    """False for raw elementary streams: timestamps must be made before muxing."""
    peak_bit_rate: int | None = None
    """Highest bit rate over any 1 s window of decode-order packets (bits/s), measured."""
    stereo: str | None = None
    """Stereo 3D signalling of the first picture (frame-packing SEI: 'side by side', ...)."""


@dataclass(frozen=True)
class StreamSummary:
    """Any stream of the input, as probe lists it (kept or not)."""

    index: int
    kind: str
    """video, audio, subtitle, data or attachment."""
    codec: str
    detail: str = ""
    """Size and rate for video, language or handler for the others."""


@dataclass(frozen=True)
class Fact:
    """One number probe reports, with where it came from."""

    name: str
    value: str
    source: str


@dataclass(frozen=True)
class AudioStreamInfo:
    index: int
    codec: str
    profile: str | None
    sample_rate: int
    channels: int
    bit_rate: int | None


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    container: str
    size_bytes: int
    duration_s: float
    video: VideoStreamInfo
    audio: tuple[AudioStreamInfo, ...] = field(default=())
    total_packet_bytes: int = 0
    audio_packets: int = 0
    """Packets of all audio streams (sizes an MP4 index before it is written)."""
    major_brand: str | None = None
    """ISO BMFF brand: 'qt  ' marks QuickTime, which is not an MP4 container for DICOM."""
    creation_time: datetime | None = None
    """When the recording started, as the container says (recorders and phones write it)."""
    streams: tuple[StreamSummary, ...] = field(default=())
    """Every stream of the input, in container order (the chosen video is `video`)."""
    warnings: tuple[str, ...] = field(default=())
    """What probing had to work around (truncation, index mismatch, ignored streams)."""

    @property
    def video_stream_indexes(self) -> tuple[int, ...]:
        return tuple(s.index for s in self.streams if s.kind == "video") or (self.video.index,)

    @property
    def facts(self) -> tuple[Fact, ...]:
        """Each number probe reports, with its source (index, packet count, VUI, measured)."""
        v, t = self.video, self.video.timing
        facts = [
            Fact("frames", str(t.frame_count), t.count_source),
            Fact("frame rate", f"{float(t.rate):.4f}", t.rate_source),
            Fact("frame time (ms)", "vector" if t.frame_deltas_ms else f"{t.frame_time_ms:.4f}",
                 "packet timestamps (display-order intervals)" if t.frame_deltas_ms
                 else "1000 / frame rate"),
            Fact("duration (s)", f"{t.duration_s:.3f}",
                 "packet timestamps" if v.has_timestamps else "frames / frame rate"),
            Fact("size", f"{v.width}x{v.height}", "codec parameters (sequence header)"),
            Fact("level", str(v.level) if v.level is not None else "unknown",
                 "bitstream (SPS/VPS/sequence header)"),
        ]
        if t.null_frames:
            facts.append(Fact("null frames", str(t.null_frames),
                              "container index entries without a coded picture"))
        if v.peak_bit_rate is not None:
            facts.append(Fact("peak bit rate (bit/s)", str(v.peak_bit_rate),
                              "measured: most packet bytes in any 1 s window"))
        return tuple(facts)
