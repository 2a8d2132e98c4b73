"""Chunked transcoding: `vid2dcm convert --jobs 2` against `--jobs 1` (one pass) on a 60 s
1080p30 H.264 + AAC clip forced through the encoder (`--transcode always`), plus the parts of
the model in docs/scaling.md: the serial steps (cut resolution, join, re-probe and write) and
the cost of each chunk encoded alone.

    nice .venv/bin/python benchmarks/chunks.py [--reps 3] [--seconds 60]

Runs alternate (1 job, 2 jobs, 1 job, ...); medians and min-max are printed. The machine is
shared: read the spread before the median.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from vid2dcm.planning.chunks import chunk_transcode
from vid2dcm.planning.plan import Request, plan_conversion
from vid2dcm.probing.probe import probe
from vid2dcm.producing.chunks import encode_chunk, join_chunks, resolve_cuts
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize
from vid2dcm.producing.transcode import transcode


def cli(src: Path, out: Path, jobs: int) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vid2dcm", "convert", str(src), "-o", str(out),
                    "--transcode", "always", "--jobs", str(jobs), "--overwrite", "--quiet",
                    "--allow-unidentified"], check=True, capture_output=True)
    return time.perf_counter() - started


def parts(src: Path, work: Path, jobs: int) -> dict[str, float]:
    """One instrumented run in this process: the single pass, and each step of the chunked
    one done one after another (so the chunk times do not disturb each other)."""
    info = probe(src)
    plan = plan_conversion(info, Request(transcode="always"))
    target, container = plan.video_target, plan.container
    assert target is not None and container is not None
    times: dict[str, float] = {}
    started = time.perf_counter()
    transcode(info, target, plan.audio, container, work / "single.mp4")
    times["single pass transcode"] = time.perf_counter() - started
    chunks = chunk_transcode(info.video, target, jobs)
    started = time.perf_counter()
    cuts = resolve_cuts(info, chunks)
    times["resolve cuts (demux only)"] = time.perf_counter() - started
    files = []
    for cut in cuts:
        started = time.perf_counter()
        files.append(encode_chunk(info, target, cut, work / f"c{cut.index}.nut").path)
        times[f"chunk {cut.index} alone"] = time.perf_counter() - started
    started = time.perf_counter()
    join_chunks(info, files, plan.audio, container, work / "joined.mp4")
    times["join (packets + audio)"] = time.perf_counter() - started
    started = time.perf_counter()
    probe(work / "joined.mp4")
    times["re-probe of the joined stream"] = time.perf_counter() - started
    times["chunks"] = len(cuts)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vid2dcm-chunks-") as tmp:
        work = Path(tmp)
        src = synthesize(work / "hd.mp4", ClipSpec(
            width=1920, height=1080, rate=Fraction(30), frames=30 * args.seconds,
            audio=AudioSpec(), options={"preset": "superfast", "profile": "high"},
            bit_rate=8_000_000))
        runs: dict[int, list[float]] = {1: [], 2: []}
        for rep in range(args.reps):
            for jobs in (1, 2):
                runs[jobs].append(cli(src, work / f"out{jobs}.dcm", jobs))
                print(f"round {rep + 1}: --jobs {jobs}: {runs[jobs][-1]:.1f} s", flush=True)
        one, two = statistics.median(runs[1]), statistics.median(runs[2])
        ratios = [a / b for a, b in zip(runs[1], runs[2], strict=True)]
        print(f"--jobs 1: median {one:.1f} s (min-max {min(runs[1]):.1f}-{max(runs[1]):.1f})")
        print(f"--jobs 2: median {two:.1f} s (min-max {min(runs[2]):.1f}-{max(runs[2]):.1f})")
        print(f"speed-up: {one / two:.2f}x (per round {min(ratios):.2f}-{max(ratios):.2f})")
        for name, value in parts(src, work, 2).items():
            print(f"  {name}: {value:.2f}" + ("" if name == "chunks" else " s"))


if __name__ == "__main__":
    main()
