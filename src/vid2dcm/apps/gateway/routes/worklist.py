"""Today's scheduled procedures from the configured Modality Worklist and the HL7/FHIR orders
the gateway keeps (merged; a worklist entry wins over an order with the same accession), for
picking the patient on the staff page."""

from __future__ import annotations

import re

from fastapi import APIRouter, Depends, HTTPException

from vid2dcm.apps.gateway.deps import AuditDep, Settings, needs
from vid2dcm.apps.gateway.models import WorklistItem
from vid2dcm.core.dates import parse_day
from vid2dcm.core.errors import Vid2DcmError

router = APIRouter(tags=["worklist"], dependencies=[Depends(needs("worklist"))])


@router.get("/worklist", response_model=list[WorklistItem])
def worklist(settings: Settings, audit: AuditDep, date: str | None = None,
             modality: str | None = None) -> list[WorklistItem]:
    """Scheduled procedures (date: today or YYYYMMDD; modality: a DICOM code such as ES)."""
    from vid2dcm.apps.gateway.integration import open_orders
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.worklist import query

    try:
        day = parse_day(date) if date else None
    except ValueError as exc:
        raise HTTPException(400, "date must be today or YYYYMMDD") from exc
    if modality is not None and not re.fullmatch(r"[A-Z]{2,3}", modality):
        raise HTTPException(400, "modality must be a DICOM modality code such as ES")
    orders = open_orders(settings, day, modality)  # HL7/FHIR orders kept by the gateway
    if not settings.worklist and not orders and settings.hl7 is None \
            and settings.fhir is None:
        raise HTTPException(404, "no worklist is configured")
    entries = []
    if settings.worklist:
        try:
            entries = query(parse_destination(settings.worklist, settings.destinations_file),
                            day, modality)
        except Vid2DcmError as exc:
            raise HTTPException(502, f"worklist unavailable: {exc}") from exc
    audit("worklist query")
    items: list[WorklistItem] = list(entries)
    known = {i.accession_number for i in items if i.accession_number}
    return items + [WorklistItem.model_validate(o) for o in orders
                    if not o["accession_number"] or o["accession_number"] not in known]
