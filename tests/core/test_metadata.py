"""Metadata file + command-line overrides, and the DS helpers of the writer."""

from __future__ import annotations

import json
from datetime import date, datetime, time
from fractions import Fraction
from pathlib import Path

import pytest
from pydantic import ValidationError

from vid2dcm.core.errors import UsageError
from vid2dcm.core.media_info import FrameTiming
from vid2dcm.core.metadata import BODY_STRUCTURE, CodedConcept, Metadata, load_metadata
from vid2dcm.probing.timing import FrameTimingCounter
from vid2dcm.writing.writer import MAX_DS_VALUE_BYTES, format_ds, frame_time_vector

SECRET = "Doe^Jane-7731-SECRET"


def write_json(tmp_path: Path, content: object, name: str = "meta.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def usage_error(path: Path | None, **overrides: object) -> UsageError:
    with pytest.raises(UsageError) as info:
        load_metadata(path, **overrides)
    assert info.value.exit_code == 2
    return info.value


# --- load_metadata --------------------------------------------------------------------------

def test_defaults_without_a_file() -> None:
    m = load_metadata(None)
    assert m == Metadata()
    assert m.anatomic_region == BODY_STRUCTURE
    assert (m.anatomic_region.value, m.anatomic_region.scheme) == ("123037004", "SCT")
    assert m.anatomic_region.meaning == "Body structure"
    assert m.image_laterality == "U"
    assert m.series_number == 1
    assert m.patient_name == "" and m.patient_id == ""
    assert m.patient_sex is None
    assert m.study_instance_uid is None and m.series_instance_uid is None


def test_json_file_fields(tmp_path: Path) -> None:
    path = write_json(tmp_path, {
        "patient_name": "Doe^John",
        "patient_id": "  P-001  ",
        "patient_birth_date": "1970-01-02",
        "patient_sex": "M",
        "accession_number": "ACC123",
        "study_instance_uid": "1.2.826.0.1.3680043.8.498.1",
        "series_instance_uid": "2.25.12345",
        "series_number": 7,
        "study_date": "2024-05-06",
        "study_time": "12:34:56",
        "anatomic_region": {"value": "69536005", "scheme": "SCT", "meaning": "Head"},
        "image_laterality": "L",
        "acquisition_datetime": "2024-05-06T12:34:56",
        "burned_in_annotation": "NO",
        "uid_root": "1.2.826.0.1.3680043.8.498.",
    })
    m = load_metadata(path)
    assert m.patient_name == "Doe^John"
    assert m.patient_id == "P-001", "surrounding whitespace is stripped"
    assert m.patient_birth_date == date(1970, 1, 2)
    assert m.patient_sex == "M"
    assert m.accession_number == "ACC123"
    assert m.study_instance_uid == "1.2.826.0.1.3680043.8.498.1"
    assert m.series_instance_uid == "2.25.12345"
    assert m.series_number == 7
    assert m.study_date == date(2024, 5, 6)
    assert m.study_time == time(12, 34, 56)
    assert m.anatomic_region == CodedConcept(value="69536005", scheme="SCT", meaning="Head")
    assert m.image_laterality == "L"
    assert m.acquisition_datetime == datetime(2024, 5, 6, 12, 34, 56)
    assert m.burned_in_annotation == "NO"
    assert m.uid_root == "1.2.826.0.1.3680043.8.498."


def test_cli_overrides_win_and_none_is_no_override(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"patient_id": "FROM-FILE", "patient_name": "File^Name",
                                 "accession_number": "A1"})
    m = load_metadata(path, patient_id="FROM-CLI", patient_name=None, study_instance_uid=None)
    assert m.patient_id == "FROM-CLI"
    assert m.patient_name == "File^Name"
    assert m.accession_number == "A1"
    assert m.study_instance_uid is None


def test_overrides_alone() -> None:
    m = load_metadata(None, patient_name="Solo^Han", uid_root="1.2.3")
    assert m.patient_name == "Solo^Han"
    assert m.uid_root == "1.2.3"


def test_overrides_are_validated_too(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"study_instance_uid": "1.2.3"})
    error = usage_error(path, study_instance_uid="1.2.x")
    assert "study_instance_uid" in str(error)


def test_unknown_key_names_the_key_but_not_the_value(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"patient_name": "A^B", "patinet_id": SECRET})
    error = usage_error(path)
    assert "patinet_id" in str(error)
    assert SECRET not in str(error)
    assert all(SECRET not in str(arg) for arg in error.args)


def test_unknown_nested_key_names_its_path(tmp_path: Path) -> None:
    path = write_json(tmp_path, {"anatomic_region": {"value": "1", "meaning": "x",
                                                     "colour": SECRET}})
    error = usage_error(path)
    assert "anatomic_region.colour" in str(error)
    assert SECRET not in str(error)


def test_unknown_override_is_refused() -> None:
    error = usage_error(None, patient_weight=SECRET)
    assert "patient_weight" in str(error)
    assert SECRET not in str(error)


@pytest.mark.parametrize("field", ["study_instance_uid", "series_instance_uid", "uid_root"])
@pytest.mark.parametrize("uid", ["1.2.abc", "1.02.3", "1..2", ".1.2", "1.2-3", "",
                                 "1." + "2" * 63])
def test_invalid_uid(tmp_path: Path, field: str, uid: str) -> None:
    error = usage_error(write_json(tmp_path, {field: uid}))
    assert field in str(error)
    # uid_root is also limited to 40 characters, which pydantic reports by itself
    assert "UID" in str(error) or (field == "uid_root" and "at most 40" in str(error))


@pytest.mark.parametrize("uid", ["1.2.840.10008.5.1.4.1.1.77.1.4.1", "2.25.0", "0.1",
                                 "1." + "2" * 62])
def test_valid_uid(uid: str) -> None:
    assert load_metadata(None, study_instance_uid=uid).study_instance_uid == uid
    assert load_metadata(None, series_instance_uid=uid).series_instance_uid == uid


def test_uid_root_may_end_with_a_dot() -> None:
    assert load_metadata(None, uid_root="1.2.3.").uid_root == "1.2.3."


@pytest.mark.parametrize("field", ["study_instance_uid", "series_instance_uid"])
def test_instance_uids_may_not_end_with_a_dot(field: str) -> None:
    error = usage_error(None, **{field: "1.2.3."})
    assert field in str(error)


@pytest.mark.parametrize("sex", ["X", "male", "m ", "U"])
def test_invalid_sex(sex: str) -> None:
    error = usage_error(None, patient_sex=sex)
    assert "patient_sex" in str(error)


@pytest.mark.parametrize("sex", ["M", "F", "O"])
def test_valid_sex(sex: str) -> None:
    assert load_metadata(None, patient_sex=sex).patient_sex == sex


def test_invalid_values_are_not_echoed(tmp_path: Path) -> None:
    for content in ({"patient_sex": SECRET}, {"patient_birth_date": SECRET},
                    {"patient_id": SECRET + "\\x"}, {"image_laterality": SECRET}):
        error = usage_error(write_json(tmp_path, content))
        assert next(iter(content)) in str(error)
        assert SECRET not in str(error)


@pytest.mark.parametrize(("content", "field"), [
    ({"patient_id": "a\\b"}, "patient_id"),
    ({"accession_number": "x" * 17}, "accession_number"),
    ({"series_number": -1}, "series_number"),
    ({"image_laterality": "X"}, "image_laterality"),
    ({"burned_in_annotation": "MAYBE"}, "burned_in_annotation"),
    ({"anatomic_region": {"value": "", "meaning": "x"}}, "anatomic_region.value"),
    ({"patient_birth_date": "1970-13-01"}, "patient_birth_date"),
])
def test_other_invalid_fields(tmp_path: Path, content: dict[str, object], field: str) -> None:
    assert field in str(usage_error(write_json(tmp_path, content)))


@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "42", "null", "true"])
def test_non_object_json(tmp_path: Path, content: str) -> None:
    path = tmp_path / "meta.json"
    path.write_text(content, encoding="utf-8")
    error = usage_error(path)
    assert "JSON object" in str(error)


@pytest.mark.parametrize("content", ["{", "{'a': 1}", "", "patient_id: 1"])
def test_invalid_json(tmp_path: Path, content: str) -> None:
    path = tmp_path / "meta.json"
    path.write_text(content, encoding="utf-8")
    error = usage_error(path)
    assert "not valid JSON" in str(error)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.json"
    error = usage_error(path)
    assert "does not exist" in str(error)
    assert str(path) in str(error)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    usage_error(tmp_path)


def test_metadata_is_frozen() -> None:
    m = load_metadata(None)
    with pytest.raises(ValidationError):
        m.patient_id = "changed"


# --- writer.format_ds -----------------------------------------------------------------------

@pytest.mark.parametrize(("value", "text"), [
    (40.0, "40"),
    (40.00001, "40"),
    (33.36666666, "33.3667"),
    (1001 / 30, "33.3667"),
    (16.666666, "16.6667"),
    (20.0, "20"),
    (0.0, "0"),
    (0.00001, "0"),
    (0.5, "0.5"),
    (100.0, "100"),
    (120.25, "120.25"),
    (3600.1, "3600.1"),
    (-1.5, "-1.5"),
    (123456789.125, "123456789.125"),
])
def test_format_ds(value: float, text: str) -> None:
    assert format_ds(value) == text


@pytest.mark.parametrize("value", [0.1, 1 / 3, 2 / 3, 1e6 / 7, 86400.0 * 365, 99999999999.99999,
                                   12345678901.2345, 1e-9, 33.3, 1234567.00004])
def test_format_ds_shape(value: float) -> None:
    text = format_ds(value)
    assert 0 < len(text) <= 16
    assert set(text) <= set("0123456789.-")
    if "." in text:
        assert not text.endswith("0") and not text.endswith(".")
    assert float(text) == pytest.approx(value, abs=1e-3)


def test_format_ds_never_changes_the_magnitude() -> None:
    text = format_ds(1e16)
    assert len(text) <= 16
    assert float(text) == pytest.approx(1e16, rel=1e-6)


# --- writer.frame_time_vector ---------------------------------------------------------------

def make_timing(deltas: tuple[float, ...] | None, *, variable: bool = True) -> FrameTiming:
    frames = len(deltas) + 1 if deltas is not None else 10
    return FrameTiming(frame_count=frames, rate=Fraction(30), duration_s=frames / 30,
                       variable=variable, frame_time_ms=1000 / 30, frame_deltas_ms=deltas,
                       count_source="test")


def test_no_vector_for_a_constant_rate() -> None:
    assert frame_time_vector(make_timing(None, variable=False)) is None
    assert frame_time_vector(make_timing((33.3,) * 9, variable=False)) is None


def test_no_vector_when_the_deltas_were_not_kept() -> None:
    assert frame_time_vector(make_timing(None, variable=True)) is None


def test_vector_values() -> None:
    vector = frame_time_vector(make_timing((33.0, 50.0, 16.6666666, 40.25)))
    assert vector == ["0", "33", "50", "16.6667", "40.25"]


def test_vector_from_a_counted_vfr_stream() -> None:
    counter = FrameTimingCounter(Fraction(1, 1000), Fraction(30))
    pts = 0
    for i in range(100):
        counter.add(pts, 0)
        pts += (33, 50, 17)[i % 3]
    timing = counter.result()
    vector = frame_time_vector(timing)
    assert vector is not None
    assert len(vector) == timing.frame_count == 100
    assert vector[0] == "0"
    assert vector[1:4] == ["33", "50", "17"]
    assert all(len(v) <= 16 for v in vector)


def test_vector_size_limit_boundary() -> None:
    # "0" plus values joined by backslashes: 1 + sum(len(value) + 1)
    fits = (5.0,) * 32765 + (10.0,)
    assert MAX_DS_VALUE_BYTES == 1 + 32765 * 2 + 3
    vector = frame_time_vector(make_timing(fits))
    assert vector is not None
    assert len("\\".join(vector)) == MAX_DS_VALUE_BYTES
    assert len(vector) == len(fits) + 1
    too_long = (5.0,) * 32765 + (100.0,)
    assert frame_time_vector(make_timing(too_long)) is None


def test_vector_none_for_a_long_recording() -> None:
    assert frame_time_vector(make_timing((1234.5678,) * 7000)) is None


@pytest.mark.parametrize(("vr", "value", "expected"), [
    ("IS", "12", 12), ("IS", " 7 ", 7), ("IS", "1.5", None), ("IS", "x", None), ("IS", "", None),
    ("DA", "20240131", date(2024, 1, 31)), ("DA", "2024-01-31x", None),
    ("TM", "101112.123", time(10, 11, 12)), ("TM", "1011", time(10, 11)), ("TM", "99", None),
    ("LO", "ABC", "ABC"), ("PN", None, None),
])
def test_from_dicom_reads_each_vr_and_gives_none_for_malformed(vr: str, value: object,
                                                                 expected: object) -> None:
    """A malformed value read from a foreign instance or worklist answer is left out, never a
    crash (the docstring's contract; IS used to raise)."""
    from vid2dcm.core.metadata import from_dicom

    assert from_dicom(vr, value) == expected
