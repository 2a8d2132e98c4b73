"""Patient fields at rest: AES-256-GCM (NIST SP 800-38D) with a random 96-bit nonce per value
and the row's id as associated data, so a sealed value moved to another row does not open.
The key is a 32-byte file made on first start (0600) in the data folder, or kept elsewhere
(another disk, a secrets mount) and named by path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from vid2dcm.core.errors import UsageError

PREFIX = "aesgcm:"


def load_key(path: Path, create: bool) -> bytes:
    """The key in `path`; made there first if `create` (the default key file)."""
    if not path.exists():
        if not create:
            raise UsageError(f"the store key file {path} does not exist")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(AESGCM.generate_key(bit_length=256))
    key = path.read_bytes()
    if len(key) != 32:
        raise UsageError(f"the store key file {path} must hold exactly 32 bytes")
    return key


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aes = AESGCM(key)
        self._index_key = hmac.new(key, b"vid2dcm index digest", hashlib.sha256).digest()
        """A second key derived from the first, so digests never reuse the AES key itself."""

    def digest(self, value: str) -> str:
        """HMAC-SHA256 of a value that must be found by exact match (an order's patient ID,
        accession number): equal values give equal digests; without the key, a digest tells
        nothing about the value, not even by trying likely IDs."""
        return "hmac:" + hmac.new(self._index_key, value.encode("utf-8"),
                                  hashlib.sha256).hexdigest()

    def seal(self, plain: str, row: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aes.encrypt(nonce, plain.encode("utf-8"), row.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, value: str, row: str) -> str:
        """The plain text; a value stored before sealing existed is returned as it is."""
        if not value.startswith(PREFIX):
            return value
        raw = base64.b64decode(value[len(PREFIX):])
        try:
            return self._aes.decrypt(raw[:12], raw[12:], row.encode()).decode("utf-8")
        except InvalidTag as exc:
            raise UsageError("a sealed job field does not open with this key "
                             "(wrong key file?)") from exc
