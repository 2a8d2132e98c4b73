"""De-identification end to end, on vid2dcm's own objects (copy path, transcoded, frame by frame)
made from a synthesised endoscopy-like clip with the identity burned in and a real face.

Every claim is checked with an independent reader: dcmdump for the header, Tesseract for the
pixels (it must read the identity in the source, so the test can fail), the face detector for
the face, PyAV for audio and frame counts, dciodvfy through the read-back battery."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import av
import pydicom
import pytest

from deid_fixtures import make_clip
from readback import read_back
from vid2dcm.core.errors import OutputError
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify import DeidSettings, ProfileOptions, deidentify
from vid2dcm.deidentify.faces import detect_faces
from vid2dcm.deidentify.pixels import read_text
from vid2dcm.deidentify.profile import normalize
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.reading.reader import extract_bitstream

IDENTITY = Metadata(
    patient_name="DOE^JANE", patient_id="PID-4711", patient_birth_date=date(1970, 1, 31),
    accession_number="ACC-99812", study_description="Colonoscopy of JANE DOE",
    institution_name="Saint Example Hospital", referring_physician_name="SMITH^ALAN",
    manufacturer="vid2dcm-test", manufacturer_model_name="synthetic endoscopy processor",
)
HEADER_SECRETS = ("DOE", "JANE", "PID-4711", "19700131", "ACC-99812", "Saint Example", "SMITH")
BANNER_TOKENS = ("DOE", "JANE", "19700131", "PID4711")
SECRET = "test-site-secret-1"


@dataclass(frozen=True)
class Case:
    source: Path
    output: Path
    report_json: Path
    work: Path


def _convert_and_deidentify(work: Path, name: str, codec: str, request: Request,
                            options: ProfileOptions) -> Case:
    work.mkdir(parents=True, exist_ok=True)
    clip = make_clip(work / f"{name}.mp4", codec=codec)
    source = work / f"{name}.dcm"
    convert(clip, source, metadata=IDENTITY, options=request)
    reports = deidentify([source], work / "out", DeidSettings(options=options, secret=SECRET))
    output = work / "out" / reports[0].output
    return Case(source, output, output.with_suffix(".deid.json"), work)


@pytest.fixture(scope="module")
def copied(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """H.264 in MP4 with AAC: vid2dcm copies the bitstream (and the audio) into a Video
    Endoscopic object."""
    return _convert_and_deidentify(
        tmp_path_factory.mktemp("copied"), "copied", "libx264", Request(sop="endoscopic"),
        ProfileOptions(clean_recognizable_visual_features=True))


@pytest.fixture(scope="module")
def transcoded(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """MPEG-4 Part 2: vid2dcm transcodes it to H.264 first."""
    return _convert_and_deidentify(
        tmp_path_factory.mktemp("transcoded"), "transcoded", "mpeg4", Request(),
        ProfileOptions())


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Case:
    """Secondary Capture, JPEG frame by frame."""
    return _convert_and_deidentify(
        tmp_path_factory.mktemp("frames"), "frames", "libx264", Request(sop="sc"),
        ProfileOptions())


def ocr_text(dicom: Path, work: Path) -> list[str]:
    """Normalised text Tesseract reads on every 5th decoded frame of a DICOM object."""
    media = work / f"{dicom.stem}.ocr-media"
    extract_bitstream(dicom, media, overwrite=True)
    texts = []
    with av.open(str(media)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 5 == 0:
                lines = read_text(frame.to_ndarray(format="rgb24"), 0.0)
                texts.append(normalize(" ".join(line.text for line in lines)))
    return texts


def faces_in(dicom: Path, work: Path) -> int:
    media = work / f"{dicom.stem}.face-media"
    extract_bitstream(dicom, media, overwrite=True)
    found = 0
    with av.open(str(media)) as container:
        for index, frame in enumerate(container.decode(video=0)):
            if index % 5 == 0:
                found += len(detect_faces(frame.to_ndarray(format="rgb24")))
    return found


def audio_streams(dicom: Path, work: Path) -> int:
    media = work / f"{dicom.stem}.audio-media"
    extract_bitstream(dicom, media, overwrite=True)
    with av.open(str(media)) as container:
        return len(container.streams.audio)


def dcmdump(path: Path) -> str:
    return subprocess.run(["dcmdump", "+L", str(path)], capture_output=True, text=True,
                          check=True, errors="replace").stdout


def assert_header_clean(case: Case, faces: bool = False) -> pydicom.Dataset:
    before, after = dcmdump(case.source), dcmdump(case.output)
    for secret in HEADER_SECRETS:
        assert secret.upper() in before.upper(), secret  # the source had it: the check can fail
        assert secret.upper() not in after.upper(), secret
    ds = pydicom.dcmread(case.output, stop_before_pixels=True)
    original = pydicom.dcmread(case.source, stop_before_pixels=True)
    assert ds.PatientIdentityRemoved == "YES"
    codes = [item.CodeValue for item in ds.DeidentificationMethodCodeSequence]
    assert codes == ["113100", "113101", *(["113102"] if faces else []), "113105"]
    assert ds.BurnedInAnnotation == "NO"
    assert ds.StudyInstanceUID != original.StudyInstanceUID
    assert ds.SOPInstanceUID != original.SOPInstanceUID
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert str(ds.PatientName).startswith("ANON^")
    assert ds.StudyDescription == "Colonoscopy of *** ***"  # Clean Descriptors kept the rest
    return ds


def assert_pixels_clean(case: Case) -> None:
    before = ocr_text(case.source, case.work)
    after = ocr_text(case.output, case.work)
    for token in BANNER_TOKENS:
        assert all(token in text for text in before), (token, before)
        assert not any(token in text for text in after), (token, after)


def assert_same_timing(case: Case) -> None:
    src = pydicom.dcmread(case.source, stop_before_pixels=True)
    out = pydicom.dcmread(case.output, stop_before_pixels=True)
    assert int(out.NumberOfFrames) == int(src.NumberOfFrames) == 20
    assert float(out.FrameTime) == float(src.FrameTime) == 100.0
    assert int(out.CineRate) == int(src.CineRate)


def test_copy_path_video(copied: Case) -> None:
    ds = assert_header_clean(copied, faces=True)
    assert ds.SOPClassUID == pydicom.uid.VideoEndoscopicImageStorage
    assert ds.RecognizableVisualFeatures == "NO"
    assert_pixels_clean(copied)
    assert_same_timing(copied)
    assert faces_in(copied.source, copied.work) >= 4  # the detector finds the face ...
    assert faces_in(copied.output, copied.work) == 0  # ... and not once it is blurred
    assert audio_streams(copied.source, copied.work) == 1
    assert audio_streams(copied.output, copied.work) == 0
    assert "MultiplexedAudioChannelsDescriptionCodeSequence" not in ds
    read_back(copied.output, copied.work)
    report = copied.report_json.read_text()
    assert '"passed": true' in report and '"audio": "removed"' in report
    assert all(secret.upper() not in report.upper() for secret in HEADER_SECRETS)
    assert '"source": "face"' in report and '"source": "device table"' in report


def test_transcoded_video(transcoded: Case) -> None:
    assert_header_clean(transcoded)
    assert_pixels_clean(transcoded)
    assert_same_timing(transcoded)
    read_back(transcoded.output, transcoded.work)


def test_frame_object(frames: Case) -> None:
    ds = assert_header_clean(frames)
    assert ds.SOPClassUID == pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage
    assert_pixels_clean(frames)
    assert_same_timing(frames)
    read_back(frames.output, frames.work)


def test_pseudonyms_stable_per_secret(copied: Case, tmp_path: Path) -> None:
    """Header only (pixels copied): same secret, same pseudonyms and UIDs; another, others."""
    header_only = ProfileOptions(clean_pixel_data=False)

    def run(secret: str, folder: str) -> pydicom.Dataset:
        report = deidentify([copied.source], tmp_path / folder,
                            DeidSettings(options=header_only, secret=secret))[0]
        assert report.pixels == "copied (nothing to mask)"
        return pydicom.dcmread(tmp_path / folder / report.output, stop_before_pixels=True)

    first, again, other = run(SECRET, "a"), run(SECRET, "b"), run("another-secret-2", "c")
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID",
                    "SOPInstanceUID"):
        assert first.get(keyword) == again.get(keyword), keyword
        assert first.get(keyword) != other.get(keyword), keyword
    read_back(tmp_path / "a" / f"{first.SOPInstanceUID}.dcm", tmp_path)


def test_verification_fails_when_text_is_missed(copied: Case, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """If discovery misses the banner (no device entry, OCR blinded), the independent OCR of
    the output still reads the identity: the run fails and writes nothing."""
    monkeypatch.setattr("vid2dcm.deidentify.engine.read_text", lambda rgb, t: [])
    empty_table = tmp_path / "masks.json"
    empty_table.write_text('{"devices": []}')
    with pytest.raises(OutputError, match="verification failed"):
        deidentify([copied.source], tmp_path / "out",
                   DeidSettings(secret=SECRET, mask_settings=empty_table))
    assert list((tmp_path / "out").iterdir()) == []


def test_ultrasound_frame_object(tmp_path: Path) -> None:
    """Ultrasound multi-frame (JPEG frames): the output says Burned In Annotation NO only
    because the masks were applied and verified; OCR found the banner as well."""
    case = _convert_and_deidentify(
        tmp_path, "us", "libx264", Request(sop="ultrasound"), ProfileOptions())
    source = pydicom.dcmread(case.source, stop_before_pixels=True)
    assert source.get("BurnedInAnnotation") != "NO"
    ds = assert_header_clean(case)
    assert ds.SOPClassUID == pydicom.uid.UltrasoundMultiFrameImageStorage
    assert_pixels_clean(case)
    report = case.report_json.read_text()
    assert '"source": "ocr"' in report
    read_back(case.output, tmp_path)
