"""Who and what the video is about: the validated record that fills the DICOM header.

Unknown keys are errors, so a typo in a metadata file never silently drops a patient ID.
"""

from __future__ import annotations

import difflib
import json
from datetime import date, datetime, time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vid2dcm.core.dates import read_date, read_datetime, read_time
from vid2dcm.core.errors import UsageError
from vid2dcm.core.uids import is_valid_uid


class CodedConcept(BaseModel):
    """A Code Sequence item: (value, scheme, meaning)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(default="SCT", min_length=1, max_length=16)
    meaning: str = Field(min_length=1, max_length=64)


BODY_STRUCTURE = CodedConcept(value="123037004", scheme="SCT", meaning="Body structure")
"""SNOMED's root anatomy concept: true of every video when the caller names no region."""


def _no_backslash(value: str) -> str:
    if "\\" in value:
        raise ValueError("must not contain a backslash (DICOM value separator)")
    return value


class Metadata(BaseModel):
    """Patient, study, series and equipment facts. Every field is optional."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    patient_name: str = Field(default="", max_length=64 * 5)
    patient_id: str = Field(default="", max_length=64)
    patient_birth_date: date | None = None
    patient_sex: Literal["M", "F", "O"] | None = None
    accession_number: str = Field(default="", max_length=16)
    study_instance_uid: str | None = None
    study_id: str = Field(default="", max_length=16)
    study_description: str = Field(default="", max_length=64)
    study_date: date | None = None
    study_time: time | None = None
    referring_physician_name: str = Field(default="", max_length=64 * 5)
    series_instance_uid: str | None = None
    series_number: int = Field(default=1, ge=0, le=2**31 - 1)
    series_description: str = Field(default="", max_length=64)
    anatomic_region: CodedConcept = BODY_STRUCTURE
    image_laterality: Literal["R", "L", "U", "B"] = "U"
    """U (unpaired) unless told otherwise; set R, L or B for paired structures."""
    manufacturer: str = Field(default="", max_length=64)
    manufacturer_model_name: str = Field(default="", max_length=64)
    institution_name: str = Field(default="", max_length=64)
    operators_name: str = Field(default="", max_length=64 * 5)
    acquisition_datetime: datetime | None = None
    burned_in_annotation: Literal["YES", "NO"] | None = None
    requested_procedure_id: str = Field(default="", max_length=16)
    requested_procedure_description: str = Field(default="", max_length=64)
    scheduled_procedure_step_id: str = Field(default="", max_length=16)
    scheduled_procedure_step_description: str = Field(default="", max_length=64)
    """The order (from a worklist): written as the Request Attributes Sequence."""
    uid_root: str | None = Field(default=None, max_length=40)
    uid_seed: str | None = Field(default=None, max_length=128)
    """Makes new UIDs repeatable (e.g. a job id): a re-run writes the same instances."""

    @field_validator("study_instance_uid", "series_instance_uid")
    @classmethod
    def _uid(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_uid(value):
            raise ValueError("is not a valid DICOM UID (digits and dots, at most 64 characters)")
        return value

    @field_validator("uid_root")
    @classmethod
    def _uid_root(cls, value: str | None) -> str | None:
        if value is not None and not is_valid_uid(value.rstrip(".")):
            raise ValueError("is not a valid UID root (digits and dots, at most 40 characters)")
        return value

    @field_validator("patient_birth_date", "study_date", mode="before")
    @classmethod
    def _date(cls, value: object) -> object:
        """DICOM DA (19700131) or ISO (1970-01-31): pydantic alone reads 19700131 as a Unix
        time and refuses it with a message about datetimes."""
        return read_date(value) if isinstance(value, str) else value

    @field_validator("study_time", mode="before")
    @classmethod
    def _time(cls, value: object) -> object:
        return read_time(value) if isinstance(value, str) else value

    @field_validator("acquisition_datetime", mode="before")
    @classmethod
    def _datetime(cls, value: object) -> object:
        return read_datetime(value) if isinstance(value, str) else value

    @field_validator("patient_id", "accession_number", "study_id", "study_description",
                     "series_description", "manufacturer", "manufacturer_model_name",
                     "institution_name")
    @classmethod
    def _single_value(cls, value: str) -> str:
        return _no_backslash(value)


class MetadataError(UsageError):
    """A metadata value or key was refused; field names it, so a caller that took the value
    from an option can name the option instead."""

    def __init__(self, message: str, field: str, reason: str) -> None:
        super().__init__(message)
        self.field = field
        self.reason = reason


def describe_error(exc: ValidationError) -> tuple[str, str]:
    """(field, reason) of the first problem, in words that name a good value; patient values
    are never repeated (they would end up in logs)."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "metadata"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(first["loc"][-1]), Metadata.model_fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return where, f"unknown key{hint}"
    reason = str(first["msg"]).removeprefix("Value error, ")
    value = first.get("input")
    if isinstance(value, str | int | float) and not where.startswith("patient"):
        reason = f"{value!r} {reason}" if first["type"] == "value_error" else \
            f"{reason} (got {value!r})"
    return where, reason


def load_metadata(path: Path | None, base: dict[str, object] | None = None,
                  **overrides: object) -> Metadata:
    """base (e.g. a worklist entry), then a JSON metadata file (if any), then command-line
    overrides on top."""
    data: dict[str, object] = dict(base or {})
    if path is not None:
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise UsageError(f"metadata file {path} does not exist") from exc
        except (OSError, ValueError) as exc:
            raise UsageError(f"metadata file {path} is not valid JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise UsageError(f"metadata file {path} must hold a JSON object")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Metadata.model_validate(data)
    except ValidationError as exc:
        where, reason = describe_error(exc)
        source = f"metadata file {path}" if path is not None else "metadata"
        raise MetadataError(f"{source}: {where}: {reason}", where, reason) from exc
