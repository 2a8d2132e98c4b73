"""The pure decision table: hand-made probe records in, a Plan with a reason for everything out."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from vid2dcm.core import syntaxes as ts
from vid2dcm.core.conformance import choose_transfer_syntax
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.media_info import (
    AudioStreamInfo,
    FrameTiming,
    KeyFrame,
    MediaInfo,
    VideoStreamInfo,
)
from vid2dcm.planning.plan import (
    Action,
    ContainerChoice,
    Layout,
    OutputContainer,
    Plan,
    Request,
    Segment,
    TranscodePolicy,
    choose_audio,
    choose_container,
    choose_layout,
    estimated_container_bytes,
    plan_conversion,
    split_at_keyframes,
)

MiB = 1 << 20
UID_ROOT = "1.2.840.10008.1.2.4."
MP4_FORMAT = "mov,mp4,m4a,3gp,3g2,mj2"

P2997 = Fraction(30000, 1001)
P5994 = Fraction(60000, 1001)
P23976 = Fraction(24000, 1001)


# --- factories ------------------------------------------------------------------------------

def timing(rate: Fraction = Fraction(25), frames: int = 250, *, variable: bool = False,
           deltas: tuple[float, ...] | None = None) -> FrameTiming:
    return FrameTiming(
        frame_count=frames,
        rate=rate,
        duration_s=float(frames / rate),
        variable=variable,
        frame_time_ms=1000 / float(rate),
        frame_deltas_ms=deltas,
        count_source="test",
    )


def video(*, rate: Fraction = Fraction(25), frames: int = 250, **fields: Any
          ) -> VideoStreamInfo:
    """An H.264 High 4.0 720p25 progressive 8-bit 4:2:0 stream unless told otherwise."""
    base = VideoStreamInfo(
        index=0,
        codec="h264",
        codec_tag="avc1",
        profile="High",
        level=40,
        tier=None,
        width=1280,
        height=720,
        pix_fmt="yuv420p",
        chroma="4:2:0",
        bit_depth=8,
        sample_aspect_ratio=Fraction(1),
        rotation=0,
        interlaced=False,
        color_range="tv",
        timing=timing(rate, frames),
        keyframes=(KeyFrame(0, 0),),
        packet_bytes=1_000_000,
        has_timestamps=True,
    )
    return replace(base, **fields)


def hevc(**fields: Any) -> VideoStreamInfo:
    defaults: dict[str, Any] = {"codec": "hevc", "codec_tag": "hvc1", "profile": "Main",
                                   "level": 153, "tier": "Main", "width": 3840, "height": 2160,
                                   "rate": Fraction(60)}
    return video(**{**defaults, **fields})


def mpeg2(**fields: Any) -> VideoStreamInfo:
    defaults: dict[str, Any] = {"codec": "mpeg2video", "codec_tag": "", "profile": "Main",
                                   "level": 8, "width": 720, "height": 576,
                                   "rate": Fraction(25), "interlaced": True}
    return video(**{**defaults, **fields})


def audio(codec: str = "aac", sample_rate: int = 48000, channels: int = 2, index: int = 1
          ) -> AudioStreamInfo:
    return AudioStreamInfo(index=index, codec=codec, profile="LC" if codec == "aac" else None,
                           sample_rate=sample_rate, channels=channels, bit_rate=128_000)


def media(v: VideoStreamInfo | None = None, *, audio_streams: tuple[AudioStreamInfo, ...] = (),
          container: str = MP4_FORMAT, total_packet_bytes: int | None = None) -> MediaInfo:
    v = v if v is not None else video()
    return MediaInfo(
        path=Path("input.mp4"),
        container=container,
        size_bytes=v.packet_bytes + 10_000,
        duration_s=v.timing.duration_s,
        video=v,
        audio=audio_streams,
        total_packet_bytes=(v.packet_bytes if total_packet_bytes is None
                            else total_packet_bytes),
    )


def gop_video(frames: int, gop: int, frame_bytes: int, **fields: Any) -> VideoStreamInfo:
    keyframes = tuple(KeyFrame(i, i * frame_bytes) for i in range(0, frames, gop))
    return video(frames=frames, keyframes=keyframes, packet_bytes=frames * frame_bytes, **fields)


def assert_reasons(plan: Plan) -> None:
    assert plan.decisions
    for decision in plan.decisions:
        assert decision.topic.strip()
        assert decision.choice.strip()
        assert decision.reason.strip(), decision


# --- transfer syntax: streams that qualify ------------------------------------------------

ACCEPTED: list[tuple[str, VideoStreamInfo, ts.VideoTransferSyntax, str]] = [
    # H.264 High, plain Level 4.1 syntax
    ("h264-L3.0-576p25", video(level=30, width=720, height=576), ts.H264_HP41, ".102"),
    ("h264-L4.0-720p30", video(level=40, rate=Fraction(30)), ts.H264_HP41, ".102"),
    ("h264-L4.1-1080p30", video(level=41, width=1920, height=1080, rate=Fraction(30)),
     ts.H264_HP41, ".102"),
    ("h264-progressive-high", video(profile="Progressive High"), ts.H264_HP41, ".102"),
    ("h264-constrained-high", video(profile="Constrained High"), ts.H264_HP41, ".102"),
    ("h264-sar-unknown", video(sample_aspect_ratio=None), ts.H264_HP41, ".102"),
    # BD-compatible combinations (PS3.5 Table 8-4)
    ("bd-1080i25", video(width=1920, height=1080, rate=Fraction(25), interlaced=True),
     ts.H264_HP41_BD, ".103"),
    ("bd-1080i29.97", video(width=1920, height=1080, rate=P2997, interlaced=True),
     ts.H264_HP41_BD, ".103"),
    ("bd-1080p24", video(width=1920, height=1080, rate=Fraction(24)), ts.H264_HP41_BD, ".103"),
    ("bd-1080p23.976", video(width=1920, height=1080, rate=P23976), ts.H264_HP41_BD, ".103"),
    ("bd-720p50", video(rate=Fraction(50), level=41), ts.H264_HP41_BD, ".103"),
    ("bd-720p59.94", video(rate=P5994, level=41), ts.H264_HP41_BD, ".103"),
    ("bd-720p24", video(rate=Fraction(24)), ts.H264_HP41_BD, ".103"),
    ("bd-720p23.976", video(rate=P23976), ts.H264_HP41_BD, ".103"),
    # their non-BD neighbours
    ("1080p25-progressive", video(width=1920, height=1080, rate=Fraction(25)),
     ts.H264_HP41, ".102"),
    ("1080p29.97-progressive", video(width=1920, height=1080, rate=P2997), ts.H264_HP41, ".102"),
    ("1080i24-interlaced", video(width=1920, height=1080, rate=Fraction(24), interlaced=True),
     ts.H264_HP41, ".102"),
    ("1080i23.976-interlaced", video(width=1920, height=1080, rate=P23976, interlaced=True),
     ts.H264_HP41, ".102"),
    ("720p25", video(rate=Fraction(25)), ts.H264_HP41, ".102"),
    ("720p29.97", video(rate=P2997), ts.H264_HP41, ".102"),
    ("1080i30-exact", video(width=1920, height=1080, rate=Fraction(30), interlaced=True),
     ts.H264_HP41, ".102"),
    ("720p60-exact", video(rate=Fraction(60), level=41), ts.H264_HP41, ".102"),
    ("720i50-interlaced", video(rate=Fraction(50), interlaced=True, level=41),
     ts.H264_HP41, ".102"),
    ("1088-rows-24p", video(width=1920, height=1088, rate=Fraction(24)), ts.H264_HP41, ".102"),
    ("1440x1080-25i", video(width=1440, height=1080, rate=Fraction(25), interlaced=True),
     ts.H264_HP41, ".102"),
    ("bd-size-rate-but-level-4.2", video(width=1920, height=1080, rate=Fraction(24), level=42),
     ts.H264_HP42_2D, ".104"),
    # Level 4.2 for 2D
    ("1080p60-L4.2", video(level=42, width=1920, height=1080, rate=Fraction(60)),
     ts.H264_HP42_2D, ".104"),
    ("1080p50-L4.2", video(level=42, width=1920, height=1080, rate=Fraction(50)),
     ts.H264_HP42_2D, ".104"),
    ("signals-4.1-but-1080p60", video(level=41, width=1920, height=1080, rate=Fraction(60)),
     ts.H264_HP42_2D, ".104"),
    ("signals-4.0-but-1080p59.94", video(level=40, width=1920, height=1080, rate=P5994),
     ts.H264_HP42_2D, ".104"),
    ("2048x1080p30-needs-4.2", video(level=41, width=2048, height=1080, rate=Fraction(30)),
     ts.H264_HP42_2D, ".104"),
    # HEVC Main / Main tier / Level 5.1
    ("hevc-L5.1-2160p60", hevc(), ts.HEVC_MP51, ".107"),
    ("hevc-L5.1-4096x2160p60", hevc(width=4096, height=2160), ts.HEVC_MP51, ".107"),
    ("hevc-L4.1-1080p30", hevc(level=123, width=1920, height=1080, rate=Fraction(30)),
     ts.HEVC_MP51, ".107"),
    ("hevc-L5.0", hevc(level=150, rate=Fraction(30)), ts.HEVC_MP51, ".107"),
    ("hevc-main10", hevc(profile="Main 10", pix_fmt="yuv420p10le", bit_depth=10),
     ts.HEVC_M10P51, ".108"),
    # MPEG-2
    ("mpeg2-mpml-pal-576i25", mpeg2(), ts.MPEG2_MPML, ".100"),
    ("mpeg2-mpml-ntsc-480i29.97", mpeg2(height=480, rate=P2997), ts.MPEG2_MPML, ".100"),
    ("mpeg2-mpml-ntsc-480p30", mpeg2(height=480, rate=Fraction(30)), ts.MPEG2_MPML, ".100"),
    ("mpeg2-mpml-half-pal", mpeg2(width=352, height=288), ts.MPEG2_MPML, ".100"),
    ("mpeg2-mpml-pal-anamorphic", mpeg2(sample_aspect_ratio=Fraction(64, 45)),
     ts.MPEG2_MPML, ".100"),
    ("mpeg2-mpml-ntsc-4:3-sar", mpeg2(height=480, rate=P2997,
                                      sample_aspect_ratio=Fraction(8, 9)), ts.MPEG2_MPML, ".100"),
    ("mpeg2-mphl-1080i25", mpeg2(level=4, width=1920, height=1080), ts.MPEG2_MPHL, ".101"),
    ("mpeg2-mphl-1080i29.97", mpeg2(level=4, width=1920, height=1080, rate=P2997),
     ts.MPEG2_MPHL, ".101"),
    ("mpeg2-mphl-720p59.94", mpeg2(level=4, width=1280, height=720, rate=P5994,
                                   interlaced=False), ts.MPEG2_MPHL, ".101"),
    ("mpeg2-mphl-720p50", mpeg2(level=4, width=1280, height=720, rate=Fraction(50),
                                interlaced=False), ts.MPEG2_MPHL, ".101"),
    ("mpeg2-mphl-square-sar", mpeg2(level=4, width=1920, height=1080,
                                    sample_aspect_ratio=Fraction(1)), ts.MPEG2_MPHL, ".101"),
]


@pytest.mark.parametrize(("v", "expected", "suffix"), [c[1:] for c in ACCEPTED],
                         ids=[c[0] for c in ACCEPTED])
def test_accepted_streams_get_their_syntax(v: VideoStreamInfo, expected: ts.VideoTransferSyntax,
                                           suffix: str) -> None:
    syntax, broken = choose_transfer_syntax(v)
    assert broken == []
    assert syntax is expected
    assert syntax.uid == UID_ROOT + suffix.lstrip(".")


@pytest.mark.parametrize(("v", "suffix"), [(c[1], c[3]) for c in ACCEPTED],
                         ids=[c[0] for c in ACCEPTED])
def test_accepted_streams_are_copied(v: VideoStreamInfo, suffix: str) -> None:
    plan = plan_conversion(media(v))
    assert plan.action is Action.COPY
    assert plan.broken_rules == ()
    assert plan.transfer_syntax_uid == UID_ROOT + suffix.lstrip(".")
    assert plan.layout is Layout.SINGLE
    assert plan.segments == (Segment(0, v.timing.frame_count),)
    assert [d.topic for d in plan.decisions] == [
        "IOD", "transfer syntax", "action", "container", "layout"]
    assert_reasons(plan)


# --- transfer syntax: streams that are stopped, and the rule that stops them ----------------

REJECTED: list[tuple[str, VideoStreamInfo, tuple[str, ...]]] = [
    # H.264 level and size
    ("h264-L5.1", video(level=51), ("Level 5.1", "4.2")),
    ("h264-L5.0-1080p30", video(level=50, width=1920, height=1080, rate=Fraction(30)),
     ("Level 5.0",)),
    ("h264-4096x2304-L4.1", video(level=41, width=4096, height=2304), ("macroblocks",)),
    ("h264-4096x2304-L4.2", video(level=42, width=4096, height=2304), ("macroblocks",)),
    ("h264-1080p120-L4.2", video(level=42, width=1920, height=1080, rate=Fraction(120)),
     ("macroblocks/s",)),
    ("h264-4352x128-too-wide", video(level=41, width=4352, height=128, rate=Fraction(25)),
     ("wider or taller",)),
    # H.264 profiles
    ("h264-main", video(profile="Main"), ("Main profile", "High")),
    ("h264-baseline", video(profile="Baseline"), ("Baseline",)),
    ("h264-constrained-baseline", video(profile="Constrained Baseline"),
     ("Constrained Baseline",)),
    ("h264-high10", video(profile="High 10", pix_fmt="yuv420p10le", bit_depth=10),
     ("High 10", "10-bit")),
    ("h264-high422", video(profile="High 4:2:2", pix_fmt="yuv422p", chroma="4:2:2"),
     ("High 4:2:2", "chroma is 4:2:2")),
    ("h264-high444", video(profile="High 4:4:4 Predictive", pix_fmt="yuv444p", chroma="4:4:4"),
     ("High 4:4:4 Predictive", "4:4:4")),
    ("h264-profile-unknown", video(profile=None), ("unknown profile",)),
    # common rules, on an otherwise storable stream
    ("chroma-422", video(chroma="4:2:2", pix_fmt="yuv422p"), ("chroma is 4:2:2", "4:2:0")),
    ("chroma-444-hevc", hevc(chroma="4:4:4", pix_fmt="yuv444p"), ("chroma is 4:4:4",)),
    ("10-bit", video(bit_depth=10, pix_fmt="yuv420p10le"), ("10-bit", "8 bits")),
    ("rotation-90", video(rotation=90), ("rotate by 90",)),
    ("rotation-270-mpeg2", mpeg2(rotation=270), ("rotate by 270",)),
    ("h264-non-square", video(sample_aspect_ratio=Fraction(4, 3)), ("not square", "1:1")),
    ("hevc-non-square", hevc(sample_aspect_ratio=Fraction(4, 3)), ("not square",)),
    ("h264-bd-combo-non-square", video(width=1920, height=1080, rate=Fraction(24),
                                       sample_aspect_ratio=Fraction(4, 3)), ("not square",)),
    # HEVC
    ("hevc-L6.0", hevc(level=180), ("Level 6", "5.1")),
    ("hevc-L5.2", hevc(level=156), ("Level 5.2",)),
    ("hevc-level-unknown", hevc(level=None), ("Level unknown",)),
    ("hevc-main10-8bit-pixels", hevc(profile="Main 10"), ("Main 10",)),
    ("hevc-rext", hevc(profile="Rext"), ("Rext",)),
    ("hevc-high-tier", hevc(tier="High"), ("High tier",)),
    ("hevc-8k", hevc(width=7680, height=4320, rate=Fraction(30)), ("larger",)),
    ("hevc-8k-signalled-6.1", hevc(width=8192, height=4320, level=183), ("Level 6.1", "larger")),
    ("hevc-2160p120", hevc(rate=Fraction(120), width=4096, height=2160), ("sample rate",)),
    # MPEG-2
    ("mpeg2-mpml-576-at-29.97", mpeg2(rate=P2997), ("exceeds 720x480",)),
    ("mpeg2-mpml-wider-than-720", mpeg2(width=768), ("exceeds 720x576",)),
    ("mpeg2-mpml-23.976", mpeg2(height=480, rate=P23976), ("23.976",)),
    ("mpeg2-mpml-50", mpeg2(rate=Fraction(50)), ("50.000",)),
    ("mpeg2-mphl-1080p50", mpeg2(level=4, width=1920, height=1080, rate=Fraction(50)),
     ("1920x1080", "Table 8-3")),
    ("mpeg2-mphl-1080p60", mpeg2(level=4, width=1920, height=1080, rate=Fraction(60)),
     ("1920x1080",)),
    ("mpeg2-mphl-1440x1080", mpeg2(level=4, width=1440, height=1080), ("1440x1080",)),
    ("mpeg2-h14-1440x1080", mpeg2(level=6, width=1440, height=1080), ("level code 6",)),
    ("mpeg2-mphl-non-square", mpeg2(level=4, width=1920, height=1080,
                                    sample_aspect_ratio=Fraction(4, 3)), ("non-square",)),
    ("mpeg2-422-profile", mpeg2(profile="4:2:2", chroma="4:2:2", pix_fmt="yuv422p"),
     ("MPEG-2 4:2:2 profile",)),
    ("mpeg2-simple-profile", mpeg2(profile="Simple"), ("Simple profile",)),
    # codecs without a syntax
    ("vp9", video(codec="vp9", profile="Profile 0", level=None), ("vp9", "no DICOM")),
    ("av1", video(codec="av1", profile="Main", level=None), ("av1", "no DICOM")),
    ("mjpeg", video(codec="mjpeg", profile="Baseline", pix_fmt="yuvj422p", chroma="4:2:2"),
     ("mjpeg", "no DICOM", "chroma is 4:2:2")),
    ("prores", video(codec="prores", profile="HQ", chroma="4:2:2", bit_depth=10),
     ("prores", "10-bit")),
    ("mpeg4-part2", video(codec="mpeg4", profile="Simple Profile"), ("mpeg4",)),
]


@pytest.mark.parametrize(("v", "fragments"), [c[1:] for c in REJECTED],
                         ids=[c[0] for c in REJECTED])
def test_rejected_streams_name_the_rule(v: VideoStreamInfo, fragments: tuple[str, ...]) -> None:
    syntax, broken = choose_transfer_syntax(v)
    assert syntax is None
    assert broken, "a rejected stream must say why"
    text = " | ".join(broken)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in {text!r}"
    assert all(rule.strip() for rule in broken)


@pytest.mark.parametrize("v", [c[1] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_streams_stop_when_transcoding_is_forbidden(v: VideoStreamInfo) -> None:
    plan = plan_conversion(media(v, audio_streams=(audio(),)),
                           Request(transcode=TranscodePolicy.NEVER))
    assert plan.action is Action.TRANSCODE
    assert plan.video_target is None
    assert not plan.storable
    assert plan.transfer_syntax is None
    assert plan.transfer_syntax_uid is None
    assert plan.container is None
    assert plan.audio == ()
    assert plan.broken_rules
    assert plan.broken_rules == tuple(choose_transfer_syntax(v)[1])
    assert [d.topic for d in plan.decisions] == ["IOD", "action"]
    action = plan.decisions[1]
    assert action.choice == Action.TRANSCODE
    for rule in plan.broken_rules:
        assert rule in action.reason
    assert_reasons(plan)


@pytest.mark.parametrize("v", [c[1] for c in REJECTED], ids=[c[0] for c in REJECTED])
def test_rejected_streams_are_transcoded(v: VideoStreamInfo) -> None:
    plan = plan_conversion(media(v, audio_streams=(audio(),)))
    assert plan.action is Action.TRANSCODE
    assert plan.video_target is not None
    assert plan.transfer_syntax is plan.video_target.syntax
    assert plan.container is OutputContainer.MP4
    assert plan.broken_rules == tuple(choose_transfer_syntax(v)[1])
    assert [a.copy for a in plan.audio] == [True]
    assert plan.needs_transcode
    assert_reasons(plan)


def test_every_broken_rule_is_listed_not_just_the_first() -> None:
    v = video(chroma="4:2:2", pix_fmt="yuv422p10le", bit_depth=10, rotation=90)
    _, broken = choose_transfer_syntax(v)
    text = " | ".join(broken)
    assert "chroma is 4:2:2" in text
    assert "10-bit" in text
    assert "rotate by 90" in text


def test_hevc_lists_each_broken_rule() -> None:
    _, broken = choose_transfer_syntax(
        hevc(profile="Main 12", level=183, tier="High", width=8192, height=4320))
    assert len(broken) == 4
    text = " | ".join(broken)
    for fragment in ("Main 12", "Level 6.1", "High tier", "larger"):
        assert fragment in text


# --- transcode policy -----------------------------------------------------------------------

@pytest.mark.parametrize("v", [video(), hevc(), mpeg2()], ids=["h264", "hevc", "mpeg2"])
def test_transcode_always_forces_transcode(v: VideoStreamInfo) -> None:
    plan = plan_conversion(media(v), Request(transcode=TranscodePolicy.ALWAYS))
    assert plan.action is Action.TRANSCODE
    assert plan.video_target is not None
    assert plan.transfer_syntax is plan.video_target.syntax
    assert plan.broken_rules == ("--transcode always was requested",)
    action = next(d for d in plan.decisions if d.topic == "action")
    assert "--transcode always" in action.reason
    assert_reasons(plan)


def test_transcode_always_keeps_the_real_reasons_too() -> None:
    plan = plan_conversion(media(video(profile="Main")),
                           Request(transcode=TranscodePolicy.ALWAYS))
    assert len(plan.broken_rules) == 2
    assert "Main profile" in plan.broken_rules[0]
    assert plan.broken_rules[1] == "--transcode always was requested"


@pytest.mark.parametrize("policy", [TranscodePolicy.AUTO, TranscodePolicy.NEVER])
def test_other_policies_copy_a_storable_stream(policy: TranscodePolicy) -> None:
    plan = plan_conversion(media(), Request(transcode=policy))
    assert plan.action is Action.COPY
    assert plan.transfer_syntax is ts.H264_HP41


# --- IOD ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("sop", "name", "modality"), [
    (SopChoice.PHOTOGRAPHIC, "Video Photographic Image", "XC"),
    (SopChoice.ENDOSCOPIC, "Video Endoscopic Image", "ES"),
    (SopChoice.MICROSCOPIC, "Video Microscopic Image", "GM"),
])
def test_iod_follows_the_request(sop: SopChoice, name: str, modality: str) -> None:
    plan = plan_conversion(media(), Request(sop=sop))
    assert plan.iod.name == name
    assert plan.iod.modality == modality
    assert plan.decisions[0].topic == "IOD"
    assert plan.decisions[0].choice == name
    assert sop.value in plan.decisions[0].reason


def test_default_request_is_photographic_auto_with_audio() -> None:
    request = Request()
    assert request.sop is SopChoice.PHOTOGRAPHIC
    assert request.transcode is TranscodePolicy.AUTO
    assert request.audio is True
    assert request.fragmentable is False
    assert request.max_item_bytes == 2**32 - 2


# --- audio ----------------------------------------------------------------------------------

AUDIO_CASES: list[tuple[str, AudioStreamInfo, ts.VideoTransferSyntax, OutputContainer, bool,
                        str]] = [
    ("aac-48k-mp4", audio("aac", 48000), ts.H264_HP41, OutputContainer.MP4, True, "AAC"),
    ("aac-48k-ts", audio("aac", 48000), ts.H264_HP41, OutputContainer.MPEG_TS, True, "AAC"),
    ("aac-48k-mono", audio("aac", 48000, channels=1), ts.HEVC_MP51, OutputContainer.MP4, True,
     "AAC"),
    ("aac-44.1k", audio("aac", 44100), ts.H264_HP41, OutputContainer.MP4, False, "48 kHz"),
    ("aac-32k", audio("aac", 32000), ts.HEVC_MP51, OutputContainer.MPEG_TS, False, "48 kHz"),
    ("aac-6ch", audio("aac", 48000, channels=6), ts.H264_HP41, OutputContainer.MP4, False,
     "6 channels"),
    ("mp3-44.1k", audio("mp3", 44100), ts.H264_HP41, OutputContainer.MP4, True, "MP3"),
    ("mp3-48k-ts", audio("mp3", 48000), ts.HEVC_MP51, OutputContainer.MPEG_TS, True, "MP3"),
    ("mp3-32k", audio("mp3", 32000), ts.H264_HP41, OutputContainer.MP4, True, "MP3"),
    ("mp3-22.05k", audio("mp3", 22050), ts.H264_HP41, OutputContainer.MP4, False, "mp3"),
    ("mp2-48k", audio("mp2", 48000), ts.H264_HP41, OutputContainer.MP4, True, "Layer II"),
    ("mp2-44.1k-ts", audio("mp2", 44100), ts.H264_HP42_2D, OutputContainer.MPEG_TS, True,
     "Layer II"),
    ("opus", audio("opus", 48000), ts.H264_HP41, OutputContainer.MP4, False, "opus"),
    ("opus-ts", audio("opus", 48000), ts.H264_HP41, OutputContainer.MPEG_TS, False, "opus"),
    ("vorbis", audio("vorbis", 48000), ts.H264_HP41, OutputContainer.MP4, False, "vorbis"),
    ("flac", audio("flac", 48000), ts.H264_HP41, OutputContainer.MPEG_TS, False, "flac"),
    ("pcm", audio("pcm_s16le", 48000), ts.H264_HP41, OutputContainer.MP4, False, "pcm_s16le"),
    ("ac3-ts", audio("ac3", 48000), ts.H264_HP41, OutputContainer.MPEG_TS, True, "AC-3"),
    ("ac3-ts-hevc", audio("ac3", 48000), ts.HEVC_MP51, OutputContainer.MPEG_TS, True, "AC-3"),
    ("ac3-mp4", audio("ac3", 48000), ts.H264_HP41, OutputContainer.MP4, False, "ac3"),
    ("ac3-44.1k-ts", audio("ac3", 44100), ts.H264_HP41, OutputContainer.MPEG_TS, False, "ac3"),
    ("ac3-5.1-ts", audio("ac3", 48000, channels=6), ts.H264_HP41, OutputContainer.MPEG_TS,
     False, "6 channels"),
    # MPEG-2 systems accept MPEG-1 Layer III only
    ("mpeg2-mp3", audio("mp3", 48000), ts.MPEG2_MPML, OutputContainer.MPEG_PS, True, "MP3"),
    ("mpeg2-mp3-ts", audio("mp3", 44100), ts.MPEG2_MPHL, OutputContainer.MPEG_TS, True, "MP3"),
    ("mpeg2-mp3-22.05k", audio("mp3", 22050), ts.MPEG2_MPML, OutputContainer.MPEG_PS, False,
     "MP3 only"),
    ("mpeg2-mp2", audio("mp2", 48000), ts.MPEG2_MPML, OutputContainer.MPEG_PS, False,
     "MP3 only"),
    ("mpeg2-aac", audio("aac", 48000), ts.MPEG2_MPHL, OutputContainer.MPEG_TS, False,
     "MP3 only"),
    ("mpeg2-ac3", audio("ac3", 48000), ts.MPEG2_MPML, OutputContainer.MPEG_TS, False,
     "MP3 only"),
]


@pytest.mark.parametrize(("a", "syntax", "container", "copied", "fragment"),
                         [c[1:] for c in AUDIO_CASES], ids=[c[0] for c in AUDIO_CASES])
def test_choose_audio(a: AudioStreamInfo, syntax: ts.VideoTransferSyntax,
                      container: OutputContainer, copied: bool, fragment: str) -> None:
    decision = choose_audio(a, syntax, container, True)
    assert decision.stream_index == a.index
    assert decision.copy is copied
    assert fragment in decision.reason


@pytest.mark.parametrize(("a", "syntax", "container"),
                         [c[1:4] for c in AUDIO_CASES], ids=[c[0] for c in AUDIO_CASES])
def test_no_audio_drops_every_stream(a: AudioStreamInfo, syntax: ts.VideoTransferSyntax,
                                     container: OutputContainer) -> None:
    decision = choose_audio(a, syntax, container, False)
    assert decision.copy is False
    assert "--no-audio" in decision.reason


def test_plan_audio_decisions_and_warnings() -> None:
    streams = (audio("aac", 48000, index=1), audio("aac", 44100, index=2),
               audio("opus", 48000, index=3), audio("mp3", 44100, index=4))
    plan = plan_conversion(media(audio_streams=streams))
    assert plan.action is Action.COPY
    assert [a.stream_index for a in plan.audio] == [1, 2, 3, 4]
    assert plan.copied_audio == (1, 4)
    assert [a.transcode_to for a in plan.audio] == [None, "aac", "aac", None]
    assert "48 kHz" in plan.audio[1].reason and "opus" in plan.audio[2].reason
    assert plan.needs_transcode and plan.video_target is None
    assert not [w for w in plan.warnings if w.startswith("audio stream")]


def test_audio_is_dropped_not_transcoded_when_transcoding_is_forbidden() -> None:
    streams = (audio("aac", 44100, index=1), audio("opus", 48000, index=2))
    plan = plan_conversion(media(audio_streams=streams), Request(transcode=TranscodePolicy.NEVER))
    assert [a.action for a in plan.audio] == ["drop", "drop"]
    dropped = [w for w in plan.warnings if w.startswith("audio stream")]
    assert len(dropped) == 2 and "48 kHz" in dropped[0] and "opus" in dropped[1]
    assert not plan.needs_transcode


def test_mpeg2_video_gets_mp3_audio() -> None:
    plan = plan_conversion(media(mpeg2(), container="mpeg", audio_streams=(audio("aac"),)))
    assert plan.audio[0].transcode_to == "mp3"


def test_plan_without_audio_drops_silently() -> None:
    streams = (audio("aac", 48000, index=1), audio("mp3", 44100, index=2))
    plan = plan_conversion(media(audio_streams=streams), Request(audio=False))
    assert plan.copied_audio == ()
    assert all(a.reason == "--no-audio" for a in plan.audio)
    assert len(plan.audio) == 2
    assert not any(w.startswith("audio stream") for w in plan.warnings)


def test_ac3_follows_the_container_in_a_plan() -> None:
    info = media(audio_streams=(audio("ac3", 48000),))
    assert plan_conversion(info).copied_audio == ()
    assert plan_conversion(info, Request(container=ContainerChoice.TS)).copied_audio == (1,)


def test_mpeg2_plan_copies_mp3_only() -> None:
    streams = (audio("mp3", 48000, index=1), audio("mp2", 48000, index=2),
               audio("ac3", 48000, index=3))
    plan = plan_conversion(media(mpeg2(), audio_streams=streams, container="mpeg"))
    assert plan.container is OutputContainer.MPEG_PS
    assert plan.copied_audio == (1,)


# --- container ------------------------------------------------------------------------------

CONTAINER_CASES: list[tuple[str, VideoStreamInfo, str, ContainerChoice | None,
                            OutputContainer]] = [
    ("h264-default-mp4", video(), MP4_FORMAT, None, OutputContainer.MP4),
    ("h264-from-mkv", video(), "matroska,webm", None, OutputContainer.MP4),
    ("h264-from-ts", video(), "mpegts", None, OutputContainer.MP4),
    ("h264-raw", video(), "h264", None, OutputContainer.MP4),
    ("h264-ts-requested", video(), MP4_FORMAT, ContainerChoice.TS, OutputContainer.MPEG_TS),
    ("h264-mp4-requested", video(), "mpegts", ContainerChoice.MP4, OutputContainer.MP4),
    ("hevc-default-mp4", hevc(), MP4_FORMAT, None, OutputContainer.MP4),
    ("hevc-ts-requested", hevc(), MP4_FORMAT, ContainerChoice.TS, OutputContainer.MPEG_TS),
    ("mpeg2-ps-stays-ps", mpeg2(), "mpeg", None, OutputContainer.MPEG_PS),
    ("mpeg2-ps-ts-requested", mpeg2(), "mpeg", ContainerChoice.TS, OutputContainer.MPEG_TS),
    ("mpeg2-from-ts", mpeg2(), "mpegts", None, OutputContainer.MPEG_TS),
    ("mpeg2-from-mp4", mpeg2(), MP4_FORMAT, None, OutputContainer.MPEG_TS),
    ("mpeg2-elementary", mpeg2(), "mpegvideo", None, OutputContainer.MPEG_TS),
    ("mpeg2-hl-ps", mpeg2(level=4, width=1920, height=1080), "mpeg", None,
     OutputContainer.MPEG_PS),
]


@pytest.mark.parametrize(("v", "fmt", "requested", "expected"),
                         [c[1:] for c in CONTAINER_CASES], ids=[c[0] for c in CONTAINER_CASES])
def test_choose_container(v: VideoStreamInfo, fmt: str, requested: ContainerChoice | None,
                          expected: OutputContainer) -> None:
    syntax, broken = choose_transfer_syntax(v)
    assert syntax is not None, broken
    assert choose_container(media(v, container=fmt), syntax, requested) is expected
    plan = plan_conversion(media(v, container=fmt), Request(container=requested))
    assert plan.container is expected
    container_decisions = [d for d in plan.decisions if d.topic == "container"]
    assert len(container_decisions) == 1
    assert container_decisions[0].choice == expected
    assert container_decisions[0].reason.strip()


def test_output_container_values_are_ffmpeg_muxer_names() -> None:
    assert OutputContainer.MP4.value == "mp4"
    assert OutputContainer.MPEG_TS.value == "mpegts"
    assert OutputContainer.MPEG_PS.value == "vob"


# --- layout ---------------------------------------------------------------------------------

def segment_bytes(segment: Segment, frame_bytes: int) -> int:
    return (segment.end_frame - segment.first_frame) * frame_bytes


def assert_well_cut(segments: tuple[Segment, ...], keyframes: tuple[KeyFrame, ...],
                    frame_count: int) -> None:
    starts = {k.frame_index for k in keyframes} | {0}
    assert segments[0].first_frame == 0
    assert segments[-1].end_frame == frame_count
    for a, b in itertools.pairwise(segments):
        assert a.end_frame == b.first_frame
    for s in segments:
        assert s.first_frame < s.end_frame
        assert s.first_frame in starts


def test_small_video_is_a_single_fragment() -> None:
    v = video()
    plan = plan_conversion(media(v))
    assert plan.layout is Layout.SINGLE
    assert plan.segments == (Segment(0, 250),)
    assert plan.transfer_syntax_uid == ts.H264_HP41.uid
    assert plan.decisions[-1].topic == "layout"


def test_estimate_exactly_at_the_limit_is_single() -> None:
    v = gop_video(100, 10, 1000)
    limit = estimated_container_bytes(v.packet_bytes, 100, OutputContainer.MP4)
    plan = plan_conversion(media(v), Request(max_item_bytes=limit))
    assert plan.layout is Layout.SINGLE
    plan = plan_conversion(media(v), Request(max_item_bytes=limit - 1))
    assert plan.layout is Layout.SPLIT


@pytest.mark.parametrize(("v", "container", "fmt"), [
    (gop_video(1000, 50, 10_000), None, MP4_FORMAT),
    (gop_video(1000, 50, 10_000), ContainerChoice.TS, MP4_FORMAT),
    (gop_video(1000, 50, 10_000, codec="mpeg2video", profile="Main", level=8, width=720,
               height=576, interlaced=True), None, "mpeg"),
], ids=["h264-mp4", "h264-ts", "mpeg2-ps"])
def test_oversized_non_fragmentable_video_is_split(
        v: VideoStreamInfo, container: ContainerChoice | None, fmt: str) -> None:
    limit = 3_000_000
    plan = plan_conversion(media(v, container=fmt),
                           Request(container=container, max_item_bytes=limit))
    assert plan.action is Action.COPY
    assert plan.layout is Layout.SPLIT
    assert plan.transfer_syntax is not None
    assert plan.transfer_syntax_uid == plan.transfer_syntax.uid
    assert plan.container is not None
    assert len(plan.segments) > 1
    assert_well_cut(plan.segments, v.keyframes, 1000)
    for s in plan.segments:
        estimate = estimated_container_bytes(segment_bytes(s, 10_000),
                                             s.end_frame - s.first_frame, plan.container)
        assert estimate <= limit, s
    layout = plan.decisions[-1]
    assert layout.topic == "layout" and layout.choice == Layout.SPLIT
    assert str(len(plan.segments)) in layout.reason
    assert_reasons(plan)


def test_split_counts_for_a_regular_stream() -> None:
    # 10 kB frames, 50-frame GOPs, MP4: a piece of n frames is 10_064 n + 1 MiB, so at most
    # 3 GOPs (150 frames) fit in 3 MB.
    v = gop_video(1000, 50, 10_000)
    plan = plan_conversion(media(v), Request(max_item_bytes=3_000_000))
    assert plan.segments == (
        Segment(0, 150), Segment(150, 300), Segment(300, 450), Segment(450, 600),
        Segment(600, 750), Segment(750, 900), Segment(900, 1000))


def random_stream(seed: int) -> tuple[tuple[KeyFrame, ...], list[int]]:
    rng = random.Random(seed)
    frames = rng.randrange(200, 2000)
    sizes = [rng.randrange(500, 40_000) for _ in range(frames)]
    cumulative = [0, *itertools.accumulate(sizes)]
    starts = [0]
    while True:
        nxt = starts[-1] + rng.randrange(1, 120)
        if nxt >= frames:
            break
        starts.append(nxt)
    if rng.random() < 0.5:
        starts = starts[1:]  # the first key frame is not frame 0: the cut adds it
    return tuple(KeyFrame(i, cumulative[i]) for i in starts), cumulative


@pytest.mark.parametrize("container", [OutputContainer.MP4, OutputContainer.MPEG_TS])
@pytest.mark.parametrize("seed", range(25))
def test_split_at_keyframes_properties(seed: int, container: OutputContainer) -> None:
    keyframes, cumulative = random_stream(seed)
    frames = len(cumulative) - 1
    starts = sorted({0, *(k.frame_index for k in keyframes)})
    gops = [*itertools.pairwise([*starts, frames])]

    def estimate(first: int, end: int) -> int:
        return estimated_container_bytes(cumulative[end] - cumulative[first], end - first,
                                         container)

    largest_gop = max(estimate(a, b) for a, b in gops)
    limit = largest_gop + random.Random(seed).randrange(0, 3 * largest_gop)
    segments = split_at_keyframes(keyframes, frames, cumulative[-1], container, limit)
    assert_well_cut(segments, keyframes, frames)
    for s in segments:
        assert estimate(s.first_frame, s.end_frame) <= limit, s
    # greedy: no piece could have taken the next GOP as well
    for s in segments[:-1]:
        next_start = next(b for a, b in gops if a == s.end_frame)
        assert estimate(s.first_frame, next_start) > limit, s


def test_split_isolates_a_gop_larger_than_the_limit() -> None:
    keyframes = (KeyFrame(0, 0), KeyFrame(10, 10_000), KeyFrame(20, 5_010_000),
                 KeyFrame(30, 5_020_000))
    segments = split_at_keyframes(keyframes, 40, 5_030_000, OutputContainer.MP4, 2 * MiB)
    # the oversized GOP [10, 20) stands alone; everything else is grouped around it
    assert segments == (Segment(0, 10), Segment(10, 20), Segment(20, 40))


def test_split_without_keyframes_is_one_piece() -> None:
    segments = split_at_keyframes((), 100, 50 * MiB, OutputContainer.MP4, 2 * MiB)
    assert segments == (Segment(0, 100),)


def test_split_with_audio_counts_the_audio() -> None:
    # video alone fits one item, video + copied AAC does not
    frames, gop = 200, 20
    keyframes = tuple(KeyFrame(i, i * 12_000) for i in range(0, frames, gop))
    v = video(frames=frames, keyframes=keyframes, packet_bytes=frames * 10_000)
    limit = MiB + 64 * frames + 2_100_000
    info = media(v, audio_streams=(audio(),), total_packet_bytes=frames * 12_000)
    with_audio = plan_conversion(info, Request(max_item_bytes=limit))
    assert with_audio.copied_audio == (1,)
    assert with_audio.layout is Layout.SPLIT
    assert_well_cut(with_audio.segments, keyframes, frames)
    without = plan_conversion(info, Request(max_item_bytes=limit, audio=False))
    assert without.layout is Layout.SINGLE


def test_split_with_dropped_audio_keeps_every_piece_under_the_limit() -> None:
    # Three 10-frame GOPs. Video bytes per frame: 10 kB, 100 kB, 150 kB; audio (dropped, as
    # Opus cannot be stored) 90 kB per frame in the first two GOPs. KeyFrame.bytes_before
    # counts every demuxed packet, as probe does.
    video_sizes = [10_000] * 10 + [100_000] * 10 + [150_000] * 10
    audio_sizes = [90_000] * 20 + [0] * 10
    everything = [0, *itertools.accumulate(v + a for v, a in zip(video_sizes, audio_sizes,
                                                                strict=True))]
    video_only = [0, *itertools.accumulate(video_sizes)]
    keyframes = tuple(KeyFrame(i, everything[i]) for i in (0, 10, 20))
    v = video(frames=30, keyframes=keyframes, packet_bytes=video_only[-1])
    info = media(v, audio_streams=(audio("opus"),), total_packet_bytes=everything[-1])
    limit = MiB + 2_000_000
    plan = plan_conversion(info, Request(max_item_bytes=limit))
    assert plan.copied_audio == ()
    assert plan.layout is Layout.SPLIT
    for s in plan.segments:
        muxed = estimated_container_bytes(video_only[s.end_frame] - video_only[s.first_frame],
                                          s.end_frame - s.first_frame, OutputContainer.MP4)
        assert muxed <= limit, s


def test_oversized_hevc_spans_fragments() -> None:
    v = replace(hevc(), packet_bytes=50 * MiB,
                keyframes=tuple(KeyFrame(i, i * 200_000) for i in range(0, 250, 25)))
    plan = plan_conversion(media(v), Request(max_item_bytes=8 * MiB))
    assert plan.layout is Layout.FRAGMENTS
    assert plan.transfer_syntax_uid == "1.2.840.10008.1.2.4.107"
    assert plan.segments == (Segment(0, 250),)
    assert plan.decisions[-1].choice == Layout.FRAGMENTS
    assert_reasons(plan)


@pytest.mark.parametrize(("v", "fmt", "uid"), [
    (video(), MP4_FORMAT, "1.2.840.10008.1.2.4.102.1"),
    (video(width=1920, height=1080, rate=Fraction(24)), MP4_FORMAT,
     "1.2.840.10008.1.2.4.103.1"),
    (video(level=42, width=1920, height=1080, rate=Fraction(60)), MP4_FORMAT,
     "1.2.840.10008.1.2.4.104.1"),
    (mpeg2(), "mpeg", "1.2.840.10008.1.2.4.100.1"),
    (mpeg2(level=4, width=1920, height=1080), "mpegts", "1.2.840.10008.1.2.4.101.1"),
], ids=["102", "103", "104", "100", "101"])
def test_fragmentable_request_uses_the_fragmentable_twin(v: VideoStreamInfo, fmt: str,
                                                         uid: str) -> None:
    for limit in (ts.MAX_ITEM_BYTES, 2 * MiB):  # small and oversized alike
        plan = plan_conversion(media(v, container=fmt),
                               Request(fragmentable=True, max_item_bytes=limit))
        assert plan.layout is Layout.FRAGMENTS
        assert plan.transfer_syntax_uid == uid
        assert plan.segments == (Segment(0, v.timing.frame_count),)
        assert "--fragmentable" in plan.decisions[-1].reason


def test_fragmentable_request_for_hevc_keeps_107() -> None:
    plan = plan_conversion(media(hevc()), Request(fragmentable=True))
    assert plan.layout is Layout.SINGLE
    assert plan.transfer_syntax_uid == "1.2.840.10008.1.2.4.107"


def test_choose_layout_directly() -> None:
    v = gop_video(1000, 50, 10_000)
    info = media(v)
    layout, segments, uid, why = choose_layout(info, ts.H264_HP41, OutputContainer.MP4, (),
                                               Request(max_item_bytes=3_000_000))
    assert layout is Layout.SPLIT
    assert uid == ts.H264_HP41.uid
    assert len(segments) == 7
    assert why.strip()
    layout, segments, uid, why = choose_layout(info, ts.H264_HP41, OutputContainer.MP4, (),
                                               Request())
    assert (layout, segments, uid) == (Layout.SINGLE, (Segment(0, 1000),), ts.H264_HP41.uid)
    assert why.strip()


def test_estimated_container_bytes_is_an_upper_bound_that_grows() -> None:
    for container in OutputContainer:
        small = estimated_container_bytes(1000, 10, container)
        assert small > 1000
        assert estimated_container_bytes(2000, 10, container) > small
        assert estimated_container_bytes(1000, 20, container) > small
    # a transport stream costs more than MP4 for the same payload
    assert (estimated_container_bytes(10 * MiB, 250, OutputContainer.MPEG_TS)
            > estimated_container_bytes(10 * MiB, 250, OutputContainer.MP4))


# --- warnings and reasons -------------------------------------------------------------------

def test_warnings_for_full_range_vfr_and_raw_streams() -> None:
    v = video(color_range="full", has_timestamps=False,
              timing=timing(Fraction(30), 10_000, variable=True, deltas=None))
    plan = plan_conversion(media(v, container="h264"))
    text = " | ".join(plan.warnings)
    assert "full-range" in text
    assert "Frame Time Vector" in text
    assert "without timestamps" in text
    assert len(plan.warnings) == 3


def test_no_warnings_for_a_clean_stream() -> None:
    v = video(timing=timing(Fraction(30), 10, variable=True, deltas=(33.0,) * 9))
    assert plan_conversion(media(v, audio_streams=(audio(),))).warnings == ()


SCENARIOS: list[tuple[str, MediaInfo, Request]] = [
    ("copy-h264", media(audio_streams=(audio(), audio("opus", index=2))), Request()),
    ("copy-bd", media(video(width=1920, height=1080, rate=Fraction(24))), Request()),
    ("copy-42", media(video(level=42, width=1920, height=1080, rate=Fraction(60))), Request()),
    ("copy-hevc-fragments", media(replace(hevc(), packet_bytes=50 * MiB)),
     Request(max_item_bytes=8 * MiB)),
    ("copy-mpeg2-ps", media(mpeg2(), container="mpeg", audio_streams=(audio("mp3"),)),
     Request()),
    ("split", media(gop_video(1000, 50, 10_000)), Request(max_item_bytes=3_000_000)),
    ("fragmentable", media(), Request(fragmentable=True)),
    ("transcode-profile", media(video(profile="Main")), Request()),
    ("transcode-vp9", media(video(codec="vp9")), Request()),
    ("transcode-always", media(), Request(transcode=TranscodePolicy.ALWAYS)),
    ("no-audio", media(audio_streams=(audio(),)), Request(audio=False)),
]


@pytest.mark.parametrize(("info", "request_"), [c[1:] for c in SCENARIOS],
                         ids=[c[0] for c in SCENARIOS])
def test_every_decision_has_a_reason(info: MediaInfo, request_: Request) -> None:
    plan = plan_conversion(info, request_)
    assert_reasons(plan)
    for a in plan.audio:
        assert a.reason.strip()
    if plan.action is Action.COPY:
        assert plan.transfer_syntax is not None
        topics = [d.topic for d in plan.decisions]
        assert topics == ["IOD", "transfer syntax", "action", "container", "layout"]
        assert plan.decisions[1].choice == plan.transfer_syntax.name
    else:
        topics = [d.topic for d in plan.decisions]
        assert topics[:3] == ["IOD", "action", "transfer syntax"]
        assert plan.video_target is not None
        assert plan.layout is Layout.SINGLE
        assert plan.segments == (Segment(0, info.video.timing.frame_count),)


def test_request_accepts_plain_strings_for_its_choices() -> None:
    request = Request(sop="endoscopic", transcode="always", container="ts",  # type: ignore[arg-type]
                      quality="compact", speed="fast", frames="rle")  # type: ignore[arg-type]
    assert request.transcode is TranscodePolicy.ALWAYS
    assert request.container is ContainerChoice.TS
    plan = plan_conversion(media(), replace(request, frames=None))
    assert plan.action is Action.TRANSCODE
    with pytest.raises(ValueError):
        Request(transcode="sometimes")  # type: ignore[arg-type]
