"""The pure delivery decisions: what to propose, and what to send for each answer."""

from __future__ import annotations

import pytest
from pydicom import uid as pu

from vid2dcm.core.frame_syntaxes import FrameEncoding
from vid2dcm.delivery.negotiation import DeliveryKind, choose_delivery, proposed_syntaxes

H264 = str(pu.MPEG4HP41)
H264F = str(pu.MPEG4HP41F)
H264_42 = str(pu.MPEG4HP422D)
HEVC = str(pu.HEVCMP51)
MPEG2 = str(pu.MPEG2MPHL)
JPEG = str(pu.JPEGBaseline8Bit)
RLE = str(pu.RLELossless)
EXPLICIT = str(pu.ExplicitVRLittleEndian)


def test_proposals_start_with_the_file_and_have_no_duplicates() -> None:
    offered = proposed_syntaxes(H264F, lossy_fallback=True)
    assert offered[:2] == [H264F, H264]
    assert len(offered) == len(set(offered))
    assert JPEG in offered and EXPLICIT in offered


def test_no_frame_proposals_without_lossy_fallback() -> None:
    offered = proposed_syntaxes(HEVC, lossy_fallback=False)
    assert offered[0] == HEVC
    assert JPEG not in offered and EXPLICIT not in offered


@pytest.mark.parametrize(("file_ts", "accepted", "lossy", "kind", "sent"), [
    (H264, {H264, EXPLICIT}, True, DeliveryKind.AS_IS, H264),
    (H264F, {H264, H264F}, True, DeliveryKind.AS_IS, H264F),
    (H264F, {H264, EXPLICIT}, True, DeliveryKind.TWIN, H264),
    (HEVC, {H264, EXPLICIT}, True, DeliveryKind.TRANSCODE, H264),
    (HEVC, {H264_42}, True, DeliveryKind.TRANSCODE, H264_42),
    (MPEG2, {HEVC}, False, DeliveryKind.TRANSCODE, HEVC),
    (H264, {JPEG, EXPLICIT}, True, DeliveryKind.FRAMES, JPEG),
    (H264, {RLE, EXPLICIT}, True, DeliveryKind.FRAMES, RLE),
    (H264, {EXPLICIT}, True, DeliveryKind.FRAMES, EXPLICIT),
    (JPEG, {JPEG}, False, DeliveryKind.AS_IS, JPEG),
    (JPEG, {EXPLICIT}, False, DeliveryKind.FRAMES, EXPLICIT),
])
def test_choose_delivery(file_ts: str, accepted: set[str], lossy: bool, kind: DeliveryKind,
                         sent: str) -> None:
    choice, why = choose_delivery(file_ts, frozenset(accepted), lossy)
    assert choice is not None, why
    assert choice.kind is kind
    assert choice.transfer_syntax_uid == sent
    assert choice.reason
    if kind is DeliveryKind.FRAMES:
        assert choice.frames in set(FrameEncoding)


def test_refusal_explains_itself() -> None:
    choice, why = choose_delivery(H264, frozenset({EXPLICIT}), lossy_fallback=False)
    assert choice is None
    assert "lossy fallback is disabled" in why
    choice, why = choose_delivery(H264, frozenset(), lossy_fallback=True)
    assert choice is None and "none of the proposed" in why
