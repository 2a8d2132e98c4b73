"""`make bench`: every case side by side with its physical reference, in one run.

Each case runs its commands alternately (reference, vid2dcm, reference, ...) for --reps rounds;
the report gives the median and min-max wall time, the ratio of medians, and vid2dcm's peak RSS
(VmHWM of the process). Inputs are generated here. Results: docs/benchmarks.md.

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
class Case:
    name: str
    reference_name: str
    reference: list[str]
    ours: list[str]
    before: Callable[[], None] = lambda: None
    """Run before every command (remove outputs, start servers...)."""
    note: str = ""


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


def gigabyte_input(folder: Path, gigabytes: float) -> Path:
    seed = synthesize(folder / "seed.mp4", ClipSpec(
        width=1920, height=1080, frames=6, noise=True, rate=Fraction(25),
        options={"preset": "superfast", "profile": "high", "level": "4.1", "g": "1", "qp": "4"}))
    big = folder / "big.mp4"
    with av.open(str(seed)) as src, av.open(str(big), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        packets = [bytes(p) for p in src.demux(vin) if p.size]
        written = frame = 0
        while written < gigabytes * 1e9:
            for data in packets:
                packet = av.Packet(data)
                packet.stream, packet.time_base = vout, Fraction(1, 25)
                packet.pts = packet.dts = frame
                packet.duration, packet.is_keyframe = 1, True
                out.mux(packet)
                frame += 1
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
    found = [
        Case("60 s 1080p30 H.264 + AAC (copy path)", "cp", ["cp", str(hd), str(out / "c.mp4")],
             vid2dcm("convert", str(hd), "-o", str(out / "hd.dcm")), clean),
        Case(f"{big.stat().st_size / 1e9:.1f} GB H.264 (copy path)", "cp + sync",
             ["sh", "-c", f"cp {big} {out / 'c.mp4'} && sync {out / 'c.mp4'}"],
             vid2dcm("convert", str(big), "-o", str(out / "big.dcm")), clean,
             "vid2dcm also fsyncs its output"),
    ]
    piece = str(300_000_000)
    found += [
        Case(f"{big.stat().st_size / 1e9:.1f} GB H.264 split into instances of 300 MB",
             "cp + sync", ["sh", "-c", f"cp {big} {out / 'c.mp4'} && sync {out / 'c.mp4'}"],
             vid2dcm("convert", str(big), "-o", str(out / "split.dcm"), "--max-item-bytes",
                     piece), clean, "the spool route: one more write and read"),
        Case(f"{big.stat().st_size / 1e9:.1f} GB H.264 --fragmentable (300 MB fragments)",
             "cp + sync", ["sh", "-c", f"cp {big} {out / 'c.mp4'} && sync {out / 'c.mp4'}"],
             vid2dcm("convert", str(big), "-o", str(out / "frag.dcm"), "--fragmentable",
                     "--max-item-bytes", piece), clean),
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
        "straight to the socket (benchmarks/cstore.py separates start-up)"))
    if has_ffmpeg:
        found.insert(1, Case("60 s 1080p30 H.264 + AAC (copy path)", "ffmpeg -c copy +faststart",
                             ["ffmpeg", "-v", "error", "-y", "-i", str(hd), "-c", "copy",
                              "-movflags", "+faststart", str(out / "f.mp4")],
                             vid2dcm("convert", str(hd), "-o", str(out / "hd.dcm")), clean))
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
        print(f"{case.name}: {case.reference_name} {ref.median:.2f} s, vid2dcm "
              f"{ours.median:.2f} s ({ours.median / ref.median:.2f}x)", flush=True)
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
        "start. Ratio = vid2dcm median / reference median.",
        "",
        "| case | reference | reference s (min-max) | vid2dcm s (min-max) | ratio | vid2dcm "
        "peak RSS MB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for case, ref, ours in rows:
        peak = f"{max(ours.peak_mb):.0f}" if ours.peak_mb else "-"
        lines.append(f"| {case.name} | {case.reference_name} | {ref.median:.2f} ({ref.span()}) "
                     f"| {ours.median:.2f} ({ours.span()}) | {ours.median / ref.median:.2f} | "
                     f"{peak} | {case.note} |")
    path.write_text("\n".join(lines) + "\n" + NOTES)


NOTES = """
## Reading the numbers

- Copy path: vid2dcm reads the input twice (probe for the exact frame count, then the packet
  copy) and writes the DICOM file once, muxing the container straight into Pixel Data (the MP4
  index is reserved at the front instead of moved there afterwards). cp reads and writes once.
  Variable-frame-rate, raw and split inputs still take a spool file (one more write and read).
- Memory is flat: the peak is the same for a few MB and for gigabytes; about 85 MB of it is the
  import footprint (PyAV, pydicom, NumPy).
- Transcode rows compare the same x264 settings; the FFmpeg versions differ (see the note).
"""


if __name__ == "__main__":
    main()
