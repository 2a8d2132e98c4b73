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
    max_bit_rate_kbit: int = 0
    """MaxBR of Table A-1 in units of 1000 bit/s (cpbBrVclFactor 1000: Baseline/Main)."""
    max_cpb_kbit: int = 0
    """MaxCPB of Table A-1 in units of 1000 bits."""

    @property
    def name(self) -> str:
        return f"{self.level_idc // 10}.{self.level_idc % 10}"


H264_LEVELS: tuple[H264Level, ...] = (
    H264Level(10, 1485, 99, 64, 175),
    H264Level(11, 3000, 396, 192, 500),
    H264Level(12, 6000, 396, 384, 1000),
    H264Level(13, 11880, 396, 768, 2000),
    H264Level(20, 11880, 396, 2000, 2000),
    H264Level(21, 19800, 792, 4000, 4000),
    H264Level(22, 20250, 1620, 4000, 4000),
    H264Level(30, 40500, 1620, 10000, 10000),
    H264Level(31, 108000, 3600, 14000, 14000),
    H264Level(32, 216000, 5120, 20000, 20000),
    H264Level(40, 245760, 8192, 20000, 25000),
    H264Level(41, 245760, 8192, 50000, 62500),
    H264Level(42, 522240, 8704, 50000, 62500),
    H264Level(50, 589824, 22080, 135000, 135000),
    H264Level(51, 983040, 36864, 240000, 240000),
    H264Level(52, 2073600, 36864, 240000, 240000),
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


HIGH_PROFILE_BR_FACTOR = 1.25
"""H.264 Table A-2: High profile cpbBrVclFactor 1250 against 1000 for Main."""


def h264_bit_rate_fits(level: H264Level, peak_bits_per_s: int | None, high: bool = True
                       ) -> str | None:
    """None when no one-second window holds more bits than the level's HRD could deliver in a
    second (MaxBR x 1 s plus a full CPB: a necessary condition of Annex C), else the excess."""
    if peak_bits_per_s is None or not level.max_bit_rate_kbit:
        return None
    factor = 1000 * (HIGH_PROFILE_BR_FACTOR if high else 1.0)
    allowed = (level.max_bit_rate_kbit + level.max_cpb_kbit) * factor
    if peak_bits_per_s > allowed:
        return (f"a measured peak of {peak_bits_per_s / 1e6:.1f} Mbit in one second exceeds "
                f"Level {level.name} (MaxBR {level.max_bit_rate_kbit * factor / 1e6:g} Mbit/s "
                f"plus MaxCPB {level.max_cpb_kbit * factor / 1e6:g} Mbit, H.264 Table A-1)")
    return None


HEVC_L51_MAX_BR_KBIT = 40_000
HEVC_L51_MAX_CPB_KBIT = 40_000
"""H.265 Table A.8, Main tier Level 5.1 (CpbBrVclFactor 1000 for Main and Main 10)."""


def hevc_bit_rate_fits_51(peak_bits_per_s: int | None) -> str | None:
    """As h264_bit_rate_fits, for HEVC Main tier Level 5.1."""
    if peak_bits_per_s is None:
        return None
    allowed = (HEVC_L51_MAX_BR_KBIT + HEVC_L51_MAX_CPB_KBIT) * 1000
    if peak_bits_per_s > allowed:
        return (f"a measured peak of {peak_bits_per_s / 1e6:.1f} Mbit in one second exceeds "
                "HEVC Main tier Level 5.1 (MaxBR 40 Mbit/s plus MaxCPB 40 Mbit, H.265 "
                "Table A.8)")
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
