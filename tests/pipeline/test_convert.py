"""The copy path end to end: each kind of input the field sends, converted and read back by
independent tools, with the copied pictures compared bit for bit against the source."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path

import av
import pydicom
import pytest

from conftest import MakeClip
from readback import coded_pictures, read_back
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import ContainerChoice, Request
from vid2dcm.producing.synth import AudioSpec, ClipSpec

HIGH = {"preset": "superfast", "profile": "high"}
FRAGMENTED = {"movflags": "frag_keyframe+empty_moov+default_base_moof"}
X265 = {"preset": "ultrafast"}


@dataclass(frozen=True)
class Case:
    file: str
    spec: ClipSpec
    syntax: str
    request: Request = field(default_factory=Request)
    audio_items: int = 0
    payload: str = "mp4"


CASES = [
    Case("h264.mp4", ClipSpec(options=HIGH), "1.2.840.10008.1.2.4.102"),
    Case("h264.mov", ClipSpec(options=HIGH), "1.2.840.10008.1.2.4.102"),
    Case("h264.mkv", ClipSpec(options=HIGH), "1.2.840.10008.1.2.4.102"),
    Case("h264.ts", ClipSpec(options=HIGH), "1.2.840.10008.1.2.4.102"),
    Case("h264-frag.mp4", ClipSpec(options={**HIGH, "g": "10"},
                                   container_options=FRAGMENTED), "1.2.840.10008.1.2.4.102"),
    Case("h264.h264", ClipSpec(options={**HIGH, "bframes": "3"}), "1.2.840.10008.1.2.4.102"),
    Case("h264.avi", ClipSpec(options={**HIGH, "bframes": "0"}), "1.2.840.10008.1.2.4.102"),
    Case("h264-aac.mp4", ClipSpec(options=HIGH, audio=AudioSpec()), "1.2.840.10008.1.2.4.102",
         audio_items=1),
    Case("h264-aac44k.mkv", ClipSpec(options=HIGH, audio=AudioSpec(sample_rate=44100)),
         "1.2.840.10008.1.2.4.102", audio_items=1),
    Case("h264-aac-to-ts.mp4", ClipSpec(options=HIGH, audio=AudioSpec(channels=1)),
         "1.2.840.10008.1.2.4.102", Request(container=ContainerChoice.TS), 1, "mpegts"),
    Case("h264-noaudio.mp4", ClipSpec(options=HIGH, audio=AudioSpec()),
         "1.2.840.10008.1.2.4.102", Request(audio=False)),
    Case("h264-2frames.mp4", ClipSpec(options=HIGH, frames=2), "1.2.840.10008.1.2.4.102"),
    Case("h264-vfr.mkv", ClipSpec(options=HIGH, frame_durations_ms=(33, 50, 17)),
         "1.2.840.10008.1.2.4.102"),
    Case("h264-1080p60.mp4", ClipSpec(options={**HIGH, "level": "4.2"}, width=1920,
                                      height=1080, rate=Fraction(60), frames=12),
         "1.2.840.10008.1.2.4.104"),
    Case("h264-1080i25-bd.ts", ClipSpec(options={**HIGH, "x264-params": "interlaced=1:tff=1"},
                                        width=1920, height=1080, frames=8, interlaced=True),
         "1.2.840.10008.1.2.4.103"),
    Case("h264-endoscopic.mp4", ClipSpec(options=HIGH), "1.2.840.10008.1.2.4.102",
         Request(sop=SopChoice.ENDOSCOPIC)),
    Case("h264-microscopic.mp4", ClipSpec(options=HIGH), "1.2.840.10008.1.2.4.102",
         Request(sop=SopChoice.MICROSCOPIC)),
    Case("hevc-hev1.mp4", ClipSpec(codec="libx265", options=X265), "1.2.840.10008.1.2.4.107"),
    Case("hevc-hvc1.mov", ClipSpec(codec="libx265", options=X265, codec_tag="hvc1"),
         "1.2.840.10008.1.2.4.107"),
    Case("hevc-hvc1.mp4", ClipSpec(codec="libx265", options=X265, codec_tag="hvc1",
                                   audio=AudioSpec()), "1.2.840.10008.1.2.4.107", audio_items=1),
    Case("hevc.ts", ClipSpec(codec="libx265", options=X265), "1.2.840.10008.1.2.4.107",
         Request(container=ContainerChoice.TS), payload="mpegts"),
    Case("hevc-raw.hevc", ClipSpec(codec="libx265", options=X265), "1.2.840.10008.1.2.4.107"),
    Case("mpeg2-raw.m2v", ClipSpec(codec="mpeg2video", options={}, width=720, height=576,
                                   container_format="mpeg2video"),
         "1.2.840.10008.1.2.4.100", payload="mpegts"),
    Case("mpeg2-pal.mpg", ClipSpec(codec="mpeg2video", options={}, width=720, height=576,
                                   container_format="vob", frames=25),
         "1.2.840.10008.1.2.4.100", payload="mpeg"),
    Case("mpeg2-ntsc.mpg", ClipSpec(codec="mpeg2video", options={}, width=720, height=480,
                                    rate=Fraction(30000, 1001), container_format="vob",
                                    frames=30, audio=AudioSpec(codec="mp3", sample_rate=48000)),
         "1.2.840.10008.1.2.4.100", audio_items=1, payload="mpeg"),
    Case("mpeg2-1080i.ts", ClipSpec(codec="mpeg2video", options={}, width=1920, height=1080,
                                    frames=10, interlaced=True, bit_rate=15_000_000),
         "1.2.840.10008.1.2.4.101", payload="mpegts"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.file for c in CASES])
def test_copy_path(case: Case, make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip(case.file, case.spec)
    before = _sha(source)
    result = convert(source, tmp_path / "out.dcm", options=case.request,
                     metadata=Metadata(patient_id="T1"))
    assert _sha(source) == before, "the input was modified"
    assert len(result.files) == 1
    written = result.files[0]
    assert written.transfer_syntax_uid == case.syntax
    assert written.action == "copy"

    back = read_back(written.path, tmp_path)
    ds = back.dataset
    assert ds.file_meta.TransferSyntaxUID == case.syntax
    assert ds.SOPClassUID == result.plan.iod.sop_class_uid
    assert ds.Modality == result.plan.iod.modality
    assert int(ds.NumberOfFrames) == case.spec.frames == result.source.video.timing.frame_count
    assert (ds.Rows, ds.Columns) == (case.spec.height, case.spec.width)
    audio = ds.get("MultiplexedAudioChannelsDescriptionCodeSequence", [])
    assert len(audio) == case.audio_items
    with av.open(str(back.extracted)) as payload:
        assert payload.format.name.split(",")[0] in (case.payload, "mov")
        assert len(payload.streams.audio) == case.audio_items
        if case.payload == "mp4":
            assert payload.metadata.get("major_brand", "").strip() != "qt"
    assert coded_pictures(back.extracted) == coded_pictures(source), "pictures differ"


def test_frame_timing_attributes(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("ntsc-timing.mp4", ClipSpec(options=HIGH, rate=Fraction(30000, 1001),
                                                  frames=30))
    ds = _convert_and_read(source, tmp_path)
    assert ds.FrameIncrementPointer == (0x0018, 0x1063)
    assert float(ds.FrameTime) == pytest.approx(1001 / 30, abs=1e-4)
    assert ds.CineRate == 30 and ds.RecommendedDisplayFrameRate == 30
    assert float(ds.EffectiveDuration) == pytest.approx(30 * 1001 / 30000, abs=1e-3)
    assert ds.LossyImageCompression == "01"
    assert ds.LossyImageCompressionMethod == "ISO_14496_10"
    assert "EncapsulatedPixelDataValueTotalLength" not in ds  # one fragment: see writer


def test_variable_frame_rate_gets_frame_time_vector(make_clip: MakeClip, tmp_path: Path) -> None:
    durations = (33, 50, 17)
    source = make_clip("vfr.mkv", ClipSpec(options=HIGH, frame_durations_ms=durations,
                                           frames=30))
    ds = _convert_and_read(source, tmp_path)
    assert ds.FrameIncrementPointer == (0x0018, 0x1065)
    vector = [float(x) for x in ds.FrameTimeVector]
    assert len(vector) == int(ds.NumberOfFrames) == 30
    assert vector[0] == 0
    assert vector[1:] == [float(durations[i % 3]) for i in range(29)]


def test_raw_h264_with_b_frames_keeps_display_order(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("bframes.h264", ClipSpec(options={**HIGH, "bframes": "3",
                                                          "b-pyramid": "normal"}, frames=40))
    reference = make_clip("bframes.mp4", ClipSpec(options={**HIGH, "bframes": "3",
                                                            "b-pyramid": "normal"}, frames=40))
    result = convert(source, tmp_path / "raw.dcm")
    back = read_back(result.files[0].path, tmp_path)
    assert _frame_hashes(back.extracted) == _frame_hashes(reference)


def test_file_meta_and_modules(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("meta.mp4", ClipSpec(options=HIGH))
    meta = Metadata(patient_name="Doe^Jane", patient_id="P42", accession_number="ACC1",
                    uid_root="1.2.826.0.1.3680043.10.999", series_description="left knee")
    result = convert(source, tmp_path / "m.dcm", metadata=meta)
    ds = pydicom.dcmread(result.files[0].path, stop_before_pixels=True)
    assert ds.PatientName == "Doe^Jane" and ds.PatientID == "P42"
    assert ds.AccessionNumber == "ACC1"
    assert ds.SOPInstanceUID.startswith("1.2.826.0.1.3680043.10.999.")
    assert ds.StudyInstanceUID == result.study_instance_uid
    assert ds.AnatomicRegionSequence[0].CodeValue == "123037004"
    assert ds.ImageType == ["ORIGINAL", "PRIMARY"]
    assert ds.PhotometricInterpretation == "YBR_PARTIAL_420"
    assert "PixelAspectRatio" not in ds
    assert ds.AcquisitionContextSequence == []


def _convert_and_read(source: Path, tmp_path: Path) -> pydicom.Dataset:
    result = convert(source, tmp_path / (source.stem + ".dcm"))
    return read_back(result.files[0].path, tmp_path).dataset


def _frame_hashes(path: Path) -> list[str]:
    with av.open(str(path)) as container:
        return [hashlib.md5(bytes(f.to_ndarray())).hexdigest()
                for f in container.decode(video=0)]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(("codec", "options", "fragmentable", "syntax"), [
    ("libx264", {**HIGH, "g": "10"}, True, "1.2.840.10008.1.2.4.102.1"),
    ("libx265", {**X265, "g": "10"}, False, "1.2.840.10008.1.2.4.107"),
])
def test_one_instance_over_several_fragments(codec: str, options: dict[str, str],
                                            fragmentable: bool, syntax: str,
                                            make_clip: MakeClip, tmp_path: Path) -> None:
    """HEVC may span fragments by itself; H.264 only with --fragmentable (the .1 syntaxes)."""
    source = make_clip(f"noise-{codec}.mp4", ClipSpec(codec=codec, options=options, noise=True,
                                                       frames=30))
    limit = source.stat().st_size // 3
    result = convert(source, tmp_path / "frag.dcm",
                     options=Request(fragmentable=fragmentable, max_item_bytes=limit))
    assert [f.transfer_syntax_uid for f in result.files] == [syntax]
    back = read_back(result.files[0].path, tmp_path)
    assert back.dcmdump.count("pi (not loaded)") >= 3, "expected several fragments"
    assert coded_pictures(back.extracted) == coded_pictures(source)


def test_recording_time_comes_from_the_container(make_clip: MakeClip, tmp_path: Path) -> None:
    source = make_clip("dated.mp4", ClipSpec(
        options=HIGH, container_metadata={"creation_time": "2024-05-01T10:20:30.000000Z"}))
    ds = _convert_and_read(source, tmp_path)
    local = datetime(2024, 5, 1, 10, 20, 30, tzinfo=UTC).astimezone().replace(tzinfo=None)
    assert ds.AcquisitionDateTime.startswith(local.strftime("%Y%m%d%H%M%S"))
    assert ds.ContentDate == ds.StudyDate == local.strftime("%Y%m%d")
    assert ds.ContentTime.startswith(local.strftime("%H%M%S"))


def test_without_a_recording_time_content_time_is_the_conversion(make_clip: MakeClip,
                                                                 tmp_path: Path) -> None:
    ds = _convert_and_read(make_clip("undated.mp4", ClipSpec(options=HIGH)), tmp_path)
    assert "AcquisitionDateTime" not in ds
    assert ds.ContentDate == datetime.now().strftime("%Y%m%d")


def test_one_pass_route_and_its_fallback(make_clip: MakeClip, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Constant-rate copies are muxed straight into the DICOM file (no spool); when the room
    reserved for the MP4 index is too small the spool route still delivers the same pictures."""
    import vid2dcm.pipeline as conversion
    import vid2dcm.producing.copy as copying

    source = make_clip("one-pass.mp4", ClipSpec(options=HIGH, audio=AudioSpec()))
    calls: list[bool] = []
    real = copying.copy_packets

    def spy(*args: object, **kwargs: object) -> object:
        calls.append(kwargs.get("sink") is not None or kwargs.get("parts") is not None)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(conversion, "copy_packets", spy)
    one = convert(source, tmp_path / "one.dcm").files[0]
    assert calls == [True]
    monkeypatch.setattr(copying, "moov_reserve", lambda info, segment=None: 100)
    calls.clear()
    two = convert(source, tmp_path / "two.dcm").files[0]
    assert calls == [True, False], "the spool route must take over"
    for written in (one, two):
        back = read_back(written.path, tmp_path)
        assert coded_pictures(back.extracted) == coded_pictures(source)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("root", [None, "1.2.826.0.1.3680043.10.999"])
def test_a_uid_seed_makes_reruns_write_the_same_instances(root: str | None, make_clip: MakeClip,
                                                         tmp_path: Path) -> None:
    """An interrupted gateway job is re-run; the PACS must see the same instances again."""
    source = make_clip("seeded.mp4", ClipSpec(options=HIGH))

    def uids(seed: str | None, name: str) -> tuple[str, str, str]:
        result = convert(source, tmp_path / name, metadata=Metadata(uid_root=root,
                                                                    uid_seed=seed))
        f = result.files[0]
        return result.study_instance_uid, result.series_instance_uid, f.sop_instance_uid

    first, again = uids("job-1", "a.dcm"), uids("job-1", "b.dcm")
    assert first == again
    assert len(set(first)) == 3
    assert uids("job-2", "c.dcm") != first
    assert uids(None, "d.dcm") != uids(None, "e.dcm")
    for uid in first:
        assert len(uid) <= 64 and (root is None or uid.startswith(root + "."))
