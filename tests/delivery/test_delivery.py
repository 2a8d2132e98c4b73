"""Delivery to real peers on 127.0.0.1: Orthanc (with DICOMweb), a strict Orthanc that takes only
uncompressed syntaxes, and DCMTK storescp. Every server is started and stopped by the tests."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pydicom
import pytest

from conftest import MakeClip
from dcmtk_peers import free_port, running_storescp, start_storescp, stop, wait_listening
from https_proxy import https_proxy
from orthanc import DICOMWEB_PLUGIN, Orthanc, running_orthanc
from pki import make_ca, make_leaf
from vid2dcm.core.errors import DeliveryError
from vid2dcm.core.metadata import Metadata
from vid2dcm.delivery.destinations import Destination, TlsSettings
from vid2dcm.delivery.send import deliver
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import AudioSpec, ClipSpec
from vid2dcm.reading.reader import open_video_object

HIGH = {"preset": "superfast", "profile": "high"}
FAST = {"retries": 0, "timeout_s": 20.0}


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with running_orthanc(tmp_path_factory.mktemp("pacs"), Plugins=[DICOMWEB_PLUGIN],
                         DicomWeb={"Enable": True, "Root": "/dicom-web/"}) as server:
        yield server


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    with running_orthanc(tmp_path_factory.mktemp("strict"), AcceptedTransferSyntaxes=[
            "1.2.840.10008.1.2", "1.2.840.10008.1.2.1"]) as server:
        yield server


def dimse(server: Orthanc, **extra: Any) -> Destination:
    return Destination(ae_title=server.aet, host="127.0.0.1", port=server.dicom_port,
                       **{**FAST, **extra})


def stored(server: Orthanc, sop_instance_uid: str) -> dict[str, Any]:
    found = server.get_json_post("/tools/lookup", sop_instance_uid)
    ids = [f["ID"] for f in found if f["Type"] == "Instance"]
    assert ids, f"{sop_instance_uid} is not in the PACS"
    tags: dict[str, Any] = server.get(f"/instances/{ids[0]}/simplified-tags")
    meta = server.get(f"/instances/{ids[0]}/metadata?expand")
    return {"id": ids[0], "tags": tags, "syntax": meta["TransferSyntax"]}


def embedded(path: Path) -> bytes:
    with open_video_object(path).open_bitstream() as raw:
        return raw.read()


CORE = [
    ("h264.mp4", ClipSpec(options=HIGH, audio=AudioSpec()), Request(), "1.2.840.10008.1.2.4.102"),
    ("h264-1080p60.mp4", ClipSpec(options={**HIGH, "level": "4.2"}, width=1920, height=1080,
                                  rate=Fraction(60), frames=8), Request(),
     "1.2.840.10008.1.2.4.104"),
    ("hevc.mp4", ClipSpec(codec="libx265", options={"preset": "ultrafast"}), Request(),
     "1.2.840.10008.1.2.4.107"),
    ("mpeg2-pal.mpg", ClipSpec(codec="mpeg2video", options={}, width=720, height=576,
                               frames=25, container_format="vob"), Request(),
     "1.2.840.10008.1.2.4.100"),
    ("mpeg2-1080i.ts", ClipSpec(codec="mpeg2video", options={}, width=1920, height=1080,
                                frames=6, interlaced=True, bit_rate=15_000_000), Request(),
     "1.2.840.10008.1.2.4.101"),
    ("h264-us.mp4", ClipSpec(options=HIGH, frames=10), Request(sop="ultrasound"),  # type: ignore[arg-type]
     "1.2.840.10008.1.2.4.50"),
]


@pytest.fixture(scope="module")
def core_files(make_clip: MakeClip, tmp_path_factory: pytest.TempPathFactory
               ) -> list[tuple[Path, str]]:
    folder = tmp_path_factory.mktemp("core")
    files = []
    for name, spec, request, syntax in CORE:
        result = convert(make_clip("send-" + name, spec), folder / (name + ".dcm"),
                         options=request, metadata=Metadata(patient_id="SEND1"))
        assert result.files[0].transfer_syntax_uid == syntax
        files.append((result.files[0].path, syntax))
    return files


def test_echo(pacs: Orthanc) -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "echo",
                           f"{pacs.aet}@127.0.0.1:{pacs.dicom_port}"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "status 0x0000" in proc.stdout


def test_every_core_syntax_is_stored_as_is_and_served_identically(
        pacs: Orthanc, core_files: list[tuple[Path, str]]) -> None:
    receipts = deliver([p for p, _ in core_files], dimse(pacs))
    assert [r.ok for r in receipts] == [True] * len(core_files), [r.message for r in receipts]
    for receipt, (path, syntax) in zip(receipts, core_files, strict=True):
        assert receipt.kind == "as-is" and receipt.transfer_syntax_uid == syntax
        found = stored(pacs, str(receipt.sop_instance_uid))
        assert found["syntax"] == syntax
        if syntax != "1.2.840.10008.1.2.4.50":
            served = pacs.get(f"/instances/{found['id']}/frames/0/raw")
            payload = embedded(path)
            assert served[:len(payload)] == payload and len(served) - len(payload) in (0, 1)


def test_stow_rs_streams_and_reports_each_instance(
        pacs: Orthanc, core_files: list[tuple[Path, str]], tmp_path: Path) -> None:
    path = core_files[0][0]
    url = f"http://127.0.0.1:{pacs.http_port}/dicom-web"
    receipts = deliver([path], Destination(kind="stow", url=url, **FAST))
    assert len(receipts) == 1 and receipts[0].ok, receipts[0].message
    found = stored(pacs, str(receipts[0].sop_instance_uid))
    assert pacs.get(f"/instances/{found['id']}/frames/0/raw")[:100] == embedded(path)[:100]


def test_fragmentable_file_is_sent_as_its_twin(pacs: Orthanc, make_clip: MakeClip,
                                               tmp_path: Path) -> None:
    """Orthanc 1.10 refuses every Fragmentable syntax."""
    source = make_clip("send-noise.mp4", ClipSpec(options={**HIGH, "g": "10"}, noise=True,
                                                  frames=30))
    one = convert(source, tmp_path / "one.dcm", options=Request(fragmentable=True)).files[0]
    many = convert(source, tmp_path / "many.dcm", options=Request(
        fragmentable=True, max_item_bytes=source.stat().st_size // 3)).files[0]
    assert one.transfer_syntax_uid == many.transfer_syntax_uid == "1.2.840.10008.1.2.4.102.1"
    receipts = deliver([one.path, many.path], dimse(pacs))
    assert all(r.ok for r in receipts), [r.message for r in receipts]
    assert {r.kind for r in receipts} == {"non-fragmentable twin"}
    by_source = {r.source: r for r in receipts}
    assert by_source[one.path].sop_instance_uid == one.sop_instance_uid, "same pixels, same UID"
    twin = stored(pacs, str(by_source[many.path].sop_instance_uid))
    assert twin["syntax"] == "1.2.840.10008.1.2.4.102"
    original = pydicom.dcmread(many.path, stop_before_pixels=True)
    assert twin["tags"]["SeriesInstanceUID"] == original.SeriesInstanceUID
    assert twin["tags"]["NumberOfFrames"] == "30"


def test_hevc_is_transcoded_for_a_peer_without_hevc(
        pacs: Orthanc, core_files: list[tuple[Path, str]]) -> None:
    hevc = next(p for p, s in core_files if s == "1.2.840.10008.1.2.4.107")
    dest = dimse(pacs, accepted_syntaxes=("1.2.840.10008.1.2.4.102", "1.2.840.10008.1.2.1"))
    (receipt,) = deliver([hevc], dest)
    assert receipt.ok and receipt.kind == "transcoded", receipt.message
    assert stored(pacs, str(receipt.sop_instance_uid))["syntax"] == "1.2.840.10008.1.2.4.102"


def test_strict_peer_gets_frames_and_is_told_so(
        strict: Orthanc, core_files: list[tuple[Path, str]]) -> None:
    h264 = core_files[0][0]
    (receipt,) = deliver([h264], dimse(strict))
    assert receipt.ok and receipt.kind == "frame by frame", receipt.message
    assert "1.2.840.10008.1.2.1" in receipt.message
    found = stored(strict, str(receipt.sop_instance_uid))
    assert found["syntax"] == "1.2.840.10008.1.2.1"
    assert found["tags"]["NumberOfFrames"] == str(
        pydicom.dcmread(h264, stop_before_pixels=True).NumberOfFrames)


def test_strict_peer_without_lossy_fallback_is_a_clear_failure(
        strict: Orthanc, core_files: list[tuple[Path, str]]) -> None:
    h264 = core_files[0][0]
    before = h264.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "send", str(h264), "--to",
                           f"{strict.aet}@127.0.0.1:{strict.dicom_port}",
                           "--no-lossy-fallback", "--retries", "0"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 6
    assert "lossy fallback is disabled" in proc.stderr
    assert h264.read_bytes() == before


def test_max_object_size_splits_before_sending(pacs: Orthanc, make_clip: MakeClip,
                                               tmp_path: Path) -> None:
    source = make_clip("send-noise-vga.mp4", ClipSpec(options={**HIGH, "g": "5"}, noise=True,
                                                      frames=30, width=640, height=480))
    big = convert(source, tmp_path / "big.dcm").files[0]
    cap = big.size_bytes // 2 + (1 << 20)
    assert big.size_bytes > cap
    receipts = deliver([big.path], dimse(pacs, max_object_bytes=cap))
    assert len(receipts) >= 2 and all(r.ok for r in receipts), [r.message for r in receipts]
    frames = sum(int(stored(pacs, str(r.sop_instance_uid))["tags"]["NumberOfFrames"])
                 for r in receipts)
    assert frames == 30


def test_storescp_peer(core_files: list[tuple[Path, str]], tmp_path: Path) -> None:
    with running_storescp(tmp_path / "in") as peer:
        dest = Destination(ae_title=peer.aet, host="127.0.0.1", port=peer.port, **FAST)
        receipts = deliver([p for p, _ in core_files], dest)
        assert all(r.ok for r in receipts), [r.message for r in receipts]
        assert len(peer.received()) == len(core_files)


def test_peer_that_comes_up_late_receives_exactly_once(
        core_files: list[tuple[Path, str]], tmp_path: Path) -> None:
    port = free_port()
    folder = tmp_path / "late"
    procs: list[Any] = []

    def start_later() -> None:
        time.sleep(1.5)
        procs.append(start_storescp(folder, port))

    starter = threading.Thread(target=start_later)
    starter.start()
    try:
        dest = Destination(ae_title="STORESCP", host="127.0.0.1", port=port, retries=5,
                           retry_delay_s=0.5)
        receipts = deliver([core_files[0][0]], dest)
        starter.join()
        wait_listening(port, procs[0])
        assert receipts[0].ok, receipts[0].message
        received = sorted(p for p in folder.iterdir() if p.is_file())
        assert len(received) == 1
        assert pydicom.dcmread(received[0], stop_before_pixels=True).SOPInstanceUID == \
            receipts[0].sop_instance_uid
    finally:
        starter.join()
        for proc in procs:
            stop(proc)


def test_unreachable_peer_fails_with_exit_6(core_files: list[tuple[Path, str]]) -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "send", str(core_files[0][0]),
                           "--to", f"NOBODY@127.0.0.1:{free_port()}", "--retries", "1"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 6
    assert proc.stderr.count("vid2dcm: error:") == 1 and "after 2 attempt(s)" in proc.stderr
    with pytest.raises(DeliveryError):
        deliver([core_files[0][0]], Destination(ae_title="X", host="127.0.0.1",
                                                port=free_port(), retries=0))


def test_storage_commitment_with_orthanc(core_files: list[tuple[Path, str]],
                                         tmp_path: Path) -> None:
    """Orthanc answers N-ACTION and sends the N-EVENT-REPORT on a new association to us."""
    listen = free_port()
    with running_orthanc(tmp_path, DicomModalities={
            "vid2dcm": ["VID2DCM", "127.0.0.1", listen]}) as server:
        dest = dimse(server, storage_commitment=True, commitment_port=listen,
                     commitment_timeout_s=20)
        receipts = deliver([core_files[0][0]], dest)
        assert receipts[0].ok and receipts[0].committed is True, receipts[0]

        from vid2dcm.delivery.transports.commitment import request_commitment

        sop = pydicom.dcmread(core_files[0][0], stop_before_pixels=True)
        answers = request_commitment(dest, [(str(sop.SOPClassUID), "1.2.826.0.1.3680043.10.999.9")],
                                     listen, 20)
        assert answers == {"1.2.826.0.1.3680043.10.999.9": False}, "never stored: not committed"


def test_stow_rs_over_https_with_basic_auth(core_files: list[tuple[Path, str]],
                                            tmp_path: Path) -> None:
    ca_key, ca = make_ca(tmp_path, "ca")
    key, cert = make_leaf(tmp_path, "proxy", ca_key, ca)
    with running_orthanc(tmp_path, user=("nurse", "s3cret"), Plugins=[DICOMWEB_PLUGIN],
                         DicomWeb={"Enable": True, "Root": "/dicom-web/"}) as server, \
            https_proxy(tmp_path / "nginx", server.http_port, cert, key) as port:
        url = f"https://127.0.0.1:{port}/dicom-web"
        good = Destination(kind="stow", url=url, username="nurse", password="s3cret",
                           tls=TlsSettings(ca_file=ca), **FAST)
        (receipt,) = deliver([core_files[0][0]], good)
        assert receipt.ok, receipt.message
        stored(server, str(receipt.sop_instance_uid))
        wrong = good.model_copy(update={"password": "guess"})
        with pytest.raises(DeliveryError, match="HTTP 401"):
            deliver([core_files[0][0]], wrong)
        untrusted = good.model_copy(update={"tls": None})
        with pytest.raises(DeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
            deliver([core_files[0][0]], untrusted)


def test_stow_rs_with_a_bearer_token(core_files: list[tuple[Path, str]], pacs: Orthanc,
                                     tmp_path: Path) -> None:
    ca_key, ca = make_ca(tmp_path, "ca")
    key, cert = make_leaf(tmp_path, "proxy", ca_key, ca)
    with https_proxy(tmp_path / "nginx", pacs.http_port, cert, key, bearer="t0ken") as port:
        dest = Destination(kind="stow", url=f"https://127.0.0.1:{port}/dicom-web",
                           bearer_token="t0ken", tls=TlsSettings(ca_file=ca), **FAST)
        (receipt,) = deliver([core_files[1][0]], dest)
        assert receipt.ok, receipt.message
        with pytest.raises(DeliveryError, match="HTTP 401"):
            deliver([core_files[1][0]], dest.model_copy(update={"bearer_token": "stale"}))
