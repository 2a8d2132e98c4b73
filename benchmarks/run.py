"""`make bench`: every issue-17 figure side by side with its reference, in one run, as ratios.

Each case runs its commands alternately (reference, vid2dcm, reference, ...) for --reps rounds;
the report gives the median and min-max wall time, the ratio of medians, vid2dcm's peak RSS
(VmHWM of the process) and, where issue 17 sets one, the target and whether this run met it.
Inputs are generated here (in a temporary folder removed afterwards). Results:
docs/benchmarks.md.

    .venv/bin/python benchmarks/run.py [--reps 3] [--gigabytes 1.0] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av

from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

PEAK = """
import runpy, sys
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


@dataclass
class Timing:
    seconds: list[float] = field(default_factory=list)
    peak_mb: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    def span(self) -> str:
        return f"{min(self.seconds):.2f}-{max(self.seconds):.2f}"


@dataclass
class Target:
    """An issue-17 target: vid2dcm's median at most `ratio` x the reference's, or at most
    `seconds` (end to end), and peak RSS at most `rss_mb`."""

    ratio: float | None = None
    seconds: float | None = None
    rss_mb: float | None = None

    def describe(self) -> str:
        parts = [f"<= {self.ratio:g}x" if self.ratio else "",
                 f"< {self.seconds:g} s" if self.seconds else "",
                 f"RSS <= {self.rss_mb:g} MB" if self.rss_mb else ""]
        return ", ".join(p for p in parts if p)

    def met(self, ref: Timing, ours: Timing) -> bool:
        return ((self.ratio is None or ours.median / ref.median <= self.ratio)
                and (self.seconds is None or ours.median < self.seconds)
                and (self.rss_mb is None or not ours.peak_mb
                     or max(ours.peak_mb) <= self.rss_mb))


@dataclass
class Case:
    name: str
    reference_name: str
    reference: list[str]
    ours: list[str]
    before: Callable[[], None] = lambda: None
    """Run before every command (remove outputs, start servers...)."""
    note: str = ""
    target: Target | None = None


def run(cmd: list[str], timing: Timing) -> None:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    timing.seconds.append(time.perf_counter() - start)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed: {proc.stderr.strip()[-400:]}")
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_KB="):
            timing.peak_mb.append(int(line.split("=")[1]) / 1024)


def vid2dcm(*args: str) -> list[str]:
    return [sys.executable, "-c", PEAK, "vid2dcm.apps.cli", *args]


PHONE_GAPS = (3000,) * 7 + (3003, 2997) + (3000,) * 6 + (6000,)
"""Frame intervals (1/90000 s) of the variable-rate gigabyte stream: 30 fps with small timing
jitter and a dropped frame, as phones and recorders produce."""


def gigabyte_input(folder: Path, gigabytes: float, variable: bool = False) -> Path:
    """A ~1 GB 1080p30 H.264 MP4 at about 40 Mbit/s (within High Profile Level 4.1, so the
    planner copies it), made fast by repeating one encoded second: an IDR picture and 29
    P pictures (no B pictures, so every repetition decodes on its own)."""
    seed = synthesize(folder / "seed.mp4", ClipSpec(
        width=1920, height=1080, frames=30, noise=True, rate=Fraction(30),
        bit_rate=40_000_000,
        options={"preset": "superfast", "profile": "high", "level": "4.1", "g": "30",
                 "bframes": "0", "sc_threshold": "0",
                 "x264-params": "vbv-maxrate=45000:vbv-bufsize=45000"}))
    big = folder / ("big-vfr.mp4" if variable else "big.mp4")
    with av.open(str(seed)) as src, av.open(str(big), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        vout.time_base = Fraction(1, 90000)
        packets = [(bytes(p), bool(p.is_keyframe)) for p in src.demux(vin) if p.size]
        written = frame = pts = 0
        while written < gigabytes * 1e9:
            for data, key in packets:
                step = PHONE_GAPS[frame % len(PHONE_GAPS)] if variable else 3000
                packet = av.Packet(data)
                packet.stream, packet.time_base = vout, Fraction(1, 90000)
                packet.pts = packet.dts = pts
                packet.duration, packet.is_keyframe = step, key
                out.mux(packet)
                frame += 1
                pts += step
                written += len(data)
    seed.unlink()
    return big


def cases(folder: Path, gigabytes: float, servers: list[subprocess.Popen[bytes]]
          ) -> list[Case]:
    out = folder / "out"
    out.mkdir()

    def clean() -> None:
        for p in out.iterdir():
            p.unlink() if p.is_file() else shutil.rmtree(p)

    hd = synthesize(folder / "hd60.mp4", ClipSpec(
        width=1920, height=1080, rate=Fraction(30), frames=1800, audio=AudioSpec(),
        options={"preset": "superfast", "profile": "high"}, bit_rate=8_000_000))
    big = gigabyte_input(folder, gigabytes)
    vfr = gigabyte_input(folder, gigabytes, variable=True)
    mjpeg = synthesize(folder / "mjpeg.avi", ClipSpec(
        codec="mjpeg", pix_fmt="yuvj420p", width=1920, height=1080, rate=Fraction(30),
        frames=300, options={}))
    uhd = synthesize(folder / "uhd.avi", ClipSpec(
        codec="mjpeg", pix_fmt="yuvj420p", width=3840, height=2160, rate=Fraction(30),
        frames=30, options={}))
    clips = folder / "clips"
    clips.mkdir()
    for n in range(20):
        synthesize(clips / f"clip{n:02d}.mp4", ClipSpec(
            width=1280, height=720, rate=Fraction(30), frames=150, audio=AudioSpec(),
            options={"preset": "superfast", "profile": "high"}))
    has_ffmpeg = shutil.which("ffmpeg") is not None
    sync_copy = ["sh", "-c", f"cp {big} {out / 'c.mp4'} && sync {out / 'c.mp4'}"]
    gb = f"{big.stat().st_size / 1e9:.1f} GB"
    found = [
        Case("start-up: vid2dcm --version", "python -c pass",
             [sys.executable, "-c", "pass"], [sys.executable, "-m", "vid2dcm", "--version"],
             target=Target(seconds=0.1)),
        Case("60 s 1080p30 H.264 + AAC (copy path)", "cp", ["cp", str(hd), str(out / "c.mp4")],
             vid2dcm("convert", str(hd), "-o", str(out / "hd.dcm")), clean,
             target=Target(seconds=0.35)),
        Case(f"{gb} H.264, constant rate (copy path)", "cp + sync", sync_copy,
             vid2dcm("convert", str(big), "-o", str(out / "big.dcm")), clean,
             "vid2dcm also fsyncs its output", Target(ratio=1.5, rss_mb=150)),
        Case(f"{gb} H.264, variable rate (phone-like gaps, copy path)", "cp + sync",
             ["sh", "-c", f"cp {vfr} {out / 'c.mp4'} && sync {out / 'c.mp4'}"],
             vid2dcm("convert", str(vfr), "-o", str(out / "vfr.dcm")), clean,
             "one pass: Frame Time Vector from the MP4 sample table",
             Target(ratio=2.0, rss_mb=150)),
    ]
    piece = str(300_000_000)
    found += [
        Case(f"{gb} H.264 split into instances of 300 MB", "cp + sync", sync_copy,
             vid2dcm("convert", str(big), "-o", str(out / "split.dcm"), "--max-item-bytes",
                     piece), clean, "one pass: each part muxed into its own instance",
             Target(ratio=1.5, rss_mb=150)),
        Case(f"{gb} H.264 --fragmentable (300 MB fragments)", "cp + sync", sync_copy,
             vid2dcm("convert", str(big), "-o", str(out / "frag.dcm"), "--fragmentable",
                     "--max-item-bytes", piece), clean, "one pass over several items",
             Target(ratio=1.5, rss_mb=150)),
        Case("20 clips of 5 s 720p30 + AAC (copy path)", "one vid2dcm run per clip",
             ["sh", "-c", " && ".join(f"{sys.executable} -m vid2dcm.apps.cli convert {c} -o {out}"
                                      for c in sorted(clips.iterdir()))],
             vid2dcm("convert", str(clips), "-o", str(out)), clean,
             "folder input, one process per CPU"),
    ]
    found.append(Case(
        "60 s 1080p30 -> H.264 in 2 chunks (--jobs 2, --transcode always)",
        "--jobs 1 (single pass)",
        vid2dcm("convert", str(hd), "-o", str(out / "t1.dcm"), "--transcode", "always"),
        vid2dcm("convert", str(hd), "-o", str(out / "t2.dcm"), "--transcode", "always",
                "--jobs", "2"), clean,
        "issue 17: chunked transcoding; the model for N machines is in docs/scaling.md "
        "(benchmarks/chunks.py measures its parts)"))
    sent = folder / "sent.dcm"
    subprocess.run([sys.executable, "-m", "vid2dcm.apps.cli", "convert", str(big), "-o", str(sent)],
                   check=True, capture_output=True)
    received = folder / "received"
    received.mkdir()
    port = 11000 + os.getpid() % 20000
    servers.append(subprocess.Popen(["storescp", "-aet", "BENCH", "+xa", "-od", str(received),
                                     str(port)], stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))
    time.sleep(1)

    def empty_received() -> None:
        for p in received.iterdir():
            p.unlink()

    found.append(Case(
        f"C-STORE of a {sent.stat().st_size / 1e9:.1f} GB instance to storescp",
        "storescu -xn", ["storescu", "-xn", "-R", "-aec", "BENCH", "127.0.0.1", str(port),
                         str(sent)],
        vid2dcm("send", str(sent), "--to", f"BENCH@127.0.0.1:{port}", "--allow-unidentified"),
        empty_received,
        "vid2dcm negotiates first (one extra association); 16 KiB PDUs written "
        "straight to the socket (benchmarks/cstore.py separates start-up)",
        Target(ratio=1.2, rss_mb=150)))
    if has_ffmpeg:
        found.insert(1, Case("start-up: vid2dcm --version", "ffmpeg -version",
                             ["ffmpeg", "-version"],
                             [sys.executable, "-m", "vid2dcm", "--version"]))
        found.insert(3, Case("60 s 1080p30 H.264 + AAC (copy path)", "ffmpeg -c copy +faststart",
                             ["ffmpeg", "-v", "error", "-y", "-i", str(hd), "-c", "copy",
                              "-movflags", "+faststart", str(out / "f.mp4")],
                             vid2dcm("convert", str(hd), "-o", str(out / "hd.dcm")), clean))
        found.insert(6, Case(f"{gb} H.264, variable rate (phone-like gaps, copy path)",
                             "ffmpeg -c copy +faststart",
                             ["ffmpeg", "-v", "error", "-y", "-i", str(vfr), "-c", "copy",
                              "-movflags", "+faststart", str(out / "f.mp4")],
                             vid2dcm("convert", str(vfr), "-o", str(out / "vfr.dcm")), clean,
                             "ffmpeg does not fsync; +faststart rewrites its file once more"))
        found.append(Case(
            "10 s 1080p30 MJPEG -> H.264 (veryfast, CRF 20)", "ffmpeg, same x264 settings",
            ["ffmpeg", "-v", "error", "-y", "-i", str(mjpeg), "-vf",
             "scale=out_range=tv,format=yuv420p", "-c:v", "libx264", "-preset", "veryfast",
             "-crf", "20", "-profile:v", "high", "-level", "4.1", "-x264-params",
             "vbv-maxrate=50000:vbv-bufsize=62500", str(out / "t.mp4")],
            vid2dcm("convert", str(mjpeg), "-o", str(out / "t.dcm")), clean,
            "Debian ffmpeg 5.1 (x264 core 164) vs PyAV's FFmpeg 8.1 (x264 core 165)"))
        found.append(Case(
            "10 s 1080p30 -> JPEG frames", "ffmpeg, same JPEG quantiser",
            ["ffmpeg", "-v", "error", "-y", "-i", str(mjpeg), "-vf",
             "scale=out_range=pc,format=yuvj422p", "-c:v", "mjpeg", "-qmin", "3", "-qmax", "3",
             str(out / "j%04d.jpg")],
            vid2dcm("convert", str(mjpeg), "-o", str(out / "j.dcm"), "--sop", "ultrasound"),
            clean))
        found.append(Case(
            "1 s 2160p30 MJPEG -> HEVC Main L5.1 (ultrafast, CRF 23)",
            "ffmpeg, same x265 settings",
            ["ffmpeg", "-v", "error", "-y", "-i", str(uhd), "-vf",
             "scale=out_range=tv,format=yuv420p", "-c:v", "libx265", "-preset", "ultrafast",
             "-crf", "23", "-profile:v", "main", "-x265-params",
             "level-idc=5.1:vbv-maxrate=40000:vbv-bufsize=40000:log-level=error",
             str(out / "h.mp4")],
            vid2dcm("convert", str(uhd), "-o", str(out / "h.dcm")), clean,
            "Debian ffmpeg 5.1 (x265 3.5) vs PyAV's FFmpeg 8.1 (x265 4.2)"))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks.md"))
    args = parser.parse_args()
    rows = []
    servers: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="vid2dcm-bench-") as tmp:
        try:
            found = cases(Path(tmp), args.gigabytes, servers)
            rows = measure(found, args.reps)
        finally:
            for server in servers:
                server.terminate()
                server.wait(timeout=10)
    write_report(args.out, rows, args.reps)


def measure(found: list[Case], reps: int) -> list[tuple[Case, Timing, Timing]]:
    rows = []
    for case in found:
        ref, ours = Timing(), Timing()
        for _ in range(reps):
            case.before()
            run(case.reference, ref)
            case.before()
            run(case.ours, ours)
        rows.append((case, ref, ours))
        verdict = ""
        if case.target is not None:
            verdict = (f"; target {case.target.describe()}: "
                       f"{'met' if case.target.met(ref, ours) else 'NOT met'}")
        peak = f", peak {max(ours.peak_mb):.0f} MB" if ours.peak_mb else ""
        print(f"{case.name}: {case.reference_name} {ref.median:.2f} s, vid2dcm "
              f"{ours.median:.2f} s ({ours.median / ref.median:.2f}x{peak}){verdict}",
              flush=True)
    return rows


def write_report(path: Path, rows: list[tuple[Case, Timing, Timing]], reps: int) -> None:
    ffmpeg = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True,
                            check=False).stdout.split("\n")[0] if shutil.which("ffmpeg") else "-"
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`benchmarks/run.py`); do not edit by hand.",
        "",
        f"Machine: {platform.platform()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, PyAV {av.__version__} (FFmpeg "
        f"{av.library_versions['libavcodec']}), reference ffmpeg: {ffmpeg}.",
        f"Each row: {reps} rounds, reference and vid2dcm alternating; wall time includes process "
        "start. Ratio = vid2dcm median / reference median. Load average at the start: "
        f"{os.getloadavg()[0]:.1f} (other work on the machine slows both sides, not equally).",
        "",
        "| case | reference | reference s (min-max) | vid2dcm s (min-max) | ratio | vid2dcm "
        "peak RSS MB | issue-17 target | met | note |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for case, ref, ours in rows:
        peak = f"{max(ours.peak_mb):.0f}" if ours.peak_mb else "-"
        target = case.target.describe() if case.target else ""
        met = ("yes" if case.target.met(ref, ours) else "**no**") if case.target else ""
        lines.append(f"| {case.name} | {case.reference_name} | {ref.median:.2f} ({ref.span()}) "
                     f"| {ours.median:.2f} ({ours.span()}) | {ours.median / ref.median:.2f} | "
                     f"{peak} | {target} | {met} | {case.note} |")
    path.write_text("\n".join(lines) + "\n" + NOTES)


NOTES = """
## Reading the numbers

- Copy path: vid2dcm reads the input's index (an MP4 sample table; other containers are
  demuxed without decoding) and writes each DICOM file once, muxing the container straight into
  Pixel Data (the MP4 index is reserved at the front instead of moved there afterwards). That
  one pass covers constant-rate and variable-rate MP4/MOV, split outputs and outputs over
  several fragments; only raw elementary streams, Matroska/TS variable-rate inputs and
  variable-rate splits still take a spool file (one more write and read). cp reads and writes
  once and, unlike vid2dcm, does not make its copy durable unless followed by sync.
- Start-up: the copy path needs PyAV and pydicom; importing pydicom loads NumPy and its pixel
  handlers (about a third of a second of CPU on this machine), which is most of what stands
  between the 60 s copy and the 0.35 s target.
- Memory is flat: the peak is the same for a few MB and for gigabytes; about 85 MB of it is the
  import footprint (PyAV, pydicom, NumPy).
- Transcode rows compare the same x264 settings; the FFmpeg versions differ (see the note).

## Measured apart (their own scripts; not re-run by this table)

Load test, `benchmarks/load.py` (server + 2 worker processes on loopback, 8 uploads from 4
concurrent clients, each a real 5 s 640x360 VP9 -> H.264 transcode; 2026-12-03):

| job store | machine | jobs/min | API p50 | API p99 | lost | duplicated |
|---|---|---|---|---|---|---|
| SQLite (data folder) | quiet | 63.3 | 28.1 ms | 72.2 ms | 0 | 0 |
| PostgreSQL (tests/postgres.py, loopback) | quiet | 65.1 | 27.6 ms | 80.4 ms | 0 | 0 |
| SQLite (data folder) | load average 9-13 | 16.5 | 75.5 ms | 641 ms | 0 | 0 |
| PostgreSQL | load average 9-13 | 20.6 | 70.5 ms | 970 ms | 0 | 0 |

Chunked transcoding: the row above (2 chunk processes on these 2 cores: ~1x, as one x264 pass
already uses both cores); the model for N machines and its measured parts are in
docs/scaling.md (`benchmarks/chunks.py`).
"""


if __name__ == "__main__":
    main()
