"""Worklist-driven conversion against DCMTK wlmscpfs: the video files under the order."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pydicom
import pytest

from conftest import MakeClip
from dcmtk_peers import running_worklist
from readback import dciodvfy_errors
from vid2dcm.producing.synth import ClipSpec

TODAY = date.today().strftime("%Y%m%d")
ENTRIES = [
    {"accession": "ACC100", "patient_name": "Doe^Jane", "patient_id": "PID100",
     "study_uid": "1.2.826.0.1.3680043.10.999.100", "procedure": "Colonoscopy",
     "modality": "ES", "day": TODAY},
    {"accession": "ACC200", "patient_name": "Roe^Rick", "patient_id": "PID200",
     "study_uid": "1.2.826.0.1.3680043.10.999.200", "procedure": "Wound photo",
     "modality": "XC", "day": "20200101"},
]


@pytest.fixture(scope="module")
def worklist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_worklist(tmp_path_factory.mktemp("wl"), ENTRIES) as (aet, port):
        yield f"{aet}@127.0.0.1:{port}"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *args], capture_output=True,
                          text=True, check=False)


def test_query_lists_entries_and_filters(worklist: str) -> None:
    everything = cli("worklist", "--from", worklist, "--json")
    assert everything.returncode == 0, everything.stderr
    assert {e["accession_number"] for e in json.loads(everything.stdout)} == {"ACC100",
                                                                               "ACC200"}
    today = json.loads(cli("worklist", "--from", worklist, "--date", "today", "--json").stdout)
    assert [e["accession_number"] for e in today] == ["ACC100"]
    xc = json.loads(cli("worklist", "--from", worklist, "--modality", "XC", "--json").stdout)
    assert [e["patient_id"] for e in xc] == ["PID200"]


def test_convert_with_worklist_files_under_the_order(worklist: str, make_clip: MakeClip,
                                                     tmp_path: Path) -> None:
    source = make_clip("wl.mp4", ClipSpec(options={"preset": "superfast", "profile": "high"}))
    out = tmp_path / "wl.dcm"
    proc = cli("convert", str(source), "-o", str(out), "--sop", "endoscopic", "--worklist",
               worklist, "--accession", "ACC100")
    assert proc.returncode == 0, proc.stderr
    assert "Doe" not in proc.stdout + proc.stderr, "patient data must not be printed"
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    assert (ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex) == (
        "Doe^Jane", "PID100", "19700101", "F")
    assert ds.AccessionNumber == "ACC100"
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.10.999.100"
    assert ds.ReferringPhysicianName == "Ref^Doctor"
    request = ds.RequestAttributesSequence[0]
    assert request.RequestedProcedureID == "RP-ACC100"
    assert request.ScheduledProcedureStepID == "SPS-ACC100"
    assert request.RequestedProcedureDescription == "Colonoscopy"
    assert dciodvfy_errors(out) == []


def test_unknown_accession_is_a_usage_error(worklist: str, make_clip: MakeClip,
                                            tmp_path: Path) -> None:
    source = make_clip("wl.mp4", ClipSpec(options={"preset": "superfast", "profile": "high"}))
    proc = cli("convert", str(source), "-o", str(tmp_path / "x.dcm"), "--worklist", worklist,
               "--accession", "NOPE")
    assert proc.returncode == 2
    assert "0 entries for accession NOPE" in proc.stderr
    assert not (tmp_path / "x.dcm").exists()
