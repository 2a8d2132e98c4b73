"""Patient media (issue 12): `vid2dcm media OUT_DIR FILES...` writes a DICOMDIR file set that
DCMTK (dcmdump, dcmmkdir with the General Purpose profile) and dicom3tools (dciodvfy) accept,
and an INDEX.HTM whose MP4s decode to Number of Frames."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import av
import pydicom
import pytest
import typer
from typer.testing import CliRunner

from readback import read_back
from vid2dcm.apps.media_command import media
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}
PATIENT = Metadata(patient_id="P-77", patient_name="Doe^Jane")

app = typer.Typer()
app.command()(media)


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media-src")
    clip = synthesize(folder / "a.mp4", ClipSpec(options=HIGH, width=64, height=48, frames=8,
                                                audio=AudioSpec()))
    out = folder / "dcm"
    out.mkdir()
    mp4 = convert(clip, out / "mp4.dcm", metadata=PATIENT).files[0]
    study = Metadata(patient_id="P-77", study_instance_uid=mp4.study_instance_uid)
    ts = convert(clip, out / "ts.dcm", metadata=study,
                 options=Request(container="ts")).files[0]
    other = convert(clip, folder / "other.dcm", metadata=PATIENT).files[0]
    frames = convert(clip, folder / "us.dcm", metadata=PATIENT,
                     options=Request(sop="ultrasound")).files[0]
    anonymous = convert(clip, folder / "anon.dcm").files[0]
    return {"mp4": mp4.path, "ts": ts.path, "other": other.path, "frames": frames.path,
            "anonymous": anonymous.path, "folder": out, "study": Path(mp4.study_instance_uid)}


def test_media_file_set(videos: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "MEDIA"
    result = CliRunner().invoke(app, [str(out), str(videos["folder"]), str(videos["other"]),
                                      "--study", str(videos["study"])])
    assert result.exit_code == 0, result.output
    assert "2 instances, 2 playable in a browser, profile STD-GEN-BD-MPEG4-HPLV41" in \
        result.output
    dump = subprocess.run(["dcmdump", "+L", str(out / "DICOMDIR")], capture_output=True,
                          text=True, check=False)
    assert dump.returncode == 0 and "E: " not in dump.stderr
    # 1 patient, 1 study, 2 series (each conversion its own), 2 images
    assert dump.stdout.count("DirectoryRecordType") == 1 + 1 + 2 + 2
    check = subprocess.run(["dciodvfy", "-new", str(out / "DICOMDIR")], capture_output=True,
                           text=True, check=False)
    assert "BasicDirectory" in check.stdout + check.stderr
    assert not [ln for ln in (check.stdout + check.stderr).splitlines()
                if ln.startswith("Error")]
    ds = pydicom.dcmread(out / "DICOMDIR")
    files = [out / Path(*r.ReferencedFileID) for r in ds.DirectoryRecordSequence
             if r.DirectoryRecordType == "IMAGE"]
    assert len(files) == 2
    for path in files:
        read_back(path, tmp_path)
    # DCMTK builds its own DICOMDIR from the same instances under the same profile
    copy = tmp_path / "copy"
    shutil.copytree(out / "PT000000", copy / "PT000000")
    mk = subprocess.run(["dcmmkdir", "--general-bd-mpeg4-hp", "+r", "PT000000"], cwd=copy,
                        capture_output=True, text=True, check=False)
    assert mk.returncode == 0, mk.stderr
    index = (out / "INDEX.HTM").read_text(encoding="utf-8")
    assert "P-77" not in index and "Doe" not in index
    for n in (1, 2):
        assert f'src="VIDEOS/V000{n}.MP4"' in index
        with av.open(str(out / "VIDEOS" / f"V000{n}.MP4")) as c:
            assert c.format.name.startswith("mov,mp4")
            assert sum(1 for _ in c.decode(video=0)) == 8


def test_frames_and_video_mixed_have_no_single_profile(videos: dict[str, Path],
                                                      tmp_path: Path) -> None:
    out = tmp_path / "MIXED"
    result = CliRunner().invoke(app, [str(out), str(videos["mp4"]), str(videos["frames"])])
    assert result.exit_code == 0, result.output
    assert "1 playable" in result.output and "profile none" in result.output
    assert "stored frame by frame" in (out / "INDEX.HTM").read_text(encoding="utf-8")


def test_media_refuses_what_a_dicomdir_cannot_hold(videos: dict[str, Path],
                                                  tmp_path: Path) -> None:
    out = tmp_path / "NOPE"
    result = CliRunner().invoke(app, [str(out), str(videos["mp4"]), str(videos["anonymous"])])
    assert result.exit_code == 3
    assert "PatientID is empty" in result.output
    assert not out.exists() and not list(tmp_path.glob(".vid2dcm-media-*"))
    # DCMTK refuses the same file for the same reason, and no longer for Study ID
    shutil.copy(videos["anonymous"], tmp_path / "ANON")
    mk = subprocess.run(["dcmmkdir", "--general-bd-mpeg4-hp", "ANON"], cwd=tmp_path,
                        capture_output=True, text=True,
                        check=False)
    assert "PatientID" in mk.stderr and "StudyID" not in mk.stderr
