"""What an incoming HL7 v2 message does to the order store, and the ACK that says so.

Supported (IHE RAD TF-2): ORM^O01 v2.3.1 and OMI^O23 v2.5.1 placer orders (RAD-2/RAD-4, and
RAD-13 procedure updates): ORC-1 NW new, XO change, SC status change, CA/DC/OC cancel; ADT^A08
patient update (RAD-12) and ADT^A40 merge (RAD-12) applied to the patient's open orders.

Original-mode acknowledgement (HL7 v2.5.1 2.9.2): AR when the message is of a type, event,
version or processing id this application does not take (nothing read beyond MSH); AE when the
content is wrong (missing segment or field, bad date, unknown order, unknown order control);
AA otherwise. Every change a message implies is computed first and written in one
transaction, so an AE/AR leaves the store exactly as it was. Reasons name fields, never values:
ACK texts and logs carry no patient data.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import hl7
from hl7.exceptions import HL7Exception
from pydantic import ValidationError

from vid2dcm.core.metadata import Metadata
from vid2dcm.orders.hl7_mapping import (
    HL7_FIELDS,
    MappingError,
    Scope,
    check_metadata,
    field_value,
    read_fields,
)
from vid2dcm.orders.order import Order, OrderSource, OrderStatus
from vid2dcm.orders.store import OrderStore

log = logging.getLogger(__name__)

SUPPORTED = {("ORM", "O01"), ("OMI", "O23"), ("ADT", "A08"), ("ADT", "A40")}

ORDER_CONTROL_STATUS = {"SC": None, "NW": OrderStatus.SCHEDULED, "XO": None,
                        "CA": OrderStatus.CANCELLED, "DC": OrderStatus.CANCELLED,
                        "OC": OrderStatus.CANCELLED}
"""HL7 table 0119 codes taken in ORC-1 (None: keeps or reads the status)."""

ORC5_STATUS = {"SC": OrderStatus.SCHEDULED, "IP": OrderStatus.IN_PROGRESS,
               "CM": OrderStatus.COMPLETED, "CA": OrderStatus.CANCELLED,
               "DC": OrderStatus.CANCELLED}
"""HL7 table 0038 order status (ORC-5) -> OrderStatus, for SC (status changed) messages."""

PATIENT_FIELDS = ("patient_name", "patient_id", "patient_birth_date", "patient_sex")


class AckCode(StrEnum):
    AA = "AA"
    AE = "AE"
    AR = "AR"


class ErrorCode(StrEnum):
    """HL7 table 0357 message error condition codes used in ERR."""

    SEGMENT_SEQUENCE = "100"
    REQUIRED_FIELD_MISSING = "101"
    DATA_TYPE = "102"
    TABLE_VALUE = "103"
    UNSUPPORTED_MESSAGE_TYPE = "200"
    UNSUPPORTED_EVENT = "201"
    UNSUPPORTED_VERSION = "203"
    UNKNOWN_KEY = "204"
    DUPLICATE_KEY = "205"
    APPLICATION_ERROR = "207"


@dataclass(frozen=True)
class Outcome:
    """What a message did: the ACK code, its reason, and the orders written (placer numbers)."""

    code: AckCode
    reason: str = ""
    error: ErrorCode | None = None
    orders: tuple[str, ...] = ()
    changes: tuple[Order, ...] = field(default=(), repr=False)
    event: str = ""
    """What it was, for the audit trail: "order received", "order changed", "order cancelled",
    "order merged" (AA); "order rejected" (AR) or "order error" (AE) otherwise."""
    message_type: str = ""
    """MSH-9.1^MSH-9.2 as received ("" when the message could not be parsed)."""


class Rejected(Exception):
    def __init__(self, code: AckCode, error: ErrorCode, reason: str) -> None:
        super().__init__(reason)
        self.code, self.error, self.reason = code, error, reason


def handle(text: str, store: OrderStore, *, application: str = "VID2DCM",
           facility: str = "") -> tuple[str, Outcome]:
    """Apply one message (its text, segments separated by CR) and return (ACK text, Outcome)."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r")
    try:
        message = hl7.parse(text)
    except (HL7Exception, ValueError, IndexError) as exc:
        outcome = Outcome(AckCode.AE, f"not an HL7 v2 message ({type(exc).__name__})",
                          ErrorCode.SEGMENT_SEQUENCE, event=FAILED_EVENT[AckCode.AE])
        return _bare_ack(outcome, application, facility), outcome
    try:
        with store.update_lock:  # read, decide, write: one message at a time
            changes, note = _handler_for(message)(message, store)
            store.put_all(changes)
        outcome = Outcome(AckCode.AA, note, None,
                          tuple(o.placer_order_number for o in changes), tuple(changes))
    except Rejected as exc:
        outcome = Outcome(exc.code, exc.reason, exc.error)
    except MappingError as exc:
        outcome = Outcome(AckCode.AE, str(exc), ErrorCode.DATA_TYPE)
    except Exception as exc:  # the sender must get an answer, and nothing was written
        # type only: exception texts (e.g. pydantic's) may quote patient data
        log.error("HL7 message could not be applied: %s", type(exc).__name__)
        outcome = Outcome(AckCode.AE, f"application error ({type(exc).__name__})",
                          ErrorCode.APPLICATION_ERROR)
    log.info("HL7 %s %s -> %s %s", field_value(message, "MSH-9", whole=True),
             field_value(message, "MSH-10"), outcome.code.value, outcome.reason)
    kind = f"{field_value(message, 'MSH-9.1')}^{field_value(message, 'MSH-9.2')}"
    event = (_event(message, outcome.changes) if outcome.code is AckCode.AA
             else FAILED_EVENT[outcome.code])
    outcome = replace(outcome, event=event, message_type=kind)
    return ack_for(message, outcome, application, facility), outcome


FAILED_EVENT = {AckCode.AE: "order error", AckCode.AR: "order rejected"}


def _event(message: Any, changes: tuple[Order, ...]) -> str:
    """The audit event of an accepted message: ADT^A40 merges, ADT^A08 changes; an order
    message by its first ORC-1 (NW received, cancel codes or an SC to a cancelled status
    cancelled, anything else changed)."""
    kind, trigger = field_value(message, "MSH-9.1"), field_value(message, "MSH-9.2")
    if kind == "ADT":
        return "order merged" if trigger == "A40" else "order changed"
    control = field_value(message, "ORC-1").upper()
    if control == "NW":
        return "order received"
    if control != "XO" and any(c.status is OrderStatus.CANCELLED for c in changes):
        return "order cancelled"
    return "order changed"


Handler = Callable[[Any, OrderStore], tuple[list[Order], str]]


def _handler_for(message: Any) -> Handler:
    """The handler for the message's type, or Rejected (AR) for what we do not take."""
    kind, event = field_value(message, "MSH-9.1"), field_value(message, "MSH-9.2")
    if not field_value(message, "MSH-12").startswith("2."):
        raise Rejected(AckCode.AR, ErrorCode.UNSUPPORTED_VERSION,
                       "MSH-12 version must be HL7 v2.x")
    if field_value(message, "MSH-11") not in ("P", "D", "T", ""):
        raise Rejected(AckCode.AR, ErrorCode.TABLE_VALUE, "MSH-11 processing id not supported")
    if (kind, event) not in SUPPORTED:
        known_kind = kind in {k for k, _ in SUPPORTED}
        raise Rejected(
            AckCode.AR,
            ErrorCode.UNSUPPORTED_EVENT if known_kind else ErrorCode.UNSUPPORTED_MESSAGE_TYPE,
            f"message type {kind}^{event} is not supported (ORM^O01, OMI^O23, ADT^A08, "
            "ADT^A40)")
    if kind in ("ORM", "OMI"):
        return _order_changes
    return _update_changes if event == "A08" else _merge_changes


def _require_segment(message: Any, name: str) -> None:
    try:
        message.segment(name)
    except KeyError:
        raise Rejected(AckCode.AE, ErrorCode.SEGMENT_SEQUENCE,
                       f"required segment {name} is missing") from None


def _groups(message: Any) -> list[Any]:
    """One sub-message per order (ORC and what follows it up to the next ORC), each with the
    message's MSH, PID and PV1, so the one mapping table reads every order alike."""
    header = [s for s in message if str(s[0]) in ("MSH", "PID", "PV1")]
    groups: list[list[Any]] = []
    for segment in message:
        name = str(segment[0])
        if name == "ORC":
            groups.append([segment])
        elif groups and name not in ("MSH", "PID", "PV1", "PD1", "NTE", "PV2", "IN1", "AL1"):
            groups[-1].append(segment)
    return [hl7.parse("\r".join(str(s) for s in header + g)) for g in groups]


def _order_changes(message: Any, store: OrderStore) -> tuple[list[Order], str]:
    _require_segment(message, "PID")
    _require_segment(message, "ORC")
    changes: list[Order] = []
    notes = []
    for group in _groups(message):
        control = field_value(group, "ORC-1").upper()
        if control not in ORDER_CONTROL_STATUS:
            raise Rejected(AckCode.AE, ErrorCode.TABLE_VALUE,
                           "ORC-1 order control must be NW, XO, SC, CA, DC or OC")
        metadata, fields = read_fields(group)
        placer = str(fields.get("placer_order_number", ""))
        if not placer:
            raise Rejected(AckCode.AE, ErrorCode.REQUIRED_FIELD_MISSING,
                           "ORC-2 placer order number is missing")
        existing = next((c for c in changes if c.placer_order_number == placer), None) \
            or store.get(placer)
        if control == "NW":
            if not metadata.get("patient_id"):
                raise Rejected(AckCode.AE, ErrorCode.REQUIRED_FIELD_MISSING,
                               "PID-3 patient identifier is missing")
            if existing is not None and not existing.status.is_open:
                raise Rejected(AckCode.AE, ErrorCode.DUPLICATE_KEY,
                               f"order {placer} exists and is {existing.status.value}")
            order = _valid_order({**fields, "metadata": check_metadata(metadata),
                                  "status": OrderStatus.SCHEDULED, "source": OrderSource.HL7})
            notes.append(f"order {placer} {'replaced' if existing else 'created'}")
        else:
            if existing is None:
                raise Rejected(AckCode.AE, ErrorCode.UNKNOWN_KEY,
                               f"no order with placer number {placer}")
            status = ORDER_CONTROL_STATUS[control]
            if control == "SC":
                status = ORC5_STATUS.get(field_value(group, "ORC-5").upper())
                if status is None:
                    raise Rejected(AckCode.AE, ErrorCode.TABLE_VALUE,
                                   "ORC-5 order status must be SC, IP, CM, CA or DC")
            order = _merged(existing, metadata, fields) if control in ("XO", "SC") else existing
            order = _valid_order({**order.model_dump(), "status": status or existing.status})
            notes.append(f"order {placer} {order.status.value if control != 'XO' else 'changed'}")
        changes = [c for c in changes if c.placer_order_number != placer] + [order]
    return changes, "; ".join(notes)


def _merged(existing: Order, metadata: dict[str, object], fields: dict[str, object]) -> Order:
    current = existing.metadata.model_dump(exclude_defaults=True)
    return _valid_order({**existing.model_dump(), **fields,
                         "metadata": check_metadata({**current, **metadata})})


def _valid_order(data: dict[str, object]) -> Order:
    """An Order validated as a whole (model_copy would skip validation); a refusal names the
    HL7 field, never the value."""
    try:
        return Order.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        name = str(first["loc"][0]) if first["loc"] else "order"
        where = [r.field for r in HL7_FIELDS if r.target == f"order.{name}"]
        raise MappingError(f"{'/'.join(where) or name}: {first['msg']}") from None


def _patient_ids(message: Any) -> tuple[dict[str, object], str]:
    _require_segment(message, "PID")
    metadata, fields = read_fields(message, Scope.PATIENT)
    if not metadata.get("patient_id"):
        raise Rejected(AckCode.AE, ErrorCode.REQUIRED_FIELD_MISSING,
                       "PID-3 patient identifier is missing")
    return metadata, str(fields.get("patient_id_issuer", ""))


def _update_changes(message: Any, store: OrderStore) -> tuple[list[Order], str]:
    """ADT^A08: new demographics for the patient's open orders (closed ones keep what was
    written into their instances)."""
    metadata, issuer = _patient_ids(message)
    demographics = {k: v for k, v in metadata.items() if k in PATIENT_FIELDS}
    orders = store.open_for_patient(str(metadata["patient_id"]), issuer)
    changes = [_with_patient(o, demographics, issuer) for o in orders]
    return changes, f"{len(changes)} open order(s) updated"


def _merge_changes(message: Any, store: OrderStore) -> tuple[list[Order], str]:
    """ADT^A40: the prior patient (MRG-1) is merged into the surviving one (PID-3): open orders
    of the prior ID move to the surviving ID and its demographics."""
    metadata, issuer = _patient_ids(message)
    _require_segment(message, "MRG")
    prior = field_value(message, "MRG-1.1")
    prior_issuer = field_value(message, "MRG-1.4")
    if not prior:
        raise Rejected(AckCode.AE, ErrorCode.REQUIRED_FIELD_MISSING,
                       "MRG-1 prior patient identifier is missing")
    demographics = {k: v for k, v in metadata.items() if k in PATIENT_FIELDS}
    orders = store.open_for_patient(prior, prior_issuer)
    changes = [_with_patient(o, demographics, issuer) for o in orders]
    return changes, f"{len(changes)} open order(s) merged"


def _with_patient(order: Order, demographics: dict[str, object], issuer: str) -> Order:
    current = order.metadata.model_dump(exclude_defaults=True)
    merged: Metadata = check_metadata({**current, **demographics})
    return _valid_order({**order.model_dump(), "metadata": merged,
                         "patient_id_issuer": issuer or order.patient_id_issuer})


# --- acknowledgements ------------------------------------------------------------------------

def escape(text: str) -> str:
    """HL7 escape sequences (v2.5.1 2.7.4) for text put into a field."""
    out = text.replace("\\", "\\E\\")
    for char, seq in (("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\")):
        out = out.replace(char, seq)
    return out.replace("\r", " ").replace("\n", " ")


def ack_for(message: Any, outcome: Outcome, application: str, facility: str) -> str:
    """The ACK to `message`: MSH from python-hl7's create_ack, MSA with the code, control id
    and reason (MSA-3), and an ERR segment for AE/AR (ERR-1 in v2.3.1, ERR-3/4 from v2.5)."""
    ack = message.create_ack(outcome.code.value, application=application, facility=facility)
    version = field_value(message, "MSH-12") or "2.5.1"
    control_id = field_value(message, "MSH-10")
    msh = str(ack.segment("MSH"))
    return "\r".join([msh, *_msa_err(outcome, control_id, version)])


def _bare_ack(outcome: Outcome, application: str, facility: str) -> str:
    """An ACK for text that is not a message: nothing to copy from but our own names."""
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    msh = (f"MSH|^~\\&|{escape(application)}|{escape(facility)}|||{stamp}||ACK|"
           f"{hl7.generate_message_control_id()}|P|2.5.1")
    return "\r".join([msh, *_msa_err(outcome, "", "2.5.1")])


def _msa_err(outcome: Outcome, control_id: str, version: str) -> list[str]:
    reason = escape(outcome.reason[:80])  # MSA-3 is ST(80) in v2.3.1
    segments = [f"MSA|{outcome.code.value}|{escape(control_id)}|{reason}"]
    if outcome.code is not AckCode.AA and outcome.error is not None:
        code = outcome.error.value
        if version.startswith(("2.1", "2.2", "2.3", "2.4")):
            segments.append(f"ERR|^^^{code}&{reason.replace('&', ' ')}&HL70357")
        else:
            segments.append(f"ERR|||{code}^{reason}^HL70357|E")
    return segments
