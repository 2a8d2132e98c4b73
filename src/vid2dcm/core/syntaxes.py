"""The DICOM video transfer syntaxes and what each one promises (PS3.5 8.2.5-8.2.11)."""

from __future__ import annotations

from dataclasses import dataclass

from pydicom import uid as pu
from pydicom.uid import UID


@dataclass(frozen=True)
class VideoTransferSyntax:
    uid: str
    name: str
    codec: str
    """FFmpeg codec name of the bitstream this syntax carries."""
    lossy_method: str
    """Lossy Image Compression Method (0028,2114) for this codec."""
    multi_fragment: bool
    """Whether the bitstream may span several Pixel Data items."""
    fragmentable_uid: str | None
    """The twin that allows several fragments, for streams over 2^32-2 bytes."""
    known_to_dciodvfy: bool
    """dicom3tools (Debian 12) validates only MPEG-2 and H.264 syntaxes."""


MPEG2_MPML = VideoTransferSyntax(
    pu.MPEG2MPML, "MPEG2 Main Profile / Main Level", "mpeg2video", "ISO_13818_2", False,
    pu.MPEG2MPMLF, True,
)
MPEG2_MPHL = VideoTransferSyntax(
    pu.MPEG2MPHL, "MPEG2 Main Profile / High Level", "mpeg2video", "ISO_13818_2", False,
    pu.MPEG2MPHLF, True,
)
H264_HP41 = VideoTransferSyntax(
    pu.MPEG4HP41, "MPEG-4 AVC/H.264 High Profile / Level 4.1", "h264", "ISO_14496_10", False,
    pu.MPEG4HP41F, True,
)
H264_HP41_BD = VideoTransferSyntax(
    pu.MPEG4HP41BD, "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", "h264",
    "ISO_14496_10", False, pu.MPEG4HP41BDF, True,
)
H264_HP42_2D = VideoTransferSyntax(
    pu.MPEG4HP422D, "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", "h264",
    "ISO_14496_10", False, pu.MPEG4HP422DF, True,
)
HEVC_MP51 = VideoTransferSyntax(
    pu.HEVCMP51, "HEVC/H.265 Main Profile / Level 5.1", "hevc", "ISO_23008_2", True, None, False,
)

VIDEO_TRANSFER_SYNTAXES: tuple[VideoTransferSyntax, ...] = (
    MPEG2_MPML, MPEG2_MPHL, H264_HP41, H264_HP41_BD, H264_HP42_2D, HEVC_MP51,
)

FRAGMENTABLE_NAMES = {
    str(pu.MPEG2MPMLF): "Fragmentable MPEG2 Main Profile / Main Level",
    str(pu.MPEG2MPHLF): "Fragmentable MPEG2 Main Profile / High Level",
    str(pu.MPEG4HP41F): "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1",
    str(pu.MPEG4HP41BDF): "Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1",
    str(pu.MPEG4HP422DF): "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video",
}

MAX_ITEM_BYTES = 2**32 - 2
"""One encapsulated item holds at most this many bytes (32-bit even length, not 0xFFFFFFFF)."""


def by_uid(uid: str) -> VideoTransferSyntax | None:
    """The syntax for a UID, the Fragmentable twins included (returned as their base rule)."""
    for ts in VIDEO_TRANSFER_SYNTAXES:
        if uid in (ts.uid, ts.fragmentable_uid):
            return ts
    return None


def allows_multiple_fragments(uid: str) -> bool:
    ts = by_uid(uid)
    return ts is not None and (ts.multi_fragment or uid == ts.fragmentable_uid)


def uid_name(uid: str) -> str:
    if uid in FRAGMENTABLE_NAMES:
        return FRAGMENTABLE_NAMES[uid]
    ts = by_uid(uid)
    return ts.name if ts else UID(uid).name
