"""Receipt: what happened to one file at one destination (the record every transport returns)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Receipt:
    source: Path
    sent: Path | None
    sop_instance_uid: str | None
    transfer_syntax_uid: str | None
    kind: str
    ok: bool
    message: str
    attempts: int = 0
    committed: bool | None = None
    """Storage Commitment answer, when the destination asks for one (None: no answer)."""
