"""Watch folder: recorders drop files in a folder; each one is converted (and delivered) once it
has stopped growing, then moved to done/ or failed/ (with a .reason.txt saying why)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vid2dcm.apps.batch import SKIPPED_SUFFIXES
from vid2dcm.core.errors import DeliveryError, OutputError, Vid2DcmError
from vid2dcm.core.metadata import Metadata
from vid2dcm.delivery.destinations import Destination
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request

DONE, FAILED, DICOM = "done", "failed", "dicom"


@dataclass(frozen=True)
class WatchEvent:
    source: Path
    ok: bool
    message: str
    exit_code: int = 0
    """The command line's exit code for this failure (0 when ok)."""


Facts = tuple[int, float, float]
"""(size, modification time, when this size and time were first seen)."""


def stable_files(folder: Path, previous: dict[Path, Facts], settle_s: float,
                 now: float | None = None) -> tuple[list[Path], dict[Path, Facts]]:
    """Files whose size and modification time have not changed for settle_s seconds (and are
    not empty). A recorder or a network copy can pause between writes; settle_s must be
    longer than its pauses."""
    clock = time.monotonic() if now is None else now
    seen: dict[Path, Facts] = {}
    for path in folder.iterdir():
        if not path.is_file() or path.name.startswith(".") or \
                path.suffix.lower() in SKIPPED_SUFFIXES:
            continue
        info = path.stat()
        before = previous.get(path)
        same = before is not None and before[:2] == (info.st_size, info.st_mtime)
        seen[path] = (info.st_size, info.st_mtime, before[2] if same and before else clock)
    ready = sorted(p for p, (size, _m, since) in seen.items()
                   if size > 0 and clock - since >= settle_s)
    return ready, seen


def process(path: Path, folder: Path, metadata: Metadata, options: Request,
            destinations: list[Destination]) -> WatchEvent:
    """Convert and deliver one file; the input ends in done/ or failed/, never deleted."""
    out = folder / DICOM
    out.mkdir(exist_ok=True)
    try:
        result = convert(path, free_output(out, path), metadata=metadata, options=options)
        problems = []
        if destinations:
            from vid2dcm.delivery.send import deliver

            for dest in destinations:
                problems += [f"{dest.describe()}: {r.message}"
                             for r in deliver([f.path for f in result.files], dest) if not r.ok]
        if problems:
            return _finish(path, folder, False, "delivery failed: " + "; ".join(problems),
                           DeliveryError.exit_code)
        names = ", ".join(f.path.name for f in result.files)
        return _finish(path, folder, True, f"converted to {names}")
    except Vid2DcmError as exc:
        return _finish(path, folder, False, str(exc), exc.exit_code)


def free_output(out: Path, source: Path) -> Path:
    """A name in out that no earlier output uses: case.mp4 and case.mov dropped together
    become case.dcm and case_mov.dcm (then case_mov_2.dcm ...), never one over the other.
    A name is taken when it or any of its numbered parts (name_001.dcm, name_stream1.dcm)
    exists."""
    ext = source.suffix.lstrip(".").lower()
    stems = [source.stem, *([f"{source.stem}_{ext}"] if ext else [])]
    stems += [f"{stems[-1]}_{n}" for n in range(2, 10_000)]
    for stem in stems:
        if not (out / f"{stem}.dcm").exists() and not any(out.glob(f"{_glob_safe(stem)}_*.dcm")):
            return out / f"{stem}.dcm"
    raise OutputError(f"no free output name for {source.name} in {out}")


def _glob_safe(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in name)


def _finish(path: Path, folder: Path, ok: bool, message: str, code: int = 0) -> WatchEvent:
    target = folder / (DONE if ok else FAILED)
    target.mkdir(exist_ok=True)
    moved = target / path.name
    n = 1
    while moved.exists():  # the same name dropped again: keep both inputs
        n += 1
        moved = target / f"{path.stem}_{n}{path.suffix}"
    shutil.move(str(path), moved)
    if not ok:
        (target / (moved.name + ".reason.txt")).write_text(message + "\n", encoding="utf-8")
    return WatchEvent(moved, ok, message, code)


def watch(folder: Path, metadata: Metadata, options: Request, destinations: list[Destination],
          interval_s: float = 2.0, once: bool = False, settle_s: float = 5.0,
          report: Callable[[WatchEvent], None] = lambda _e: None) -> None:
    """Poll forever (or, with once, until every file has been handled)."""
    seen: dict[Path, Facts] = {}
    _, seen = stable_files(folder, seen, settle_s)
    while True:
        time.sleep(interval_s)
        ready, seen = stable_files(folder, seen, settle_s)
        for path in ready:
            report(process(path, folder, metadata, options, destinations))
            seen.pop(path, None)
        if once and not seen:
            return
