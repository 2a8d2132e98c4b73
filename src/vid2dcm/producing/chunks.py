"""Chunked transcoding: encode the chunks planned by planning/chunks.py in parallel, then join
them bit-exactly.

Every chunk is encoded by the same VideoEncoder as a single pass (same encoder options, same
clean clock, so the same global timestamps), into a NUT file that keeps the encoder's packets,
timestamps and parameter sets exactly. Each encode starts with an IDR picture and x264/x265 code
closed GOPs across it, so no picture of one chunk refers to another. The join copies the packets
of the chunks in order into the container the writer takes (as transcode.py would have made
it), re-encoding nothing; audio is copied or re-encoded from the source in the same pass. The
joined stream is then probed and re-planned by the pipeline like any other encoder output.
"""

from __future__ import annotations

import heapq
import itertools
import os
import pickle
import subprocess
import sys
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from vid2dcm.core.errors import InputError, OutputError, Vid2DcmError
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.planning.chunks import ChunkPlan
from vid2dcm.planning.plan import AudioDecision, OutputContainer
from vid2dcm.planning.video_target import VideoTarget
from vid2dcm.producing.copy import MUXER_OPTIONS, CleanClock, tag_for_apple
from vid2dcm.producing.transcode import TranscodeStats, VideoEncoder, _audio, _audio_handlers

PART_FORMAT = "nut"
"""NUT stores packets with exact timestamps, any time base and the codec's extradata."""


@dataclass(frozen=True)
class Cut:
    """A chunk resolved on the source stream's own clock: the key packet it starts at and the
    presentation timestamps (source time base) it keeps, [start_pts, end_pts)."""

    index: int
    start_pts: int | None
    """None for the first chunk: it also keeps pictures before its key frame."""
    end_pts: int | None
    """None for the last chunk."""
    seek_pts: int | None
    """Where to seek (the key packet's decode timestamp); None: from the start."""

    def holds(self, pts: int) -> bool:
        return ((self.start_pts is None or pts >= self.start_pts)
                and (self.end_pts is None or pts < self.end_pts))


@dataclass(frozen=True)
class ChunkResult:
    index: int
    path: Path
    packets_in: int
    """Source pictures whose presentation time falls in the chunk."""
    frames_out: int
    damaged_packets: int
    seconds: float


def resolve_cuts(info: MediaInfo, plan: ChunkPlan) -> tuple[Cut, ...]:
    """Turn the planned chunks (key frames by decode index and time, from probe) into exact
    source timestamps, with one demux pass that decodes nothing. A key frame's probed time may
    be its decode time (MP4 index) or its presentation time, so cuts are matched by decode
    index and checked to land on a key packet."""
    wanted = {c.first_frame: c for c in plan.chunks[1:]}
    found: dict[int, tuple[int, int]] = {}
    with av.open(str(info.path)) as source:
        vin = next(s for s in source.streams.video if s.index == info.video.index)
        count = 0
        for packet in source.demux(vin):
            if packet.size == 0:
                continue
            if count in wanted and packet.is_keyframe and packet.pts is not None:
                found[count] = (packet.pts, packet.dts if packet.dts is not None else packet.pts)
            count += 1
    missing = [i for i in wanted if i not in found]
    if missing:
        raise OutputError(f"chunk cut at frame {missing[0]} is not a key packet of the source")
    cuts: list[Cut] = []
    for n, chunk in enumerate(plan.chunks):
        start = found[chunk.first_frame] if n else None
        nxt = plan.chunks[n + 1] if n + 1 < len(plan.chunks) else None
        cuts.append(Cut(n, start[0] if start else None,
                        found[nxt.first_frame][0] if nxt else None,
                        start[1] if start else None))
    return tuple(cuts)


def encode_chunk(info: MediaInfo, target: VideoTarget, cut: Cut, out_path: Path) -> ChunkResult:
    """Encode the source pictures of one chunk into out_path (NUT), with global timestamps.

    Runs in a worker process (or a gateway chunk task): everything it needs is in its
    arguments, which pickle."""
    started = time.monotonic()
    packets_in = damaged = 0
    partial = out_path.with_name(f"{out_path.name}.{os.getpid()}.part")  # one per process
    try:
        with av.open(str(info.path)) as source, av.open(
                str(partial), "w", format=PART_FORMAT,
                options={"avoid_negative_ts": "disabled"}) as out:
            vin = next(s for s in source.streams.video if s.index == info.video.index)
            vin.thread_type = "AUTO"
            clock = CleanClock.for_stream(info, vin)
            if clock is None or vin.time_base is None:
                raise OutputError("chunked transcoding needs a constant-rate stream with "
                                  "timestamps")
            stamps = _Stamps(out)
            encoder = VideoEncoder(stamps, target, clock.time_base, True, clock)
            if cut.seek_pts is not None:
                source.seek(cut.seek_pts, stream=vin, backward=True, any_frame=False)
            done = False
            for packet in source.demux(vin):
                if packet.size == 0 and packet.pts is None and packet.dts is None:
                    continue  # the demuxer's end-of-stream marker: flush below
                if packet.size and packet.pts is not None and cut.holds(packet.pts):
                    packets_in += 1
                try:
                    frames = vin.decode(packet)
                except av.error.FFmpegError:
                    damaged += 1
                    continue
                done = _keep(frames, cut, encoder)
                if done:
                    break
            if not done:
                _keep(vin.decode(None), cut, encoder)
            encoder.finish()
            frames_out = encoder.frames_out
        stamps.save(_stamps_path(out_path))
        partial.replace(out_path)
    except av.error.FFmpegError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"chunk {cut.index}: transcoding failed: {exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return ChunkResult(cut.index, out_path, packets_in, frames_out, damaged,
                       time.monotonic() - started)


class _Stamps:
    """Stands in for the output container: records every packet's (pts, dts) as the encoder
    made them. NUT rebuilds decode timestamps on reading and leaves the first ones (negative
    with B-frames) unset, so the join takes them from this record."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self.pts: array[int] = array("q")
        self.dts: array[int] = array("q")

    def add_stream(self, *args: Any, **kwargs: Any) -> Any:
        return self.out.add_stream(*args, **kwargs)

    def mux(self, packet: Any) -> None:
        if packet.size:
            self.pts.append(NONE if packet.pts is None else packet.pts)
            self.dts.append(NONE if packet.dts is None else packet.dts)
        self.out.mux(packet)

    def save(self, path: Path) -> None:
        with path.open("wb") as f:
            array("q", [len(self.pts)]).tofile(f)
            self.pts.tofile(f)
            self.dts.tofile(f)


NONE = -(2**63)


def _stamps_path(part: Path) -> Path:
    return part.with_name(part.name + ".stamps")


def _load_stamps(part: Path) -> tuple[array[int], array[int]]:
    raw = array("q")
    path = _stamps_path(part)
    if not path.is_file():
        raise OutputError(f"{part.name} has no timestamp record; it was not written by "
                          "encode_chunk")
    raw.frombytes(path.read_bytes())
    count = raw[0] if raw else -1
    if len(raw) != 1 + 2 * count:
        raise OutputError(f"the timestamp record of {part.name} is cut short")
    return raw[1:1 + count], raw[1 + count:]


def _keep(frames: Sequence[Any], cut: Cut, encoder: VideoEncoder) -> bool:
    """Encode the decoded pictures the chunk holds; True once past its end (pictures come
    out of the decoder in display order, so none of the chunk's can follow)."""
    for frame in frames:
        if frame.pts is None:
            raise OutputError("a decoded picture has no timestamp; the stream cannot be cut")
        if cut.end_pts is not None and frame.pts >= cut.end_pts:
            return True
        if cut.holds(frame.pts):
            encoder.push(frame)
    return False


def join_chunks(info: MediaInfo, parts: Sequence[Path], audio: tuple[AudioDecision, ...],
                container: OutputContainer, out_path: Path,
                progress: Callable[[float], None] | None = None) -> int:
    """Concatenate the chunks' packets into out_path (the container the writer takes), with
    the source's audio; returns the number of video frames written.

    Fails (nothing left behind) when the chunks' parameter sets differ or the timestamps do not
    run on (a missing or repeated chunk)."""
    try:
        with av.open(str(parts[0])) as first:
            template = first.streams.video[0]
            extradata = bytes(template.codec_context.extradata or b"")
            with av.open(str(info.path)) as source, av.open(
                    str(out_path), "w", format=container.value,
                    options=MUXER_OPTIONS[container]) as out:
                vout = out.add_stream_from_template(template)
                tag_for_apple(vout, container)
                vout.time_base = template.time_base
                handlers = _audio_handlers(source, out, audio)
                audio_in = [source.streams[i] for i in handlers]
                video = _video_packets(parts, extradata, progress)
                sounds = (p for p in source.demux(audio_in) if p.size) if audio_in else iter(())
                frames = 0
                for packet in heapq.merge(video, sounds, key=_seconds):
                    if packet.stream.type == "video":
                        packet.stream = vout
                        out.mux(packet)
                        frames += 1
                    else:
                        _audio(handlers[packet.stream.index], packet, out)
                for handler in handlers.values():
                    if hasattr(handler, "finish"):
                        handler.finish()
    except Vid2DcmError:
        out_path.unlink(missing_ok=True)
        raise
    except av.error.FFmpegError as exc:
        out_path.unlink(missing_ok=True)
        raise OutputError(f"joining the chunks failed: {exc}") from exc
    return frames


def _video_packets(parts: Sequence[Path], extradata: bytes,
                   progress: Callable[[float], None] | None) -> Iterator[Any]:
    last_dts: int | None = None
    expected: int | None = None
    """Where the next chunk's first picture must be shown: one frame after the last one."""
    time_base: Fraction | None = None
    for number, part in enumerate(parts):
        with av.open(str(part)) as chunk:
            stream = chunk.streams.video[0]
            if bytes(stream.codec_context.extradata or b"") != extradata:
                raise OutputError(f"chunk {number} was encoded with other parameter sets; "
                                  "the chunks cannot be joined")
            if time_base is None:
                time_base = stream.time_base
            elif stream.time_base != time_base:
                raise OutputError(f"chunk {number} runs on another clock")
            pts, dts = _load_stamps(part)
            shown = sorted(p for p in pts if p != NONE)
            if not shown:
                raise OutputError(f"chunk {number} holds no picture")
            if expected is not None and shown[0] != expected:
                raise OutputError(
                    f"chunk {number} starts at {shown[0]}, not where chunk {number - 1} ended "
                    f"({expected}): a chunk is missing, repeated or cut elsewhere")
            steps = sorted(b - a for a, b in itertools.pairwise(shown))
            period = steps[len(steps) // 2] if steps else 0
            expected = shown[-1] + period if steps else None
            count = 0
            for packet in chunk.demux(stream):
                if not packet.size:
                    continue
                if count >= len(pts) or (packet.pts if packet.pts is not None else NONE) != (
                        pts[count]):
                    raise OutputError(f"chunk {number} does not match its timestamp record")
                packet.dts = None if dts[count] == NONE else dts[count]
                count += 1
                if last_dts is not None and packet.dts is not None and packet.dts <= last_dts:
                    raise OutputError(f"chunk {number} does not follow the chunk before it "
                                      "(timestamps go back)")
                if packet.dts is not None:
                    last_dts = packet.dts
                yield packet
            if count != len(pts):
                raise OutputError(f"chunk {number} holds {count} of its {len(pts)} packets")
        if progress is not None:
            progress((number + 1) / len(parts))


def _seconds(packet: Any) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def transcode_in_chunks(info: MediaInfo, target: VideoTarget, audio: tuple[AudioDecision, ...],
                        container: OutputContainer, out_path: Path, plan: ChunkPlan, jobs: int,
                        work: Path, progress: Callable[[float], None] | None = None,
                        encoded: Sequence[Path] | None = None) -> TranscodeStats:
    """Encode the chunks in up to `jobs` processes (or take the chunk files a gateway's workers
    already encoded: `encoded`), then join them into out_path."""
    started = time.monotonic()
    cuts = resolve_cuts(info, plan)
    results: list[ChunkResult] = []
    if encoded is None:
        parts = [work / f"chunk-{c.index:04d}.{PART_FORMAT}" for c in cuts]
        results = run_chunks(info, target, cuts, parts, jobs, progress)
    else:
        parts = list(encoded)
        if len(parts) != len(cuts) or not all(p.is_file() for p in parts):
            raise OutputError(f"{len(cuts)} encoded chunks expected, "
                              f"{sum(p.is_file() for p in parts)} found")
    frames = join_chunks(info, parts, audio, container, out_path)
    if frames == 0:
        out_path.unlink(missing_ok=True)
        raise InputError(f"{info.path}: no picture could be decoded; the video cannot be "
                         "salvaged")
    packets_in = sum(r.packets_in for r in results) if results else frames
    damaged = sum(r.damaged_packets for r in results)
    if results and sum(r.frames_out for r in results) != frames:
        out_path.unlink(missing_ok=True)
        raise OutputError("the joined stream lost frames of its chunks")
    return TranscodeStats(packets_in, frames, damaged, time.monotonic() - started)


def run_chunks(info: MediaInfo, target: VideoTarget, cuts: Sequence[Cut], parts: Sequence[Path],
               jobs: int, progress: Callable[[float], None] | None = None) -> list[ChunkResult]:
    """Encode every chunk, `jobs` at a time, each in a fresh Python process (`python -c`, not
    multiprocessing: a forked copy of a process running FFmpeg threads is unsafe, and spawn
    re-runs the caller's main script). Arguments and results travel pickled on stdin/stdout."""
    results: list[ChunkResult] = []

    def one(cut: Cut, part: Path) -> ChunkResult:
        done = subprocess.run([sys.executable, "-c", WORKER], input=pickle.dumps(
            (info, target, cut, part)), capture_output=True, check=False)
        try:
            kind, value = pickle.loads(done.stdout)
        except Exception:
            tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["?"]
            raise OutputError(f"chunk {cut.index} failed (exit {done.returncode}): "
                              f"{tail[0]}") from None
        if kind == "ok":
            assert isinstance(value, ChunkResult)
            return value
        error = InputError if kind == "input" else OutputError
        raise error(f"chunk {cut.index}: {value}")

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(cuts)))) as pool:
        futures = [pool.submit(one, cut, part) for cut, part in zip(cuts, parts, strict=True)]
        try:
            for future in as_completed(futures):
                results.append(future.result())
                if progress is not None:
                    progress(len(results) / len(cuts))
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return sorted(results, key=lambda r: r.index)


WORKER = "from vid2dcm.producing.chunks import worker_main; worker_main()"


def worker_main() -> None:
    """The chunk worker process: (info, target, cut, part) pickled on stdin, ("ok", result)
    or (kind, message) pickled on stdout."""
    info, target, cut, part = pickle.loads(sys.stdin.buffer.read())
    try:
        reply: tuple[str, object] = ("ok", encode_chunk(info, target, cut, part))
    except InputError as exc:
        reply = ("input", str(exc))
    except Vid2DcmError as exc:
        reply = ("output", str(exc))
    sys.stdout.buffer.write(pickle.dumps(reply))
