"""`POST /fhir/ServiceRequest`: a HIS (or an order placer) creates an order over FHIR, R4 or
R5 (fhir.resources validates it). The Patient comes contained in the ServiceRequest (or as a
subject identifier). Errors are FHIR OperationOutcomes (FHIR RESTful API 3.1.0.4: 400 for a
resource that cannot be read, 422 for one that breaks a rule); the answer never echoes patient
data. The caller needs the review permission: an order names a patient, which an uploader
may not invent."""

from __future__ import annotations

import re
from typing import Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from vid2dcm.apps.gateway.deps import AuditDep, Settings, needs
from vid2dcm.apps.gateway.integration import fhir_action, order_store
from vid2dcm.core.errors import InputError
from vid2dcm.orders.fhir import accept_service_request, operation_outcome

router = APIRouter(tags=["fhir"], dependencies=[Depends(needs("review"))])

FHIR_JSON = "application/fhir+json"
MAX_BODY = 1 << 20


def fhir_version(content_type: str, query: str | None, default: str) -> Literal["R4", "R5"]:
    """R4 or R5: `?_fhirVersion=R4`, else the media type's fhirVersion parameter (4.0/4.3 ->
    R4, 5.0 -> R5, FHIR R5 3.2.0.2), else the gateway's [fhir] version."""
    if query:
        wanted = query.upper()
    else:
        match = re.search(r"fhirVersion=\"?(\d)", content_type)
        wanted = {"4": "R4", "5": "R5"}.get(match[1], "?") if match else default
    return "R4" if wanted == "R4" else "R5"


@router.post("/fhir/ServiceRequest", status_code=201)
async def create_service_request(request: Request, settings: Settings, audit: AuditDep,
                                 _fhirVersion: str | None = None) -> JSONResponse:
    """Store the ServiceRequest as an order (an existing placer number is replaced); the
    order then appears in /worklist and can bind a job by its accession number."""
    if _fhirVersion is not None and _fhirVersion.upper() not in ("R4", "R5"):
        return _outcome(400, "_fhirVersion must be R4 or R5", "value")
    version = fhir_version(request.headers.get("content-type", ""), _fhirVersion,
                           settings.fhir.version if settings.fhir else "R5")
    body = await request.body()
    if len(body) > MAX_BODY:
        return _outcome(413, "the resource is larger than 1 MiB", "too-costly")
    try:
        order = accept_service_request(order_store(settings), body, version)
    except InputError as exc:
        audit("order error (FHIR)")
        return _outcome(422 if str(exc).startswith("FHIR") else 400, _no_values(str(exc)))
    audit(fhir_action(order))
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational",
        "diagnostics": f"order {order.placer_order_number} stored ({version})"}]},
        status_code=201, media_type=FHIR_JSON)


def _no_values(message: str) -> str:
    """The problem without the offending values (pydantic quotes input_value: it may be a
    patient's name)."""
    return " ".join(line.strip() for line in message.splitlines()
                    if "input_value" not in line)


def _outcome(status: int, message: str, code: str = "invalid") -> JSONResponse:
    return JSONResponse(operation_outcome(message, code), status_code=status,
                        media_type=FHIR_JSON)
