"""The gateway's export action: a finished job's instances de-identified into a ZIP, admin
only, audited, through a real uvicorn server started and stopped by PID."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
import zipfile
from datetime import date
from pathlib import Path

import pydicom
import pytest

from dcmtk_peers import free_port, stop, wait_listening
from deid_fixtures import make_clip
from readback import read_back
from vid2dcm.apps.gateway.models import FileResult, JobRequest, JobResult
from vid2dcm.apps.gateway.settings import ServiceSettings, hash_token
from vid2dcm.apps.gateway.store import open_store
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import convert

UPLOADER, ADMIN = "uploader-token", "admin-token"


def _post(url: str, token: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method="POST",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.integration
def test_export_deidentified_zip(tmp_path: Path) -> None:
    data = tmp_path / "gateway"
    port = free_port()
    settings = ServiceSettings(data_dir=data, port=port)
    settings.prepare()
    (data / "service.toml").write_text(f"""
[service]
port = {port}
tokens = [
  {{ sha256 = "{hash_token(UPLOADER)}", role = "uploader", name = "nurse" }},
  {{ sha256 = "{hash_token(ADMIN)}", role = "admin", name = "teacher" }},
]
""")
    store = open_store(settings)
    clip = make_clip(tmp_path / "clip.mp4", frames=10, with_face=False)
    upload = store.add_upload("clip.mp4", clip, clip.stat().st_size)
    job = store.add_job(JobRequest(upload_id=upload))
    (settings.outputs / job).mkdir(parents=True)
    converted = convert(clip, settings.outputs / job / "DOE_JANE.dcm", metadata=Metadata(
        patient_name="DOE^JANE", patient_id="PID-4711", patient_birth_date=date(1970, 1, 31)))
    assert store.claim(job)
    written = converted.files[0]
    store.finish(job, JobResult(files=(FileResult(
        name=written.path.name, sop_instance_uid=written.sop_instance_uid,
        transfer_syntax_uid=written.transfer_syntax_uid, frames=written.frames,
        bytes=written.size_bytes),)))
    env = {**os.environ, "VID2DCM_DEID_SECRET": "gateway-site-secret"}
    log = (data / "gateway.log").open("wb")
    server = subprocess.Popen([sys.executable, "-m", "vid2dcm", "serve", "--data", str(data)],
                              stdout=log, stderr=log, start_new_session=True, env=env)
    try:
        wait_listening(port, server, seconds=30)
        url = f"http://127.0.0.1:{port}/jobs/{job}/export"
        assert _post(url, UPLOADER)[0] == 403
        assert _post(url + "?profile=nope", ADMIN)[0] == 400
        status, body = _post(url, ADMIN)
        assert status == 200, body[:300]
        again = _post(url, ADMIN)[1]
        audit = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{port}/audit", headers={"Authorization": f"Bearer {ADMIN}"}),
            timeout=30).read()
    finally:
        stop(server)
        log.close()
    with zipfile.ZipFile(io.BytesIO(body)) as zf:
        names = sorted(zf.namelist())
        assert len(names) == 2 and names[0].endswith(".dcm") and names[1].endswith(".json")
        zf.extractall(tmp_path / "export")
    dicom = tmp_path / "export" / names[0]
    dump = subprocess.run(["dcmdump", "+L", str(dicom)], capture_output=True, text=True,
                          check=True).stdout
    assert "DOE" not in dump and "4711" not in dump and "19700131" not in dump
    assert "DOE" not in names[0]
    report = json.loads((tmp_path / "export" / names[1]).read_text())
    assert report["verification"]["passed"] is True
    read_back(dicom, tmp_path)
    with zipfile.ZipFile(io.BytesIO(again)) as zf:  # same secret: same pseudonymous names
        assert sorted(zf.namelist()) == names
    entries = [e for e in json.loads(audit) if e["job"] == job]
    assert sorted((e["action"], e["who"]) for e in entries) == [
        ("export de-identified (basic)", "teacher")] * 2 + [("export refused", "nurse")]
    assert not list((data / "exports").iterdir())  # scratch removed once sent
    text = (data / "gateway.log").read_text(errors="replace")
    assert "DOE" not in text and "4711" not in text
    assert pydicom.dcmread(dicom, stop_before_pixels=True).PatientIdentityRemoved == "YES"
