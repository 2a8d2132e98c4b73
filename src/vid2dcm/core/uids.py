"""UIDs for new studies, series and instances, under a configurable root."""

from __future__ import annotations

import re
import uuid

from pydicom.uid import generate_uid

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    return len(value) <= 64 and bool(UID_PATTERN.match(value))


class UidSource:
    """UIDs for one conversion. With a seed they come out the same on every run, so re-running
    an interrupted job re-sends the same instances instead of duplicating them in the PACS."""

    def __init__(self, root: str | None = None, seed: str | None = None) -> None:
        self.root = root
        self.seed = seed

    def new(self, role: str) -> str:
        if self.seed is None:
            return new_uid(self.root)
        key = f"vid2dcm/{self.seed}/{role}"
        if self.root is None:
            return f"2.25.{uuid.uuid5(uuid.NAMESPACE_URL, key).int}"
        return str(generate_uid(prefix=self.root.rstrip(".") + ".", entropy_srcs=[key]))


def new_uid(root: str | None = None) -> str:
    """A fresh UID: 2.25.<UUID> by default, or <root>.<hash of random entropy>."""
    if root is None:
        return str(generate_uid(prefix=None))
    return str(generate_uid(prefix=root.rstrip(".") + "."))
