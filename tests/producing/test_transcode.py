"""The transcode path end to end: every kind of input DICOM cannot hold as it is, converted with
the default `--transcode auto`, read back by independent tools, and checked for what the encoder
promises: the target transfer syntax, the picture size, every frame kept, the pictures turned
the right way, timing and audio carried over, and the header saying what was done and why."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from conftest import MakeClip
from readback import coded_pictures, read_back
from vid2dcm.core.errors import InputError
from vid2dcm.pipeline import ConversionResult, convert
from vid2dcm.planning.plan import Request, TranscodePolicy
from vid2dcm.planning.video_target import Quality
from vid2dcm.producing.synth import AudioSpec, ClipSpec

H264_41 = "1.2.840.10008.1.2.4.102"
H264_42 = "1.2.840.10008.1.2.4.104"
HEVC_51 = "1.2.840.10008.1.2.4.107"
LOSSY_METHOD = {H264_41: "ISO_14496_10", H264_42: "ISO_14496_10", HEVC_51: "ISO_23008_2"}
CODEC = {H264_41: ("h264", "High"), H264_42: ("h264", "High"), HEVC_51: ("hevc", "Main")}
FRAME_TIME = (0x0018, 0x1063)
FRAME_TIME_VECTOR = (0x0018, 0x1065)

BASELINE = {"preset": "superfast", "profile": "baseline"}
MAIN = {"preset": "superfast", "profile": "main"}
HIGH = {"preset": "superfast", "profile": "high"}
X265 = {"preset": "ultrafast"}
VP9 = {"deadline": "realtime", "cpu-used": "8"}
INTERLACED = {**MAIN, "x264-params": "interlaced=1:tff=1"}
NO_AV1 = pytest.mark.skipif("libsvtav1" not in av.codecs_available,
                            reason="PyAV's FFmpeg has no libsvtav1 encoder to make an AV1 source")

EIGHT_K = ClipSpec(width=7680, height=4320, frames=2, options={"preset": "ultrafast"})


@dataclass(frozen=True)
class Case:
    file: str
    spec: ClipSpec
    syntax: str | frozenset[str]
    size: tuple[int, int]
    """(Columns, Rows) of the output."""
    derived: bool
    """Geometry changed (rotated, scaled, padded, deinterlaced): Image Type DERIVED."""
    reasons: tuple[str, ...]
    """Phrases the Derivation Description must contain (why it was transcoded, what changed)."""
    request: Request = field(default_factory=Request)
    interlaced: bool = False
    audio_items: int = 0
    warning: str | None = None
    """A warning the conversion must give."""
    tolerated: str | None = None
    """A warning the conversion may give (and no other)."""


CASES = [
    Case("baseline.mp4", ClipSpec(options=BASELINE, frames=20), H264_41, (320, 240), False,
         ("Baseline profile; DICOM stores H.264 High profile only",)),
    Case("main.mp4", ClipSpec(options=MAIN, frames=20), H264_41, (320, 240), False,
         ("H.264 Main profile; DICOM stores H.264 High profile only",)),
    Case("high10.mp4", ClipSpec(pix_fmt="yuv420p10le", frames=10,
                                options={"preset": "superfast", "profile": "high10"}),
         H264_41, (320, 240), False, ("10-bit samples", "converted to 4:2:0 8-bit")),
    Case("high422.mp4", ClipSpec(pix_fmt="yuv422p", frames=10,
                                 options={"preset": "superfast", "profile": "high422"}),
         H264_41, (320, 240), False, ("chroma is 4:2:2", "converted to 4:2:0 8-bit")),
    Case("yuv444.mp4", ClipSpec(pix_fmt="yuv444p", frames=10), H264_41, (320, 240), False,
         ("chroma is 4:4:4", "converted to 4:2:0 8-bit")),
    Case("hevc-rot90.mp4", ClipSpec(codec="libx265", options=X265, rotation=90, frames=10),
         H264_41, (240, 320), True, ("rotate by 90 degrees", "rotated 90 degrees")),
    Case("vp9-opus.webm", ClipSpec(codec="libvpx-vp9", options=VP9, frames=10,
                                   audio=AudioSpec(codec="libopus", sample_rate=48000)),
         H264_41, (320, 240), False, ("vp9 has no DICOM video transfer syntax",),
         audio_items=1),
    pytest.param(Case("av1.mp4", ClipSpec(codec="libsvtav1", options={"preset": "12"},
                                          frames=10),
                      H264_41, (320, 240), False,
                      ("from av1 ", "av1 has no DICOM video transfer syntax")),
                 marks=NO_AV1, id="av1.mp4"),
    Case("mjpeg.avi", ClipSpec(codec="mjpeg", pix_fmt="yuvj420p", options={}, frames=10),
         H264_41, (320, 240), False, ("mjpeg has no DICOM video transfer syntax",),
         tolerated="full-range (JPEG levels)"),
    Case("prores.mov", ClipSpec(codec="prores_ks", pix_fmt="yuv422p10le", options={},
                                frames=10),
         H264_41, (320, 240), False, ("prores has no DICOM video transfer syntax",
                                      "4:2:2 10-bit samples converted to 4:2:0 8-bit")),
    Case("mpeg4.avi", ClipSpec(codec="mpeg4", options={}, frames=10), H264_41, (320, 240),
         False, ("mpeg4 has no DICOM video transfer syntax",)),
    Case("odd-1279x719.mp4", ClipSpec(width=1279, height=719, pix_fmt="yuv444p", frames=3),
         H264_41, (1280, 720), True, ("padded 1279x719 -> 1280x720",)),
    Case("sar-4-3.mp4", ClipSpec(options=HIGH, sample_aspect_ratio=Fraction(4, 3), frames=10),
         H264_41, (426, 240), True, ("pixels are not square", "320x240 -> 426x240")),
    Case("4k60-level52.mp4", ClipSpec(width=3840, height=2160, rate=Fraction(60), frames=3,
                                      options={**HIGH, "level": "5.2"}),
         HEVC_51, (3840, 2160), False, ("H.264 Level 5.2 signalled",)),
    Case("8k.mp4", EIGHT_K, HEVC_51, (3840, 2160), True,
         ("downscaled 7680x4320 -> 3840x2160",), warning="downscaled to 3840x2160"),
    Case("8k.mp4", EIGHT_K, frozenset({H264_41, H264_42}), (1920, 1080), True,
         ("downscaled 7680x4320 -> 1920x1080 (--max-size)",),
         Request(max_size=(1920, 1080))),
    Case("interlaced-main.mp4", ClipSpec(width=720, height=576, interlaced=True, frames=10,
                                         options=INTERLACED),
         H264_41, (720, 576), False, ("H.264 Main profile",), interlaced=True),
    Case("interlaced-rot90.mp4", ClipSpec(width=720, height=576, interlaced=True, rotation=90,
                                          frames=10, options=INTERLACED),
         H264_41, (576, 720), True, ("rotated 90 degrees", "deinterlaced")),
]


@pytest.fixture
def clip(make_clip: MakeClip) -> MakeClip:
    """The session's make_clip, with this module's clip names kept apart from other modules'."""
    return lambda name, spec: make_clip(f"transcode-{name}", spec)


def _case_id(case: Case) -> str:
    return case.file + (f"-max{case.request.max_size[0]}" if case.request.max_size else "")


@pytest.mark.parametrize("case", [c if not isinstance(c, Case) else pytest.param(c, id=_case_id(c))
                                  for c in CASES])
def test_transcode_path(case: Case, clip: MakeClip, tmp_path: Path) -> None:
    source = clip(case.file, case.spec)
    result = convert(source, tmp_path / "x.dcm", options=case.request)
    syntaxes = case.syntax if isinstance(case.syntax, frozenset) else {case.syntax}

    assert result.plan.action == "transcode"
    assert len(result.files) == 1
    assert result.files[0].transfer_syntax_uid in syntaxes
    assert result.files[0].action == "transcode"
    back = read_back(result.files[0].path, tmp_path)
    ds = back.dataset
    uid = str(ds.file_meta.TransferSyntaxUID)
    assert uid in syntaxes

    assert (ds.Columns, ds.Rows) == case.size
    assert int(ds.NumberOfFrames) == case.spec.frames == result.source.video.timing.frame_count
    assert result.transcode is not None
    assert result.transcode.frames_out == case.spec.frames
    assert result.transcode.lost_frames == 0
    assert result.quality is None, "quality is only measured when asked for"

    assert list(ds.ImageType) == ["DERIVED" if case.derived else "ORIGINAL", "PRIMARY"]
    description = str(ds.get("DerivationDescription", ""))
    assert description.startswith("Transcoded by vid2dcm"), description
    for reason in case.reasons:
        assert reason in description, (reason, description)
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == LOSSY_METHOD[uid]
    assert float(ds.LossyImageCompressionRatio) > 1

    assert ds.FrameIncrementPointer == FRAME_TIME
    assert float(ds.FrameTime) == pytest.approx(1000 / case.spec.rate, abs=1e-3)
    assert ds.CineRate == round(case.spec.rate)

    facts = _video_facts(back.extracted)
    assert (facts.codec, facts.profile) == CODEC[uid]
    assert facts.pix_fmt == "yuv420p"
    assert facts.sar in (None, Fraction(1)), "pixels must be square"
    assert facts.rotation == 0, "the output must not ask players to rotate again"
    assert facts.interlaced is case.interlaced

    audio = ds.get("MultiplexedAudioChannelsDescriptionCodeSequence", [])
    assert len(audio) == case.audio_items
    assert _audio_streams(back.extracted) == [("aac", 48000, 2)] * case.audio_items

    if case.warning:
        assert any(case.warning in w for w in result.warnings), result.warnings
    else:
        assert all(case.tolerated and case.tolerated in w for w in result.warnings), (
            result.warnings)


# --- orientation ------------------------------------------------------------------------------

@pytest.mark.parametrize(("codec", "rotation", "corner", "size"), [
    ("libx265", 90, "bottom-left", (240, 320)),
    ("libx264", 270, "top-right", (240, 320)),
    ("libx264", 180, "bottom-right", (320, 240)),
])
def test_rotation_turns_the_pixels_counter_clockwise(codec: str, rotation: int, corner: str,
                                                    size: tuple[int, int],
                                                    tmp_path: Path) -> None:
    """A display rotation of +90 is counter-clockwise (PyAV, ffmpeg autorotate): the marked
    top-left corner of the source must end up bottom-left; 270 puts it top-right."""
    source = _corner_marked_clip(tmp_path / f"marked-{rotation}.mp4", codec, rotation)
    result = convert(source, tmp_path / "x.dcm")
    assert result.plan.action == "transcode"
    back = read_back(result.files[0].path, tmp_path)
    ds = back.dataset
    assert ds.file_meta.TransferSyntaxUID == H264_41
    assert (ds.Columns, ds.Rows) == size
    assert int(ds.NumberOfFrames) == MARKED_FRAMES
    assert list(ds.ImageType) == ["DERIVED", "PRIMARY"]
    assert f"rotated {rotation} degrees counter-clockwise" in ds.DerivationDescription
    with av.open(str(back.extracted)) as container:
        frame = next(container.decode(video=0))
        assert int(frame.rotation or 0) == 0
        corners = _corner_means(frame.to_ndarray(format="gray"))
    assert corners[corner] > 200, corners
    assert all(v < 40 for k, v in corners.items() if k != corner), corners


MARKED_FRAMES = 5


def _corner_marked_clip(path: Path, codec: str, rotation: int) -> Path:
    """Black 320x240 frames with a white quarter-size square in the top-left corner."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=25)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.options = ({"preset": "ultrafast", "x265-params": "log-level=error"}
                          if codec == "libx265" else HIGH)
        stream.set_display_rotation(rotation)
        for i in range(MARKED_FRAMES):
            picture = np.zeros((240, 320, 3), np.uint8)
            picture[:60, :80] = 255
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    with av.open(str(path)) as check:
        assert int(next(check.decode(video=0)).rotation) % 360 == rotation
    return path


def _corner_means(luma: np.ndarray) -> dict[str, float]:
    h, w = luma.shape[0] // 8, luma.shape[1] // 8
    return {"top-left": float(luma[:h, :w].mean()), "top-right": float(luma[:h, -w:].mean()),
            "bottom-left": float(luma[-h:, :w].mean()),
            "bottom-right": float(luma[-h:, -w:].mean())}


# --- padding ----------------------------------------------------------------------------------

def test_odd_size_is_padded_not_cropped(clip: MakeClip, tmp_path: Path) -> None:
    """1279x719 becomes 1280x720 with one black column and row added right and bottom; every
    source pixel is still there, in place."""
    case = next(c for c in CASES if isinstance(c, Case) and c.file == "odd-1279x719.mp4")
    source = clip(case.file, case.spec)
    back = read_back(convert(source, tmp_path / "x.dcm").files[0].path, tmp_path)
    assert (back.dataset.Columns, back.dataset.Rows) == (1280, 720)
    with av.open(str(back.extracted)) as container:
        frame = next(container.decode(video=0))
        luma = frame.to_ndarray()[:frame.height].astype(np.float64)  # Y plane, video levels
    reference = _lumas(source)[0]
    assert reference.shape == (719, 1279)
    for padding in (luma[:, 1279], luma[719, :]):  # black (16), give or take coding ringing
        assert padding.mean() < 22 and padding.max() < 40, padding
    # the last source column is bright (synth's red gradient ends at 255): not cropped away
    assert luma[:719, 1278].mean() > 60
    picture = luma[:719, :1279]
    expected = 16 + reference * 219 / 255  # source luma as video levels
    assert _psnr(picture, expected) > 35


# --- timing -----------------------------------------------------------------------------------

def test_variable_frame_rate_survives_the_encoder(clip: MakeClip, tmp_path: Path) -> None:
    durations = (33, 50, 17)
    source = clip("vfr-baseline.mkv", ClipSpec(options=BASELINE, frames=30,
                                                    frame_durations_ms=durations))
    result = convert(source, tmp_path / "x.dcm")
    assert result.plan.action == "transcode"
    ds = read_back(result.files[0].path, tmp_path).dataset
    assert ds.file_meta.TransferSyntaxUID == H264_41
    assert int(ds.NumberOfFrames) == 30
    assert ds.FrameIncrementPointer == FRAME_TIME_VECTOR
    assert "FrameTime" not in ds
    vector = [float(x) for x in ds.FrameTimeVector]
    assert vector == [0.0, *(float(durations[i % 3]) for i in range(29))]
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]


# --- audio ------------------------------------------------------------------------------------

def _six_channel_clip(path: Path, sample_rate: int = 44100, frames: int = 25) -> Path:
    """H.264 High video with 5.1 AAC, which synth.AudioSpec (mono/stereo only) cannot make."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=25)
        video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
        video.options = HIGH
        audio = out.add_stream("aac", rate=sample_rate, layout="5.1")
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 9, np.uint8),
                                               format="rgb24")
            frame.pts = i
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode():
            out.mux(packet)
        total, start = sample_rate * frames // 25, 0
        while start < total:
            n = min(1024, total - start)
            t = np.arange(start, start + n) / sample_rate
            wave = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            chunk = av.AudioFrame.from_ndarray(np.tile(wave, (6, 1)), format="fltp",
                                               layout="5.1")
            chunk.sample_rate, chunk.pts, chunk.time_base = sample_rate, start, Fraction(
                1, sample_rate)
            for packet in audio.encode(chunk):
                out.mux(packet)
            start += n
        for packet in audio.encode():
            out.mux(packet)
    return path


@pytest.mark.parametrize("layout", ["stereo-44k1", "5.1-44k1"])
def test_audio_only_transcode_keeps_the_video_copied(layout: str, clip: MakeClip,
                                                     tmp_path: Path) -> None:
    if layout == "stereo-44k1":
        source = clip("high-aac44k1.mp4", ClipSpec(options=HIGH, frames=25,
                                                        audio=AudioSpec(sample_rate=44100)))
    else:
        source = _six_channel_clip(tmp_path / "high-aac51.mp4")
    assert _audio_streams(source)[0][1:] == ((44100, 2) if layout == "stereo-44k1"
                                             else (44100, 6))
    result = convert(source, tmp_path / "x.dcm")
    assert result.plan.action == "copy"
    assert result.plan.video_target is None
    assert [a.transcode_to for a in result.plan.audio] == ["aac"]
    assert result.transcode is None  # only audio re-encoded: the video counts as copied (issue 12)
    back = read_back(result.files[0].path, tmp_path)
    ds = back.dataset
    assert ds.file_meta.TransferSyntaxUID == H264_41
    assert int(ds.NumberOfFrames) == 25
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]
    assert coded_pictures(back.extracted) == coded_pictures(source), "video was not copied"
    items = ds.MultiplexedAudioChannelsDescriptionCodeSequence
    assert [item.ChannelMode for item in items] == ["STEREO"]
    assert _audio_streams(back.extracted) == [("aac", 48000, 2)]
    assert _audio_seconds(back.extracted) == pytest.approx(_audio_seconds(source), abs=0.06)


def _audio_seconds(path: Path) -> float:
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return sum(f.samples for f in container.decode(stream)) / stream.codec_context.sample_rate


# --- policy -----------------------------------------------------------------------------------

def test_transcode_always_reencodes_a_storable_stream(clip: MakeClip,
                                                      tmp_path: Path) -> None:
    source = clip("high-always.mp4", ClipSpec(options=HIGH, frames=20))
    assert convert(source, tmp_path / "copy.dcm").plan.action == "copy"
    result = convert(source, tmp_path / "x.dcm",
                     options=Request(transcode=TranscodePolicy.ALWAYS))
    assert result.plan.action == "transcode"
    back = read_back(result.files[0].path, tmp_path)
    ds = back.dataset
    assert ds.file_meta.TransferSyntaxUID == H264_41
    assert int(ds.NumberOfFrames) == 20
    assert list(ds.ImageType) == ["ORIGINAL", "PRIMARY"]
    assert "--transcode always was requested" in ds.DerivationDescription
    assert coded_pictures(back.extracted) != coded_pictures(source)


# --- quality ----------------------------------------------------------------------------------

QUALITY_SPEC = ClipSpec(options=BASELINE)
"""synth's default picture, 320x240, 50 frames, Constrained Baseline: deterministic."""
PSNR_FLOOR_DB = 46.5
"""Measured 49.62 dB (SSIM 0.9931) at the standard quality with x264 from FFmpeg 8.1."""


def test_measured_quality_of_a_standard_transcode(clip: MakeClip, tmp_path: Path) -> None:
    source = clip("quality-baseline.mp4", QUALITY_SPEC)
    result = convert(source, tmp_path / "x.dcm", options=Request(measure_quality=True))
    back = read_back(result.files[0].path, tmp_path)
    assert int(back.dataset.NumberOfFrames) == 50
    q = result.quality
    assert q is not None
    assert q.psnr_db > PSNR_FLOOR_DB
    assert q.ssim > 0.95
    assert q.frames_compared == 20
    # the report must compare the frames that belong together: an independent luma PSNR over
    # every frame (measured 49.00 dB) agrees within 1.5 dB
    reference, coded = _lumas(source), _lumas(back.extracted)
    assert len(reference) == len(coded) == 50
    independent = float(np.mean([_psnr(a, b) for a, b in zip(reference, coded, strict=True)]))
    assert independent == pytest.approx(q.psnr_db, abs=1.5)


def test_compact_is_smaller_and_worse_than_archive(clip: MakeClip, tmp_path: Path) -> None:
    """Measured: archive 57658 bytes, 50.75 dB; compact 29913 bytes, 47.38 dB."""
    source = clip("quality-baseline.mp4", QUALITY_SPEC)
    runs: dict[Quality, ConversionResult] = {}
    for quality in (Quality.ARCHIVE, Quality.COMPACT):
        runs[quality] = convert(source, tmp_path / f"{quality}.dcm",
                                options=Request(quality=quality, measure_quality=True))
        read_back(runs[quality].files[0].path, tmp_path)
    archive, compact = runs[Quality.ARCHIVE], runs[Quality.COMPACT]
    assert compact.files[0].bitstream_bytes < archive.files[0].bitstream_bytes
    assert archive.quality is not None and compact.quality is not None
    assert archive.quality.psnr_db > compact.quality.psnr_db
    assert compact.quality.psnr_db > 40


def _lumas(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="gray").astype(np.float64) for f in container.decode(video=0)]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255.0**2 / np.mean((a - b) ** 2)))


# --- damaged input ----------------------------------------------------------------------------

DAMAGED_SPEC = ClipSpec(codec="mjpeg", pix_fmt="yuvj420p", options={}, frames=30)


def _damaged_copy(source: Path, target: Path, frames: range) -> Path:
    """Overwrite the inside of the listed frames' packets with random bytes."""
    with av.open(str(source)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    assert len(packets) == DAMAGED_SPEC.frames and all(pos > 0 for pos, _ in packets)
    data = bytearray(source.read_bytes())
    rng = np.random.default_rng(5)
    for index in frames:
        pos, size = packets[index]
        data[pos:pos + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    target.write_bytes(bytes(data))
    return target


def test_damaged_frames_are_dropped_and_reported(clip: MakeClip, tmp_path: Path) -> None:
    clean = clip("mjpeg-30.avi", DAMAGED_SPEC)
    source = _damaged_copy(clean, tmp_path / "damaged.avi", range(12, 16))
    result = convert(source, tmp_path / "x.dcm")
    assert result.plan.action == "transcode"
    stats = result.transcode
    assert stats is not None
    assert stats.packets_in == 30
    assert stats.lost_frames == 4
    assert stats.frames_out == 26
    assert any("4 of 30 frames could not be decoded" in w for w in result.warnings), (
        result.warnings)
    ds = read_back(result.files[0].path, tmp_path).dataset
    assert int(ds.NumberOfFrames) == 26
    assert ds.file_meta.TransferSyntaxUID == H264_41


def test_all_frames_damaged_is_an_input_error(clip: MakeClip, tmp_path: Path) -> None:
    clean = clip("mjpeg-30.avi", DAMAGED_SPEC)
    source = _damaged_copy(clean, tmp_path / "garbage.avi", range(30))
    folder = tmp_path / "out"
    folder.mkdir()
    with pytest.raises(InputError) as caught:
        convert(source, folder / "x.dcm")
    assert caught.value.exit_code == 3
    assert list(folder.iterdir()) == []


# --- command line -----------------------------------------------------------------------------

def _cli(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *map(str, args)],
                          capture_output=True, text=True, timeout=120, check=False)


def test_cli_measure_quality_prints_psnr(clip: MakeClip, tmp_path: Path) -> None:
    source = clip("quality-baseline.mp4", QUALITY_SPEC)
    proc = _cli("convert", source, "-o", tmp_path / "x.dcm", "--measure-quality")
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"^quality: PSNR (\d+\.\d+) dB, SSIM (\d\.\d+)", proc.stdout, re.M)
    assert match, proc.stdout
    assert float(match[1]) > PSNR_FLOOR_DB and float(match[2]) > 0.95
    assert re.search(r"^transcoded 50 frames at [\d.]+ fps$", proc.stdout, re.M), proc.stdout
    assert int(read_back(tmp_path / "x.dcm", tmp_path).dataset.NumberOfFrames) == 50


def test_cli_convert_json_has_transcode_stats(clip: MakeClip, tmp_path: Path) -> None:
    source = clip("quality-baseline.mp4", QUALITY_SPEC)
    proc = _cli("convert", source, "-o", tmp_path / "x.dcm", "--json", "--measure-quality")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["action"] == "transcode"
    stats = report["transcode"]
    assert stats["packets_in"] == stats["frames_out"] == 50
    assert stats["lost_frames"] == 0 and stats["damaged_packets"] == 0
    assert stats["frames_per_second"] > 0
    assert report["quality"]["psnr_db"] > PSNR_FLOOR_DB
    assert report["files"][0]["transfer_syntax_uid"] == H264_41


def test_cli_probe_json_shows_the_video_target(clip: MakeClip) -> None:
    proc = _cli("probe", clip("quality-baseline.mp4", QUALITY_SPEC), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert plan["action"] == "transcode"
    assert plan["transfer_syntax_uid"] == H264_41
    target = plan["video_target"]
    assert target["encoder"] == "libx264"
    assert (target["width"], target["height"]) == (320, 240)
    assert target["level"] == "4.1"


# --- regressions ------------------------------------------------------------------------------

@pytest.mark.parametrize("frames", [1, 2])
def test_hevc_transcode_of_a_clip_shorter_than_the_b_frame_delay(frames: int,
                                                                  clip: MakeClip,
                                                                  tmp_path: Path) -> None:
    """320x240 at 2000 fps (a high-speed camera) is beyond H.264 Level 4.2, so HEVC. x265 leaves
    the DTS of the first packets undefined when a clip ends inside its B-frame delay: before the
    fix about half of all 2-frame conversions (a quarter of 1-frame ones) failed in the muxer
    ("pts (0) < dts (7595718147998050666)"). 20 tries make a pass by luck unlikely."""
    source = clip(f"highspeed-{frames}frames.mp4", ClipSpec(rate=Fraction(2000),
                                                                 frames=frames, options=HIGH))
    for attempt in range(20):
        result = convert(source, tmp_path / f"x{attempt}.dcm")
        assert result.files[0].transfer_syntax_uid == HEVC_51
        assert result.files[0].frames == frames
    back = read_back(result.files[0].path, tmp_path)
    assert int(back.dataset.NumberOfFrames) == frames


def test_full_range_source_is_converted_to_limited_range(clip: MakeClip,
                                                         tmp_path: Path) -> None:
    """A full-range (yuvj420p) MJPEG source must have its samples converted to video levels,
    not copied into a YBR_PARTIAL_420 stream (before the fix: white stayed at Y=255 and the
    measured PSNR against the source was 30 dB)."""
    source = clip("mjpeg-30.avi", DAMAGED_SPEC)
    result = convert(source, tmp_path / "x.dcm", options=Request(measure_quality=True))
    back = read_back(result.files[0].path, tmp_path)
    with av.open(str(back.extracted)) as container:
        stream = container.streams.video[0]
        frame = next(container.decode(stream))
        full_range = stream.codec_context.color_range == 2
        luma = frame.to_ndarray()[:frame.height]
    assert back.dataset.PhotometricInterpretation == "YBR_PARTIAL_420"
    assert not full_range
    # synth's white bar is Y=255 in JPEG levels, which is 235 in video levels
    assert 225 <= int(luma.max()) <= 240, int(luma.max())
    assert result.quality is not None and result.quality.psnr_db > 40


def test_no_full_range_warning_once_the_samples_are_converted(clip: MakeClip,
                                                              tmp_path: Path) -> None:
    result = convert(clip("mjpeg-30.avi", DAMAGED_SPEC), tmp_path / "x.dcm")
    assert result.plan.action == "transcode"
    assert not any("full-range" in w for w in result.warnings), result.warnings


def test_full_range_warning_when_a_full_range_stream_is_copied(clip: MakeClip,
                                                               tmp_path: Path) -> None:
    """The copy path cannot convert: there the warning is true and must stay."""
    source = clip("high-fullrange.mp4", ClipSpec(pix_fmt="yuvj420p", options=HIGH,
                                                      frames=10))
    result = convert(source, tmp_path / "x.dcm")
    assert result.plan.action == "copy"
    read_back(result.files[0].path, tmp_path)
    assert any("full-range (JPEG levels)" in w for w in result.warnings), result.warnings


# --- helpers ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VideoFacts:
    codec: str
    profile: str | None
    pix_fmt: str
    sar: Fraction | None
    rotation: int
    interlaced: bool


def _video_facts(path: Path) -> VideoFacts:
    """Stream facts of an extracted bitstream and of its first decoded picture."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        cc = stream.codec_context
        frame = next(container.decode(stream))
        sar = cc.sample_aspect_ratio
        return VideoFacts(cc.name, cc.profile, frame.format.name,
                          Fraction(sar) if sar else None, int(frame.rotation or 0),
                          bool(frame.interlaced_frame))


def _audio_streams(path: Path) -> list[tuple[str, int, int]]:
    with av.open(str(path)) as container:
        return [(s.codec_context.name, s.codec_context.sample_rate, s.codec_context.channels)
                for s in container.streams.audio]

