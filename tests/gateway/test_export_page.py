"""De-identified exports on the staff page (issue 16): a reviewer's job card offers "Export
de-identified" (a ZIP download) and, because this gateway has a research destination, "Send to
research"; the card then shows the export's state until the research copy is stored in a real
Orthanc. An uploader's card of the same job has neither button (the server refuses them
anyway). Real uvicorn server and huey worker (started and stopped by PID), Orthanc as PACS and
research archive, Debian chromium driven by Playwright, all on loopback."""

from __future__ import annotations

import io
import os
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from test_service import ADMIN, CHROMIUM, CHROMIUM_ARGS, ORDER, UPLOADER, Gateway, _gateway
from test_service import _wait_token as wait_job

from dcmtk_peers import free_port, running_worklist
from deid_fixtures import make_clip
from orthanc import Orthanc, running_orthanc
from readback import read_back

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.needs_orthanc,
              pytest.mark.needs_dcmtk, pytest.mark.needs_browser]

DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
IDENTITY = {"patient_name": "DOE^JANE", "patient_id": "PID-4711",
            "patient_birth_date": "1970-01-31"}
ORIGINALS = ("DOE", "JANE", "4711", "19700131")


@pytest.fixture
def site(tmp_path: Path) -> Iterator[tuple[Gateway, Orthanc]]:
    from vid2dcm.apps.gateway.auth import add_user
    from vid2dcm.apps.gateway.settings import load_settings

    (tmp_path / "pacs").mkdir()
    data = tmp_path / "gateway"
    data.mkdir()
    old = os.environ.get("VID2DCM_DEID_SECRET")
    os.environ["VID2DCM_DEID_SECRET"] = "page-test-site-secret"  # server and worker inherit it
    try:
        with running_orthanc(tmp_path / "pacs") as pacs, \
                running_worklist(tmp_path / "wl", [ORDER]) as (aet, wl_port):
            destinations = data / "destinations.toml"
            destinations.write_text(
                f'[destinations.pacs]\nae_title = "{pacs.aet}"\nhost = "127.0.0.1"\n'
                f"port = {pacs.dicom_port}\nretries = 1\n"
                f'[destinations.research]\nae_title = "{pacs.aet}"\nhost = "127.0.0.1"\n'
                f"port = {pacs.dicom_port}\nretries = 1\n")
            extra = '\ndeidentify = { research_destination = "research" }'
            for server in _gateway(data, free_port(), f"{aet}@127.0.0.1:{wl_port}",
                                   destinations, extra):
                settings = load_settings(data)
                # people with passwords: the token's uploader "nurse" owns the job
                add_user(settings, "nurse", "uploader", "nurse password 1")
                add_user(settings, "reviewer-x", "reviewer", "review password 1")
                yield server, pacs
    finally:
        if old is None:
            os.environ.pop("VID2DCM_DEID_SECRET", None)
        else:
            os.environ["VID2DCM_DEID_SECRET"] = old


def _sign_in(page: object, url: str, name: str, password: str) -> None:
    page.goto(url)  # type: ignore[attr-defined]
    page.get_by_test_id("login-username").fill(name)  # type: ignore[attr-defined]
    page.get_by_test_id("login-password").fill(password)  # type: ignore[attr-defined]
    page.get_by_test_id("login-submit").click()  # type: ignore[attr-defined]


def test_reviewer_exports_and_sends_to_research_uploader_sees_no_export(
        site: tuple[Gateway, Orthanc], tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    gateway, pacs = site
    clip = make_clip(tmp_path / "clip.mp4", frames=10, with_face=False, with_audio=False)
    status, upload = gateway.call("PUT", "/uploads/clip.mp4", body=clip.read_bytes())
    assert status == 201, upload
    status, created = gateway.call("POST", "/jobs", json_body={
        "upload_id": upload["id"], "sop": "endoscopic", "metadata": IDENTITY})
    assert status == 201, created
    job_id = created["id"]
    job = wait_job(gateway, job_id, UPLOADER, seconds=90)
    assert job["status"] == "done", job
    # uploaders cannot read the research switch either
    assert gateway.call("GET", "/export/config")[0] == 403
    assert gateway.call("GET", "/export/config", token=ADMIN) == (200, {"research": True})

    card_of = f"[data-testid='job-card'][data-job='{job_id}']"
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            # the uploader who sent it: the card, and no export on it
            context = browser.new_context(viewport={"width": 1024, "height": 900})
            page = context.new_page()
            _sign_in(page, gateway.url, "nurse", "nurse password 1")
            card = page.locator(card_of)
            expect(card).to_have_attribute("data-state", "done", timeout=15_000)
            expect(card.get_by_role("button", name="Play")).to_be_visible()
            expect(card.get_by_test_id("export-zip")).to_have_count(0)
            expect(card.get_by_test_id("export-research")).to_have_count(0)
            expect(card.get_by_test_id("export-state")).to_have_count(0)
            context.close()

            # a reviewer: the ZIP download, then the send to research
            context = browser.new_context(viewport={"width": 1024, "height": 900},
                                          accept_downloads=True)
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            _sign_in(page, gateway.url, "reviewer-x", "review password 1")
            card = page.locator(card_of)
            expect(card.get_by_test_id("export-zip")).to_be_visible(timeout=15_000)
            expect(card.get_by_test_id("export-research")).to_be_visible()
            with page.expect_download(timeout=60_000) as downloading:
                card.get_by_test_id("export-zip").click()
            download = downloading.value
            assert download.suggested_filename == f"deidentified-{job_id}.zip"
            archive = zipfile.ZipFile(io.BytesIO(Path(download.path()).read_bytes()))
            names = [n for n in archive.namelist() if n.endswith(".dcm")]
            assert len(names) == 1, archive.namelist()
            exported = tmp_path / "zip.dcm"
            exported.write_bytes(archive.read(names[0]))

            card.get_by_test_id("export-research").click()
            state = card.get_by_test_id("export-state")
            expect(state).to_have_attribute("data-state", "sent", timeout=90_000)
            expect(state).to_contain_text("stored")
            page.screenshot(path=str(DOCS_IMG / "staff-export-reviewer.png"), full_page=True)
            # no CSP violation, no script error (the 401 is /auth/me before signing in)
            assert [e for e in errors if "401" not in e] == []
            context.close()
        finally:
            browser.close()

    # what the reviewer downloaded carries none of the patient's identifiers
    dump = subprocess.run(["dcmdump", "+L", str(exported)], capture_output=True, text=True,
                          check=True).stdout
    assert not any(secret in dump for secret in ORIGINALS), dump[:2000]
    back = read_back(exported, tmp_path)  # pydicom, dcmdump, dciodvfy, frames decoded
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == 10
    # the research copy is in Orthanc under its pseudonymous UIDs
    status, exports = gateway.call("GET", f"/jobs/{job_id}/exports", token=ADMIN)
    assert status == 200 and [e["state"] for e in exports] == ["sent"]
    (delivery,) = exports[0]["deliveries"]
    assert delivery["ok"] and delivery["destination"] == "research"
    found = pacs.get_json_post("/tools/lookup", delivery["sop_instance_uid"])
    instance = next(f["ID"] for f in found if f["Type"] == "Instance")
    stored = tmp_path / "research.dcm"
    stored.write_bytes(pacs.get(f"/instances/{instance}/file"))
    ds = pydicom.dcmread(stored, stop_before_pixels=True)
    assert ds.PatientIdentityRemoved == "YES" and str(ds.PatientName).startswith("ANON^")
    assert str(ds.SOPInstanceUID) != job["result"]["files"][0]["sop_instance_uid"]
