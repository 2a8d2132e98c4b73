"""The audit trail: every action that touches patient data is recorded in the store (who, in
which role, from which address, when, which job/upload/study) and, when configured, forwarded
to a syslog collector as a DICOM Audit Message (PS3.15 A.5, the RFC 3881 XML schema as DICOM
extends it) inside an RFC 5424 syslog message (UDP datagram, or TCP with octet counting as in
RFC 6587 3.4.1). The export (GET /audit/export) uses the same XML.

Codes: Event IDs from PS3.16 CID 400 (Audit Event ID), event types from CID 401, active
participant roles from CID 402 (110153 Source Role ID), all coding scheme DCM."""

from __future__ import annotations

import contextlib
import os
import socket
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal
from xml.etree import ElementTree as ET

from vid2dcm.apps.gateway.models import AuditEntry
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store


@dataclass(frozen=True)
class AuditEvent:
    event_id: tuple[str, str]
    """(code, meaning) from CID 400."""
    action: Literal["C", "R", "U", "D", "E"]
    type_code: tuple[str, str] | None = None
    """(code, meaning) from CID 401, where one applies."""
    failure: bool = False


EVENTS: dict[str, AuditEvent] = {
    "sign-in": AuditEvent(("110114", "User Authentication"), "E", ("110122", "Login")),
    "sign-in failed": AuditEvent(("110114", "User Authentication"), "E", ("110122", "Login"),
                                 failure=True),
    "sign-in refused (too many failures)": AuditEvent(
        ("110114", "User Authentication"), "E", ("110122", "Login"), failure=True),
    "sign-out": AuditEvent(("110114", "User Authentication"), "E", ("110123", "Logout")),
    "upload": AuditEvent(("110107", "Import"), "C"),
    "upload started (tus)": AuditEvent(("110107", "Import"), "C"),
    "upload (tus)": AuditEvent(("110107", "Import"), "C"),
    "create job": AuditEvent(("110110", "Patient Record"), "C"),
    "view job": AuditEvent(("110110", "Patient Record"), "R"),
    # recordings (issue 13): a recording makes the patient's images, as a job does
    "start recording": AuditEvent(("110110", "Patient Record"), "C"),
    "snapshot": AuditEvent(("110110", "Patient Record"), "U"),
    "stop recording": AuditEvent(("110110", "Patient Record"), "U"),
    "assign patient": AuditEvent(("110110", "Patient Record"), "U"),
    "cancel job": AuditEvent(("110110", "Patient Record"), "D"),
    "retry job": AuditEvent(("110110", "Patient Record"), "U"),
    "download": AuditEvent(("110106", "Export"), "R"),
    "preview": AuditEvent(("110103", "DICOM Instances Accessed"), "R"),
    "delivery": AuditEvent(("110104", "DICOM Instances Transferred"), "R"),
    "delivery failed": AuditEvent(("110104", "DICOM Instances Transferred"), "R",
                                  failure=True),
    "worklist query": AuditEvent(("110112", "Query"), "E"),
    "export de-identified": AuditEvent(("110106", "Export"), "R"),
    # de-identified exports (issue 16): refused, and the worker's send to the research PACS
    "export refused": AuditEvent(("110106", "Export"), "R", failure=True),
    "export failed": AuditEvent(("110106", "Export"), "R", failure=True),
    "export delivery": AuditEvent(("110104", "DICOM Instances Transferred"), "R"),
    "export delivery failed": AuditEvent(("110104", "DICOM Instances Transferred"), "R",
                                         failure=True),
    "audit export": AuditEvent(("110101", "Audit Log Used"), "R"),
    "issue token": AuditEvent(("110113", "Security Alert"), "E",
                              ("110137", "User Security Attributes Changed")),
    "revoke token": AuditEvent(("110113", "Security Alert"), "E",
                               ("110137", "User Security Attributes Changed")),
    # orders and results (issue 15): actions read "<event> (HL7 ORM^O01)", "<event> (FHIR)",
    # "<event> (HL7 AE)"; rows name the message type, never the patient
    "order received": AuditEvent(("110109", "Order Record"), "C"),
    "order changed": AuditEvent(("110109", "Order Record"), "U"),
    "order cancelled": AuditEvent(("110109", "Order Record"), "D"),
    "order merged": AuditEvent(("110110", "Patient Record"), "U"),
    "order rejected": AuditEvent(("110109", "Order Record"), "C", failure=True),
    "order error": AuditEvent(("110109", "Order Record"), "C", failure=True),
    "result sent": AuditEvent(("110106", "Export"), "R"),
    "result failed": AuditEvent(("110106", "Export"), "R", failure=True),
    "ImagingStudy sent": AuditEvent(("110106", "Export"), "R"),
    "ImagingStudy failed": AuditEvent(("110106", "Export"), "R", failure=True),
    "MPPS sent": AuditEvent(("110111", "Procedure Record"), "U"),
    "MPPS failed": AuditEvent(("110111", "Procedure Record"), "U", failure=True),
}
OTHER = AuditEvent(("110100", "Application Activity"), "E")
SOURCE_ROLE = ("110153", "Source Role ID")


def event_of(action: str) -> AuditEvent:
    """The event of an action; "export de-identified (basic)" is an "export de-identified"."""
    return EVENTS.get(action) or EVENTS.get(action.split(" (")[0], OTHER)


def record(store: Store, settings: ServiceSettings, who: str, action: str, *,
           job: str | None = None, upload: str | None = None, study: str | None = None,
           role: str = "", client: str = "") -> None:
    """Store the entry; forward it to settings.audit_syslog if set. A collector that is down
    never blocks or fails the action: the store keeps the entry."""
    store.audit(who, action, job=job, upload=upload, study=study, role=role, client=client)
    if settings.audit_syslog:
        entry = AuditEntry(at=time.time(), who=who, role=role, client=client, action=action,
                           job=job, upload=upload, study=study)
        with contextlib.suppress(OSError):
            send_syslog(settings.audit_syslog, syslog_message(entry), settings.audit_syslog_ca)


def _code(parent: ET.Element, tag: str, code: tuple[str, str]) -> None:
    ET.SubElement(parent, tag, {"csd-code": code[0], "codeSystemName": "DCM",
                                "originalText": code[1]})


def audit_message(entry: AuditEntry, source: str) -> ET.Element:
    """One entry as a DICOM Audit Message (PS3.15 A.5.1): Event, the acting user (requestor,
    with their address), the audit source, and the job / upload / study it touched."""
    event = event_of(entry.action)
    message = ET.Element("AuditMessage")
    ident = ET.SubElement(message, "EventIdentification", {
        "EventActionCode": event.action,
        "EventDateTime": datetime.fromtimestamp(entry.at, UTC).isoformat(
            timespec="milliseconds").replace("+00:00", "Z"),
        "EventOutcomeIndicator": "4" if event.failure else "0"})
    _code(ident, "EventID", event.event_id)
    if event.type_code:
        _code(ident, "EventTypeCode", event.type_code)
    user = ET.SubElement(message, "ActiveParticipant", {
        "UserID": entry.who, "UserIsRequestor": "true",
        **({"NetworkAccessPointID": entry.client, "NetworkAccessPointTypeCode": "2"}
           if entry.client else {})})
    if entry.role:
        user.set("AlternativeUserID", f"role={entry.role}")
    _code(user, "RoleIDCode", SOURCE_ROLE)
    ET.SubElement(message, "AuditSourceIdentification", {"AuditSourceID": source})
    if entry.study:
        study = ET.SubElement(message, "ParticipantObjectIdentification", {
            "ParticipantObjectID": entry.study, "ParticipantObjectTypeCode": "2",
            "ParticipantObjectTypeCodeRole": "3"})
        _code(study, "ParticipantObjectIDTypeCode", ("110180", "Study Instance UID"))
    for kind, value in (("job", entry.job), ("upload", entry.upload)):
        if value:
            obj = ET.SubElement(message, "ParticipantObjectIdentification", {
                "ParticipantObjectID": f"/{kind}s/{value}", "ParticipantObjectTypeCode": "2",
                "ParticipantObjectTypeCodeRole": "3"})
            ET.SubElement(obj, "ParticipantObjectIDTypeCode", {
                "csd-code": "12", "codeSystemName": "RFC-3881", "originalText": "URI"})
    return message


def export(entries: list[AuditEntry]) -> bytes:
    """Entries as one XML document: <AuditMessages> holding one AuditMessage each."""
    root = ET.Element("AuditMessages")
    source = f"vid2dcm@{socket.gethostname()}"
    root.extend(audit_message(entry, source) for entry in entries)
    xml: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return xml


def syslog_message(entry: AuditEntry) -> bytes:
    """RFC 5424: facility authpriv (10), severity notice (5) or warning (4) on failure;
    APP-NAME vid2dcm, MSGID DICOM+RFC3881, no structured data, the XML as the message with a
    UTF-8 byte order mark (RFC 5424 6.4)."""
    source = f"vid2dcm@{socket.gethostname()}"
    xml = ET.tostring(audit_message(entry, source), encoding="unicode")
    event = event_of(entry.action)
    pri = 10 * 8 + (4 if event.failure else 5)
    stamp = datetime.fromtimestamp(entry.at, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")
    host = socket.gethostname()[:255] or "-"
    header = f"<{pri}>1 {stamp} {host} vid2dcm {_pid()} DICOM+RFC3881 - "
    return header.encode("ascii", "replace") + b"\xef\xbb\xbf" + xml.encode("utf-8")


def send_syslog(target: str, message: bytes, ca: Path | None = None,
                timeout: float = 2.0) -> None:
    """One message: a UDP datagram (RFC 5426), or octet-counted on TCP (RFC 6587) or TLS
    (RFC 5425, the collector's certificate verified against `ca` or the system's CAs)."""
    scheme, _, address = target.partition("://")
    host, _, port = address.rpartition(":")
    framed = str(len(message)).encode() + b" " + message
    if scheme == "udp":
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(message, (host, int(port)))
    elif scheme == "tcp":
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.sendall(framed)
    elif scheme == "tls":
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        with socket.create_connection((host, int(port)), timeout=timeout) as raw, \
                context.wrap_socket(raw, server_hostname=host) as sock:
            sock.sendall(framed)
    else:
        raise OSError(f"unsupported syslog transport {scheme!r} (udp://, tcp:// or tls://)")


def _pid() -> str:
    return str(os.getpid())
