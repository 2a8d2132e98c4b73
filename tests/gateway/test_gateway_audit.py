"""Every action that touches patient data is audited, exported as DICOM Audit Messages
(PS3.15 A.5) and forwarded in RFC 5424 syslog to a real rsyslog on loopback (UDP and TCP)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest

from gateway_app import in_process_gateway
from pki import make_ca, make_leaf
from syslog_peer import running_rsyslog

pytestmark = pytest.mark.integration

EXPECTED = {  # action -> (EventID code, EventActionCode)
    "sign-in failed": ("110114", "E"), "sign-in": ("110114", "E"), "sign-out": ("110114", "E"),
    "upload": ("110107", "C"), "upload started (tus)": ("110107", "C"),
    "upload (tus)": ("110107", "C"), "create job": ("110110", "C"),
    "view job": ("110110", "R"),
    "assign patient": ("110110", "U"), "cancel job": ("110110", "D"),
    "download": ("110106", "R"), "preview": ("110103", "R"),
    "delivery failed": ("110104", "R"), "issue token": ("110113", "E"),
    "revoke token": ("110113", "E"), "audit export": ("110101", "R"),
}


@pytest.mark.parametrize("transport", ["udp", "tcp", "tls"])
def test_every_audited_action_is_exported_and_reaches_rsyslog(tmp_path: Path,
                                                              transport: str) -> None:
    tls = ca = None
    if transport == "tls":  # RFC 5425: the collector's certificate is checked
        pki = tmp_path / "pki"
        pki.mkdir()
        ca_key, ca = make_ca(pki, "audit-ca")
        key, cert = make_leaf(pki, "collector", ca_key, ca)
        tls = (ca, cert, key)
    with running_rsyslog(tmp_path / "syslog", tls) as rsyslog:
        port = rsyslog.udp if transport == "udp" else rsyslog.tcp
        with in_process_gateway(tmp_path, audit_syslog=f"{transport}://127.0.0.1:{port}",
                                audit_syslog_ca=ca, delivery_window_s=0) as gateway:
            client = gateway.client
            assert client.post("/auth/login", json={"username": "nurse",
                                                    "password": "wrong"}).status_code == 401
            nurse = gateway.person("nurse")
            upload = gateway.upload(nurse)
            data = gateway.clip.read_bytes()
            created = nurse.post("/files", headers={
                "Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)),
                "Upload-Metadata": "filename " + base64.b64encode(b"tus.mp4").decode()})
            assert created.status_code == 201
            tus_id = created.headers["location"].rstrip("/").rsplit("/", 1)[1]
            assert nurse.patch(f"/files/{tus_id}", content=data, headers={
                "Tus-Resumable": "1.0.0", "Upload-Offset": "0",
                "Content-Type": "application/offset+octet-stream"}).status_code == 204
            held = nurse.post("/jobs", json={"upload_id": tus_id, "unidentified": True}
                              ).json()["id"]
            assert nurse.get("/jobs").status_code == 200
            assert nurse.get(f"/jobs/{held}").status_code == 200
            assert nurse.get(f"/jobs/{held}/files/0/video").status_code == 200
            assert nurse.get(f"/jobs/{held}/files/0").status_code == 200
            reviewer = gateway.person("doc")
            study = "1.2.826.0.1.3680043.10.999.42"
            assert reviewer.post(f"/jobs/{held}/assign", json={"metadata": {
                "patient_id": "AUD1", "patient_name": "Audit^Person",
                "study_instance_uid": study}}).status_code == 200
            other = nurse.post("/jobs", json={"upload_id": upload, "unidentified": True}
                               ).json()["id"]
            admin = gateway.person("it")
            assert admin.post(f"/jobs/{other}/cancel").status_code == 200
            token = admin.post("/auth/tokens", json={"name": "recorder-2"}).json()
            assert admin.delete(f"/auth/tokens/{token['id']}").status_code == 200
            assert nurse.post("/auth/logout").status_code == 200
            exported = admin.get("/audit/export")
            assert exported.headers["content-type"].startswith("application/xml")
            log = admin.get("/audit").json()
        deadline = time.monotonic() + 10
        while len(rsyslog.lines()) <= len(log) and time.monotonic() < deadline:
            time.sleep(0.2)
        lines = rsyslog.lines()

    messages = ET.fromstring(exported.content).findall("AuditMessage")
    assert len(messages) == len(log) - 1, "the export lists what was there when it ran"
    seen = {}
    for entry, message in zip(log[1:], messages, strict=True):
        event = message.find("EventIdentification")
        assert event is not None
        event_id = event.find("EventID")
        assert event_id is not None and event_id.get("codeSystemName") == "DCM"
        seen[entry["action"]] = (event_id.get("csd-code"), event.get("EventActionCode"))
        user = message.find("ActiveParticipant")
        assert user is not None and user.get("UserID") == entry["who"]
        assert user.get("UserIsRequestor") == "true"
        assert message.find("AuditSourceIdentification") is not None
        if entry["action"] == "sign-in failed":
            assert event.get("EventOutcomeIndicator") == "4"
    assert log[0]["action"] == "audit export", "the export itself is audited"
    seen["audit export"] = EXPECTED["audit export"]
    for action, codes in EXPECTED.items():
        assert seen.get(action) == codes, action
    assert any(entry["study"] == study for entry in log)
    assert any(o.get("ParticipantObjectID") == study
               for o in ET.fromstring(exported.content).iter(
                   "ParticipantObjectIdentification"))
    assert {e["action"] for e in log} >= set(EXPECTED)
    assert all(e["client"] for e in log if e["role"] != "system")

    assert len(lines) == len(log) + 1, "every entry, and the last read of /audit itself"
    received = []
    for line in lines:
        facility, severity, app, msgid, xml = line.split(" ", 4)
        assert (facility, app, msgid) == ("authpriv", "vid2dcm", "DICOM+RFC3881")
        assert severity in ("notice", "warning")
        message = ET.fromstring(xml.lstrip("\ufeff"))
        event = message.find("EventIdentification/EventID")
        assert event is not None
        received.append(event.get("csd-code"))
    assert sorted(received) == sorted([EXPECTED_CODE[e["action"]] for e in log] + ["110101"])
    text = "\n".join(lines) + exported.text
    assert "AUD1" not in text and "Audit^Person" not in text, "no patient data in audit"


EXPECTED_CODE = {action: codes[0] for action, codes in EXPECTED.items()}


def test_a_tls_collector_with_an_unknown_certificate_is_refused(tmp_path: Path) -> None:
    import ssl

    from vid2dcm.apps.gateway.audit import send_syslog

    pki = tmp_path / "pki"
    pki.mkdir()
    ca_key, ca = make_ca(pki, "audit-ca")
    key, cert = make_leaf(pki, "collector", ca_key, ca)
    _, stranger = make_ca(pki, "another-ca")
    with running_rsyslog(tmp_path / "syslog", (ca, cert, key)) as rsyslog:
        with pytest.raises(ssl.SSLCertVerificationError):
            send_syslog(f"tls://127.0.0.1:{rsyslog.tcp}", b"<85>1 - - - - - - x", stranger)
        send_syslog(f"tls://127.0.0.1:{rsyslog.tcp}", b"<85>1 - - vid2dcm - TEST - ok", ca)
        deadline = time.monotonic() + 10
        while not rsyslog.lines() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert rsyslog.lines() == ["authpriv notice vid2dcm TEST ok"]
