"""Chunked transcoding: where a long transcode is cut so that several processes or machines
can encode it at once. Pure: a function of the source's key-frame times, its duration and the
number of workers, so every rule is tested with hand-made records.

A chunk starts on a SOURCE key frame (decoding can start there without earlier packets) and
holds every picture whose presentation time lies in [start_s, end_s). Each chunk is encoded
with the same settings into a closed-GOP stream that starts with an IDR picture, so the
encoded chunks join by concatenating their packets (ISO/IEC 14496-10 7.4.1.2.4:
an IDR picture starts a new coded video sequence; the same SPS/PPS serve every sequence).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from vid2dcm.core.media_info import KeyFrame, VideoStreamInfo
from vid2dcm.planning.video_target import VideoTarget

MIN_CHUNK_S = 10.0
"""Shortest chunk worth a process of its own: each chunk pays a decoder start, a seek and an
encoder look-ahead warm-up (x264 veryfast: ~0.3 s of 1080p work), so below a few seconds the
overhead eats the gain. Tests force a small value."""

CHUNKS_PER_WORKER = 1
"""More chunks than workers even out unequal chunks but add overhead; one each is the default."""

ENCODERS = ("libx264",)
"""Encoders whose chunked output is tested to join (same parameter sets for the same settings,
closed GOPs). x265 (HEVC targets, beyond H.264 Level 4.2) defaults to open GOPs and is not
tested here yet: it keeps the single pass."""


@dataclass(frozen=True)
class Chunk:
    """Pictures with presentation time in [start_s, end_s) (end_s None: to the end)."""

    index: int
    start_s: float
    """Presentation time of the source key frame that starts the chunk (None-free: the
    first chunk starts at the first key frame, which every decodable stream has)."""
    end_s: float | None
    first_frame: int
    """Decode-order index of that key frame."""

    def holds(self, time_s: float) -> bool:
        """Whether a picture shown at time_s belongs to this chunk (the first chunk also
        takes pictures before its key frame: leading pictures of an open GOP)."""
        after = self.index == 0 or time_s >= self.start_s - EPSILON_S
        return after and (self.end_s is None or time_s < self.end_s - EPSILON_S)


EPSILON_S = 1e-6
"""Timestamps are rationals turned into floats: a picture at a boundary belongs to the chunk
that starts there."""


@dataclass(frozen=True)
class ChunkPlan:
    chunks: tuple[Chunk, ...]
    reason: str
    """Why the transcode is (or is not) split, in words."""

    @property
    def parallel(self) -> bool:
        return len(self.chunks) > 1


def why_not_chunked(video: VideoStreamInfo, target: VideoTarget) -> str | None:
    """None when the stream can be transcoded in chunks; otherwise the reason it cannot."""
    if target.encoder not in ENCODERS:
        return f"{target.encoder} output is not joined from chunks"
    if not video.has_timestamps:
        return "the stream has no timestamps to cut it by"
    if video.timing.variable:
        return "the frame rate varies (chunks are cut on a constant-rate clock)"
    if target.deinterlace or target.interlaced:
        return "interlaced pictures (a deinterlacer looks across the cut)"
    if sum(1 for k in video.keyframes if k.pts_s is not None) < 2:
        return "fewer than two key frames with timestamps"
    return None


def plan_chunks(keyframes: Sequence[KeyFrame], duration_s: float, workers: int,
                min_chunk_s: float = MIN_CHUNK_S,
                chunks_per_worker: int = CHUNKS_PER_WORKER) -> ChunkPlan:
    """Cut [first key frame, first key frame + duration_s) at key frames into at most
    workers * chunks_per_worker chunks of at least min_chunk_s each, each cut at the key frame
    nearest to an even share of the duration. One chunk when there is one worker, when the
    video is too short for two chunks, or when no key frame falls where a cut could go."""
    timed = sorted({(k.pts_s, k.frame_index) for k in keyframes if k.pts_s is not None})
    if not timed:
        return ChunkPlan((Chunk(0, 0.0, None, 0),), "no key frame has a timestamp")
    start, first = timed[0]
    end = start + duration_s
    whole = ChunkPlan((Chunk(0, start, None, first),), "")
    wanted = min(max(1, workers) * max(1, chunks_per_worker),
                 int(duration_s // min_chunk_s) if min_chunk_s > 0 else len(timed))
    if workers <= 1:
        return ChunkPlan(whole.chunks, "one worker: a single pass")
    if wanted < 2:
        return ChunkPlan(whole.chunks, f"{duration_s:.1f} s is shorter than two chunks of "
                                       f"{min_chunk_s:g} s")
    cuts: list[tuple[float, int]] = []
    previous = start
    for share in range(1, wanted):
        ideal = start + duration_s * share / wanted
        fits = [(t, i) for t, i in timed
                if t - previous >= min_chunk_s - EPSILON_S and end - t >= min_chunk_s - EPSILON_S
                and t > previous]
        if not fits:
            continue
        best = min(fits, key=lambda kf: (abs(kf[0] - ideal), kf[0]))
        if cuts and best[0] <= cuts[-1][0]:
            continue
        cuts.append(best)
        previous = best[0]
    if not cuts:
        return ChunkPlan(whole.chunks, "no key frame where a cut could go (key frames too "
                                       "far apart)")
    starts = [(start, first), *cuts]
    chunks = tuple(Chunk(n, t, starts[n + 1][0] if n + 1 < len(starts) else None, i)
                   for n, (t, i) in enumerate(starts))
    return ChunkPlan(chunks, f"{len(chunks)} chunks cut at source key frames for {workers} "
                             f"workers (at least {min_chunk_s:g} s each)")


def chunk_transcode(video: VideoStreamInfo, target: VideoTarget, workers: int,
                    min_chunk_s: float = MIN_CHUNK_S) -> ChunkPlan:
    """The chunks a transcode of this stream is encoded in: one (a single pass) when the
    stream cannot be cut or is too short to pay off."""
    reason = why_not_chunked(video, target)
    if reason is not None:
        first = next((k for k in video.keyframes if k.pts_s is not None), None)
        return ChunkPlan((Chunk(0, first.pts_s if first and first.pts_s is not None else 0.0,
                                None, first.frame_index if first else 0),),
                         f"a single pass: {reason}")
    return plan_chunks(video.keyframes, video.timing.duration_s, workers, min_chunk_s)
