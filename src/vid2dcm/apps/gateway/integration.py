"""Orders in, results out, for the gateway (issue 15): the glue between the job worker and
the orders/ library.

- Orders: one OrderStore (data_dir/orders.sqlite) fed by the MLLP listener, the FHIR poller and
  POST /fhir/ServiceRequest; /worklist and job binding read it beside the DICOM worklist.
- Routing: a job that names no destination goes where the settings' routing table says, and
  the reasons are kept in its result ("sent to A because ...").
- MPPS (PS3.4 F.7) for jobs bound to an order: N-CREATE IN PROGRESS before conversion,
  N-SET COMPLETED with the Performed Series at storage, DISCONTINUED on failure. The step
  (its UID) is kept in data_dir/mpps/<job>.json so another worker process can end it.
- Results: ORU^R01 (or the kind `[hl7] result_message` names) to the HIS over MLLP and an
  ImagingStudy to the FHIR server once a study is stored.
- Notices through the outbox: the MPPS N-SET, the result message and the ImagingStudy are
  parcels of the job in the same outbox as its DICOM deliveries ("mpps:<destination>",
  "hl7:his", "fhir:imagingstudy"): tried at once, and while their peer cannot be reached again
  with the same backoff, retry window and periodic sweep. The job is "done" as soon as its
  study is stored; GET /jobs/{id} shows each notice's state (`notifications`).
- A live recording's N-SET (COMPLETED or DISCONTINUED, decided at stop) is a notice of the job
  the recording makes ("mpps:<recording_mpps>"), tried at stop and retried like the others,
  also while that job is still being converted or delivered.

Nothing here logs patient data: notices name the order's placer number, never the patient.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from fastapi import FastAPI
from pydicom import dcmread

from vid2dcm.apps.gateway.models import JobResult
from vid2dcm.apps.gateway.outbox import NOTICE_KINDS
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Job, Parcel, Store
from vid2dcm.core.errors import DeliveryError, UsageError, Vid2DcmError
from vid2dcm.core.metadata import Metadata
from vid2dcm.orders.order import Order, OrderStatus
from vid2dcm.orders.routing import Decision, Facts, route
from vid2dcm.orders.store import OrderStore

if TYPE_CHECKING:
    from vid2dcm.apps.gateway.outbox import Later
    from vid2dcm.delivery.transports.mpps import PerformedSeries, ProcedureStep
    from vid2dcm.orders.fhir import PollResult
    from vid2dcm.orders.inbox import Outcome

log = logging.getLogger(__name__)


def order_store(settings: ServiceSettings) -> OrderStore:
    """The gateway's orders, sealed with the job store's key: in the shared database when
    there is one (database_url; the table made by the job store's migrations), else in
    data_dir/orders.sqlite. Orders an earlier release kept in plain text are sealed on open."""
    from vid2dcm.apps.gateway.store import engine_for, open_store

    jobs = open_store(settings)  # the key, and the database migrated to this release
    if settings.database_url:
        return OrderStore(engine_for(settings.database_url), jobs.sealer)
    return OrderStore(settings.data_dir / "orders.sqlite", jobs.sealer)


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
    clash = sorted(name for name in known if is_notice(name))
    if clash:  # the outbox tells notices from DICOM parcels by these prefixes
        raise UsageError(f"destination name {clash[0]!r} starts with a notice prefix "
                         f"({', '.join(NOTICE_KINDS)}); rename it")


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
                record(jobs, settings, "hl7-listener", hl7_action(outcome), role="system")
                return ack

            listener = MllpServer(on_message, host, port, ssl_context=context)
            services.stoppers.append(listener.start())
            log.info("HL7 order listener on %s:%d", *listener.address)
        fhirs = settings.fhir
        if fhirs is not None and fhirs.server and fhirs.poll_s > 0:
            server = FhirServer(fhirs.server, fhirs.version, fhirs.bearer_token, fhirs.ca_file)
            services.stoppers.append(ServiceRequestPoller(
                server, store, fhirs.poll_s, on_poll=lambda found: audit_poll(
                    jobs, settings, found)).start())
    except BaseException:
        services.stop()
        raise
    return services


def hl7_action(outcome: Outcome) -> str:
    """The audit action of one HL7 message: "order received (HL7 ORM^O01)", "order error
    (HL7 AE)", "order rejected (HL7 AR)"; the type and code only, never its content."""
    if outcome.code == "AA":
        return f"{outcome.event} (HL7 {outcome.message_type})"
    return f"{outcome.event} (HL7 {outcome.code})"


def fhir_action(order: Order) -> str:
    return f"{'order cancelled' if order.status is OrderStatus.CANCELLED else 'order received'}" \
        " (FHIR)"


def audit_poll(jobs: Store, settings: ServiceSettings, found: PollResult) -> None:
    """One audit row per order a FHIR poll stored and per ServiceRequest it refused."""
    from vid2dcm.apps.gateway.audit import record

    for order in found.orders:
        record(jobs, settings, "fhir-poller", fhir_action(order), role="system")
    for _ in found.refused:
        record(jobs, settings, "fhir-poller", "order error (FHIR)", role="system")


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
    """N-CREATE IN PROGRESS for a job bound to an order; a notice line. When the RIS cannot
    be reached the step is kept without a UID: the N-SET parcel creates it first (so the RIS
    still learns of the procedure, late)."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.mpps import start_procedure_step

    if not settings.mpps_destination:
        return ""
    study = metadata.study_instance_uid or ""
    started = datetime.now()
    try:
        dest = parse_destination(settings.mpps_destination, settings.destinations_file)
        step = start_procedure_step(dest, metadata, study_instance_uid=study,
                                    modality=modality, started=started)
    except DeliveryError as exc:
        _save_step(settings, job_id, "", started, study, modality)
        return f"MPPS IN PROGRESS not sent: {exc}; it goes before the final state"
    except Vid2DcmError as exc:
        return f"MPPS IN PROGRESS not sent: {exc}"
    _save_step(settings, job_id, step.sop_instance_uid, started, study, modality)
    return "MPPS IN PROGRESS sent"


def _save_step(settings: ServiceSettings, job_id: str, uid: str, started: datetime,
               study: str, modality: str) -> None:
    """The step's identifiers (no patient data): its UID ("" while not created at the RIS),
    start, Study Instance UID and modality."""
    path = _mpps_file(settings, job_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps({"uid": uid, "started": started.isoformat(), "study": study,
                                "modality": modality}))


def _performed(files: list[Path]) -> list[PerformedSeries]:
    """The Performed Series of what the job made (one empty item when nothing was)."""
    from vid2dcm.core.uids import new_uid
    from vid2dcm.delivery.transports.mpps import PerformedSeries

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
    return performed


def _mpps_set(settings: ServiceSettings, destination: str, subject: Subject, files: list[Path]
              ) -> Attempt:
    """N-SET COMPLETED (with the Performed Series of `files`) or DISCONTINUED; first the
    N-CREATE when it could not be sent at the start (the patient from the order)."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.mpps import (
        ProcedureStep,
        complete_procedure_step,
        discontinue_procedure_step,
        start_procedure_step,
    )

    job_id, completed = subject.job_id, subject.completed

    status = "COMPLETED" if completed else "DISCONTINUED"
    path = _mpps_file(settings, job_id)
    if not path.exists():
        return Attempt(False, f"MPPS {status} not sent: the step is no longer known")
    saved = json.loads(path.read_text())
    try:
        performed = _performed(files)
        dest = parse_destination(destination, settings.destinations_file)
        started = datetime.fromisoformat(saved["started"])
        if not saved["uid"]:  # the N-CREATE never reached the RIS: create the step now
            order = order_store(settings).find_by_accession(subject.accession or "")
            if order is None:
                return Attempt(False, f"MPPS {status} not sent: the order is no longer known")
            metadata = order.metadata.model_copy(update={
                "study_instance_uid": saved.get("study") or None})
            created = start_procedure_step(dest, metadata, study_instance_uid=saved["study"],
                                           modality=saved["modality"], started=started)
            saved["uid"] = created.sop_instance_uid
            _save_step(settings, job_id, created.sop_instance_uid, started, saved["study"],
                       saved["modality"])
        step = ProcedureStep(saved["uid"], started, dest)
        if completed:
            complete_procedure_step(step, performed)
        else:
            discontinue_procedure_step(step, performed, "equipment")
    except DeliveryError as exc:
        return Attempt(False, f"MPPS {status} not sent: {exc}", again=True)
    except (Vid2DcmError, OSError) as exc:
        return Attempt(False, f"MPPS {status} not sent: {exc}")
    path.unlink(missing_ok=True)
    return Attempt(True, f"MPPS {status} sent")


# --- a live recording's step: its N-SET a notice of the recording's job ---------------------

def _recording_file(settings: ServiceSettings, job_id: str) -> Path:
    """Apart from the job's own step file (_mpps_file): the worker never ends this one."""
    return settings.data_dir / "mpps" / f"{job_id}.recording.json"


def end_recording_step(settings: ServiceSettings, store: Store, job_id: str,
                       accession: str | None, step: ProcedureStep,
                       series: list[PerformedSeries], discontinued: str | None,
                       later: Later | None = None) -> Parcel:
    """The N-SET of a live recording's step (COMPLETED, or DISCONTINUED with a CID 9300
    reason), decided at stop, becomes the notice "mpps:<recording_mpps>" of the job the
    recording made: tried now, and while the RIS cannot be reached again with the outbox's
    backoff, like a job's own N-SET. What was decided is kept in data_dir/mpps (identifiers
    only: step UID, start, series UIDs and names, the reason) so any worker can retry it.
    Returns the parcel as it stands after the first try."""
    path = _recording_file(settings, job_id)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    path.write_text(json.dumps({
        "uid": step.sop_instance_uid, "started": step.started.isoformat(),
        "series": [[s.series_instance_uid, s.series_description] for s in series],
        "discontinued": discontinued}))
    name = MPPS + (settings.recording_mpps or "")
    notify(settings, store, name, Subject(job_id, accession, None, discontinued is None), later)
    return next(p for p in store.parcels(job_id) if p.destination == name)


def _is_recording_step(settings: ServiceSettings, job_id: str, name: str) -> bool:
    return name.startswith(MPPS) and _recording_file(settings, job_id).exists()


def _recording_set(settings: ServiceSettings, destination: str, job_id: str) -> Attempt:
    """One try of a recording's N-SET, from what was decided at stop (not from the job's
    outcome: the procedure ended when the recording did)."""
    from vid2dcm.delivery.destinations import parse_destination
    from vid2dcm.delivery.transports.mpps import (
        PerformedSeries,
        ProcedureStep,
        complete_procedure_step,
        discontinue_procedure_step,
    )

    path = _recording_file(settings, job_id)
    saved = json.loads(path.read_text())
    reason = saved["discontinued"]
    status = "DISCONTINUED" if reason else "COMPLETED"
    series = [PerformedSeries(uid, name, ()) for uid, name in saved["series"]]
    try:
        dest = parse_destination(destination, settings.destinations_file)
        step = ProcedureStep(saved["uid"], datetime.fromisoformat(saved["started"]), dest)
        if reason:
            discontinue_procedure_step(step, series, reason)
        else:
            complete_procedure_step(step, series)
    except DeliveryError as exc:
        return Attempt(False, f"MPPS {status} not sent: {exc}", again=True)
    except (Vid2DcmError, OSError, ValueError) as exc:
        return Attempt(False, f"MPPS {status} not sent: {exc}")
    path.unlink(missing_ok=True)
    return Attempt(True, f"MPPS {status} sent")


# --- notices through the outbox: MPPS N-SET, ORU and ImagingStudy ----------------------------

HIS = "hl7:his"
IMAGING_STUDY = "fhir:imagingstudy"
MPPS = "mpps:"
NOTICE_AUDIT = {"hl7:": ("result sent (HL7)", "result failed (HL7)"),
                "fhir:": ("ImagingStudy sent (FHIR)", "ImagingStudy failed (FHIR)"),
                "mpps:": ("MPPS sent", "MPPS failed")}
"""The audit action of each notice kind: (sent, not sent)."""
NOTICE_LEASE_S = 120.0


def is_notice(destination: str) -> bool:
    return destination.startswith(NOTICE_KINDS)


@dataclass(frozen=True)
class Attempt:
    """One try of a notice: sent or not, the line for the job's notices (no patient data),
    and whether another try may succeed (the peer was unreachable or busy)."""

    sent: bool
    line: str
    again: bool = False


@dataclass(frozen=True)
class Subject:
    """What a notice is about; the same facts on the first try and on every retry (a retry
    reads them from the stored job)."""

    job_id: str
    accession: str | None
    result: JobResult | None
    completed: bool


def finish_step(settings: ServiceSettings, store: Store, subject: Subject,
                later: Later | None = None) -> str:
    """The MPPS N-SET (COMPLETED or DISCONTINUED) of a job that started one, as a notice."""
    if not settings.mpps_destination or not _mpps_file(settings, subject.job_id).exists():
        return ""
    return notify(settings, store, MPPS + settings.mpps_destination, subject, later)


def announce(settings: ServiceSettings, store: Store, subject: Subject, order: Order | None,
             later: Later | None = None) -> list[str]:
    """Tell the HIS (the result message) and the FHIR server (ImagingStudy) that the study
    is stored; one notice line per message, saying whether it went."""
    notes: list[str] = []
    hl7s, fhirs = settings.hl7, settings.fhir
    files = subject.result.files if subject.result else ()
    if order is not None and hl7s is not None and hl7s.his:
        notes.append(notify(settings, store, HIS, subject, later))
    if fhirs is not None and fhirs.server and files:
        notes.append(notify(settings, store, IMAGING_STUDY, subject, later))
    return notes


def notify(settings: ServiceSettings, store: Store, name: str, subject: Subject,
           later: Later | None = None) -> str:
    """A notice becomes a parcel of the job in the outbox, tried now; if its peer cannot be
    reached it is tried again with the DICOM deliveries' backoff until the retry window has
    passed (the periodic sweep finds it when a scheduled try was lost)."""
    store.add_parcels(subject.job_id, (name,))
    parcel = next(p for p in store.parcels(subject.job_id) if p.destination == name)
    return _attempt(settings, store, parcel, subject, later)


def retry_notices(settings: ServiceSettings, store: Store, job: Job,
                  later: Later | None = None) -> None:
    """Try the due notices of a job once each: all of them when it is done (stored) or
    failed; before that only a live recording's N-SET, which was decided at stop and does
    not wait for the job."""
    final = job.status in ("done", "failed")
    subject = Subject(job.id, job.request.accession, job.result, job.status == "done")
    for parcel in store.parcels(job.id):
        if not final and not _is_recording_step(settings, job.id, parcel.destination):
            continue
        if (is_notice(parcel.destination) and parcel.state == "waiting"
                and store.take_parcel(job.id, parcel.destination, NOTICE_LEASE_S)):
            _attempt(settings, store, parcel, subject, later)


def _attempt(settings: ServiceSettings, store: Store, parcel: Parcel, subject: Subject,
             later: Later | None) -> str:
    from vid2dcm.apps.gateway.audit import record
    from vid2dcm.apps.gateway.outbox import backoff

    outcome = _send_notice(settings, parcel.destination, subject)
    now = time.time()
    line = outcome.line
    if outcome.sent:
        state, next_try = "sent", now
    elif outcome.again and now - parcel.first_try < settings.delivery_window_s:
        delay = backoff(settings, parcel.attempts + 1)
        state, next_try = "waiting", now + delay
        line += "; will be tried again"
        if later is not None:
            later(subject.job_id, delay)
    else:
        state, next_try = "gave up", now
    store.parcel_tried(subject.job_id, parcel.destination, state, (),
                       None if outcome.sent else outcome.line, next_try)
    sent, failed = NOTICE_AUDIT[parcel.destination.split(":")[0] + ":"]
    record(store, settings, f"worker:{parcel.destination}", sent if outcome.sent else failed,
           job=subject.job_id, study=subject.result.study_instance_uid if subject.result
           else None, role="system")
    return line


def _send_notice(settings: ServiceSettings, name: str, subject: Subject) -> Attempt:
    result = subject.result
    files = [settings.outputs / subject.job_id / f.name for f in result.files] if result \
        else []
    if _is_recording_step(settings, subject.job_id, name):
        return _recording_set(settings, name[len(MPPS):], subject.job_id)
    if name.startswith(MPPS):
        return _mpps_set(settings, name[len(MPPS):], subject, files)
    if result is None or not result.study_instance_uid or not all(f.exists() for f in files):
        return Attempt(False, f"{name} not sent: the job's study is no longer here")
    order = order_store(settings).find_by_accession(subject.accession or "")
    if name == HIS:
        if order is None:
            return Attempt(False, "result message not sent: the order is no longer known")
        return _send_oru(settings, order, result.study_instance_uid, len(files))
    if name == IMAGING_STUDY:
        return _put_study(settings, order, files)
    return Attempt(False, f"{name}: no such notice")


def _send_oru(settings: ServiceSettings, order: Order, study_uid: str, count: int) -> Attempt:
    from vid2dcm.orders.mllp import client_context, parse_address
    from vid2dcm.orders.results import StudyAvailable, send_oru

    hl7s = settings.hl7
    if hl7s is None or not hl7s.his:
        return Attempt(False, "result message not sent: [hl7] his is no longer set")
    kind = hl7s.result_message
    try:
        host, port = parse_address(hl7s.his)
        context: ssl.SSLContext | None = (client_context(str(hl7s.his_ca)) if hl7s.his_ca
                                          else None)
        ack = send_oru(StudyAvailable(order, study_uid,
                                      settings.viewer_url.replace("{study}", study_uid),
                                      count), host, port, ssl_context=context,
                       application=hl7s.application, facility=hl7s.facility, kind=kind)
    except DeliveryError as exc:
        return Attempt(False, f"{kind} to the HIS not sent: {exc}", again=True)
    except (Vid2DcmError, ValueError) as exc:
        return Attempt(False, f"{kind} to the HIS not sent: {exc}")
    if not ack.accepted:
        return Attempt(False, f"{kind} refused by the HIS ({ack.code}: {ack.text[:80]})")
    return Attempt(True, f"{kind} for order {order.placer_order_number} acknowledged by the "
                         "HIS")


def _put_study(settings: ServiceSettings, order: Order | None, files: list[Path]) -> Attempt:
    from vid2dcm.orders.fhir import (
        FhirRefused,
        FhirServer,
        imaging_study,
        instances_from_files,
        put_imaging_study,
    )

    fhirs = settings.fhir
    if fhirs is None or not fhirs.server:
        return Attempt(False, "ImagingStudy not sent: [fhir] server is no longer set")
    server = FhirServer(fhirs.server, fhirs.version, fhirs.bearer_token, fhirs.ca_file)
    try:
        study = imaging_study(order, instances_from_files(files), version=fhirs.version,
                              wado_rs_url=fhirs.wado_rs_url)
        status, _ = put_imaging_study(server, study)
    except FhirRefused as exc:
        return Attempt(False, f"ImagingStudy not sent: {exc}", again=exc.transient)
    except DeliveryError as exc:
        return Attempt(False, f"ImagingStudy not sent: {exc}", again=True)
    except Vid2DcmError as exc:
        return Attempt(False, f"ImagingStudy not sent: {exc}")
    return Attempt(True, f"ImagingStudy {'created' if status == 201 else 'updated'} on the "
                         "FHIR server")
