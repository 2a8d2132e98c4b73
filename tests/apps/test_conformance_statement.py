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


def test_statement_names_the_order_and_result_services() -> None:
    """Issue 15: MPPS, Storage Commitment (listener settings), KOS, HL7 v2 and FHIR sections
    come from the tables the code uses."""
    from pynetdicom.sop_class import (  # type: ignore[attr-defined]
        KeyObjectSelectionDocumentStorage,
        ModalityPerformedProcedureStep,
    )

    from vid2dcm.apps.conformance import COMMITMENT_SETTINGS, mpps_attributes
    from vid2dcm.delivery.destinations import Destination
    from vid2dcm.orders.hl7_mapping import HL7_FIELDS
    from vid2dcm.orders.inbox import SUPPORTED, AckCode
    from vid2dcm.orders.results import RESULT_MESSAGES

    text = render()
    assert f"`{ModalityPerformedProcedureStep}`" in text
    assert f"`{KeyObjectSelectionDocumentStorage}`" in text
    assert set(COMMITMENT_SETTINGS) <= set(Destination.model_fields)
    for name in COMMITMENT_SETTINGS:
        assert f"| `{name}` |" in text
    create, final = mpps_attributes()
    assert "PerformedProcedureStepStatus" in create and "ScheduledStepAttributesSequence" in \
        " ".join(create)
    assert any(k.startswith("PerformedSeriesSequence [") for k in final)
    for kind, event in SUPPORTED:
        assert f"{kind}^{event}" in text
    for code in AckCode:
        assert f"| {code.value} |" in text
    for name, form in RESULT_MESSAGES.items():
        assert f"| `{name}` | {form.message_type} | {form.version} |" in text
    for row in HL7_FIELDS:
        assert f"| {row.field} | `{row.target}` |" in text
    for heading in ("Storage Commitment SCU", "Modality Performed Procedure Step SCU",
                    "HL7 v2 orders in", "HL7 v2 results out", "FHIR (R4"):
        assert heading in text
