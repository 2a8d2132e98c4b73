"""How close the transcoded video is to its source: PSNR and SSIM on luma, on sampled frames.

The source pictures go through the same filter chain as the encoder's input (rotation, scaling,
padding, 8-bit 4:2:0), so only the coding loss is measured. Frames are compared by display
order; up to `samples` frames spread evenly over the clip are used, and the report says so.
SSIM uses an 8x8 box window (not the 11x11 Gaussian of the original paper), computed with
integral images.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np

from vid2dcm.core.media_info import MediaInfo
from vid2dcm.planning.video_target import VideoTarget
from vid2dcm.producing.filters import PictureFilter

WINDOW = 8
C1 = (0.01 * 255) ** 2
C2 = (0.03 * 255) ** 2


@dataclass(frozen=True)
class QualityReport:
    psnr_db: float
    ssim: float
    frames_compared: int
    sampling: str


def measure_quality(source: MediaInfo, target: VideoTarget, encoded: Path,
                    samples: int = 20) -> QualityReport:
    total = source.video.timing.frame_count
    step = max(1, total // samples)
    psnrs: list[float] = []
    ssims: list[float] = []
    for index, (reference, coded) in enumerate(zip(_reference_luma(source, target),
                                                   _luma(encoded), strict=False)):
        if index % step:
            continue
        psnrs.append(psnr(reference, coded))
        ssims.append(ssim(reference, coded))
        if len(psnrs) >= samples:
            break
    if not psnrs:
        raise ValueError("no frames to compare")
    finite = [p for p in psnrs if np.isfinite(p)]
    mean_psnr = float(np.mean(finite)) if finite else float("inf")
    return QualityReport(mean_psnr, float(np.mean(ssims)), len(psnrs),
                         f"luma of {len(psnrs)} of {total} frames, one in every {step} "
                         "from the first")


def psnr_per_frame(source: MediaInfo, target: VideoTarget, encoded: Path) -> list[float]:
    """Luma PSNR of every encoded frame against its source picture, in display order: where a
    chunked transcode was joined, the frames on each side of the join must score like the rest
    (a missing or repeated frame shifts every later picture against its source)."""
    return [psnr(reference, coded) for reference, coded in
            zip(_reference_luma(source, target), _luma(encoded), strict=False)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    x, y = a.astype(np.float64), b.astype(np.float64)
    mx, my = _box_mean(x), _box_mean(y)
    vx = _box_mean(x * x) - mx * mx
    vy = _box_mean(y * y) - my * my
    cov = _box_mean(x * y) - mx * my
    score = ((2 * mx * my + C1) * (2 * cov + C2)) / ((mx * mx + my * my + C1) * (vx + vy + C2))
    return float(np.mean(score))


def _box_mean(img: np.ndarray) -> np.ndarray:
    s = np.pad(img, ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    w = WINDOW
    total = s[w:, w:] - s[:-w, w:] - s[w:, :-w] + s[:-w, :-w]
    return np.asarray(total / (w * w))


def _reference_luma(source: MediaInfo, target: VideoTarget) -> Iterator[np.ndarray]:
    with av.open(str(source.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        graph: PictureFilter | None = None
        for count, frame in enumerate(_decoded(container, stream)):
            if graph is None:
                tb = stream.time_base or (1 / target.rate)
                graph = PictureFilter(target, frame.width, frame.height, frame.format.name, tb)
            if frame.pts is None:
                frame.pts = count
            for ready in graph.push(frame):
                yield _y(ready)
        if graph is not None:
            for ready in graph.push(None):
                yield _y(ready)


def _luma(path: Path) -> Iterator[np.ndarray]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in _decoded(container, stream):
            yield _y(frame)


def _decoded(container: Any, stream: Any) -> Iterator[av.VideoFrame]:
    for packet in container.demux(stream):
        try:
            yield from stream.decode(packet)
        except av.error.InvalidDataError:
            continue


def _y(frame: av.VideoFrame) -> np.ndarray:
    plane = frame.reformat(format="gray").to_ndarray()
    return np.asarray(plane)
