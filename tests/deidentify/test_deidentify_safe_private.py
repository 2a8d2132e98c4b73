"""Retain Safe Private (PS3.15 E.3.10): the pinned rows of Table E.3.10-1 are kept under their
own Private Creator only; every other private attribute goes, with the option or without."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pydicom
from pydicom import Dataset

from deid_fixtures import make_clip
from readback import read_back
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify import DeidSettings, ProfileOptions, deidentify
from vid2dcm.deidentify.profile import HeaderCleaner, collect_identifiers, safe_private_table
from vid2dcm.deidentify.pseudonyms import Pseudonymizer
from vid2dcm.pipeline import convert

SC2000 = "SIEMENS Ultrasound SC2000"


def _with_private(ds: Dataset) -> Dataset:
    """Acoustic Data Offset (0119,xx05) is listed for SC2000; (0119,xx20) is not; the same
    element number under another creator (block 11) is not safe either."""
    ds.add_new(0x01190010, "LO", SC2000)
    ds.add_new(0x01191005, "UL", 4096)
    ds.add_new(0x01191020, "LO", "ROE RICHARD MRN-55501")
    ds.add_new(0x01190011, "LO", "ACME PRIVATE")
    ds.add_new(0x01191105, "UL", 55501)
    ds.add_new(0x00290010, "LO", "ACME PRIVATE")  # a creator with nothing listed at all
    ds.add_new(0x00291001, "LO", "ROE RICHARD")
    return ds


def _header() -> Dataset:
    ds = Dataset()
    ds.PatientName = "ROE^RICHARD"
    ds.PatientID = "MRN-55501"
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.file_meta = pydicom.dataset.FileMetaDataset()
    return _with_private(ds)


def test_table_rows_are_private_and_keyed_by_creator() -> None:
    table = safe_private_table()
    assert (0x0119, SC2000, 0x05) in table
    assert (0x7053, "Philips PET Private Group", 0x00) in table
    assert all(group % 2 == 1 for group, _, _ in table)


def test_safe_private_kept_under_its_creator_only() -> None:
    ds = _header()
    result = HeaderCleaner(ProfileOptions(retain_safe_private=True), Pseudonymizer("secret-one"),
                           collect_identifiers(ds)).apply(ds)
    assert ds[0x01190010].value == SC2000
    assert ds[0x01191005].value == 4096
    for gone in (0x01191020, 0x01190011, 0x01191105, 0x00290010, 0x00291001):
        assert gone not in ds, hex(gone)
    assert result.private_kept == 1
    assert "ROE" not in str(ds) and "55501" not in str(ds)
    assert "Retain Safe Private Option" in ds.DeidentificationMethod


def test_without_the_option_every_private_attribute_goes() -> None:
    ds = _header()
    result = HeaderCleaner(ProfileOptions(), Pseudonymizer("secret-one"),
                           collect_identifiers(ds)).apply(ds)
    assert not any(pydicom.tag.Tag(e.tag).is_private for e in ds)
    assert result.private_removed == 7 and result.private_kept == 0


def test_safe_private_through_the_command(tmp_path: Path) -> None:
    """A whole object: dcmdump shows the listed element kept with its creator, the unlisted
    one gone; dciodvfy and the decoder are happy with the result."""
    clip = make_clip(tmp_path / "clip.mp4", frames=10, with_face=False, with_audio=False)
    source = tmp_path / "in.dcm"
    convert(clip, source, metadata=Metadata(patient_name="ROE^RICHARD",
                                            patient_id="MRN-55501"))
    ds = _with_private(pydicom.dcmread(source))
    ds.save_as(source, enforce_file_format=True)
    report = deidentify([source], tmp_path / "out", DeidSettings(
        options=ProfileOptions(clean_pixel_data=False, retain_safe_private=True),
        secret="secret-one"))[0]
    out = tmp_path / "out" / report.output
    dump = subprocess.run(["dcmdump", "+L", str(out)], capture_output=True, text=True,
                          check=True).stdout
    assert SC2000 in dump and "(0119,1005) UL 4096" in dump
    for secret in ("ROE", "55501", "ACME", "(0119,1020)", "(0029,"):
        assert secret not in dump, secret
    assert report.header.private_kept == 1 and report.header.private_removed == 5
    read_back(out, tmp_path)
