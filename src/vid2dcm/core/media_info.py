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
