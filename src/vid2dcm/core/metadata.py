"""Who and what the video is about: the validated record that fills the DICOM header.

Unknown keys are errors, so a typo in a metadata file never silently drops a patient ID.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from vid2dcm.core.dates import parse_da, parse_dt, read_date, read_datetime, read_time
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
    station_name: str = Field(default="", max_length=16)
    """Station Name (SH): e.g. which camera of a multi-source recording made the series."""
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
                     "institution_name", "station_name")
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
    """(field, reason) of the first problem, in words that name a good value. The value itself
    is never repeated: metadata is patient data, and messages end up in logs."""
    first = exc.errors()[0]
    where = ".".join(str(p) for p in first["loc"]) or "metadata"
    if first["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(first["loc"][-1]), Metadata.model_fields, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        return where, f"unknown key{hint}"
    return where, str(first["msg"]).removeprefix("Value error, ")


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


# --- the one map between Metadata fields and DICOM attributes -------------------------------

class Place(StrEnum):
    """Where an attribute sits in an instance (PS3.3 C.7.3.1: the order is an item of the
    Request Attributes Sequence) and in a Modality Worklist answer (PS3.4 K.6.1.2: the step is
    an item of the Scheduled Procedure Step Sequence)."""

    TOP = "top"
    REQUEST = "request"


@dataclass(frozen=True)
class AttributeMap:
    field: str
    keyword: str
    vr: str
    place: Place = Place.TOP
    module: str = ""
    """The module (PS3.3) that writes it; documentation and the conformance statement."""


METADATA_ATTRIBUTES: tuple[AttributeMap, ...] = (
    AttributeMap("patient_name", "PatientName", "PN", module="Patient"),
    AttributeMap("patient_id", "PatientID", "LO", module="Patient"),
    AttributeMap("patient_birth_date", "PatientBirthDate", "DA", module="Patient"),
    AttributeMap("patient_sex", "PatientSex", "CS", module="Patient"),
    AttributeMap("accession_number", "AccessionNumber", "SH", module="General Study"),
    AttributeMap("study_instance_uid", "StudyInstanceUID", "UI", module="General Study"),
    AttributeMap("study_id", "StudyID", "SH", module="General Study"),
    AttributeMap("study_description", "StudyDescription", "LO", module="General Study"),
    AttributeMap("study_date", "StudyDate", "DA", module="General Study"),
    AttributeMap("study_time", "StudyTime", "TM", module="General Study"),
    AttributeMap("referring_physician_name", "ReferringPhysicianName", "PN",
                 module="General Study"),
    AttributeMap("series_instance_uid", "SeriesInstanceUID", "UI", module="General Series"),
    AttributeMap("series_number", "SeriesNumber", "IS", module="General Series"),
    AttributeMap("series_description", "SeriesDescription", "LO", module="General Series"),
    AttributeMap("operators_name", "OperatorsName", "PN", module="General Series"),
    AttributeMap("manufacturer", "Manufacturer", "LO", module="General Equipment"),
    AttributeMap("manufacturer_model_name", "ManufacturerModelName", "LO",
                 module="General Equipment"),
    AttributeMap("institution_name", "InstitutionName", "LO", module="General Equipment"),
    AttributeMap("station_name", "StationName", "SH", module="General Equipment"),
    AttributeMap("acquisition_datetime", "AcquisitionDateTime", "DT", module="General Image"),
    AttributeMap("burned_in_annotation", "BurnedInAnnotation", "CS", module="General Image"),
    AttributeMap("anatomic_region", "AnatomicRegionSequence", "SQ", module="VL Image"),
    AttributeMap("image_laterality", "ImageLaterality", "CS", module="VL Image"),
    AttributeMap("requested_procedure_id", "RequestedProcedureID", "SH", Place.REQUEST,
                 "General Series (Request Attributes)"),
    AttributeMap("requested_procedure_description", "RequestedProcedureDescription", "LO",
                 Place.REQUEST, "General Series (Request Attributes)"),
    AttributeMap("scheduled_procedure_step_id", "ScheduledProcedureStepID", "SH", Place.REQUEST,
                 "General Series (Request Attributes)"),
    AttributeMap("scheduled_procedure_step_description", "ScheduledProcedureStepDescription",
                 "LO", Place.REQUEST, "General Series (Request Attributes)"),
)
"""Every Metadata field that reaches the header, once. Writer, delivery fallback (reading an
instance back), worklist and gateway all go through this table, and a test checks that every
Metadata field is either here or in NOT_IN_HEADER, so a new field cannot be silently lost."""

NOT_IN_HEADER = frozenset({"uid_root", "uid_seed"})
"""Fields that steer UID generation and are not attributes themselves."""

ATTRIBUTE = {m.field: m for m in METADATA_ATTRIBUTES}


def to_dicom(vr: str, value: object) -> object:
    """A Metadata value as the DICOM value of its VR (PS3.5 6.2); None/empty -> ""."""
    if value is None or value == "":
        return ""
    if vr == "DA" and isinstance(value, date):
        return value.strftime("%Y%m%d")
    if vr == "TM" and isinstance(value, time):
        return value.strftime("%H%M%S")
    if vr == "DT" and isinstance(value, datetime):
        return value.strftime("%Y%m%d%H%M%S.%f")
    return value


def from_dicom(vr: str, value: object) -> object:
    """A DICOM value as the Metadata value of its field; None when empty or malformed."""
    if value is None or value == "":
        return None
    if vr == "DA":
        return parse_da(value)
    if vr == "DT":
        return parse_dt(value)
    if vr == "TM":
        text = str(value).split(".")[0]
        try:
            return datetime.strptime(text.ljust(6, "0")[:6], "%H%M%S").time()
        except ValueError:
            return None
    if vr == "IS":
        try:
            return int(str(value).strip())
        except ValueError:
            return None
    return str(value)


def metadata_fields_from(ds: Any, request: Any = None, *,
                         fields: frozenset[str] | None = None) -> dict[str, object]:
    """Metadata fields read from a dataset (an instance, or a worklist answer with its step as
    `request`); empty and unreadable values are left out. A coded concept is read from its
    first item."""
    if request is None:
        items = ds.get("RequestAttributesSequence") or [None]
        request = items[0]
    found: dict[str, object] = {}
    for m in METADATA_ATTRIBUTES:
        if fields is not None and m.field not in fields:
            continue
        source = ds if m.place is Place.TOP else request
        if source is None or m.keyword not in source:
            continue
        raw = source.get(m.keyword)
        if m.vr == "SQ":
            if raw:
                item = raw[0]
                found[m.field] = CodedConcept(value=item.CodeValue,
                                              scheme=item.CodingSchemeDesignator,
                                              meaning=item.CodeMeaning)
            continue
        value = from_dicom(m.vr, raw)
        if value is not None and value != "":
            found[m.field] = value
    return found


def tolerant_metadata(fields: dict[str, object]) -> Metadata:
    """A Metadata record from values read off a foreign dataset, leaving out each value the
    record refuses rather than failing the whole record."""
    fields = {k: v for k, v in fields.items() if k in Metadata.model_fields}
    for _ in range(len(fields) + 1):
        try:
            return Metadata.model_validate(fields)
        except ValidationError as exc:
            bad = {str(e["loc"][0]) for e in exc.errors() if e["loc"]}
            if not bad & fields.keys():
                raise
            fields = {k: v for k, v in fields.items() if k not in bad}
    return Metadata()
