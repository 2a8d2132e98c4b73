"""encode_frames: decode the video and store every picture as its own still image.

Frames are encoded one at a time and appended to a spool file (their lengths kept in a compact
array), so memory stays flat however many frames there are; the DICOM writer then copies them
into one fragment per frame with an offset table.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path
from typing import Any

import av
import numpy as np
from pydicom.pixels.encoders.base import JPEG2000LosslessEncoder, RLELosslessEncoder

from vid2dcm.core.errors import InputError
from vid2dcm.core.frame_syntaxes import ENCODER_OPTIONS, JPEG_QSCALE, FrameEncoding, FrameSyntax
from vid2dcm.core.media_info import FrameTiming, MediaInfo
from vid2dcm.planning.video_target import VideoTarget
from vid2dcm.probing.timing import FrameTimingCounter
from vid2dcm.producing.filters import MaskBox, PictureFilter


@dataclass(frozen=True)
class EncodedFrames:
    path: Path
    lengths: array[int]
    width: int
    height: int
    timing: FrameTiming
    packets_in: int
    damaged_packets: int
    seconds: float

    @property
    def frame_count(self) -> int:
        return len(self.lengths)

    @property
    def size_bytes(self) -> int:
        return sum(self.lengths)

    @property
    def lost_frames(self) -> int:
        return max(0, self.packets_in - self.frame_count)


def encode_frames(info: MediaInfo, target: VideoTarget, syntax: FrameSyntax, quality: str,
                  spool: Path, progress: Callable[[float], None] | None = None,
                  masks: tuple[MaskBox, ...] = ()) -> EncodedFrames:
    started = time.monotonic()
    lengths: array[int] = array("q")
    encode = _frame_encoder(syntax, target, quality)
    total = max(info.video.timing.frame_count, 1)
    packets_in = damaged = 0
    counter: FrameTimingCounter | None = None
    with av.open(str(info.path)) as source, spool.open("wb") as out:
        stream = next(s for s in source.streams.video if s.index == info.video.index)
        stream.thread_type = "AUTO"
        time_base = stream.time_base if info.video.has_timestamps and stream.time_base else (
            1 / target.rate)
        counter = FrameTimingCounter(time_base, target.rate)
        graph: PictureFilter | None = None
        decoded = 0
        for packet, frames, bad in _decode(source, stream):
            packets_in += packet
            damaged += bad
            for frame in frames:
                if graph is None:
                    graph = PictureFilter(target, frame.width, frame.height, frame.format.name,
                                          time_base, syntax.pix_fmt, masks)
                if not info.video.has_timestamps or frame.pts is None:
                    frame.pts = decoded
                frame.time_base = time_base
                decoded += 1
                for ready in graph.push(frame):
                    _store(encode, ready, out, lengths, counter)
            if progress is not None and packets_in % 16 == 0:
                progress(min(packets_in / total, 1.0))
        if graph is not None:
            for ready in graph.push(None):
                _store(encode, ready, out, lengths, counter)
    if not lengths:
        spool.unlink(missing_ok=True)
        raise InputError(f"{info.path}: no picture could be decoded; the video cannot be "
                         "salvaged")
    return EncodedFrames(spool, lengths, target.width, target.height, counter.result(),
                         packets_in, damaged, time.monotonic() - started)


def _store(encode: Callable[[av.VideoFrame], bytes], frame: av.VideoFrame, out: Any,
           lengths: array[int], counter: FrameTimingCounter) -> None:
    pts = frame.pts
    data = encode(frame)
    out.write(data)
    lengths.append(len(data))
    counter.add(pts, 0)


def _decode(source: Any, stream: Any) -> Iterator[tuple[int, list[av.VideoFrame], int]]:
    """(packets read, frames decoded, undecodable packets) per step, flush included."""
    try:
        for packet in source.demux(stream):
            if packet.size == 0:
                continue
            try:
                yield 1, list(stream.decode(packet)), 0
            except av.error.InvalidDataError:
                yield 1, [], 1
    except av.error.InvalidDataError:
        yield 0, [], 1
    try:
        yield 0, list(stream.decode(None)), 0
    except av.error.InvalidDataError:
        yield 0, [], 1


def _frame_encoder(syntax: FrameSyntax, target: VideoTarget, quality: str
                   ) -> Callable[[av.VideoFrame], bytes]:
    if syntax.encoding is FrameEncoding.RAW:
        return lambda frame: bytes(frame.to_ndarray().tobytes())
    if syntax.encoding is FrameEncoding.RLE:
        return partial(_pydicom_encode, RLELosslessEncoder, "RGB")
    if syntax.encoding is FrameEncoding.J2K:
        return partial(_pydicom_encode, JPEG2000LosslessEncoder, "YBR_RCT")
    assert syntax.encoder is not None
    context = av.CodecContext.create(syntax.encoder, "w")
    assert isinstance(context, av.VideoCodecContext)
    context.width, context.height, context.pix_fmt = target.width, target.height, syntax.pix_fmt
    context.time_base = Fraction(1, 25)
    context.options = dict(ENCODER_OPTIONS.get(syntax.encoding, {}))
    if syntax.encoding is FrameEncoding.JPEG:
        context.qmin = context.qmax = JPEG_QSCALE[quality]
    context.open()

    def encode(frame: av.VideoFrame) -> bytes:
        frame.time_base = context.time_base
        frame.pts = None
        frame.pict_type = av.video.frame.PictureType.NONE
        packets = context.encode(frame)
        if len(packets) != 1:
            raise RuntimeError(f"{syntax.encoder} returned {len(packets)} packets for one frame")
        return bytes(packets[0])

    return encode


def _pydicom_encode(encoder: Any, photometric: str, frame: av.VideoFrame) -> bytes:
    """RLE and J2K come from pydicom's encoders (J2K via OpenJPEG, with the colour transform
    that YBR_RCT declares)."""
    pixels = np.ascontiguousarray(frame.to_ndarray())
    rows, columns = pixels.shape[:2]
    return bytes(encoder.encode(
        pixels, rows=rows, columns=columns, samples_per_pixel=3, bits_allocated=8,
        bits_stored=8, photometric_interpretation=photometric, pixel_representation=0,
        number_of_frames=1, planar_configuration=0))
