"""'Images available': an ORU^R01 (HL7 v2.5.1, or another kind from RESULT_MESSAGES) back
to the HIS once a study is stored.

The result names the order (ORC-2/3 placer and filler numbers, OBR-18 accession, OBR-4
procedure), says the study is final (OBR-25 F), and carries two observations: the Study Instance
UID coded as DCM 110180 "Study Instance UID" (PS3.16 CID 7003 / DICOM's own code for it, as IHE
RAD uses it) and a link to a viewer (value type RP, reference pointer). Sent over MLLP with
python-hl7's framing (orders.mllp.send_message); the HIS answers with an ACK.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime

import hl7

from vid2dcm.core.metadata import ATTRIBUTE, to_dicom
from vid2dcm.core.uids import is_valid_uid
from vid2dcm.orders.inbox import escape
from vid2dcm.orders.mllp import Ack, send_message
from vid2dcm.orders.order import Order

STUDY_UID_CODE = ("110180", "Study Instance UID", "DCM")
VIEWER_CODE = ("VIEWER", "Viewer link", "L")


@dataclass(frozen=True)
class ResultMessage:
    """One kind of "images available" message a HIS may want (HL7 v2, original mode)."""

    message_type: str
    """MSH-9 as sent (2.5.1 adds the message structure as third component)."""
    version: str
    """MSH-12."""
    order_control: str
    """ORC-1 (table 0119): RE observations to follow, SC status changed."""
    uid_value_type: str
    """OBX-2 of the Study Instance UID: HD in 2.5.1 (IHE RAD), ST in 2.3.1."""
    result_status: str = "F"
    """OBR-25 (table 0123): F final for a result; empty for an order status update."""
    ipc: bool = False
    """An IPC segment (Imaging Procedure Control, v2.5.1; IPC-3 the Study Instance UID)."""
    use: str = ""


RESULT_MESSAGES: dict[str, ResultMessage] = {
    "ORU^R01": ResultMessage("ORU^R01^ORU_R01", "2.5.1", "RE", "HD",
                             use="the default: an unsolicited result, IHE RAD style"),
    "ORU^R01 2.3.1": ResultMessage("ORU^R01", "2.3.1", "RE", "ST",
                                   use="HIS interfaces still on v2.3.1"),
    "ORM^O01": ResultMessage("ORM^O01", "2.3.1", "SC", "ST", result_status="",
                             use="an order status update (ORC-5 CM) instead of a result"),
    "OMI^O23": ResultMessage("OMI^O23^OMI_O23", "2.5.1", "SC", "HD", result_status="",
                             ipc=True, use="a v2.5.1 imaging order status update with IPC"),
}
"""The result messages `[hl7] result_message` chooses from (ORU^R01 by default). Every one
names the order (ORC-2/3, OBR-2/3, OBR-18 accession, OBR-4 procedure), says it is complete
(ORC-5 CM) and carries the Study Instance UID (OBX, DCM 110180) and the viewer link (OBX RP)."""


@dataclass(frozen=True)
class StudyAvailable:
    """What a stored study tells the HIS."""

    order: Order
    study_instance_uid: str
    viewer_url: str = ""
    instances: int = 0
    stored_at: datetime | None = None


def build_oru(notice: StudyAvailable, *, application: str = "VID2DCM", facility: str = "",
              receiving_application: str = "", receiving_facility: str = "",
              control_id: str | None = None, kind: str = "ORU^R01") -> str:
    """The result message text (segments separated by CR), of a kind from RESULT_MESSAGES."""
    if not is_valid_uid(notice.study_instance_uid):
        raise ValueError("study_instance_uid is not a valid DICOM UID")
    if kind not in RESULT_MESSAGES:
        raise ValueError(f"unknown result message {kind!r} (one of {', '.join(RESULT_MESSAGES)})")
    form = RESULT_MESSAGES[kind]
    order, md = notice.order, notice.order.metadata
    when = (notice.stored_at or datetime.now(UTC)).strftime("%Y%m%d%H%M%S")
    e = escape
    msh = (f"MSH|^~\\&|{e(application)}|{e(facility)}|{e(receiving_application)}|"
           f"{e(receiving_facility)}|{when}||{form.message_type}|"
           f"{control_id or hl7.generate_message_control_id()}|P|{form.version}|||AL|NE")
    issuer = f"^^^{e(order.patient_id_issuer)}" if order.patient_id_issuer else ""
    name = str(to_dicom(ATTRIBUTE["patient_name"].vr, md.patient_name))
    birth = str(to_dicom(ATTRIBUTE["patient_birth_date"].vr, md.patient_birth_date))
    pid = (f"PID|1||{e(md.patient_id)}{issuer}||{_pn_to_xpn(name)}||{birth}|"
           f"{md.patient_sex or ''}")
    orc = (f"ORC|{form.order_control}|{e(order.placer_order_number)}|"
           f"{e(order.filler_order_number)}||CM")
    proc = order.procedure
    code = f"{e(proc.value)}^{e(proc.meaning)}^{e(proc.scheme)}" if proc else ""
    obr_fields = [""] * 26
    obr_fields[0:5] = ["OBR", "1", e(order.placer_order_number),
                       e(order.filler_order_number), code]
    obr_fields[18] = e(md.accession_number)   # OBR-18 placer field 1: the accession (IHE)
    obr_fields[22] = when                     # OBR-22 results reported / status change
    obr_fields[25] = form.result_status       # OBR-25 result status: F final (results)
    obr = "|".join(obr_fields).rstrip("|")
    segments = [msh, pid, orc, obr]
    if form.ipc:  # IPC-1 accession, -2 requested procedure, -3 study UID, -4 SPS ID (all R)
        segments.append(f"IPC|{e(md.accession_number)}|"
                        f"{e(md.requested_procedure_id or order.placer_order_number)}|"
                        f"{notice.study_instance_uid}|"
                        f"{e(md.scheduled_procedure_step_id or order.placer_order_number)}|"
                        f"{e(order.modality)}")
    segments.append(f"OBX|1|{form.uid_value_type}|{'^'.join(STUDY_UID_CODE)}||"
                    f"{notice.study_instance_uid}||||||F|||{when}")
    if notice.viewer_url:
        segments.append(f"OBX|2|RP|{'^'.join(VIEWER_CODE)}||{e(notice.viewer_url)}^URL^HTML"
                        f"||||||F|||{when}")
    return "\r".join(segments)


def _pn_to_xpn(name: str) -> str:
    """DICOM PN family^given^middle^prefix^suffix -> XPN family^given^middle^suffix^prefix."""
    parts = (name.split("=")[0].split("^") + [""] * 5)[:5]
    family, given, middle, prefix, suffix = parts
    return "^".join(escape(p) for p in (family, given, middle, suffix, prefix)).rstrip("^")


def send_oru(notice: StudyAvailable, host: str, port: int, *,
             ssl_context: ssl.SSLContext | None = None, timeout_s: float = 10.0,
             kind: str = "ORU^R01", **names: str) -> Ack:
    """Build and send the notice; the HIS's ACK (raises DeliveryError if it never answers)."""
    return send_message(host, port, build_oru(notice, kind=kind, **names),
                        ssl_context=ssl_context,
                        timeout_s=timeout_s)
