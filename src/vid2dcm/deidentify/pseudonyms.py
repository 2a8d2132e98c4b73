"""Consistent pseudonyms: keyed HMAC of the original identifiers with a site secret.

The same secret gives the same pseudonym, UID and date shift for the same patient on every run
and on every machine, so the parts of a split video, a study's several series and a later
export of the same patient still line up (PS3.15 E.1.1 "consistent" replacement). Without the
secret the originals cannot be recovered; with the optional encrypted lookup an authorised
holder of the lookup key can re-identify (PS3.15 E.1 note on re-identification).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime, timedelta
from pathlib import Path

from vid2dcm.core.errors import UsageError

SECRET_ENV = "VID2DCM_DEID_SECRET"
"""Where the site secret is read from when none is passed (never logged, never stored)."""

MIN_SHIFT_DAYS = 365
MAX_SHIFT_DAYS = 3650
"""Dates move back by between one and ten years, the same number of days for one patient."""


class Pseudonymizer:
    """Every replacement value derived from one secret."""

    def __init__(self, secret: str | bytes) -> None:
        key = secret.encode() if isinstance(secret, str) else secret
        if len(key) < 8:
            raise UsageError("the de-identification secret must be at least 8 characters")
        self._key = key

    @classmethod
    def from_environment(cls, secret: str | None = None) -> Pseudonymizer:
        """The given secret, else $VID2DCM_DEID_SECRET, else a fresh random one (pseudonyms
        then differ between runs, which is safe but not consistent)."""
        value = secret or os.environ.get(SECRET_ENV)
        return cls(value if value else os.urandom(32))

    def digest(self, purpose: str, value: str) -> bytes:
        return hmac.new(self._key, f"{purpose}\x1f{value}".encode(), hashlib.sha256).digest()

    def code(self, purpose: str, value: str, length: int = 10) -> str:
        """Upper-case base32 letters and digits: survives every DICOM string VR."""
        return base64.b32encode(self.digest(purpose, value)).decode()[:length]

    def patient_key(self, patient_id: str, issuer: str, name: str, birth_date: str) -> str:
        """Who the patient is, for deriving everything per patient."""
        if patient_id.strip():
            return f"id:{issuer.strip()}:{patient_id.strip()}"
        return f"name:{name.strip().upper()}:{birth_date.strip()}"

    def patient_name(self, key: str) -> str:
        return f"ANON^{self.code('name', key, 8)}"

    def patient_id(self, key: str) -> str:
        return f"ANON-{self.code('id', key, 12)}"

    def accession(self, value: str) -> str:
        return self.code("accession", value, 12) if value.strip() else ""

    def uid(self, original: str) -> str:
        """A 2.25 UID from the HMAC: the same original always maps to the same new UID, so
        references between instances (a split video's parts) survive."""
        number = int.from_bytes(self.digest("uid", original)[:16], "big")
        return f"2.25.{number}"

    def date_shift(self, key: str) -> timedelta:
        span = MAX_SHIFT_DAYS - MIN_SHIFT_DAYS
        days = MIN_SHIFT_DAYS + int.from_bytes(self.digest("date", key)[:4], "big") % span
        return timedelta(days=-days)

    def lookup_key(self) -> bytes:
        """The Fernet key of the re-identification lookup, derived from the site secret."""
        return base64.urlsafe_b64encode(self.digest("lookup", "fernet-key"))


def shift_date(value: str, shift: timedelta) -> str:
    """DA value moved by shift; an unparsable value becomes empty (never kept as is)."""
    try:
        day = datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return ""
    return (day + shift).strftime("%Y%m%d")


def shift_datetime(value: str, shift: timedelta) -> str:
    """DT value moved by shift, keeping its time of day and precision."""
    text = value.strip()
    if len(text) < 8:
        return ""
    moved = shift_date(text[:8], shift)
    return moved + text[8:] if moved else ""


def date_formats(value: str) -> list[str]:
    """The ways a DA value is commonly burned into pictures, for matching OCR text."""
    try:
        day = datetime.strptime(value.strip()[:8], "%Y%m%d").date()
    except ValueError:
        return []
    return sorted({day.strftime(f) for f in (
        "%Y%m%d", "%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%d/%m/%Y", "%Y/%m/%d", "%d-%m-%Y")})


def write_lookup(path: Path, pseudonymizer: Pseudonymizer, entries: dict[str, dict[str, str]]
                 ) -> None:
    """Add pseudonym -> original identifiers to an encrypted (Fernet, AES-128-CBC + HMAC)
    lookup; existing entries are kept. Only a holder of the site secret can read it."""
    from cryptography.fernet import Fernet, InvalidToken

    fernet = Fernet(pseudonymizer.lookup_key())
    table: dict[str, dict[str, str]] = {}
    if path.exists():
        try:
            table = json.loads(fernet.decrypt(path.read_bytes()))
        except InvalidToken as exc:
            raise UsageError(f"{path}: the lookup was written with another secret") from exc
    table.update(entries)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(fernet.encrypt(json.dumps(table, sort_keys=True).encode()))
    partial.replace(path)


def read_lookup(path: Path, pseudonymizer: Pseudonymizer) -> dict[str, dict[str, str]]:
    from cryptography.fernet import Fernet, InvalidToken

    try:
        data = json.loads(Fernet(pseudonymizer.lookup_key()).decrypt(path.read_bytes()))
    except InvalidToken as exc:
        raise UsageError(f"{path}: the lookup was written with another secret") from exc
    return {str(k): {str(a): str(b) for a, b in v.items()} for k, v in data.items()}
