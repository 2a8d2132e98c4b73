"""Orders and results through the gateway (issue 15): the app's lifespan starts the MLLP
listener; an HL7 ORM over MLLP and a FHIR ServiceRequest POSTed to the API appear in /worklist;
uploads bound to them are converted, routed by the settings' rules, stored in Orthanc with the
order's identity (plus a KOS), and then the HIS stand-in (python-hl7 MLLP server) gets an
ORU^R01, the FHIR stand-in an ImagingStudy and pynetdicom's MPPS SCP its N-CREATE/N-SET.

Everything listens on 127.0.0.1, on free ports, and is stopped by the test."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hl7
import pytest
from fastapi.testclient import TestClient
from test_orders_fhir import PATIENT, FhirStandIn, service_request
from test_orders_hl7 import OMI, ORM
from test_record_mpps import MppsScp

from dcmtk_peers import free_port
from gateway_app import PASSWORD, TOKEN, _accounts_once
from orthanc import Orthanc, running_orthanc
from readback import dciodvfy_errors, read_back
from vid2dcm.apps.gateway.api import create_app
from vid2dcm.apps.gateway.queue import make_queue
from vid2dcm.apps.gateway.settings import (
    FhirSettings,
    Hl7Settings,
    ServiceSettings,
    TokenEntry,
    hash_token,
)
from vid2dcm.core.errors import DeliveryError
from vid2dcm.orders.hl7_mapping import field_value
from vid2dcm.orders.mllp import MllpServer, send_message
from vid2dcm.orders.routing import RoutingTable
from vid2dcm.producing.synth import ClipSpec, synthesize

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROUTING = {
    "default": ["pacs"],
    "rules": [
        {"name": "by procedure", "procedure": ["EGD"], "destinations": ["pacs"]},
        {"name": "by modality", "modality": ["ES"], "destinations": ["research"]},
        {"name": "by ward", "department": ["ENDO"], "destinations": ["ward"]},
        {"name": "by service", "ordering_service": ["GASTRO"], "destinations": ["service"]},
        {"name": "big video", "min_size": "2 GB", "destinations": ["archive"], "final": True},
        {"name": "small clips", "max_size": "100 MB", "modality": ["XC"],
         "destinations": ["pacs"]},
    ],
}
KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


@dataclass
class World:
    client: TestClient
    settings: ServiceSettings
    pacs: Orthanc
    his: list[str]
    fhir: FhirStandIn
    mpps: MppsScp
    clip: Path

    def reviewer(self) -> TestClient:
        other = TestClient(self.client.app)
        assert other.post("/auth/login", json={"username": "doc",
                                               "password": PASSWORD}).status_code == 200
        return other

    def job(self, body: dict[str, Any], content: bytes | None = None) -> dict[str, Any]:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        up = self.client.put("/uploads/clip.mp4", content=content or self.clip.read_bytes(),
                             headers=auth)
        assert up.status_code == 201, up.text
        made = self.client.post("/jobs", json={"upload_id": up.json()["id"], **body},
                                headers=auth)
        assert made.status_code == 201, made.text
        shown = self.reviewer().get(f"/jobs/{made.json()['id']}")
        assert shown.status_code == 200
        view: dict[str, Any] = shown.json()
        return view


@contextmanager
def world(tmp_path: Path, routing: dict[str, Any] | None = ROUTING, poll_s: float = 0.0,
          bundle: list[dict[str, Any]] | None = None) -> Iterator[World]:
    his_got: list[str] = []

    def his_handler(text: str) -> str:
        his_got.append(text)
        return str(hl7.parse(text).create_ack("AA"))

    fhir = FhirStandIn("R5")
    fhir.bundle["entry"] = bundle or []
    fhir.thread.start()
    mpps = MppsScp()
    (tmp_path / "pacs").mkdir()
    try:
        with running_orthanc(tmp_path / "pacs") as pacs, \
                MllpServer(his_handler, "127.0.0.1", 0) as his:
            dest = (f'ae_title = "{pacs.aet}"\nhost = "127.0.0.1"\nport = {pacs.dicom_port}\n'
                    "retries = 0\n")
            destinations = tmp_path / "destinations.toml"
            destinations.write_text("".join(f"[destinations.{n}]\n{dest}" for n in (
                "pacs", "research", "ward", "service", "archive")))
            with destinations.open("a") as more:  # nothing listens there
                more.write(f'[destinations.dead]\nae_title = "DEAD"\nhost = "127.0.0.1"\n'
                           f"port = {free_port()}\nretries = 0\n")
            settings = ServiceSettings(
                data_dir=tmp_path / "data", destinations_file=destinations,
                tokens=(TokenEntry(sha256=hash_token(TOKEN), role="uploader",
                                   name="recorder"),),
                hl7=Hl7Settings(listen=f"127.0.0.1:{free_port()}",
                                his=f"{his.address[0]}:{his.address[1]}"),
                fhir=FhirSettings(server=fhir.url, version="R5", poll_s=poll_s),
                routing=RoutingTable.model_validate(routing) if routing else None,
                mpps_destination=f"RIS@127.0.0.1:{mpps.port}", kos=True,
                viewer_url="http://viewer.example/study/{study}", delivery_window_s=0)
            shutil.copytree(_accounts_once(), settings.data_dir)
            queue = make_queue(settings)
            queue.huey.immediate = True
            clip = synthesize(tmp_path / "clip.mp4", ClipSpec(
                width=64, height=48, frames=10,
                options={"preset": "superfast", "profile": "high"}))
            with TestClient(create_app(settings, queue)) as client:
                yield World(client, settings, pacs, his_got, fhir, mpps, clip)
    finally:
        mpps.stop()
        fhir.httpd.shutdown()
        fhir.httpd.server_close()


def hl7_address(settings: ServiceSettings) -> tuple[str, int]:
    assert settings.hl7 is not None and settings.hl7.listen
    host, _, port = settings.hl7.listen.rpartition(":")
    return host, int(port)


def in_orthanc(pacs: Orthanc, sop_instance_uid: str) -> dict[str, Any]:
    found = pacs.get_json_post("/tools/lookup", sop_instance_uid)
    ids = [f["ID"] for f in found if f["Type"] == "Instance"]
    assert ids, f"{sop_instance_uid} is not in the PACS"
    tags: dict[str, Any] = pacs.get(f"/instances/{ids[0]}/simplified-tags")
    return tags


def test_orders_in_results_out(tmp_path: Path) -> None:
    with world(tmp_path) as w:
        # HL7 ORM over MLLP to the listener the lifespan started -> AA -> in /worklist
        ack = send_message(*hl7_address(w.settings), ORM)
        assert ack.code == "AA", ack.text
        # FHIR ServiceRequest: auth required; an uploader may not create orders
        sr = {**service_request("R5"), "contained": [{**PATIENT}],
              "subject": {"reference": "#p42"}}
        assert TestClient(w.client.app).post("/fhir/ServiceRequest",
                                             json=sr).status_code == 401
        assert w.client.post("/fhir/ServiceRequest", json=sr, headers={
            "Authorization": f"Bearer {TOKEN}"}).status_code == 403
        doc = w.reviewer()
        bad = doc.post("/fhir/ServiceRequest", json={**sr, "status": 42})
        assert bad.status_code == 422
        assert bad.json()["resourceType"] == "OperationOutcome"
        assert "Doe" not in bad.text and "PAT42" not in bad.text
        made = doc.post("/fhir/ServiceRequest", json=sr,
                        headers={"Content-Type": "application/fhir+json; fhirVersion=5.0"})
        assert made.status_code == 201, made.text
        r4 = {**service_request("R4"), "contained": [{**PATIENT}],
              "subject": {"reference": "#p42"}, "id": "sr-43",
              "identifier": [{"type": {"coding": [{"system": "http://terminology.hl7.org/"
                                                   "CodeSystem/v2-0203", "code": "PLAC"}]},
                              "value": "PLC43"}]}
        assert doc.post("/fhir/ServiceRequest?_fhirVersion=R4", json=r4).status_code == 201
        assert send_message(*hl7_address(w.settings), OMI).code == "AA"
        listed = {i["accession_number"]: i for i in doc.get("/worklist").json()}
        assert {"ACC100", "ACC42", "ACC200"} <= set(listed)
        assert listed["ACC100"]["patient_id"] == "PAT001"
        assert listed["ACC42"]["patient_id"] == "PAT42"

        # identity rules as for worklist entries: typed fields that contradict the order: 409
        up = w.client.put("/uploads/c.mp4", content=w.clip.read_bytes(),
                          headers={"Authorization": f"Bearer {TOKEN}"}).json()["id"]
        clash = w.client.post("/jobs", json={"upload_id": up, "accession": "ACC100",
                                             "metadata": {"patient_id": "OTHER"}},
                              headers={"Authorization": f"Bearer {TOKEN}"})
        assert clash.status_code == 409

        # job 1: bound to the HL7 order, endoscopic; routed by four rules
        one = w.job({"accession": "ACC100", "sop": "endoscopic"})
        assert one["status"] == "done", one
        routing = one["result"]["routing"]
        assert routing == [
            "sent to pacs because rule 'by procedure' matched procedure EGD",
            "sent to research because rule 'by modality' matched modality ES",
            "sent to ward because rule 'by ward' matched department ENDO",
            "sent to service because rule 'by service' matched ordering service GASTRO"]
        assert {d["destination"] for d in one["result"]["deliveries"]} == {
            "pacs", "research", "ward", "service"}
        video, kos = one["result"]["files"]
        assert kos["name"] == "kos.dcm"
        out = w.settings.outputs / one["id"]
        back = read_back(out / video["name"], tmp_path)
        assert back.decoded_frames == int(back.dataset.NumberOfFrames)
        assert dciodvfy_errors(out / "kos.dcm") == []
        tags = in_orthanc(w.pacs, video["sop_instance_uid"])
        assert (tags["PatientID"], tags["AccessionNumber"]) == ("PAT001", "ACC100")
        assert tags["StudyInstanceUID"] == "1.2.826.0.1.3680043.10.543.100"
        assert in_orthanc(w.pacs, kos["sop_instance_uid"])["SOPClassUID"] == KOS_CLASS

        # ORU^R01 at the HIS stand-in
        assert len(w.his) == 1
        oru = hl7.parse(w.his[0])
        assert field_value(oru, "MSH-9.1") == "ORU"
        assert field_value(oru, "OBR-18") == "ACC100"
        assert field_value(oru, "OBX-5") == "1.2.826.0.1.3680043.10.543.100"
        assert "ORU^R01 for order PLC100 acknowledged by the HIS" in one["result"]["notices"]

        # ImagingStudy at the FHIR stand-in (validated there by fhir.resources R5)
        puts = [r for r in w.fhir.received if r[0] == "PUT"]
        assert len(puts) == 1 and puts[0][1].startswith("/fhir/ImagingStudy?identifier=")
        study = puts[0][2]
        assert study is not None
        assert study["identifier"][0]["value"] == "urn:oid:1.2.826.0.1.3680043.10.543.100"
        assert study["numberOfInstances"] == 2

        # MPPS: N-CREATE IN PROGRESS, N-SET COMPLETED with the Performed Series
        (step,) = w.mpps.instances.values()
        assert step.PerformedProcedureStepStatus == "COMPLETED"
        refs = {r.ReferencedSOPInstanceUID for s in step.PerformedSeriesSequence
                for r in s.ReferencedImageSequence}
        assert refs == {video["sop_instance_uid"]}
        assert "MPPS COMPLETED sent" in one["result"]["notices"]
        # the order is done: it leaves the worklist
        assert "ACC100" not in {i["accession_number"] for i in doc.get("/worklist").json()}

        # job 2: bound to the FHIR order, photographic (XC): the size rule
        two = w.job({"accession": "ACC42"})
        assert two["status"] == "done", two
        ward, why = two["result"]["routing"]
        assert ward == "sent to ward because rule 'by ward' matched department ENDO"
        assert why.startswith("sent to pacs because rule 'small clips' matched modality XC "
                              "and size ")
        tags = in_orthanc(w.pacs, two["result"]["files"][0]["sop_instance_uid"])
        assert (tags["PatientID"], tags["AccessionNumber"]) == ("PAT42", "ACC42")
        studies = [r[2] for r in w.fhir.received if r[0] == "PUT"]
        assert studies[-1] is not None
        assert studies[-1]["basedOn"] == [{"reference": "ServiceRequest/sr-42"}]

        # job 3: bound to the OMI order, the upload is not a video: MPPS DISCONTINUED
        three = w.job({"accession": "ACC200"}, content=b"not a video at all" * 100)
        assert three["status"] == "failed"
        assert "MPPS DISCONTINUED sent" in three["result"]["notices"]
        final = {str(s.PerformedProcedureStepStatus) for s in w.mpps.instances.values()}
        assert final == {"COMPLETED", "DISCONTINUED"}
        assert len(w.his) == 2  # no ORU for a failed job

        # job 4: typed patient, no order, Secondary Capture (OT): no rule holds -> default
        four = w.job({"sop": "sc", "metadata": {"patient_id": "P4", "patient_name": "Four^F"}})
        assert four["status"] == "done", four
        assert four["result"]["routing"] == [
            "sent to pacs because no routing rule matched (default)"]

        # malformed HL7 gets AE with a reason and changes nothing
        broken = ORM.replace("PID|1||PAT001^^^HOSP^MR", "PID|1||").replace("MSG0001", "X9")
        answer = send_message(*hl7_address(w.settings), broken.replace("PLC100", "PLC999"))
        assert answer.code == "AE" and "PID-3" in answer.text
        admin = TestClient(w.client.app)
        assert admin.post("/auth/login", json={"username": "it",
                                               "password": PASSWORD}).status_code == 200
        audited = [(e["who"], e["action"]) for e in admin.get("/audit").json()]
        assert ("hl7-listener", "order error (HL7 AE)") in audited
        assert ("hl7-listener", "order received (HL7 ORM^O01)") in audited
        assert ("doc", "order received (FHIR)") in audited
        assert ("doc", "order error (FHIR)") in audited
    # the lifespan stopped the listener with the app
    with pytest.raises(DeliveryError, match="no acknowledgement"):
        send_message(*hl7_address(w.settings), ORM, timeout_s=2)


def test_bound_job_kept_without_destination_completes_its_step(tmp_path: Path) -> None:
    """No routing table, no default destination: converted and kept; the MPPS completes, and
    no ORU goes (nothing was stored)."""
    with world(tmp_path, routing=None) as w:
        assert send_message(*hl7_address(w.settings), ORM).code == "AA"
        job = w.job({"accession": "ACC100"})
        assert job["status"] == "done" and job["result"]["deliveries"] == []
        assert job["result"]["notices"] == ["MPPS IN PROGRESS sent", "MPPS COMPLETED sent"]
        (step,) = w.mpps.instances.values()
        assert step.PerformedProcedureStepStatus == "COMPLETED"
        assert w.his == []
        # bound, sent to a PACS that never answers, given up: DISCONTINUED, no ORU
        assert send_message(*hl7_address(w.settings), OMI).code == "AA"
        lost = w.job({"accession": "ACC200", "destinations": ["dead"]})
        assert lost["status"] == "failed" and lost["failure_kind"] == "delivery"
        assert "MPPS DISCONTINUED sent" in lost["result"]["notices"]
        assert sorted(str(s.PerformedProcedureStepStatus) for s in w.mpps.instances.values()
                      ) == ["COMPLETED", "DISCONTINUED"]
        assert w.his == []


def test_fhir_poller_runs_with_the_server(tmp_path: Path) -> None:
    """[fhir] poll_s: ServiceRequests found on the FHIR server become orders in /worklist."""
    entries = [{"resource": service_request("R5"), "search": {"mode": "match"}},
               {"resource": PATIENT, "search": {"mode": "include"}}]
    with world(tmp_path, poll_s=0.2, bundle=entries) as w:
        doc = w.reviewer()
        for _ in range(50):
            listed = {i["accession_number"] for i in doc.get("/worklist").json()}
            if "ACC42" in listed:
                break
            time.sleep(0.1)
        assert "ACC42" in listed
        assert any(r[0] == "GET" and r[1].startswith("/fhir/ServiceRequest?")
                   for r in w.fhir.received)


def test_hl7_listener_over_tls(tmp_path: Path) -> None:
    """[hl7] tls_cert/tls_key: the listener speaks MLLP over TLS only."""
    from pki import make_ca, make_leaf
    from vid2dcm.orders.mllp import client_context

    ca_key, ca = make_ca(tmp_path, "ca")
    key, cert = make_leaf(tmp_path, "gateway", ca_key, ca)
    port = free_port()
    settings = ServiceSettings(
        data_dir=tmp_path / "data",
        tokens=(TokenEntry(sha256=hash_token(TOKEN), role="uploader", name="recorder"),),
        hl7=Hl7Settings(listen=f"127.0.0.1:{port}", tls_cert=cert, tls_key=key))
    with TestClient(create_app(settings)) as client:
        with pytest.raises(DeliveryError):
            send_message("127.0.0.1", port, ORM, timeout_s=3)
        ack = send_message("127.0.0.1", port, ORM, ssl_context=client_context(str(ca)))
        assert ack.code == "AA", ack.text
        listed = client.get("/worklist", headers={"Authorization": f"Bearer {TOKEN}"})
        assert [i["accession_number"] for i in listed.json()] == ["ACC100"]


def test_routing_table_naming_an_unknown_destination_stops_the_start(tmp_path: Path) -> None:
    from vid2dcm.core.errors import UsageError

    destinations = tmp_path / "destinations.toml"
    destinations.write_text('[destinations.pacs]\nae_title = "X"\nhost = "127.0.0.1"\n'
                            f"port = {free_port()}\n")
    settings = ServiceSettings(data_dir=tmp_path / "data", destinations_file=destinations,
                               routing=RoutingTable.model_validate(
                                   {"rules": [{"name": "r", "modality": ["ES"],
                                               "destinations": ["nowhere"]}]}))
    with pytest.raises(UsageError, match="routing rule 'r': unknown destination 'nowhere'"), \
            TestClient(create_app(settings)):
        pass


def test_service_toml_tables(tmp_path: Path) -> None:
    from vid2dcm.apps.gateway.settings import load_settings

    (tmp_path / "service.toml").write_text(
        '[service]\nport = 8081\n[hl7]\nlisten = "127.0.0.1:2575"\nhis = "his.local:2576"\n'
        '[fhir]\nserver = "https://fhir.local/r4"\nversion = "R4"\npoll_s = 60\n'
        '[routing]\ndefault = ["pacs"]\n[[routing.rules]]\nname = "big"\nmin_size = "2 GB"\n'
        'destinations = ["archive"]\n')
    s = load_settings(tmp_path)
    assert s.hl7 is not None and s.hl7.his == "his.local:2576"
    assert s.fhir is not None and s.fhir.version == "R4" and s.fhir.poll_s == 60
    assert s.routing is not None and s.routing.rules[0].min_size == 2 * 10**9
