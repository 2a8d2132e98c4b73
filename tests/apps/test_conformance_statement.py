"""docs/conformance-statement.md is generated from the registries (vid2dcm.apps.conformance):
it must equal what the code renders now, and name every syntax, SOP class and attribute."""

from __future__ import annotations

from pathlib import Path

import pydicom

from vid2dcm.apps.conformance import attributes_written, render
from vid2dcm.core.frame_syntaxes import FRAME_SYNTAXES
from vid2dcm.core.iods import VIDEO_IODS
from vid2dcm.core.metadata import METADATA_ATTRIBUTES
from vid2dcm.core.syntaxes import VIDEO_TRANSFER_SYNTAXES
from vid2dcm.pipeline import convert
from vid2dcm.producing.synth import ClipSpec, synthesize

DOC = Path(__file__).resolve().parents[2] / "docs" / "conformance-statement.md"


def test_committed_statement_is_the_generated_one() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "regenerate: .venv/bin/python -m vid2dcm.apps.conformance > "
        "docs/conformance-statement.md")


def test_statement_names_every_registry_entry() -> None:
    text = render()
    for s in VIDEO_TRANSFER_SYNTAXES:
        assert f"`{s.uid}`" in text
        if s.fragmentable_uid:
            assert f"`{s.fragmentable_uid}`" in text
    for f in FRAME_SYNTAXES.values():
        assert f"`{f.uid}`" in text
    for iod in VIDEO_IODS.values():
        assert f"`{iod.sop_class_uid}`" in text
    for m in METADATA_ATTRIBUTES:
        assert f"`{m.field}`" in text and m.keyword in text
    for heading in ("Implementation model", "AE specifications", "Association policies",
                    "Character sets", "Security", "Created IODs"):
        assert heading in text


def test_listed_attributes_cover_a_real_output(tmp_path: Path) -> None:
    """Every top-level attribute of a real converted file is in the statement's table."""
    clip = synthesize(tmp_path / "c.mp4", ClipSpec(width=64, height=48, frames=5))
    path = convert(clip, tmp_path / "c.dcm").files[0].path
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    listed = set(attributes_written(VIDEO_IODS[next(iter(VIDEO_IODS))]))
    assert {e.keyword for e in ds} - listed == set()
