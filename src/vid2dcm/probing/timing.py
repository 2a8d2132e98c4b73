"""Frame timing from packet timestamps, in one streaming pass with bounded memory.

Packets arrive in decode order; presentation order is recovered with a small reorder window
(B-frame reordering never spans more than 16 pictures in H.264/HEVC), so memory stays flat
however long the video is.
"""

from __future__ import annotations

import heapq
from fractions import Fraction

from vid2dcm.core.media_info import FrameTiming

STANDARD_RATES: tuple[Fraction, ...] = tuple(Fraction(r) for r in (
    "24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "100",
    "120000/1001", "120", "15", "12.5", "12", "10", "8", "7.5", "6", "5", "2", "1"))
"""Rates cameras and encoders use; a stream whose timestamps are one of these rounded to a
coarse time base (Matroska, WebM and FLV count milliseconds) is constant-rate at that rate."""

REORDER_WINDOW = 64
MAX_KEPT_DELTAS = 6000
"""Beyond this many frames a Frame Time Vector cannot be encoded in Explicit VR (64 KiB DS)."""


class FrameTimingCounter:
    """Feed every video packet; ask for the FrameTiming once the stream has been read."""

    def __init__(self, time_base: Fraction, nominal_rate: Fraction | None) -> None:
        self.time_base = time_base
        self.nominal_rate = nominal_rate
        self.count = 0
        self._missing_pts = 0
        self._heap: list[int] = []
        self._last_sorted: int | None = None
        self._first_pts: int | None = None
        self._max_end: int | None = None
        self._delta_min: int | None = None
        self._delta_max: int | None = None
        self._deltas: list[int] | None = []
        self._last_duration = 0
        self._emitted = 0
        self._tick_s = float(time_base)
        candidates = list(STANDARD_RATES)
        if nominal_rate and nominal_rate not in candidates:
            candidates.insert(0, nominal_rate)
        self._grid: list[tuple[Fraction, float, float]] = [
            (r, 1 / float(r), 0.0) for r in candidates]
        """(rate, period, largest deviation so far) of the rates the display times still fit
        within rounding."""
        self._fit = (0.0, 0.0, 0.0, 0.0)
        """Sums (k, k^2, t, k*t) of display index against time, for a least-squares period:
        with rounded times it tells 30 from 29.97 fps far better than the two ends do."""

    def add(self, pts: int | None, duration: int) -> None:
        self.count += 1
        if pts is None:
            self._missing_pts += 1
            return
        if duration > 0:
            self._last_duration = duration
        end = pts + max(duration, 0)
        self._max_end = end if self._max_end is None else max(self._max_end, end)
        heapq.heappush(self._heap, pts)
        if len(self._heap) > REORDER_WINDOW:
            self._emit(heapq.heappop(self._heap))

    def _emit(self, pts: int) -> None:
        if self._first_pts is not None and self._grid:
            elapsed = (pts - self._first_pts) * self._tick_s
            k = self._emitted
            self._fit = (self._fit[0] + k, self._fit[1] + k * k, self._fit[2] + elapsed,
                         self._fit[3] + k * elapsed)
            kept = []
            for rate, period, worst in self._grid:
                worst = max(worst, abs(elapsed - self._emitted * period))
                if worst <= self._slack(period, loose=True):
                    kept.append((rate, period, worst))
            self._grid = kept
        self._emitted += 1
        if self._last_sorted is None:
            self._first_pts = pts
        else:
            delta = pts - self._last_sorted
            self._delta_min = delta if self._delta_min is None else min(self._delta_min, delta)
            self._delta_max = delta if self._delta_max is None else max(self._delta_max, delta)
            if self._deltas is not None:
                self._deltas.append(delta)
                if len(self._deltas) > MAX_KEPT_DELTAS:
                    self._deltas = None
        self._last_sorted = pts

    def result(self) -> FrameTiming:
        while self._heap:
            self._emit(heapq.heappop(self._heap))
        if self.count == 0:
            raise ValueError("no video packets")
        if self._missing_pts or self._first_pts is None or self._last_sorted is None:
            return self._nominal_timing()
        n_deltas = self.count - 1
        span_ticks = self._last_sorted - self._first_pts
        if n_deltas == 0 or span_ticks <= 0:
            return self._nominal_timing(source="packet count; one frame, rate from stream header")
        mean_delta = Fraction(span_ticks, n_deltas)
        measured = 1 / (mean_delta * self.time_base)
        clean = self._clean_rate(measured)
        if clean is not None:
            return self._clean_timing(*clean)
        rate = _snap_rate(measured, self.nominal_rate)
        last = self._last_duration or round(mean_delta)
        end = max(self._max_end or 0, self._last_sorted + last)
        duration_s = float((end - self._first_pts) * self.time_base)
        tick_ms = float(self.time_base) * 1000
        mean_ms = float(mean_delta) * tick_ms
        # one tick of rounding is not variation (millisecond time bases), unless the tick is
        # the frame period itself (AVI counts frames: a gap of one tick is a dropped frame)
        tolerance_ms = max(min(1.5 * tick_ms, 0.25 * mean_ms), 0.005 * mean_ms)
        assert self._delta_min is not None and self._delta_max is not None
        variable = (
            abs(self._delta_max * tick_ms - mean_ms) > tolerance_ms
            or abs(self._delta_min * tick_ms - mean_ms) > tolerance_ms
        )
        deltas = (
            tuple(d * tick_ms for d in self._deltas)
            if variable and self._deltas is not None
            else None
        )
        return FrameTiming(
            frame_count=self.count,
            rate=rate,
            duration_s=duration_s,
            variable=variable,
            frame_time_ms=1000 / float(rate),
            frame_deltas_ms=deltas,
            count_source="packet count",
            rate_source=("packet timestamps, equal to the stream header's rate"
                         if rate == self.nominal_rate else "packet timestamps (measured)"),
        )

    def _clean_rate(self, measured: Fraction) -> tuple[Fraction, bool] | None:
        """The rate every display time fits within one tick, when there is one: the stream is
        then constant-rate and its timestamps only rounded (millisecond time bases)."""
        if self._emitted < 3 or not self._grid:
            return None
        # exact within one tick first; else within a millisecond (timestamps rounded to
        # milliseconds and then rescaled, e.g. by an MP4 muxer to a 16 kHz timescale)
        strict = [g for g in self._grid if g[2] <= self._slack(g[1], loose=False)]
        # standard rates before a header's estimate (FFmpeg guesses 359/12 for rounded 29.97
        # fps ASF, 29.97 for 30 fps ASF); among them the period nearest the least-squares one
        n = self._emitted
        sk, skk, st, skt = self._fit
        denominator = n * skk - sk * sk
        slope = (n * skt - sk * st) / denominator if denominator > 0 else 1 / float(measured)
        # the slope is known to about tick / sqrt(12 * sum (k - mean)^2); rates closer than
        # twice that cannot be told apart (6 frames at a 1 ms tick fit 30 and 29.97 alike):
        # then the header's rate where the container declares one, then the simpler rate
        spread = denominator / n if n else 0.0
        doubt = 2 * self._tick_s / (12 * spread) ** 0.5 if spread > 0 else 0.0
        pool = [g for g in (strict or self._grid) if g[0] in STANDARD_RATES] or (
            strict or self._grid)
        nearest = min(abs(g[1] - slope) for g in pool)
        tied = [g for g in pool if abs(g[1] - slope) <= nearest + doubt]
        trusted = self.nominal_rate if self.header_rate_declared else None
        best = min(tied, key=lambda g: (g[0] != trusted, g[0].denominator,
                                        abs(g[1] - slope)))
        return best[0], bool(strict)

    def _slack(self, period: float, loose: bool) -> float:
        """Rounding moves a time by under one tick (a millisecond when loose). A tick of half
        a period or more is no rounding at all (AVI and Ogg count frames): the times must
        then fit exactly, or 12 and 12.5 fps, or a dropped frame in every four, blur."""
        tick = max(self._tick_s, 0.001) if loose else self._tick_s
        return (tick if tick < period / 2 else 0.0) + 1e-7

    def _clean_timing(self, rate: Fraction, strict: bool) -> FrameTiming:
        tick_ms = float(self.time_base) * 1000 if strict else 1.0
        rounded = 0.5 <= tick_ms < 1000 / float(rate) / 2
        return FrameTiming(
            frame_count=self.count,
            rate=rate,
            duration_s=float(self.count / rate),
            variable=False,
            frame_time_ms=1000 / float(rate),
            frame_deltas_ms=None,
            count_source="packet count",
            rate_source=(f"packet timestamps: {float(rate):.3f} fps rounded to the "
                         f"{tick_ms:g} ms time base" if rounded else
                         "packet timestamps (exactly constant)"),
        )

    header_rate_declared = True
    """False where the container stores no rate and the nominal one is FFmpeg's guess (ASF
    guesses 29.97 for a 30 fps file): it then breaks no ties."""

    rate_origin = "stream header"
    """Set by the prober when the nominal rate came from elsewhere (VUI, --frame-rate)."""

    def _nominal_timing(self, source: str = "packet count; no timestamps"
                        ) -> FrameTiming:
        rate = self.nominal_rate or Fraction(25)
        return FrameTiming(
            frame_count=self.count,
            rate=rate,
            duration_s=float(self.count / rate),
            variable=False,
            frame_time_ms=1000 / float(rate),
            frame_deltas_ms=None,
            count_source=source,
            rate_source=self.rate_origin if self.nominal_rate else
            "none signalled: 25 fps assumed (use --frame-rate)",
        )


def _snap_rate(measured: Fraction, nominal: Fraction | None) -> Fraction:
    """Prefer the header's exact rational (30000/1001) when timestamps agree within 0.5 %."""
    if nominal and nominal > 0 and abs(float(measured / nominal) - 1) < 0.005:
        return nominal
    # a damaged timestamp can stretch the span to days: never round the rate down to zero
    return measured.limit_denominator(1001) or measured.limit_denominator(10**9)
