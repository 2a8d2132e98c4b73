"""Feed a WebRTC video track received by aiortc into a PushedRecorder, bitstream included.

aiortc's RTCRtpReceiver hands its track decoded frames only. The encoded frames pass through
one place first: _handle_rtp_packet puts (codec, JitterFrame) on the receiver's decoder queue,
and the decoder thread (started by receive(), after the "track" event) takes them from that
queue (aiortc 1.16 rtcrtpreceiver.py: decoder_worker, __decoder_queue). A JitterFrame of
H.264 holds the depacketised access unit in Annex B (codecs/h264.py H264PayloadDescriptor
writes a start code before every NAL unit) and the RTP timestamp (90 kHz, rebased by the
receiver's TimestampMapper). `tap()` swaps that queue, before the decoder thread starts, for
one that also copies each H.264 unit to the recorder; decoding goes on as before (for
snapshots, and for the encode path when the stream cannot be kept).
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

from vid2dcm.capture.pushed import PushedRecorder

H264_HIGH = ("640c1f", "64001f")
"""profile-level-id of Constrained High and High, Level 3.1 (RFC 6184 8.1): the H.264 a
DICOM video transfer syntax can hold. aiortc lists only Constrained Baseline (42e01f, 42001f),
so a sender able to send High would otherwise be talked down to a profile DICOM does not
store."""
_QUEUE_ATTR = "_RTCRtpReceiver__decoder_queue"
_THREAD_ATTR = "_RTCRtpReceiver__decoder_thread"


class _TapQueue(queue.Queue[Any]):
    def __init__(self, recorder: PushedRecorder) -> None:
        super().__init__()
        self.recorder = recorder
        self.codec: str | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if item is not None:
            codec, encoded = item
            if codec.name != self.codec:
                self.codec = codec.name
                self.recorder.codec(codec.name)
            if codec.name == "H264":
                self.recorder.put_access_unit(bytes(encoded.data), int(encoded.timestamp))
        super().put(item, block, timeout)


def tap(receiver: Any, recorder: PushedRecorder) -> bool:
    """Copy the receiver's encoded H.264 to the recorder. False when this aiortc is not the one
    the hook was written for (then only decoded frames reach the recorder: it encodes)."""
    if not isinstance(getattr(receiver, _QUEUE_ATTR, None), queue.Queue):
        return False
    if getattr(receiver, _THREAD_ATTR, None) is not None:
        return False  # the decoder thread already holds the old queue
    setattr(receiver, _QUEUE_ATTR, _TapQueue(recorder))
    return True


async def pump(track: Any, recorder: PushedRecorder) -> None:
    """Every decoded frame to the recorder, until the track ends."""
    from aiortc.mediastreams import MediaStreamError

    while True:
        try:
            frame = await track.recv()
        except (MediaStreamError, asyncio.CancelledError):
            return
        recorder.put_frame(frame)


def accept_h264_high() -> None:
    """Add H.264 High to what aiortc answers (receiving only: FFmpeg's decoder, which aiortc
    uses for every H.264 profile, decodes it). Process-wide and idempotent."""
    from aiortc.codecs import CODECS
    from aiortc.rtcrtpparameters import RTCRtpCodecParameters

    video = CODECS["video"]
    have = {str(c.parameters.get("profile-level-id", "")).lower() for c in video}
    template = next((c for c in video if c.mimeType.lower() == "video/h264"), None)
    if template is None:
        return
    for profile in H264_HIGH:
        if profile in have:
            continue
        pt = max(c.payloadType or 0 for c in video) + 1
        if pt + 1 > 127:
            return
        video.append(RTCRtpCodecParameters(
            mimeType="video/H264", clockRate=90_000, payloadType=pt,
            rtcpFeedback=list(template.rtcpFeedback),
            parameters={**template.parameters, "profile-level-id": profile}))
        video.append(RTCRtpCodecParameters(mimeType="video/rtx", clockRate=90_000,
                                           payloadType=pt + 1, parameters={"apt": pt}))


def h264_rank(codec: Any) -> int:
    """Order for the answer: H.264 High first (storable as sent), then other H.264, then the
    rest (VP8: always re-encoded)."""
    if codec.mimeType.lower() != "video/h264":
        return 2
    profile = str(codec.parameters.get("profile-level-id", "")).lower()
    return 0 if profile[:2] == "64" else 1
