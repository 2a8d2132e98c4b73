"""Memory stays flat: a ~1 GB stream converts (and extracts) within 200 MB peak RSS.

Not a timing test. The stream is made fast by muxing a handful of large intra-coded noise frames
over and over (each is an IDR picture, so the repeated stream is valid H.264). One picture per
second keeps the bit rate (~30 Mbit/s) within H.264 Level 4.1's MaxBR, so the planner copies it;
at 25 fps the same pictures make ~700 Mbit/s, which the level check rightly sends to transcoding.
"""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pydicom
import pytest

from dcmtk_peers import running_storescp
from vid2dcm.producing.synth import ClipSpec, synthesize
from vid2dcm.reading.reader import open_video_object

TARGET_BYTES = 1_000_000_000
RSS_LIMIT_MB = 200
SEND_RSS_LIMIT_MB = 150
"""The bound issue 17 sets for 1 GB; measured 90 MB (this venv) to 105 MB (a fresh CI venv),
most of it the imported pydicom/numpy/pynetdicom stack, not the file."""

RUN_MEASURED = """
import sys
from vid2dcm.apps.cli import app
try:
    app(sys.argv[1:])
except SystemExit as exc:
    code = exc.code or 0
else:
    code = 0
# VmHWM belongs to this exec's address space; ru_maxrss would inherit the parent's peak
hwm_kb = next(int(line.split()[1]) for line in open("/proc/self/status")
              if line.startswith("VmHWM:"))
print(f"PEAK_RSS_MB={hwm_kb / 1024:.1f}", file=sys.stderr)
sys.exit(code)
"""


def _gigabyte_stream(folder: Path) -> tuple[Path, int]:
    seed = synthesize(folder / "seed.mp4", ClipSpec(
        width=1920, height=1080, frames=6, noise=True, rate=Fraction(25),
        options={"preset": "superfast", "profile": "high", "level": "4.1", "g": "1",
                 "qp": "4"}))
    big = folder / "big.mkv"
    frames = 0
    with av.open(str(seed)) as src, av.open(str(big), "w") as out:
        vin = src.streams.video[0]
        vout = out.add_stream_from_template(vin)
        packets = [(bytes(p), p.duration) for p in src.demux(vin) if p.size]
        written = 0
        while written < TARGET_BYTES:
            for data, _duration in packets:
                packet = av.Packet(data)
                packet.stream = vout
                packet.time_base = Fraction(1, 1)
                packet.pts = packet.dts = frames
                packet.duration = 1
                packet.is_keyframe = True
                out.mux(packet)
                frames += 1
                written += len(data)
    return big, frames


def _measured(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    proc = subprocess.run([sys.executable, "-c", RUN_MEASURED, *args], capture_output=True,
                          text=True, check=False)
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_RSS_MB=")]
    assert peak, proc.stderr
    return proc, float(peak[-1].split("=")[1])


@pytest.mark.slow
def test_gigabyte_conversion_keeps_memory_flat(tmp_path: Path) -> None:
    source, frames = _gigabyte_stream(tmp_path)
    assert source.stat().st_size > TARGET_BYTES
    out = tmp_path / "big.dcm"
    proc, peak = _measured(["convert", str(source), "-o", str(out)])
    assert proc.returncode == 0, proc.stderr
    print(f"convert of {source.stat().st_size} bytes: peak RSS {peak:.0f} MB")
    assert peak < RSS_LIMIT_MB
    assert out.stat().st_size > TARGET_BYTES
    source.unlink()

    with running_storescp(tmp_path / "received") as peer:
        proc, peak = _measured(["send", str(out), "--to", f"{peer.aet}@127.0.0.1:{peer.port}",
                                "--allow-unidentified"])
        assert proc.returncode == 0, proc.stderr
        print(f"C-STORE of {out.stat().st_size} bytes: peak RSS {peak:.0f} MB")
        assert peak < SEND_RSS_LIMIT_MB
        (received,) = peer.received()
        sent, got = open_video_object(out), open_video_object(received)
        assert got.dataset.SOPInstanceUID == sent.dataset.SOPInstanceUID
        assert got.bitstream_length == sent.bitstream_length
        received.unlink()

    extracted = tmp_path / "back.mp4"
    proc, peak = _measured(["extract", str(out), "-o", str(extracted)])
    assert proc.returncode == 0, proc.stderr
    print(f"extract: peak RSS {peak:.0f} MB")
    assert peak < RSS_LIMIT_MB
    with av.open(str(extracted)) as container:
        stream = container.streams.video[0]
        assert sum(1 for p in container.demux(stream) if p.size) == frames


@pytest.mark.slow
def test_frame_by_frame_memory_does_not_grow_with_frames(tmp_path: Path) -> None:
    """1080p frames stored as JPEG are streamed through a spool, not collected: 600 frames
    peak no higher than 150 (measured: about 190 MB for both, most of it decoder threads)."""
    peaks = {}
    for frames in (150, 600):
        source = synthesize(tmp_path / f"{frames}.mp4", ClipSpec(
            width=1920, height=1080, frames=frames, rate=Fraction(30),
            options={"preset": "superfast", "profile": "high"}))
        out = tmp_path / f"{frames}.dcm"
        proc, peaks[frames] = _measured(["convert", str(source), "-o", str(out),
                                         "--sop", "ultrasound"])
        assert proc.returncode == 0, proc.stderr
        assert int(pydicom.dcmread(out, stop_before_pixels=True).NumberOfFrames) == frames
    print(f"1080p frames as JPEG: peak RSS {peaks}")
    assert peaks[600] < peaks[150] + 20
    assert peaks[600] < 256
