"""The capture page's server side without a browser (issue 14): the page, manifest and icons
are served under the CSP, WebRTC signalling needs a signed-in uploader and a patient (the
identity rules of recordings), a bad offer is one clear 400 that leaves nothing behind, and a
stream nobody owns cannot be stopped."""

from __future__ import annotations

import json
from pathlib import Path

from gateway_app import PASSWORD, TOKEN, in_process_gateway


def test_capture_page_manifest_and_icons_are_served(tmp_path: Path) -> None:
    with in_process_gateway(tmp_path) as gw:
        page = gw.client.get("/capture")
        assert page.status_code == 200
        assert "script-src 'self'" in page.headers["content-security-policy"]
        assert "<script>" not in page.text  # no inline script: CSP forbids it
        for testid in ("capture-start", "capture-stop", "capture-send", "capture-state"):
            assert f'data-testid="{testid}"' in page.text
        assert 'capture="environment"' in page.text and "playsinline muted" in page.text
        manifest = gw.client.get("/manifest.webmanifest")
        assert manifest.headers["content-type"].startswith("application/manifest+json")
        icons = json.loads(manifest.text)["icons"]
        for icon in icons:
            answer = gw.client.get(icon["src"])
            assert answer.status_code == 200 and answer.headers["content-type"] == icon["type"]
        assert gw.client.get("/static/icon-192.png").content.startswith(b"\x89PNG")
        assert gw.client.get("/static/capture.js").status_code == 200


def test_webrtc_signalling_needs_sign_in_and_a_real_offer(tmp_path: Path) -> None:
    with in_process_gateway(tmp_path) as gw:
        anonymous = gw.client.post("/webrtc/offer", json={"sdp": "v=0", "type": "offer"})
        assert anonymous.status_code == 401
        nurse = gw.person("nurse")
        patient = {"metadata": {"patient_id": "W-1", "patient_name": "Doe^Jane"}}
        bad = nurse.post("/webrtc/offer", json={"sdp": "not an sdp", "type": "offer", **patient})
        assert bad.status_code == 400 and bad.json()["detail"].startswith("sdp:"), bad.text
        torn_sdp = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        nobody = nurse.post("/webrtc/offer", json={"sdp": torn_sdp, "type": "offer"})
        assert nobody.status_code == 422, nobody.text  # no patient, no recording
        torn = nurse.post("/webrtc/offer", json={"sdp": torn_sdp, "type": "offer", **patient})
        assert torn.status_code == 400 and torn.json()["detail"].startswith("sdp:"), torn.text
        av1_only = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n"
                    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\n"
                    "m=video 9 UDP/TLS/RTP/SAVPF 45\r\nc=IN IP4 0.0.0.0\r\n"
                    "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
                    "a=setup:actpass\r\na=mid:0\r\na=sendonly\r\na=rtcp-mux\r\n"
                    "a=rtpmap:45 AV1/90000\r\n")
        no_codec = nurse.post("/webrtc/offer", json={"sdp": av1_only, "type": "offer",
                                                     **patient})
        assert no_codec.status_code == 400, no_codec.text  # no codec in common: one line
        uploads = gw.settings.uploads
        assert not uploads.exists() or list(uploads.iterdir()) == []  # nothing left behind
        assert nurse.get("/recordings").json() == []
        wrong_type = nurse.post("/webrtc/offer", json={"sdp": "v=0", "type": "answer"})
        assert wrong_type.status_code == 400
        unknown = nurse.post("/recordings/" + "0" * 32 + "/stop", json={})
        assert unknown.status_code == 404
        machine = gw.client.post("/recordings/" + "0" * 32 + "/stop", json={},
                                 headers={"Authorization": f"Bearer {TOKEN}"})
        assert machine.status_code == 404
        assert PASSWORD  # accounts come from gateway_app
