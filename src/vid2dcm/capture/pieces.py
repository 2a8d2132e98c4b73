"""The records a recording leaves on disk: one sidecar per piece and per snapshot, and the
session manifest. They are what --recover reads after a crash, so they are written at every
state change (atomically: write a temporary file, then rename)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.core.metadata import Metadata

TimeMethod = Literal["RTCP", "PDT", "arrival", "none"]
"""RTCP: the sender's clock (RTCP Sender Reports -> start_time_realtime); PDT: the sender's
clock from HLS EXT-X-PROGRAM-DATE-TIME; arrival: the receiver's wall clock, earliest arrival
relative to the media clock, minus a set latency."""


class PieceRecord(BaseModel):
    """One independently playable MPEG-TS piece: it starts at a video key frame."""

    model_config = ConfigDict(extra="forbid")
    index: int
    file: str
    source: str
    connection: int
    """Which connection (1 = first): a new connection always starts a new piece."""
    start_wall: float | None = None
    """Unix time of the first frame (sender or receiver clock, see time_method)."""
    time_method: TimeMethod = "none"
    frames: int = 0
    duration_s: float = 0.0
    bytes: int = 0
    pre_record_s: float = 0.0
    opened_because: str = "start"
    closed_because: str | None = None
    """None while open: a piece left open is what a crash leaves behind."""
    transcoded: bool = False
    arrival_span_s: float | None = None
    media_span_s: float | None = None
    """First to last video packet on the receiver's clock and on the media clock: their
    difference over time is the drift between sender and receiver."""


class SnapshotRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    index: int
    file: str
    source: str
    wall: float
    piece: int | None
    """The piece being recorded when the still was taken (its DICOM instance is referenced)."""


class SourceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    display: str
    """URL without credentials."""
    series_instance_uid: str
    series_number: int
    latency_s: float = 0.0


class SessionManifest(BaseModel):
    """Everything needed to turn a (possibly interrupted) recording into DICOM later."""

    model_config = ConfigDict(extra="forbid")
    version: int = 1
    started: datetime
    study_instance_uid: str
    metadata: Metadata
    sop: str = "photographic"
    sources: list[SourceRecord] = Field(default_factory=list)
    stopped: datetime | None = None
    stop_reason: str | None = None
    finalized: bool = False


def write_json(path: Path, model: BaseModel) -> None:
    """Atomic replace, so a crash leaves either the old or the new record, never half."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(model.model_dump_json(indent=1), encoding="utf-8")
    os.replace(tmp, path)


def load_pieces(folder: Path) -> list[PieceRecord]:
    return sorted((PieceRecord.model_validate_json(p.read_text(encoding="utf-8"))
                   for p in folder.glob("piece-*.json")), key=lambda r: r.index)


def load_snapshots(folder: Path) -> list[SnapshotRecord]:
    return sorted((SnapshotRecord.model_validate_json(p.read_text(encoding="utf-8"))
                   for p in folder.glob("snap-*.json")), key=lambda r: r.index)
