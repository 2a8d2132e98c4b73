"""Turn a recording folder (session.json + one folder of pieces per source) into DICOM.

Each source is one series; each piece one or more instances numbered on through the series,
each referring to the previous part (Temporal Predecessor). The pieces go through the same
pipeline.convert as files, so copying, transcoding, exact frame counts and timing come from
the planner, not from the recorder. Acquisition DateTime of every instance is the common
time base of its piece's first frame (see session.py). A piece a crash left open is first
rewritten without its possibly torn tail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import av

from vid2dcm.capture.pieces import (
    PieceRecord,
    SessionManifest,
    SourceRecord,
    load_pieces,
    load_snapshots,
    write_json,
)
from vid2dcm.capture.stills import still_class, write_still
from vid2dcm.core.errors import InputError, NotStorableError, OutputError
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.uids import UidSource
from vid2dcm.pipeline import WrittenFile, convert
from vid2dcm.planning.plan import Request

log = logging.getLogger(__name__)
MANIFEST = "session.json"


@dataclass(frozen=True)
class SyncEntry:
    """One source's place on the common time base."""

    source: str
    method: str
    """RTCP (sender clock), arrival (receiver clock minus latency) or none."""
    first_frame: datetime | None
    offset_s: float | None
    """Start of this source's first piece minus the earliest source's start."""
    drift_ms_per_min: float | None
    """Receiver-clock span minus media-clock span per minute of recording."""


@dataclass(frozen=True)
class Still:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class FinalizedSource:
    name: str
    series_instance_uid: str
    files: tuple[WrittenFile, ...]
    stills: tuple[Still, ...]
    pieces: int
    skipped: tuple[str, ...]

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)


@dataclass(frozen=True)
class FinalizeResult:
    study_instance_uid: str
    sources: tuple[FinalizedSource, ...]
    sync: tuple[SyncEntry, ...]
    stop_reason: str | None
    folder: Path
    """The recording folder (pieces and manifest) the files were made from."""

    @property
    def files(self) -> tuple[Path, ...]:
        return tuple(p for s in self.sources
                     for p in (*(f.path for f in s.files), *(still.path for still in s.stills)))


def finalize(folder: Path, out_dir: Path, *, overwrite: bool = False) -> FinalizeResult:
    """folder holds session.json; DICOM files land in out_dir as <source>-NNN.dcm."""
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        raise InputError(f"{folder} is not a recording folder (no {MANIFEST})")
    try:
        manifest = SessionManifest.model_validate_json(manifest_path.read_text("utf-8"))
    except ValueError as exc:
        raise InputError(f"{manifest_path}: not a vid2dcm recording manifest") from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for source in manifest.sources:
        results.append(_finalize_source(folder / source.name, out_dir, manifest, source,
                                        overwrite))
    if not any(r.files for r in results):
        raise OutputError("nothing was recorded: no source delivered a key frame")
    manifest.finalized = True
    write_json(manifest_path, manifest)
    return FinalizeResult(manifest.study_instance_uid, tuple(results),
                          sync_report(folder, manifest), manifest.stop_reason, folder)


def _finalize_source(folder: Path, out_dir: Path, manifest: SessionManifest,
                     source: SourceRecord, overwrite: bool) -> FinalizedSource:
    sop = SopChoice(manifest.sop)
    files: list[WrittenFile] = []
    skipped: list[str] = []
    by_piece: dict[int, WrittenFile] = {}
    pieces = load_pieces(folder) if folder.is_dir() else []
    number = 1
    for piece in pieces:
        path = folder / piece.file
        if not path.is_file() or path.stat().st_size == 0:
            skipped.append(f"{piece.file}: empty (the recorder stopped as it opened)")
            continue
        if piece.closed_because is None:
            try:
                path = repair(path)
            except InputError as exc:
                skipped.append(f"{piece.file}: {exc}")
                continue
        if piece.frames == 0 and _frames(path) == 0:
            skipped.append(f"{piece.file}: empty")
            continue
        meta = manifest.metadata.model_copy(update={
            "study_instance_uid": manifest.study_instance_uid,
            "series_instance_uid": source.series_instance_uid,
            "series_number": source.series_number,
            "series_description": source.name,
            "station_name": manifest.metadata.station_name or source.name[:16],
            "acquisition_datetime": _local(piece.start_wall),
            "uid_seed": f"{manifest.metadata.uid_seed or source.series_instance_uid}/"
                        f"{piece.index}",
        })
        target = out_dir / f"{source.name}-{number:03d}.dcm"
        try:
            result = convert(path, target, metadata=meta, options=Request(sop=sop),
                             overwrite=overwrite, first_instance=number,
                             predecessor=files[-1].sop_instance_uid if files else None)
        except (InputError, NotStorableError) as exc:  # this piece only; others go on
            skipped.append(f"{piece.file}: {exc}")
            log.warning("%s: %s not converted: %s", source.name, piece.file, exc)
            continue
        files.extend(result.files)
        by_piece[piece.index] = result.files[0]
        number += len(result.files)
    stills = _stills(folder, out_dir, manifest, source, sop, by_piece, overwrite)
    return FinalizedSource(source.name, source.series_instance_uid, tuple(files),
                           tuple(stills), len(pieces), tuple(skipped))


def _stills(folder: Path, out_dir: Path, manifest: SessionManifest, source: SourceRecord,
            sop: SopChoice, by_piece: dict[int, WrittenFile], overwrite: bool
            ) -> list[Still]:
    """Stills get their own series (single-frame and multi-frame images are not mixed in a
    series) in the same study; each refers to the video it was taken from."""
    snaps = load_snapshots(folder) if folder.is_dir() else []
    if not snaps:
        return []
    uids = UidSource(manifest.metadata.uid_root, f"{source.series_instance_uid}/stills")
    series_uid = uids.new("series")
    written = []
    for n, snap in enumerate(snaps, 1):
        target = out_dir / f"{source.name}-still-{n:03d}.dcm"
        if target.exists() and not overwrite:
            raise OutputError(f"{target} already exists (use --overwrite to replace it)")
        video = by_piece.get(snap.piece) if snap.piece is not None else None
        meta = manifest.metadata.model_copy(update={
            "series_number": source.series_number + 100, "series_description": source.name,
            "station_name": manifest.metadata.station_name or source.name[:16]})
        uid = uids.new(f"still-{snap.index}")
        path = write_still(
            folder / snap.file, target, metadata=meta, sop=sop,
            study_uid=manifest.study_instance_uid, series_uid=series_uid,
            sop_instance_uid=uid, instance_number=n,
            taken_at=_local(snap.wall) or datetime.now(),
            video=(video.sop_class_uid, video.sop_instance_uid) if video else None)
        written.append(Still(path, still_class(sop), uid, series_uid))
    return written


def repair(path: Path) -> Path:
    """Rewrite a piece a crash left open: every whole packet except the last video packet,
    which may have been cut mid-write. Returns the repaired file (the original is kept)."""
    fixed = path.with_name(path.stem + ".repaired.ts")
    packets: list[Any] = []
    try:
        with av.open(str(path)) as src:
            streams = [s for s in src.streams if s.type in ("video", "audio")]
            with av.open(str(fixed), "w", format="mpegts") as dst:
                outs = {s.index: dst.add_stream_from_template(s) for s in streams}
                for packet in src.demux(streams):
                    if packet.dts is None or packet.is_corrupt:
                        continue
                    packets.append(packet)
                last_video = max((i for i, p in enumerate(packets)
                                  if p.stream.type == "video"), default=-1)
                for i, packet in enumerate(packets):
                    if i == last_video:
                        continue
                    packet.stream = outs[packet.stream.index]
                    dst.mux(packet)
    except av.FFmpegError as exc:
        raise InputError(f"{path.name}: cannot be repaired: {exc}") from exc
    return fixed


def _frames(path: Path) -> int:
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return 0
            return sum(1 for p in c.demux(c.streams.video[0]) if p.size)
    except av.FFmpegError:
        return 0


def _local(wall: float | None) -> datetime | None:
    """Acquisition DateTime is written without an offset, i.e. in local time."""
    return datetime.fromtimestamp(wall) if wall is not None else None


def sync_report(folder: Path, manifest: SessionManifest) -> tuple[SyncEntry, ...]:
    firsts: dict[str, PieceRecord | None] = {}
    drift: dict[str, float | None] = {}
    for source in manifest.sources:
        pieces = [p for p in load_pieces(folder / source.name)
                  if p.start_wall is not None] if (folder / source.name).is_dir() else []
        firsts[source.name] = pieces[0] if pieces else None
        spans = [(p.arrival_span_s, p.media_span_s) for p in pieces
                 if p.arrival_span_s is not None and p.media_span_s]
        media = sum(d for _, d in spans)
        drift[source.name] = (round((sum(a for a, _ in spans) - media) / media * 60 * 1000, 2)
                              if media > 10 else None)
    starts = [p.start_wall for p in firsts.values() if p is not None and p.start_wall]
    origin = min(starts) if starts else None
    entries = []
    for name, first in firsts.items():
        start = first.start_wall if first is not None else None
        entries.append(SyncEntry(
            name, first.time_method if first is not None else "none", _local(start),
            round(start - origin, 6) if start is not None and origin is not None else None,
            drift[name]))
    return tuple(entries)
