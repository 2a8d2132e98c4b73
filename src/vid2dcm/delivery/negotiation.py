"""What to offer a peer for each file, and what to send once it has answered. Pure.

Preference: the file as it is -> for a Fragmentable file its non-fragmentable twin -> a video
syntax vid2dcm can encode that the peer accepts -> frame by frame (only when the destination
allows it). One presentation context is proposed per transfer syntax, so the peer's answer says
exactly which syntaxes it takes (a context listing several lets it pick uncompressed and fail).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom import uid as pu

from vid2dcm.core.frame_syntaxes import FrameEncoding, frame_syntax_by_uid
from vid2dcm.core.syntaxes import ENCODER_TARGETS, by_uid

VIDEO_TARGETS = tuple(str(s.uid) for s in ENCODER_TARGETS)
"""Video syntaxes the transcode path can produce, in order of preference."""

FRAME_FALLBACKS: tuple[tuple[str, FrameEncoding], ...] = (
    (str(pu.JPEGBaseline8Bit), FrameEncoding.JPEG),
    (str(pu.JPEGLSLossless), FrameEncoding.JPEG_LS),
    (str(pu.RLELossless), FrameEncoding.RLE),
    (str(pu.ExplicitVRLittleEndian), FrameEncoding.RAW),
)


class DeliveryKind(StrEnum):
    AS_IS = "as-is"
    TWIN = "non-fragmentable twin"
    TRANSCODE = "transcoded"
    FRAMES = "frame by frame"


@dataclass(frozen=True)
class DeliveryChoice:
    kind: DeliveryKind
    transfer_syntax_uid: str
    reason: str
    frames: FrameEncoding | None = None


def proposed_syntaxes(file_syntax: str, lossy_fallback: bool) -> list[str]:
    """Transfer syntaxes to propose for one file, best first, without duplicates."""
    candidates = [file_syntax]
    video = by_uid(file_syntax)
    if video is not None and file_syntax == video.fragmentable_uid:
        candidates.append(video.uid)
    candidates.extend(VIDEO_TARGETS)
    if lossy_fallback or frame_syntax_by_uid(file_syntax) is not None:
        candidates.extend(uid for uid, _ in FRAME_FALLBACKS)
    seen: list[str] = []
    for uid in candidates:
        if uid not in seen:
            seen.append(uid)
    return seen


def choose_delivery(file_syntax: str, accepted: frozenset[str],
                    lossy_fallback: bool) -> tuple[DeliveryChoice | None, str]:
    """The first acceptable way to deliver, or None and why nothing is."""
    if file_syntax in accepted:
        return DeliveryChoice(DeliveryKind.AS_IS, file_syntax, "the peer accepts the file's "
                              "transfer syntax"), ""
    video = by_uid(file_syntax)
    if video is not None and file_syntax == video.fragmentable_uid and video.uid in accepted:
        return DeliveryChoice(DeliveryKind.TWIN, video.uid, "the peer refuses the Fragmentable "
                              "syntax; sending the same bitstream as its non-fragmentable twin"), ""
    is_video = video is not None
    if is_video:
        for uid in VIDEO_TARGETS:
            if uid in accepted:
                return DeliveryChoice(DeliveryKind.TRANSCODE, uid, f"the peer refuses "
                                      f"{file_syntax} but accepts {uid}; re-encoding"), ""
    if lossy_fallback or not is_video:
        for uid, encoding in FRAME_FALLBACKS:
            if uid in accepted:
                return DeliveryChoice(DeliveryKind.FRAMES, uid, "the peer accepts no video "
                                      f"syntax vid2dcm can make; sending frames as {uid}",
                                      encoding), ""
    offered = ", ".join(sorted(accepted)) or "nothing"
    if is_video and not lossy_fallback:
        return None, (f"the peer accepts no video transfer syntax for this object (it accepted "
                      f"{offered}) and lossy fallback is disabled for this destination")
    return None, f"the peer accepted none of the proposed transfer syntaxes ({offered})"
