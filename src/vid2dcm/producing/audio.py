"""Audio that DICOM video cannot carry as-is, re-encoded on the fly: AAC-LC 48 kHz (or MP3 for
MPEG-2 systems), mono kept mono, anything wider mixed down to stereo."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, cast

import av
import numpy as np

TARGETS = {"aac": ("aac", 192_000), "mp3": ("libmp3lame", 192_000)}
SAMPLE_RATE = 48_000


class AudioTranscoder:
    """mute: (start, end) seconds on the source stream's clock silenced before encoding
    (de-identification: a name spoken in the room)."""

    def __init__(self, source: Any, out: Any, codec: str,
                 mute: tuple[tuple[float, float], ...] = ()) -> None:
        self.mute = mute
        name, bit_rate = TARGETS[codec]
        layout = "mono" if source.codec_context.channels == 1 else "stereo"
        self.source = source
        self.out = out
        self.stream = cast(av.AudioStream, out.add_stream(name, rate=SAMPLE_RATE, layout=layout))
        self.stream.bit_rate = bit_rate
        formats = self.stream.codec_context.codec.audio_formats or []
        fmt = formats[0].name if formats else "fltp"
        self.resampler = av.AudioResampler(format=fmt, layout=layout, rate=SAMPLE_RATE)
        self.next_sample: int | None = None
        """Timestamps are counted in samples from the first decoded frame's time: some
        demuxers (AC-3 in AVI) give packet times in a unit the decoder does not carry over,
        and the encoder refuses times that go backwards."""

    def push(self, packet: Any) -> None:
        """Decode one source packet (None flushes) and mux whatever the encoder emits."""
        try:
            frames = self.source.decode(packet)
        except av.error.InvalidDataError:
            return
        for frame in frames:
            if self.mute:
                frame = silence(frame, self.mute)
            if self.next_sample is None:
                start = (frame.pts * frame.time_base) if (
                    frame.pts is not None and frame.time_base is not None) else 0
                self.next_sample = max(0, round(start * SAMPLE_RATE))
            frame.pts = None
            for resampled in self.resampler.resample(frame):
                self._encode(resampled)

    def finish(self) -> None:
        self.push(None)
        for resampled in self.resampler.resample(None):
            self._encode(resampled)
        for packet in self.stream.encode(None):
            self.out.mux(packet)

    def _encode(self, frame: av.AudioFrame) -> None:
        frame.pts = self.next_sample or 0
        frame.time_base = Fraction(1, SAMPLE_RATE)
        self.next_sample = (self.next_sample or 0) + frame.samples
        for packet in self.stream.encode(frame):
            self.out.mux(packet)


def silence(frame: av.AudioFrame, intervals: tuple[tuple[float, float], ...]) -> av.AudioFrame:
    """The frame with the samples inside any interval set to zero (timing kept)."""
    if frame.pts is None or frame.time_base is None:
        return frame
    start = float(frame.pts * frame.time_base)
    times = start + np.arange(frame.samples) / frame.sample_rate
    quiet = np.zeros(frame.samples, dtype=bool)
    for begin, end in intervals:
        quiet |= (times >= begin) & (times <= end)
    if not quiet.any():
        return frame
    planes = frame.to_ndarray()
    if frame.format.is_planar:
        planes[:, quiet] = 0
    else:
        channels = len(frame.layout.channels)
        planes.reshape(-1, channels)[quiet] = 0
    out = av.AudioFrame.from_ndarray(planes, format=frame.format.name, layout=frame.layout.name)
    out.sample_rate, out.pts, out.time_base = frame.sample_rate, frame.pts, frame.time_base
    return out
