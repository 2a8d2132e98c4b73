"""UIDs for new studies, series and instances, under a configurable root.

Made here rather than with pydicom.uid.generate_uid (same algorithm, same values): importing
pydicom costs a third of a second (its pixel handlers pull in NumPy), which every command that
only reads the core tables would pay at start-up (issue 17)."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid

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
        return generate_uid(self.root.rstrip(".") + ".", key)


def new_uid(root: str | None = None) -> str:
    """A fresh UID: 2.25.<UUID> by default, or <root>.<random number>."""
    if root is None:
        return f"2.25.{uuid.uuid4().int}"
    return generate_uid(root.rstrip(".") + ".")


def generate_uid(prefix: str, entropy: str | None = None) -> str:
    """prefix + a number filling the UID to 64 characters (PS3.5 9.1): the decimal SHA-512 of
    entropy when given (the same every time), else random. pydicom's generate_uid, exactly."""
    if len(prefix) > 54 or not is_valid_uid(prefix + "0"):
        raise ValueError(f"{prefix!r} is not a valid UID prefix (at most 54 characters)")
    if entropy is None:
        return f"{prefix}{secrets.randbelow(10 ** (64 - len(prefix)))}"[:64]
    digest = hashlib.sha512(entropy.encode("utf-8")).hexdigest()
    return f"{prefix}{int(digest, 16)}"[:64]
