"""Frame-by-frame encodings for receivers and IODs that cannot take a video bitstream.

Each frame becomes its own still image (one fragment per frame, or native pixels); temporal
compression and audio are lost. Photometric Interpretation per PS3.5 8.2 and the VL / US / SC
image modules: YBR_FULL_422 for JPEG Baseline, RGB for the lossless encodings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class FrameEncoding(StrEnum):
    JPEG = "jpeg"
    JPEG_LS = "jpeg-ls"
    J2K = "j2k"
    RLE = "rle"
    RAW = "raw"


@dataclass(frozen=True)
class FrameSyntax:
    encoding: FrameEncoding
    uid: str
    name: str
    photometric: str
    pix_fmt: str
    """Pixel format the encoder is fed."""
    encoder: str | None
    """FFmpeg encoder, or None when pydicom (RLE) or nothing (raw) encodes."""
    lossy_method: str | None
    """Lossy Image Compression Method of this encoding itself (None: lossless)."""
    known_to_dciodvfy: bool = True

    @property
    def encapsulated(self) -> bool:
        return self.encoding is not FrameEncoding.RAW


FRAME_SYNTAXES: dict[FrameEncoding, FrameSyntax] = {
    FrameEncoding.JPEG: FrameSyntax(FrameEncoding.JPEG, "1.2.840.10008.1.2.4.50",
                                    "JPEG Baseline (Process 1)", "YBR_FULL_422", "yuvj422p",
                                    "mjpeg", "ISO_10918_1"),
    FrameEncoding.JPEG_LS: FrameSyntax(FrameEncoding.JPEG_LS, "1.2.840.10008.1.2.4.80",
                                       "JPEG-LS Lossless", "RGB", "rgb24", "jpegls", None),
    FrameEncoding.J2K: FrameSyntax(FrameEncoding.J2K, "1.2.840.10008.1.2.4.90",
                                   "JPEG 2000 Lossless", "YBR_RCT", "rgb24", None, None),
    FrameEncoding.RLE: FrameSyntax(FrameEncoding.RLE, "1.2.840.10008.1.2.5", "RLE Lossless", "RGB",
                                   "rgb24", None, None),
    FrameEncoding.RAW: FrameSyntax(FrameEncoding.RAW, "1.2.840.10008.1.2.1",
                                   "Explicit VR Little Endian", "RGB", "rgb24", None, None),
}

ENCODER_OPTIONS: dict[FrameEncoding, dict[str, str]] = {}
"""J2K is encoded by pydicom with OpenJPEG, not FFmpeg: FFmpeg's encoder cannot apply the
reversible colour transform, and the VL and SC IODs require YBR_RCT for lossless J2K."""

JPEG_QSCALE = {"archive": 2, "standard": 3, "compact": 6}


def frame_syntax_by_uid(uid: str) -> FrameSyntax | None:
    for syntax in FRAME_SYNTAXES.values():
        if syntax.uid == uid:
            return syntax
    return None
