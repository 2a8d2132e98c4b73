"""Copy-path benchmark: vid2dcm convert side by side with the physical references, one run.

References: `cp` (the disk), the ffmpeg CLI remux `-c copy` when installed, and an in-process PyAV
remux (what the container rewrite alone costs). Reported as ratios to cp, with peak RSS.

    .venv/bin/python benchmarks/copy_path.py [--gigabytes 1.0] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av

from vid2dcm.media.synth import ClipSpec, synthesize

PEAK = """
import sys, runpy
sys.argv = sys.argv[1:]
code = 0
try:
    runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
except SystemExit as exc:
    code = exc.code or 0
hwm = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(f"PEAK_KB={hwm}", file=sys.stderr)
sys.exit(code)
"""


def make_input(folder: Path, gigabytes: float) -> Path:
    seed = synthesize(folder / "seed.mp4", ClipSpec(
        width=1920, height=1080, frames=6, noise=True, rate=Fraction(25),
        options={"preset": "superfast", "profile": "high", "level": "4.1", "g": "1", "qp": "4"}))
    big = folder / "input.mp4"
    target = int(gigabytes * 1e9)
    with av.open(str(seed)) as src, av.open(str(big), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        packets = [bytes(p) for p in src.demux(vin) if p.size]
        written = frame = 0
        while written < target:
            for data in packets:
                packet = av.Packet(data)
                packet.stream, packet.time_base = vout, Fraction(1, 25)
                packet.pts = packet.dts = frame
                packet.duration, packet.is_keyframe = 1, True
                out.mux(packet)
                frame += 1
                written += len(data)
    return big


def timed(cmd: list[str]) -> tuple[float, int | None]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.strip()[-500:]}")
    peaks = [int(line.split("=")[1]) for line in proc.stderr.splitlines()
             if line.startswith("PEAK_KB=")]
    return elapsed, (peaks[-1] // 1024 if peaks else None)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--keep", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.keep) as tmp:
        folder = Path(tmp)
        source = make_input(folder, args.gigabytes)
        size = source.stat().st_size
        py = [sys.executable, "-c", PEAK]
        rows: list[tuple[str, float, int | None]] = []
        rows.append(("cp", *timed(["cp", str(source), str(folder / "copy.mp4")])))
        if shutil.which("ffmpeg"):
            rows.append(("ffmpeg -c copy -f mp4 +faststart", *timed([
                "ffmpeg", "-v", "error", "-y", "-i", str(source), "-c", "copy",
                "-movflags", "+faststart", str(folder / "ffmpeg.mp4")])))
        rows.append(("vid2dcm probe", *timed([*py, "vid2dcm.cli", "probe", str(source)])))
        rows.append(("vid2dcm convert", *timed([*py, "vid2dcm.cli", "convert", str(source),
                                                "-o", str(folder / "out.dcm")])))
        rows.append(("vid2dcm extract", *timed([*py, "vid2dcm.cli", "extract",
                                                str(folder / "out.dcm"), "-o",
                                                str(folder / "back.mp4")])))
        base = rows[0][1]
        print(f"input: {size / 1e9:.2f} GB H.264 1080p, {args.gigabytes} GB target")
        print(f"{'operation':34} {'seconds':>8} {'x cp':>6} {'MB/s':>7} {'peak RSS MB':>12}")
        for name, seconds, peak in rows:
            print(f"{name:34} {seconds:8.2f} {seconds / base:6.1f} {size / seconds / 1e6:7.0f} "
                  f"{peak if peak is not None else '-':>12}")


if __name__ == "__main__":
    main()
