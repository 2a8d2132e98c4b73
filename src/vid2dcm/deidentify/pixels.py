"""Clean Pixel Data (PS3.15 E.3.1): where burned-in text is, and for how long.

Two sources of mask boxes: a small settings table of fixed overlay boxes per device model
(deterministic and cheap: the endoscope processor's banner is always in the same place), and
OCR discovery with Tesseract on sampled frames (every few seconds and on scene changes), for
text the table does not know. Masks are filled boxes drawn by the filter graph when the video
is re-encoded (producing.filters).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import av
import numpy as np

from vid2dcm.core.errors import UsageError
from vid2dcm.producing.filters import MaskBox

OCR_CONFIG = "--psm 11"
"""Sparse text: overlays are scattered words and lines, not paragraphs."""
MIN_CONFIDENCE = 40.0
MIN_OCR_HEIGHT = 480
"""Small pictures are enlarged for Tesseract, which reads text best at 20-40 px per line."""


@dataclass(frozen=True)
class DeviceMask:
    manufacturer: str
    model: str
    boxes: tuple[tuple[float, float, float, float], ...]

    def matches(self, manufacturer: str, model: str) -> bool:
        return _like(self.manufacturer, manufacturer) and _like(self.model, model)


def _like(pattern: str, value: str) -> bool:
    return pattern == "*" or pattern.lower() in value.lower()


def load_device_masks(path: Path | None = None) -> tuple[DeviceMask, ...]:
    """The bundled table, or the caller's file in the same format."""
    try:
        text = (path.read_text() if path is not None else resources.files(
            "vid2dcm.deidentify").joinpath("data/device_masks.json").read_text())
        data = json.loads(text)
        return tuple(DeviceMask(str(d["manufacturer"]), str(d["model"]),
                                tuple(tuple(float(v) for v in b) for b in d["boxes"]))  # type: ignore[misc]
                     for d in data["devices"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"mask settings {path}: {exc}") from exc


def device_boxes(table: tuple[DeviceMask, ...], manufacturer: str, model: str, width: int,
                 height: int, end_s: float) -> tuple[MaskBox, ...]:
    boxes: list[MaskBox] = []
    for device in table:
        if device.matches(manufacturer, model):
            for fx, fy, fw, fh in device.boxes:
                boxes.append(MaskBox(round(fx * width), round(fy * height), round(fw * width),
                                     round(fh * height), -1.0, end_s + 1.0, "fill"))
    return tuple(boxes)


@dataclass(frozen=True)
class TextLine:
    """One line of text Tesseract read: where, when, and its normalised characters."""

    x: int
    y: int
    width: int
    height: int
    time_s: float
    text: str
    confidence: float


def require_tesseract() -> None:
    if shutil.which("tesseract") is None:
        raise UsageError("Clean Pixel Data needs Tesseract OCR (apt-get install tesseract-ocr "
                         "tesseract-ocr-eng); or pass --no-clean-pixel-data")
    os.environ["OMP_THREAD_LIMIT"] = "1"  # measured: 6x faster on 2 cores than its default


def read_text(rgb: np.ndarray, time_s: float) -> list[TextLine]:
    """Lines of text in one picture (Tesseract 5, sparse-text mode), in picture pixels."""
    import pytesseract

    require_tesseract()
    height = rgb.shape[0]
    scale = max(1.0, MIN_OCR_HEIGHT / height)
    gray = rgb.mean(axis=2).astype(np.uint8)
    if scale > 1:
        import cv2

        gray = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC)
    data: dict[str, list[Any]] = pytesseract.image_to_data(
        gray, config=OCR_CONFIG, output_type=pytesseract.Output.DICT)
    lines: dict[tuple[int, int, int], list[int]] = {}
    for i, word in enumerate(data["text"]):
        confidence = float(data["conf"][i])
        if confidence < MIN_CONFIDENCE or sum(ch.isalnum() for ch in str(word)) < 2:
            continue
        key = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
        lines.setdefault(key, []).append(i)
    found: list[TextLine] = []
    for indexes in lines.values():
        x0 = min(data["left"][i] for i in indexes)
        y0 = min(data["top"][i] for i in indexes)
        x1 = max(data["left"][i] + data["width"][i] for i in indexes)
        y1 = max(data["top"][i] + data["height"][i] for i in indexes)
        text = " ".join(str(data["text"][i]) for i in indexes)
        confidence = min(float(data["conf"][i]) for i in indexes)
        found.append(TextLine(int(x0 / scale), int(y0 / scale), int((x1 - x0) / scale) + 1,
                              int((y1 - y0) / scale) + 1, time_s, text, confidence))
    return found


@dataclass(frozen=True)
class Sample:
    index: int
    time_s: float
    rgb: np.ndarray


SCENE_CHANGE = 25.0
"""Mean absolute difference (0-255) of 32x18 thumbnails that counts as a new scene."""


def sample_frames(path: Path, every_s: float, has_timestamps: bool, rate: float
                  ) -> Iterator[Sample]:
    """Decode everything, yield the frames worth analysing: the first, one every every_s
    seconds, the first of each new scene and the last. Times are on the clock the filter
    graph sees when the same file is re-encoded (stream time, or frame index / rate).
    Only sampled frames are converted to RGB; scene changes are judged on 32x18 grey
    thumbnails scaled by FFmpeg."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        last_time: float | None = None
        last_thumb: np.ndarray | None = None
        pending: tuple[int, float, Any] | None = None
        for index, frame in enumerate(container.decode(stream)):
            time_s = float(frame.time) if has_timestamps and frame.time is not None else (
                index / rate)
            thumb = frame.reformat(width=32, height=18, format="gray").to_ndarray().astype(
                np.int16)
            due = last_time is None or time_s - last_time >= every_s
            changed = last_thumb is not None and float(
                np.abs(thumb - last_thumb).mean()) > SCENE_CHANGE
            if due or changed:
                yield Sample(index, time_s, frame.to_ndarray(format="rgb24"))
                last_time, last_thumb = time_s, thumb
                pending = None
            else:
                pending = (index, time_s, frame)
        if pending is not None:
            yield Sample(pending[0], pending[1], pending[2].to_ndarray(format="rgb24"))


def hold(boxes: list[tuple[int, int, int, int, float]], times: list[float], style: str,
         pad: float) -> tuple[MaskBox, ...]:
    """Temporal smoothing: a box seen at one sample is held from the previous sample to the
    next (so nothing shows between samples), padded, and boxes that overlap in space and time
    are merged into one (fewer filters, no flicker at the seams)."""
    ordered = sorted(set(times))
    masks: list[MaskBox] = []
    for x, y, w, h, t in boxes:
        i = ordered.index(t)
        start = ordered[i - 1] if i > 0 else -1.0
        end = ordered[i + 1] if i + 1 < len(ordered) else t + 3600.0
        dx, dy = (int(h * pad) + 2, int(h * pad) + 2) if style == "fill" else (
            int(w * pad), int(h * pad))
        masks.append(MaskBox(x - dx, y - dy, w + 2 * dx, h + 2 * dy, start, end,
                             "blur" if style == "blur" else "fill"))
    return merge(masks)


MAX_BLUR_SPAN_S = 10.0
"""A merged face box covers at most this long: a face that walks across the room gets a box
per stretch of time, not one box over everything it ever covered."""


def merge(masks: list[MaskBox]) -> tuple[MaskBox, ...]:
    """Boxes of one style that overlap in space and time become their union (a fixed banner
    found on every sample becomes one box for the whole clip)."""
    merged: list[MaskBox] = []
    for mask in sorted(masks, key=lambda m: (m.start_s, m.x, m.y)):
        for i, other in enumerate(merged):
            span = max(other.end_s, mask.end_s) - min(other.start_s, mask.start_s)
            if other.style == mask.style and _overlap(other, mask) and (
                    mask.start_s <= other.end_s) and (
                    mask.style == "fill" or span <= MAX_BLUR_SPAN_S):
                x0, y0 = min(other.x, mask.x), min(other.y, mask.y)
                x1 = max(other.x + other.width, mask.x + mask.width)
                y1 = max(other.y + other.height, mask.y + mask.height)
                merged[i] = MaskBox(x0, y0, x1 - x0, y1 - y0, min(other.start_s, mask.start_s),
                                    max(other.end_s, mask.end_s), mask.style)
                break
        else:
            merged.append(mask)
    return tuple(merged)


def _overlap(a: MaskBox, b: MaskBox) -> bool:
    ix = min(a.x + a.width, b.x + b.width) - max(a.x, b.x)
    iy = min(a.y + a.height, b.y + b.height) - max(a.y, b.y)
    if ix <= 0 or iy <= 0:
        return False
    smaller = min(a.width * a.height, b.width * b.height)
    return ix * iy >= 0.3 * smaller
