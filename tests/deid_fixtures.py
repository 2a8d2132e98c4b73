"""Synthesised clips for the de-identification tests: an endoscopy-like picture with the
patient banner burned in, optionally a real (public-domain) face, and an audio track."""

from __future__ import annotations

from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np

from vid2dcm.producing.synth import _tone

BANNER = "DOE^JANE 1970-01-31 PID-4711"
FACE = Path(__file__).parent / "data" / "face_public_domain.jpg"


def endoscopy_frame(width: int, height: int, i: int, face: np.ndarray | None) -> np.ndarray:
    """A reddish round scope view that moves a little every frame, a black banner on top with
    the identity in white, and the face (RGB) pasted at the lower right if given."""
    yy, xx = _grid(width, height)
    cx, cy = width / 2 + 6 * np.sin(i / 5), height * 0.58
    r = np.hypot(xx - cx, yy - cy) / (height * 0.45)
    texture = 0.5 + 0.5 * np.sin(xx / 9 + i / 3) * np.cos(yy / 11 - i / 4)
    inside = np.clip(1.2 - r, 0, 1)
    rgb = np.stack([200 * inside * (0.7 + 0.3 * texture), 70 * inside * texture,
                    50 * inside * texture], axis=-1).astype(np.uint8)
    banner = int(height * 0.12)
    rgb[:banner] = 0
    scale = height / 400
    cv2.putText(rgb, BANNER, (int(8 * scale), int(banner * 0.72)), cv2.FONT_HERSHEY_SIMPLEX,
                0.9 * scale, (255, 255, 255), max(1, int(2 * scale)), cv2.LINE_AA)
    if face is not None:
        fh, fw = face.shape[:2]
        y0, x0 = height - fh - 10, width - fw - 10 - (i % 4)
        rgb[y0:y0 + fh, x0:x0 + fw] = face
    return rgb


@cache
def _grid(width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return yy, xx


def load_face(height: int) -> np.ndarray:
    face = cv2.imread(str(FACE))
    assert face is not None, FACE
    size = int(height * 0.42)
    face = cv2.resize(face, (int(size * face.shape[1] / face.shape[0]), size))
    return np.ascontiguousarray(face[:, :, ::-1])


def make_clip(path: Path, codec: str = "libx264", width: int = 480, height: int = 360,
              frames: int = 20, rate: int = 10, with_face: bool = True,
              with_audio: bool = True) -> Path:
    face = load_face(height) if with_face else None
    with av.open(str(path), "w") as out:
        video = cast(av.VideoStream, out.add_stream(codec, rate=Fraction(rate)))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        if codec == "libx264":
            video.options = {"preset": "superfast", "crf": "18"}
        else:
            video.bit_rate = 4_000_000
        audio = cast(av.AudioStream, out.add_stream("aac", rate=48000, layout="stereo")
                     ) if with_audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(endoscopy_frame(width, height, i, face),
                                               format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            _tone(out, audio, frames / rate)
    return path
