"""--json on every reporting command: the output of each command validates against its pydantic
model (vid2dcm.apps.report), errors come as {"error": {...}}, and convert --json --send carries
the delivery receipts. Delivery goes to a real DCMTK storescp on 127.0.0.1; every file it
receives is read back (pydicom, dcmdump, dciodvfy, decode == Number of Frames)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from dcmtk_peers import free_port, running_storescp
from readback import read_back
from vid2dcm.apps.report import (
    ConvertReport,
    DeliveryReport,
    DoctorReport,
    EchoReport,
    ErrorReport,
    InfoReport,
    ProbeReport,
    ValidateReport,
)
from vid2dcm.producing.synth import ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}


def cli(*args: object, cwd: Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *map(str, args)],
                          capture_output=True, text=True, timeout=180, cwd=cwd, check=False,
                          env=env)


def one_object(proc: subprocess.CompletedProcess[str]) -> str:
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, proc.stdout
    return lines[0]


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("json") / "clip.mp4",
                      ClipSpec(width=64, height=48, frames=10, options=HIGH))


@pytest.fixture(scope="module")
def dicom(clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("json-dcm") / "clip.dcm"
    proc = cli("convert", clip, "-o", out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_probe_json_is_a_probe_report(clip: Path) -> None:
    proc = cli("probe", clip, "--json")
    assert proc.returncode == 0, proc.stderr
    report = ProbeReport.model_validate_json(one_object(proc))
    assert report.plan.action == "copy"
    assert report.media["video"]["timing"]["frame_count"] == 10


def test_convert_json_is_a_convert_report(clip: Path, tmp_path: Path) -> None:
    proc = cli("convert", clip, "-o", tmp_path / "c.dcm", "--json")
    assert proc.returncode == 0, proc.stderr
    report = ConvertReport.model_validate_json(one_object(proc))
    assert report.source == str(clip)
    assert report.delivery == []
    assert [f.path for f in report.files] == [str(tmp_path / "c.dcm")]
    back = read_back(tmp_path / "c.dcm", tmp_path)
    assert int(back.dataset.NumberOfFrames) == report.files[0].frames == 10


def test_info_json_is_an_info_report(dicom: Path) -> None:
    proc = cli("info", dicom, "--json")
    assert proc.returncode == 0, proc.stderr
    report = InfoReport.model_validate_json(one_object(proc))
    ds = pydicom.dcmread(dicom, stop_before_pixels=True)
    assert report.number_of_frames == int(ds.NumberOfFrames) == 10
    assert report.sop_instance_uid == ds.SOPInstanceUID
    assert (report.columns, report.rows) == (64, 48)


def test_validate_json_reports_ok_and_errors(dicom: Path, tmp_path: Path) -> None:
    good = cli("validate", dicom, "--json", "--no-dciodvfy")
    assert good.returncode == 0, good.stderr
    assert ValidateReport.model_validate_json(one_object(good)).ok
    ds = pydicom.dcmread(dicom)
    ds.NumberOfFrames = 9
    bad_file = tmp_path / "bad.dcm"
    ds.save_as(bad_file, enforce_file_format=True)
    bad = cli("validate", bad_file, "--json", "--no-dciodvfy")
    assert bad.returncode == 1
    report = ValidateReport.model_validate_json(one_object(bad))  # no error object after it
    assert not report.ok
    assert any("NumberOfFrames is 9" in f.message for f in report.findings)


def test_errors_are_json_objects(tmp_path: Path) -> None:
    proc = cli("convert", tmp_path / "absent.mp4", "--json")
    assert proc.returncode == 3
    report = ErrorReport.model_validate_json(one_object(proc))
    assert (report.error.code, report.error.kind) == (3, "input")
    assert proc.stderr.strip() == f"vid2dcm: error: {report.error.message}"
    usage = cli("probe", tmp_path / "absent.mp4", "--json", "--sop", "xray")
    assert ErrorReport.model_validate_json(one_object(usage)).error.code == 2 == usage.returncode


def test_folder_json_is_one_object_per_input(clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(clip, folder / "a.mp4")
    (folder / "b.mp4").write_bytes(b"not a video" * 100)
    out = tmp_path / "out"
    out.mkdir()
    proc = cli("convert", folder, "-o", out, "--json", "--jobs", "1")
    assert proc.returncode == 3
    lines = proc.stdout.splitlines()
    assert len(lines) == 2
    good = ConvertReport.model_validate_json(lines[0])
    assert good.source == str(folder / "a.mp4")
    bad = ErrorReport.model_validate_json(lines[1])
    assert bad.source == str(folder / "b.mp4") and bad.error.code == 3
    assert sorted(p.name for p in out.iterdir()) == ["a.dcm"]


@pytest.mark.integration
@pytest.mark.needs_dcmtk
def test_convert_json_send_includes_the_receipts(clip: Path, tmp_path: Path) -> None:
    with running_storescp(tmp_path / "pacs") as peer:
        proc = cli("convert", clip, "-o", tmp_path / "s.dcm", "--json", "--send",
                   f"{peer.aet}@127.0.0.1:{peer.port}", "--patient-id", "P-JSON-1")
        received = peer.received()
    assert proc.returncode == 0, proc.stderr
    report = ConvertReport.model_validate_json(one_object(proc))
    assert len(report.delivery) == 1
    delivery = report.delivery[0]
    assert delivery.ok and delivery.destination == f"STORESCP@127.0.0.1:{peer.port}"
    assert [r.sop_instance_uid for r in delivery.receipts] == [report.files[0].sop_instance_uid]
    assert len(received) == 1
    back = read_back(received[0], tmp_path)
    assert back.dataset.SOPInstanceUID == report.files[0].sop_instance_uid
    assert int(back.dataset.NumberOfFrames) == 10


def test_convert_json_send_to_nobody_reports_the_failure(clip: Path, tmp_path: Path) -> None:
    """The conversion is reported (its file stays: it is good), the delivery says why it
    failed, and the exit code is 6."""
    proc = cli("convert", clip, "-o", tmp_path / "n.dcm", "--json", "--send",
               f"NOBODY@127.0.0.1:{free_port()}", "--allow-unidentified")
    assert proc.returncode == 6, proc.stderr
    report = ConvertReport.model_validate_json(one_object(proc))
    assert report.delivery[0].ok is False
    assert report.delivery[0].receipts == []
    assert report.delivery[0].error and "attempt" in report.delivery[0].error
    assert proc.stderr.count("vid2dcm: error:") == 1
    assert (tmp_path / "n.dcm").exists()


@pytest.mark.integration
@pytest.mark.needs_dcmtk
def test_send_and_echo_json(dicom: Path, tmp_path: Path) -> None:
    with running_storescp(tmp_path / "pacs") as peer:
        dest = f"{peer.aet}@127.0.0.1:{peer.port}"
        echo = cli("echo", dest, "--json")
        sent = cli("send", dicom, "--to", dest, "--json", "--allow-unidentified")
        received = peer.received()
    assert echo.returncode == 0, echo.stderr
    assert EchoReport.model_validate_json(one_object(echo)).status == 0
    assert sent.returncode == 0, sent.stderr
    report = DeliveryReport.model_validate_json(one_object(sent))
    assert report.ok and len(report.receipts) == 1 and report.receipts[0].ok
    assert len(received) == 1
    assert read_back(received[0], tmp_path).dataset.SOPInstanceUID == \
        report.receipts[0].sop_instance_uid


@pytest.mark.integration
@pytest.mark.needs_dcmtk
def test_doctor_json_checks_tools_folder_port_and_destinations(tmp_path: Path) -> None:
    config = tmp_path / "d.toml"
    nobody = free_port()
    with running_storescp(tmp_path / "pacs") as peer:
        config.write_text(f'[destinations.pacs]\nae_title = "{peer.aet}"\nhost = "127.0.0.1"\n'
                          f'port = {peer.port}\n\n[destinations.gone]\nae_title = "X"\n'
                          f'host = "127.0.0.1"\nport = {nobody}\nretries = 0\n')
        proc = cli("doctor", "--json", "--data", tmp_path / "gw", "--port", free_port(),
                   "--config", config)
    report = DoctorReport.model_validate_json(one_object(proc))
    checks = {c.name: c for c in report.checks}
    assert checks["decoder h264"].status == "ok"
    assert checks["encoder libx264"].status == "ok"
    assert checks["dciodvfy"].status == ("ok" if shutil.which("dciodvfy") else "warning")
    assert checks["data folder"].status == "ok"
    assert not (tmp_path / "gw").exists(), "doctor must not leave a data folder behind"
    assert checks["gateway port"].status == "ok"
    assert checks["destination pacs"].status == "ok"
    assert checks["destination gone"].status == "failed" and checks["destination gone"].fix
    assert report.ok is False and proc.returncode == 1
    assert proc.stderr.count("vid2dcm: error:") == 1


def test_doctor_names_an_unwritable_data_folder(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
    proc = cli("doctor", "--data", blocker / "gw", env=env)
    assert proc.returncode == 1
    assert "failed  data folder" in proc.stdout and "fix:" in proc.stdout


@pytest.mark.integration
@pytest.mark.needs_dcmtk
def test_folder_convert_delivers_every_result(clip: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copy(clip, folder / name)
    out = tmp_path / "out"
    out.mkdir()
    with running_storescp(tmp_path / "pacs") as peer:
        proc = cli("convert", folder, "-o", out, "--json", "--jobs", "1", "--send",
                   f"{peer.aet}@127.0.0.1:{peer.port}", "--patient-id", "P-JSON-2")
        received = peer.received()
    assert proc.returncode == 0, proc.stderr
    reports = [ConvertReport.model_validate_json(line) for line in proc.stdout.splitlines()]
    assert [Path(r.source).name for r in reports] == ["a.mp4", "b.mp4"]
    assert all(r.delivery[0].ok for r in reports)
    sent = {r.files[0].sop_instance_uid for r in reports}
    assert {read_back(p, tmp_path).dataset.SOPInstanceUID for p in received} == sent


@pytest.mark.integration
@pytest.mark.needs_dcmtk
def test_worklist_json_is_an_array_of_entries(tmp_path: Path) -> None:
    from pydantic import TypeAdapter

    from dcmtk_peers import running_worklist
    from vid2dcm.apps.report import WorklistEntryReport

    entry = {"accession": "ACC7", "patient_name": "Roe^Rita", "patient_id": "PID7",
             "study_uid": "1.2.826.0.1.3680043.10.999.7", "procedure": "Gastroscopy",
             "modality": "ES", "day": "20240215"}
    with running_worklist(tmp_path / "wl", [entry]) as (aet, port):
        proc = cli("worklist", "--from", f"{aet}@127.0.0.1:{port}", "--json")
    assert proc.returncode == 0, proc.stderr
    entries = TypeAdapter(list[WorklistEntryReport]).validate_json(one_object(proc))
    assert [(e.accession_number, e.patient_id, e.modality) for e in entries] == [
        ("ACC7", "PID7", "ES")]
