"""The one map from HL7 v2 order and patient fields to vid2dcm's records.

Each row names an HL7 field (SEG-field[.component]), the record field it fills (`metadata.X` is
a core.metadata.Metadata field, so the DICOM keyword comes from that record's one attribute
table, never from here; `order.X` is a field of orders.order.Order), how the value is converted,
and where the mapping comes from. Rows are read in order, so for the same target a later row
(the HL7 v2.5.1 OMI segment, IHE RAD TF-2 4.4 / Vol 2x Appendix B) wins over an earlier one (the
v2.3.1 ORM field, IHE RAD TF-2 Table B-1 "HL7 order mapping to DICOM MWL").

Values are never logged; errors name the field, not its content (patient data stays out of logs
and ACKs).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any

from vid2dcm.core.metadata import CodedConcept, Metadata


class Kind(StrEnum):
    TEXT = "text"
    NAME = "XPN name"
    """XPN family^given^middle^suffix^prefix -> PN family^given^middle^prefix^suffix (PS3.5
    6.2.1: prefix and suffix swap places)."""
    DOCTOR = "XCN name"
    """XCN id^family^given^middle^suffix^prefix: the name starts at component 2."""
    DATE = "date"
    DATETIME = "datetime"
    SEX = "sex"
    """HL7 table 0001 (F, M, O, U, A, N) -> DICOM M/F/O; U (unknown) is left empty."""
    CODE = "CE code"


class Scope(StrEnum):
    PATIENT = "patient"
    """Demographics: read from ORM/OMI and from ADT^A08/A40."""
    ORDER = "order"
    """Order facts: ORM/OMI only."""


@dataclass(frozen=True)
class HL7Field:
    field: str
    """SEG-n or SEG-n.c (component c of the first repetition)."""
    target: str
    """metadata.<Metadata field> or order.<Order field>."""
    kind: Kind
    scope: Scope
    source: str
    """Where the mapping is defined (IHE RAD TF-2 appendix B, HL7 chapter)."""

    @property
    def segment(self) -> str:
        return self.field.split("-")[0]

    @property
    def position(self) -> tuple[int, int | None]:
        number = self.field.split("-")[1]
        if "." in number:
            f, c = number.split(".")
            return int(f), int(c)
        return int(number), None


HL7_FIELDS: tuple[HL7Field, ...] = (
    HL7Field("PID-3.1", "metadata.patient_id", Kind.TEXT, Scope.PATIENT,
             "IHE RAD TF-2 B-1: PID-3 CX.1 -> Patient ID"),
    HL7Field("PID-3.4", "order.patient_id_issuer", Kind.TEXT, Scope.PATIENT,
             "IHE RAD TF-2 B-1: PID-3 CX.4 assigning authority -> Issuer of Patient ID"),
    HL7Field("PID-5", "metadata.patient_name", Kind.NAME, Scope.PATIENT,
             "IHE RAD TF-2 B-1: PID-5 -> Patient's Name"),
    HL7Field("PID-7", "metadata.patient_birth_date", Kind.DATE, Scope.PATIENT,
             "IHE RAD TF-2 B-1: PID-7 -> Patient's Birth Date"),
    HL7Field("PID-8", "metadata.patient_sex", Kind.SEX, Scope.PATIENT,
             "IHE RAD TF-2 B-1: PID-8 -> Patient's Sex"),
    HL7Field("PV1-3.1", "order.department", Kind.TEXT, Scope.ORDER,
             "PV1-3 assigned patient location (point of care): routing by ward"),
    HL7Field("PV1-8", "metadata.referring_physician_name", Kind.DOCTOR, Scope.ORDER,
             "IHE RAD TF-2 B-1: PV1-8 -> Referring Physician's Name"),
    HL7Field("ORC-2.1", "order.placer_order_number", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1: ORC-2 -> Placer Order Number / Imaging Service Request"),
    HL7Field("ORC-3.1", "order.filler_order_number", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1: ORC-3 -> Filler Order Number / Imaging Service Request"),
    HL7Field("ORC-17.1", "order.ordering_service", Kind.TEXT, Scope.ORDER,
             "ORC-17 entering organization: routing by ordering service"),
    HL7Field("OBR-4", "order.procedure", Kind.CODE, Scope.ORDER,
             "OBR-4 universal service ID: the procedure (routing key)"),
    HL7Field("OBR-4.2", "metadata.requested_procedure_description", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1: OBR-4.2 (text) -> Requested Procedure Description"),
    HL7Field("OBR-18", "metadata.accession_number", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1 (v2.3.1 ORM): OBR-18 placer field 1 -> Accession Number"),
    HL7Field("OBR-19", "metadata.requested_procedure_id", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1 (v2.3.1 ORM): OBR-19 placer field 2 -> Requested Procedure ID"),
    HL7Field("OBR-20", "metadata.scheduled_procedure_step_id", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1 (v2.3.1 ORM): OBR-20 filler field 1 -> Scheduled Procedure "
             "Step ID"),
    HL7Field("OBR-24", "order.modality", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 B-1 (v2.3.1 ORM): OBR-24 diagnostic service section -> Modality"),
    HL7Field("OBR-27.4", "order.scheduled_start", Kind.DATETIME, Scope.ORDER,
             "IHE RAD TF-2 B-1 (v2.3.1 ORM): OBR-27.4 quantity/timing start -> Scheduled "
             "Procedure Step Start Date/Time"),
    HL7Field("ZDS-1.1", "metadata.study_instance_uid", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 4.4 (v2.3.1 ORM): ZDS-1 -> Study Instance UID"),
    HL7Field("TQ1-7", "order.scheduled_start", Kind.DATETIME, Scope.ORDER,
             "IHE RAD TF-2 (v2.5.1 OMI): TQ1-7 start date/time -> Scheduled Procedure Step "
             "Start Date/Time"),
    HL7Field("IPC-1.1", "metadata.accession_number", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 (v2.5.1 OMI): IPC-1 -> Accession Number"),
    HL7Field("IPC-2.1", "metadata.requested_procedure_id", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 (v2.5.1 OMI): IPC-2 -> Requested Procedure ID"),
    HL7Field("IPC-3.1", "metadata.study_instance_uid", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 (v2.5.1 OMI): IPC-3 -> Study Instance UID"),
    HL7Field("IPC-4.1", "metadata.scheduled_procedure_step_id", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 (v2.5.1 OMI): IPC-4 -> Scheduled Procedure Step ID"),
    HL7Field("IPC-5.1", "order.modality", Kind.TEXT, Scope.ORDER,
             "IHE RAD TF-2 (v2.5.1 OMI): IPC-5 (CE) code -> Modality"),
)
"""Every HL7 field vid2dcm reads from an order or patient message, once (docs/integration.md
prints this table). The merge message's MRG-1 (prior patient ID) is read by the listener."""


class MappingError(ValueError):
    """A field could not be converted; the message names the field, never its value."""


def read_fields(message: Any, scope: Scope | None = None) -> tuple[dict[str, object],
                                                                   dict[str, object]]:
    """(Metadata fields, Order fields) read from a parsed python-hl7 message. Empty fields
    are left out; `scope` PATIENT reads demographics only (ADT)."""
    metadata: dict[str, object] = {}
    order: dict[str, object] = {}
    for row in HL7_FIELDS:
        if scope is Scope.PATIENT and row.scope is not Scope.PATIENT:
            continue
        raw = field_value(message, row.field, whole=row.kind in (Kind.NAME, Kind.DOCTOR,
                                                                  Kind.CODE))
        if not raw:
            continue
        try:
            value = convert(row.kind, raw)
        except ValueError as exc:
            raise MappingError(f"{row.field} is not a valid {row.kind} ({exc})") from None
        if value is None:
            continue
        record, name = row.target.split(".", 1)
        (metadata if record == "metadata" else order)[name] = value
    return metadata, order


def field_value(message: Any, field: str, *, whole: bool = False) -> str:
    """The text of SEG-n[.c] in the first segment and repetition; '' when absent. `whole`
    returns the repetition with its components (for names and codes)."""
    segment, number = field.split("-")
    f, _, c = number.partition(".")
    try:
        seg = message.segment(segment)
    except KeyError:
        return ""
    index = int(f)  # python-hl7 keeps MSH-1 (the separator) as item 1, so SEG-n is item n
    if index >= len(seg):
        return ""
    value = seg[index]
    text = str(value)
    if not text:
        return ""
    try:
        rep = value[0] if hasattr(value, "__getitem__") and not isinstance(value, str) else value
    except IndexError:
        rep = value
    if whole and not c:
        return str(rep)
    if not c:
        return str(rep) if not isinstance(rep, str) else rep
    comps = rep if not isinstance(rep, str) else [rep]
    k = int(c) - 1
    if isinstance(comps, str) or k >= len(comps):
        return comps if isinstance(comps, str) and k == 0 else ""
    return str(comps[k])


def convert(kind: Kind, raw: str) -> object:
    """One HL7 value (text of a field or repetition, components separated by ^) as a record
    value; None for "no value" (e.g. sex U)."""
    raw = raw.strip()
    if kind is Kind.TEXT:
        return raw
    if kind in (Kind.NAME, Kind.DOCTOR):
        parts = raw.split("^")
        if kind is Kind.DOCTOR:
            parts = parts[1:]
        parts = (parts + [""] * 5)[:5]
        family, given, middle, suffix, prefix = parts
        name = "^".join((family, given, middle, prefix, suffix)).rstrip("^")
        return name or None
    if kind is Kind.DATE:
        return _ts(raw).date()
    if kind is Kind.DATETIME:
        return _ts(raw)
    if kind is Kind.SEX:
        sex = raw.upper()[:1]
        if sex in ("M", "F", "O"):
            return sex
        if sex in ("A", "N"):
            return "O"
        if sex == "U":
            return None
        raise ValueError("not in HL7 table 0001")
    if kind is Kind.CODE:
        parts = [p.strip() for p in raw.split("^")]
        code = parts[0]
        if not code:
            return None
        meaning = parts[1] if len(parts) > 1 and parts[1] else code
        scheme = parts[2] if len(parts) > 2 and parts[2] else "L"
        return CodedConcept(value=code[:64], scheme=scheme[:16], meaning=meaning[:64])
    raise AssertionError(kind)


def _ts(raw: str) -> datetime:
    """HL7 TS/DTM YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ] (HL7 2.A.75); the zone is dropped
    (DICOM DA/TM are local)."""
    digits = raw.split("^")[0].split("&")[0].split("+")[0].split("-")[0].split(".")[0]
    if not digits.isdigit() or len(digits) < 8:
        raise ValueError("expected YYYYMMDD[HHMM[SS]]")
    digits = digits[:14].ljust(14, "0")
    return datetime.strptime(digits, "%Y%m%d%H%M%S")


def day_of(value: object) -> date | None:
    return value.date() if isinstance(value, datetime) else value if isinstance(
        value, date) else None


def check_metadata(fields: dict[str, object]) -> Metadata:
    """The Metadata record, or a MappingError naming the HL7 field whose value it refused."""
    from pydantic import ValidationError

    try:
        return Metadata.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "metadata"
        where = [r.field for r in HL7_FIELDS if r.target == f"metadata.{name}"]
        raise MappingError(f"{'/'.join(where) or name}: {first['msg']}") from None
