"""Frame-by-frame objects (--sop ultrasound / sc, --frames ...): every encoding in every IOD
that takes it, read back by the independent tools, lossless encodings compared pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pydicom
import pytest
from pydicom.pixels.utils import iter_pixels

from conftest import MakeClip
from readback import read_back
from vid2dcm.core.frame_syntaxes import FRAME_SYNTAXES, FrameEncoding
from vid2dcm.core.iods import SopChoice
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.quality import psnr
from vid2dcm.producing.synth import AudioSpec, ClipSpec

HIGH = {"preset": "superfast", "profile": "high"}
SOPS = [SopChoice.ULTRASOUND, SopChoice.SC, SopChoice.ENDOSCOPIC, SopChoice.PHOTOGRAPHIC]
LOSSLESS = {FrameEncoding.JPEG_LS, FrameEncoding.J2K, FrameEncoding.RLE, FrameEncoding.RAW}


def _first_source_frame(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return np.asarray(frame.to_ndarray(format="rgb24"))


@pytest.mark.parametrize("encoding", list(FrameEncoding))
@pytest.mark.parametrize("sop", SOPS)
def test_frames_in_every_iod(sop: SopChoice, encoding: FrameEncoding, make_clip: MakeClip,
                             tmp_path: Path) -> None:
    source = make_clip("frames-src.mp4", ClipSpec(options=HIGH, frames=12, audio=AudioSpec()))
    result = convert(source, tmp_path / "f.dcm", options=Request(sop=sop, frames=encoding))
    syntax = FRAME_SYNTAXES[encoding]
    written = result.files[0]
    assert written.transfer_syntax_uid == syntax.uid
    assert result.plan.action == "frames"
    assert any("no audio" in w for w in result.warnings)
    back = read_back(written.path, tmp_path)
    ds = back.dataset
    assert ds.PhotometricInterpretation == syntax.photometric
    assert int(ds.NumberOfFrames) == 12 and (ds.Rows, ds.Columns) == (240, 320)
    assert "MultiplexedAudioChannelsDescriptionCodeSequence" not in ds
    assert ds.LossyImageCompression == "01"
    first = next(iter_pixels(written.path))
    reference = _first_source_frame(source)
    if encoding in LOSSLESS:
        assert np.array_equal(first, reference), "a lossless frame differs from the source"
    else:
        assert psnr(first[:, :, 0], reference[:, :, 0]) > 30


def test_ultrasound_defaults_to_jpeg_baseline(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("frames-src.mp4", ClipSpec(options=HIGH, frames=12, audio=AudioSpec()))
    result = convert(source, tmp_path / "us.dcm", options=Request(sop=SopChoice.ULTRASOUND))
    ds = read_back(result.files[0].path, tmp_path).dataset
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.3.1" and ds.Modality == "US"
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert ds.PhotometricInterpretation == "YBR_FULL_422"
    assert ds.LossyImageCompressionMethod == "ISO_10918_1"


def test_secondary_capture_defaults(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("frames-src.mp4", ClipSpec(options=HIGH, frames=12, audio=AudioSpec()))
    result = convert(source, tmp_path / "sc.dcm", options=Request(sop=SopChoice.SC))
    ds = pydicom.dcmread(result.files[0].path, stop_before_pixels=True)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7.4"
    assert ds.BurnedInAnnotation == "YES", "unknown must not be reported as 'no PHI in pixels'"
    assert ds.ConversionType == "WSD"


def test_offset_table_points_at_every_frame(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("frames-src.mp4", ClipSpec(options=HIGH, frames=12, audio=AudioSpec()))
    result = convert(source, tmp_path / "bot.dcm", options=Request(frames=FrameEncoding.JPEG))
    ds = pydicom.dcmread(result.files[0].path)
    from io import BytesIO

    from pydicom.encaps import generate_frames, parse_basic_offsets
    buffer = BytesIO(ds.PixelData)
    offsets = parse_basic_offsets(buffer)
    assert len(offsets) == 12 and offsets[0] == 0
    frames = list(generate_frames(ds.PixelData, number_of_frames=12))
    assert len(frames) == 12 and all(f.startswith(b"\xff\xd8") for f in frames)


def test_rotation_applies_to_frames_too(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("frames-rot.mp4", ClipSpec(options=HIGH, frames=6, rotation=90))
    result = convert(source, tmp_path / "r.dcm", options=Request(frames=FrameEncoding.RLE))
    ds = read_back(result.files[0].path, tmp_path).dataset
    assert (ds.Rows, ds.Columns) == (320, 240)
    assert ds.ImageType[0] == "DERIVED"
