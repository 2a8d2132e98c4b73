"""`vid2dcm record --recover DIR`: finish a recording whose recorder died (SIGKILL, power cut).

The pieces are MPEG-TS flushed packet by packet and every piece has a sidecar written when it
opened, so what is on disk is enough: pieces left open are rewritten without their torn tail
(finalize.repair) and everything becomes DICOM as if the recording had stopped normally.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from vid2dcm.capture.finalize import MANIFEST, FinalizeResult, finalize
from vid2dcm.capture.pieces import SessionManifest, write_json
from vid2dcm.core.errors import InputError, UsageError

RAW_FOLDER = "recording"
"""Under the -o folder of `vid2dcm record`: the pieces and manifest while recording (the
command line repeats this name so it can start without importing PyAV)."""


def recording_folder(path: Path) -> Path:
    """DIR may be the -o folder or the recording folder inside it."""
    for candidate in (path, path / RAW_FOLDER):
        if (candidate / MANIFEST).is_file():
            return candidate
    if not path.exists():
        raise InputError(f"{path} does not exist")
    raise InputError(f"{path} holds no recording ({MANIFEST} not found)")


def recover(path: Path, out_dir: Path | None = None, *, overwrite: bool = False
            ) -> FinalizeResult:
    folder = recording_folder(path)
    manifest = SessionManifest.model_validate_json((folder / MANIFEST).read_text("utf-8"))
    if manifest.finalized and not overwrite:
        raise UsageError(f"{folder} was already turned into DICOM (use --overwrite to redo)")
    if manifest.stopped is None:
        manifest.stopped = datetime.now()
        manifest.stop_reason = "recovered after the recorder stopped unexpectedly"
        write_json(folder / MANIFEST, manifest)
    target = out_dir or (folder.parent if folder.name == RAW_FOLDER else folder)
    return finalize(folder, target, overwrite=overwrite)
