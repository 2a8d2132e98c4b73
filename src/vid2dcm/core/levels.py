"""Codec level limits (ITU-T H.264 Table A-1, H.265 Table A.8): can a picture size and rate
be carried at a given level? Pure tables, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from math import ceil, isqrt


@dataclass(frozen=True)
class H264Level:
    level_idc: int
    max_macroblocks_per_s: int
    max_frame_macroblocks: int

    @property
    def name(self) -> str:
        return f"{self.level_idc // 10}.{self.level_idc % 10}"


H264_LEVELS: tuple[H264Level, ...] = (
    H264Level(10, 1485, 99),
    H264Level(11, 3000, 396),
    H264Level(12, 6000, 396),
    H264Level(13, 11880, 396),
    H264Level(20, 11880, 396),
    H264Level(21, 19800, 792),
    H264Level(22, 20250, 1620),
    H264Level(30, 40500, 1620),
    H264Level(31, 108000, 3600),
    H264Level(32, 216000, 5120),
    H264Level(40, 245760, 8192),
    H264Level(41, 245760, 8192),
    H264Level(42, 522240, 8704),
    H264Level(50, 589824, 22080),
    H264Level(51, 983040, 36864),
    H264Level(52, 2073600, 36864),
)


def h264_level(level_idc: int) -> H264Level:
    for level in H264_LEVELS:
        if level.level_idc == level_idc:
            return level
    if level_idc == 9:  # level 1b
        return H264_LEVELS[0]
    raise KeyError(level_idc)


def h264_fits(level: H264Level, width: int, height: int, rate: float) -> str | None:
    """None when the size and rate fit the level, else the limit that is exceeded."""
    mbs_w, mbs_h = ceil(width / 16), ceil(height / 16)
    frame_mbs = mbs_w * mbs_h
    side_limit = isqrt(8 * level.max_frame_macroblocks)
    if frame_mbs > level.max_frame_macroblocks:
        return (
            f"{width}x{height} is {frame_mbs} macroblocks per frame, over the "
            f"{level.max_frame_macroblocks} of Level {level.name}"
        )
    if mbs_w > side_limit or mbs_h > side_limit:
        return f"{width}x{height} is wider or taller than Level {level.name} allows"
    if frame_mbs * rate > level.max_macroblocks_per_s * 1.0001:
        return (
            f"{width}x{height} at {rate:.3f} fps is {frame_mbs * rate:.0f} macroblocks/s, over the "
            f"{level.max_macroblocks_per_s} of Level {level.name}"
        )
    return None


HEVC_L51_MAX_LUMA_PICTURE = 8_912_896
HEVC_L51_MAX_LUMA_RATE = 534_773_760
HEVC_L51_LEVEL_IDC = 153


def hevc_level_name(general_level_idc: int) -> str:
    return f"{general_level_idc / 30:g}"


def hevc_fits_51(width: int, height: int, rate: float) -> str | None:
    """None when the picture fits HEVC Main tier Level 5.1, else the limit that is exceeded."""
    samples = width * height
    side_limit = isqrt(8 * HEVC_L51_MAX_LUMA_PICTURE)
    if samples > HEVC_L51_MAX_LUMA_PICTURE or width > side_limit or height > side_limit:
        return f"{width}x{height} is larger than HEVC Level 5.1 allows (4096x2160 class)"
    if samples * rate > HEVC_L51_MAX_LUMA_RATE * 1.0001:
        return f"{width}x{height} at {rate:.3f} fps exceeds the HEVC Level 5.1 sample rate"
    return None
