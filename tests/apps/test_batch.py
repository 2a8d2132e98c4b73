"""A folder of recordings converted in parallel; one bad file does not stop the others."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from readback import read_back
from vid2dcm.apps.batch import convert_folder, video_files
from vid2dcm.core.metadata import Metadata
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for n in range(3):
        synthesize(folder / f"clip{n}.mp4", ClipSpec(options=HIGH, frames=10 + n))
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)
    (folder / ".hidden.mp4").write_bytes(b"x")
    (folder / "notes.txt").write_text("side file")
    return folder


def test_folder_converts_every_video_in_parallel(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    assert [p.name for p in video_files(folder)] == ["broken.mp4", "clip0.mp4", "clip1.mp4",
                                                     "clip2.mp4"]
    out = tmp_path / "out"
    out.mkdir()
    items = list(convert_folder(folder, out, Metadata(patient_id="B1"), Request(), jobs=2))
    assert [i.source.name for i in items] == ["broken.mp4", "clip0.mp4", "clip1.mp4",
                                              "clip2.mp4"]
    assert items[0].result is None and items[0].exit_code == 3
    for n, item in enumerate(items[1:]):
        assert item.result is not None
        written = item.result.files[0]
        assert written.path == out / f"clip{n}.dcm"
        assert read_back(written.path, tmp_path).dataset.NumberOfFrames == 10 + n
    assert sorted(p.name for p in out.iterdir()) == ["clip0.dcm", "clip1.dcm", "clip2.dcm"]


def test_cli_folder_reports_each_file_and_the_first_failure(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "convert", str(folder), "-o",
                           str(out), "--jobs", "2"], capture_output=True, text=True, check=False)
    assert proc.returncode == 3
    assert proc.stderr.count("vid2dcm: error: broken.mp4:") == 1
    assert len(proc.stdout.strip().splitlines()) == 3
