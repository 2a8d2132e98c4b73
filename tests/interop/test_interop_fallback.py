"""send's fallback representations (issue 12, item 6), without a peer: a multi-fragment
Fragmentable file becomes its non-fragmentable twin with the same SOP Instance UID (fragments
joined), and a remux into new instances says "remuxed" and names its source."""

from __future__ import annotations

from pathlib import Path

import pydicom
from pydicom.uid import MPEG4HP41

from readback import coded_pictures, read_back
from vid2dcm.delivery.fallback import reconvert, twin
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec, synthesize

NOISE = ClipSpec(options={"preset": "superfast", "profile": "high", "g": "4"}, width=64,
                 height=48, frames=12, noise=True)


def test_multi_fragment_fragmentable_twin_keeps_its_uid(tmp_path: Path) -> None:
    source = synthesize(tmp_path / "noise.mp4", NOISE)
    many = convert(source, tmp_path / "many.dcm", options=Request(
        fragmentable=True, max_item_bytes=source.stat().st_size // 3)).files[0]
    alt = twin(many.path, MPEG4HP41, tmp_path / "twin.dcm")
    assert alt is not None and "fragments joined, same SOP Instance UID" in alt.note
    (path,) = alt.paths
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.SOPInstanceUID == many.sop_instance_uid
    assert ds.file_meta.TransferSyntaxUID == MPEG4HP41
    assert "EncapsulatedPixelDataValueTotalLength" not in ds
    back = read_back(path, tmp_path)
    assert back.dcmdump.count("pi (not loaded)") + back.dcmdump.count(", 1 Item") >= 1
    assert coded_pictures(back.extracted) == coded_pictures(source)


def test_remux_into_parts_says_remuxed_and_names_its_source(tmp_path: Path) -> None:
    source = synthesize(tmp_path / "noise.mp4", NOISE)
    whole = convert(source, tmp_path / "whole.dcm").files[0]
    alt = reconvert(whole.path, tmp_path / "work", Request(
        max_item_bytes=source.stat().st_size // 2))
    assert len(alt.paths) >= 2
    assert alt.note.startswith("remuxed into") and "re-encoded" not in alt.note
    assert whole.sop_instance_uid in alt.note
    for path in alt.paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        ref = ds.SourceImageSequence[0]
        assert ref.ReferencedSOPInstanceUID == whole.sop_instance_uid
        assert ref.ReferencedSOPClassUID == whole.sop_class_uid
        assert ds.SOPInstanceUID != whole.sop_instance_uid
        read_back(path, tmp_path)
