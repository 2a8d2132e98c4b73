"""Which DICOM video transfer syntax a stream qualifies for as it is, or the rules that stop it.

A PS3.5 conformance fact (8.2.5-8.2.11, Tables 8-3 and 8-4) that the planner (copy or
transcode?) and the validator (does the stored bitstream match its label?) both need, so it
lives below both. The limits come from the registry entries in core/syntaxes.py.
"""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

from vid2dcm.core import levels
from vid2dcm.core import syntaxes as ts
from vid2dcm.core.media_info import VideoStreamInfo
from vid2dcm.core.syntaxes import VideoTransferSyntax

BD_COMBINATIONS: tuple[tuple[int, int, Fraction, bool], ...] = (
    (1920, 1080, Fraction(25), True),
    (1920, 1080, Fraction(30000, 1001), True),
    (1920, 1080, Fraction(24), False),
    (1920, 1080, Fraction(24000, 1001), False),
    (1280, 720, Fraction(50), False),
    (1280, 720, Fraction(60000, 1001), False),
    (1280, 720, Fraction(24), False),
    (1280, 720, Fraction(24000, 1001), False),
)
"""PS3.5 Table 8-4: (columns, rows, frame rate, interlaced) for the BD-compatible syntax."""

MPEG2_ML_RATES = {Fraction(25): 576, Fraction(30000, 1001): 480, Fraction(30): 480}
MPEG2_HL_MODES: tuple[tuple[int, int, tuple[Fraction, ...]], ...] = (
    (1920, 1080, (Fraction(25), Fraction(30000, 1001), Fraction(30))),
    (1280, 720, (Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(50),
                 Fraction(60000, 1001), Fraction(60))),
)
MPEG2_LEVEL_MAIN, MPEG2_LEVEL_HIGH = ts.MPEG2_MPML.max_level, ts.MPEG2_MPHL.max_level


def same_rate(a: Fraction, b: Fraction) -> bool:
    """Equal within 0.04 %: far tighter than the 0.1 % between 30 and 29.97 fps."""
    return abs(float(a) / float(b) - 1) < 0.0004


def choose_transfer_syntax(v: VideoStreamInfo) -> tuple[VideoTransferSyntax | None, list[str]]:
    """The syntax a stream qualifies for as it is, or the exact rules that stop it."""
    broken = _common_rules(v)
    rule = CODEC_RULES.get(v.codec)
    if rule is None:
        return None, [f"{v.codec} has no DICOM video transfer syntax "
                      "(only MPEG-2, H.264 and HEVC can be stored)", *broken]
    syntax, codec_broken = rule(v)
    if syntax is not None and not syntax.non_square_pixels and not _square(v):
        codec_broken.append(f"pixels are not square (sample aspect ratio "
                            f"{v.sample_aspect_ratio}); {syntax.name} requires 1:1")
    broken += codec_broken
    return (syntax if not broken else None), broken


def _common_rules(v: VideoStreamInfo) -> list[str]:
    broken = []
    if v.chroma != "4:2:0":
        broken.append(f"chroma is {v.chroma} ({v.pix_fmt}); DICOM video needs 4:2:0")
    depths = {s.bit_depth for s in ts.for_codec(v.codec)} or {8}
    if v.bit_depth not in depths:
        allowed = " or ".join(str(d) for d in sorted(depths))
        broken.append(f"{v.bit_depth}-bit samples ({v.pix_fmt}); DICOM stores {v.codec} "
                      f"with {allowed} bits")
    if v.rotation:
        broken.append(f"the container asks players to rotate by {v.rotation} degrees; DICOM "
                      "viewers ignore that, so the pixels must be rotated")
    return broken


def _square(v: VideoStreamInfo) -> bool:
    return v.sample_aspect_ratio is None or v.sample_aspect_ratio == 1


def _h264(v: VideoStreamInfo) -> tuple[VideoTransferSyntax | None, list[str]]:
    if v.profile in ts.H264_STEREO_HP42.profiles:
        level = levels.h264_level(ts.H264_STEREO_HP42.max_level)
        limit = (None if (v.level or 0) <= level.level_idc else
                 f"H.264 Level {(v.level or 0) / 10:g} signalled; Stereo High stops at 4.2")
        limit = limit or levels.h264_fits(level, v.width, v.height, float(v.timing.rate))
        return (None, [limit]) if limit else (ts.H264_STEREO_HP42, [])
    if v.profile not in ts.H264_HP41.profiles:
        return None, [f"H.264 {v.profile or 'unknown'} profile; DICOM stores H.264 High "
                      "profile only"]
    signalled = v.level or 0
    rate = float(v.timing.rate)
    l41, l42 = ts.H264_HP41.max_level, ts.H264_HP42_2D.max_level
    stereo = v.stereo is not None
    if signalled <= l41 and not stereo:
        level = levels.h264_level(l41)
        limit = (levels.h264_fits(level, v.width, v.height, rate)
                 or levels.h264_bit_rate_fits(level, v.peak_bit_rate))
        if limit is None:
            return (ts.H264_HP41_BD if _is_bd(v) else ts.H264_HP41), []
    if signalled <= l42:
        level = levels.h264_level(l42)
        limit = (levels.h264_fits(level, v.width, v.height, rate)
                 or levels.h264_bit_rate_fits(level, v.peak_bit_rate))
        if limit is None:
            return (ts.H264_HP42_3D if stereo else ts.H264_HP42_2D), []
        return None, [limit]
    return None, [f"H.264 Level {signalled // 10}.{signalled % 10} signalled; DICOM stores "
                  "H.264 up to Level 4.2"]


def _is_bd(v: VideoStreamInfo) -> bool:
    return any(
        (v.width, v.height) == (w, h) and same_rate(v.timing.rate, r) and v.interlaced == i
        for w, h, r, i in BD_COMBINATIONS
    )


def _hevc(v: VideoStreamInfo) -> tuple[VideoTransferSyntax | None, list[str]]:
    broken = []
    syntax = ts.HEVC_M10P51 if v.profile in ts.HEVC_M10P51.profiles else ts.HEVC_MP51
    if v.profile not in syntax.profiles:
        broken.append(f"HEVC {v.profile or 'unknown'} profile; DICOM stores HEVC Main and "
                      "Main 10 only")
    elif v.bit_depth != syntax.bit_depth and v.bit_depth in (8, 10):
        broken.append(f"HEVC {v.profile} profile with {v.bit_depth}-bit samples; "
                      f"{syntax.name} describes {syntax.bit_depth}-bit samples (Bits Stored "
                      f"{syntax.bits[1]})")
    if v.level is None or v.level > ts.HEVC_MP51.max_level:
        shown = levels.hevc_level_name(v.level) if v.level else "unknown"
        broken.append(f"HEVC Level {shown} signalled; DICOM stores HEVC up to Level 5.1")
    if v.tier == "High":
        broken.append("HEVC High tier; DICOM stores HEVC Main tier only")
    limit = (levels.hevc_fits_51(v.width, v.height, float(v.timing.rate))
             or levels.hevc_bit_rate_fits_51(v.peak_bit_rate))
    if limit:
        broken.append(limit)
    return (None if broken else syntax), broken


def _mpeg2(v: VideoStreamInfo) -> tuple[VideoTransferSyntax | None, list[str]]:
    if v.profile not in ts.MPEG2_MPML.profiles:
        return None, [f"MPEG-2 {v.profile or 'unknown'} profile; DICOM stores MPEG-2 Main "
                      "Profile only"]
    rate = v.timing.rate
    if v.level == MPEG2_LEVEL_MAIN:
        max_rows = next((rows for r, rows in MPEG2_ML_RATES.items() if same_rate(rate, r)), None)
        if max_rows is None:
            return None, [f"MPEG-2 MP@ML at {float(rate):.3f} fps; only 25 (PAL) or "
                          "29.97/30 (NTSC) frames/s are allowed"]
        if v.width > 720 or v.height > max_rows:
            return None, [f"MPEG-2 MP@ML {v.width}x{v.height} at {float(rate):.2f} fps exceeds "
                          f"720x{max_rows}"]
        return ts.MPEG2_MPML, []
    if v.level == MPEG2_LEVEL_HIGH:
        if not _square(v):
            return None, ["MPEG-2 MP@HL with non-square pixels; MP@HL requires 1:1"]
        for w, h, rates in MPEG2_HL_MODES:
            if (v.width, v.height) == (w, h):
                if any(same_rate(rate, r) for r in rates):
                    return ts.MPEG2_MPHL, []
                return None, [f"MPEG-2 MP@HL {w}x{h} at {float(rate):.3f} fps is not one of "
                              "the frame rates PS3.5 Table 8-3 allows"]
        return None, [f"MPEG-2 MP@HL picture {v.width}x{v.height}; only 1920x1080 and "
                      "1280x720 are allowed"]
    return None, [f"MPEG-2 level code {v.level}; DICOM stores Main Level and High Level only"]


Rule = Callable[[VideoStreamInfo], tuple[VideoTransferSyntax | None, list[str]]]

CODEC_RULES: dict[str, Rule] = {
    "h264": _h264,
    "hevc": _hevc,
    "mpeg2video": _mpeg2,
}
"""One qualification rule per codec family; each picks among that codec's registry entries."""
