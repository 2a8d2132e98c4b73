"""One pass for every copyable stream (issue 17): variable-rate, split and multi-fragment
outputs are written straight into their DICOM files from the source's index, with no spool
copy, and read back exactly like the spool route's output."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from conftest import MakeClip
from readback import coded_pictures, read_back
from vid2dcm.pipeline import ConversionResult, convert
from vid2dcm.planning.plan import ContainerChoice, Request
from vid2dcm.probing.probe import probe
from vid2dcm.producing.synth import AudioSpec, ClipSpec

HIGH = {"preset": "superfast", "profile": "high"}
X265 = {"preset": "ultrafast"}
PHONE_MS = (33,) * 7 + (34,) + (33,) * 5 + (67,)
"""A phone's frame intervals: mostly 33 ms, a 34 ms rounding step, and a dropped frame."""
HEADER_KEYS = ("NumberOfFrames", "FrameTime", "FrameTimeVector", "FrameIncrementPointer",
               "CineRate", "RecommendedDisplayFrameRate", "EffectiveDuration", "StopTrim",
               "LossyImageCompressionRatio", "Rows", "Columns", "InstanceNumber",
               "MultiplexedAudioChannelsDescriptionCodeSequence")


class Spy:
    """Records every copy_packets call: where its containers went."""

    def __init__(self) -> None:
        self.calls: list[str] = []


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spy]:
    import vid2dcm.pipeline as conversion

    record = Spy()
    real = conversion.copy_packets

    def watched(*args: Any, **kwargs: Any) -> Any:
        out_dir = args[4] if len(args) > 4 else kwargs.get("out_dir")
        record.calls.append("spool" if out_dir is not None else "in place")
        return real(*args, **kwargs)

    monkeypatch.setattr(conversion, "copy_packets", watched)
    yield record


def _no_spool(spy: Spy, out: Path) -> None:
    assert spy.calls == ["in place"], spy.calls
    assert not [p for p in out.iterdir() if p.name.startswith(".vid2dcm-") or
                p.suffix == ".partial"], "a spool folder or partial file was left"


def _spooled(source: Path, out: Path, options: Request,
             monkeypatch: pytest.MonkeyPatch) -> ConversionResult:
    """The same conversion through the spool route, whose headers are measured afterwards."""
    import vid2dcm.pipeline as conversion

    with monkeypatch.context() as m:
        m.setattr(conversion, "_one_pass", lambda info, plan: False)
        return convert(source, out, options=options)


def _same_headers(one: ConversionResult, two: ConversionResult) -> None:
    assert len(one.files) == len(two.files)
    for a, b in zip(one.files, two.files, strict=True):
        da = pydicom.dcmread(a.path, stop_before_pixels=True)
        db = pydicom.dcmread(b.path, stop_before_pixels=True)
        for key in HEADER_KEYS:
            assert da.get(key) == db.get(key), (a.path.name, key, da.get(key), db.get(key))
        assert da.file_meta.TransferSyntaxUID == db.file_meta.TransferSyntaxUID


@pytest.mark.parametrize(("name", "spec"), [
    ("phone-vfr.mp4", ClipSpec(options={**HIGH, "bframes": "3"}, frame_durations_ms=PHONE_MS,
                               frames=45, audio=AudioSpec())),
    ("phone-vfr.mov", ClipSpec(options={**HIGH, "bframes": "0"}, frame_durations_ms=PHONE_MS,
                               frames=45)),
])
def test_variable_rate_is_written_in_one_pass(name: str, spec: ClipSpec, make_clip: MakeClip,
                                              tmp_path: Path, spy: Spy,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_clip(name, spec)
    out = tmp_path / "one"
    out.mkdir()
    result = convert(source, out / "vfr.dcm")
    _no_spool(spy, out)
    back = read_back(result.files[0].path, tmp_path)
    ds = back.dataset
    assert ds.FrameIncrementPointer == (0x0018, 0x1065)
    vector = [float(x) for x in ds.FrameTimeVector]
    assert vector == [0.0, *(float(PHONE_MS[i % len(PHONE_MS)]) for i in range(44))]
    # the stored container plays with exactly the intervals the header states
    stored = probe(back.extracted).video.timing
    assert stored.frame_deltas_ms == pytest.approx(vector[1:], abs=1e-9)
    assert coded_pictures(back.extracted) == coded_pictures(source)
    _same_headers(result, _spooled(source, tmp_path / "spooled.dcm", Request(), monkeypatch))


def test_split_output_is_written_in_one_pass(make_clip: MakeClip, tmp_path: Path, spy: Spy,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    source = make_clip("split-one-pass.mp4", ClipSpec(
        options={**HIGH, "g": "10"}, noise=True, frames=40, audio=AudioSpec(),
        container_metadata={"creation_time": "2024-05-01T10:20:30.000000Z"}))
    options = Request(max_item_bytes=source.stat().st_size // 3)
    out = tmp_path / "one"
    out.mkdir()
    result = convert(source, out / "split.dcm", options=options)
    _no_spool(spy, out)
    assert len(result.files) >= 3
    pictures: list[bytes] = []
    previous = None
    for written in result.files:
        back = read_back(written.path, tmp_path)
        assert back.decoded_frames == written.frames
        assert written.bitstream_bytes <= options.max_item_bytes
        if previous is not None:
            assert back.dataset.ReferencedImageSequence[0].ReferencedSOPInstanceUID == previous
        previous = written.sop_instance_uid
        pictures += coded_pictures(back.extracted)
    assert pictures == coded_pictures(source)
    assert sum(f.frames for f in result.files) == 40
    spooled = _spooled(source, tmp_path / "spooled.dcm", options, monkeypatch)
    _same_headers(result, spooled)
    for a, b in zip(result.files, spooled.files, strict=True):
        da, db = (pydicom.dcmread(f.path, stop_before_pixels=True) for f in (a, b))
        assert da.AcquisitionDateTime == db.AcquisitionDateTime


@pytest.mark.parametrize(("codec", "options", "fragmentable", "syntax"), [
    ("libx264", {**HIGH, "g": "10"}, True, "1.2.840.10008.1.2.4.102.1"),
    ("libx265", {**X265, "g": "10"}, False, "1.2.840.10008.1.2.4.107"),
])
def test_several_fragments_are_written_in_one_pass(codec: str, options: dict[str, str],
                                                   fragmentable: bool, syntax: str,
                                                   make_clip: MakeClip, tmp_path: Path,
                                                   spy: Spy) -> None:
    source = make_clip(f"frag-one-pass-{codec}.mp4", ClipSpec(
        codec=codec, options=options, noise=True, frames=30, audio=AudioSpec()))
    limit = source.stat().st_size // 3
    out = tmp_path / "one"
    out.mkdir()
    result = convert(source, out / "frag.dcm",
                     options=Request(fragmentable=fragmentable, max_item_bytes=limit))
    _no_spool(spy, out)
    written = result.files[0]
    assert [f.transfer_syntax_uid for f in result.files] == [syntax]
    back = read_back(written.path, tmp_path)
    assert back.dcmdump.count("pi (not loaded)") >= 4, "expected several fragments"
    assert int(back.dataset.EncapsulatedPixelDataValueTotalLength) == written.bitstream_bytes
    assert back.extracted.stat().st_size == written.bitstream_bytes
    assert coded_pictures(back.extracted) == coded_pictures(source)


def test_fragmentable_in_one_fragment(make_clip: MakeClip, tmp_path: Path, spy: Spy) -> None:
    source = make_clip("fragmentable-small.mp4", ClipSpec(options=HIGH))
    out = tmp_path / "one"
    out.mkdir()
    result = convert(source, out / "f.dcm", options=Request(fragmentable=True))
    _no_spool(spy, out)
    assert result.files[0].transfer_syntax_uid == "1.2.840.10008.1.2.4.102.1"
    back = read_back(result.files[0].path, tmp_path)
    assert "EncapsulatedPixelDataValueTotalLength" not in back.dataset


@pytest.mark.parametrize(("name", "spec", "options"), [
    ("recorder-vfr.mkv", ClipSpec(options=HIGH, frame_durations_ms=(33, 50, 17), frames=30),
     Request()),
    ("vfr-to-ts.mp4", ClipSpec(options=HIGH, frame_durations_ms=PHONE_MS, frames=20),
     Request(container=ContainerChoice.TS)),
    ("raw.h264", ClipSpec(options={**HIGH, "bframes": "2"}, frames=20), Request()),
])
def test_streams_the_index_cannot_time_keep_the_spool_route(
        name: str, spec: ClipSpec, options: Request, make_clip: MakeClip, tmp_path: Path,
        spy: Spy) -> None:
    """Matroska's rate estimate differs from the MP4 copy's, a transport stream's 90 kHz clock
    may round variable intervals, and a raw stream has no timestamps until the muxer makes
    them: all are measured after writing."""
    source = make_clip(name, spec)
    result = convert(source, tmp_path / "spooled.dcm", options=options)
    assert spy.calls == ["spool"]
    read_back(result.files[0].path, tmp_path)


def test_a_failed_part_hands_every_part_to_the_spool_route(make_clip: MakeClip, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    """The second part's MP4 index outgrows its reserved room after the first part was
    finished: the finished part is removed, and the spool route writes them all."""
    import vid2dcm.pipeline as conversion
    import vid2dcm.producing.copy as copying

    source = make_clip("split-one-pass.mp4", ClipSpec(
        options={**HIGH, "g": "10"}, noise=True, frames=40, audio=AudioSpec(),
        container_metadata={"creation_time": "2024-05-01T10:20:30.000000Z"}))
    options = Request(max_item_bytes=source.stat().st_size // 3)
    real_reserve = copying.moov_reserve
    monkeypatch.setattr(copying, "moov_reserve", lambda info, segment=None: 100 if (
        segment is not None and segment.first_frame > 0) else real_reserve(info, segment))
    real_copy = conversion.copy_packets
    routes: list[str] = []
    out = tmp_path / "out"
    out.mkdir()

    def watched(*args: Any, **kwargs: Any) -> Any:
        spool = (args[4] if len(args) > 4 else kwargs.get("out_dir")) is not None
        routes.append("spool" if spool else "in place")
        if spool:
            assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [], \
                "the one-pass route left files behind"
        return real_copy(*args, **kwargs)

    monkeypatch.setattr(conversion, "copy_packets", watched)
    result = convert(source, out / "split.dcm", options=options)
    assert routes == ["in place", "spool"]
    assert len(result.files) >= 3
    assert sorted(p.name for p in out.iterdir()) == sorted(f.path.name for f in result.files)
    pictures: list[bytes] = []
    for written in result.files:
        pictures += coded_pictures(read_back(written.path, tmp_path).extracted)
    assert pictures == coded_pictures(source)
