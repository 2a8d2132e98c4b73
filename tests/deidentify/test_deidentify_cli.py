"""The deidentify command function, mounted on a tiny Typer app as the CLI will mount it."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import av
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from deid_fixtures import make_clip
from readback import read_back
from vid2dcm.apps.deidentify_command import deidentify
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify.pseudonyms import Pseudonymizer, read_lookup
from vid2dcm.pipeline import convert
from vid2dcm.reading.reader import extract_bitstream

app = typer.Typer(add_completion=False)
app.command()(deidentify)
app.command("noop")(lambda: None)  # two commands: the name is given, as in the real CLI


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("cli")
    clip = make_clip(work / "clip.mp4", frames=10, with_face=False)
    out = work / "in.dcm"
    convert(clip, out, metadata=Metadata(patient_name="DOE^JANE", patient_id="PID-4711",
                                         patient_birth_date=date(1970, 1, 31)))
    return out


def test_not_dicom_is_one_line_and_exit_3(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.dcm"
    bogus.write_bytes(b"not a dicom file at all")
    result = CliRunner().invoke(app, ["deidentify", str(bogus), "-o", str(tmp_path / "out")])
    assert result.exit_code == 3
    assert result.output.count("\n") == 1 and result.output.startswith("vid2dcm: error: ")
    assert "Traceback" not in result.output
    assert not (tmp_path / "out").exists()  # no output folder left behind on failure
    assert bogus.read_bytes() == b"not a dicom file at all"


def test_bad_mask_is_a_usage_error(source: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["deidentify", str(source), "-o", str(tmp_path),
                                      "--mask", "1,2,3"])
    assert result.exit_code == 2 and "X,Y,W,H" in result.output


def test_keep_audio_header_only_with_secret_file(source: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("site-secret-for-cli\n")
    args = ["deidentify", str(source), "-o", str(tmp_path / "out"), "--secret-file",
            str(secret), "--keep-audio", "--no-clean-pixel-data", "--json", "--lookup",
            str(tmp_path / "lookup.bin")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])  # one DeidentifyReport per input
    assert report["audio"] == "kept" and report["pixels"] == "copied (nothing to mask)"
    assert report["verified"] is False and report["verification"].startswith("not run")
    assert "DOE" not in result.output and "4711" not in result.output
    out = tmp_path / "out" / report["output"]
    media = tmp_path / "media"
    extract_bitstream(out, media)
    with av.open(str(media)) as container:
        assert len(container.streams.audio) == 1
    read_back(out, tmp_path)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 5 and "already exists" in again.output
    lookup = read_lookup(tmp_path / "lookup.bin", Pseudonymizer("site-secret-for-cli"))
    assert lookup[report["pseudonym"]]["PatientID"] == "PID-4711"  # authorised re-identification
    assert b"4711" not in (tmp_path / "lookup.bin").read_bytes()


def test_mute_interval(source: Path, tmp_path: Path) -> None:
    """--keep-audio --mute 0.4-0.7: silence there (RMS -inf dB), the tone elsewhere."""
    result = CliRunner().invoke(app, [
        "deidentify", str(source), "-o", str(tmp_path / "out"), "--keep-audio",
        "--mute", "0.4-0.7", "--no-clean-pixel-data", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.splitlines()[0])  # one DeidentifyReport per input
    assert report["audio"] == "kept, 1 intervals muted"
    media = tmp_path / "media"
    extract_bitstream(tmp_path / "out" / report["output"], media)
    with av.open(str(media)) as container:
        origin = float(container.streams.video[0].start_time
                       * container.streams.video[0].time_base)
        samples: list[tuple[float, float]] = []
        for frame in container.decode(audio=0):
            start = float(frame.pts * frame.time_base) - origin
            data = frame.to_ndarray()
            for i in range(0, frame.samples, 480):
                chunk = data[:, i:i + 480]
                samples.append((start + i / frame.sample_rate, float(np.sqrt(
                    np.mean(np.square(chunk))))))
    inside = [rms for t, rms in samples if 0.45 <= t <= 0.63]
    outside = [rms for t, rms in samples if 0.1 <= t <= 0.3]
    assert inside and max(inside) < 1e-4, inside
    assert outside and min(outside) > 0.05, outside
    assert CliRunner().invoke(app, ["deidentify", str(source), "-o", str(tmp_path / "x"),
                                    "--mute", "1-2"]).exit_code == 2  # audio removed anyway
