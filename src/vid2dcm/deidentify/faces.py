"""Clean Recognizable Visual Features (PS3.15 E.3.2): find faces so they can be blurred.

The detector is CenterFace (MIT licence) run by OpenCV's DNN module from the ONNX file shipped
inside this package (models/centerface.onnx, licence beside it): nothing is downloaded at run
time. The network predicts, on a grid of 1/4 of the input, a face-centre heat map, the box size
(log scale) and the sub-cell offset; boxes come from the heat-map peaks after non-maximum
suppression.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

MODEL = "models/centerface.onnx"
MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
THRESHOLD = 0.5
INPUT_LONG_SIDE = 640
"""Pictures are scaled so their long side is this (faces of ~20 px and up are found)."""
OUTPUTS = ("537", "538", "539", "540")
"""Heat map, scale, offset and landmark outputs of the ONNX graph."""


@dataclass(frozen=True)
class Face:
    x: int
    y: int
    width: int
    height: int
    score: float


@cache
def _network() -> Any:
    import cv2

    data = resources.files("vid2dcm.deidentify").joinpath(MODEL).read_bytes()
    if hashlib.sha256(data).hexdigest() != MODEL_SHA256:
        raise RuntimeError(f"{MODEL} is not the file vid2dcm was tested with")
    net = cv2.dnn.readNetFromONNX(np.frombuffer(data, dtype=np.uint8))
    return net


def detect_faces(rgb: np.ndarray, threshold: float = THRESHOLD) -> list[Face]:
    """Faces in one RGB picture, in its pixel coordinates."""
    import cv2

    height, width = rgb.shape[:2]
    scale = INPUT_LONG_SIDE / max(width, height)
    in_w = max(32, int(np.ceil(width * scale / 32) * 32))
    in_h = max(32, int(np.ceil(height * scale / 32) * 32))
    blob = cv2.dnn.blobFromImage(rgb, 1.0, (in_w, in_h), (0, 0, 0), swapRB=False, crop=False)
    net = _network()
    net.setInput(blob)
    heatmap, size, offset, _landmarks = net.forward(list(OUTPUTS))
    heat = heatmap[0, 0]
    rows, cols = np.where(heat > threshold)
    boxes: list[list[float]] = []
    scores: list[float] = []
    for r, c in zip(rows, cols, strict=True):
        box_h = float(np.exp(size[0, 0, r, c]) * 4)
        box_w = float(np.exp(size[0, 1, r, c]) * 4)
        cy = (r + float(offset[0, 0, r, c]) + 0.5) * 4
        cx = (c + float(offset[0, 1, r, c]) + 0.5) * 4
        boxes.append([cx - box_w / 2, cy - box_h / 2, box_w, box_h])
        scores.append(float(heat[r, c]))
    if not boxes:
        return []
    keep = cv2.dnn.NMSBoxes(boxes, scores, threshold, 0.3)
    sx, sy = width / in_w, height / in_h
    faces = []
    for i in np.array(keep).reshape(-1):
        x, y, w, h = boxes[int(i)]
        faces.append(Face(int(max(0, x * sx)), int(max(0, y * sy)), int(w * sx) + 1,
                          int(h * sy) + 1, scores[int(i)]))
    return faces
