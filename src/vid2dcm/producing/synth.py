"""Synthesise test and sample clips with PyAV: any codec, size, rate, scan, audio or timing.

The picture is a moving bar over a gradient with a frame-dependent tint, so every frame differs
and a dropped or duplicated frame is visible in decoded hashes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import numpy as np

SILENT_X265 = {"x265-params": "log-level=error"}


@dataclass(frozen=True)
class AudioSpec:
    codec: str = "aac"
    sample_rate: int = 48000
    channels: int = 2


@dataclass(frozen=True)
class ClipSpec:
    codec: str = "libx264"
    width: int = 320
    height: int = 240
    rate: Fraction = Fraction(25)
    frames: int = 50
    pix_fmt: str = "yuv420p"
    options: dict[str, str] = field(default_factory=lambda: {"preset": "superfast"})
    container_format: str | None = None
    container_options: dict[str, str] = field(default_factory=dict)
    container_metadata: dict[str, str] = field(default_factory=dict)
    """e.g. {"creation_time": "2024-05-01T10:20:30Z"}, as cameras and phones write it."""
    codec_tag: str | None = None
    audio: AudioSpec | None = None
    rotation: int = 0
    interlaced: bool = False
    sample_aspect_ratio: Fraction | None = None
    frame_durations_ms: tuple[int, ...] | None = None
    """Cycle of per-frame durations for variable-frame-rate clips (time base 1/1000)."""
    noise: bool = False
    """Random pixels: large, incompressible frames for size and memory tests."""
    bit_rate: int | None = None


def synthesize(path: str | Path, spec: ClipSpec = ClipSpec()) -> Path:
    path = Path(path)
    options = dict(spec.options)
    if spec.codec == "libx265":
        options = {**SILENT_X265, **options}
    with av.open(str(path), "w", format=spec.container_format,
                 options=spec.container_options) as out:
        out.metadata.update(spec.container_metadata)
        video = cast(av.VideoStream, out.add_stream(spec.codec, rate=spec.rate))
        video.width, video.height, video.pix_fmt = spec.width, spec.height, spec.pix_fmt
        if spec.bit_rate:
            video.bit_rate = spec.bit_rate
        if spec.codec_tag:
            video.codec_tag = spec.codec_tag
        if spec.sample_aspect_ratio:
            video.codec_context.sample_aspect_ratio = spec.sample_aspect_ratio
        if spec.frame_durations_ms:
            video.time_base = Fraction(1, 1000)
            video.codec_context.time_base = Fraction(1, 1000)
        if spec.interlaced:
            video.codec_context.flags |= av.codec.context.Flags.interlaced_dct
            video.codec_context.flags |= av.codec.context.Flags.interlaced_me
        video.options = cast(dict[str, object], options)
        video.thread_type = "FRAME" if spec.codec in ("libx264", "libx265") else "SLICE"
        if spec.rotation:
            video.set_display_rotation(spec.rotation)
        audio = cast(av.AudioStream, out.add_stream(
            spec.audio.codec, rate=spec.audio.sample_rate,
            layout="mono" if spec.audio.channels == 1 else "stereo")) if spec.audio else None
        rng = np.random.default_rng(7)
        fields = _field_marker(spec) if spec.interlaced else None
        pts = 0
        for i in range(spec.frames):
            frame = av.VideoFrame.from_ndarray(_picture(spec, i, rng), format="rgb24")
            if fields is not None:
                fields.push(frame.reformat(format=spec.pix_fmt))
                frame = cast(av.VideoFrame, fields.pull())
            if spec.frame_durations_ms:
                frame.pts = pts
                frame.time_base = Fraction(1, 1000)
                pts += spec.frame_durations_ms[i % len(spec.frame_durations_ms)]
            else:
                frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        if audio is not None:
            seconds = (pts / 1000) if spec.frame_durations_ms else float(spec.frames / spec.rate)
            _tone(out, audio, seconds)
    return path


def _field_marker(spec: ClipSpec) -> av.filter.Graph:
    """Frames must carry the interlaced flag for encoders to code fields; setfield sets it."""
    graph = av.filter.Graph()
    source = graph.add_buffer(width=spec.width, height=spec.height,
                              format=av.VideoFormat(spec.pix_fmt),
                              time_base=1 / spec.rate)
    setfield = graph.add("setfield", "tff")
    sink = graph.add("buffersink")
    source.link_to(setfield)
    setfield.link_to(sink)
    graph.configure()
    return graph


def _picture(spec: ClipSpec, i: int, rng: np.random.Generator) -> np.ndarray:
    h, w = spec.height, spec.width
    if spec.noise:
        return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = np.empty((h, w, 3), np.uint8)
    img[:, :, 0] = np.linspace(0, 255, w, dtype=np.uint8)[None, :]
    img[:, :, 1] = np.linspace(0, 255, h, dtype=np.uint8)[:, None]
    img[:, :, 2] = (i * 37) % 256
    x = (i * 7) % max(w - w // 8, 1)
    img[:, x:x + w // 8, :] = 255
    return img


def _tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float) -> None:
    rate = stream.codec_context.sample_rate
    channels = stream.codec_context.channels
    chunk = 1024
    total = int(seconds * rate)
    t0 = 0
    while t0 < total:
        n = min(chunk, total - t0)
        t = (np.arange(t0, t0 + n) / rate).astype(np.float32)
        wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        planes = np.tile(wave, (channels, 1))
        frame = av.AudioFrame.from_ndarray(planes, format="fltp",
                                           layout="mono" if channels == 1 else "stereo")
        frame.sample_rate = rate
        frame.pts = t0
        frame.time_base = Fraction(1, rate)
        for packet in stream.encode(frame):
            out.mux(packet)
        t0 += n
    for packet in stream.encode():
        out.mux(packet)
