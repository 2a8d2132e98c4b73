"""The gateway's research export: a finished job's instances (copy-path video, transcoded video,
frame object) de-identified and sent to the research destination of the settings through the
outbox, into a real Orthanc; reviewer and admin may export, an uploader is refused (403,
audited). The stored research copies are dumped with dcmdump: no original identifier, the
pseudonymous identity, dciodvfy clean and decodable."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pydicom
import pytest
from fastapi.testclient import TestClient

from dcmtk_peers import free_port
from deid_fixtures import make_clip
from gateway_app import _accounts_once
from orthanc import DICOMWEB_PLUGIN, Orthanc, running_orthanc
from readback import read_back
from vid2dcm.apps.gateway.api import create_app
from vid2dcm.apps.gateway.export import run_export
from vid2dcm.apps.gateway.integration import check
from vid2dcm.apps.gateway.models import FileResult, JobRequest, JobResult
from vid2dcm.apps.gateway.queue import JobQueue, make_queue
from vid2dcm.apps.gateway.settings import DeidentifySettings, ServiceSettings, load_settings
from vid2dcm.apps.gateway.store import Store, open_store
from vid2dcm.core.errors import UsageError
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request

PASSWORD = "correct horse battery"
IDENTITY = Metadata(patient_name="DOE^JANE", patient_id="PID-4711",
                    patient_birth_date=date(1970, 1, 31), accession_number="ACC-4711")
ORIGINALS = ("DOE", "JANE", "4711", "19700131")


@dataclass
class Site:
    settings: ServiceSettings
    store: Store
    client: TestClient
    pacs: Orthanc
    destinations: Path
    job: str
    queue: JobQueue

    def sweep_outbox(self) -> None:
        """Run the worker's minute sweep once, as its scheduler would."""
        due = self.queue.huey.read_periodic(datetime.now())
        [sweep] = [task for task in due if task.name == "sweep_outbox"]
        self.queue.huey.execute(sweep)

    def person(self, name: str) -> TestClient:
        other = TestClient(self.client.app)
        assert other.post("/auth/login", json={"username": name,
                                               "password": PASSWORD}).status_code == 200
        return other

    def point_research_at(self, port: int) -> None:
        self.destinations.write_text(f'[destinations.research]\nae_title = "{self.pacs.aet}"\n'
                                     f'host = "127.0.0.1"\nport = {port}\nretries = 0\n')

    def point_research_at_stow(self) -> None:
        self.destinations.write_text(f'[destinations.research]\nkind = "stow"\n'
                                     f'url = "{self.pacs.url}/dicom-web"\nretries = 0\n')


def finished_job(settings: ServiceSettings, store: Store, work: Path,
                 kinds: tuple[str, ...]) -> str:
    """A done job holding the kinds of object the issue names (copy-path video, transcoded
    video, frame object), converted with the identity burned into the pictures (the banner)
    and written into the header."""
    clip = make_clip(work / "clip.mp4", frames=10, with_face=False, with_audio=False)
    mpeg4 = make_clip(work / "mpeg4.mp4", codec="mpeg4", frames=10, with_face=False,
                      with_audio=False) if "transcoded" in kinds else clip
    upload = store.add_upload("clip.mp4", clip, clip.stat().st_size)
    job = store.add_job(JobRequest(upload_id=upload))
    out = settings.outputs / job
    out.mkdir(parents=True)
    files = []
    every = {"copy": (clip, Request()), "transcoded": (mpeg4, Request()),
             "frames": (clip, Request(sop="sc", frames="rle"))}
    for name, (source, request) in ((f"{k}.dcm", every[k]) for k in kinds):
        written = convert(source, out / name, metadata=IDENTITY, options=request).files[0]
        files.append(FileResult(name=written.path.name, sop_instance_uid=written.sop_instance_uid,
                                transfer_syntax_uid=written.transfer_syntax_uid,
                                frames=written.frames, bytes=written.size_bytes))
    assert store.claim(job)
    store.finish(job, JobResult(files=tuple(files)))
    return job


@contextmanager
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         kinds: tuple[str, ...] = ("copy", "transcoded", "frames"),
         stow: bool = False) -> Iterator[Site]:
    monkeypatch.setenv("VID2DCM_DEID_SECRET", "gateway-site-secret")
    (tmp_path / "pacs").mkdir()
    with running_orthanc(tmp_path / "pacs",
                         **({"Plugins": [DICOMWEB_PLUGIN]} if stow else {})) as pacs:
        destinations = tmp_path / "destinations.toml"
        settings = ServiceSettings(
            data_dir=tmp_path / "data", destinations_file=destinations,
            deidentify=DeidentifySettings(research_destination="research"),
            retry_first_s=0.05, retry_max_s=0.05)
        shutil.copytree(_accounts_once(), settings.data_dir)
        store = open_store(settings)
        job = finished_job(settings, store, tmp_path, kinds)
        queue = make_queue(settings)
        queue.huey.immediate = True
        s = Site(settings, store, TestClient(create_app(settings, queue)), pacs, destinations,
                 job, queue)
        if stow:
            s.point_research_at_stow()
        else:
            s.point_research_at(free_port())  # nothing listens there yet
        with s.client:
            yield s


def stored_copies(pacs: Orthanc, work: Path) -> list[Path]:
    paths = []
    for instance in pacs.get("/instances"):
        path = work / f"{instance}.dcm"
        path.write_bytes(pacs.get(f"/instances/{instance}/file"))
        paths.append(path)
    return paths


@pytest.mark.integration
@pytest.mark.slow
def test_research_export_roles_outbox_and_stored_copy(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    with site(tmp_path, monkeypatch) as s:
        nurse, doc, it = s.person("nurse"), s.person("doc"), s.person("it")
        base = f"/jobs/{s.job}/export"

        # an uploader may do neither export, and each refusal is audited
        assert nurse.post(base).status_code == 403
        assert nurse.post(base + "/send").status_code == 403
        # admin: allowed (a ZIP; header-only keeps it quick), unknown profiles refused
        assert it.post(base + "?profile=nope").status_code == 400
        answer = it.post(base + "?profile=header-only")
        assert answer.status_code == 200 and answer.content[:2] == b"PK"
        assert it.post(f"/jobs/{'0' * 32}/export/send").status_code == 404  # allowed, no job

        # reviewer: send to the research destination; its PACS is down, so the copy waits
        # in the outbox with the reason and the next try
        answer = doc.post(base + "/send")
        assert answer.status_code == 202, answer.text
        export = answer.json()
        assert export["state"] == "sending" and export["attempts"] == 1 and export["error"]
        assert export["next_try"] is not None and export["result"]["verification_passed"]
        assert len(export["result"]["sop_instance_uids"]) == 3
        assert not s.pacs.get("/instances")

        # the PACS comes back: the worker's outbox sweep finds the due parcel and stores it
        s.point_research_at(s.pacs.dicom_port)
        time.sleep(0.1)
        s.sweep_outbox()
        done: dict[str, Any] = doc.get(f"/exports/{export['id']}").json()
        assert done["state"] == "sent" and done["error"] is None, done
        assert [d["ok"] for d in done["deliveries"]] == [True] * 3
        assert [e["id"] for e in doc.get(f"/jobs/{s.job}/exports").json()] == [export["id"]]
        assert nurse.get(f"/exports/{export['id']}").status_code == 403
        assert not (s.settings.data_dir / "exports" / export["id"]).exists()

        audit = it.get("/audit").json()
        text = str(audit)
        copies = stored_copies(s.pacs, tmp_path)
    entries = sorted((e["action"], e["who"]) for e in audit if e["job"] == s.job)
    assert entries == [("export de-identified (basic) to research", "doc"),
                       ("export de-identified (header-only)", "it"),
                       ("export delivery (research)", "worker:research"),
                       ("export refused", "nurse"), ("export refused", "nurse")]
    assert not any(secret in text for secret in ORIGINALS)

    assert len(copies) == 3
    source = subprocess.run(["dcmdump", "+L", str(s.settings.outputs / s.job / "frames.dcm")],
                            capture_output=True, text=True, check=True).stdout
    assert all(secret in source for secret in ORIGINALS)  # the check below can fail
    uids = set()
    for path in copies:
        dump = subprocess.run(["dcmdump", "+L", str(path)], capture_output=True, text=True,
                              check=True).stdout
        for secret in (*ORIGINALS, "ACC-"):
            assert secret not in dump, (secret, path.name)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES"
        assert str(ds.PatientName).startswith("ANON^") and ds.PatientID.startswith("ANON-")
        assert ds.BurnedInAnnotation == "NO"
        uids.add(ds.SOPInstanceUID)
        read_back(path, tmp_path)
    assert uids == set(export["result"]["sop_instance_uids"])
    names = {str(pydicom.dcmread(p, stop_before_pixels=True).PatientName) for p in copies}
    assert len(names) == 1  # one patient, one pseudonym across the three objects


@pytest.mark.integration
def test_research_export_over_stow_rs_by_an_admin(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The research destination may be a DICOMweb server: STOW-RS, same outbox; an admin may
    send too. What Orthanc stored has the pseudonymous identity and no original one."""
    with site(tmp_path, monkeypatch, kinds=("copy",), stow=True) as s:
        it = s.person("it")
        answer = it.post(f"/jobs/{s.job}/export/send")
        assert answer.status_code == 202, answer.text
        export = answer.json()
        assert export["state"] == "sent" and export["attempts"] == 1, export
        assert export["who"] == "it" and export["deliveries"][0]["ok"]
        copies = stored_copies(s.pacs, tmp_path)
    assert len(copies) == 1
    dump = subprocess.run(["dcmdump", "+L", str(copies[0])], capture_output=True, text=True,
                          check=True).stdout
    for secret in (*ORIGINALS, "ACC-"):
        assert secret not in dump, secret
    assert "ANON^" in dump and "(0012,0062) CS [YES]" in dump
    read_back(copies[0], tmp_path)


def test_research_destination_must_be_configured(tmp_path: Path) -> None:
    """[deidentify] research_destination is read from service.toml; a name missing from the
    destinations file stops the gateway from starting (UsageError, one line)."""
    data = tmp_path / "data"
    data.mkdir()
    known = tmp_path / "destinations.toml"
    known.write_text('[destinations.pacs]\nae_title = "PACS"\nhost = "127.0.0.1"\n')
    (data / "service.toml").write_text(f'[service]\ndestinations_file = "{known}"\n'
                                       '[deidentify]\nresearch_destination = "research"\n')
    settings = load_settings(data)
    assert settings.deidentify is not None
    assert settings.deidentify.research_destination == "research"
    with pytest.raises(UsageError, match="research_destination 'research'"):
        check(settings)


def test_failed_deidentification_ends_the_export(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """An instance that cannot be de-identified: the export fails with a reason that names
    neither the server's paths nor the patient, nothing is queued, the failure is audited."""
    monkeypatch.setenv("VID2DCM_DEID_SECRET", "gateway-site-secret")
    settings = ServiceSettings(data_dir=tmp_path / "data",
                               deidentify=DeidentifySettings(research_destination="research"))
    store = open_store(settings)
    job = store.add_job(JobRequest(upload_id="0" * 32))
    (settings.outputs / job).mkdir(parents=True)
    (settings.outputs / job / "DOE_JANE.dcm").write_bytes(b"not DICOM at all")
    assert store.claim(job)
    store.finish(job, JobResult(files=(FileResult(name="DOE_JANE.dcm", sop_instance_uid="1.2",
                                                  transfer_syntax_uid="1.2.840.10008.1.2.1",
                                                  frames=1, bytes=16),)))
    export = store.add_export(job, "basic", "research", "doc")
    run_export(settings, export)
    record = store.export(export)
    assert record is not None and record.state == "failed"
    assert record.error and record.error.startswith("de-identification failed")
    assert "DOE" not in record.error and str(tmp_path) not in record.error
    assert not store.parcels(export)
    assert not list((settings.data_dir / "exports").glob("*"))  # no scratch left either
    assert [(e.action, e.who) for e in store.audit_log()] == [
        ("export failed (research)", "worker:research")]


def test_key_object_manifest_is_not_exported(tmp_path: Path) -> None:
    """A job's KOS manifest (frames 0) references the original UIDs: it is left out, and a
    job with nothing else has nothing to export."""
    settings = ServiceSettings(data_dir=tmp_path / "data",
                               deidentify=DeidentifySettings(research_destination="research"))
    store = open_store(settings)
    job = store.add_job(JobRequest(upload_id="0" * 32))
    (settings.outputs / job).mkdir(parents=True)
    (settings.outputs / job / "kos.dcm").write_bytes(b"a manifest")
    assert store.claim(job)
    store.finish(job, JobResult(files=(FileResult(name="kos.dcm", sop_instance_uid="1.2",
                                                  transfer_syntax_uid="1.2.840.10008.1.2.1",
                                                  frames=0, bytes=10),)))
    export = store.add_export(job, "basic", "research", "doc")
    run_export(settings, export)
    record = store.export(export)
    assert record is not None and record.state == "failed"
    assert record.error == ("de-identification failed: the job has no video or frame objects "
                            "to export")
