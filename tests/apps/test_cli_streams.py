"""--frame-rate (raw elementary streams carry no timestamps) and --stream N (one video stream
of several), the command-line side of planning.plan.Request.frame_rate / .stream. Every file
written is read back (pydicom, dcmdump, dciodvfy, decode == Number of Frames)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from readback import read_back
from vid2dcm.apps.report import ProbeReport
from vid2dcm.producing.synth import ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}


def cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *map(str, args)],
                          capture_output=True, text=True, timeout=180, check=False)


def ffmpeg(*args: object) -> None:
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    work = tmp_path_factory.mktemp("streams")
    one = synthesize(work / "one.mp4", ClipSpec(width=64, height=48, frames=12, options=HIGH))
    other = synthesize(work / "other.mp4", ClipSpec(width=96, height=64, frames=8,
                                                    options=HIGH))
    ffmpeg("-i", one, "-c:v", "copy", "-bsf:v", "h264_mp4toannexb", "-an", work / "raw.h264")
    ffmpeg("-i", one, "-i", other, "-map", "0:v", "-map", "1:v", "-c", "copy", work / "two.mp4")
    return {"one": one, "raw": work / "raw.h264", "two": work / "two.mp4"}


def test_frame_rate_times_a_raw_stream(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "raw.dcm"
    proc = cli("convert", clips["raw"], "-o", out, "--frame-rate", "10")
    assert proc.returncode == 0, proc.stderr
    ds = read_back(out, tmp_path).dataset
    assert int(ds.NumberOfFrames) == 12
    assert float(ds.FrameTime) == pytest.approx(100.0)
    assert int(ds.CineRate) == 10
    probed = cli("probe", clips["raw"], "--frame-rate", "30000/1001", "--json")
    assert probed.returncode == 0, probed.stderr
    rate = ProbeReport.model_validate_json(probed.stdout).model_dump()
    assert "29.97" in json.dumps(rate)


def test_stream_picks_one_video_stream(clips: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "second.dcm"
    proc = cli("convert", clips["two"], "-o", out, "--stream", "1")
    assert proc.returncode == 0, proc.stderr
    ds = read_back(out, tmp_path).dataset
    assert (int(ds.Columns), int(ds.Rows), int(ds.NumberOfFrames)) == (96, 64, 8)
    assert sorted(p.name for p in tmp_path.glob("*.dcm")) == ["second.dcm"]


@pytest.mark.parametrize(("args", "code", "says"), [
    (("--frame-rate", "fast"), 2, "--frame-rate: 'fast' is not a frame rate"),
    (("--frame-rate", "0"), 2, "--frame-rate: '0' is not a frame rate"),
    (("--stream", "7"), 3, "stream #7 is not a video stream"),
])
def test_bad_values_are_one_line(clips: dict[str, Path], tmp_path: Path,
                                 args: tuple[str, ...], code: int, says: str) -> None:
    proc = cli("convert", clips["one"], "-o", tmp_path / "x.dcm", *args)
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and says in lines[0], proc.stderr
    assert list(tmp_path.iterdir()) == []
