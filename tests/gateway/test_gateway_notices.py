"""Notices through the outbox (issue 15): the MPPS N-SET, the result message to the HIS and the
ImagingStudy to the FHIR server are parcels of the job in the same outbox as its DICOM
deliveries. Their peers are down when the study is stored: the job is "done" anyway, its
view shows each notice waiting; once the peers are up, the next try delivers each exactly
once, and further sweeps send nothing more. The audit trail has a row per try, without
patient data.

Real peers on 127.0.0.1, free ports: dcmtk storescp as the PACS, python-hl7's MLLP server as
the HIS, a loopback FHIR server validating with fhir.resources, pynetdicom's MPPS SCP."""

from __future__ import annotations

import time
from pathlib import Path

import hl7
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]
from test_orders_fhir import FhirStandIn
from test_orders_hl7 import ORM
from test_record_mpps import MppsScp

from dcmtk_peers import free_port, start_storescp, stop, wait_listening
from vid2dcm.apps.gateway.integration import order_store
from vid2dcm.apps.gateway.jobs import deliver_job, execute
from vid2dcm.apps.gateway.models import JobRequest
from vid2dcm.apps.gateway.outbox import NOTICE_KINDS, due_jobs
from vid2dcm.apps.gateway.routes.jobs import view
from vid2dcm.apps.gateway.settings import FhirSettings, Hl7Settings, ServiceSettings
from vid2dcm.apps.gateway.store import open_store
from vid2dcm.orders.hl7_mapping import field_value
from vid2dcm.orders.inbox import handle
from vid2dcm.orders.mllp import MllpServer
from vid2dcm.producing.synth import ClipSpec, synthesize

pytestmark = [pytest.mark.integration]

STUDY = "1.2.826.0.1.3680043.10.543.100"  # IPC-3 of the ORM
RETRY_S = 0.3


def restart(scp: MppsScp) -> None:
    """The same MPPS SCP (same instances) listening again on its port."""
    ae = AE(ae_title="RIS")
    ae.add_supported_context(ModalityPerformedProcedureStep)
    scp.server = ae.start_server(("127.0.0.1", scp.port), block=False, evt_handlers=[
        (evt.EVT_N_CREATE, scp.on_create), (evt.EVT_N_SET, scp.on_set)])


def test_notices_wait_for_their_peers_and_go_once(tmp_path: Path) -> None:
    pacs_port, his_port, fhir_port = free_port(), free_port(), free_port()
    mpps = MppsScp()
    destinations = tmp_path / "destinations.toml"
    destinations.write_text(
        f'[destinations.pacs]\nae_title = "STORESCP"\nhost = "127.0.0.1"\nport = {pacs_port}\n'
        f'retries = 0\n[destinations.ris]\nae_title = "RIS"\nhost = "127.0.0.1"\n'
        f"port = {mpps.port}\nretries = 0\n")
    settings = ServiceSettings(
        data_dir=tmp_path / "data", destinations_file=destinations,
        hl7=Hl7Settings(listen=None, his=f"127.0.0.1:{his_port}"),
        fhir=FhirSettings(server=f"http://127.0.0.1:{fhir_port}/fhir", version="R5"),
        mpps_destination="ris", viewer_url="http://viewer.example/study/{study}",
        retry_first_s=RETRY_S, retry_max_s=RETRY_S, delivery_window_s=3600)
    store = open_store(settings)
    ack, outcome = handle(ORM, order_store(settings))
    assert outcome.code == "AA", ack
    clip = synthesize(tmp_path / "clip.mp4", ClipSpec(
        width=64, height=48, frames=10, options={"preset": "superfast", "profile": "high"}))
    upload = store.add_upload("clip.mp4", clip, clip.stat().st_size)
    job_id = store.add_job(JobRequest(upload_id=upload, accession="ACC100",
                                      destinations=("pacs",)))
    scheduled: list[float] = []

    def later(job: str, delay: float) -> None:
        assert job == job_id
        scheduled.append(delay)

    storescp = None
    his = fhir = None
    mpps_up = True
    try:
        # converted, MPPS IN PROGRESS; the PACS is down: waiting
        execute(settings, job_id, later)
        job = store.job(job_id)
        assert job is not None and job.status == "waiting", job
        assert mpps.instances and all(str(s.PerformedProcedureStepStatus) == "IN PROGRESS"
                                      for s in mpps.instances.values())
        # the PACS comes up; the RIS, the HIS and the FHIR server are down
        mpps.stop()
        mpps_up = False
        storescp = start_storescp(tmp_path / "pacs", pacs_port)
        wait_listening(pacs_port, storescp)
        time.sleep(RETRY_S + 0.05)
        deliver_job(settings, job_id, later)
        job = store.job(job_id)
        assert job is not None and job.status == "done", job  # stored: done
        assert job.result is not None and job.result.study_instance_uid == STUDY
        shown = view(job, store.parcels(job_id))
        states = {n.name: (n.state, n.attempts) for n in shown.notifications}
        assert states == {"mpps:ris": ("waiting", 1), "hl7:his": ("waiting", 1),
                          "fhir:imagingstudy": ("waiting", 1)}
        assert all(n.error and n.next_try for n in shown.notifications)
        assert shown.state_text != "" and shown.next_try is None  # no DICOM parcel waits
        assert [d.destination for d in shown.result.deliveries] == ["pacs"]  # type: ignore[union-attr]
        notes = job.result.notices
        assert any(n.startswith("ORU^R01 to the HIS not sent") and
                   n.endswith("will be tried again") for n in notes), notes
        assert len(scheduled) >= 4  # the PACS once, then each notice
        due = store.due_notices(time.time() + RETRY_S + 1, NOTICE_KINDS)
        assert sorted(d for _, d in due) == ["fhir:imagingstudy", "hl7:his", "mpps:ris"]
        tries = [n.next_try or 0.0 for n in shown.notifications]
        assert due_jobs(store, min(tries) - 0.01) == []  # not due yet
        assert due_jobs(store, max(tries) + 0.01) == [job_id]  # the minute sweep finds it

        # all three come up: the next try sends each, exactly once
        his_got: list[str] = []

        def on_oru(text: str) -> str:
            his_got.append(text)
            return str(hl7.parse(text).create_ack("AA"))

        his = MllpServer(on_oru, "127.0.0.1", his_port).start()
        fhir = FhirStandIn("R5", fhir_port)
        fhir.thread.start()
        restart(mpps)
        mpps_up = True
        time.sleep(RETRY_S + 0.05)
        deliver_job(settings, job_id, later)
        job = store.job(job_id)
        assert job is not None and job.status == "done"
        states = {n.name: (n.state, n.attempts)
                  for n in view(job, store.parcels(job_id)).notifications}
        assert states == {"mpps:ris": ("sent", 2), "hl7:his": ("sent", 2),
                          "fhir:imagingstudy": ("sent", 2)}
        time.sleep(RETRY_S + 0.05)
        deliver_job(settings, job_id, later)  # a later sweep: nothing is due, nothing goes
        assert store.due_notices(time.time() + 3600, NOTICE_KINDS) == []
        assert due_jobs(store, time.time() + 3600) == []

        assert len(his_got) == 1
        oru = hl7.parse(his_got[0])
        assert field_value(oru, "MSH-9", whole=True) == "ORU^R01^ORU_R01"
        assert field_value(oru, "OBX-5") == STUDY
        puts = [r for r in fhir.received if r[0] == "PUT"]
        assert len(puts) == 1 and puts[0][2] is not None
        assert puts[0][2]["identifier"][0]["value"] == f"urn:oid:{STUDY}"
        (step,) = mpps.instances.values()
        assert step.PerformedProcedureStepStatus == "COMPLETED"
        assert len(step.PerformedSeriesSequence[0].ReferencedImageSequence) == 1

        # audit: a row per try, identifiers only
        rows = [(e.who, e.action) for e in reversed(store.audit_log())]
        for name, sent, failed in (("hl7:his", "result sent (HL7)", "result failed (HL7)"),
                                   ("fhir:imagingstudy", "ImagingStudy sent (FHIR)",
                                    "ImagingStudy failed (FHIR)"),
                                   ("mpps:ris", "MPPS sent", "MPPS failed")):
            mine = [a for w, a in rows if w == f"worker:{name}"]
            assert mine == [failed, sent], (name, rows)
        text = " ".join(str(e.model_dump()) for e in store.audit_log())
        for patient in ("PAT001", "Doe", "19800101"):
            assert patient not in text
    finally:
        if storescp is not None:
            stop(storescp)
        if his is not None:
            his.stop()
        if fhir is not None:
            fhir.httpd.shutdown()
            fhir.httpd.server_close()
        if mpps_up:
            mpps.stop()


@pytest.mark.parametrize("kind", ["ORU^R01 2.3.1", "ORM^O01", "OMI^O23"])
def test_result_message_kind_chosen_by_the_settings(tmp_path: Path, kind: str) -> None:
    """[hl7] result_message: the HIS gets that kind of message (parsed with python-hl7)."""
    from vid2dcm.apps.gateway.integration import _send_oru
    from vid2dcm.orders.results import RESULT_MESSAGES

    got: list[str] = []

    def on_message(text: str) -> str:
        got.append(text)
        return str(hl7.parse(text).create_ack("AA"))

    with MllpServer(on_message, "127.0.0.1", 0) as his:
        settings = ServiceSettings(data_dir=tmp_path / "data", hl7=Hl7Settings(
            listen=None, his=f"{his.address[0]}:{his.address[1]}", result_message=kind))
        handle(ORM, order_store(settings))
        order = order_store(settings).find_by_accession("ACC100")
        assert order is not None
        attempt = _send_oru(settings, order, STUDY, 1)
    assert attempt.sent and attempt.line == f"{kind} for order PLC100 acknowledged by the HIS"
    (text,) = got
    message = hl7.parse(text)
    form = RESULT_MESSAGES[kind]
    assert (field_value(message, "MSH-9", whole=True), field_value(message, "MSH-12")) == (
        form.message_type, form.version)
    assert STUDY in {str(s[5]) for s in message if str(s[0]) == "OBX"}


def test_destination_named_like_a_notice_stops_the_start(tmp_path: Path) -> None:
    from vid2dcm.apps.gateway.integration import check
    from vid2dcm.core.errors import UsageError

    destinations = tmp_path / "destinations.toml"
    destinations.write_text('[destinations."hl7:his"]\nae_title = "X"\nhost = "127.0.0.1"\n'
                            "port = 104\n")
    settings = ServiceSettings(data_dir=tmp_path / "data", destinations_file=destinations)
    with pytest.raises(UsageError, match="notice prefix"):
        check(settings)


def test_step_the_ris_never_saw_is_created_before_its_final_state(tmp_path: Path) -> None:
    """The RIS is down for the whole job (kept, no destination): neither N-CREATE nor N-SET
    goes; once it is up, the MPPS parcel creates the step (patient from the order) and
    completes it: one step, COMPLETED, with the video."""
    mpps = MppsScp()
    mpps.stop()  # its port is known; nothing listens there yet
    destinations = tmp_path / "destinations.toml"
    destinations.write_text(f'[destinations.ris]\nae_title = "RIS"\nhost = "127.0.0.1"\n'
                            f"port = {mpps.port}\nretries = 0\n")
    settings = ServiceSettings(
        data_dir=tmp_path / "data", destinations_file=destinations, mpps_destination="ris",
        retry_first_s=RETRY_S, retry_max_s=RETRY_S, delivery_window_s=3600)
    store = open_store(settings)
    assert handle(ORM, order_store(settings))[1].code == "AA"
    clip = synthesize(tmp_path / "clip.mp4", ClipSpec(
        width=64, height=48, frames=5, options={"preset": "superfast", "profile": "high"}))
    upload = store.add_upload("clip.mp4", clip, clip.stat().st_size)
    job_id = store.add_job(JobRequest(upload_id=upload, accession="ACC100"))
    execute(settings, job_id)
    job = store.job(job_id)
    assert job is not None and job.status == "done" and job.result is not None
    assert job.result.notices[0].startswith("MPPS IN PROGRESS not sent")
    assert job.result.notices[1].startswith("MPPS COMPLETED not sent")
    (notice,) = view(job, store.parcels(job_id)).notifications
    assert (notice.name, notice.state) == ("mpps:ris", "waiting")
    restart(mpps)
    try:
        time.sleep(RETRY_S + 0.05)
        deliver_job(settings, job_id)
        (notice,) = view(job, store.parcels(job_id)).notifications
        assert (notice.state, notice.attempts) == ("sent", 2)
        (step,) = mpps.instances.values()
        assert step.PerformedProcedureStepStatus == "COMPLETED"
        assert (step.PatientID, step.ScheduledStepAttributesSequence[0].AccessionNumber) == (
            "PAT001", "ACC100")
        assert step.ScheduledStepAttributesSequence[0].StudyInstanceUID == STUDY
        refs = [r.ReferencedSOPInstanceUID for s in step.PerformedSeriesSequence
                for r in s.ReferencedImageSequence]
        assert refs == [job.result.files[0].sop_instance_uid]
    finally:
        mpps.stop()
