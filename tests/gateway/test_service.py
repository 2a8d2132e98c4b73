"""The gateway through HTTP: a real uvicorn server and a real huey consumer (SQLite queue),
both started and stopped by PID; uploads, jobs, downloads, tokens, quota, bad input."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcmtk_peers import free_port, running_worklist, stop, wait_listening
from orthanc import Orthanc, running_orthanc
from readback import read_back
from vid2dcm.apps.gateway.settings import hash_token
from vid2dcm.producing.synth import ClipSpec, synthesize

pytestmark = pytest.mark.integration

UPLOADER, ADMIN = "uploader-token", "admin-token"
QUOTA = 5_000_000


@dataclass(frozen=True)
class Gateway:
    url: str
    data: Path

    def call(self, method: str, path: str, token: str | None = UPLOADER,
             body: bytes | None = None, json_body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as r:
                raw = r.read()
                kind = r.headers.get_content_type()
                return r.status, json.loads(raw) if kind == "application/json" else raw
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")


TODAY = time.strftime("%Y%m%d")
ORDER = {"accession": "GWACC1", "patient_name": "Order^Patient", "patient_id": "ORD1",
         "study_uid": "1.2.826.0.1.3680043.10.999.77", "procedure": "Gastroscopy",
         "modality": "ES", "day": TODAY}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with running_orthanc(tmp_path_factory.mktemp("gw-pacs")) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pacs: Orthanc) -> Iterator[Gateway]:
    data = tmp_path_factory.mktemp("gateway")
    port = free_port()
    destinations = data / "destinations.toml"
    destinations.write_text(f'[destinations.pacs]\nae_title = "{pacs.aet}"\n'
                            f'host = "127.0.0.1"\nport = {pacs.dicom_port}\nretries = 1\n')
    with running_worklist(tmp_path_factory.mktemp("wl"), [ORDER]) as (aet, wl_port):
        yield from _gateway(data, port, f"{aet}@127.0.0.1:{wl_port}", destinations)


def _gateway(data: Path, port: int, worklist: str, destinations: Path, extra: str = ""
             ) -> Iterator[Gateway]:
    (data / "service.toml").write_text(f"""
[service]
port = {port}
quota_bytes = {QUOTA}
worklist = "{worklist}"
destinations_file = "{destinations}"{extra}
default_destinations = ["pacs"]
tokens = [
  {{ sha256 = "{hash_token(UPLOADER)}", role = "uploader", name = "nurse" }},
  {{ sha256 = "{hash_token(ADMIN)}", role = "admin", name = "it" }},
]
""")
    cli = [sys.executable, "-m", "vid2dcm"]
    log = (data / "gateway.log").open("wb")
    worker = subprocess.Popen([*cli, "worker", "--data", str(data)], stdout=log, stderr=log,
                              start_new_session=True)
    server = subprocess.Popen([*cli, "serve", "--data", str(data)], stdout=log, stderr=log,
                              start_new_session=True)
    try:
        wait_listening(port, server, seconds=30)
        yield Gateway(f"http://127.0.0.1:{port}", data)
    finally:
        stop(server)
        stop(worker)
        log.close()


def _embedded(path: Path) -> bytes:
    from vid2dcm.reading.reader import open_video_object

    with open_video_object(path).open_bitstream() as raw:
        return raw.read()


def _wait(gateway: Gateway, job_id: str) -> dict[str, Any]:
    return _wait_token(gateway, job_id, UPLOADER, seconds=90)


def test_upload_convert_download(gateway: Gateway, tmp_path: Path) -> None:
    clip = synthesize(tmp_path / "scope.mp4", ClipSpec(
        options={"preset": "superfast", "profile": "high"}, frames=20))
    status, upload = gateway.call("PUT", "/uploads/scope.mp4", body=clip.read_bytes())
    assert status == 201 and upload["size"] == clip.stat().st_size
    status, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "sop": "endoscopic",
        "metadata": {"patient_id": "GW1", "patient_name": "Gate^Way"}})
    assert status == 201, created
    job = _wait(gateway, created["id"])
    assert job["status"] == "done", job
    assert "metadata" not in job["request"], "patient data is not echoed back"
    status, dicom = gateway.call("GET", f"/jobs/{created['id']}/files/0")
    assert status == 200
    path = tmp_path / "out.dcm"
    path.write_bytes(dicom)
    ds = read_back(path, tmp_path).dataset
    assert ds.PatientID == "GW1" and ds.Modality == "ES" and int(ds.NumberOfFrames) == 20
    status, whole = gateway.call("GET", f"/jobs/{created['id']}/files/0/video")
    assert status == 200
    embedded = _embedded(path)
    assert whole == embedded
    request = urllib.request.Request(f"{gateway.url}/jobs/{created['id']}/files/0/video",
                                     headers={"Authorization": f"Bearer {UPLOADER}",
                                              "Range": "bytes=100-199"})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 206 and r.headers["Content-Type"] == "video/mp4"
        assert r.headers["Content-Range"] == f"bytes 100-199/{len(embedded)}"
        assert r.read() == embedded[100:200]
    status, listing = gateway.call("GET", "/jobs")
    assert status == 200 and any(j["id"] == created["id"] for j in listing)
    status, metrics = gateway.call("GET", "/metrics")
    assert status == 200
    text = metrics.decode()
    assert 'vid2dcm_jobs{state="done"}' in text and "vid2dcm_job_seconds_count" in text
    assert "vid2dcm_queue_depth" in text
    assert "Gate" not in text and "GW1" not in text


def test_every_endpoint_but_health_needs_a_token(gateway: Gateway) -> None:
    assert gateway.call("GET", "/health", token=None)[0] == 200
    assert gateway.call("GET", "/ready", token=None) == (200, {"status": "ready"})
    for method, path in (("GET", "/jobs"), ("PUT", "/uploads/x.mp4"), ("POST", "/jobs"),
                         ("GET", "/metrics"),
                         ("GET", "/jobs/" + "0" * 32)):
        assert gateway.call(method, path, token=None, body=b"")[0] == 401, path
        assert gateway.call(method, path, token="wrong", body=b"")[0] == 401, path


def test_uploader_cannot_do_admin_actions(gateway: Gateway) -> None:
    job = "0" * 32
    assert gateway.call("POST", f"/jobs/{job}/cancel")[0] == 403
    assert gateway.call("POST", f"/jobs/{job}/retry")[0] == 403
    assert gateway.call("POST", f"/jobs/{job}/cancel", token=ADMIN)[0] == 404


def test_quota_is_enforced_up_front(gateway: Gateway) -> None:
    """A client that announces the size (Expect: 100-continue) is refused before sending it."""
    before = sorted(p.name for p in (gateway.data / "uploads").iterdir())
    host, port = gateway.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("PUT", "/uploads/big.mp4")
    conn.putheader("Authorization", f"Bearer {UPLOADER}")
    conn.putheader("Content-Length", str(QUOTA + 1))
    conn.putheader("Expect", "100-continue")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"quota" in response.read()
    conn.close()
    assert sorted(p.name for p in (gateway.data / "uploads").iterdir()) == before


@pytest.mark.parametrize("path", ["/uploads/..%2F..%2Fetc%2Fpasswd", "/uploads/.hidden",
                                  "/jobs/..%2F..", "/jobs/not-an-id/files/0"])
def test_path_tricks_are_refused(gateway: Gateway, path: str) -> None:
    method = "PUT" if path.startswith("/uploads") else "GET"
    status, _ = gateway.call(method, path, body=b"x" if method == "PUT" else None)
    assert status in (400, 404), status
    assert not (gateway.data.parent / "etc").exists()


def test_bad_job_requests_are_400(gateway: Gateway) -> None:
    status, answer = gateway.call("POST", "/jobs", json_body={"upload_id": "nope"})
    assert status == 400
    status, answer = gateway.call("POST", "/jobs", json_body={"upload_id": "0" * 32,
                                                              "unknown": 1})
    assert status == 400 and "unknown" in answer["detail"]


def test_job_interrupted_mid_run_completes_once_after_restart(tmp_path: Path) -> None:
    """A worker died after taking a job (it is 'running' and gone from the queue): the next
    worker runs it again from its input, once, with the same UIDs as the first attempt."""
    from vid2dcm.apps.gateway.queue import make_queue
    from vid2dcm.apps.gateway.settings import load_settings
    from vid2dcm.apps.gateway.store import Store

    data = tmp_path / "gw"
    data.mkdir()
    port = free_port()
    (data / "service.toml").write_text(
        f'[service]\nport = {port}\ntokens = [{{ sha256 = "{hash_token(ADMIN)}", '
        'role = "admin" }]\n')
    cli = [sys.executable, "-m", "vid2dcm"]
    server = subprocess.Popen([*cli, "serve", "--data", str(data)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    worker = None
    try:
        wait_listening(port, server, seconds=30)
        gateway = Gateway(f"http://127.0.0.1:{port}", data)
        clip = synthesize(tmp_path / "c.mp4", ClipSpec(
            options={"preset": "superfast", "profile": "high"}, frames=10))
        _, upload = gateway.call("PUT", "/uploads/c.mp4", token=ADMIN, body=clip.read_bytes())
        _, created = gateway.call("POST", "/jobs", token=ADMIN,
                                  json_body={"upload_id": upload["id"]})
        job_id = created["id"]
        store = Store(data / "jobs.sqlite")
        assert store.claim(job_id, "dead-worker", lease_s=0.0)  # the dead worker's claim,
        # its lease run out (no heartbeat) ...
        make_queue(load_settings(data)).huey.flush()  # ... and the queue entry it consumed
        worker = subprocess.Popen([*cli, "worker", "--data", str(data)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        job = _wait_token(gateway, job_id, ADMIN)
        assert job["status"] == "done" and job["attempts"] == 2, job
        files = list((data / "outputs" / job_id).iterdir())
        assert len(files) == 1
    finally:
        stop(server)
        if worker is not None:
            stop(worker)


def _wait_token(gateway: Gateway, job_id: str, token: str, seconds: float = 60
                ) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    job: Any = None
    while time.monotonic() < deadline:
        _, job = gateway.call("GET", f"/jobs/{job_id}", token=token)
        if job["status"] in ("done", "failed", "cancelled"):
            return dict(job)
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not finish: {job}")


def test_worklist_and_a_job_filed_under_the_order(gateway: Gateway, tmp_path: Path) -> None:
    status, entries = gateway.call("GET", "/worklist?date=today&modality=ES")
    assert status == 200 and [e["accession_number"] for e in entries] == ["GWACC1"]
    assert gateway.call("GET", "/worklist?date=yesterday")[0] == 400
    assert gateway.call("GET", "/worklist", token=None)[0] == 401
    clip = synthesize(tmp_path / "g.mp4", ClipSpec(
        options={"preset": "superfast", "profile": "high"}, frames=10))
    _, upload = gateway.call("PUT", "/uploads/g.mp4", body=clip.read_bytes())
    _, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "sop": "endoscopic", "accession": "GWACC1"})
    job = _wait(gateway, created["id"])
    assert job["status"] == "done", job
    _, dicom = gateway.call("GET", f"/jobs/{created['id']}/files/0")
    path = tmp_path / "g.dcm"
    path.write_bytes(dicom)
    ds = read_back(path, tmp_path).dataset
    assert (ds.PatientID, ds.AccessionNumber) == ("ORD1", "GWACC1")
    assert ds.StudyInstanceUID == ORDER["study_uid"]
    assert ds.RequestAttributesSequence[0].ScheduledProcedureStepID == "SPS-GWACC1"


def test_staff_page_is_served_and_uses_the_api(gateway: Gateway) -> None:
    """The page needs no token to load (it asks for one) and talks only to this API."""
    with urllib.request.urlopen(gateway.url + "/", timeout=30) as r:
        html = r.read().decode()
        assert r.headers.get_content_type() == "text/html"
        assert "'unsafe-inline'" not in r.headers["Content-Security-Policy"]
    assert "<script>" not in html and "<style>" not in html, "no inline code (CSP)"
    for asset in ("common.js", "app.js", "app.css"):
        with urllib.request.urlopen(f"{gateway.url}/static/{asset}", timeout=30) as r:
            html += r.read().decode()
    for endpoint in ('"/jobs"', '"/files"', "Tus-Resumable", "/worklist?date=today",
                     "/files/0/video",
                     'name="viewport"'):
        assert endpoint in html, endpoint
    assert "http://" not in html and "https://" not in html, "no third-party resources"


AXE = Path(__file__).parents[1] / "browser" / "node_modules" / "axe-core" / "axe.min.js"
VIEWPORTS = {"tablet": (1024, 768), "phone": (390, 844)}


def _artifacts(tmp_path: Path) -> Path:
    """Screenshots go to $VID2DCM_ARTIFACTS when set (CI keeps them), else the test's tmp."""
    folder = Path(os.environ.get("VID2DCM_ARTIFACTS", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.parametrize("device", list(VIEWPORTS))
def test_browser_flow_from_worklist_to_playing_the_result(gateway: Gateway, pacs: Orthanc,
                                                          tmp_path: Path, device: str) -> None:
    """Headless Debian chromium (loopback only) driven by Playwright, as a nurse on a tablet
    and on a phone: sign in with name and password, pick today's worklist order, see the
    patient card, confirm, choose a clip, see the job card reach "stored in PACS", play it.
    axe-core finds no serious or critical accessibility violation on any screen; the page
    never scrolls sideways at 360 px; the instance is in the PACS under the order."""
    from playwright.sync_api import expect, sync_playwright

    from vid2dcm.apps.gateway.auth import add_user
    from vid2dcm.apps.gateway.settings import load_settings

    add_user(load_settings(gateway.data), f"nurse-{device}", "uploader", "ward password 1")
    shots = _artifacts(tmp_path)
    clip = synthesize(tmp_path / f"{device}.mp4", ClipSpec(
        options={"preset": "superfast", "profile": "high"}, frames=50))
    width, height = VIEWPORTS[device]
    violations: dict[str, list[str]] = {}
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # bypass_csp only lets the test inject axe-core; the page itself runs under CSP
            context = browser.new_context(viewport={"width": width, "height": height},
                                          bypass_csp=True)
            page = context.new_page()

            def check(screen: str) -> None:
                page.add_script_tag(path=str(AXE))
                found = page.evaluate("""async () => (await axe.run(document, {runOnly:
                    ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}))
                    .violations.filter(v => ['serious', 'critical'].includes(v.impact))
                    .map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' '))""")
                violations[screen] = found
                page.screenshot(path=str(shots / f"staff-{device}-{screen}.png"),
                                full_page=True)

            page.goto(gateway.url + "/")
            check("sign-in")
            page.get_by_test_id("login-username").fill(f"nurse-{device}")
            page.get_by_test_id("login-password").fill("wrong password")
            page.get_by_test_id("login-submit").click()
            expect(page.locator("#signin-error")).to_contain_text("wrong name or password")
            page.get_by_test_id("login-password").fill("ward password 1")
            page.get_by_test_id("login-submit").click()
            order = page.locator(".order[data-accession='GWACC1']")
            order.wait_for(timeout=15_000)
            expect(order).to_contain_text("Order, Patient")
            expect(order).to_contain_text("ID ORD1")
            expect(page.get_by_test_id("confirm-patient")).to_be_disabled()
            order.click()
            card = page.get_by_test_id("patient-card")
            expect(card).to_contain_text("Order, Patient")
            expect(card).to_contain_text("GWACC1")
            # typing a patient clears the order: never both
            page.locator("#typed summary").click()
            page.locator("#family").fill("Walk")
            expect(order).to_have_attribute("aria-pressed", "false")
            expect(page.get_by_test_id("confirm-patient")).to_be_disabled()
            order.click()
            expect(page.locator("#family")).to_have_value("")
            check("patient")
            page.get_by_test_id("confirm-patient").click()
            page.select_option("#procedure", "endoscopic")
            page.get_by_test_id("file-input").set_input_files(str(clip))
            done = page.locator("[data-testid='job-card'][data-state='done']").first
            done.wait_for(timeout=90_000)
            expect(done).to_contain_text("stored in PACS")
            expect(done).to_contain_text("Order, Patient")
            expect(done).to_contain_text(f"{device}.mp4")
            done.get_by_role("button", name="Play").click()
            page.wait_for_function(
                "() => { const v = document.getElementById('preview');"
                " return v && v.duration > 0 && v.currentTime > 0.2; }", timeout=30_000)
            check("job")
            page.set_viewport_size({"width": 360, "height": 740})
            overflow = page.evaluate("() => document.documentElement.scrollWidth - "
                                     "document.documentElement.clientWidth")
            assert overflow <= 0, f"horizontal scroll of {overflow} px at 360 px"
            page.locator("#signout").click()
            expect(page.get_by_test_id("login-username")).to_be_visible()
        finally:
            browser.close()
    assert violations == {"sign-in": [], "patient": [], "job": []}, violations
    _, jobs = gateway.call("GET", "/jobs", token=ADMIN)
    newest = next(j for j in jobs if j["owner"] == f"nurse-{device}")
    assert newest["status"] == "done"
    (delivery,) = newest["result"]["deliveries"]
    assert delivery["ok"] and delivery["destination"] == "pacs"
    found = pacs.get_json_post("/tools/lookup", delivery["sop_instance_uid"])
    instance = next(f["ID"] for f in found if f["Type"] == "Instance")
    tags = pacs.get(f"/instances/{instance}/simplified-tags")
    assert (tags["AccessionNumber"], tags["PatientID"]) == ("GWACC1", "ORD1")


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--autoplay-policy=no-user-gesture-required"]


def test_gateway_command_starts_on_embedded_defaults(tmp_path: Path) -> None:
    """What `make run` starts: a fresh data folder, an admin token, server and worker."""
    data = tmp_path / "data"
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vid2dcm", "gateway", "--data", str(data),
                             "--port", str(port)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(port, proc, seconds=30)
        token = (data / "admin-token.txt").read_text().strip()
        gateway = Gateway(f"http://127.0.0.1:{port}", data)
        assert gateway.call("GET", "/jobs", token=token) == (200, [])
        assert (data / "admin-token.txt").stat().st_mode & 0o077 == 0
        assert (data / "admin-password.txt").stat().st_mode & 0o077 == 0
        password = (data / "admin-password.txt").read_text().strip()
        login = urllib.request.Request(
            f"http://127.0.0.1:{port}/auth/login", method="POST",
            data=json.dumps({"username": "admin", "password": password}).encode(),
            headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(login, timeout=30) as r:
            assert json.loads(r.read())["role"] == "admin"
    finally:
        stop(proc)
    assert proc.stdout is not None
    printed = proc.stdout.read().decode()
    assert f"http://127.0.0.1:{port}/" in printed and "sign in on the page as admin" in printed


def test_resumable_upload_interrupted_at_half_then_resumed(gateway: Gateway,
                                                          tmp_path: Path) -> None:
    """tus 1.0: create, send half, 'lose the connection', ask the server where it got to,
    send the rest; the file is byte-identical and one job converts it."""
    import base64
    import hashlib

    clip = synthesize(tmp_path / "resumed.mp4", ClipSpec(
        options={"preset": "superfast", "profile": "high"}, frames=40))
    data = clip.read_bytes()
    auth = {"Authorization": f"Bearer {UPLOADER}", "Tus-Resumable": "1.0.0"}
    name = base64.b64encode(b"resumed.mp4").decode()
    kind = base64.b64encode(b"video/mp4").decode()
    create = urllib.request.Request(f"{gateway.url}/files", method="POST", data=b"", headers={
        **auth, "Upload-Length": str(len(data)),
        "Upload-Metadata": f"filename {name},filetype {kind}"})
    with urllib.request.urlopen(create, timeout=30) as r:
        assert r.status == 201
        location = r.headers["Location"]
    upload_id = location.rstrip("/").rsplit("/", 1)[1]
    url = f"{gateway.url}/files/{upload_id}"

    def patch(offset: int, chunk: bytes) -> int:
        request = urllib.request.Request(url, method="PATCH", data=chunk, headers={
            **auth, "Upload-Offset": str(offset),
            "Content-Type": "application/offset+octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as r:
            assert r.status == 204
            return int(r.headers["Upload-Offset"])

    half = len(data) // 2
    assert patch(0, data[:half]) == half
    head = urllib.request.Request(url, method="HEAD", headers=auth)
    with urllib.request.urlopen(head, timeout=30) as r:
        resume_at = int(r.headers["Upload-Offset"])
    assert resume_at == half
    assert patch(resume_at, data[resume_at:]) == len(data)

    status, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload_id, "metadata": {"patient_id": "R1", "patient_name": "Re^Sumed"}})
    assert status == 201, created
    job = _wait(gateway, created["id"])
    assert job["status"] == "done", job
    stored = gateway.data / "tus" / upload_id
    assert hashlib.sha256(stored.read_bytes()).digest() == hashlib.sha256(data).digest()
    _, jobs = gateway.call("GET", "/jobs")
    assert sum(1 for j in jobs if j["upload_id"] == upload_id) == 1


def test_resumable_upload_needs_a_token_and_respects_the_quota(gateway: Gateway) -> None:
    request = urllib.request.Request(f"{gateway.url}/files", method="POST", data=b"",
                                     headers={"Tus-Resumable": "1.0.0", "Upload-Length": "10"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 401
    request = urllib.request.Request(f"{gateway.url}/files", method="POST", data=b"", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(QUOTA + 1),
        "Authorization": f"Bearer {UPLOADER}"})
    with pytest.raises(urllib.error.HTTPError) as too_big:
        urllib.request.urlopen(request, timeout=30)
    assert too_big.value.code == 413


def test_two_workers_share_a_redis_queue(tmp_path: Path) -> None:
    """VID2DCM_QUEUE_URL=redis://...: two worker processes take jobs from one queue; every
    job runs exactly once."""
    data = tmp_path / "gw"
    data.mkdir()
    port, redis_port = free_port(), free_port()
    (data / "service.toml").write_text(
        f'[service]\nport = {port}\ntokens = [{{ sha256 = "{hash_token(ADMIN)}", '
        'role = "admin" }]\n')
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1",
                              "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    env = {**os.environ, "VID2DCM_QUEUE_URL": f"redis://127.0.0.1:{redis_port}/0"}
    cli = [sys.executable, "-m", "vid2dcm"]
    procs = [redis]
    try:
        wait_listening(redis_port, redis)
        for _ in range(2):
            procs.append(subprocess.Popen([*cli, "worker", "--data", str(data)], env=env,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          start_new_session=True))
        server = subprocess.Popen([*cli, "serve", "--data", str(data)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        procs.append(server)
        wait_listening(port, server, seconds=30)
        gateway = Gateway(f"http://127.0.0.1:{port}", data)
        ids = []
        for n in range(4):
            clip = synthesize(tmp_path / f"q{n}.mp4", ClipSpec(
                options={"preset": "superfast", "profile": "baseline"}, frames=30))
            _, upload = gateway.call("PUT", f"/uploads/q{n}.mp4", token=ADMIN,
                                     body=clip.read_bytes())
            _, created = gateway.call("POST", "/jobs", token=ADMIN,
                                      json_body={"upload_id": upload["id"]})
            ids.append(created["id"])
        jobs = [_wait_token(gateway, job_id, ADMIN) for job_id in ids]
        assert [j["status"] for j in jobs] == ["done"] * 4, jobs
        assert [j["attempts"] for j in jobs] == [1] * 4
        workers = {j["result"]["worker"] for j in jobs}
        print(f"jobs ran on {len(workers)} worker process(es): {sorted(workers)}")
        assert not (data / "queue.sqlite").exists(), "the SQLite queue must not be used"
    finally:
        for proc in reversed(procs):
            stop(proc)


def test_audit_log_records_actions_without_patient_data(gateway: Gateway, tmp_path: Path) -> None:
    clip = synthesize(tmp_path / "audited.mp4", ClipSpec(
        options={"preset": "superfast", "profile": "high"}, frames=10))
    _, upload = gateway.call("PUT", "/uploads/audited.mp4", body=clip.read_bytes())
    study = "1.2.826.0.1.3680043.10.999.5"
    _, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"],
        "metadata": {"patient_name": "Secret^Person", "patient_id": "SECRET1",
                     "study_instance_uid": study}})
    _wait(gateway, created["id"])
    assert gateway.call("GET", "/audit")[0] == 403, "uploaders cannot read the audit log"
    status, log = gateway.call("GET", "/audit", token=ADMIN)
    assert status == 200
    mine = [e for e in log if e["job"] == created["id"] or e["upload"] == upload["id"]]
    assert {"upload", "create job", "view job"} <= {e["action"] for e in mine}
    people = [e for e in mine if e["role"] != "system"]
    assert all(e["role"] == "uploader" and e["client"] == "127.0.0.1" for e in people)
    assert all(e["who"] == "nurse" for e in people)
    assert [(e["who"], e["action"], e["study"]) for e in mine if e["role"] == "system"] == [
        ("worker:pacs", "delivery", study)]
    assert any(e["study"] == study for e in mine)
    assert "Secret" not in json.dumps(log) and "SECRET1" not in json.dumps(log)
    assert "Secret" not in (gateway.data / "gateway.log").read_text(errors="replace")
    for store in gateway.data.glob("*.sqlite*"):  # jobs, queue and their WAL files
        assert b"Secret" not in store.read_bytes() and b"SECRET1" not in store.read_bytes()


def test_upload_checksums_are_verified(gateway: Gateway, tmp_path: Path) -> None:
    import hashlib

    body = b"some bytes standing in for a recording"
    good = hashlib.sha256(body).hexdigest()
    request = urllib.request.Request(f"{gateway.url}/uploads/sum.mp4", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {UPLOADER}",
                                              "X-Checksum-SHA256": good})
    with urllib.request.urlopen(request, timeout=30) as r:
        assert r.status == 201
    request = urllib.request.Request(f"{gateway.url}/uploads/bad.mp4", data=body, method="PUT",
                                     headers={"Authorization": f"Bearer {UPLOADER}",
                                              "X-Checksum-SHA256": "0" * 64})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=30)
    assert refused.value.code == 400 and b"checksum" in refused.value.read()


def test_a_rerun_job_does_not_duplicate_instances_in_the_pacs(gateway: Gateway, pacs: Orthanc,
                                                              tmp_path: Path) -> None:
    """A job that delivered and then 'failed' (say the worker died before recording success)
    is retried: the same UIDs go out again, so the PACS still holds one instance."""
    from vid2dcm.apps.gateway.store import Store

    clip = synthesize(tmp_path / "twice.mp4", ClipSpec(
        options={"preset": "superfast", "profile": "high"}, frames=10))
    _, upload = gateway.call("PUT", "/uploads/twice.mp4", body=clip.read_bytes())
    _, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "metadata": {"patient_id": "T2", "patient_name": "Twi^Ce"}})
    first = _wait(gateway, created["id"])
    uid = first["result"]["files"][0]["sop_instance_uid"]
    series = pacs.get_json_post("/tools/lookup", uid)
    assert len([f for f in series if f["Type"] == "Instance"]) == 1
    Store(gateway.data / "jobs.sqlite").set_status(created["id"], "failed", ("done",))
    assert gateway.call("POST", f"/jobs/{created['id']}/retry", token=ADMIN)[0] == 200
    second = _wait(gateway, created["id"])
    assert second["status"] == "done" and second["attempts"] == 2
    assert second["result"]["files"][0]["sop_instance_uid"] == uid
    instance = next(f["ID"] for f in pacs.get_json_post("/tools/lookup", uid)
                    if f["Type"] == "Instance")
    series_id = pacs.get(f"/instances/{instance}/series")["ID"]
    assert len(pacs.get(f"/series/{series_id}/instances")) == 1


def test_wrong_patient_is_refused_naming_the_fields(gateway: Gateway, tmp_path: Path) -> None:
    """The incident from issue 11: typed name/ID left over on the page plus a chosen order.
    The gateway refuses (409) instead of letting either silently win."""
    clip = synthesize(tmp_path / "w.mp4", ClipSpec(
        width=64, height=48, options={"preset": "superfast", "profile": "high"}, frames=5))
    _, upload = gateway.call("PUT", "/uploads/w.mp4", body=clip.read_bytes())
    status, answer = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "accession": "GWACC1",
        "metadata": {"patient_id": "WALKIN7", "patient_name": "Walk^In"}})
    assert status == 409, answer
    assert "patient_id" in answer["detail"] and "patient_name" in answer["detail"]
    assert "WALKIN7" not in answer["detail"] and "ORD1" not in answer["detail"]
    status, answer = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "accession": "GWACC1",
        "metadata": {"patient_id": "ORD1"}})
    assert status == 201, "typed fields that agree with the order are fine"
    assert _wait(gateway, answer["id"])["status"] == "done"
    status, answer = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "accession": "NOSUCH"})
    assert status == 422 and "0 entries" in answer["detail"]


def test_unidentified_job_is_held_then_assigned_and_stored_under_the_order(
        gateway: Gateway, pacs: Orthanc, tmp_path: Path) -> None:
    clip = synthesize(tmp_path / "walkin.mp4", ClipSpec(
        width=64, height=48, options={"preset": "superfast", "profile": "high"}, frames=8))
    _, upload = gateway.call("PUT", "/uploads/walkin.mp4", body=clip.read_bytes())
    assert gateway.call("POST", "/jobs", json_body={"upload_id": upload["id"]})[0] == 422
    _, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "unidentified": True, "sop": "endoscopic"})
    job_id = created["id"]
    deadline = time.monotonic() + 60
    while (job := gateway.call("GET", f"/jobs/{job_id}")[1])["status"] in ("queued",
                                                                             "running"):
        assert time.monotonic() < deadline
        time.sleep(0.3)
    assert job["status"] == "held" and job["result"]["deliveries"] == []
    held_uid = job["result"]["files"][0]["sop_instance_uid"]
    assert not [f for f in pacs.get_json_post("/tools/lookup", held_uid)
                if f["Type"] == "Instance"], "a held job never reaches the PACS"
    assert gateway.call("POST", f"/jobs/{job_id}/assign",
                        json_body={"accession": "GWACC1"})[0] == 403, "uploaders cannot"
    status, _ = gateway.call("POST", f"/jobs/{job_id}/assign", token=ADMIN,
                             json_body={"accession": "GWACC1"})
    assert status == 200
    job = _wait(gateway, job_id)
    assert job["status"] == "done", job
    (delivery,) = job["result"]["deliveries"]
    assert delivery["ok"] and delivery["sop_instance_uid"] != held_uid
    instance = next(f["ID"] for f in pacs.get_json_post("/tools/lookup",
                                                        delivery["sop_instance_uid"])
                    if f["Type"] == "Instance")
    tags = pacs.get(f"/instances/{instance}/simplified-tags")
    assert (tags["PatientID"], tags["AccessionNumber"]) == ("ORD1", "GWACC1")
    assert tags["StudyInstanceUID"] == ORDER["study_uid"]
    _, log = gateway.call("GET", "/audit", token=ADMIN)
    assert any(e["action"] == "assign patient" and e["job"] == job_id and e["who"] == "it"
               for e in log)


def test_people_sign_in_with_a_password_and_get_a_session_cookie(gateway: Gateway) -> None:
    """`vid2dcm user add` (password on stdin), then POST /auth/login through the real
    server: an HttpOnly, SameSite=Strict cookie that the API accepts; disable ends it."""
    import http.cookiejar

    cli = [sys.executable, "-m", "vid2dcm", "user"]
    added = subprocess.run([*cli, "add", "ward.nurse", "--role", "uploader", "--data",
                            str(gateway.data), "--password-stdin"], input="long enough pw\n",
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = urllib.request.Request(gateway.url + "/auth/login", method="POST",
                                   data=b'{"username": "ward.nurse", "password": "long enough pw"}',
                                   headers={"Content-Type": "application/json"})
    with opener.open(login, timeout=30) as r:
        cookie = r.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    with opener.open(gateway.url + "/jobs", timeout=30) as r:
        assert r.status == 200 and json.loads(r.read()) == [], "sees only their own jobs"
    disabled = subprocess.run([*cli, "disable", "ward.nurse", "--data", str(gateway.data)],
                              capture_output=True, text=True, timeout=60)
    assert disabled.returncode == 0, disabled.stderr
    with pytest.raises(urllib.error.HTTPError) as ended:
        opener.open(gateway.url + "/jobs", timeout=30)
    assert ended.value.code == 401
    bad = subprocess.run([*cli, "add", "x", "--role", "boss", "--data", str(gateway.data),
                          "--password-stdin"], input="long enough pw\n", capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2 and "role must be" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_pacs_started_late_the_job_waits_then_is_stored_exactly_once(
        tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    """The outbox: with the PACS down the job waits (a nurse sees when the next try is), the
    worker tries again with backoff, and once the PACS is up the video is stored, once."""
    data = tmp_path / "gw"
    data.mkdir()
    dicom_port = free_port()
    destinations = tmp_path / "destinations.toml"
    destinations.write_text(f'[destinations.pacs]\nae_title = "VID2DCMTEST"\n'
                            f'host = "127.0.0.1"\nport = {dicom_port}\nretries = 1\n')
    gateways = _gateway(data, free_port(), "NONE@127.0.0.1:1", destinations,
                        extra="\nretry_first_s = 1\nretry_max_s = 2")
    gateway = next(gateways)
    try:
        clip = synthesize(tmp_path / "late.mp4", ClipSpec(
            width=64, height=48, options={"preset": "superfast", "profile": "high"}, frames=8))
        _, upload = gateway.call("PUT", "/uploads/late.mp4", body=clip.read_bytes())
        _, created = gateway.call("POST", "/jobs", json_body={
            "upload_id": upload["id"], "metadata": {"patient_id": "LATE1",
                                                    "patient_name": "Late^Pacs"}})
        deadline = time.monotonic() + 60
        while not (job := gateway.call("GET", f"/jobs/{created['id']}")[1])["state_text"
                                                                           ].startswith(
                "waiting for PACS (next try at"):
            assert job["status"] in ("queued", "running", "waiting"), job
            assert time.monotonic() < deadline, job
            time.sleep(0.3)
        time.sleep(3)  # a few more tries fail while the PACS is still down
        with running_orthanc(tmp_path_factory.mktemp("late-pacs"),
                             DicomPort=dicom_port) as pacs:
            job = _wait(gateway, created["id"])
            assert job["status"] == "done" and job["state_text"] == "stored in PACS", job
            (delivery,) = job["result"]["deliveries"]
            found = [f for f in pacs.get_json_post("/tools/lookup", delivery["sop_instance_uid"])
                     if f["Type"] == "Instance"]
            assert len(found) == 1
            time.sleep(3)  # no late duplicate from a retry still in flight
            assert len(pacs.get("/instances")) == 1
        _, log = gateway.call("GET", "/audit", token=ADMIN)
        assert [e["action"] for e in log if e["job"] == created["id"]
                and e["role"] == "system"] == ["delivery"]
    finally:
        gateways.close()


def test_api_docs_render_offline_behind_sign_in(gateway: Gateway) -> None:
    """Swagger UI from local assets under the page's Content-Security-Policy (no bypass),
    after signing in; nothing is fetched from outside loopback."""
    from playwright.sync_api import sync_playwright

    from vid2dcm.apps.gateway.auth import add_user
    from vid2dcm.apps.gateway.settings import load_settings

    add_user(load_settings(gateway.data), "docs-reader", "reviewer", "docs password 1")
    outside: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("request", lambda r: outside.append(r.url)
                    if not r.url.startswith(gateway.url) else None)
            page.goto(gateway.url + "/docs")
            assert "sign in" in page.content()
            page.goto(gateway.url + "/")
            page.get_by_test_id("login-username").fill("docs-reader")
            page.get_by_test_id("login-password").fill("docs password 1")
            page.get_by_test_id("login-submit").click()
            page.locator("#app").wait_for(timeout=15_000)
            page.goto(gateway.url + "/docs")
            page.locator(".swagger-ui .info .title").wait_for(timeout=15_000)
            assert "vid2dcm gateway" in page.locator(".swagger-ui .info .title").inner_text()
            assert page.locator(".opblock-summary-path", has_text="/jobs/{job_id}/assign"
                                ).count() == 1
        finally:
            browser.close()
    assert [u for u in outside if not u.startswith(("data:", "blob:"))] == []


def test_a_reviewer_assigns_a_held_video_on_the_page(gateway: Gateway, pacs: Orthanc,
                                                    tmp_path: Path) -> None:
    """A nurse's unknown-patient video is held; the reviewer's page shows it with an
    "Assign patient" button; choosing today's order sends it to the PACS under that order."""
    from playwright.sync_api import expect, sync_playwright

    from vid2dcm.apps.gateway.auth import add_user
    from vid2dcm.apps.gateway.settings import load_settings

    clip = synthesize(tmp_path / "unknown.mp4", ClipSpec(
        width=64, height=48, options={"preset": "superfast", "profile": "high"}, frames=8))
    _, upload = gateway.call("PUT", "/uploads/unknown.mp4", body=clip.read_bytes())
    _, created = gateway.call("POST", "/jobs", json_body={"upload_id": upload["id"],
                                                          "unidentified": True})
    add_user(load_settings(gateway.data), "reviewer-1", "reviewer", "review password 1")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.goto(gateway.url + "/")
            page.get_by_test_id("login-username").fill("reviewer-1")
            page.get_by_test_id("login-password").fill("review password 1")
            page.get_by_test_id("login-submit").click()
            card = page.locator(f"[data-testid='job-card'][data-job='{created['id']}']")
            expect(card).to_have_attribute("data-state", "held", timeout=60_000)
            page.locator(".order[data-accession='GWACC1']").wait_for(timeout=15_000)
            card.get_by_role("button", name="Assign patient").click()
            page.select_option("#assign-order", "GWACC1")
            page.get_by_test_id("assign-submit").click()
            expect(card).to_have_attribute("data-state", "done", timeout=90_000)
            expect(card).to_contain_text("stored in PACS")
        finally:
            browser.close()
    job = _wait(gateway, created["id"])
    (delivery,) = job["result"]["deliveries"]
    instance = next(f["ID"] for f in pacs.get_json_post("/tools/lookup",
                                                        delivery["sop_instance_uid"])
                    if f["Type"] == "Instance")
    tags = pacs.get(f"/instances/{instance}/simplified-tags")
    assert (tags["PatientID"], tags["AccessionNumber"]) == ("ORD1", "GWACC1")
