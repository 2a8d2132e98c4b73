"""WebRTC live ingest as a recording (issue 14): an aiortc sender in the test streams to the
gateway (in-process TestClient) on 127.0.0.1; the stream is a recording like a network
camera's (listed, pieces, MPPS IN PROGRESS -> COMPLETED through pynetdicom's MPPS SCP, one job
on stop, stored in a real Orthanc). A High-profile H.264 stream is stored bit-exact as sent;
a VP8 stream is re-encoded; both read back valid with exact frame counts."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from test_gateway_recordings import PATIENT, gateway, wait_for
from test_record_mpps import MppsScp

from gateway_app import PASSWORD
from orthanc import running_orthanc
from readback import coded_pictures, dciodvfy_errors, read_back

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.needs_orthanc]


def _sent_clip(path: Path) -> Path:
    """3 s of 320x240 25 fps H.264 High in MPEG-TS (Annex B, SPS/PPS at every key frame) that
    the sender passes through as it is (MediaPlayer decode=False). No B-frames: RTP carries
    presentation times only, and WebRTC senders do not use them."""
    from vid2dcm.producing.synth import ClipSpec, synthesize

    return synthesize(path, ClipSpec(width=320, height=240, frames=75, options={
        "preset": "superfast", "profile": "high",
        "x264-params": "keyint=25:repeat-headers=1:bframes=0"}))


async def _stream(client: TestClient, clip: Path, codec: str, seconds: float,
                  vanish: bool = False) -> dict[str, Any]:
    """Offer, stream `seconds` (with a still in the middle), stop through the recordings API;
    the recording's states. vanish: the sender closes its connection before the stop."""
    from aiortc import RTCPeerConnection, RTCRtpSender, RTCSessionDescription
    from aiortc.contrib.media import MediaPlayer

    from vid2dcm.capture.webrtc import accept_h264_high, h264_rank

    accept_h264_high()  # the test's sender offers H.264 High, as a phone's hardware can
    player = MediaPlayer(str(clip), decode=codec != "H264")
    pc = RTCPeerConnection()
    sent = _Timed(player.video)
    transceiver = pc.addTransceiver(sent.track, direction="sendonly")
    # every codec, the tested one first (the gateway's answer decides)
    offered = sorted(RTCRtpSender.getCapabilities("video").codecs, key=lambda c: (
        c.mimeType != f"video/{codec}", h264_rank(c)))
    transceiver.setCodecPreferences(offered)
    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "metadata": PATIENT,
            "sop": "photographic", "prefer": codec.lower()}
    answer = await asyncio.to_thread(client.post, "/webrtc/offer", json=body)
    assert answer.status_code == 200, answer.text
    rid = answer.json()["id"]
    chosen = _first_video_codec(answer.json()["sdp"])
    await pc.setRemoteDescription(RTCSessionDescription(**{k: answer.json()[k]
                                                           for k in ("sdp", "type")}))
    try:
        live = await asyncio.to_thread(wait_for, client, rid, lambda s: s["frames"] > 10)
        await asyncio.sleep(seconds / 2)
        still = await asyncio.to_thread(client.post, f"/recordings/{rid}/snapshot")
        assert still.status_code == 200, still.text
        await asyncio.sleep(seconds / 2)
        listed = (await asyncio.to_thread(client.get, "/recordings")).json()
        if vanish:  # the phone leaves (page closed, network gone): nobody presses stop
            await pc.close()
            await asyncio.to_thread(wait_for, client, rid, lambda s: s["state"] == "stopped")
        else:
            stopped = await asyncio.to_thread(client.post, f"/recordings/{rid}/stop")
            assert stopped.status_code == 200, stopped.text
    finally:
        await pc.close()
    final = (await asyncio.to_thread(client.get, f"/recordings/{rid}")).json()
    return {"id": rid, "live": live, "listed": listed, "final": final,
            "sent_offset": sent.offset, "answered": chosen}


def _first_video_codec(sdp: str) -> str:
    """The codec the answer puts first for video, with its fmtp line ("H264 ...=640c1f")."""
    lines = sdp.splitlines()
    media = next(line for line in lines if line.startswith("m=video"))
    pt = media.split()[3]
    rtpmap = next(line for line in lines if line.startswith(f"a=rtpmap:{pt} "))
    fmtp = next((line for line in lines if line.startswith(f"a=fmtp:{pt} ")), "")
    return f"{rtpmap.split()[1].split('/')[0]} {fmtp}"


class _Timed:
    """The sender's track, noting the smallest (send time - media time) over its frames."""

    def __init__(self, track: Any) -> None:
        from aiortc import MediaStreamTrack

        class Track(MediaStreamTrack):
            kind = "video"

            async def recv(inner) -> Any:  # `inner`: the track; `self`: the _Timed
                frame = await track.recv()
                t = float(frame.pts * frame.time_base)
                self.first = t if self.first is None else self.first
                offset = time.time() - (t - self.first)
                self.offset = offset if self.offset is None else min(self.offset, offset)
                return frame

        self.first: float | None = None
        self.offset: float | None = None
        self.track = Track()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.track, name)


def _run(tmp_path: Path, codec: str, vanish: bool = False
         ) -> tuple[dict[str, Any], list[Any], Path, MppsScp]:
    scp = MppsScp()
    (tmp_path / "pacs").mkdir()
    clip = _sent_clip(tmp_path / "sent.ts")
    try:
        with running_orthanc(tmp_path / "pacs") as pacs, \
                gateway(tmp_path, pacs.dicom_port, f"RIS@127.0.0.1:{scp.port}") as client:
            # the app's own client: its event loop lives as long as the gateway (a client
            # outside `with` runs every request on a new loop, which would end the stream)
            nurse = client
            assert nurse.post("/auth/login", json={"username": "nurse",
                                                   "password": PASSWORD}).status_code == 200
            began = time.monotonic()
            result = asyncio.run(_stream(nurse, clip, codec, 2.0, vanish))
            rid, final = result["id"], result["final"]
            # a sender that vanished: the gateway stopped it, the step says equipment
            ended = "discontinued" if vanish else "completed"
            assert final["state"] == "stopped" and final["mpps"] == ended, final
            job = nurse.get(f"/jobs/{final['job_id']}").json()
            deadline = time.monotonic() + 60  # a stop of the gateway's own runs in a thread
            while job["status"] not in ("done", "failed", "held"):
                assert time.monotonic() < deadline, job
                time.sleep(0.2)
                job = nurse.get(f"/jobs/{final['job_id']}").json()
            assert job["status"] == "done" and job["state_text"] == "stored in PACS", (
                job.get("error"), job.get("state_text"), job)
            assert len(pacs.get("/instances")) == 2  # the video and the still
            result["stop_to_stored_s"] = time.monotonic() - began
            pieces = [json.loads(p.read_text()) for p in
                      sorted((tmp_path / "data" / "uploads" / rid / "webrtc")
                             .glob("piece-*.json"))]
            out = tmp_path / "data" / "outputs" / final["job_id"]
            stills = [f for f in job["result"]["files"] if "still" in f["name"]]
            assert len(stills) == 1 and dciodvfy_errors(out / stills[0]["name"]) == []
            backs = [read_back(out / f["name"], tmp_path) for f in job["result"]["files"]
                     if f not in stills]
        (step,) = scp.instances.values()
        assert step.PerformedProcedureStepStatus == ("DISCONTINUED" if vanish else "COMPLETED")
        # one recording listed, with its source and pieces, no patient data
        (listed,) = result["listed"]
        assert listed["id"] == rid and listed["sources"][0]["name"] == "webrtc"
        assert "Doe" not in str(result["listed"]) and "REC-1" not in str(result["listed"])
        assert pieces and all(p["closed_because"] for p in pieces)
        result["pieces"] = pieces
        return result, backs, clip, scp
    finally:
        scp.stop()


def test_h264_high_stream_is_stored_as_sent(tmp_path: Path) -> None:
    """H.264 High from the sender is storable (core.conformance): the stored instance carries
    the received bitstream, picture for picture (no encoder of ours touched it)."""
    result, backs, clip, _ = _run(tmp_path, "H264")
    assert not any(p["transcoded"] for p in result["pieces"])
    assert result["final"]["sources"][0]["bitstream"] == "H264 High: kept as sent"
    # the gateway answered H.264 High first (aiortc alone answers Constrained Baseline)
    assert result["answered"].startswith("H264") and "profile-level-id=640c1f" in \
        result["answered"], result["answered"]
    (back,) = backs
    assert back.decoded_frames == int(back.dataset.NumberOfFrames)
    assert back.dataset.file_meta.TransferSyntaxUID.startswith("1.2.840.10008.1.2.4.10")
    stored, sent = coded_pictures(back.extracted), coded_pictures(clip)
    assert len(stored) >= 25, len(stored)
    assert stored == sent[:len(stored)]  # bit-exact: the sender's pictures, from the first
    # one-way latency, best case over the frames: sender handing a frame to RTP -> the
    # gateway's recorder receiving its access unit (both on this machine's clock)
    latency_ms = (result["pieces"][0]["start_wall"] - result["sent_offset"]) * 1000
    assert 0 <= latency_ms < 500, latency_ms
    print(f"\nwebrtc h264 kept: frames={len(stored)} latency={latency_ms:.1f} ms "
          f"start+stream+stop->stored={result['stop_to_stored_s']:.2f}s")


def test_vp8_stream_is_re_encoded_and_valid(tmp_path: Path) -> None:
    """VP8 has no DICOM transfer syntax: the decoded frames are encoded to H.264 while
    recording; the stored instance is valid with the frames the recorder counted. The sender
    vanishes and nobody presses stop: the gateway stops the recording itself (MPPS
    DISCONTINUED, equipment), and what arrived is stored all the same."""
    result, backs, clip, _ = _run(tmp_path, "VP8", vanish=True)
    assert result["pieces"][-1]["closed_because"] == "connection lost"
    assert result["final"]["stop_reason"] == "WebRTC sender gone"
    assert all(p["transcoded"] for p in result["pieces"])
    assert result["answered"].startswith("VP8"), result["answered"]
    assert result["final"]["sources"][0]["bitstream"].startswith("VP8: re-encoded")
    (back,) = backs
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == result["final"]["frames"]
    assert back.decoded_frames >= 25
    assert coded_pictures(back.extracted)[0] != coded_pictures(clip)[0]


def test_an_offer_whose_video_never_comes_is_dropped(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The sender never completes the connection: after START_TIMEOUT_S the recording ends
    without a job, its procedure step DISCONTINUED, its folder removed."""
    from aiortc import RTCPeerConnection, RTCRtpSender
    from aiortc.contrib.media import MediaPlayer

    from vid2dcm.apps.gateway.routes import webrtc

    monkeypatch.setattr(webrtc, "START_TIMEOUT_S", 1.0)
    clip = _sent_clip(tmp_path / "sent.ts")
    scp = MppsScp()
    try:
        with gateway(tmp_path, 9, f"RIS@127.0.0.1:{scp.port}") as client:
            assert client.post("/auth/login", json={"username": "nurse",
                                                    "password": PASSWORD}).status_code == 200

            async def offer_only() -> str:
                pc = RTCPeerConnection()
                transceiver = pc.addTransceiver(MediaPlayer(str(clip)).video,
                                                direction="sendonly")
                transceiver.setCodecPreferences(RTCRtpSender.getCapabilities("video").codecs)
                await pc.setLocalDescription(await pc.createOffer())
                answer = await asyncio.to_thread(client.post, "/webrtc/offer", json={
                    "sdp": pc.localDescription.sdp, "type": "offer", "metadata": PATIENT})
                await pc.close()  # the answer is never applied: no media ever flows
                assert answer.status_code == 200, answer.text
                return str(answer.json()["id"])

            rid = asyncio.run(offer_only())
            (step,) = scp.instances.values()
            assert step.PerformedProcedureStepStatus == "IN PROGRESS"
            state = wait_for(client, rid, lambda s: s["state"] == "stopped", timeout=15)
            assert state["job_id"] is None and state["mpps"] == "discontinued", state
            assert client.get("/jobs").json() == []
            assert not (tmp_path / "data" / "uploads" / rid).exists()
        (step,) = scp.instances.values()
        assert step.PerformedProcedureStepStatus == "DISCONTINUED"
    finally:
        scp.stop()
