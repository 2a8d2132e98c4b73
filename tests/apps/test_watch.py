"""Watch folder: finished files are converted and moved to done/, bad ones to failed/ with a
reason, and a file still being written is left alone until it stops growing."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from readback import read_back
from vid2dcm.apps.watch import WatchEvent, watch
from vid2dcm.core.metadata import Metadata
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}


def test_dropped_files_end_in_done_or_failed(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    for n in range(2):
        synthesize(folder / f"rec{n}.mp4", ClipSpec(options=HIGH, frames=10))
    (folder / "junk.mp4").write_bytes(b"definitely not video" * 50)
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "watch", str(folder), "--once",
                           "--interval", "0.2", "--settle", "0.5", "--sop", "endoscopic"],
                          capture_output=True, text=True, check=False, timeout=120)
    assert proc.returncode == 3, proc.stderr  # --once: the first failure's exit code
    assert sorted(p.name for p in (folder / "done").iterdir()) == ["rec0.mp4", "rec1.mp4"]
    assert sorted(p.name for p in (folder / "failed").iterdir()) == ["junk.mp4",
                                                                     "junk.mp4.reason.txt"]
    assert "not a readable video" in (folder / "failed" / "junk.mp4.reason.txt").read_text()
    for name in ("rec0.dcm", "rec1.dcm"):
        assert read_back(folder / "dicom" / name, tmp_path).dataset.Modality == "ES"
    assert "junk.mp4: FAILED" in proc.stderr


def test_a_file_still_growing_is_not_taken(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    clip = synthesize(tmp_path / "whole.mp4", ClipSpec(options=HIGH, frames=30))
    data = clip.read_bytes()
    target = folder / "growing.mp4"
    finished: list[float] = []

    def record_slowly() -> None:
        step = len(data) // 6 + 1
        with target.open("wb") as out:
            for start in range(0, len(data), step):
                out.write(data[start:start + step])
                out.flush()
                time.sleep(0.3)
        finished.append(time.monotonic())

    writer = threading.Thread(target=record_slowly)
    writer.start()
    events: list[tuple[float, WatchEvent]] = []
    watch(folder, Metadata(), Request(), [], interval_s=0.2, once=True, settle_s=1.5,
          report=lambda e: events.append((time.monotonic(), e)))
    writer.join()
    assert len(events) == 1
    taken_at, event = events[0]
    assert event.ok, event.message
    assert taken_at > finished[0], "the file was taken while still being written"
    assert int(read_back(folder / "dicom" / "growing.dcm", tmp_path).dataset.NumberOfFrames) == 30


def test_stable_means_unchanged_for_the_settle_time(tmp_path: Path) -> None:
    from vid2dcm.apps.watch import stable_files

    f = tmp_path / "a.mp4"
    f.write_bytes(b"x" * 10)
    ready, seen = stable_files(tmp_path, {}, settle_s=5, now=100.0)
    assert ready == []
    ready, seen = stable_files(tmp_path, seen, settle_s=5, now=104.0)
    assert ready == []
    ready, seen = stable_files(tmp_path, seen, settle_s=5, now=105.0)
    assert ready == [f]
    with f.open("ab") as out:
        out.write(b"more")
    ready, _ = stable_files(tmp_path, seen, settle_s=5, now=200.0)
    assert ready == [], "a change restarts the clock"
