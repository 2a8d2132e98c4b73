"""Orders in, results out, for the gateway (issue 15): the glue between the job worker and
the orders/ library.

- Orders: one OrderStore (data_dir/orders.sqlite) fed by the MLLP listener, the FHIR poller and
  POST /fhir/ServiceRequest; /worklist and job binding read it beside the DICOM worklist.
- Routing: a job that names no destination goes where the settings' routing table says, and
  the reasons are kept in its result ("sent to A because ...").
- MPPS (PS3.4 F.7) for jobs bound to an order: N-CREATE IN PROGRESS before conversion,
  N-SET COMPLETED with the Performed Series at storage, DISCONTINUED on failure. The step
  (its UID) is kept in data_dir/mpps/<job>.json so another worker process can end it.
- Results: ORU^R01 to the HIS over MLLP and an ImagingStudy to the FHIR server once a study is
  stored. These are tried ONCE; the outcome (sent, or the reason it was not) is recorded in the
  job result's `notices` and the log. They are not retried through the DICOM outbox (its
  parcels are DICOM destinations); a failed notice is visible on GET /jobs/{id}.

Nothing here logs patient data: notices name the order's placer number, never the patient.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from fastapi import FastAPI
from pydicom import dcmread

from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.core.errors import UsageError, Vid2DcmError
from vid2dcm.core.metadata import Metadata
from vid2dcm.orders.order import Order, OrderStatus
from vid2dcm.orders.routing import Decision, Facts, route
from vid2dcm.orders.store import OrderStore

log = logging.getLogger(__name__)


def order_store(settings: ServiceSettings) -> OrderStore:
    return OrderStore(settings.data_dir / "orders.sqlite")


def find_order(settings: ServiceSettings, accession: str | None) -> Order | None:
    """The open HL7/FHIR order with this accession number, if any."""
    if not accession:
        return None
    order = order_store(settings).find_by_accession(accession)
    return order if order is not None and order.status.is_open else None


def set_status(settings: ServiceSettings, order: Order, status: OrderStatus) -> None:
    store = order_store(settings)
    with store.update_lock:
        current = store.get(order.placer_order_number) or order
        store.put(current.model_copy(update={"status": status}))


# --- listener and poller, for the app's lifespan --------------------------------------------

@dataclass
class Services:
    """What runs beside the API while the gateway is up."""

    stoppers: list[object] = field(default_factory=list)

    def stop(self) -> None:
        for service in reversed(self.stoppers):
            try:
                service.stop()  # type: ignore[attr-defined]
            except Exception as exc:  # stopping one must not keep the others running
                log.warning("stopping %s: %s", type(service).__name__, type(exc).__name__)
        self.stoppers.clear()


def check(settings: ServiceSettings) -> None:
    """UsageError when the routing table or the MPPS name a destination not configured."""
    from vid2dcm.delivery.destinations import load_destinations

    known = load_destinations(settings.destinations_file) if settings.destinations_file else {}
    if settings.routing is not None:
        settings.routing.check_destinations(known)
    research = settings.deidentify.research_destination if settings.deidentify else None
    if research and research not in known:  # de-identified exports (issue 16)
        raise UsageError(f"[deidentify] research_destination {research!r} is not a "
                         "destination in the destinations file")


def start_services(settings: ServiceSettings) -> Services:
    """Start the MLLP order listener ([hl7] listen) and the FHIR poller ([fhir] poll_s)."""
    from vid2dcm.apps.gateway.audit import record
    from vid2dcm.apps.gateway.store import open_store
    from vid2dcm.orders.fhir import FhirServer, ServiceRequestPoller
    from vid2dcm.orders.inbox import handle
    from vid2dcm.orders.mllp import MllpServer, parse_address, server_context

    check(settings)
    services = Services()
    store = order_store(settings)
    jobs = open_store(settings)  # the audit trail: every HL7 message and its answer code
    hl7s = settings.hl7
    try:
        if hl7s is not None and hl7s.listen:
            host, port = parse_address(hl7s.listen)
            context = (server_context(str(hl7s.tls_cert), str(hl7s.tls_key),
                                      str(hl7s.tls_client_ca) if hl7s.tls_client_ca else None)
                       if hl7s.tls_cert and hl7s.tls_key else None)
            def on_message(text: str) -> str:
                ack, outcome = handle(text, store, application=hl7s.application,
                                      facility=hl7s.facility)
                record(jobs, settings, "hl7-listener", f"order message (HL7) {outcome.code}",
                       role="system")
                return ack

            listener = MllpServer(on_message, host, port, ssl_context=context)
            services.stoppers.append(listener.start())
            log.info("HL7 order listener on %s:%d", *listener.address)
        fhirs = settings.fhir
        if fhirs is not None and fhirs.server and fhirs.poll_s > 0:
            server = FhirServer(fhirs.server, fhirs.version, fhirs.bearer_token, fhirs.ca_file)
            services.stoppers.append(ServiceRequestPoller(server, store, fhirs.poll_s).start())
    except BaseException:
        services.stop()
        raise
    return services


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """The app's lifespan: the listener and poller run exactly while the server does."""
    services = start_services(app.state.settings)
    app.state.integration = services
    try:
        yield
    finally:
        services.stop()


# --- the worklist beside the DICOM one ------------------------------------------------------

def open_orders(settings: ServiceSettings, day: date | None, modality: str | None
                ) -> list[dict[str, str]]:
    """Open orders of the day (and unscheduled ones) as worklist entry fields."""
    orders = order_store(settings).for_day(day or date.today(), modality)
    return [o.worklist_fields() for o in orders]


# --- routing --------------------------------------------------------------------------------

def routed(settings: ServiceSettings, order: Order | None, files: list[Path]) -> Decision | None:
    """The routing table's decision for a job that names no destination (None: no table)."""
    if settings.routing is None:
        return None
    modality = ""
    if files:
        modality = str(dcmread(files[0], stop_before_pixels=True).get("Modality", ""))
    size = sum(f.stat().st_size for f in files)
    return route(settings.routing, Facts.of(order, size, modality))


# --- MPPS -----------------------------------------------------------------------------------

STRUCTURED_DOCUMENTS = "1.2.840.10008.5.1.4.1.1.88."
"""SR/KOS SOP classes (PS3.4 B.5): not images performed, so not in the Referenced Image
Sequence of the Performed Series."""


def _mpps_file(settings: ServiceSettings, job_id: str) -> Path:
    return settings.data_dir / "mpps" / f"{job_id}.json"


def mpps_start(settings: ServiceSettings, job_id: str, metadata: Metadata, modality: str
               ) -> str:
    """N-CREATE IN PROGRESS for a job bound to an order; a notice line."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.mpps import start_procedure_step

    if not settings.mpps_destination:
        return ""
    try:
        dest = parse_destination(settings.mpps_destination, settings.destinations_file)
        step = start_procedure_step(dest, metadata,
                                    study_instance_uid=metadata.study_instance_uid or "",
                                    modality=modality)
    except Vid2DcmError as exc:
        return f"MPPS IN PROGRESS not sent: {exc}"
    path = _mpps_file(settings, job_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps({"uid": step.sop_instance_uid,
                                "started": step.started.isoformat()}))
    return "MPPS IN PROGRESS sent"


def mpps_finish(settings: ServiceSettings, job_id: str, files: list[Path], completed: bool
                ) -> str:
    """N-SET COMPLETED (with the Performed Series of `files`) or DISCONTINUED; a notice."""
    from vid2dcm.core.uids import new_uid
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.mpps import (
        PerformedSeries,
        ProcedureStep,
        complete_procedure_step,
        discontinue_procedure_step,
    )

    path = _mpps_file(settings, job_id)
    if not settings.mpps_destination or not path.exists():
        return ""
    saved = json.loads(path.read_text())
    series: dict[str, list[tuple[str, str]]] = {}
    names: dict[str, str] = {}
    for f in files:
        ds = dcmread(f, stop_before_pixels=True)
        if str(ds.SOPClassUID).startswith(STRUCTURED_DOCUMENTS):
            continue  # the KOS is no image of the procedure; the series list is of images
        series.setdefault(str(ds.SeriesInstanceUID), []).append(
            (str(ds.SOPClassUID), str(ds.SOPInstanceUID)))
        names.setdefault(str(ds.SeriesInstanceUID), str(ds.get("SeriesDescription", "")))
    performed = [PerformedSeries(uid, names[uid], tuple(items)) for uid, items in series.items()]
    if not performed:  # nothing was made: one series item with no images (PS3.4 F.7.2.2.2)
        performed = [PerformedSeries(new_uid(), "not recorded", ())]
    status = "COMPLETED" if completed else "DISCONTINUED"
    try:
        dest = parse_destination(settings.mpps_destination, settings.destinations_file)
        step = ProcedureStep(saved["uid"], datetime.fromisoformat(saved["started"]), dest)
        if completed:
            complete_procedure_step(step, performed)
        else:
            discontinue_procedure_step(step, performed, "equipment")
    except Vid2DcmError as exc:
        return f"MPPS {status} not sent: {exc}"
    path.unlink(missing_ok=True)
    return f"MPPS {status} sent"


# --- results: ORU and ImagingStudy ----------------------------------------------------------

def announce(settings: ServiceSettings, order: Order | None, study_uid: str, files: list[Path]
             ) -> list[str]:
    """Tell the HIS (ORU^R01) and the FHIR server (ImagingStudy) that the study is stored;
    one notice line per message, saying whether it went."""
    notes: list[str] = []
    hl7s, fhirs = settings.hl7, settings.fhir
    if order is not None and hl7s is not None and hl7s.his:
        notes.append(_send_oru(settings, order, study_uid, len(files)))
    if fhirs is not None and fhirs.server and files:
        notes.append(_put_study(settings, order, files))
    return notes


def _send_oru(settings: ServiceSettings, order: Order, study_uid: str, count: int) -> str:
    from vid2dcm.orders.mllp import client_context, parse_address
    from vid2dcm.orders.results import StudyAvailable, send_oru

    hl7s = settings.hl7
    assert hl7s is not None and hl7s.his
    try:
        host, port = parse_address(hl7s.his)
        context: ssl.SSLContext | None = (client_context(str(hl7s.his_ca)) if hl7s.his_ca
                                          else None)
        ack = send_oru(StudyAvailable(order, study_uid,
                                      settings.viewer_url.replace("{study}", study_uid),
                                      count), host, port, ssl_context=context,
                       application=hl7s.application, facility=hl7s.facility)
    except (Vid2DcmError, UsageError, ValueError) as exc:
        return f"ORU^R01 to the HIS not sent: {exc}"
    if not ack.accepted:
        return f"ORU^R01 refused by the HIS ({ack.code}: {ack.text[:80]})"
    return f"ORU^R01 for order {order.placer_order_number} acknowledged by the HIS"


def _put_study(settings: ServiceSettings, order: Order | None, files: list[Path]) -> str:
    from vid2dcm.orders.fhir import (
        FhirServer,
        imaging_study,
        instances_from_files,
        put_imaging_study,
    )

    fhirs = settings.fhir
    assert fhirs is not None and fhirs.server
    server = FhirServer(fhirs.server, fhirs.version, fhirs.bearer_token, fhirs.ca_file)
    try:
        study = imaging_study(order, instances_from_files(files), version=fhirs.version,
                              wado_rs_url=fhirs.wado_rs_url)
        status, _ = put_imaging_study(server, study)
    except Vid2DcmError as exc:
        return f"ImagingStudy not sent: {exc}"
    return f"ImagingStudy {'created' if status == 201 else 'updated'} on the FHIR server"
