"""The chunk planner, exhaustively on hand-made key-frame tables: cuts only at source key frames,
every chunk at least the minimum length, never more chunks than asked, the whole duration
covered exactly once, and a single pass whenever splitting cannot pay off or is unsafe."""

from __future__ import annotations

import itertools
from dataclasses import replace
from fractions import Fraction

import pytest

from vid2dcm.core.media_info import FrameTiming, KeyFrame, VideoStreamInfo
from vid2dcm.planning.chunks import (
    EPSILON_S,
    Chunk,
    chunk_transcode,
    plan_chunks,
    why_not_chunked,
)
from vid2dcm.planning.video_target import choose_video_target


def keyframes(count: int, gop: int, rate: float, start: float = 0.0,
              jitter: tuple[int, ...] = (0,)) -> tuple[KeyFrame, ...]:
    """A key frame every gop frames (plus a per-GOP jitter cycle, as scene cuts move them)."""
    out: list[KeyFrame] = []
    index = 0
    n = 0
    while index < count:
        out.append(KeyFrame(index, index * 1000, start + index / rate))
        n += 1
        index = n * gop + jitter[n % len(jitter)] if n * gop < count else count
    return tuple(k for k in out if k.frame_index < count)


def video(frames: int, rate: Fraction, gop: int, **changes: object) -> VideoStreamInfo:
    timing = FrameTiming(frames, rate, frames / float(rate), False, 1000 / float(rate), None,
                         "test")
    v = VideoStreamInfo(0, "mpeg4", "mp4v", "Simple", 1, None, 320, 240, "yuv420p", "4:2:0",
                        8, None, 0, False, "tv", timing,
                        keyframes(frames, gop, float(rate)), frames * 1000, True)
    return replace(v, **changes)  # type: ignore[arg-type]


def check(chunks: tuple[Chunk, ...], table: tuple[KeyFrame, ...], duration: float,
          workers: int, min_s: float) -> None:
    times = {(k.pts_s, k.frame_index) for k in table}
    assert chunks[0].index == 0 and chunks[-1].end_s is None
    assert chunks[0].start_s == min(t for t, _ in times)
    assert len(chunks) <= max(1, workers)
    for a, b in itertools.pairwise(chunks):
        assert (b.start_s, b.first_frame) in times, "a cut must be on a source key frame"
        assert a.end_s == b.start_s and b.index == a.index + 1
        assert b.start_s - a.start_s >= min_s - EPSILON_S, "a chunk is shorter than the minimum"
    if len(chunks) > 1:
        end = chunks[0].start_s + duration
        assert end - chunks[-1].start_s >= min_s - EPSILON_S, "the last chunk is too short"


@pytest.mark.parametrize("workers", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("gop", [1, 12, 25, 250, 1000])
@pytest.mark.parametrize("seconds", [0.5, 5, 19.9, 20, 61, 600])
@pytest.mark.parametrize("jitter", [(0,), (0, 3, -2, 7)])
def test_every_plan_keeps_the_rules(workers: int, gop: int, seconds: float,
                                    jitter: tuple[int, ...]) -> None:
    rate = 30.0
    frames = int(seconds * rate)
    table = keyframes(frames, gop, rate, 1.25, jitter)
    for min_s in (1.0, 10.0):
        plan = plan_chunks(table, seconds, workers, min_s)
        check(plan.chunks, table, seconds, workers, min_s)
        assert plan.reason
        # a chunk is not split when it could have been: enough key frames, time and workers
        if workers >= 2 and seconds >= 2 * min_s + 2 * (gop + 7) / rate:
            assert plan.parallel, (plan.reason, workers, gop, seconds)


def test_cuts_near_even_shares() -> None:
    table = keyframes(60 * 30, 30, 30.0)  # a key frame every second of a minute
    plan = plan_chunks(table, 60.0, 4, 10.0)
    assert [c.start_s for c in plan.chunks] == [0.0, 15.0, 30.0, 45.0]
    assert [c.first_frame for c in plan.chunks] == [0, 450, 900, 1350]
    assert plan.chunks[1].holds(15.0) and not plan.chunks[0].holds(15.0)
    assert plan.chunks[0].holds(-0.04), "leading pictures before the first key frame stay"


def test_single_pass_when_it_cannot_pay_off() -> None:
    table = keyframes(600, 30, 30.0)
    assert "one worker" in plan_chunks(table, 20.0, 1, 1.0).reason
    assert not plan_chunks(table, 20.0, 4, 15.0).parallel  # 20 s < 2 x 15 s
    sparse = keyframes(600, 600, 30.0)  # one key frame: nowhere to cut
    assert "no key frame" in plan_chunks(sparse, 20.0, 2, 1.0).reason
    assert not plan_chunks((KeyFrame(0, 0, None),), 20.0, 2, 1.0).parallel


def test_more_chunks_per_worker() -> None:
    table = keyframes(1800, 30, 30.0)
    assert len(plan_chunks(table, 60.0, 2, 5.0, chunks_per_worker=3).chunks) == 6


def test_unsafe_streams_are_not_cut() -> None:
    rate = Fraction(30)
    plain = video(600, rate, 30)
    target = choose_video_target(plain)
    assert why_not_chunked(plain, target) is None
    assert chunk_transcode(plain, target, 2, 1.0).parallel
    cases = {
        "no timestamps": replace(plain, has_timestamps=False),
        "varies": replace(plain, timing=replace(plain.timing, variable=True)),
        "interlaced": replace(plain, interlaced=True),
        "fewer than two key frames": replace(plain, keyframes=plain.keyframes[:1]),
    }
    for words, v in cases.items():
        t = choose_video_target(v)
        reason = why_not_chunked(v, t)
        assert reason is not None and words in reason, (words, reason)
        plan = chunk_transcode(v, t, 4, 1.0)
        assert not plan.parallel and words in plan.reason
