"""The header profile against the pinned Table E.1-1, the pseudonyms and the encrypted lookup;
and a foreign object (private tags, nested identifiers) through the whole command."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from deid_fixtures import make_clip
from readback import read_back
from vid2dcm.core.errors import UsageError
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify import DeidSettings, ProfileOptions, deidentify
from vid2dcm.deidentify.convert import convert_deidentified, profile_named
from vid2dcm.deidentify.pixels import hold
from vid2dcm.deidentify.profile import (
    Action,
    HeaderCleaner,
    action_table,
    collect_identifiers,
    resolve,
)
from vid2dcm.deidentify.pseudonyms import Pseudonymizer, read_lookup, write_lookup
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.filters import MaskBox, mask_steps
from vid2dcm.producing.synth import ClipSpec, synthesize


def test_table_is_the_standards() -> None:
    table = action_table()
    assert len(table.exact) > 600
    name = table.row(pydicom.tag.Tag("PatientName"))
    assert name is not None and name.basic == "Z"
    study = table.row(pydicom.tag.Tag("StudyInstanceUID"))
    assert study is not None and study.basic == "U"
    assert study.action(ProfileOptions(retain_uids=True)) == "K"
    description = table.row(pydicom.tag.Tag("StudyDescription"))
    assert description is not None and description.basic == "X"
    assert description.action(ProfileOptions(clean_descriptors=False)) == "X"
    assert description.action(ProfileOptions()) == "C"
    assert table.row(pydicom.tag.Tag(0x0009, 0x1010)) is table.private
    overlay = table.row(pydicom.tag.Tag(0x6002, 0x3000))
    assert overlay is not None and overlay.basic == "X"
    assert table.row(pydicom.tag.Tag("Rows")) is None  # not in the table: kept


def test_combined_codes_keep_the_attribute_present() -> None:
    assert resolve("X/Z", "DA") is Action.EMPTY
    assert resolve("X/D", "LO") is Action.DUMMY
    assert resolve("X/Z/D", "DT") is Action.DUMMY
    assert resolve("X/Z/U*", "SQ") is Action.NEW_UID
    assert resolve("X", "LO") is Action.REMOVE
    assert resolve("U", "UI") is Action.NEW_UID


def _foreign_header() -> Dataset:
    ds = Dataset()
    ds.PatientName = "ROE^RICHARD^Q"
    ds.PatientID = "MRN-55501"
    ds.PatientBirthDate = "19610412"
    ds.OtherPatientIDs = ["OLD-1", "OLD-2"]
    ds.StudyDate = "20240305"
    ds.ContentDate = "20240305"
    ds.AcquisitionDateTime = "20240305101500"
    ds.StudyInstanceUID = "1.2.3.4"
    ds.SeriesInstanceUID = "1.2.3.4.5"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.SOPClassUID = pydicom.uid.VideoEndoscopicImageStorage
    ds.StudyDescription = "Gastroscopy ROE MRN-55501"
    ds.DeviceSerialNumber = "SN-1234"
    ds.Rows = 48
    item = Dataset()
    item.ReferencedSOPClassUID = ds.SOPClassUID
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.7"
    ds.ReferencedImageSequence = Sequence([item])
    request = Dataset()
    request.AccessionNumber = "ACC-1"
    request.RequestedProcedureID = "RP-1"
    ds.RequestAttributesSequence = Sequence([request])
    ds.add_new(0x00090010, "LO", "ACME PRIVATE")
    ds.add_new(0x00091001, "LO", "ROE RICHARD")
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    return ds


def test_foreign_header_cleaned() -> None:
    ds = _foreign_header()
    pseudonyms = Pseudonymizer("secret-one")
    result = HeaderCleaner(ProfileOptions(), pseudonyms, collect_identifiers(ds)).apply(ds)
    text = str(ds)
    for secret in ("ROE", "RICHARD", "MRN-55501", "19610412", "OLD-1", "SN-1234", "ACC-1",
                   "20240305", "ACME", "1.2.3.4"):
        assert secret not in text, secret
    assert result.private_removed == 2
    assert ds.StudyDescription == "Gastroscopy *** ***"
    assert ds.Rows == 48
    new_ref = ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert new_ref == pseudonyms.uid("1.2.3.4.5.7")  # references map like the instance UIDs
    assert ds.SOPInstanceUID == pseudonyms.uid("1.2.3.4.5.6")
    assert ds.LongitudinalTemporalInformationModified == "REMOVED"


def test_modified_dates_shift_per_patient() -> None:
    ds = _foreign_header()
    pseudonyms = Pseudonymizer("secret-one")
    options = ProfileOptions(retain_modified_dates=True)
    result = HeaderCleaner(options, pseudonyms, collect_identifiers(ds)).apply(ds)
    shift = result.dates_shifted_by_days
    assert shift is not None and -3650 <= shift <= -365
    expected = (date(2024, 3, 5).toordinal() + shift)
    assert ds.StudyDate == date.fromordinal(expected).strftime("%Y%m%d")
    assert ds.AcquisitionDateTime == ds.StudyDate + "101500"
    assert ds.LongitudinalTemporalInformationModified == "MODIFIED"
    again = _foreign_header()
    HeaderCleaner(options, pseudonyms, collect_identifiers(again)).apply(again)
    assert again.StudyDate == ds.StudyDate  # same patient, same secret: same shift
    with pytest.raises(UsageError):
        ProfileOptions(retain_modified_dates=True, retain_full_dates=True)


def test_encrypted_lookup(tmp_path: Path) -> None:
    path = tmp_path / "lookup.bin"
    write_lookup(path, Pseudonymizer("secret-one"), {"ANON^X": {"PatientID": "MRN-55501"}})
    write_lookup(path, Pseudonymizer("secret-one"), {"ANON^Y": {"PatientID": "MRN-2"}})
    assert b"MRN" not in path.read_bytes()
    table = read_lookup(path, Pseudonymizer("secret-one"))
    assert table == {"ANON^X": {"PatientID": "MRN-55501"}, "ANON^Y": {"PatientID": "MRN-2"}}
    with pytest.raises(UsageError, match="another secret"):
        read_lookup(path, Pseudonymizer("secret-two"))


def test_mask_filters_are_plain_ffmpeg() -> None:
    fill = mask_steps(MaskBox(2, 4, 10, 6, 0.0, 1.5))
    assert fill == [("drawbox", "x=2:y=4:w=10:h=6:color=black:t=fill:"
                                "enable='between(t,0.0000,1.5000)'")]
    assert [name for name, _ in mask_steps(MaskBox(0, 0, 8, 8, 0, 1, "blur"))] == [
        "crop", "gblur", "overlay"]
    assert "enable=" in mask_steps(MaskBox(0, 0, 8, 8, 0, 1, "blur"))[1][1]
    assert MaskBox(-5, 3, 20, 9, 0, 1).clipped(12, 10) == MaskBox(0, 2, 12, 8, 0, 1)


def test_temporal_smoothing_holds_and_merges() -> None:
    times = [float(t) for t in range(31)]
    banner = hold([(10, 5, 200, 20, t) for t in times], times, "fill", 0.5)
    assert len(banner) == 1  # one box for the whole clip
    assert banner[0].start_s < 0 and banner[0].end_s > 30
    walking = hold([(10 * int(t), 50, 40, 40, t) for t in times], times, "blur", 0.2)
    assert 3 <= len(walking) <= 10  # a face crossing the room: a box per stretch of time
    for t in (0.5, 7.25, 29.9):  # at every moment the face's box is covered
        x = 10 * int(t)
        assert any(m.start_s <= t <= m.end_s and m.x <= x and m.x + m.width >= x + 40
                   for m in walking), t


def test_foreign_frame_object_with_private_tags(tmp_path: Path) -> None:
    """A frame object rewritten by another tool (private creator, nested identifiers, other
    implementation) goes through the command like vid2dcm's own, audio question aside."""
    clip = make_clip(tmp_path / "clip.mp4", frames=10, with_face=False, with_audio=False)
    own = tmp_path / "own.dcm"
    convert(clip, own, metadata=Metadata(patient_name="ROE^RICHARD", patient_id="MRN-55501",
                                         manufacturer="Other Vendor"),
            options=Request(sop="sc", frames="rle"))
    ds = pydicom.dcmread(own)
    ds.add_new(0x00290010, "LO", "ACME PRIVATE")
    ds.add_new(0x00291001, "LO", "ROE RICHARD MRN-55501")
    ds.OtherPatientIDs = "MRN-OLD"
    ds.file_meta.ImplementationClassUID = "1.2.3.999"
    foreign = tmp_path / "foreign.dcm"
    ds.save_as(foreign, enforce_file_format=True)
    mask_file = tmp_path / "masks.json"
    mask_file.write_text('{"devices": [{"manufacturer": "*", "model": "*", '
                         '"boxes": [[0, 0, 1, 0.14]]}]}')
    report = deidentify([foreign], tmp_path / "out",
                        DeidSettings(secret="secret-one", mask_settings=mask_file))[0]
    out = tmp_path / "out" / report.output
    dump = subprocess.run(["dcmdump", "+L", str(out)], capture_output=True, text=True,
                          check=True).stdout
    for secret in ("ROE", "MRN-", "ACME"):
        assert secret not in dump, secret
    assert report.header.private_removed == 2
    assert report.verification.passed and report.frames_out == 10
    read_back(out, tmp_path)


def test_split_recording_parts_still_reference_each_other(tmp_path: Path) -> None:
    """convert + deidentify of a recording split into parts: the second part's reference to
    the first follows the first part's new UID; study and series stay shared."""
    clip = synthesize(tmp_path / "gop.mp4", ClipSpec(options={"preset": "superfast", "g": "5"},
                                                     frames=20))
    result, reports = convert_deidentified(
        clip, tmp_path / "out", metadata=Metadata(patient_name="ROE^RICHARD"),
        options=Request(max_item_bytes=clip.stat().st_size // 3),
        settings=DeidSettings(options=profile_named("header-only"), secret="secret-one"))
    assert len(result.files) >= 2 and len(reports) == len(result.files)
    parts = [pydicom.dcmread(tmp_path / "out" / r.output, stop_before_pixels=True)
             for r in reports]
    assert parts[1].ReferencedImageSequence[0].ReferencedSOPInstanceUID == (
        parts[0].SOPInstanceUID)
    assert parts[0].StudyInstanceUID == parts[1].StudyInstanceUID != result.study_instance_uid
    assert parts[0].SeriesInstanceUID == parts[1].SeriesInstanceUID
    assert not any(p.name.startswith(".vid2dcm") for p in (tmp_path / "out").iterdir())
    assert all(not f.path.exists() for f in result.files)  # identified copies are gone
    for r in reports:
        read_back(tmp_path / "out" / r.output, tmp_path)
    with pytest.raises(UsageError, match="unknown"):
        profile_named("nope")
