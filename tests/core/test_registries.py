"""The one-place registries: transfer syntaxes (core.syntaxes) and the Metadata <-> attribute
table (core.metadata). Each test would fail if a new entry or field were added in one place
and forgotten in another."""

from __future__ import annotations

from datetime import date, datetime, time
from fractions import Fraction
from pathlib import Path

from pydicom import dcmread
from pydicom import uid as pu

from readback import read_back
from vid2dcm.core import syntaxes as ts
from vid2dcm.core.metadata import (
    METADATA_ATTRIBUTES,
    NOT_IN_HEADER,
    CodedConcept,
    Metadata,
    metadata_fields_from,
)
from vid2dcm.delivery.fallback import metadata_from
from vid2dcm.delivery.negotiation import VIDEO_TARGETS
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec, synthesize


def test_every_syntax_entry_matches_pydicom() -> None:
    for s in ts.VIDEO_TRANSFER_SYNTAXES:
        assert pu.UID(s.uid).is_transfer_syntax and pu.UID(s.uid).is_compressed
        assert ts.uid_name(s.uid) == s.name
        assert ts.by_uid(s.uid) is s
        if s.fragmentable_uid:
            assert ts.by_uid(s.fragmentable_uid) is s
            assert ts.uid_name(s.fragmentable_uid) == s.fragmentable_name
            assert pu.UID(s.fragmentable_uid).name.startswith("Fragmentable")
            assert ts.allows_multiple_fragments(s.fragmentable_uid)
        assert s.lossy_method.startswith("ISO_")
        assert s.containers


def test_encoder_targets_come_from_the_registry() -> None:
    assert tuple(str(s.uid) for s in ts.VIDEO_TRANSFER_SYNTAXES if s.encoder) == VIDEO_TARGETS
    assert VIDEO_TARGETS == (pu.MPEG4HP41, pu.MPEG4HP422D, pu.HEVCMP51)


def test_every_metadata_field_has_one_attribute() -> None:
    mapped = [m.field for m in METADATA_ATTRIBUTES]
    assert len(mapped) == len(set(mapped)), "a field mapped twice"
    assert set(mapped) | NOT_IN_HEADER == set(Metadata.model_fields)
    keywords = [m.keyword for m in METADATA_ATTRIBUTES]
    assert len(keywords) == len(set(keywords))


FULL = Metadata(
    patient_name="Doe^Jane", patient_id="PID-1", patient_birth_date=date(1970, 1, 31),
    patient_sex="F", accession_number="ACC1", study_instance_uid="1.2.3.4",
    study_id="S1", study_description="Colonoscopy", study_date=date(2026, 1, 2),
    study_time=time(10, 11, 12), referring_physician_name="Who^Doctor",
    series_instance_uid="1.2.3.4.5", series_number=7, series_description="Scope",
    anatomic_region=CodedConcept(value="71854001", scheme="SCT", meaning="Colon"),
    image_laterality="U", manufacturer="Acme", manufacturer_model_name="Scope 9",
    institution_name="General", station_name="OR3-SCOPE", operators_name="Nurse^A",
    acquisition_datetime=datetime(2026, 1, 2, 10, 11, 12, 500000), burned_in_annotation="NO",
    requested_procedure_id="RP1", requested_procedure_description="Colonoscopy RP",
    scheduled_procedure_step_id="SPS1", scheduled_procedure_step_description="Step",
)


def test_every_field_survives_write_and_read_back(tmp_path: Path) -> None:
    """Writer and delivery fallback both go through the table: what one writes the other reads."""
    clip = synthesize(tmp_path / "c.mp4", ClipSpec(frames=5, width=64, height=48,
                                                   rate=Fraction(25)))
    out = tmp_path / "c.dcm"
    convert(clip, out, metadata=FULL, options=Request(sop="endoscopic"))
    read_back(out, tmp_path)
    ds = dcmread(out, stop_before_pixels=True)
    read = metadata_fields_from(ds)
    for m in METADATA_ATTRIBUTES:
        assert read.get(m.field) == getattr(FULL, m.field), m.field
    assert metadata_from(ds) == FULL


def test_an_order_without_a_step_id_writes_no_empty_type_1c(tmp_path: Path) -> None:
    """HL7 orders often carry a requested procedure but no scheduled step: the Request
    Attributes item must then leave Scheduled Procedure Step ID out (dciodvfy: 1C empty)."""
    clip = synthesize(tmp_path / "c.mp4", ClipSpec(frames=5, width=64, height=48,
                                                   rate=Fraction(25)))
    for fields in ({"requested_procedure_id": "RP9"}, {"scheduled_procedure_step_id": "S9"}):
        out = tmp_path / f"{next(iter(fields))}.dcm"
        convert(clip, out, metadata=Metadata(patient_id="P", patient_name="A^B", **fields),
                options=Request())
        read_back(out, tmp_path)
        item = dcmread(out, stop_before_pixels=True).RequestAttributesSequence[0]
        assert set(fields) == {m.field for m in METADATA_ATTRIBUTES
                               if m.keyword in item and m.place.value == "request"}
