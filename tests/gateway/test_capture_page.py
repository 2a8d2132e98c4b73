"""The /capture page (issue 14): a phone or browser records with the camera while every chunk
goes to the gateway through tus, so a dropped connection loses nothing; after stop the
recording becomes a job, is converted (MediaRecorder WebM carries no duration) and stored in
the PACS. Driven with Playwright and Debian chromium's fake camera, on loopback only."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_service import ADMIN, AXE, CHROMIUM, CHROMIUM_ARGS, ORDER, Gateway, _gateway

from dcmtk_peers import free_port, running_worklist
from orthanc import Orthanc, running_orthanc
from readback import decode_count, read_back

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.needs_orthanc,
              pytest.mark.needs_dcmtk, pytest.mark.needs_browser]

FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with running_orthanc(tmp_path_factory.mktemp("cap-pacs")) as server:
        yield server


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pacs: Orthanc) -> Iterator[Gateway]:
    from vid2dcm.apps.gateway.auth import add_user
    from vid2dcm.apps.gateway.settings import load_settings

    data = tmp_path_factory.mktemp("cap-gateway")
    destinations = data / "destinations.toml"
    destinations.write_text(f'[destinations.pacs]\nae_title = "{pacs.aet}"\n'
                            f'host = "127.0.0.1"\nport = {pacs.dicom_port}\nretries = 1\n')
    with running_worklist(tmp_path_factory.mktemp("cap-wl"), [ORDER]) as (aet, wl_port):
        for server in _gateway(data, free_port(), f"{aet}@127.0.0.1:{wl_port}", destinations):
            add_user(load_settings(data), "ward", "uploader", "ward password 1")
            yield server


def _record(gateway: Gateway, page: Any, seconds: float, cut: float = 0.0,
            shot: Path | None = None, pause: float = 0.0) -> dict[str, Any]:
    """Sign in, confirm the order's patient, record `seconds` (with the gateway unreachable
    for `cut` seconds in the middle), stop, send; the job id and timings."""
    from playwright.sync_api import expect

    wire = {"headers": 0, "requests": 0}

    def count(request: Any) -> None:  # what the tus upload costs on the wire
        if "/files" in request.url:
            sizes = request.sizes()
            wire["requests"] += 1
            wire["headers"] += sizes["requestHeadersSize"] + sizes["responseHeadersSize"]

    page.on("requestfinished", count)
    page.goto(gateway.url + "/capture")
    page.get_by_test_id("login-username").fill("ward")
    page.get_by_test_id("login-password").fill("ward password 1")
    page.get_by_test_id("login-submit").click()
    order = page.locator(".order[data-accession='GWACC1']")
    order.wait_for(timeout=15_000)
    order.click()
    expect(page.get_by_test_id("patient-card")).to_contain_text("Order, Patient")
    page.get_by_test_id("confirm-patient").click()
    state = page.get_by_test_id("capture-state")
    expect(state).to_have_attribute("data-state", "ready", timeout=15_000)
    page.get_by_test_id("capture-start").click()
    expect(state).to_have_attribute("data-state", "recording")
    begun = time.monotonic()
    if cut:
        time.sleep((seconds - cut) / 2)
        page.route("**/files/**", lambda route: route.abort("internetdisconnected"))
        expect(state).to_have_attribute("data-state", "offline", timeout=5_000)
        time.sleep(max(0.0, cut - 1.0))
        page.unroute("**/files/**")
    if shot:
        time.sleep(1.5)
        page.screenshot(path=str(shot), full_page=True)
        found = _serious_a11y(page)
        assert found == [], found
    if pause:
        time.sleep(max(0.0, seconds / 2 - (time.monotonic() - begun)))
        page.locator("#pause").click()
        expect(state).to_have_attribute("data-state", "paused")
        time.sleep(pause)
        page.locator("#pause").click()
        expect(state).to_have_attribute("data-state", "recording")
    time.sleep(max(0.0, seconds + pause - (time.monotonic() - begun)))
    page.get_by_test_id("capture-stop").click()
    stopped = time.monotonic()
    expect(state).to_have_attribute("data-state", "review", timeout=30_000)
    uploaded = time.monotonic()
    stats = page.locator("#capture-stats")
    page.get_by_test_id("capture-send").click()
    expect(state).to_have_attribute("data-state", re.compile("stored|failed|held"),
                                    timeout=120_000)
    stored = time.monotonic()
    return {"job": state.get_attribute("data-job"), "stop_to_uploaded": uploaded - stopped,
            "stop_to_stored": stored - stopped,
            "upload_ms": int(stats.get_attribute("data-upload-ms") or -1),
            "requests": int(stats.get_attribute("data-requests") or 0),
            "bytes": int(stats.get_attribute("data-bytes") or 0), "wire": wire}


def _serious_a11y(page: Any) -> list[str]:
    """axe-core's serious and critical findings (as for the staff page)."""
    page.add_script_tag(path=str(AXE))
    found: list[str] = page.evaluate("""async () => (await axe.run(document, {runOnly:
        ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}))
        .violations.filter(v => ['serious', 'critical'].includes(v.impact))
        .map(v => v.id + ': ' + v.nodes.map(n => n.target).join(' '))""")
    return found


def _stored_instance(gateway: Gateway, pacs: Orthanc, job_id: str, tmp_path: Path
                     ) -> tuple[Any, Any]:
    """The job's instance fetched back from Orthanc and read back by every tool."""
    _, job = gateway.call("GET", f"/jobs/{job_id}", token=ADMIN)
    assert job["status"] == "done", job
    (delivery,) = job["result"]["deliveries"]
    assert delivery["ok"] and delivery["destination"] == "pacs"
    found = pacs.get_json_post("/tools/lookup", delivery["sop_instance_uid"])
    instance = next(f["ID"] for f in found if f["Type"] == "Instance")
    tags = pacs.get(f"/instances/{instance}/simplified-tags")
    assert (tags["AccessionNumber"], tags["PatientID"]) == ("GWACC1", "ORD1")
    path = tmp_path / "stored.dcm"
    path.write_bytes(pacs.get(f"/instances/{instance}/file"))
    return read_back(path, tmp_path), job


def _recorded(gateway: Gateway, job: dict[str, Any]) -> tuple[int, float, float]:
    """Frames, time spanned and the longest gap between frames (s) in the recording as the
    gateway received it (the tus upload): WebM without a duration, so the pipeline must count
    frames, not trust the container."""
    import av

    upload = gateway.data / "tus" / job["request"]["upload_id"]
    with av.open(str(upload)) as container:
        assert container.format.name.startswith("matroska")  # MediaRecorder's WebM
        assert container.duration is None  # no duration written: never trusted
        times = [float(f.time) for f in container.decode(video=0) if f.time is not None]
    assert len(times) == decode_count(upload)[0]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    return len(times), times[-1] - times[0], max(gaps)


def _browser(driver: Any) -> Any:
    return driver.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *FAKE_CAMERA])


def test_record_four_seconds_on_a_phone_lands_in_the_pacs(gateway: Gateway, pacs: Orthanc,
                                                           tmp_path: Path) -> None:
    """Record 4 s (with a 1 s pause in the middle) with the fake camera at phone size
    (390x844): the recording is on the server moments after stop, converted and stored; the
    stored instance is valid with its frame count equal to the frames recorded, which span
    the 4 s recorded (the pause is left out). axe-core finds nothing serious."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = _browser(driver)
        try:
            # bypass_csp only lets the test inject axe-core; the page itself runs under CSP
            context = browser.new_context(viewport={"width": 390, "height": 844},
                                          bypass_csp=True)
            context.grant_permissions(["camera", "microphone"])
            page = context.new_page()
            DOCS_IMG.mkdir(parents=True, exist_ok=True)
            result = _record(gateway, page, 4.0, shot=DOCS_IMG / "capture-phone-recording.png",
                             pause=1.0)
            page.screenshot(path=str(DOCS_IMG / "capture-phone-stored.png"), full_page=True)
            page.set_viewport_size({"width": 360, "height": 740})
            overflow = page.evaluate("() => document.documentElement.scrollWidth - "
                                     "document.documentElement.clientWidth")
            assert overflow <= 0, f"horizontal scroll of {overflow} px at 360 px"
            # nothing of the recording is left in the page after send
            assert page.evaluate("() => !document.getElementById('review').src")
        finally:
            browser.close()
    back, job = _stored_instance(gateway, pacs, str(result["job"]), tmp_path)
    recorded, span, gap = _recorded(gateway, job)
    # every frame the browser recorded is in the PACS; the recording spans the ~4 s recorded
    # (less button latency), not the 5 s on the clock: the paused second is left out
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == recorded, (
        back.decoded_frames, back.dataset.NumberOfFrames, recorded)
    assert 2.8 <= span <= 4.5, span
    assert gap < 0.9, gap  # a lost 1 s chunk would leave a hole of 1 s or more
    # upload overhead while recording: the tus requests' headers (both ways) over the bytes
    # recorded (Playwright cannot size an XHR's Blob body; the tus offsets say each byte went
    # up once); one PATCH per 1 s chunk, plus the creating POST
    wire = result["wire"]
    assert result["requests"] < wire["requests"] <= result["requests"] + 2, (wire, result)
    overhead = wire["headers"] / result["bytes"]
    assert overhead < 0.1, overhead
    print(f"\ncapture 4 s: {result} frames={recorded} span={span:.2f} gap={gap:.2f} "
          f"tus overhead={overhead:.1%} ({wire['requests']} requests)")


def test_network_cut_mid_recording_loses_nothing(gateway: Gateway, pacs: Orthanc,
                                                 tmp_path: Path) -> None:
    """The gateway is unreachable for 2 s in the middle of a 6 s recording: the page keeps
    the unsent chunks, resumes from the server's offset, and the stored video is complete
    (as many frames as a 6 s recording has, none missing after the gap)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as driver:
        browser = _browser(driver)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            context.grant_permissions(["camera", "microphone"])
            result = _record(gateway, context.new_page(), 6.0, cut=2.0)
        finally:
            browser.close()
    back, job = _stored_instance(gateway, pacs, str(result["job"]), tmp_path)
    recorded, span, gap = _recorded(gateway, job)
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == recorded
    # nothing lost to the cut: the whole 6 s arrived, with no hole where the network was down
    assert 5.0 <= span <= 7.5, span  # a lost last chunk would cut about 1 s
    assert gap < 0.9, gap  # chunks are 1 s: a lost one leaves a hole of 1 s or more
    print(f"\ncapture 6 s, 2 s cut: {result} frames={recorded} span={span:.2f} gap={gap:.2f}")


def test_webrtc_live_stream_is_recorded_and_stored(gateway: Gateway, pacs: Orthanc,
                                                   tmp_path: Path) -> None:
    """The page streams its camera over WebRTC for 5 s (H.264 offered first); the gateway
    (aiortc) records it as a recording (listed by GET /recordings, pieces under the recording
    folder), and on stop the recording is one job stored in the PACS, valid, with exact frame
    count. Chromium's H.264 is Constrained Baseline, which DICOM does not list
    (core.conformance): it is re-encoded, and the recording says so. The page shows bitrate
    and latency from the sender's RTCP statistics."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as driver:
        browser = _browser(driver)
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            context.grant_permissions(["camera", "microphone"])
            page = context.new_page()
            page.goto(gateway.url + "/capture")
            page.get_by_test_id("login-username").fill("ward")
            page.get_by_test_id("login-password").fill("ward password 1")
            page.get_by_test_id("login-submit").click()
            page.locator(".order[data-accession='GWACC1']").click(timeout=15_000)
            page.get_by_test_id("confirm-patient").click()
            state = page.get_by_test_id("capture-state")
            expect(state).to_have_attribute("data-state", "ready", timeout=15_000)
            page.get_by_test_id("live-start").click()
            expect(state).to_have_attribute("data-state", "live", timeout=20_000)
            connected = time.monotonic()
            rid = str(state.get_attribute("data-recording"))
            time.sleep(5.0)
            stats = page.get_by_test_id("live-stats")
            expect(stats).to_have_attribute("data-kbps", re.compile(r"^[1-9]\d*$"))
            # the page shows what the gateway has recorded (its recording's frame count)
            expect(stats).to_have_attribute("data-gateway-frames", re.compile(r"^[1-9]\d*$"))
            latency = stats.get_attribute("data-latency-ms")
            kbps = stats.get_attribute("data-kbps")
            codec = stats.get_attribute("data-codec")
            _, live = gateway.call("GET", f"/recordings/{rid}", token=ADMIN)
            page.screenshot(path=str(DOCS_IMG / "capture-live.png"), full_page=True)
            page.get_by_test_id("live-stop").click()
            stopped = time.monotonic()
            expect(state).to_have_attribute("data-state", re.compile("stored|failed|held"),
                                            timeout=120_000)
            stop_to_stored = time.monotonic() - stopped
            job_id = state.get_attribute("data-job")
        finally:
            browser.close()
    assert live["state"] == "recording" and live["sources"][0]["name"] == "webrtc", live
    assert live["frames"] > 0 and "Order" not in str(live)  # no patient data in the view
    bitstream = live["sources"][0]["bitstream"]
    # Debian's Chromium sends Constrained Baseline (re-encoded); a browser that sends High
    # would have it kept: either way the recording says which, and why
    assert re.match(r"^(H264 .+: (kept as sent|re-encoded to H\.264 High \(.+\))|VP8: re-encoded)",
                    bitstream), live
    _, final = gateway.call("GET", f"/recordings/{rid}", token=ADMIN)
    assert final["state"] == "stopped" and final["job_id"] == job_id, final
    back, _ = _stored_instance(gateway, pacs, str(job_id), tmp_path)
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == final["frames"]
    assert back.decoded_frames >= 40, back.decoded_frames  # 5 s of a 20 fps camera, less drops
    # the recording is kept by the gateway, in the recording's folder, never by the browser
    assert list((gateway.data / "uploads" / rid / "webrtc").glob("piece-*.ts"))
    print(f"\nwebrtc 5 s: sent {codec}; {bitstream}; frames={back.decoded_frames} kbps={kbps} "
          f"latency_ms={latency} streamed={stopped - connected:.2f}s "
          f"stop_to_stored={stop_to_stored:.2f}s")


def test_without_a_camera_the_phone_camera_app_file_is_sent(gateway: Gateway, pacs: Orthanc,
                                                            tmp_path: Path) -> None:
    """The fallback for browsers without MediaRecorder or camera permission: the file from
    `<input type=file accept=video/* capture=environment>` goes through tus and is stored."""
    from playwright.sync_api import expect, sync_playwright

    from vid2dcm.producing.synth import ClipSpec, synthesize

    clip = synthesize(tmp_path / "phone.mp4", ClipSpec(
        width=320, height=240, frames=30, options={"preset": "superfast", "profile": "high"}))
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 360, "height": 740}).new_page()
            page.goto(gateway.url + "/capture")
            page.get_by_test_id("login-username").fill("ward")
            page.get_by_test_id("login-password").fill("ward password 1")
            page.get_by_test_id("login-submit").click()
            page.locator(".order[data-accession='GWACC1']").click(timeout=15_000)
            page.get_by_test_id("confirm-patient").click()
            state = page.get_by_test_id("capture-state")
            expect(state).to_have_attribute("data-state", "unsupported", timeout=15_000)
            page.get_by_test_id("capture-file").set_input_files(str(clip))
            expect(state).to_have_attribute("data-state", re.compile("stored|failed|held"),
                                            timeout=120_000)
            job_id = state.get_attribute("data-job")
        finally:
            browser.close()
    back, _ = _stored_instance(gateway, pacs, str(job_id), tmp_path)
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == 30


def _wristband_y4m(path: Path, value: str) -> Path:
    """A fake camera file (Y4M, 640x480, 4:2:0) showing a Code 128 wristband barcode of
    `value`, made here from python-barcode's module pattern (3 px per module, quiet zones)."""
    import barcode  # type: ignore[import-untyped]
    import numpy as np

    (modules,) = barcode.get("code128", value).build()
    width, height, unit = 640, 480, 3
    luma = np.full((height, width), 235, dtype=np.uint8)
    left = (width - len(modules) * unit) // 2
    assert left >= 10 * unit, "quiet zones of 10 modules"
    for i, bar in enumerate(modules):
        if bar == "1":
            luma[140:340, left + i * unit:left + (i + 1) * unit] = 16
    chroma = np.full((height // 2) * (width // 2), 128, dtype=np.uint8).tobytes()
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F10:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(10):
            out.write(b"FRAME\n" + luma.tobytes() + chroma + chroma)
    return path


def test_wristband_scan_fills_the_patient_search(gateway: Gateway, tmp_path: Path) -> None:
    """The camera sees a Code 128 wristband of the order's patient ID: the scan (Chromium on
    Linux has no BarcodeDetector, so the bundled ZXing reads it) fills the patient search,
    which shows that patient's order; nothing is chosen or confirmed by the scan itself."""
    from playwright.sync_api import expect, sync_playwright

    camera = _wristband_y4m(tmp_path / "wristband.y4m", "ORD1")
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=[
            *CHROMIUM_ARGS, *FAKE_CAMERA, f"--use-file-for-fake-video-capture={camera}"])
        try:
            context = browser.new_context(viewport={"width": 390, "height": 844})
            context.grant_permissions(["camera"])
            page = context.new_page()
            page.goto(gateway.url + "/capture")
            page.get_by_test_id("login-username").fill("ward")
            page.get_by_test_id("login-password").fill("ward password 1")
            page.get_by_test_id("login-submit").click()
            order = page.locator(".order[data-accession='GWACC1']")
            order.wait_for(timeout=15_000)
            has_detector = page.evaluate("() => 'BarcodeDetector' in window")
            page.get_by_test_id("scan-start").click()
            search = page.get_by_test_id("patient-search")
            expect(search).to_have_value("ORD1", timeout=20_000)
            expect(order).to_be_visible()
            # the scan alone binds nothing: no card, nothing to confirm until a person picks
            expect(page.get_by_test_id("patient-card")).to_be_hidden()
            expect(page.get_by_test_id("confirm-patient")).to_be_disabled()
            scripts = page.evaluate("() => [...document.scripts].map(s => s.src)")
            search.fill("NOBODY-9")
            expect(order).to_be_hidden()
            expect(page.locator("#search-empty")).to_be_visible()
            search.fill("ORD1")
            order.click()
            expect(page.get_by_test_id("patient-card")).to_contain_text("Order, Patient")
            expect(page.get_by_test_id("confirm-patient")).to_be_enabled()
        finally:
            browser.close()
    if not has_detector:  # the bundled decoder did the reading
        assert any(s.endswith("/static/zxing.min.js") for s in scripts), scripts


def test_unknown_patient_is_held_and_the_page_says_what_happens_next(
        gateway: Gateway, pacs: Orthanc, tmp_path: Path) -> None:
    """Patient not known yet: the video is converted and held (never sent); the page shows
    the held state and what to do (a reviewer assigns the patient on the staff page). Then a
    reviewer's assign sends it, under the order's patient."""
    from playwright.sync_api import expect, sync_playwright

    from vid2dcm.producing.synth import ClipSpec, synthesize

    clip = synthesize(tmp_path / "unknown.mp4", ClipSpec(
        width=320, height=240, frames=20, options={"preset": "superfast", "profile": "high"}))
    before = len(pacs.get("/instances"))
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
            page.goto(gateway.url + "/capture")
            page.get_by_test_id("login-username").fill("ward")
            page.get_by_test_id("login-password").fill("ward password 1")
            page.get_by_test_id("login-submit").click()
            page.locator(".order[data-accession='GWACC1']").wait_for(timeout=15_000)
            page.locator("#unknown").check()
            expect(page.get_by_test_id("patient-card")).to_contain_text("Patient not known yet")
            page.get_by_test_id("confirm-patient").click()
            state = page.get_by_test_id("capture-state")
            expect(state).to_have_attribute("data-state", "unsupported", timeout=15_000)
            page.get_by_test_id("capture-file").set_input_files(str(clip))
            expect(state).to_have_attribute("data-state", re.compile("held|stored|failed"),
                                            timeout=120_000)
            assert state.get_attribute("data-state") == "held", state.text_content()
            expect(state).to_contain_text("not yet sent")
            expect(page.get_by_test_id("capture-next")).to_contain_text("reviewer assigns")
            page.screenshot(path=str(DOCS_IMG / "capture-held.png"), full_page=True)
            job_id = str(state.get_attribute("data-job"))
        finally:
            browser.close()
    _, job = gateway.call("GET", f"/jobs/{job_id}", token=ADMIN)
    assert job["status"] == "held" and not job["result"]["deliveries"], job
    assert len(pacs.get("/instances")) == before  # held: nothing reached the PACS
    status, _ = gateway.call("POST", f"/jobs/{job_id}/assign", token=ADMIN,
                             json_body={"accession": "GWACC1"})
    assert status in (200, 202), status
    deadline = time.monotonic() + 120
    while job["status"] != "done":
        assert time.monotonic() < deadline and job["status"] != "failed", job
        time.sleep(1)
        _, job = gateway.call("GET", f"/jobs/{job_id}", token=ADMIN)
    back, _ = _stored_instance(gateway, pacs, job_id, tmp_path)
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == 20
