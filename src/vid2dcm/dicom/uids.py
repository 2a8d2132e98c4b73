"""UIDs for new studies, series and instances, under a configurable root."""

from __future__ import annotations

import re

from pydicom.uid import generate_uid

UID_PATTERN = re.compile(r"^(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*$")


def is_valid_uid(value: str) -> bool:
    return len(value) <= 64 and bool(UID_PATTERN.match(value))


def new_uid(root: str | None = None) -> str:
    """A fresh UID: 2.25.<UUID> by default, or <root>.<hash of random entropy>."""
    if root is None:
        return str(generate_uid(prefix=None))
    return str(generate_uid(prefix=root.rstrip(".") + "."))
