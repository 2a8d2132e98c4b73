"""What one de-identification did, as a typed record and as JSON (no patient data in it)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from vid2dcm.producing.filters import MaskBox


@dataclass(frozen=True)
class MaskRecord:
    """One masked region and the time range it covered, in the output's seconds."""

    source: str
    """'device table', 'ocr', 'face' or 'manual'."""
    style: str
    x: int
    y: int
    width: int
    height: int
    start_s: float
    end_s: float

    @classmethod
    def of(cls, source: str, box: MaskBox, origin: float, duration: float) -> MaskRecord:
        return cls(source, box.style, max(0, box.x), max(0, box.y), box.width, box.height,
                   round(max(0.0, box.start_s - origin), 3),
                   round(min(duration, max(0.0, box.end_s - origin)), 3))


@dataclass(frozen=True)
class Verification:
    """The OCR and face check of the output (PS3.15 E.3.1: compliance is judged by the
    result). Findings name the kind of identifier, never its value."""

    ran: bool
    passed: bool
    frames_checked: int
    identifiers_readable: tuple[str, ...] = ()
    faces_found: int = 0
    note: str = ""


@dataclass(frozen=True)
class HeaderSummary:
    removed: int
    emptied: int
    replaced: int
    cleaned: int
    new_uids: int
    kept: int
    pseudonyms: int
    private_removed: int
    attributes: tuple[str, ...]
    """'Keyword: action' for every attribute the profile touched."""
    private_kept: int = 0
    """Safe private attributes retained (Retain Safe Private, PS3.15 Table E.3.10-1)."""


@dataclass(frozen=True)
class DeidReport:
    output: str
    sop_class_uid: str
    kind: str
    """'video' or 'frames'."""
    profile: tuple[str, ...]
    """De-identification Method Code Sequence meanings written into the output."""
    pseudonym: str
    header: HeaderSummary
    audio: str
    pixels: str
    """'re-encoded with masks', 'copied (nothing to mask)' or 'not cleaned'."""
    frames_in: int
    frames_out: int
    duration_s: float
    masks: tuple[MaskRecord, ...]
    text_lines_found: int
    faces_found: int
    frames_analysed: int
    verification: Verification
    burned_in_annotation: str
    recognizable_visual_features: str
    seconds: dict[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    def write(self, path: Path) -> None:
        path.write_text(self.to_json() + "\n")
