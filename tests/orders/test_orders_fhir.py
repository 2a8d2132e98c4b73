"""FHIR R4/R5: ServiceRequest -> Order, ImagingStudy from real stored instances, sent to (and
polled from) a loopback HTTP server the test starts. Every resource the server receives is
validated again by fhir.resources on the server side."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import date
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from conftest import MakeClip
from vid2dcm.core.errors import DeliveryError, InputError
from vid2dcm.core.metadata import Metadata
from vid2dcm.orders.fhir import (
    V2_0203,
    FhirServer,
    ServiceRequestPoller,
    imaging_study,
    instances_from_files,
    model,
    order_from_service_request,
    poll_service_requests,
    post_resource,
    put_imaging_study,
)
from vid2dcm.orders.order import OrderSource, OrderStatus
from vid2dcm.orders.store import OrderStore
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec

Version = Any


def service_request(version: str, status: str = "active") -> dict[str, Any]:
    coding = {"system": "http://snomed.info/sct", "code": "73761001",
              "display": "Colonoscopy"}
    return {
        "resourceType": "ServiceRequest", "id": "sr-42", "status": status, "intent": "order",
        "identifier": [
            {"type": {"coding": [{"system": V2_0203, "code": "PLAC"}]}, "value": "PLC42"},
            {"type": {"coding": [{"system": V2_0203, "code": "ACSN"}]}, "value": "ACC42"}],
        "code": {"coding": [coding]} if version == "R4" else {"concept": {"coding": [coding]}},
        "subject": {"reference": "Patient/p42"},
        "occurrenceDateTime": "2026-12-03T09:30:00Z",
        "requester": {"display": "Gastroenterology"},
        **({"locationCode": [{"text": "ENDO"}]} if version == "R4"
           else {"location": [{"concept": {"text": "ENDO"}}]}),
    }


PATIENT = {"resourceType": "Patient", "id": "p42",
           "identifier": [{"system": "urn:oid:1.2.3.4.5", "value": "PAT42"}],
           "name": [{"family": "Doe", "given": ["Jane", "Q"]}], "birthDate": "1990-05-06",
           "gender": "female"}


class FhirStandIn:
    """A loopback FHIR server: records requests, validates bodies, serves a search Bundle."""

    def __init__(self, version: str, port: int = 0) -> None:
        self.version = version
        self.received: list[tuple[str, str, dict[str, Any] | None]] = []
        self.bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset",
                                       "entry": []}
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _body(self) -> dict[str, Any] | None:
                size = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(size)) if size else None

            def _answer(self, code: int, body: dict[str, Any]) -> None:
                raw = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/fhir+json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def do_PUT(self) -> None:
                body = self._body()
                stand_in.received.append((self.command, self.path, body))
                assert body is not None
                model(body["resourceType"], stand_in.version).model_validate(body)
                self._answer(201, {**body, "id": "is-1"})

            do_POST = do_PUT

            def do_GET(self) -> None:
                stand_in.received.append(("GET", self.path, None))
                self._answer(200, stand_in.bundle)

            def log_message(self, *_args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/fhir"


@pytest.fixture(params=["R4", "R5"])
def fhir(request: pytest.FixtureRequest) -> Iterator[FhirStandIn]:
    server = FhirStandIn(request.param)
    server.thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


@pytest.fixture(scope="module")
def stored_files(make_clip: MakeClip, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    clip = make_clip("fhir.mp4", ClipSpec(width=64, height=48, rate=Fraction(25), frames=25))
    out = tmp_path_factory.mktemp("fhir")
    md = Metadata(patient_id="PAT42", accession_number="ACC42", patient_name="Doe^Jane",
                  study_instance_uid="1.2.826.0.1.3680043.10.543.42")
    result = convert(clip, out, metadata=md, options=Request())
    return [w.path for w in result.files]


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_service_request_becomes_order(version: str) -> None:
    order = order_from_service_request(service_request(version), version, [PATIENT])
    assert order.source is OrderSource.FHIR and order.status is OrderStatus.SCHEDULED
    assert (order.placer_order_number, order.accession_number, order.fhir_id) == (
        "PLC42", "ACC42", "sr-42")
    md = order.metadata
    assert (md.patient_id, md.patient_name, md.patient_birth_date, md.patient_sex) == (
        "PAT42", "Doe^Jane^Q", date(1990, 5, 6), "F")
    assert order.patient_id_issuer == "urn:oid:1.2.3.4.5"
    assert order.procedure is not None and (order.procedure.value, order.procedure.scheme) == (
        "73761001", "SCT")
    assert md.requested_procedure_description == "Colonoscopy"
    assert (order.department, order.ordering_service) == ("ENDO", "Gastroenterology")
    revoked = order_from_service_request(service_request(version, "revoked"), version,
                                         [PATIENT])
    assert revoked.status is OrderStatus.CANCELLED


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_invalid_service_request_is_refused(version: str) -> None:
    bad = service_request(version)
    del bad["intent"]  # 1..1 in R4 and R5
    with pytest.raises(InputError, match="intent"):
        order_from_service_request(bad, version, [PATIENT])
    with pytest.raises(InputError, match="Patient"):
        order_from_service_request(service_request(version), version, [])


@pytest.mark.integration
def test_imaging_study_put_by_study_uid(fhir: FhirStandIn, stored_files: list[Path]) -> None:
    version = fhir.version
    order = order_from_service_request(service_request(version), version, [PATIENT])
    instances = instances_from_files(stored_files)
    study = imaging_study(order, instances, version=version,
                          wado_rs_url="http://127.0.0.1:8042/dicom-web")
    status, answer = put_imaging_study(FhirServer(fhir.url, version), study)
    assert status == 201 and answer is not None and answer["id"] == "is-1"
    method, path, body = fhir.received[-1]
    assert method == "PUT"
    query = parse_qs(urlsplit(path).query)
    assert urlsplit(path).path == "/fhir/ImagingStudy"
    assert query["identifier"] == ["urn:dicom:uid|urn:oid:1.2.826.0.1.3680043.10.543.42"]
    assert body is not None
    assert body["identifier"][0] == {"system": "urn:dicom:uid",
                                     "value": "urn:oid:1.2.826.0.1.3680043.10.543.42"}
    assert body["basedOn"] == [{"reference": "ServiceRequest/sr-42"}]
    assert body["numberOfInstances"] == len(stored_files) == 1
    instance = body["series"][0]["instance"][0]
    assert instance["uid"] == instances[0].sop_instance_uid
    assert instance["sopClass"]["code"] == f"urn:oid:{instances[0].sop_class_uid}"
    assert body["endpoint"] == [{"reference": "#wado"}]
    typed = model("ImagingStudy", version).model_validate(body)
    assert typed.subject is not None


@pytest.mark.integration
def test_poll_creates_and_updates_orders(fhir: FhirStandIn, tmp_path: Path) -> None:
    version = fhir.version
    fhir.bundle["entry"] = [{"resource": service_request(version), "search": {"mode": "match"}},
                            {"resource": PATIENT, "search": {"mode": "include"}}]
    bad = service_request(version)
    bad["id"], bad["subject"] = "sr-bad", {"reference": "Patient/unknown"}
    bad["identifier"] = bad["identifier"][1:]
    fhir.bundle["entry"].append({"resource": bad, "search": {"mode": "match"}})
    fhir.bundle["meta"] = {"lastUpdated": "2026-12-03T10:00:00Z"}
    store = OrderStore(tmp_path / "orders.sqlite")
    poller = ServiceRequestPoller(FhirServer(fhir.url, version), store)
    result = poller.poll_once()
    assert [o.placer_order_number for o in result.orders] == ["PLC42"]
    assert result.refused == ("ServiceRequest/sr-bad: ServiceRequest.subject does not resolve "
                              "to a Patient (contain or include it)",)
    assert store.find_by_accession("ACC42").patient_id == "PAT42"  # type: ignore[union-attr]
    method, path, _ = fhir.received[-1]
    assert method == "GET" and path.startswith("/fhir/ServiceRequest?")
    first = parse_qs(urlsplit(path).query)
    assert first["_include"] == ["ServiceRequest:subject"] and first["status"] == ["active"]

    fhir.bundle["entry"] = [{"resource": service_request(version, "revoked")},
                            {"resource": PATIENT}]
    poller.start()
    deadline = time.monotonic() + 10
    while store.find_by_accession("ACC42").status is not OrderStatus.CANCELLED:  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "the revocation never arrived"
        time.sleep(0.1)
    poller.stop()
    later = parse_qs(urlsplit(fhir.received[-1][1]).query)
    assert later["_lastUpdated"] == ["gt2026-12-03T10:00:00+00:00"] and "status" not in later
    status, _ = post_resource(FhirServer(fhir.url, version), PATIENT)
    assert status == 201 and fhir.received[-1][:2] == ("POST", "/fhir/Patient")


def test_unreachable_fhir_server_is_a_delivery_error() -> None:
    from dcmtk_peers import free_port
    with pytest.raises(DeliveryError, match="unreachable"):
        poll_service_requests(FhirServer(f"http://127.0.0.1:{free_port()}/fhir", "R5",
                                         timeout_s=2))


@pytest.mark.parametrize("version", ["R4", "R5"])
def test_posted_service_request_is_stored(version: str, tmp_path: Path) -> None:
    from vid2dcm.orders.fhir import accept_service_request, operation_outcome

    store = OrderStore(tmp_path / "orders.sqlite")
    body = service_request(version)
    body["contained"] = [PATIENT]
    body["subject"] = {"reference": "#p42"}
    order = accept_service_request(store, json.dumps(body), version)
    assert store.find_by_accession("ACC42") == store.get(order.placer_order_number)
    with pytest.raises(InputError):
        accept_service_request(store, b"[1, 2]", version)
    with pytest.raises(InputError) as info:
        accept_service_request(store, {**body, "status": 7}, version)
    outcome = operation_outcome(str(info.value))
    model("OperationOutcome", version).model_validate(outcome)
    assert len(store.all()) == 1
