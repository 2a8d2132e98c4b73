"""Foreign files (issue 12): DICOM objects vid2dcm did not write, through info, validate and
extract. Each gets a correct answer or a clear "unsupported" with exit code 3, never a crash.

Sources: the test files pydicom ships (get_testdata_file), frames re-encoded by DCMTK
(dcmcjpeg) and GDCM (gdcmconv), a JPEG frame split over two fragments, and cut files.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import av
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.encaps import encapsulate

from readback import dciodvfy_errors
from vid2dcm.core.errors import InputError
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec, synthesize
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.validation.validate import validate


@dataclass(frozen=True)
class Foreign:
    name: str
    frames: int | None
    """Frames extract writes, or None when extract must refuse it (exit 3)."""
    refusal: str = ""


PYDICOM_FILES = [
    Foreign("examples_palette.dcm", None, "PALETTE COLOR"),      # palette-colour US
    Foreign("CT_small.dcm", None, "MONOCHROME2"),                # CT, 16-bit
    Foreign("MR_small.dcm", None, "MONOCHROME2"),                # MR, 16-bit
    Foreign("liver_1frame.dcm", None, "MONOCHROME2"),            # segmentation, 1-bit
    Foreign("SC_rgb_rle_16bit_2frame.dcm", None, "16-bit"),      # 16-bit colour, 2 frames
    Foreign("JPEG2000.dcm", None, "MONOCHROME2"),
    Foreign("SC_rgb_small_odd_jpeg.dcm", 1),                     # single frame, no NoF
    Foreign("SC_rgb_jpeg_gdcm.dcm", 1),                          # JPEG lossless, by GDCM
    Foreign("SC_rgb_rle_2frame.dcm", 2),
    Foreign("examples_ybr_color.dcm", 30),                       # US multi-frame, JPEG 422
    Foreign("SC_rgb_dcmtk_+eb+cy+s2.dcm", 1),                    # JPEG by DCMTK
]


@pytest.mark.parametrize("case", PYDICOM_FILES, ids=lambda c: c.name)
def test_pydicom_test_files(case: Foreign, tmp_path: Path) -> None:
    path = Path(get_testdata_file(case.name))
    before = path.read_bytes()
    video = open_video_object(path)  # info's source: must open
    assert video.dataset.SOPClassUID
    own = validate(path, use_dciodvfy=False)
    assert own.ok, [f.message for f in own.errors]  # valid frame objects are not INVALID
    full = validate(path)
    assert not full.dciodvfy.startswith("crashed")
    # dciodvfy's own errors on these files are real; validate reports exactly those
    assert sorted(f.message for f in full.errors) == sorted(
        line.split(" - ", 1)[1] for line in dciodvfy_errors(path))
    out = tmp_path / "frames.mkv"
    if case.frames is None:
        with pytest.raises(InputError, match=f"unsupported: .*{case.refusal}") as err:
            extract_bitstream(path, out)
        assert err.value.exit_code == 3
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()
    else:
        extract_bitstream(path, out)
        assert _decoded_frames(out) == case.frames
    assert path.read_bytes() == before


def _decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def native_sc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A vid2dcm frame object with native RGB frames, for DCMTK and GDCM to re-encode."""
    folder = tmp_path_factory.mktemp("foreign")
    clip = synthesize(folder / "clip.mp4", ClipSpec(width=64, height=48, frames=4))
    return convert(clip, folder / "native.dcm",
                   options=Request(sop="sc", frames="raw")).files[0].path


@pytest.mark.parametrize("tool", [
    ["dcmcjpeg", "+eb"],               # DCMTK, JPEG baseline
    ["dcmcjpeg", "+e1"],               # DCMTK, JPEG lossless SV1
    ["dcmcjpls"],                      # DCMTK, JPEG-LS
    ["dcmcrle"],                       # DCMTK, RLE
    ["gdcmconv", "--jpeg"],            # GDCM, JPEG
    ["gdcmconv", "--jpegls"],          # GDCM, JPEG-LS
])
def test_frames_encoded_by_other_tools(tool: list[str], native_sc: Path, tmp_path: Path) -> None:
    encoded = tmp_path / "encoded.dcm"
    subprocess.run([*tool, str(native_sc), str(encoded)], check=True, capture_output=True)
    report = validate(encoded)
    assert report.ok and report.dciodvfy == "passed", [f.message for f in report.errors]
    out = tmp_path / "frames.mkv"
    extract_bitstream(encoded, out)
    assert _decoded_frames(out) == 4


def test_jpeg_frame_split_over_fragments(native_sc: Path, tmp_path: Path) -> None:
    """PS3.5 A.4 lets a frame span several fragments (the Basic Offset Table then says where
    each frame starts): a valid object, 4 frames in 8 fragments."""
    baseline = tmp_path / "baseline.dcm"
    subprocess.run(["dcmcjpeg", "+eb", str(native_sc), str(baseline)], check=True)
    ds = pydicom.dcmread(baseline)
    frames = list(pydicom.encaps.generate_frames(ds.PixelData, number_of_frames=4))
    ds.PixelData = encapsulate(frames, fragments_per_frame=2, has_bot=True)
    split = tmp_path / "split.dcm"
    ds.save_as(split, enforce_file_format=True)
    assert len(open_video_object(split).layout.fragments) == 8  # type: ignore[union-attr]
    report = validate(split)
    assert report.ok, [f.message for f in report.errors]
    extract_bitstream(split, tmp_path / "one.mkv")
    assert _decoded_frames(tmp_path / "one.mkv") == 4


def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *map(str, args)],
                          capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", ["MR_truncated.dcm", "rtplan_truncated.dcm"])
def test_truncated_file_info_exit_3(name: str) -> None:
    p = _cli("info", get_testdata_file(name))
    assert p.returncode == 3, p.stdout
    assert p.stderr.startswith("vid2dcm: error:") and "truncated" in p.stderr
    assert "Traceback" not in p.stderr and len(p.stderr.splitlines()) == 1


def test_truncated_video_is_refused(native_sc: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.dcm"
    cut.write_bytes(native_sc.read_bytes()[:-1000])
    with pytest.raises(InputError, match="truncated"):
        open_video_object(cut)


def test_cli_unsupported_is_one_line_exit_3(tmp_path: Path) -> None:
    p = _cli("extract", get_testdata_file("examples_palette.dcm"), "-o", tmp_path / "x.mkv")
    assert p.returncode == 3 and "unsupported" in p.stderr and "Traceback" not in p.stderr
    assert not list(tmp_path.iterdir())
    p = _cli("validate", get_testdata_file("rtplan.dcm"))
    assert p.returncode == 3 and "holds no Pixel Data" in p.stderr
