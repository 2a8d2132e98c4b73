"""Convert every video in a folder, several at a time: one process per core by default, since
demuxing, encoding and writing are each single-threaded in places."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from vid2dcm.core.errors import InputError, OutputError, Vid2DcmError
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import ConversionResult, convert
from vid2dcm.planning.plan import Request

SKIPPED_SUFFIXES = frozenset({".dcm", ".partial", ".json", ".txt", ".toml"})


@dataclass(frozen=True)
class BatchItem:
    source: Path
    result: ConversionResult | None
    error: str | None = None
    exit_code: int = 0


def video_files(folder: Path) -> list[Path]:
    """Candidate inputs: visible regular files that are not DICOM or side files."""
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                  and p.suffix.lower() not in SKIPPED_SUFFIXES)


def convert_folder(folder: Path, out_dir: Path, metadata: Metadata, options: Request,
                   overwrite: bool = False, jobs: int | None = None) -> Iterator[BatchItem]:
    """Results in input order; one file's failure never stops the others."""
    if not out_dir.is_dir():
        raise OutputError(f"output folder {out_dir} does not exist")
    files = video_files(folder)
    if not files:
        raise InputError(f"{folder}: folder holds no video files")
    workers = max(1, min(jobs or os.cpu_count() or 1, len(files) or 1))
    if workers == 1:
        for path in files:
            yield _convert_one(path, out_dir, metadata, options, overwrite)
        return
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(_convert_one, path, out_dir, metadata, options, overwrite)
                   for path in files]
        for future in futures:
            yield future.result()


def _convert_one(source: Path, out_dir: Path, metadata: Metadata, options: Request,
                 overwrite: bool) -> BatchItem:
    try:
        return BatchItem(source, convert(source, out_dir, metadata=metadata, options=options,
                                         overwrite=overwrite))
    except Vid2DcmError as exc:
        return BatchItem(source, None, str(exc), exc.exit_code)
    except Exception as exc:  # one broken file must not abort the batch
        return BatchItem(source, None, f"internal error: {type(exc).__name__}: {exc}", 1)
