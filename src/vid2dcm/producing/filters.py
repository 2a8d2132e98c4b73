"""The FFmpeg filter chain that turns decoded pictures into what the target encoder needs."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

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


@dataclass(frozen=True)
class MaskBox:
    """A rectangle hidden from start_s to end_s (seconds on the decoded frames' clock):
    filled (burned-in text) or strongly blurred (faces). Used by de-identification."""

    x: int
    y: int
    width: int
    height: int
    start_s: float
    end_s: float
    style: Literal["fill", "blur"] = "fill"

    def clipped(self, width: int, height: int) -> MaskBox | None:
        """The part inside a width x height picture, on even coordinates (4:2:0 chroma)."""
        x0, y0 = max(0, self.x) // 2 * 2, max(0, self.y) // 2 * 2
        x1 = min(width, self.x + self.width + 1) // 2 * 2
        y1 = min(height, self.y + self.height + 1) // 2 * 2
        if x1 - x0 < 2 or y1 - y0 < 2:
            return None
        return MaskBox(x0, y0, x1 - x0, y1 - y0, self.start_s, self.end_s, self.style)

    @property
    def enable(self) -> str:
        """FFmpeg timeline expression: on for frames in [start_s, end_s]."""
        return f"between(t,{self.start_s:.4f},{self.end_s:.4f})"


BLUR_SIGMA = 40
"""Gaussian sigma of a face blur; with three steps it leaves no recognisable feature in a
box of any size the detector reports."""


def mask_steps(box: MaskBox) -> list[tuple[str, str]]:
    """The filters for one box; pure. A blur is crop -> gblur, overlaid back by the graph."""
    if box.style == "fill":
        return [("drawbox", f"x={box.x}:y={box.y}:w={box.width}:h={box.height}:"
                 f"color=black:t=fill:enable='{box.enable}'")]
    return [("crop", f"{box.width}:{box.height}:{box.x}:{box.y}"),
            ("gblur", f"sigma={BLUR_SIGMA}:steps=3:enable='{box.enable}'"),
            ("overlay", f"x={box.x}:y={box.y}:format=auto:enable='{box.enable}'")]


class PictureFilter:
    """A configured filter graph: push decoded frames, pull frames ready to encode.

    masks are applied first, on the decoded pictures, before any change of geometry."""

    def __init__(self, target: VideoTarget, width: int, height: int, pix_fmt: str,
                 time_base: Fraction, out_pix_fmt: str = "yuv420p",
                 masks: tuple[MaskBox, ...] = ()) -> None:
        self.graph = av.filter.Graph()
        source = self.graph.add_buffer(width=width, height=height,
                                       format=av.VideoFormat(pix_fmt), time_base=time_base)
        node: Any = source
        for mask in masks:
            box = mask.clipped(width, height)
            if box is not None:
                node = self._mask(node, box)
        for name, args in filter_chain(target, out_pix_fmt):
            step = self.graph.add(name, args) if args else self.graph.add(name)
            node.link_to(step)
            node = step
        sink = self.graph.add("buffersink")
        node.link_to(sink)
        self.graph.configure()

    def _mask(self, node: Any, box: MaskBox) -> Any:
        steps = mask_steps(box)
        if box.style == "fill":
            name, args = steps[0]
            step = self.graph.add(name, args)
            node.link_to(step)
            return step
        split = self.graph.add("split", "2")
        node.link_to(split)
        crop, blur, overlay = (self.graph.add(name, args) for name, args in steps)
        split.link_to(overlay, 0, 0)
        split.link_to(crop, 1, 0)
        crop.link_to(blur)
        blur.link_to(overlay, 0, 1)
        return overlay

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
