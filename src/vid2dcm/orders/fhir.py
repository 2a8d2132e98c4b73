"""FHIR orders in, ImagingStudy out (R4 and R5, validated with fhir.resources).

In: a ServiceRequest (posted to the gateway, or found by polling a FHIR server) becomes an
Order; the patient comes from a contained or included Patient resource. Out: after storage an
ImagingStudy built from the stored instances, identified by the Study Instance UID
(`urn:dicom:uid` / `urn:oid:<uid>`, as FHIR's ImagingStudy page prescribes), `basedOn` the
ServiceRequest, with an Endpoint (WADO-RS) for viewers, created or updated with a conditional
PUT on that identifier (idempotent: a re-sent study updates the one resource).

fhir.resources 8 ships R5 as its default models and R4B (4.3) as the nearest to R4: the "R4"
models here are R4B's, whose ServiceRequest and ImagingStudy have the R4 shape.
Every resource is validated before it is used or sent; HTTP goes through urllib (no extra
client), one short request at a time.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError
from pydicom import dcmread

from vid2dcm.core.errors import DeliveryError, InputError
from vid2dcm.core.metadata import CodedConcept
from vid2dcm.orders.hl7_mapping import check_metadata
from vid2dcm.orders.order import Order, OrderSource, OrderStatus

log = logging.getLogger(__name__)

Version = Literal["R4", "R5"]

DICOM_UID_SYSTEM = "urn:dicom:uid"
DCM_SYSTEM = "http://dicom.nema.org/resources/ontology/DCM"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

FHIR_FIELDS: tuple[tuple[str, str], ...] = (
    ("ServiceRequest.identifier[type=PLAC].value", "order.placer_order_number"),
    ("ServiceRequest.identifier[type=FILL].value", "order.filler_order_number"),
    ("ServiceRequest.identifier[type=ACSN].value", "metadata.accession_number"),
    ("ServiceRequest.id", "order.fhir_id (ImagingStudy.basedOn)"),
    ("ServiceRequest.status", "order.status (active/draft/on-hold -> scheduled, completed, "
     "revoked/entered-in-error -> cancelled)"),
    ("ServiceRequest.code.coding[0] (R5: code.concept.coding[0])", "order.procedure"),
    ("ServiceRequest.code.text or coding[0].display",
     "metadata.requested_procedure_description"),
    ("ServiceRequest.occurrenceDateTime or occurrencePeriod.start (as local time)",
     "order.scheduled_start"),
    ("ServiceRequest.locationCode[0] (R4) or location[0].concept (R5)", "order.department"),
    ("ServiceRequest.requester.display", "order.ordering_service"),
    ("Patient.identifier[0].value", "metadata.patient_id"),
    ("Patient.identifier[0].system", "order.patient_id_issuer"),
    ("Patient.name[0] family^given", "metadata.patient_name"),
    ("Patient.birthDate", "metadata.patient_birth_date"),
    ("Patient.gender (male/female/other; unknown left empty)", "metadata.patient_sex"),
)
"""FHIR -> record fields (docs/integration.md prints this table)."""

STATUS = {"active": OrderStatus.SCHEDULED, "draft": OrderStatus.SCHEDULED,
          "on-hold": OrderStatus.SCHEDULED, "completed": OrderStatus.COMPLETED,
          "revoked": OrderStatus.CANCELLED, "entered-in-error": OrderStatus.CANCELLED}
SEX = {"male": "M", "female": "F", "other": "O"}


def model(resource_type: str, version: Version) -> Any:
    """The fhir.resources model class of a resource type for R4 (R4B) or R5."""
    module = resource_type.lower()
    package = "fhir.resources.R4B" if version == "R4" else "fhir.resources"
    mod = __import__(f"{package}.{module}", fromlist=[resource_type])
    return getattr(mod, resource_type)


def validated(resource: dict[str, Any], version: Version) -> dict[str, Any]:
    """The resource checked by fhir.resources (cardinality, types; value sets are not
    checked by that library), as JSON-ready data; InputError names the first problem."""
    kind = resource.get("resourceType")
    if not isinstance(kind, str):
        raise InputError("FHIR resource has no resourceType")
    try:
        obj = model(kind, version).model_validate(resource)
    except (ValidationError, ValueError, ImportError, AttributeError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else None
        where = ".".join(str(p) for p in detail["loc"]) if detail else ""
        msg = detail["msg"] if detail else str(exc)
        raise InputError(f"FHIR {version} {kind}: {where}: {msg}".replace(": :", ":")) from None
    data: dict[str, Any] = json.loads(obj.model_dump_json(exclude_none=True))
    return data


# --- ServiceRequest -> Order ---------------------------------------------------------------

def _identifier(resource: dict[str, Any], code: str) -> str:
    for ident in resource.get("identifier", []):
        for coding in ident.get("type", {}).get("coding", []):
            if coding.get("code") == code:
                return str(ident.get("value", ""))
    return ""


def _patient_for(request: dict[str, Any], patients: Iterable[dict[str, Any]]) -> dict[str, Any]:
    ref = request.get("subject", {}).get("reference", "")
    candidates: list[dict[str, Any]] = [*request.get("contained", []), *patients]
    for p in candidates:
        if p.get("resourceType") != "Patient":
            continue
        if ref in (f"#{p.get('id')}", f"Patient/{p.get('id')}") or (
                ref.endswith(f"/Patient/{p.get('id')}")):
            return p
    ident = request.get("subject", {}).get("identifier")
    if ident:
        return {"resourceType": "Patient", "identifier": [ident]}
    raise InputError("ServiceRequest.subject does not resolve to a Patient (contain or "
                     "include it)")


def order_from_service_request(resource: dict[str, Any], version: Version = "R5",
                               patients: Iterable[dict[str, Any]] = ()) -> Order:
    """An Order from a ServiceRequest (validated first) and its Patient."""
    request = validated(resource, version)
    if request.get("resourceType") != "ServiceRequest":
        raise InputError("expected a ServiceRequest")
    patient = _patient_for(request, [validated(p, version) for p in patients])
    placer = _identifier(request, "PLAC") or str(request.get("id", ""))
    if not placer:
        raise InputError("ServiceRequest needs an id or a PLAC identifier")
    metadata: dict[str, object] = {}
    idents = patient.get("identifier", [])
    if not idents or not idents[0].get("value"):
        raise InputError("Patient has no identifier value")
    metadata["patient_id"] = idents[0]["value"]
    names = patient.get("name", [])
    if names:
        family = names[0].get("family", "")
        given = names[0].get("given", [])
        metadata["patient_name"] = "^".join([family, *given[:2]]).rstrip("^")
    if patient.get("birthDate"):
        metadata["patient_birth_date"] = date.fromisoformat(patient["birthDate"][:10])
    if patient.get("gender") in SEX:
        metadata["patient_sex"] = SEX[patient["gender"]]
    accession = _identifier(request, "ACSN")
    if accession:
        metadata["accession_number"] = accession
    code = request.get("code", {})
    if version == "R5":
        code = code.get("concept", {})
    codings = code.get("coding", [])
    procedure = None
    if codings and codings[0].get("code"):
        c = codings[0]
        procedure = CodedConcept(value=c["code"][:64], scheme=_scheme(c.get("system", "")),
                                 meaning=(c.get("display") or c["code"])[:64])
    description = code.get("text") or (codings[0].get("display", "") if codings else "")
    if description:
        metadata["requested_procedure_description"] = description[:64]
    start = request.get("occurrenceDateTime") or request.get("occurrencePeriod", {}).get(
        "start")
    department = ""
    if version == "R4":
        loc = request.get("locationCode", [{}])[0]
    else:
        loc = request.get("location", [{}])[0].get("concept", {})
    if loc:
        department = loc.get("text") or (loc.get("coding", [{}])[0].get("code", ""))
    try:
        return Order(placer_order_number=placer,
                     filler_order_number=_identifier(request, "FILL"),
                     status=STATUS.get(request.get("status", ""), OrderStatus.SCHEDULED),
                     source=OrderSource.FHIR,
                     metadata=check_metadata(metadata),
                     patient_id_issuer=str(idents[0].get("system", ""))[:64],
                     procedure=procedure,
                     department=department[:64],
                     ordering_service=str(request.get("requester", {}).get("display", ""))[:64],
                     scheduled_start=_datetime(start) if start else None,
                     fhir_id=str(request.get("id", "")))
    except (ValidationError, ValueError) as exc:
        raise InputError(f"ServiceRequest: {exc}") from None


def _scheme(system: str) -> str:
    known = {"http://snomed.info/sct": "SCT", "http://loinc.org": "LN",
             "http://www.radlex.org": "RADLEX", DCM_SYSTEM: "DCM"}
    return known.get(system, "L")


def _datetime(text: str) -> datetime:
    """A FHIR dateTime as local wall-clock time (DICOM DA/TM carry no zone)."""
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return value.astimezone().replace(tzinfo=None) if value.tzinfo else value


# --- stored instances -> ImagingStudy ------------------------------------------------------

@dataclass(frozen=True)
class StoredInstance:
    study_instance_uid: str
    series_instance_uid: str
    series_number: int | None
    modality: str
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None
    series_description: str = ""


def instances_from_files(paths: Iterable[Path]) -> list[StoredInstance]:
    """The facts an ImagingStudy needs, read from the header of each stored file."""
    found = []
    for path in paths:
        ds = dcmread(path, stop_before_pixels=True)
        found.append(StoredInstance(
            str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID),
            int(ds.SeriesNumber) if ds.get("SeriesNumber") not in (None, "") else None,
            str(ds.get("Modality", "")), str(ds.SOPClassUID), str(ds.SOPInstanceUID),
            int(ds.InstanceNumber) if ds.get("InstanceNumber") not in (None, "") else None,
            str(ds.get("SeriesDescription", ""))))
    return found


def _modality(code: str, version: Version) -> Any:
    coding = {"system": DCM_SYSTEM, "code": code}
    return coding if version == "R4" else {"coding": [coding]}


def imaging_study(order: Order | None, instances: Sequence[StoredInstance], *,
                  version: Version = "R5", wado_rs_url: str = "",
                  patient_reference: str = "") -> dict[str, Any]:
    """The ImagingStudy resource (validated) for the stored instances of one study."""
    if not instances:
        raise InputError("an ImagingStudy needs at least one stored instance")
    study_uid = instances[0].study_instance_uid
    if any(i.study_instance_uid != study_uid for i in instances):
        raise InputError("instances belong to more than one study")
    series: dict[str, list[StoredInstance]] = {}
    for inst in instances:
        series.setdefault(inst.series_instance_uid, []).append(inst)
    subject: dict[str, Any]
    if patient_reference:
        subject = {"reference": patient_reference}
    elif order is not None and order.patient_id:
        ident: dict[str, Any] = {"value": order.patient_id}
        if order.patient_id_issuer:
            ident["system"] = order.patient_id_issuer
        subject = {"identifier": ident, "type": "Patient"}
    else:
        raise InputError("an ImagingStudy needs a subject: an order with a patient ID or a "
                         "patient reference")
    modalities = sorted({i.modality for i in instances if i.modality})
    resource: dict[str, Any] = {
        "resourceType": "ImagingStudy",
        "identifier": [{"system": DICOM_UID_SYSTEM, "value": f"urn:oid:{study_uid}"}],
        "status": "available",
        "subject": subject,
        "numberOfSeries": len(series),
        "numberOfInstances": len(instances),
        "modality": [_modality(m, version) for m in modalities],
        "series": [],
    }
    if order is not None:
        if order.accession_number:
            resource["identifier"].append({
                "type": {"coding": [{"system": V2_0203, "code": "ACSN"}]},
                "value": order.accession_number})
        if order.fhir_id:
            resource["basedOn"] = [{"reference": f"ServiceRequest/{order.fhir_id}"}]
        else:
            resource["basedOn"] = [{"type": "ServiceRequest", "identifier": {
                "type": {"coding": [{"system": V2_0203, "code": "PLAC"}]},
                "value": order.placer_order_number}}]
        if order.metadata.requested_procedure_description:
            resource["description"] = order.metadata.requested_procedure_description
    if wado_rs_url:
        resource["contained"] = [{
            "resourceType": "Endpoint", "id": "wado", "status": "active",
            "connectionType": ({"system": "http://terminology.hl7.org/CodeSystem/"
                                "endpoint-connection-type", "code": "dicom-wado-rs"}
                               if version == "R4" else
                               [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/"
                                             "endpoint-connection-type",
                                             "code": "dicom-wado-rs"}]}]),
            "address": wado_rs_url,
        }]
        if version == "R4":
            resource["contained"][0]["payloadType"] = [{"text": "DICOM"}]
        else:
            resource["contained"][0]["payload"] = [{"type": [{"text": "DICOM"}]}]
        resource["endpoint"] = [{"reference": "#wado"}]
    for uid, items in series.items():
        first = items[0]
        entry: dict[str, Any] = {
            "uid": uid,
            "modality": _modality(first.modality or "XC", version),
            "numberOfInstances": len(items),
            "instance": [{
                "uid": i.sop_instance_uid,
                "sopClass": {"system": "urn:ietf:rfc:3986",
                             "code": f"urn:oid:{i.sop_class_uid}"},
                **({"number": i.instance_number} if i.instance_number is not None else {}),
            } for i in items],
        }
        if first.series_number is not None:
            entry["number"] = first.series_number
        if first.series_description:
            entry["description"] = first.series_description
        resource["series"].append(entry)
    return validated(resource, version)


# --- talking to a FHIR server --------------------------------------------------------------

class FhirRefused(DeliveryError):
    """The FHIR server answered with an HTTP error status (kept: 408, 429 and 5xx are worth
    another try, other 4xx are not)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status

    @property
    def transient(self) -> bool:
        return self.status in (408, 429) or self.status >= 500


@dataclass(frozen=True)
class FhirServer:
    base_url: str
    version: Version = "R5"
    bearer_token: str | None = None
    ca_file: Path | None = None
    timeout_s: float = 30.0

    def request(self, method: str, path: str, body: dict[str, Any] | None = None
                ) -> tuple[int, dict[str, Any] | None]:
        url = self.base_url.rstrip("/") + "/" + path.lstrip("/")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Accept", "application/fhir+json")
        if data is not None:
            req.add_header("Content-Type", "application/fhir+json")
        if self.bearer_token:
            req.add_header("Authorization", f"Bearer {self.bearer_token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file \
            else None
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s, context=context) as r:
                raw = r.read()
                status = int(r.status)
        except urllib.error.HTTPError as exc:
            raise FhirRefused(f"FHIR server {self.base_url}: {method} {path.split('?')[0]} "
                              f"answered {exc.code}", exc.code) from None
        except (OSError, ValueError) as exc:
            raise DeliveryError(f"FHIR server {self.base_url} unreachable: {exc}") from None
        return status, (json.loads(raw) if raw.strip() else None)


def put_imaging_study(server: FhirServer, study: dict[str, Any]) -> tuple[int, dict[str, Any]
                                                                           | None]:
    """Create or update by the Study Instance UID (conditional update, FHIR RESTful API
    3.1.0.4.3): `PUT ImagingStudy?identifier=urn:dicom:uid|urn:oid:<uid>`."""
    study = validated(study, server.version)
    uid = next(i["value"] for i in study["identifier"] if i.get("system") == DICOM_UID_SYSTEM)
    query = urllib.parse.urlencode({"identifier": f"{DICOM_UID_SYSTEM}|{uid}"})
    return server.request("PUT", f"ImagingStudy?{query}", study)


def post_resource(server: FhirServer, resource: dict[str, Any]) -> tuple[int, dict[str, Any]
                                                                          | None]:
    resource = validated(resource, server.version)
    return server.request("POST", str(resource["resourceType"]), resource)


@dataclass(frozen=True)
class PollResult:
    orders: tuple[Order, ...]
    refused: tuple[str, ...]
    """One line per ServiceRequest that could not become an order (the rest still do)."""
    server_time: datetime | None
    """Bundle.meta.lastUpdated of the first page: the next poll's `since`."""


def poll_service_requests(server: FhirServer, since: datetime | None = None,
                          max_pages: int = 20) -> PollResult:
    """ServiceRequests with their patients included, as Orders; follows `next` links up to
    max_pages. The first poll (no `since`) asks for active requests only; later polls ask for
    everything updated since, so revocations and completions arrive too."""
    params = {"_include": "ServiceRequest:subject", "_count": "100"}
    if since is None:
        params["status"] = "active"
    else:
        params["_lastUpdated"] = f"gt{since.isoformat()}"
    path: str | None = f"ServiceRequest?{urllib.parse.urlencode(params)}"
    orders: list[Order] = []
    refused: list[str] = []
    server_time: datetime | None = None
    for page in range(max_pages):
        if path is None:
            break
        _status, bundle = server.request("GET", path)
        if not bundle or bundle.get("resourceType") != "Bundle":
            raise DeliveryError(f"FHIR server {server.base_url}: search did not return a "
                                "Bundle")
        bundle = validated(bundle, server.version)
        if page == 0 and bundle.get("meta", {}).get("lastUpdated"):
            server_time = datetime.fromisoformat(
                bundle["meta"]["lastUpdated"].replace("Z", "+00:00"))
        resources = [e["resource"] for e in bundle.get("entry", []) if "resource" in e]
        patients = [r for r in resources if r.get("resourceType") == "Patient"]
        for r in resources:
            if r.get("resourceType") != "ServiceRequest":
                continue
            try:
                orders.append(order_from_service_request(r, server.version, patients))
            except InputError as exc:
                refused.append(f"ServiceRequest/{r.get('id', '?')}: {exc}")
        nxt = next((link["url"] for link in bundle.get("link", [])
                    if link.get("relation") == "next"), None)
        base = server.base_url.rstrip("/")
        path = nxt[len(base):] if nxt and nxt.startswith(base) else None
    return PollResult(tuple(orders), tuple(refused), server_time)


class ServiceRequestPoller:
    """Polls a FHIR server every `interval_s` and stores what it finds, in a thread. The
    `since` of each poll is the server's time of the previous one (its Bundle.meta.lastUpdated),
    or our clock when the server gives none."""

    def __init__(self, server: FhirServer, store: Any, interval_s: float = 60.0, *,
                 on_poll: Callable[[PollResult], None] | None = None) -> None:
        """`on_poll` hears what each poll stored and refused (the gateway's audit trail)."""
        self.server, self.store, self.interval_s = server, store, interval_s
        self.on_poll = on_poll
        self.since: datetime | None = None
        self.last_error: str = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> PollResult:
        started = datetime.now(UTC)
        result = poll_service_requests(self.server, self.since)
        self.store.put_all(result.orders)
        self.since = result.server_time or started
        for line in result.refused:
            log.warning("FHIR order refused: %s", line.split(":")[0])
        if self.on_poll is not None:
            self.on_poll(result)
        return result

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
                self.last_error = ""
            except DeliveryError as exc:
                self.last_error = str(exc)
                log.warning("FHIR poll failed: %s", exc)
            self._stop.wait(self.interval_s)

    def start(self) -> ServiceRequestPoller:
        self._thread = threading.Thread(target=self._run, name="vid2dcm-fhir-poll",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.server.timeout_s + 5)


# --- for the gateway's POST /fhir/ServiceRequest ---------------------------------------------

def accept_service_request(store: Any, body: bytes | str | dict[str, Any],
                           version: Version = "R5") -> Order:
    """Validate a posted ServiceRequest (with its Patient contained) and store it as an
    order; InputError (-> 400 with `operation_outcome`) when it cannot be an order."""
    if not isinstance(body, dict):
        try:
            body = json.loads(body)
        except ValueError:
            raise InputError("body is not JSON") from None
        if not isinstance(body, dict):
            raise InputError("body is not a FHIR resource")
    order = order_from_service_request(body, version)
    store.put(order)
    return order


def operation_outcome(message: str, code: str = "invalid") -> dict[str, Any]:
    """A FHIR OperationOutcome for an error answer (same shape in R4 and R5)."""
    return {"resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": code, "diagnostics": message}]}
