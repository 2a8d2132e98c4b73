"""Orders in the audit trail (issue 15): the gateway's MLLP listener and FHIR poller record
one row per message in audit.py's event table: received / changed / cancelled / merged, AR and
AE refusals; each row exported as a DICOM Audit Message with the event's code and outcome.
No row holds patient data. Real listener on 127.0.0.1 (free port), real MLLP client, a
loopback FHIR server for the poller."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_orders_fhir import PATIENT, FhirStandIn, service_request
from test_orders_hl7 import ORM, msg

from dcmtk_peers import free_port
from vid2dcm.apps.gateway.audit import audit_message, event_of
from vid2dcm.apps.gateway.integration import start_services
from vid2dcm.apps.gateway.settings import FhirSettings, Hl7Settings, ServiceSettings
from vid2dcm.apps.gateway.store import open_store
from vid2dcm.orders.mllp import send_message

pytestmark = [pytest.mark.integration]

A40 = "\r".join(["MSH|^~\\&|HIS|HOSP|VID2DCM|ENDO|20261203110000||ADT^A40^ADT_A39|MSG0020|P|"
                 "2.5.1",
                 "EVN|A40|20261203110000",
                 "PID|1||PAT999^^^HOSP^MR||Müller^Anna^Beate||19700102|F",
                 "MRG|PAT001^^^HOSP^MR"])
PATIENT_DATA = ("PAT001", "PAT999", "Müller", "Anna", "19700102", "PAT42", "Doe")


def test_order_messages_are_audited_by_event(tmp_path: Path) -> None:
    fhir = FhirStandIn("R5")
    fhir.bundle["entry"] = [{"resource": service_request("R5"), "search": {"mode": "match"}},
                            {"resource": PATIENT, "search": {"mode": "include"}},
                            {"resource": {**service_request("R5"), "id": "sr-bad",
                                          "subject": {"reference": "Patient/nobody"}},
                             "search": {"mode": "match"}}]
    fhir.thread.start()
    port = free_port()
    settings = ServiceSettings(data_dir=tmp_path / "data",
                               hl7=Hl7Settings(listen=f"127.0.0.1:{port}"),
                               fhir=FhirSettings(server=fhir.url, version="R5", poll_s=30))
    services = start_services(settings)
    try:
        sent = [
            (ORM, "AA"),
            (msg(ORM, **{"ORC|NW": "ORC|XO", "MSG0001": "MSG0003"}), "AA"),
            (A40, "AA"),
            (msg(ORM, **{"ORC|NW": "ORC|CA", "PAT001": "PAT999"}), "AA"),
            (msg(ORM, **{"ORM^O01": "ADT^A01"}), "AR"),
            (msg(ORM, **{"PID|1||PAT001^^^HOSP^MR": "PID|1||", "PLC100": "PLC7"}), "AE"),
        ]
        for text, code in sent:
            assert send_message("127.0.0.1", port, text).code == code
        store = open_store(settings)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                e.who == "fhir-poller" for e in store.audit_log()):
            time.sleep(0.1)
    finally:
        services.stop()
        fhir.httpd.shutdown()
        fhir.httpd.server_close()
    entries = list(reversed(store.audit_log()))
    listener = [e.action for e in entries if e.who == "hl7-listener"]
    assert listener == ["order received (HL7 ORM^O01)", "order changed (HL7 ORM^O01)",
                        "order merged (HL7 ADT^A40)", "order cancelled (HL7 ORM^O01)",
                        "order rejected (HL7 AR)", "order error (HL7 AE)"]
    poller = sorted(e.action for e in entries if e.who == "fhir-poller")
    assert poller == ["order error (FHIR)", "order received (FHIR)"]
    assert all(e.role == "system" for e in entries)
    codes = {e.action: (event_of(e.action).event_id[0], event_of(e.action).action,
                        audit_message(e, "test").find("EventIdentification")
                        .get("EventOutcomeIndicator"))  # type: ignore[union-attr]
             for e in entries}
    assert codes["order received (HL7 ORM^O01)"] == ("110109", "C", "0")
    assert codes["order changed (HL7 ORM^O01)"] == ("110109", "U", "0")
    assert codes["order cancelled (HL7 ORM^O01)"] == ("110109", "D", "0")
    assert codes["order merged (HL7 ADT^A40)"] == ("110110", "U", "0")
    assert codes["order rejected (HL7 AR)"] == ("110109", "C", "4")
    assert codes["order error (HL7 AE)"] == ("110109", "C", "4")
    assert codes["order error (FHIR)"] == ("110109", "C", "4")
    text = " ".join(str(e.model_dump()) for e in entries)
    for value in PATIENT_DATA:
        assert value not in text


@pytest.mark.parametrize(("action", "code", "failure"), [
    ("result sent (HL7)", "110106", False), ("result failed (HL7)", "110106", True),
    ("ImagingStudy sent (FHIR)", "110106", False),
    ("ImagingStudy failed (FHIR)", "110106", True),
    ("MPPS sent", "110111", False), ("MPPS failed", "110111", True)])
def test_notice_actions_have_their_events(action: str, code: str, failure: bool) -> None:
    """The actions integration.NOTICE_AUDIT writes are rows of the event table."""
    from vid2dcm.apps.gateway.integration import NOTICE_AUDIT

    assert action in {a for pair in NOTICE_AUDIT.values() for a in pair}
    event = event_of(action)
    assert (event.event_id[0], event.failure) == (code, failure)
