"""Retain Safe Private (PS3.15 E.3.10): the pinned rows of Table E.3.10-1 are kept under their
own Private Creator only; every other private attribute goes, with the option or without."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom import Dataset
from pydicom.sequence import Sequence

from deid_fixtures import make_clip
from readback import read_back
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify import DeidSettings, ProfileOptions, deidentify
from vid2dcm.deidentify.profile import (
    HeaderCleaner,
    HeaderResult,
    collect_identifiers,
    safe_private_rows,
    safe_private_table,
)
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


# --- The whole Table E.3.10-1 (2026d) ----------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
TSV = ROOT / "src" / "vid2dcm" / "deidentify" / "data" / "safe_private.tsv"
SCRIPT = ROOT / "scripts" / "safe_private_table.py"


def _private_tags(ds: Dataset) -> set[int]:
    return {int(e.tag) for e in ds if e.tag.is_private}


def _clean(ds: Dataset, retain: bool = True) -> HeaderResult:
    return HeaderCleaner(ProfileOptions(retain_safe_private=retain), Pseudonymizer("secret-one"),
                         collect_identifiers(ds)).apply(ds)


def test_the_pinned_table_is_the_whole_2026d_table() -> None:
    """479 rows under 20 creators, and their digest is the one the generator recorded (the
    same digest PyMedPhys records for its copy of the 2026d table)."""
    table = safe_private_rows()
    assert table.edition == "2026d" and table.rows == 479
    assert len({creator for _, creator in table.creators}) == 20
    assert len(table.keys) == 479  # (group, creator, element) never repeats
    check = subprocess.run([sys.executable, str(SCRIPT), "check", str(TSV)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "7acb26dbab0e3124c02d075cbf8c5510354a20ded9f89ee4765976a905d92f63" in TSV.read_text()


def test_a_hand_edited_table_fails_its_check(tmp_path: Path) -> None:
    edited = tmp_path / "safe_private.tsv"
    edited.write_text(TSV.read_text().replace("(0019,xx23)\tGEMS_ACQU_01",
                                              "(0019,xx25)\tGEMS_ACQU_01"))
    check = subprocess.run([sys.executable, str(SCRIPT), "check", str(edited)],
                           capture_output=True, text=True, check=False)
    assert check.returncode == 1 and "!= recorded" in check.stdout


def test_the_generator_reads_the_standards_table_markup(tmp_path: Path) -> None:
    """The chtml/DocBook shape: the id on the table (or an anchor before it), a header row,
    cells wrapped in paragraphs, a cell spanning two rows; whitespace collapses, nothing
    else changes, and another table on the page is not read."""
    page = tmp_path / "sect_E.3.10.html"
    page.write_text(
        '<div class="table"><a id="table_E.3.10-1"></a><table><thead><tr><th><p>Data Element'
        '</p></th><th>Private Creator</th><th>VR</th><th>VM</th><th>Meaning</th></tr></thead>'
        '<tbody><tr><td><p>(7053,xx00)</p></td><td><p>Philips PET Private Group</p></td>'
        '<td><p>DS</p></td><td><p>1</p></td><td><p>SUV Factor -\n  Multiplying</p></td></tr>'
        '<tr><td><p>(0119,xx11)</p></td><td rowspan="2"><p>SIEMENS Ultrasound SC2000</p></td>'
        '<td></td><td><p>1</p></td><td><p>Stage Timer Time</p></td></tr>'
        '<tr><td><p>(0119,xx12)</p></td><td></td><td><p>1</p></td><td><p>Stop Watch Time'
        '</p></td></tr></tbody></table></div>'
        '<table id="other"><tr><td>(0009,xx01)</td><td>X</td><td>LO</td><td>1</td><td>no'
        '</td></tr></table>')
    out = tmp_path / "out.tsv"
    done = subprocess.run([sys.executable, str(SCRIPT), "convert", str(page), "--edition",
                           "2099a", "--source-note", "a test page", "-o", str(out)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    rows = [line.split("\t") for line in out.read_text().splitlines()
            if line and not line.startswith("#")]
    assert rows[1:] == [
        ["(7053,xx00)", "Philips PET Private Group", "DS", "1", "SUV Factor - Multiplying"],
        ["(0119,xx11)", "SIEMENS Ultrasound SC2000", "", "1", "Stage Timer Time"],
        ["(0119,xx12)", "SIEMENS Ultrasound SC2000", "", "1", "Stop Watch Time"]]
    assert subprocess.run([sys.executable, str(SCRIPT), "check", str(out)],
                          check=False).returncode == 0


def test_the_generator_reads_a_pymedphys_copy_and_checks_its_digest(tmp_path: Path) -> None:
    """The committed rows, in PyMedPhys' JSON form with the digest it records, convert back
    to the same rows; a copy whose rows do not match its recorded digest is refused."""
    lines = [line.split("\t") for line in TSV.read_text().splitlines()
             if line and not line.startswith("#")]
    rows = [dict(zip(lines[0], cells, strict=True)) for cells in lines[1:]]
    digest = "7acb26dbab0e3124c02d075cbf8c5510354a20ded9f89ee4765976a905d92f63"
    source = tmp_path / "e3_10_1.json"
    source.write_text(json.dumps({"schema": "pymedphys-deid-table/1",
                                  "table": "PS3.15 Table E.3.10-1", "edition": "2026d",
                                  "content_sha256": digest, "rows": rows}))
    out = tmp_path / "out.tsv"
    args = [sys.executable, str(SCRIPT), "convert", str(source), "--source-note", "test",
            "-o", str(out)]
    assert subprocess.run(args, check=False).returncode == 0
    assert f"# content_sha256: {digest}" in out.read_text()
    body = [line for line in out.read_text().splitlines() if not line.startswith("#")]
    assert body == [line for line in TSV.read_text().splitlines() if not line.startswith("#")]
    rows[5]["meaning"] = "Pitch (edited)"
    source.write_text(json.dumps({"table": "PS3.15 Table E.3.10-1", "edition": "2026d",
                                  "content_sha256": digest, "rows": rows}))
    refused = subprocess.run(args, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "do not match" in refused.stderr


# (group, creator, element, VR used here, block): the table's first row, its last row, rows
# written with lower- and upper-case hex, a row whose VR the table leaves empty, one element
# listed under two creators; blocks anywhere from 0x10 to 0xFF ("xx" is any block).
ROWS = [
    pytest.param(0x7053, "Philips PET Private Group", 0x00, "DS", 0x10, id="first-row"),
    pytest.param(0x7FD1, "SIEMENS SYNGO ULTRA-SOUND TOYON DATA STREAMING", 0x11, "OB", 0x10,
                 id="last-row"),
    pytest.param(0x2001, "Philips Imaging DD 001", 0x0A, "IS", 0x42, id="lower-hex-xx0a"),
    pytest.param(0x0019, "GEMS_ACQU_01", 0x9E, "LO", 0xFF, id="upper-hex-xx9E"),
    pytest.param(0x0129, "SIEMENS Ultrasound SC2000", 0x03, "UN", 0x20, id="vr-left-empty"),
    pytest.param(0x7FD1, "SIEMENS Ultrasound SC2000", 0x01, "OB", 0x11, id="two-creators"),
    pytest.param(0x0299, "NQRight", 0x16, "FL", 0x10, id="nqright-xx16"),
]

VALUES: dict[str, object] = {"DS": "1.5", "OB": b"\x00\x01", "IS": "3", "LO": "FSE",
                             "UN": b"\x00\x00\x80\x3f", "FL": 2.5}


def _one_block(group: int, creator: str, element: int, vr: str, block: int) -> Dataset:
    ds = _header()
    for tag in _private_tags(ds):
        del ds[tag]
    ds.add_new((group << 16) | block, "LO", creator)
    ds.add_new((group << 16) | (block << 8) | element, vr, VALUES[vr])
    # the next element of the same block is not listed for any creator that lists this one
    ds.add_new((group << 16) | (block << 8) | 0xFE, "LO", "ROE RICHARD")
    return ds


@pytest.mark.parametrize(("group", "creator", "element", "vr", "block"), ROWS)
def test_table_rows_kept_under_their_creator(group: int, creator: str, element: int, vr: str,
                                             block: int) -> None:
    assert (group, creator, element) in safe_private_table()
    assert (group, creator, 0xFE) not in safe_private_table()
    ds = _one_block(group, creator, element, vr, block)
    result = _clean(ds)
    assert ds[(group << 16) | block].value == creator
    assert ds[(group << 16) | (block << 8) | element].value == VALUES[vr]
    assert (group << 16) | (block << 8) | 0xFE not in ds
    assert result.private_kept == 1 and result.private_removed == 1


@pytest.mark.parametrize(("group", "creator", "element", "vr", "block"), ROWS)
@pytest.mark.parametrize("wrong", ["case", "another"])
def test_table_rows_removed_under_another_creator(group: int, creator: str, element: int,
                                                  vr: str, block: int, wrong: str) -> None:
    """The match is exact: the same element under a creator that differs only in case, or
    under another vendor's creator, may hold anything and goes."""
    other = creator.lower() if wrong == "case" else "ACME PRIVATE"
    ds = _one_block(group, other, element, vr, block)
    result = _clean(ds)
    assert not _private_tags(ds)
    assert result.private_kept == 0 and result.private_removed == 3


@pytest.mark.parametrize(("vr", "value", "kept"), [
    ("OB", b"\x00\x01", True), ("OW", b"\x00\x01", True), ("UN", b"\x00\x01", True),
    ("LO", "ROE RICHARD", False)])
def test_the_vr_column_is_honoured(vr: str, value: object, kept: bool) -> None:
    """Frame Pixel Data (2001,xx7d) is OW/OB in the table: either is kept, UN (an implicit
    VR read) too; an LO of that number is something else and goes."""
    ds = _header()
    for tag in _private_tags(ds):
        del ds[tag]
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x2001107D, vr, value)
    _clean(ds)
    assert (0x2001107D in ds) is kept and (0x20010010 in ds) is kept


# --- Self-described blocks (0008,0300) ---------------------------------------------------------

def _declare(group: int, creator: str, status: str | None,
             nonidentifying: list[int] | None = None, identifying: list[int] | None = None
             ) -> Dataset:
    item = Dataset()
    item.add_new(0x00080301, "US", group)
    item.add_new(0x00080302, "LO", creator)
    if status is not None:
        item.add_new(0x00080303, "CS", status)
    if nonidentifying is not None:
        item.add_new(0x00080304, "US", nonidentifying)
    if identifying is not None:
        action = Dataset()
        action.add_new(0x00080306, "US", identifying)
        action.add_new(0x00080307, "CS", "X")
        item.add_new(0x00080305, "SQ", Sequence([action]))
    return item


def _with_declared_blocks(ds: Dataset) -> Dataset:
    """SAFE, MIXED, UNSAFE and unmarked blocks of creators the table does not know, and a
    table-listed block (SC2000 Acoustic Data Offset) whose creator declares it UNSAFE."""
    ds.add_new(0x00090010, "LO", "ACME SAFE")
    ds.add_new(0x00091001, "LO", "FIRMWARE 7.1")
    ds.add_new(0x00091002, "US", 12)
    ds.add_new(0x00110010, "LO", "ACME MIXED")
    ds.add_new(0x00111001, "LO", "PROBE C5-1")
    ds.add_new(0x00111002, "LO", "ROE RICHARD MRN-55501")
    ds.add_new(0x00111003, "US", 7)
    ds.add_new(0x00130010, "LO", "ACME UNMARKED")
    ds.add_new(0x00131001, "LO", "GAIN 40")
    ds.add_new(0x00150010, "LO", "ACME UNSAFE")
    ds.add_new(0x00151001, "LO", "OPERATOR ROE")
    ds.add_new(0x01190010, "LO", SC2000)
    ds.add_new(0x01191005, "UL", 4096)
    ds.add_new(0x00080300, "SQ", Sequence([
        _declare(0x0009, "ACME SAFE", "SAFE"),
        _declare(0x0011, "ACME MIXED", "MIXED", [0x01, 0x03], identifying=[0x02]),
        _declare(0x0015, "ACME UNSAFE", "UNSAFE"),
        _declare(0x0119, SC2000, "UNSAFE"),
    ]))
    return ds


def _declared_header() -> Dataset:
    ds = _header()
    for tag in _private_tags(ds):
        del ds[tag]
    return _with_declared_blocks(ds)


def test_self_described_blocks_safe_kept_mixed_in_part_others_removed() -> None:
    ds = _declared_header()
    result = _clean(ds)
    kept = _private_tags(ds)
    assert kept == {0x00090010, 0x00091001, 0x00091002,  # SAFE: the whole block
                    0x00110010, 0x00111001, 0x00111003}  # MIXED: the listed elements only
    assert result.private_kept == 4 and result.private_removed == 7
    assert "ROE" not in str(ds) and "55501" not in str(ds)
    # the declaration beats the table: SC2000 says its block is UNSAFE, so (0119,xx05) goes
    assert 0x01191005 not in ds
    items = ds[0x00080300].value
    assert [(i[0x00080301].value, i[0x00080302].value, i[0x00080303].value) for i in items] == [
        (0x0009, "ACME SAFE", "SAFE"), (0x0011, "ACME MIXED", "MIXED")]
    assert list(items[1][0x00080304].value) == [0x01, 0x03]
    assert 0x00080305 not in items[1]  # the identifying elements it named are gone


def test_declared_blocks_without_the_option_all_go_with_the_sequence() -> None:
    ds = _declared_header()
    result = _clean(ds, retain=False)
    assert not _private_tags(ds)
    assert 0x00080300 not in ds
    assert result.private_kept == 0 and result.private_removed == 13


def test_a_declaration_must_name_the_exact_creator() -> None:
    """SAFE declared for "ACME SAFE" says nothing about a block reserved by "ACME SAFE 2"."""
    ds = _header()
    for tag in _private_tags(ds):
        del ds[tag]
    ds.add_new(0x00090010, "LO", "ACME SAFE 2")
    ds.add_new(0x00091001, "LO", "ROE RICHARD")
    ds.add_new(0x00080300, "SQ", Sequence([_declare(0x0009, "ACME SAFE", "SAFE")]))
    _clean(ds)
    assert not _private_tags(ds) and 0x00080300 not in ds


@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")
def test_odd_declarations_keep_nothing_they_do_not_clearly_say() -> None:
    """A MIXED list of one element keeps that element; an item whose Private Group Reference
    holds two values names no block (its block falls back to the table, which does not know
    it) and is dropped; "safe" in lower case is not the Enumerated Value SAFE."""
    ds = _header()
    for tag in _private_tags(ds):
        del ds[tag]
    ds.add_new(0x00090010, "LO", "ACME MIXED")
    ds.add_new(0x00091001, "LO", "PROBE C5-1")
    ds.add_new(0x00091002, "LO", "ROE RICHARD")
    ds.add_new(0x00110010, "LO", "ACME TWO GROUPS")
    ds.add_new(0x00111001, "LO", "ROE RICHARD")
    ds.add_new(0x00130010, "LO", "ACME LOWER")
    ds.add_new(0x00131001, "LO", "GAIN 40")
    two = _declare(0x0011, "ACME TWO GROUPS", "SAFE")
    two[0x00080301].value = [0x0011, 0x0013]
    ds.add_new(0x00080300, "SQ", Sequence([_declare(0x0009, "ACME MIXED", "MIXED", [0x01]),
                                           two, _declare(0x0013, "ACME LOWER", "safe")]))
    _clean(ds)
    assert _private_tags(ds) == {0x00090010, 0x00091001}
    assert [i[0x00080302].value for i in ds[0x00080300].value] == ["ACME MIXED"]


def test_declared_and_table_blocks_through_the_command(tmp_path: Path) -> None:
    """A whole object with a table-listed Philips block, a SAFE, a MIXED, an UNSAFE and an
    unmarked block: dcmdump shows exactly what the rules keep, the sequence describes only
    the blocks left, and the object passes the read-back battery (dciodvfy included)."""
    clip = make_clip(tmp_path / "clip.mp4", frames=10, with_face=False, with_audio=False)
    source = tmp_path / "in.dcm"
    convert(clip, source, metadata=Metadata(patient_name="ROE^RICHARD",
                                            patient_id="MRN-55501"))
    ds = _with_declared_blocks(pydicom.dcmread(source))
    ds.add_new(0x20010010, "LO", "Philips Imaging DD 001")
    ds.add_new(0x2001100A, "IS", "3")            # Image Plane Number: listed
    ds.add_new(0x200110FE, "LO", "ROE RICHARD")  # not listed
    ds.save_as(source, enforce_file_format=True)
    report = deidentify([source], tmp_path / "out", DeidSettings(
        options=ProfileOptions(clean_pixel_data=False, retain_safe_private=True),
        secret="secret-one"))[0]
    out = tmp_path / "out" / report.output
    dump = subprocess.run(["dcmdump", "+L", str(out)], capture_output=True, text=True,
                          check=True).stdout
    for present in ("(0009,1001) LO [FIRMWARE 7.1]", "(0011,1001) LO [PROBE C5-1]",
                    "(0011,1003) US 7", "(2001,100a) IS [3]", "[ACME SAFE]", "[ACME MIXED]",
                    "[Philips Imaging DD 001]", "(0008,0300) SQ"):
        assert present in dump, present
    for gone in ("ROE", "55501", "ACME UNMARKED", "ACME UNSAFE", SC2000, "(0011,1002)",
                 "(0119,", "(0013,", "(0015,", "(0008,0305)"):
        assert gone not in dump, gone
    assert report.header.private_kept == 5
    read_back(out, tmp_path)
