"""The FFmpeg filter chain that turns decoded pictures into what the target encoder needs."""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import av

from vid2dcm.planning.video_target import VideoTarget

ROTATIONS: dict[int, tuple[tuple[str, str], ...]] = {
    90: (("transpose", "cclock"),),
    180: (("hflip", ""), ("vflip", "")),
    270: (("transpose", "clock"),),
}
"""Counter-clockwise display rotation -> filters that turn the pixels the same way (what ffmpeg's
autorotate does for the same display matrix)."""


def filter_chain(target: VideoTarget, pix_fmt: str = "yuv420p") -> list[tuple[str, str]]:
    """(filter, arguments) in order; pure, so it can be tested without FFmpeg."""
    chain: list[tuple[str, str]] = []
    if target.deinterlace:
        chain.append(("bwdif", "mode=send_frame"))
    if target.scaled_size:
        w, h = target.scaled_size
        chain.append(("scale", f"{w}:{h}:flags=lanczos"))
    chain.extend(ROTATIONS.get(target.rotation, ()))
    if target.padded:
        chain.append(("pad", f"{target.width}:{target.height}:0:0:black"))
    chain.append(("setsar", "1"))
    if pix_fmt in SAMPLE_RANGES:
        chain.append(("scale", f"out_range={SAMPLE_RANGES[pix_fmt]}"))
    chain.append(("format", pix_fmt))
    return chain


SAMPLE_RANGES = {"yuv420p": "tv", "yuvj422p": "pc"}
"""Video (YBR_PARTIAL_420) is limited range, JPEG (YBR_FULL_422) full range: a full-range
source (MJPEG, some phones) must be converted, not relabelled."""


class PictureFilter:
    """A configured filter graph: push decoded frames, pull frames ready to encode."""

    def __init__(self, target: VideoTarget, width: int, height: int, pix_fmt: str,
                 time_base: Fraction, out_pix_fmt: str = "yuv420p") -> None:
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(width=width, height=height,
                                       format=av.VideoFormat(pix_fmt), time_base=time_base)
        node: Any = source
        for name, args in filter_chain(target, out_pix_fmt):
            step = self.graph.add(name, args) if args else self.graph.add(name)
            node.link_to(step)
            node = step
        sink = self.graph.add("buffersink")
        node.link_to(sink)
        self.graph.configure()

    def push(self, frame: av.VideoFrame | None) -> list[av.VideoFrame]:
        self.graph.push(frame)
        out: list[av.VideoFrame] = []
        while True:
            try:
                pulled = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                return out
            assert isinstance(pulled, av.VideoFrame)
            out.append(pulled)
