"""Frame count, rate and variable-rate detection from packet timestamps in decode order."""

from __future__ import annotations

import itertools
from fractions import Fraction

import pytest

from vid2dcm.probing.timing import MAX_KEPT_DELTAS, REORDER_WINDOW, FrameTimingCounter

TB_12800 = Fraction(1, 12800)
TB_MS = Fraction(1, 1000)


def decode_order(n: int, pattern: tuple[int, ...] = (0, 4, 2, 1, 3)) -> list[int]:
    """Display indices 0..n-1 in the order an encoder with B-pyramids emits them."""
    gop = len(pattern)
    order = [base + p for base in range(0, n - n % gop, gop) for p in pattern]
    return order + list(range(n - n % gop, n))


def test_decode_order_helper_is_a_permutation() -> None:
    assert decode_order(12) == [0, 4, 2, 1, 3, 5, 9, 7, 6, 8, 10, 11]
    assert sorted(decode_order(1003)) == list(range(1003))


@pytest.mark.parametrize("frames", [2, 5, 7, 250, 1001, 3 * REORDER_WINDOW + 3])
def test_constant_25fps_with_b_frames(frames: int) -> None:
    counter = FrameTimingCounter(TB_12800, Fraction(25))
    for i in decode_order(frames):
        counter.add(i * 512, 512)
    timing = counter.result()
    assert timing.frame_count == frames
    assert timing.rate == Fraction(25)
    assert timing.variable is False
    assert timing.frame_deltas_ms is None
    assert timing.frame_time_ms == pytest.approx(40.0)
    assert timing.duration_s == pytest.approx(frames / 25)
    assert timing.cine_rate == 25
    assert timing.count_source == "packet count"


def test_rate_is_measured_without_a_header_rate() -> None:
    counter = FrameTimingCounter(TB_12800, None)
    for i in decode_order(100):
        counter.add(1000 + i * 512, 512)  # a start offset does not matter
    timing = counter.result()
    assert timing.rate == Fraction(25)
    assert timing.duration_s == pytest.approx(4.0)
    assert timing.variable is False


def test_timestamps_win_over_a_wrong_header_rate() -> None:
    counter = FrameTimingCounter(TB_12800, Fraction(30))
    for i in range(100):
        counter.add(i * 512, 512)
    assert counter.result().rate == Fraction(25)


def ntsc_ms(i: int) -> int:
    return round(i * 1000 * 1001 / 30000)


@pytest.mark.parametrize("frames", [10, 300, 1800])
def test_ntsc_rate_snaps_to_the_header_rational(frames: int) -> None:
    pts = [ntsc_ms(i) for i in range(frames)]
    deltas = {b - a for a, b in itertools.pairwise(pts)}
    assert deltas == {33, 34}
    counter = FrameTimingCounter(TB_MS, Fraction(30000, 1001))
    for p in pts:
        counter.add(p, 33)
    timing = counter.result()
    assert timing.rate == Fraction(30000, 1001)
    assert timing.variable is False, "1 ms jitter from rounding is not a variable rate"
    assert timing.frame_deltas_ms is None
    assert timing.frame_count == frames
    assert timing.frame_time_ms == pytest.approx(1001 / 30)
    assert timing.cine_rate == 30


def test_ntsc_without_header_rate_is_close_to_29_97() -> None:
    counter = FrameTimingCounter(TB_MS, None)
    for i in range(300):
        counter.add(ntsc_ms(i), 33)
    timing = counter.result()
    assert float(timing.rate) == pytest.approx(30000 / 1001, rel=1e-3)
    assert timing.rate.denominator <= 1001
    assert timing.variable is False


VFR_CYCLE = (33, 50, 17)


def vfr_display_pts(frames: int) -> list[int]:
    return [0, *itertools.accumulate(VFR_CYCLE[i % 3] for i in range(frames - 1))]


@pytest.mark.parametrize("reorder", [False, True], ids=["display-order", "decode-order"])
def test_variable_rate_keeps_deltas_in_display_order(reorder: bool) -> None:
    frames = 31
    pts = vfr_display_pts(frames)
    counter = FrameTimingCounter(TB_MS, Fraction(30))
    order = decode_order(frames) if reorder else list(range(frames))
    for i in order:
        counter.add(pts[i], VFR_CYCLE[i % 3])
    timing = counter.result()
    assert timing.frame_count == frames
    assert timing.variable is True
    assert timing.frame_deltas_ms is not None
    assert len(timing.frame_deltas_ms) == frames - 1
    expected = [VFR_CYCLE[i % 3] for i in range(frames - 1)]
    assert list(timing.frame_deltas_ms) == pytest.approx(expected)
    assert sum(timing.frame_deltas_ms) == pytest.approx(pts[-1])
    # mean interval 33.3 ms
    assert float(timing.rate) == pytest.approx(30, rel=0.01)


def test_variable_rate_in_90k_ticks() -> None:
    tb = Fraction(1, 90000)
    pts = [0, 3000, 6000, 12000, 15000, 18000]  # one frame dropped: a 66.7 ms gap
    counter = FrameTimingCounter(tb, Fraction(30))
    for p in pts:
        counter.add(p, 3000)
    timing = counter.result()
    assert timing.variable is True
    assert timing.frame_deltas_ms == pytest.approx((100 / 3, 100 / 3, 200 / 3, 100 / 3, 100 / 3))


@pytest.mark.parametrize(("frames", "kept"), [
    (MAX_KEPT_DELTAS + 1, True),     # exactly MAX_KEPT_DELTAS intervals
    (MAX_KEPT_DELTAS + 2, False),
    (3 * MAX_KEPT_DELTAS, False),
])
def test_long_variable_rate_drops_the_deltas(frames: int, kept: bool) -> None:
    counter = FrameTimingCounter(TB_MS, None)
    for p in vfr_display_pts(frames):
        counter.add(p, 0)
    timing = counter.result()
    assert timing.frame_count == frames
    assert timing.variable is True
    if kept:
        assert timing.frame_deltas_ms is not None
        assert len(timing.frame_deltas_ms) == MAX_KEPT_DELTAS
    else:
        assert timing.frame_deltas_ms is None


@pytest.mark.parametrize(("nominal", "expected"), [
    (Fraction(30000, 1001), Fraction(30000, 1001)),
    (Fraction(50), Fraction(50)),
    (None, Fraction(25)),
])
def test_missing_timestamps_use_the_nominal_rate(nominal: Fraction | None,
                                                 expected: Fraction) -> None:
    counter = FrameTimingCounter(Fraction(1, 1200000), nominal)
    for _ in range(120):
        counter.add(None, 0)
    timing = counter.result()
    assert timing.frame_count == 120
    assert timing.rate == expected
    assert timing.variable is False
    assert timing.frame_deltas_ms is None
    assert timing.duration_s == pytest.approx(float(120 / expected))
    assert timing.frame_time_ms == pytest.approx(1000 / float(expected))
    assert "no timestamps" in timing.count_source


def test_some_missing_timestamps_fall_back_to_nominal() -> None:
    counter = FrameTimingCounter(TB_12800, Fraction(30000, 1001))
    for i in range(50):
        counter.add(None if i == 20 else i * 512, 512)
    timing = counter.result()
    assert timing.frame_count == 50
    assert timing.rate == Fraction(30000, 1001)


def test_single_frame() -> None:
    counter = FrameTimingCounter(TB_12800, Fraction(24))
    counter.add(0, 512)
    timing = counter.result()
    assert timing.frame_count == 1
    assert timing.rate == Fraction(24)
    assert timing.variable is False
    assert timing.frame_deltas_ms is None
    assert timing.duration_s == pytest.approx(1 / 24)
    assert "one frame" in timing.count_source


def test_no_packets_is_an_error() -> None:
    with pytest.raises(ValueError, match="no video packets"):
        FrameTimingCounter(TB_12800, Fraction(25)).result()


def test_duration_includes_the_last_frame() -> None:
    counter = FrameTimingCounter(TB_MS, Fraction(25))
    for i in range(10):
        counter.add(i * 40, 40)
    timing = counter.result()
    assert timing.duration_s == pytest.approx(0.4)
    # without packet durations, the mean interval stands in for the last frame
    counter = FrameTimingCounter(TB_MS, Fraction(25))
    for i in range(10):
        counter.add(i * 40, 0)
    assert counter.result().duration_s == pytest.approx(0.4)
