"""Issue 10: every valid video converts and every number in the header is right.

One focused test per failure class (inputs made with the Debian ffmpeg, each reproducing the
class first), issue 12's media items, and a fast seeded slice of the randomised corpus
(tests/robustness_corpus.py; the >= 1000-case run is `make robustness`).
"""

from __future__ import annotations

import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pydicom
import pytest

from readback import read_back
from robustness_corpus import draw_cases, run_case
from vid2dcm.apps.watch import free_output, process
from vid2dcm.core import levels
from vid2dcm.core import syntaxes as ts
from vid2dcm.core.conformance import choose_transfer_syntax
from vid2dcm.core.media_info import FrameTiming, VideoStreamInfo
from vid2dcm.core.metadata import Metadata
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Action, Request, plan_conversion
from vid2dcm.planning.video_target import choose_video_target
from vid2dcm.probing.probe import probe
from vid2dcm.reading.reader import extract_bitstream

FFMPEG = ["ffmpeg", "-nostdin", "-v", "error", "-y"]


def ffmpeg(*args: str) -> None:
    subprocess.run([*FFMPEG, *args], check=True, capture_output=True, timeout=120)


def make_testsrc(size: str = "64x48", rate: str = "25", seconds: float = 1.0) -> list[str]:
    return ["-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}:duration={seconds}"]


def decoded_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(c.streams.video[0]))


def header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


# --- class 1: AVI index entries without coded pictures ----------------------------------------

@pytest.mark.parametrize("codec", ["ffv1", "mpeg4", "libx264", "rawvideo"])
def test_avi_null_frames_become_longer_frame_times(tmp_path: Path, codec: str) -> None:
    source = tmp_path / f"drops-{codec}.avi"
    ffmpeg(*make_testsrc(), "-vf", "select='not(between(n,5,10))'", "-fps_mode", "passthrough",
           "-c:v", codec, "-pix_fmt", "yuv420p", str(source))
    with av.open(str(source)) as c:
        assert c.streams.video[0].frames == 25  # the index lists every slot
    assert decoded_frames(source) == 19
    info = probe(source)
    assert info.video.timing.frame_count == 19
    assert info.video.timing.null_frames == 6
    assert "null" in info.video.timing.count_source
    result = convert(source, tmp_path / "out.dcm")
    back = read_back(result.files[0].path, tmp_path)
    assert back.decoded_frames == 19
    vector = [float(x) for x in back.dataset.FrameTimeVector]
    assert len(vector) == 19 and vector[0] == 0
    assert max(vector) == pytest.approx(7 * 40, abs=0.01)  # frame 4 stays up for 7 slots
    assert sum(vector) == pytest.approx(24 * 40, abs=0.05)


# --- class 2: truncated but readable ------------------------------------------------------------

def test_truncated_mp4_is_salvaged_exactly_with_a_warning(tmp_path: Path) -> None:
    full = tmp_path / "full.mp4"
    ffmpeg(*make_testsrc(seconds=4), "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "10",
           "-movflags", "+faststart", str(full))
    cut = tmp_path / "cut.mp4"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) * 6 // 10])
    before = cut.read_bytes()
    result = convert(cut, tmp_path / "cut.dcm")
    assert cut.read_bytes() == before  # input untouched
    back = read_back(result.files[0].path, tmp_path)
    assert 0 < back.decoded_frames < 100
    assert any("truncated" in w and "100" in w for w in result.warnings)


def test_nothing_decodable_is_refused_in_one_line(tmp_path: Path) -> None:
    full = tmp_path / "full.mp4"
    ffmpeg(*make_testsrc(), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(full))  # moov at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[:600])
    from vid2dcm.core.errors import InputError
    with pytest.raises(InputError) as err:
        convert(cut, tmp_path / "cut.dcm")
    assert "\n" not in str(err.value)
    assert not (tmp_path / "cut.dcm").exists()


# --- class 3: what the planner chose is never rejected by the re-plan -----------------------

def test_bd_size_transcode_is_accepted_as_bd_compatible(tmp_path: Path) -> None:
    source = tmp_path / "mjpeg720p50.mov"
    ffmpeg(*make_testsrc("1280x720", "50", 0.2), "-c:v", "mjpeg", "-q:v", "8", str(source))
    result = convert(source, tmp_path / "bd.dcm")
    assert result.plan.action is Action.TRANSCODE
    assert result.files[0].transfer_syntax_uid == ts.H264_HP41_BD.uid
    read_back(result.files[0].path, tmp_path)


# --- class 4: transcodes of AVI inputs ----------------------------------------------------------

@pytest.mark.parametrize("codec", ["rawvideo", "mpeg4", "mjpeg"])
def test_avi_with_ac3_transcodes(tmp_path: Path, codec: str) -> None:
    source = tmp_path / f"{codec}-ac3.avi"
    ffmpeg(*make_testsrc(), "-f", "lavfi", "-i", "sine=duration=1", "-c:v", codec,
           "-pix_fmt", "yuvj420p" if codec == "mjpeg" else "yuv420p",
           "-c:a", "ac3", "-ar", "48000", str(source))
    result = convert(source, tmp_path / "out.dcm")
    back = read_back(result.files[0].path, tmp_path)
    assert back.decoded_frames == 25
    assert float(back.dataset.FrameTime) == pytest.approx(40.0)


# --- class 5: MJPEG in Matroska is a video ------------------------------------------------------

def test_mjpeg_in_matroska_is_a_video(tmp_path: Path) -> None:
    source = tmp_path / "mjpeg.mkv"
    ffmpeg(*make_testsrc(), "-c:v", "mjpeg", str(source))
    result = convert(source, tmp_path / "out.dcm")
    assert read_back(result.files[0].path, tmp_path).decoded_frames == 25


# --- class 6 (+ issue 12 item 6): millisecond time bases ----------------------------------------

@pytest.mark.parametrize(("container", "codec", "rate", "frame_time"), [
    ("mkv", "libx264", "30", "33.3333"),
    ("mkv", "libx264", "60", "16.6667"),
    ("mkv", "libx264", "30000/1001", "33.3667"),
    ("webm", "libvpx", "30", "33.3333"),
    ("flv", "libx264", "30", "33.3333"),
    ("flv", "flv", "25", "40"),
])
def test_millisecond_time_bases_get_one_clean_frame_time(
        tmp_path: Path, container: str, codec: str, rate: str, frame_time: str) -> None:
    source = tmp_path / f"clip.{container}"
    ffmpeg(*make_testsrc(rate=rate), "-c:v", codec, "-pix_fmt", "yuv420p", str(source))
    with av.open(str(source)) as c:
        assert c.streams.video[0].time_base == Fraction(1, 1000)
    info = probe(source)
    assert not info.video.timing.variable
    assert "rounded to the 1 ms time base" in info.video.timing.rate_source
    result = convert(source, tmp_path / "out.dcm")
    back = read_back(result.files[0].path, tmp_path)  # validate agrees with the writer
    assert "FrameTimeVector" not in back.dataset
    assert back.dataset.FrameTime == frame_time
    stored = probe(back.extracted)
    assert not stored.video.timing.variable
    assert stored.video.timing.rate == info.video.timing.rate


# --- class 7: raw elementary streams are timed by their VUI -------------------------------------

@pytest.mark.parametrize(("encoder", "fmt", "rate", "frame_time"), [
    ("libx264", "h264", "30", "33.3333"),
    ("libx265", "hevc", "50", "20"),
])
def test_raw_streams_take_their_rate_from_the_vui(
        tmp_path: Path, encoder: str, fmt: str, rate: str, frame_time: str) -> None:
    source = tmp_path / f"clip.{fmt}"
    ffmpeg(*make_testsrc(rate=rate), "-c:v", encoder, "-pix_fmt", "yuv420p",
           *(["-x265-params", "log-level=error"] if encoder == "libx265" else []),
           "-f", fmt, str(source))
    info = probe(source)
    assert "VUI" in info.video.timing.rate_source
    result = convert(source, tmp_path / "out.dcm")
    back = read_back(result.files[0].path, tmp_path)
    assert back.dataset.FrameTime == frame_time
    forced = convert(source, tmp_path / "forced.dcm", options=Request(frame_rate=Fraction(24)))
    assert header(forced.files[0].path).FrameTime == "41.6667"
    assert forced.source.video.timing.rate_source == "--frame-rate"


# --- class 8: levels check bit rate and buffer; targets keep a margin ---------------------------

def h264_stream(*, rate: Fraction = Fraction(25), **fields: Any) -> VideoStreamInfo:
    """A 1080p25 H.264 High 4.1 stream record unless told otherwise."""
    timing = FrameTiming(frame_count=50, rate=rate, duration_s=float(50 / rate),
                         variable=False, frame_time_ms=1000 / float(rate),
                         frame_deltas_ms=None, count_source="test")
    base: dict[str, Any] = {
        "index": 0, "codec": "h264", "codec_tag": "avc1", "profile": "High", "level": 41,
        "tier": None, "width": 1920, "height": 1080, "pix_fmt": "yuv420p", "chroma": "4:2:0",
        "bit_depth": 8, "sample_aspect_ratio": None, "rotation": 0, "interlaced": False,
        "color_range": "limited", "timing": timing, "keyframes": (), "packet_bytes": 1,
        "has_timestamps": True}
    return VideoStreamInfo(**{**base, **fields})


def test_a_stream_over_the_level_bit_rate_is_transcoded_with_the_reason() -> None:
    v = h264_stream(peak_bit_rate=760_000_000)
    syntax, broken = choose_transfer_syntax(v)
    assert syntax is None
    assert "760.0 Mbit" in broken[0] and "Level 4.2" in broken[0]
    assert choose_transfer_syntax(h264_stream(peak_bit_rate=40_000_000))[0] is ts.H264_HP41
    assert levels.h264_bit_rate_fits(levels.h264_level(41), 62_500_000 + 78_125_000) is None
    assert levels.h264_bit_rate_fits(levels.h264_level(41), 62_500_000 + 78_125_001)


def test_targets_keep_a_margin_over_the_measured_rate() -> None:
    v = h264_stream(codec="vp8", profile=None, width=2048, height=1080,
                    rate=Fraction(60044, 1000))
    target = choose_video_target(v)
    assert target.syntax is ts.HEVC_MP51  # 8704 MB x 60.044 is over Level 4.2's 522240


# --- class 9: every video stream its own series; dropped tracks named ---------------------------

def test_every_video_stream_becomes_its_own_series(tmp_path: Path) -> None:
    subs = tmp_path / "s.srt"
    subs.write_text("1\n00:00:00,000 --> 00:00:00,500\nhello\n", encoding="utf-8")
    source = tmp_path / "two.mkv"
    ffmpeg(*make_testsrc(), "-f", "lavfi", "-i", "smptebars=size=80x60:rate=25:duration=1",
           "-i", str(subs), "-map", "0", "-map", "1", "-map", "2", "-c:v", "libx264",
           "-pix_fmt", "yuv420p", "-c:s", "srt", str(source))
    info = probe(source)
    assert [s.kind for s in info.streams] == ["video", "video", "subtitle"]
    assert info.video_stream_indexes == (0, 1)
    result = convert(source, tmp_path / "out.dcm")
    assert [f.path.name for f in result.files] == ["out.dcm", "out_stream1.dcm"]
    first, second = (read_back(f.path, tmp_path).dataset for f in result.files)
    assert first.StudyInstanceUID == second.StudyInstanceUID
    assert first.SeriesInstanceUID != second.SeriesInstanceUID
    assert (second.Columns, second.Rows) == (80, 60)
    assert any("subtitle stream #2" in w for w in result.warnings)
    picked = convert(source, tmp_path / "one.dcm", options=Request(stream=1))
    assert len(picked.files) == 1 and picked.files[0].columns == 80
    assert any("video stream #0" in w for w in picked.warnings)


# --- class 10: HEVC Main 10 kept; .105 for frame packing ---------------------------------------

def test_hevc_main10_is_stored_as_is(tmp_path: Path) -> None:
    source = tmp_path / "main10.mp4"
    ffmpeg(*make_testsrc(seconds=0.4), "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
           "-x265-params", "log-level=error", str(source))
    result = convert(source, tmp_path / "out.dcm")
    assert result.plan.action is Action.COPY
    back = read_back(result.files[0].path, tmp_path)
    assert back.dataset.file_meta.TransferSyntaxUID == ts.HEVC_M10P51.uid
    assert (back.dataset.BitsAllocated, back.dataset.BitsStored, back.dataset.HighBit) == (
        16, 10, 9)
    assert probe(back.extracted).video.bit_depth == 10


def test_frame_packed_h264_is_labelled_3d(tmp_path: Path) -> None:
    source = tmp_path / "sbs.mp4"
    ffmpeg(*make_testsrc("128x48", seconds=0.4), "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-x264-params", "frame-packing=3", str(source))
    result = convert(source, tmp_path / "out.dcm")
    back = read_back(result.files[0].path, tmp_path)
    assert back.dataset.file_meta.TransferSyntaxUID == ts.H264_HP42_3D.uid
    assert back.dataset.StereoPairsPresent == "YES"


# --- class 11: the watch folder never overwrites ----------------------------------------------

def test_watch_folder_gives_colliding_names_distinct_outputs(tmp_path: Path) -> None:
    for ext in ("mp4", "mov"):
        ffmpeg(*make_testsrc(seconds=0.3), "-c:v", "libx264", "-pix_fmt", "yuv420p",
               str(tmp_path / f"case.{ext}"))
    events = [process(tmp_path / f"case.{ext}", tmp_path, Metadata(), Request(), [])
              for ext in ("mp4", "mov")]
    assert all(e.ok for e in events), [e.message for e in events]
    names = sorted(p.name for p in (tmp_path / "dicom").iterdir())
    assert names == ["case.dcm", "case_mov.dcm"]
    assert free_output(tmp_path / "dicom", Path("case.mov")).name == "case_mov_2.dcm"


# --- issue 12 media items ------------------------------------------------------------------------

def test_hevc_is_tagged_hvc1_and_fragmentable_says_what_it_does(tmp_path: Path) -> None:
    source = tmp_path / "clip.mkv"
    ffmpeg(*make_testsrc(seconds=0.4), "-c:v", "libx265", "-pix_fmt", "yuv420p",
           "-x265-params", "log-level=error", str(source))
    result = convert(source, tmp_path / "out.dcm", options=Request(fragmentable=True))
    assert result.files[0].transfer_syntax_uid == ts.HEVC_MP51.uid
    assert any("--fragmentable" in w and "no Fragmentable" in w for w in result.warnings)
    extracted = tmp_path / "x.mp4"
    extract_bitstream(result.files[0].path, extracted)
    with av.open(str(extracted)) as c:
        assert c.streams.video[0].codec_tag == "hvc1"
    # the transcode path too
    vp9 = tmp_path / "clip.webm"
    ffmpeg(*make_testsrc("4096x2160", "50", 0.1), "-c:v", "libvpx-vp9", "-deadline", "realtime",
           "-cpu-used", "8", "-b:v", "1M", str(vp9))
    encoded = convert(vp9, tmp_path / "vp9.dcm")
    assert encoded.files[0].transfer_syntax_uid == ts.HEVC_MP51.uid
    extract_bitstream(encoded.files[0].path, tmp_path / "y.mp4")
    with av.open(str(tmp_path / "y.mp4")) as c:
        assert c.streams.video[0].codec_tag == "hvc1"


def test_mpeg2_copy_with_audio_reencode_reports_copy(tmp_path: Path) -> None:
    source = tmp_path / "dvd.mpg"
    ffmpeg(*make_testsrc("720x576", "25", 0.4), "-f", "lavfi", "-i", "sine=duration=0.4",
           "-c:v", "mpeg2video", "-q:v", "4", "-c:a", "mp2", "-ar", "48000", str(source))
    result = convert(source, tmp_path / "out.dcm")
    assert result.plan.action is Action.COPY
    assert [a.transcode_to for a in result.plan.audio] == ["mp3"]
    assert result.transcode is None  # nothing to call "transcoded"
    assert result.files[0].action is Action.COPY
    read_back(result.files[0].path, tmp_path)


def test_probe_says_where_each_number_came_from(tmp_path: Path) -> None:
    source = tmp_path / "clip.mkv"
    ffmpeg(*make_testsrc(rate="30"), "-c:v", "libx264", "-pix_fmt", "yuv420p", str(source))
    facts = {f.name: f for f in probe(source).facts}
    assert facts["frames"].value == "30" and "packet count" in facts["frames"].source
    assert "rounded" in facts["frame rate"].source
    assert facts["peak bit rate (bit/s)"].source.startswith("measured")
    plan = plan_conversion(probe(source))
    assert plan.action is Action.COPY


# --- the randomised corpus, fast slice -----------------------------------------------------------

SLICE = draw_cases(seed=2026, count=60)


@pytest.mark.parametrize("case", SLICE, ids=[c.name for c in SLICE])
def test_random_slice(tmp_path: Path, case: object) -> None:
    outcome = run_case(case, tmp_path)  # type: ignore[arg-type]
    if outcome.status == "skipped":
        pytest.skip(outcome.message)
    assert outcome.status == "pass", outcome.message


# --- the timing grid (pure) ----------------------------------------------------------------------

def _timing(time_base: Fraction, stamps: list[int], nominal: Fraction | None) -> FrameTiming:
    from vid2dcm.probing.timing import FrameTimingCounter
    counter = FrameTimingCounter(time_base, nominal)
    for pts in stamps:
        counter.add(pts, 0)
    return counter.result()


@pytest.mark.parametrize("frames", [10, 17, 90])
@pytest.mark.parametrize(("rate", "scale", "nominal"), [
    (Fraction(30), 1, None), (Fraction(60), 1, Fraction(60)), (Fraction(30000, 1001), 1, None),
    (Fraction(30), 16, None), (Fraction(25), 16, None)])
def test_rounded_millisecond_stamps_are_the_exact_rate(
        rate: Fraction, scale: int, nominal: Fraction | None, frames: int) -> None:
    """ms-rounded stamps (Matroska, ASF), also after an MP4 muxer rescaled them to 16 kHz."""
    stamps = [(46 + round(i * 1000 / rate)) * scale for i in range(frames)]
    timing = _timing(Fraction(1, 1000 * scale), stamps, nominal)
    if frames == 10 and rate.denominator == 1001 and nominal != rate:
        # 10 frames at a 1 ms tick cannot tell 29.97 from 30: the simpler rate is taken
        rate = Fraction(round(rate))
    assert (timing.rate, timing.variable, timing.frame_deltas_ms) == (rate, False, None)


def test_a_guessed_header_rate_breaks_no_ties() -> None:
    """ASF stores no rate; FFmpeg guesses 29.97 for a 30 fps file."""
    from vid2dcm.probing.timing import FrameTimingCounter
    counter = FrameTimingCounter(Fraction(1, 1000), Fraction(30000, 1001))
    counter.header_rate_declared = False
    for i in range(10):
        counter.add(46 + round(i * 100 / 3), 0)
    assert counter.result().rate == 30


def test_avi_frame_ticks_tell_12_from_12_5_fps() -> None:
    timing = _timing(Fraction(1, 12), list(range(13)), Fraction(12))
    assert timing.rate == 12 and not timing.variable
    dropped = _timing(Fraction(1, 30), [0, 1, 3, 4, 5, 7, 8, 9], Fraction(30))
    assert dropped.variable and dropped.frame_deltas_ms is not None
    # one frame in four dropped at 10 fps is not 7.5 fps with jitter
    quarter = _timing(Fraction(1, 10), [0, 1, 3, 4, 5, 7, 8, 9, 11, 12], Fraction(10))
    assert quarter.variable


def test_cli_salvages_a_truncated_file_with_a_warning(tmp_path: Path) -> None:
    import sys
    full = tmp_path / "full.mp4"
    ffmpeg(*make_testsrc(seconds=2), "-c:v", "libx264", "-pix_fmt", "yuv420p",
           "-movflags", "+faststart", str(full))
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size * 7 // 10])
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "convert", str(cut), "-o",
                           str(tmp_path / "cut.dcm")], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "warning: damaged or truncated" in proc.stderr
    assert read_back(tmp_path / "cut.dcm", tmp_path).decoded_frames < 50
