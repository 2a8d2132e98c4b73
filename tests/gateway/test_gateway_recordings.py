"""Recordings in the gateway (issue 13): in-process TestClient, lavfi sources configured by
name, a real Orthanc as the PACS and pynetdicom's MPPS SCP as the RIS, both on 127.0.0.1 and
started and stopped by the tests."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient
from test_record_mpps import MppsScp

from dcmtk_peers import free_port
from gateway_app import PASSWORD, _accounts_once
from orthanc import running_orthanc
from readback import dciodvfy_errors, read_back
from vid2dcm.apps.gateway.api import create_app
from vid2dcm.apps.gateway.queue import make_queue
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.core.metadata import Metadata

SOURCES = {"scope": "lavfi:testsrc2=size=64x48:rate=25",
           "room": "lavfi:testsrc=size=64x48:rate=25"}
PATIENT = {"patient_id": "REC-1", "patient_name": "Doe^Jane"}


@contextmanager
def gateway(tmp_path: Path, pacs_port: int, mpps: str | None,
            default_destinations: tuple[str, ...] = ("pacs",), **extra: Any
            ) -> Iterator[TestClient]:
    destinations = tmp_path / "destinations.toml"
    destinations.write_text(f'[destinations.pacs]\nae_title = "VID2DCMTEST"\n'
                            f'host = "127.0.0.1"\nport = {pacs_port}\nretries = 0\n')
    settings = ServiceSettings(data_dir=tmp_path / "data", destinations_file=destinations,
                               default_destinations=default_destinations,
                               recording_sources=SOURCES, recording_mpps=mpps,
                               **extra)
    shutil.copytree(_accounts_once(), settings.data_dir)
    queue = make_queue(settings)
    queue.huey.immediate = True
    app = create_app(settings, queue)
    try:
        with TestClient(app) as client:
            yield client
    finally:
        live = getattr(app.state, "recordings", None)
        for r in live.all() if live else []:  # a failed test leaves none running
            if r.status == "recording":
                r.session.stop()


def person(client: TestClient, name: str) -> TestClient:
    other = TestClient(client.app)
    assert other.post("/auth/login", json={"username": name,
                                           "password": PASSWORD}).status_code == 200
    return other


def wait_for(client: TestClient, rid: str, check: Any, timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state: dict[str, Any] = client.get(f"/recordings/{rid}").json()
        if check(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.2)


@pytest.mark.integration
@pytest.mark.needs_orthanc
def test_record_snapshot_stop_becomes_a_stored_job(tmp_path: Path) -> None:
    scp = MppsScp()
    (tmp_path / "pacs").mkdir()
    try:
        with running_orthanc(tmp_path / "pacs") as pacs, \
                gateway(tmp_path, pacs.dicom_port, f"RIS@127.0.0.1:{scp.port}") as client:
            nurse = person(client, "nurse")
            answer = nurse.post("/recordings", json={"sources": ["scope", "room"],
                                                     "metadata": PATIENT,
                                                     "sop": "endoscopic"})
            assert answer.status_code == 201, answer.text
            rid = answer.json()["id"]
            (step,) = scp.instances.values()
            assert step.PerformedProcedureStepStatus == "IN PROGRESS"
            assert step.PatientID == "REC-1" and step.Modality == "ES"

            first = wait_for(nurse, rid, lambda s: all(x["frames"] > 0 for x in s["sources"]))
            assert first["state"] == "recording" and first["mpps"] == "in progress"
            assert "Doe" not in str(first) and "REC-1" not in str(first)  # no patient data
            manifest = tmp_path / "data" / "uploads" / rid / "session.json"
            assert "Doe" not in manifest.read_text() and "REC-1" not in manifest.read_text()
            later = wait_for(nurse, rid, lambda s: s["frames"] > first["frames"] + 10)
            assert later["bytes"] > first["bytes"] and later["duration_s"] > 0
            assert later["reconnects"] == 0
            assert nurse.post(f"/recordings/{rid}/snapshot",
                              params={"source": "scope"}).status_code == 200
            wait_for(nurse, rid, lambda s: s["snapshots"] >= 1)
            time.sleep(0.5)
            stopped = nurse.post(f"/recordings/{rid}/stop")
            assert stopped.status_code == 200, stopped.text
            state = nurse.get(f"/recordings/{rid}").json()
            assert state["state"] == "stopped" and state["mpps"] == "completed"
            assert nurse.post(f"/recordings/{rid}/stop").status_code == 409
            assert nurse.post(f"/recordings/{rid}/snapshot").status_code == 409

            job = nurse.get(f"/jobs/{state['job_id']}").json()
            assert job["status"] == "done", job
            assert job["state_text"] == "stored in PACS"
            files = job["result"]["files"]
            assert len(files) == len(job["result"]["deliveries"]) == 3  # 2 videos + 1 still
            assert all(d["ok"] for d in job["result"]["deliveries"])
            assert len(pacs.get("/instances")) == 3
            assert len(pacs.get("/studies")) == 1

            out = tmp_path / "data" / "outputs" / state["job_id"]
            frames: dict[str, int] = {}
            series: dict[str, str] = {}
            for f in files:
                path = out / f["name"]
                if "still" in f["name"]:
                    assert dciodvfy_errors(path) == []
                    ds = pydicom.dcmread(path)
                    assert ds.PatientID == "REC-1"
                    continue
                back = read_back(path, tmp_path)
                ds = back.dataset
                assert ds.PatientID == "REC-1" and str(ds.PatientName) == "Doe^Jane"
                assert back.decoded_frames == int(ds.NumberOfFrames) == f["frames"]
                frames[str(ds.SeriesDescription)] = (frames.get(str(ds.SeriesDescription), 0)
                                                     + int(ds.NumberOfFrames))
                series[str(ds.SeriesDescription)] = str(ds.SeriesInstanceUID)
            # every frame the recorder counted is in PACS, per source
            assert frames == {x["name"]: x["frames"] for x in state["sources"]}

            assert "Doe" not in manifest.read_text()  # finalised, and private again
            (step,) = scp.instances.values()
            assert step.PerformedProcedureStepStatus == "COMPLETED"
            assert scp.refused_sets == []
            assert sorted(s.SeriesInstanceUID for s in step.PerformedSeriesSequence) == \
                sorted(series.values())

            log = person(client, "it").get("/audit").json()
            actions = [e["action"] for e in log if e["job"] == state["job_id"]
                       or e["upload"] == rid]
            for action in ("start recording", "snapshot", "stop recording", "create job",
                           "delivery"):
                assert action in actions, actions
            assert "Doe" not in str(log)
    finally:
        scp.stop()


@pytest.mark.integration
def test_sources_are_names_never_urls_and_recordings_are_need_to_know(tmp_path: Path) -> None:
    scp = MppsScp()
    try:
        with gateway(tmp_path, free_port(), f"RIS@127.0.0.1:{scp.port}",
                     default_destinations=(), recording_max_segment_s=1.0) as client:
            nurse = person(client, "nurse")
            for sources in (["lavfi:testsrc"], ["rtsp://10.0.0.1/cam"], ["scope=udp://x:1"]):
                answer = nurse.post("/recordings", json={"sources": sources,
                                                         "metadata": PATIENT})
                assert answer.status_code == 400, answer.text
            answer = nurse.post("/recordings", json={"sources": ["scope"], "url": "udp://x:1",
                                                     "metadata": PATIENT})
            assert answer.status_code == 400
            answer = nurse.post("/recordings", json={"sources": ["nosuch"],
                                                     "metadata": PATIENT})
            assert answer.status_code == 422 and "nosuch" in answer.text
            answer = nurse.post("/recordings", json={"sources": ["scope"],
                                                     "metadata": {"patient_id": "X"}})
            assert answer.status_code == 422  # half an identity, as for jobs
            assert client.post("/recordings", json={"sources": ["scope"]}).status_code == 401
            assert scp.instances == {}  # nothing refused ever reached the RIS

            rid = nurse.post("/recordings", json={"sources": ["scope"],
                                                  "metadata": PATIENT}).json()["id"]
            other = person(client, "nurse2")
            assert other.get(f"/recordings/{rid}").status_code == 404
            assert other.post(f"/recordings/{rid}/snapshot").status_code == 404
            assert other.post(f"/recordings/{rid}/stop").status_code == 404
            assert other.get("/recordings").json() == []
            assert [r["id"] for r in person(client, "doc").get("/recordings").json()] == [rid]
            assert nurse.get("/recordings/nothex").status_code == 400

            wait_for(nurse, rid, lambda s: s["frames"] > 60)  # > 2 s at 25 fps
            answer = nurse.post(f"/recordings/{rid}/stop", json={"discontinued": "equipment"})
            assert answer.status_code == 200, answer.text
            state = nurse.get(f"/recordings/{rid}").json()
            assert state["mpps"] == "discontinued"
            (step,) = scp.instances.values()
            assert step.PerformedProcedureStepStatus == "DISCONTINUED"
            reason = step.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
            assert reason.CodeValue == "110501"
            job = nurse.get(f"/jobs/{state['job_id']}").json()
            assert job["status"] == "done" and job["state_text"] == "converted (no destination)"
            assert other.get(f"/jobs/{state['job_id']}").status_code == 404
            videos = job["result"]["files"]
            assert len(videos) >= 2  # cut into 1 s segments at key frames
            out = tmp_path / "data" / "outputs" / state["job_id"]
            backs = [read_back(out / v["name"], tmp_path) for v in videos]
            assert sum(b.decoded_frames for b in backs) == state["frames"]
            assert len({str(b.dataset.SeriesInstanceUID) for b in backs}) == 1
            assert [int(b.dataset.InstanceNumber) for b in backs] == \
                list(range(1, len(backs) + 1))
    finally:
        scp.stop()


@pytest.mark.integration
def test_unidentified_recording_is_held_without_mpps(tmp_path: Path) -> None:
    scp = MppsScp()
    try:
        with gateway(tmp_path, free_port(), f"RIS@127.0.0.1:{scp.port}") as client:
            nurse = person(client, "nurse")
            answer = nurse.post("/recordings", json={"sources": ["scope"]})
            assert answer.status_code == 422 and "unidentified" in answer.text
            rid = nurse.post("/recordings", json={"sources": ["scope"],
                                                  "unidentified": True}).json()["id"]
            wait_for(nurse, rid, lambda s: s["frames"] > 10)
            assert nurse.post(f"/recordings/{rid}/stop").status_code == 200
            state = nurse.get(f"/recordings/{rid}").json()
            assert state["mpps"] == "off" and scp.instances == {}
            job = nurse.get(f"/jobs/{state['job_id']}").json()
            assert job["status"] == "held", job
            held_study = job["result"]["study_instance_uid"]
            # a reviewer assigns the patient: converted again under new UIDs, then sent
            doc = person(client, "doc")
            answer = doc.post(f"/jobs/{job['id']}/assign",
                              json={"metadata": {"patient_id": "REC-2",
                                                 "patient_name": "Roe^Rita"}})
            assert answer.status_code == 200, answer.text
            job = nurse.get(f"/jobs/{state['job_id']}").json()
            assert job["status"] == "waiting", job  # the test's PACS is not there
            assert job["result"]["study_instance_uid"] != held_study
            (video,) = job["result"]["files"]
            back = read_back(tmp_path / "data" / "outputs" / job["id"] / video["name"],
                             tmp_path)
            assert back.dataset.PatientID == "REC-2"
            assert str(back.dataset.StudyInstanceUID) == job["result"]["study_instance_uid"]
            assert back.decoded_frames == state["frames"]
    finally:
        scp.stop()


@pytest.mark.integration
@pytest.mark.needs_orthanc
@pytest.mark.needs_browser
def test_staff_page_records_for_the_confirmed_patient(tmp_path: Path) -> None:
    """The real services (uvicorn `serve` records, the huey `worker` converts, two processes
    sharing the data folder) driven from headless Chromium: confirm a typed patient, start,
    watch the live state (and the recording in the page's list of live recordings), take a
    still, stop; the job card reaches "stored in PACS"."""
    from playwright.sync_api import expect, sync_playwright
    from test_service import AXE, CHROMIUM, CHROMIUM_ARGS

    from dcmtk_peers import stop, wait_listening
    from vid2dcm.apps.gateway.auth import add_user
    from vid2dcm.apps.gateway.settings import load_settings

    (tmp_path / "pacs").mkdir()
    with running_orthanc(tmp_path / "pacs") as pacs:
        data = tmp_path / "data"
        data.mkdir()
        port = free_port()
        destinations = data / "destinations.toml"
        destinations.write_text(f'[destinations.pacs]\nae_title = "{pacs.aet}"\n'
                                f'host = "127.0.0.1"\nport = {pacs.dicom_port}\nretries = 1\n')
        (data / "service.toml").write_text(
            f'[service]\nport = {port}\ndestinations_file = "{destinations}"\n'
            'default_destinations = ["pacs"]\n\n[service.recording_sources]\n'
            f'scope = "{SOURCES["scope"]}"\n')
        add_user(load_settings(data), "nurse", "uploader", PASSWORD)
        cli = [sys.executable, "-m", "vid2dcm"]
        log = (data / "gateway.log").open("wb")
        worker = subprocess.Popen([*cli, "worker", "--data", str(data)], stdout=log,
                                  stderr=log, start_new_session=True)
        server = subprocess.Popen([*cli, "serve", "--data", str(data)], stdout=log,
                                  stderr=log, start_new_session=True)
        try:
            wait_listening(port, server, seconds=30)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                try:
                    # bypass_csp only lets the test inject axe-core
                    page = browser.new_context(bypass_csp=True).new_page()
                    page.goto(f"http://127.0.0.1:{port}/")
                    page.get_by_test_id("login-username").fill("nurse")
                    page.get_by_test_id("login-password").fill(PASSWORD)
                    page.get_by_test_id("login-submit").click()
                    page.locator("#typed summary").click()
                    page.locator("#family").fill("Doe")
                    page.locator("#given").fill("Jane")
                    page.locator("#patient-id").fill("REC-1")
                    page.get_by_test_id("confirm-patient").click()
                    page.select_option("#procedure", "endoscopic")
                    expect(page.get_by_test_id("record-stop")).to_be_disabled()
                    page.get_by_test_id("record-start").click()
                    expect(page.locator("#change")).to_be_disabled()
                    state = page.get_by_test_id("record-state")
                    expect(state).to_contain_text("recording: ", timeout=15_000)
                    page.wait_for_function(
                        "() => /, ([1-9][0-9]+) frames/.test("
                        "document.querySelector('[data-testid=record-state]').textContent)",
                        timeout=20_000)
                    page.add_script_tag(path=str(AXE))
                    found = page.evaluate("""async () => (await axe.run(document, {runOnly:
                        ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}))
                        .violations.filter(v => ['serious', 'critical'].includes(v.impact))
                        .map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' '))""")
                    assert found == [], found
                    listed = page.get_by_test_id("recordings").locator(
                        "li[data-state='recording']")
                    expect(listed).to_contain_text("scope · nurse · recording: ",
                                                   timeout=10_000)
                    page.get_by_test_id("record-snapshot").click()
                    expect(state).to_contain_text("1 stills", timeout=10_000)
                    page.get_by_test_id("record-stop").click()
                    expect(state).to_contain_text("stopped: ", timeout=30_000)
                    expect(page.get_by_test_id("record-start")).to_be_enabled()
                    expect(page.locator("#change")).to_be_enabled()
                    done = page.locator("[data-testid='job-card'][data-state='done']").first
                    done.wait_for(timeout=90_000)
                    expect(done).to_contain_text("stored in PACS")
                finally:
                    browser.close()
        finally:
            stop(server)
            stop(worker)
            log.close()
        instances = pacs.get("/instances")
        assert len(instances) == 2  # the video and the still
        for instance in instances:
            tags = pacs.get(f"/instances/{instance}/simplified-tags")
            assert (tags["PatientID"], tags["PatientName"]) == ("REC-1", "Doe^Jane")


@pytest.mark.integration
@pytest.mark.needs_dcmtk
def test_recording_for_a_worklist_order(tmp_path: Path) -> None:
    """The order's patient and study go into the recording at start: the MPPS step and the
    instances carry the order's Study Instance UID and accession; typed fields that contradict
    the order are 409, as for jobs."""
    from test_service import ORDER

    from dcmtk_peers import running_worklist

    scp = MppsScp()
    try:
        with running_worklist(tmp_path / "wl", [ORDER]) as (aet, wl_port), \
                gateway(tmp_path, free_port(), f"RIS@127.0.0.1:{scp.port}",
                        default_destinations=(), worklist=f"{aet}@127.0.0.1:{wl_port}"
                        ) as client:
            nurse = person(client, "nurse")
            answer = nurse.post("/recordings", json={"sources": ["scope"],
                                                     "accession": "GWACC1",
                                                     "metadata": {"patient_id": "OTHER"}})
            assert answer.status_code == 409 and "patient_id" in answer.text
            answer = nurse.post("/recordings", json={"sources": ["scope"],
                                                     "accession": "NOSUCH"})
            assert answer.status_code == 422
            assert scp.instances == {}
            answer = nurse.post("/recordings", json={"sources": ["scope"],
                                                     "accession": "GWACC1",
                                                     "sop": "endoscopic"})
            assert answer.status_code == 201, answer.text
            rid = answer.json()["id"]
            (step,) = scp.instances.values()
            item = step.ScheduledStepAttributesSequence[0]
            assert (item.AccessionNumber, item.StudyInstanceUID) == ("GWACC1",
                                                                     ORDER["study_uid"])
            assert step.PatientID == "ORD1"
            wait_for(nurse, rid, lambda s: s["frames"] > 10)
            assert nurse.post(f"/recordings/{rid}/stop").status_code == 200
            state = nurse.get(f"/recordings/{rid}").json()
            assert state["mpps"] == "completed"
            job = nurse.get(f"/jobs/{state['job_id']}").json()
            assert job["status"] == "done", job
            assert job["result"]["study_instance_uid"] == ORDER["study_uid"]
            (video,) = job["result"]["files"]
            back = read_back(tmp_path / "data" / "outputs" / job["id"] / video["name"],
                             tmp_path)
            ds = back.dataset
            assert (ds.AccessionNumber, ds.PatientID) == ("GWACC1", "ORD1")
            assert str(ds.StudyInstanceUID) == ORDER["study_uid"]
            assert back.decoded_frames == state["frames"]
    finally:
        scp.stop()


def test_stopped_recordings_are_forgotten_after_a_shift() -> None:
    from vid2dcm.apps.gateway.recordings import LiveRecording, Recordings

    def one(rid: str, status: str, started: float) -> LiveRecording:
        return LiveRecording(id=rid, owner="n", ward="", session=None,  # type: ignore[arg-type]
                             folder=Path("."), sop="sc", destinations=(), accession=None,
                             unidentified=False, request_metadata=Metadata(),
                             started=started, status=status)

    live = Recordings()
    long_ago = time.time() - Recordings.KEEP_S - 60
    live.add(one("a", "stopped", long_ago))
    live.add(one("b", "recording", long_ago))
    live.add(one("c", "stopped", time.time()))
    assert [r.id for r in live.all()] == ["c", "b"]


def test_recording_actions_are_patient_record_events() -> None:
    """In the DICOM audit export a recording's start, stills and stop are Patient Record
    events (CID 400), not the generic Application Activity."""
    from vid2dcm.apps.gateway.audit import event_of

    assert [event_of(a).event_id[0] for a in ("start recording", "snapshot",
                                              "stop recording")] == ["110110"] * 3
