"""The vid2dcm command line, run as a real subprocess: exit codes, stderr, outputs, inputs.

Documented exit codes: 0 ok; 2 usage; 3 unreadable/unsupported input; 4 not storable without
transcoding; 5 output/IO failure. An error is one line on stderr starting "vid2dcm: error:",
without a traceback (unless -v), nothing is left in the output folder and the input is
unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
import shutil
import subprocess
import sys
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pydicom
import pytest

from vid2dcm import __version__
from vid2dcm.producing.synth import ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}
SPLIT_FRAMES = 60

# name -> ClipSpec of every synthesised video fixture (320x240, at most 60 frames).
VIDEO_SPECS: dict[str, ClipSpec] = {
    "high.mp4": ClipSpec(frames=25, options=HIGH),
    "high_faststart.mp4": ClipSpec(frames=25, options=HIGH,
                                   container_options={"movflags": "+faststart"}),
    "baseline.mp4": ClipSpec(frames=25, options={"preset": "superfast", "profile": "baseline"}),
    "high10.mp4": ClipSpec(frames=10, pix_fmt="yuv420p10le",
                           options={"preset": "superfast", "profile": "high10"}),
    "yuv422.mp4": ClipSpec(frames=10, pix_fmt="yuv422p",
                           options={"preset": "superfast", "profile": "high422"}),
    "rotated.mp4": ClipSpec(frames=10, rotation=90, options=HIGH),
    "anamorphic.mp4": ClipSpec(frames=10, sample_aspect_ratio=Fraction(4, 3), options=HIGH),
    "vp9.webm": ClipSpec(codec="libvpx-vp9", frames=10,
                         options={"deadline": "realtime", "cpu-used": "8"}),
    "mjpeg.avi": ClipSpec(codec="mjpeg", frames=10, pix_fmt="yuvj420p", options={}),
    # x264 ignores a bare "keyint" option; x264-params sets a fixed 10-frame GOP.
    "gop10.mp4": ClipSpec(frames=SPLIT_FRAMES, noise=True,
                          options={**HIGH, "x264-params": "keyint=10:min-keyint=10:scenecut=0"}),
}
ENCODERS = {"vp9.webm": "libvpx-vp9", "mjpeg.avi": "mjpeg"}


# --- helpers ---------------------------------------------------------------------------------

def run_cli(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *map(str, args)],
                          capture_output=True, text=True, timeout=120, cwd=cwd, check=False)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_error(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Exit code, and exactly one 'vid2dcm: error:' line on stderr, no traceback; the line."""
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("vid2dcm: error:"), proc.stderr
    assert proc.stdout == "", proc.stdout
    return lines[0]


def assert_no_leftovers(folder: Path, allowed: frozenset[str] = frozenset()) -> None:
    """No .dcm, .partial or .vid2dcm-* temp folder: only the entries listed in allowed."""
    names = {p.name for p in folder.iterdir()}
    bad = {n for n in names - allowed
           if n.endswith((".dcm", ".partial")) or n.startswith(".vid2dcm-")}
    assert not bad, bad
    assert names <= allowed, names - allowed


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def summary_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line.strip()]


def _write_m4a(path: Path) -> Path:
    """AAC 48 kHz mono tone, no video."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(24):
            t = (np.arange(i * 1024, (i + 1) * 1024) / 48000).astype(np.float32)
            wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
            frame.sample_rate = 48000
            frame.pts = i * 1024
            frame.time_base = Fraction(1, 48000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _write_png(path: Path) -> Path:
    """One 320x240 picture through the png encoder into an image2 container."""
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "rgb24"
        picture = np.zeros((240, 320, 3), np.uint8)
        picture[:, :, 0] = np.linspace(0, 255, 320, dtype=np.uint8)[None, :]
        for packet in stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def _truncate(source: Path, target: Path) -> Path:
    data = source.read_bytes()
    target.write_bytes(data[: len(data) // 2])
    return target


# --- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """clip(name) -> path of a synthesised file, made once per session on first use."""
    folder = tmp_path_factory.mktemp("clips")
    made: dict[str, Path] = {}

    def clip(name: str) -> Path:
        if name in made:
            return made[name]
        path = folder / name
        if name in VIDEO_SPECS:
            encoder = ENCODERS.get(name, "libx264")
            try:
                av.codec.Codec(encoder, "w")
            except Exception:  # the FFmpeg build lacks this encoder
                pytest.skip(f"encoder {encoder} not available")
            synthesize(path, VIDEO_SPECS[name])
        elif name == "empty.mp4":
            path.write_bytes(b"")
        elif name == "random.mp4":
            path.write_bytes(random.Random(20240611).randbytes(64 * 1024))
        elif name == "truncated.mp4":
            source = clip("high.mp4")
            data = source.read_bytes()
            assert data.find(b"moov") > data.find(b"mdat") > 0, "expected moov at the end"
            _truncate(source, path)
        elif name == "truncated_faststart.mp4":
            source = clip("high_faststart.mp4")
            data = source.read_bytes()
            assert 0 < data.find(b"moov") < data.find(b"mdat"), "expected moov first"
            _truncate(source, path)
        elif name == "tone.m4a":
            _write_m4a(path)
        elif name == "picture.png":
            _write_png(path)
        else:
            raise KeyError(name)
        made[name] = path
        return path

    return clip


@pytest.fixture
def stage(tmp_path: Path, clips: Callable[[str], Path]) -> Callable[[str], Path]:
    """stage(name) -> a private copy of a clip in tmp_path/in (so leftovers beside it show)."""
    inbox = tmp_path / "in"
    inbox.mkdir()

    def copy(name: str) -> Path:
        return Path(shutil.copy2(clips(name), inbox / name))

    return copy


@pytest.fixture
def outdir(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


@pytest.fixture(scope="session")
def good_dcm(tmp_path_factory: pytest.TempPathFactory, clips: Callable[[str], Path]) -> Path:
    """A converted High-profile clip, shared by the read-only commands."""
    folder = tmp_path_factory.mktemp("good")
    proc = run_cli("convert", clips("high.mp4"), "-o", folder / "good.dcm")
    assert proc.returncode == 0, proc.stderr
    return folder / "good.dcm"


# --- exit 3: unreadable or unsupported input --------------------------------------------------

@pytest.mark.parametrize("name", [
    "empty.mp4", "random.mp4", "truncated.mp4", "tone.m4a", "picture.png",
])  # truncated_faststart.mp4 is salvaged now (issue 10 class 2): tests/pipeline/test_robustness.py
def test_unreadable_input_exits_3(name: str, stage: Callable[[str], Path], outdir: Path) -> None:
    source = stage(name)
    before = sha256(source)
    line = assert_error(run_cli("convert", source, "-o", outdir), 3)
    assert name in line
    assert sha256(source) == before
    assert_no_leftovers(outdir)
    assert_no_leftovers(source.parent, frozenset({name}))


def test_unreadable_input_without_output_option_leaves_nothing_beside_it(
        stage: Callable[[str], Path]) -> None:
    source = stage("truncated.mp4")
    before = sha256(source)
    assert_error(run_cli("convert", source), 3)
    assert sha256(source) == before
    assert_no_leftovers(source.parent, frozenset({source.name}))


def test_missing_file_exits_3(tmp_path: Path, outdir: Path) -> None:
    line = assert_error(run_cli("convert", tmp_path / "nowhere.mp4", "-o", outdir), 3)
    assert "nowhere.mp4" in line
    assert_no_leftovers(outdir)
    assert not (tmp_path / "nowhere.dcm").exists()


def test_directory_as_input_exits_3(tmp_path: Path, outdir: Path) -> None:
    """A folder is a batch (tests/apps/test_batch.py); one with no video in it is bad input."""
    folder = tmp_path / "clip.mp4"
    folder.mkdir()
    line = assert_error(run_cli("convert", folder, "-o", outdir), 3)
    assert "holds no video files" in line
    assert_no_leftovers(outdir)
    assert list(folder.iterdir()) == []


def test_audio_only_message_names_the_problem(stage: Callable[[str], Path], outdir: Path) -> None:
    line = assert_error(run_cli("convert", stage("tone.m4a"), "-o", outdir), 3)
    assert "no video stream" in line


def test_still_image_message_names_the_problem(stage: Callable[[str], Path],
                                               outdir: Path) -> None:
    line = assert_error(run_cli("convert", stage("picture.png"), "-o", outdir), 3)
    assert "still image" in line


def test_verbose_error_may_show_traceback_but_keeps_code_and_line(
        stage: Callable[[str], Path], outdir: Path) -> None:
    proc = run_cli("convert", "-v", stage("random.mp4"), "-o", outdir)
    assert proc.returncode == 3
    assert proc.stderr.splitlines()[-1].startswith("vid2dcm: error:")
    assert_no_leftovers(outdir)


@pytest.mark.parametrize("command", ["info", "validate"])
def test_reading_a_non_dicom_file_exits_3(command: str, stage: Callable[[str], Path]) -> None:
    assert_error(run_cli(command, stage("high.mp4")), 3)


def test_extract_from_a_non_dicom_file_exits_3(stage: Callable[[str], Path],
                                               outdir: Path) -> None:
    assert_error(run_cli("extract", stage("high.mp4"), "-o", outdir / "x.mp4"), 3)
    assert list(outdir.iterdir()) == []


# --- exit 4: readable but not storable without transcoding -----------------------------------

@pytest.mark.parametrize(("name", "rule"), [
    ("baseline.mp4", "Baseline profile"),
    ("high10.mp4", "10-bit"),
    ("yuv422.mp4", "4:2:2"),
    ("rotated.mp4", "rotate by 90"),
    ("anamorphic.mp4", "not square"),
    ("vp9.webm", "vp9 has no DICOM video transfer syntax"),
    ("mjpeg.avi", "mjpeg has no DICOM video transfer syntax"),
])
def test_not_storable_exits_4_and_names_the_rule(name: str, rule: str,
                                                 stage: Callable[[str], Path],
                                                 outdir: Path) -> None:
    source = stage(name)
    before = sha256(source)
    line = assert_error(run_cli("convert", source, "-o", outdir, "--transcode", "never"), 4)
    assert rule in line
    assert sha256(source) == before
    assert_no_leftovers(outdir)
    assert_no_leftovers(source.parent, frozenset({name}))


def test_transcode_never_on_baseline_exits_4(stage: Callable[[str], Path], outdir: Path) -> None:
    source = stage("baseline.mp4")
    before = sha256(source)
    line = assert_error(run_cli("convert", source, "-o", outdir, "--transcode", "never"), 4)
    assert "Baseline profile" in line
    assert "--transcode never" in line
    assert sha256(source) == before
    assert_no_leftovers(outdir)


def test_not_storable_without_output_option_leaves_nothing_beside_input(
        stage: Callable[[str], Path]) -> None:
    source = stage("baseline.mp4")
    assert_error(run_cli("convert", source, "--transcode", "never"), 4)
    assert_no_leftovers(source.parent, frozenset({source.name}))


# --- exit 2: usage -----------------------------------------------------------------------------

CLICK_USAGE_ERRORS = [
    pytest.param(("--no-such-option",), id="unknown-option"),
    pytest.param(("--sop", "xray"), id="bad-sop"),
]


@pytest.mark.parametrize("extra", CLICK_USAGE_ERRORS)
def test_option_parsing_errors_exit_2(extra: tuple[str, ...], stage: Callable[[str], Path],
                                      outdir: Path) -> None:
    source = stage("high.mp4")
    before = sha256(source)
    proc = run_cli("convert", source, "-o", outdir, *extra)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip()
    assert sha256(source) == before
    assert_no_leftovers(outdir)


@pytest.mark.parametrize("extra", CLICK_USAGE_ERRORS)
def test_option_parsing_errors_are_one_error_line(extra: tuple[str, ...],
                                                  stage: Callable[[str], Path],
                                                  outdir: Path) -> None:
    assert_error(run_cli("convert", stage("high.mp4"), "-o", outdir, *extra), 2)


def test_metadata_file_with_unknown_key_exits_2(tmp_path: Path, stage: Callable[[str], Path],
                                                outdir: Path) -> None:
    meta = tmp_path / "meta.json"
    meta.write_text(json.dumps({"patient_id": "123", "pateint_name": "Typo^Name"}))
    source = stage("high.mp4")
    line = assert_error(run_cli("convert", source, "-o", outdir, "--metadata", meta), 2)
    assert "pateint_name" in line
    assert_no_leftovers(outdir)
    assert_no_leftovers(source.parent, frozenset({source.name}))


def test_missing_metadata_file_exits_2(tmp_path: Path, stage: Callable[[str], Path],
                                       outdir: Path) -> None:
    assert_error(run_cli("convert", stage("high.mp4"), "-o", outdir,
                         "--metadata", tmp_path / "absent.json"), 2)
    assert_no_leftovers(outdir)


def test_invalid_study_uid_exits_2(stage: Callable[[str], Path], outdir: Path) -> None:
    line = assert_error(run_cli("convert", stage("high.mp4"), "-o", outdir,
                                "--study-uid", "1.2.abc"), 2)
    assert "study_instance_uid" in line
    assert_no_leftovers(outdir)


def test_output_equal_to_input_exits_2(stage: Callable[[str], Path]) -> None:
    source = stage("high.mp4")
    before = sha256(source)
    assert_error(run_cli("convert", source, "-o", source, "--overwrite"), 2)
    assert sha256(source) == before


# --- exit 5: output failures -------------------------------------------------------------------

def test_missing_output_folder_exits_5(tmp_path: Path, stage: Callable[[str], Path]) -> None:
    source = stage("high.mp4")
    before = sha256(source)
    line = assert_error(run_cli("convert", source, "-o", tmp_path / "nodir" / "x.dcm"), 5)
    assert "does not exist" in line
    assert not (tmp_path / "nodir").exists()
    assert sha256(source) == before
    assert_no_leftovers(source.parent, frozenset({source.name}))


def test_existing_output_without_overwrite_exits_5_and_is_untouched(
        stage: Callable[[str], Path], outdir: Path) -> None:
    source = stage("high.mp4")
    existing = outdir / "high.dcm"
    existing.write_bytes(b"not yours to replace")
    line = assert_error(run_cli("convert", source, "-o", outdir), 5)
    assert "--overwrite" in line
    assert existing.read_bytes() == b"not yours to replace"
    assert_no_leftovers(outdir, frozenset({"high.dcm"}))


def test_existing_output_with_overwrite_is_replaced(stage: Callable[[str], Path],
                                                    outdir: Path) -> None:
    source = stage("high.mp4")
    before = sha256(source)
    existing = outdir / "high.dcm"
    existing.write_bytes(b"old")
    proc = run_cli("convert", source, "-o", outdir, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    ds = pydicom.dcmread(existing, stop_before_pixels=True)
    assert int(ds.NumberOfFrames) == 25
    assert sha256(source) == before
    assert_no_leftovers(outdir, frozenset({"high.dcm"}))


def test_extract_onto_existing_file_exits_5(good_dcm: Path, outdir: Path) -> None:
    target = outdir / "video.mp4"
    target.write_bytes(b"keep")
    assert_error(run_cli("extract", good_dcm, "-o", target), 5)
    assert target.read_bytes() == b"keep"
    assert {p.name for p in outdir.iterdir()} == {"video.mp4"}


# --- success paths -----------------------------------------------------------------------------

def test_convert_beside_input_prints_one_summary_line(stage: Callable[[str], Path]) -> None:
    source = stage("high.mp4")
    before = sha256(source)
    proc = run_cli("convert", source)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    target = source.with_suffix(".dcm")
    lines = summary_lines(proc)
    assert len(lines) == 1, proc.stdout
    line = lines[0]
    assert str(target) in line
    assert "Video Photographic Image" in line
    assert "MPEG-4 AVC/H.264 High Profile / Level 4.1" in line
    assert "25 frames" in line
    assert line.split()[-1] == "copy"
    assert sha256(source) == before
    assert {p.name for p in source.parent.iterdir()} == {"high.mp4", "high.dcm"}
    ds = pydicom.dcmread(target, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.MPEG4HP41
    assert ds.Modality == "XC"


def test_convert_endoscopic_writes_modality_es(stage: Callable[[str], Path],
                                               outdir: Path) -> None:
    proc = run_cli("convert", stage("high.mp4"), "-o", outdir / "scope.dcm", "--sop",
                   "endoscopic")
    assert proc.returncode == 0, proc.stderr
    assert "Video Endoscopic Image" in proc.stdout
    ds = pydicom.dcmread(outdir / "scope.dcm", stop_before_pixels=True)
    assert ds.Modality == "ES"
    assert ds.SOPClassUID == pydicom.uid.VideoEndoscopicImageStorage
    assert_no_leftovers(outdir, frozenset({"scope.dcm"}))


def test_convert_into_folder_uses_input_stem(stage: Callable[[str], Path],
                                             outdir: Path) -> None:
    source = stage("high_faststart.mp4")
    proc = run_cli("convert", source, "-o", outdir)
    assert proc.returncode == 0, proc.stderr
    assert {p.name for p in outdir.iterdir()} == {"high_faststart.dcm"}
    lines = summary_lines(proc)
    assert len(lines) == 1
    assert str(outdir / "high_faststart.dcm") in lines[0]


def test_probe_json_high_profile_plans_copy(stage: Callable[[str], Path]) -> None:
    proc = run_cli("probe", "--json", stage("high.mp4"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["plan"]["action"] == "copy"
    assert report["plan"]["broken_rules"] == []
    assert report["media"]["video"]["timing"]["frame_count"] == 25


def test_probe_json_baseline_plans_transcode(stage: Callable[[str], Path]) -> None:
    proc = run_cli("probe", "--json", stage("baseline.mp4"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["plan"]["action"] == "transcode"
    assert report["plan"]["broken_rules"]
    assert any("Baseline" in rule for rule in report["plan"]["broken_rules"])


def test_probe_human_output(stage: Callable[[str], Path]) -> None:
    proc = run_cli("probe", stage("baseline.mp4"))
    assert proc.returncode == 0, proc.stderr
    assert "plan: transcode" in proc.stdout
    assert "Baseline profile" in proc.stdout
    assert "transcode target: H.264 High Level 4.1" in proc.stdout
    never = run_cli("probe", stage("baseline.mp4"), "--transcode", "never")
    assert "exit code 4" in never.stdout


def test_info_prints_number_of_frames(good_dcm: Path) -> None:
    proc = run_cli("info", good_dcm)
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("Number of Frames")]
    assert len(rows) == 1
    assert rows[0].split()[-1] == "25"


def test_extract_writes_a_decodable_video(good_dcm: Path, outdir: Path) -> None:
    before = sha256(good_dcm)
    target = outdir / "video.mp4"
    proc = run_cli("extract", good_dcm, "-o", target)
    assert proc.returncode == 0, proc.stderr
    frames = int(pydicom.dcmread(good_dcm, stop_before_pixels=True).NumberOfFrames)
    assert decoded_frames(target) == frames == 25
    assert f"{target.stat().st_size} bytes" in proc.stdout
    assert {p.name for p in outdir.iterdir()} == {"video.mp4"}
    assert sha256(good_dcm) == before


def test_validate_good_file_exits_0(good_dcm: Path) -> None:
    proc = run_cli("validate", good_dcm)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{good_dcm}: valid" in proc.stdout


def _altered_frames(good_dcm: Path, folder: Path) -> Path:
    ds = pydicom.dcmread(good_dcm)
    ds.NumberOfFrames = int(ds.NumberOfFrames) - 1
    bad = folder / "bad.dcm"
    ds.save_as(bad, enforce_file_format=True)
    return bad


def test_validate_altered_number_of_frames_fails(good_dcm: Path, tmp_path: Path) -> None:
    bad = _altered_frames(good_dcm, tmp_path)
    proc = run_cli("validate", "--no-dciodvfy", bad)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "NumberOfFrames is 24, the bitstream has 25" in proc.stdout
    assert "INVALID" in proc.stdout
    assert "Traceback" not in proc.stderr


def test_validate_invalid_file_reports_no_internal_error(good_dcm: Path, tmp_path: Path) -> None:
    bad = _altered_frames(good_dcm, tmp_path)
    proc = run_cli("validate", "--no-dciodvfy", bad)
    assert proc.returncode == 1
    assert "internal error" not in proc.stderr, proc.stderr


def test_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"vid2dcm {__version__}"


# --- hidden --max-item-bytes: a split into several instances ------------------------------------

def _split_limit(source: Path) -> int:
    """Each piece is estimated as payload + 64 B/frame + 1 MiB; ~40 % of the payload per piece
    holds two 10-frame GOPs, so the 60-frame clip splits into 3 or more instances."""
    return (1 << 20) + source.stat().st_size * 2 // 5


@pytest.fixture(scope="session")
def split_series(tmp_path_factory: pytest.TempPathFactory, clips: Callable[[str], Path]
                 ) -> tuple[subprocess.CompletedProcess[str], Path, str, str]:
    folder = tmp_path_factory.mktemp("split")
    source = shutil.copy2(clips("gop10.mp4"), folder / "gop10.mp4")
    out = folder / "out"
    out.mkdir()
    before = sha256(Path(source))
    proc = run_cli("convert", source, "-o", out / "OUT.dcm", "--max-item-bytes",
                   _split_limit(Path(source)))
    return proc, out, before, sha256(Path(source))


def test_split_writes_a_linked_series(split_series: tuple[subprocess.CompletedProcess[str], Path,
                                                          str, str],
                                      tmp_path: Path) -> None:
    proc, out, hash_before, hash_after = split_series
    assert proc.returncode == 0, proc.stderr
    assert hash_before == hash_after
    files = sorted(out.iterdir())
    count = len(files)
    assert count >= 3, [f.name for f in files]
    assert [f.name for f in files] == [f"OUT_{n:03d}.dcm" for n in range(1, count + 1)]
    lines = summary_lines(proc)
    assert len(lines) == count
    for line, f in zip(lines, files, strict=True):
        assert str(f) in line
        assert line.split()[-1] == "copy"
    datasets = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    assert [int(ds.InstanceNumber) for ds in datasets] == list(range(1, count + 1))
    assert len({ds.SeriesInstanceUID for ds in datasets}) == 1
    assert len({ds.StudyInstanceUID for ds in datasets}) == 1
    assert len({ds.SOPInstanceUID for ds in datasets}) == count
    assert "ReferencedImageSequence" not in datasets[0]
    for previous, ds in itertools.pairwise(datasets):
        refs = ds.ReferencedImageSequence
        assert len(refs) == 1
        assert refs[0].ReferencedSOPInstanceUID == previous.SOPInstanceUID
        assert refs[0].ReferencedSOPClassUID == previous.SOPClassUID
    assert sum(int(ds.NumberOfFrames) for ds in datasets) == SPLIT_FRAMES
    for n, (f, ds) in enumerate(zip(files, datasets, strict=True), 1):
        extracted = tmp_path / f"piece{n}.mp4"
        run = run_cli("extract", f, "-o", extracted)
        assert run.returncode == 0, run.stderr
        assert decoded_frames(extracted) == int(ds.NumberOfFrames)


def test_split_pieces_pass_own_checks(split_series: tuple[subprocess.CompletedProcess[str], Path,
                                                          str, str]) -> None:
    proc, out, _, _ = split_series
    assert proc.returncode == 0, proc.stderr
    for f in sorted(out.iterdir()):
        run = run_cli("validate", "--no-dciodvfy", f)
        assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dciodvfy not installed")
def test_split_pieces_pass_dciodvfy(split_series: tuple[subprocess.CompletedProcess[str], Path,
                                                        str, str]) -> None:
    proc, out, _, _ = split_series
    assert proc.returncode == 0, proc.stderr
    for f in sorted(out.iterdir()):
        run = run_cli("validate", f)
        assert run.returncode == 0, run.stdout + run.stderr


def test_split_with_an_existing_part_exits_5_and_writes_nothing(
        stage: Callable[[str], Path], outdir: Path) -> None:
    source = stage("gop10.mp4")
    existing = outdir / "OUT_002.dcm"
    existing.write_bytes(b"keep")
    line = assert_error(run_cli("convert", source, "-o", outdir / "OUT.dcm", "--max-item-bytes",
                                _split_limit(source)), 5)
    assert "OUT_002.dcm" in line
    assert existing.read_bytes() == b"keep"
    assert_no_leftovers(outdir, frozenset({"OUT_002.dcm"}))


def test_item_limit_below_a_gop_exits_5_and_leaves_nothing(stage: Callable[[str], Path],
                                                           outdir: Path) -> None:
    source = stage("gop10.mp4")
    before = sha256(source)
    assert_error(run_cli("convert", source, "-o", outdir, "--max-item-bytes", 1000), 5)
    assert sha256(source) == before
    assert_no_leftovers(outdir)


# --- PHI never reaches the terminal ------------------------------------------------------------

SECRETS = ("Secret^Patient", "Secret", "PID-SECRET")


def test_patient_identifiers_are_not_printed(stage: Callable[[str], Path], outdir: Path) -> None:
    target = outdir / "phi.dcm"
    runs = [run_cli("convert", stage("high.mp4"), "-o", target, "--patient-name",
                    "Secret^Patient", "--patient-id", "PID-SECRET")]
    assert runs[0].returncode == 0, runs[0].stderr
    ds = pydicom.dcmread(target, stop_before_pixels=True)
    assert str(ds.PatientName) == "Secret^Patient"
    assert ds.PatientID == "PID-SECRET"
    runs.append(run_cli("info", target))
    runs.append(run_cli("validate", target))
    for proc in runs:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        for secret in SECRETS:
            assert secret not in proc.stdout
            assert secret not in proc.stderr


def test_rejected_patient_id_is_not_echoed(stage: Callable[[str], Path], outdir: Path) -> None:
    line = assert_error(run_cli("convert", stage("high.mp4"), "-o", outdir, "--patient-id",
                                "PID-SECRET\\2"), 2)
    assert "PID-SECRET" not in line
    assert_no_leftovers(outdir)
