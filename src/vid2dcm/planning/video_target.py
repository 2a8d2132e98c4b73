"""What a video that DICOM cannot store as-is becomes: the pure transcode table.

Given the probed stream and the request, choose the encoder, transfer syntax, level, picture
geometry (rotation applied, square pixels, even size, downscale beyond HEVC Level 5.1), scan
handling and rate control. Every step that changes the pictures is named, for the header's
Derivation Description and for `probe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from math import sqrt

from vid2dcm.core import levels
from vid2dcm.core import syntaxes as ts
from vid2dcm.core.media_info import VideoStreamInfo
from vid2dcm.core.syntaxes import VideoTransferSyntax


class Quality(StrEnum):
    ARCHIVE = "archive"
    STANDARD = "standard"
    COMPACT = "compact"


class Speed(StrEnum):
    FAST = "fast"
    BALANCED = "balanced"
    SLOW = "slow"


CRF: dict[tuple[str, Quality], int] = {
    ("libx264", Quality.ARCHIVE): 16,
    ("libx264", Quality.STANDARD): 20,
    ("libx264", Quality.COMPACT): 26,
    ("libx265", Quality.ARCHIVE): 18,
    ("libx265", Quality.STANDARD): 23,
    ("libx265", Quality.COMPACT): 28,
}
"""Constant rate factors. x264 CRF 20 is visually transparent for most clinical video."""

PRESETS: dict[tuple[str, Speed], str] = {
    ("libx264", Speed.FAST): "superfast",
    ("libx264", Speed.BALANCED): "veryfast",
    ("libx264", Speed.SLOW): "medium",
    ("libx265", Speed.FAST): "ultrafast",
    ("libx265", Speed.BALANCED): "ultrafast",
    ("libx265", Speed.SLOW): "veryfast",
}
"""Never x264 'ultrafast': it drops CABAC and 8x8 transforms and signals Constrained Baseline,
which is not the High profile the DICOM syntaxes name. Measured on 2 cores, 1080p:
superfast 143 fps, veryfast 91 fps, medium 59 fps; x265 ultrafast 25 fps."""

RATE_CAPS_KBIT: dict[str, tuple[int, int]] = {
    "4.1": (50_000, 62_500),
    "4.2": (50_000, 62_500),
    "5.1": (36_000, 36_000),
}
"""(VBV max rate, VBV buffer) in kbit/s and kbit: H.264 High Level 4.1/4.2 allow 62.5 Mbit/s,
HEVC Main tier Level 5.1 40 Mbit/s; the caps keep a margin under the level, so the re-plan's
measured one-second peak (MaxBR + MaxCPB) is never reached by a VBV-conformant encode."""

RATE_MARGIN = 1.01
"""Targets are chosen for the measured rate plus 1 %: a rate measured from timestamps (60.044
for '60 fps') must not put a planned encode a hair over its level's macroblock rate when the
encoded stream is measured again."""

DEFAULT_BOX = (4096, 2160)


@dataclass(frozen=True)
class VideoTarget:
    encoder: str
    syntax: VideoTransferSyntax
    level: str
    width: int
    height: int
    """Encoded picture size (even)."""
    scaled_size: tuple[int, int] | None
    """Size the picture is scaled to before rotation and padding, if scaled."""
    rotation: int
    """Counter-clockwise degrees to turn the decoded pictures (the container's display rotation)."""
    padded: bool
    deinterlace: bool
    interlaced: bool
    """Code the pictures as interlaced (kept from the source)."""
    rate: Fraction
    crf: int
    preset: str
    max_rate_kbit: int
    buffer_kbit: int
    steps: tuple[str, ...]
    """What happens to the pictures beyond re-encoding, in words."""
    warnings: tuple[str, ...] = ()
    short_clip: bool = False
    """So few frames that the encoder must not hold any back for B-frames."""

    @property
    def changes_geometry(self) -> bool:
        return bool(self.scaled_size or self.rotation or self.padded or self.deinterlace)

    def describe(self) -> str:
        codec = "H.264 High" if self.encoder == "libx264" else "HEVC Main"
        scan = " interlaced" if self.interlaced else ""
        return (f"{codec} Level {self.level}, {self.width}x{self.height}{scan} at "
                f"{float(self.rate):.3f} fps, CRF {self.crf}, preset {self.preset}")


def choose_video_target(v: VideoStreamInfo, quality: Quality = Quality.STANDARD,
                        speed: Speed = Speed.BALANCED,
                        max_size: tuple[int, int] | None = None) -> VideoTarget:
    steps: list[str] = []
    warnings: list[str] = []
    width, height = v.width, v.height
    sar = v.sample_aspect_ratio or Fraction(1)
    if sar != 1:
        width = max(2, round(width * sar / 2) * 2)
        steps.append(f"non-square pixels (aspect {sar}) resampled to square: "
                     f"{v.width}x{v.height} -> {width}x{height}")
    turned = v.rotation in (90, 270)
    shown_w, shown_h = (height, width) if turned else (width, height)
    if v.rotation:
        steps.append(f"rotated {v.rotation} degrees counter-clockwise, as the container asks")
    rate = v.timing.rate
    factor = _fit_factor(shown_w, shown_h, float(rate), max_size)
    scaled: tuple[int, int] | None = (width, height) if sar != 1 else None
    if factor < 1:
        new_w, new_h = _even(shown_w * factor), _even(shown_h * factor)
        box = max_size or DEFAULT_BOX
        if max_size:
            steps.append(f"downscaled {shown_w}x{shown_h} -> {new_w}x{new_h} (--max-size)")
        else:
            warnings.append(f"{shown_w}x{shown_h} at {float(rate):.2f} fps exceeds HEVC Level "
                            f"5.1; downscaled to {new_w}x{new_h} (fits {box[0]}x{box[1]}; "
                            "--max-size to choose)")
            steps.append(f"downscaled {shown_w}x{shown_h} -> {new_w}x{new_h} to fit HEVC "
                         "Level 5.1")
        shown_w, shown_h = new_w, new_h
        scaled = (new_h, new_w) if turned else (new_w, new_h)
    encoder, syntax, level = _codec_for(shown_w + shown_w % 2, shown_h + shown_h % 2,
                                        float(rate))
    keep_interlace = v.interlaced and encoder == "libx264" and not (scaled or v.rotation)
    deinterlace = v.interlaced and not keep_interlace
    # 4:2:0 needs even sizes; interlaced 4:2:0 codes each field's chroma, so 4 lines
    pad_w = -shown_w % 2
    pad_h = -shown_h % (4 if keep_interlace else 2)
    padded = bool(pad_w or pad_h)
    if padded:
        steps.append(f"padded {shown_w}x{shown_h} -> {shown_w + pad_w}x{shown_h + pad_h} with "
                     "black (4:2:0 needs even sizes" + (", interlaced 4:2:0 a multiple of 4 "
                                                       "lines)" if pad_h > 1 else ")"))
        shown_w, shown_h = shown_w + pad_w, shown_h + pad_h
    if deinterlace:
        steps.append("deinterlaced (the target cannot keep the fields)")
    if v.bit_depth != 8 or v.chroma != "4:2:0":
        steps.append(f"{v.chroma} {v.bit_depth}-bit samples converted to 4:2:0 8-bit")
    max_rate, buffer = RATE_CAPS_KBIT[level]
    return VideoTarget(
        encoder=encoder, syntax=syntax, level=level, width=shown_w, height=shown_h,
        scaled_size=scaled, rotation=v.rotation, padded=padded, deinterlace=deinterlace,
        interlaced=keep_interlace, rate=rate, crf=CRF[(encoder, quality)],
        preset=PRESETS[(encoder, speed)], max_rate_kbit=max_rate, buffer_kbit=buffer,
        steps=tuple(steps), warnings=tuple(warnings),
        short_clip=v.timing.frame_count < SHORT_CLIP_FRAMES,
    )


SHORT_CLIP_FRAMES = 8
"""x265 leaves the DTS of the first packets undefined when a clip ends inside its B-frame
delay; clips this short are coded without B-frames."""


def _even(value: float) -> int:
    return max(2, int(value) // 2 * 2)


def _fit_factor(width: int, height: int, rate: float, max_size: tuple[int, int] | None) -> float:
    """The scale (<= 1) that brings the picture inside the box and HEVC Level 5.1."""
    factor = 1.0
    if max_size is not None:
        factor = min(factor, _box_factor(width, height, max_size))
    if levels.hevc_fits_51(_even(width * factor), _even(height * factor), rate) is None:
        return factor
    factor = min(factor, _box_factor(width, height, DEFAULT_BOX))
    samples = width * height * factor * factor
    if samples * rate > levels.HEVC_L51_MAX_LUMA_RATE:
        factor *= sqrt(levels.HEVC_L51_MAX_LUMA_RATE / (samples * rate)) * 0.999
    return factor


def _box_factor(width: int, height: int, box: tuple[int, int]) -> float:
    """Fit inside the box, turned to the picture's orientation (portrait video, portrait box)."""
    long_side, short_side = max(box), min(box)
    if height > width:
        return min(1.0, short_side / width, long_side / height)
    return min(1.0, long_side / width, short_side / height)


def _codec_for(width: int, height: int, rate: float) -> tuple[str, VideoTransferSyntax, str]:
    """The first encoder target of the registry whose level limits the picture fits."""
    rate *= RATE_MARGIN
    for syntax in ts.ENCODER_TARGETS:
        assert syntax.encoder is not None and syntax.encoder_level is not None
        if syntax.codec == "h264":
            fits = levels.h264_fits(levels.h264_level(syntax.max_level), width, height, rate)
        else:
            fits = levels.hevc_fits_51(width, height, rate)
        if fits is None or syntax is ts.ENCODER_TARGETS[-1]:
            return syntax.encoder, syntax, syntax.encoder_level
    raise AssertionError("the registry has no encoder target")
