"""plan: the pure decision table. MediaInfo + Request -> Plan, with a reason for every choice.

Nothing here touches a file, so every rule can be tested exhaustively with hand-made records.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from fractions import Fraction

from vid2dcm.core import syntaxes as ts
from vid2dcm.core.conformance import choose_transfer_syntax
from vid2dcm.core.frame_syntaxes import FRAME_SYNTAXES, FrameEncoding, FrameSyntax
from vid2dcm.core.iods import VIDEO_IODS, SopChoice, VideoIOD
from vid2dcm.core.media_info import AudioStreamInfo, KeyFrame, MediaInfo, VideoStreamInfo
from vid2dcm.core.syntaxes import MAX_ITEM_BYTES, VideoTransferSyntax
from vid2dcm.planning.chunks import MIN_CHUNK_S
from vid2dcm.planning.video_target import Quality, Speed, VideoTarget, choose_video_target


class TranscodePolicy(StrEnum):
    AUTO = "auto"
    NEVER = "never"
    ALWAYS = "always"


class ContainerChoice(StrEnum):
    MP4 = "mp4"
    TS = "ts"


class Action(StrEnum):
    COPY = "copy"
    TRANSCODE = "transcode"
    FRAMES = "frames"
    """Decoded and stored frame by frame as still images."""


class Layout(StrEnum):
    SINGLE = "single"
    """One instance, one fragment."""
    FRAGMENTS = "fragments"
    """One instance whose bitstream spans several fragments (HEVC, or a Fragmentable syntax)."""
    SPLIT = "split"
    """Several independently playable instances in one series, cut at key frames."""


class OutputContainer(StrEnum):
    MP4 = "mp4"
    MPEG_TS = "mpegts"
    MPEG_PS = "vob"

    @property
    def extension(self) -> str:
        return {"mp4": "mp4", "mpegts": "ts", "vob": "mpg"}[self.value]


@dataclass(frozen=True)
class Request:
    """What the caller asked for; every field has the default a user expects.

    Plain strings are accepted for the choices ("always", "ts", "endoscopic"...) and turned
    into their enums, so library callers get the same checks as the command line."""

    sop: SopChoice = SopChoice.PHOTOGRAPHIC
    transcode: TranscodePolicy = TranscodePolicy.AUTO
    container: ContainerChoice | None = None
    audio: bool = True
    fragmentable: bool = False
    max_item_bytes: int = MAX_ITEM_BYTES
    """Largest fragment or instance bitstream; below 2^32-2 only to exercise splitting."""
    quality: Quality = Quality.STANDARD
    speed: Speed = Speed.BALANCED
    max_size: tuple[int, int] | None = None
    """Bounding box (width, height) for transcoded pictures, turned to their orientation."""
    measure_quality: bool = False
    """Compute PSNR/SSIM of a transcoded video against its source (costs a second decode)."""
    frames: FrameEncoding | None = None
    """Store frame by frame with this encoding (default JPEG for the US and SC IODs)."""
    stream: int | None = None
    """Convert only this video stream (container index, as probe lists it); by default every
    video stream becomes its own instance in its own series of the same study."""
    frame_rate: Fraction | None = None
    """Rate for raw elementary streams (.h264/.hevc/.m2v), which carry no timestamps; it
    overrides the SPS/VPS VUI timing. Ignored (with a warning) where timestamps exist."""
    jobs: int = 1
    """Processes that encode a long transcode's chunks at once (planning/chunks.py decides
    whether it is long enough to split; 1 is a single pass)."""
    min_chunk_s: float = MIN_CHUNK_S
    """Shortest chunk when splitting a transcode (small only to exercise the chunks in tests)."""

    def __post_init__(self) -> None:
        if self.frame_rate is not None and not isinstance(self.frame_rate, Fraction):
            object.__setattr__(self, "frame_rate", Fraction(str(self.frame_rate)))
        if self.frame_rate is not None and self.frame_rate <= 0:
            raise ValueError("frame_rate must be positive")
        if self.jobs < 1:
            raise ValueError("jobs must be at least 1")
        for name, kind in (("sop", SopChoice), ("transcode", TranscodePolicy),
                           ("container", ContainerChoice), ("quality", Quality),
                           ("speed", Speed), ("frames", FrameEncoding)):
            value = getattr(self, name)
            if value is not None and not isinstance(value, kind):
                object.__setattr__(self, name, kind(value))


@dataclass(frozen=True)
class Decision:
    topic: str
    choice: str
    reason: str


@dataclass(frozen=True)
class AudioDecision:
    stream_index: int
    copy: bool
    reason: str
    transcode_to: str | None = None
    """'aac' or 'mp3' when the stream is re-encoded instead of dropped."""

    @property
    def action(self) -> str:
        return "copy" if self.copy else f"transcode to {self.transcode_to}" if (
            self.transcode_to) else "drop"


@dataclass(frozen=True)
class Segment:
    """Frames [first_frame, end_frame) in decode order, starting on a key frame."""

    first_frame: int
    end_frame: int


@dataclass(frozen=True)
class Plan:
    iod: VideoIOD
    action: Action
    transfer_syntax: VideoTransferSyntax | None
    transfer_syntax_uid: str | None
    container: OutputContainer | None
    layout: Layout
    segments: tuple[Segment, ...]
    audio: tuple[AudioDecision, ...]
    broken_rules: tuple[str, ...]
    """Why the stream cannot be copied as it is (empty when it can)."""
    decisions: tuple[Decision, ...]
    warnings: tuple[str, ...] = field(default=())
    video_target: VideoTarget | None = None
    """What the video is encoded to, when it must be transcoded (geometry only for frames)."""
    frame_syntax: FrameSyntax | None = None
    """Set when the video is stored frame by frame."""

    @property
    def copied_audio(self) -> tuple[int, ...]:
        return tuple(a.stream_index for a in self.audio if a.copy)

    @property
    def needs_transcode(self) -> bool:
        """Anything to re-encode (video or audio) before the container can be wrapped."""
        if self.frame_syntax is not None:
            return False
        return self.video_target is not None or any(a.transcode_to for a in self.audio)

    @property
    def storable(self) -> bool:
        return self.transfer_syntax is not None or (
            self.frame_syntax is not None and not self.broken_rules)


def plan_conversion(info: MediaInfo, request: Request = Request()) -> Plan:
    """Decide IOD, transfer syntax, copy or transcode, container, audio and layout."""
    iod = VIDEO_IODS[request.sop]
    decisions = [Decision("IOD", iod.name, _iod_reason(request.sop))]
    warnings: list[str] = list(info.warnings)
    encoding = request.frames or (FrameEncoding.JPEG if iod.frames_only else None)
    if encoding is not None:
        return _plan_frames(info, request, iod, encoding, decisions, warnings)
    syntax, broken = choose_transfer_syntax(info.video)
    if request.transcode is TranscodePolicy.ALWAYS:
        broken = [*broken, "--transcode always was requested"]
    target: VideoTarget | None = None
    if syntax is not None and not broken:
        decisions.append(Decision("transfer syntax", syntax.name,
                                  _syntax_reason(info.video, syntax)))
        decisions.append(Decision("action", Action.COPY, "the bitstream is already storable; "
                                  "packets are copied bit-exact, only the container is rewritten"))
        action = Action.COPY
    else:
        decisions.append(Decision("action", Action.TRANSCODE, "; ".join(broken)))
        action = Action.TRANSCODE
        syntax = None
        if request.transcode is not TranscodePolicy.NEVER:
            target = choose_video_target(info.video, request.quality, request.speed,
                                         request.max_size)
            syntax = target.syntax
            decisions.append(Decision("transfer syntax", syntax.name, "transcode target: "
                                      + target.describe()))
            for step in target.steps:
                decisions.append(Decision("picture", "changed", step))
            warnings.extend(target.warnings)
    container = choose_container(info, syntax, request.container) if syntax else None
    if container is not None:
        decisions.append(Decision("container", container,
                                  _container_reason(info, container, target is None)))
    audio = tuple(
        _audio_action(choose_audio(a, syntax, container, request.audio), syntax, request)
        for a in info.audio
    ) if syntax and container else ()
    for a in audio:
        if not a.copy and not a.transcode_to and request.audio:
            warnings.append(f"audio stream #{a.stream_index} dropped: {a.reason}")
    _warn_about_video(info.video, warnings, copied=action is Action.COPY)
    if request.fragmentable and syntax is not None and syntax.fragmentable_uid is None:
        warnings.append(f"--fragmentable: {syntax.name} has no Fragmentable transfer syntax; "
                        f"it is written as {syntax.uid}, which already allows several "
                        "fragments")
    layout = Layout.SINGLE
    segments: tuple[Segment, ...] = (Segment(0, info.video.timing.frame_count),)
    ts_uid: str | None = None
    if syntax is not None and container is not None:
        layout, segments, ts_uid, why = choose_layout(info, syntax, container, audio, request)
        if target is not None:
            why = "decided on the encoded stream: " + why
        decisions.append(Decision("layout", layout, why))
    return Plan(
        iod=iod,
        action=action,
        transfer_syntax=syntax,
        transfer_syntax_uid=ts_uid,
        container=container,
        layout=layout,
        segments=segments,
        audio=audio,
        broken_rules=tuple(broken),
        decisions=tuple(decisions),
        warnings=tuple(warnings),
        video_target=target,
    )


RAW_LIMIT = MAX_ITEM_BYTES


def _plan_frames(info: MediaInfo, request: Request, iod: VideoIOD, encoding: FrameEncoding,
                 decisions: list[Decision], warnings: list[str]) -> Plan:
    """Frame by frame: decode, fix the geometry as for a transcode, encode each picture."""
    syntax = FRAME_SYNTAXES[encoding]
    target = choose_video_target(info.video, request.quality, request.speed, request.max_size)
    why = (f"--frames {encoding.value}" if request.frames else
           f"{iod.name} takes still frames, not a video bitstream")
    decisions.append(Decision("action", Action.FRAMES, why))
    decisions.append(Decision("transfer syntax", syntax.name,
                              f"{target.width}x{target.height} frames, Photometric "
                              f"Interpretation {syntax.photometric}"))
    for step in target.steps:
        decisions.append(Decision("picture", "changed", step))
    warnings.extend(target.warnings)
    broken: list[str] = []
    frames = info.video.timing.frame_count
    if encoding is FrameEncoding.RAW and frames * target.width * target.height * 3 > RAW_LIMIT:
        broken.append(f"{frames} uncompressed {target.width}x{target.height} RGB frames exceed "
                      "the 4 GiB limit of native Pixel Data; use --frames jpeg or rle")
    audio = tuple(AudioDecision(a.index, False, "frame-by-frame objects carry no audio")
                  for a in info.audio)
    if audio and request.audio:
        warnings.append("audio dropped: frame-by-frame objects carry no audio")
    _warn_about_video(info.video, warnings, copied=False)
    return Plan(
        iod=iod, action=Action.FRAMES, transfer_syntax=None, transfer_syntax_uid=syntax.uid,
        container=None, layout=Layout.SINGLE, segments=(Segment(0, frames),), audio=audio,
        broken_rules=tuple(broken), decisions=tuple(decisions), warnings=tuple(warnings),
        video_target=target, frame_syntax=syntax,
    )


def _audio_action(decision: AudioDecision, syntax: VideoTransferSyntax,
                  request: Request) -> AudioDecision:
    """Audio that cannot be copied is re-encoded, unless the caller forbade transcoding."""
    if decision.copy or not request.audio or request.transcode is TranscodePolicy.NEVER:
        return decision
    codec = "mp3" if syntax.codec == "mpeg2video" else "aac"
    return replace(decision, transcode_to=codec)


def _syntax_reason(v: VideoStreamInfo, syntax: VideoTransferSyntax) -> str:
    facts = (f"{v.codec} {v.profile} level {v.level}, {v.width}x{v.height} "
             f"{'interlaced' if v.interlaced else 'progressive'} at "
             f"{float(v.timing.rate):.3f} fps, {v.chroma} {v.bit_depth}-bit")
    if syntax is ts.H264_HP41_BD:
        return facts + "; size, rate and scan match a BD combination of PS3.5 Table 8-4"
    if syntax is ts.H264_HP42_2D:
        return facts + "; needs Level 4.2 (beyond Level 4.1 limits)"
    return facts + f"; within {syntax.name}"


def _iod_reason(choice: SopChoice) -> str:
    return {
        SopChoice.PHOTOGRAPHIC: "default for camera video (--sop photographic)",
        SopChoice.ENDOSCOPIC: "requested: endoscope/laparoscope video (--sop endoscopic)",
        SopChoice.MICROSCOPIC: "requested: microscope camera video (--sop microscopic)",
        SopChoice.ULTRASOUND: "requested: ultrasound cine for receivers without video "
                              "(--sop ultrasound)",
        SopChoice.SC: "requested: generic multi-frame colour capture (--sop sc)",
    }[choice]


def _warn_about_video(v: VideoStreamInfo, warnings: list[str], copied: bool) -> None:
    """Caveats the output will carry; range only matters when the samples are copied as-is."""
    if copied and v.color_range == "full":
        warnings.append("the video is full-range (JPEG levels) while DICOM describes it as "
                        "YBR_PARTIAL_420; some viewers will show it with raised contrast")
    if v.timing.variable and v.timing.frame_deltas_ms is None:
        warnings.append("variable frame rate with too many frames for a Frame Time Vector; "
                        "the mean Frame Time is recorded, the bitstream keeps exact timing")
    if not v.has_timestamps:
        warnings.append(f"raw elementary stream without timestamps; frames are timed at "
                        f"{float(v.timing.rate):.3f} fps ({v.timing.rate_source})")


# --- container ------------------------------------------------------------------------------

def choose_container(info: MediaInfo, syntax: VideoTransferSyntax,
                     requested: ContainerChoice | None) -> OutputContainer:
    if syntax.codec == "mpeg2video":
        if requested is ContainerChoice.TS or info.container != "mpeg":
            return OutputContainer.MPEG_TS
        return OutputContainer.MPEG_PS
    return OutputContainer.MPEG_TS if requested is ContainerChoice.TS else OutputContainer.MP4


def _container_reason(info: MediaInfo, container: OutputContainer, copied: bool) -> str:
    how = "by packet copy" if copied else "written by the encoder"
    if container is OutputContainer.MP4:
        return f"{info.container} -> MP4 (ISO BMFF) with the index first, {how}"
    if container is OutputContainer.MPEG_PS:
        return f"MPEG-2 program stream kept, {how}"
    return f"{info.container} -> MPEG-2 transport stream, {how}"


# --- audio ----------------------------------------------------------------------------------

AUDIO_RATES_MPEG1 = frozenset({32000, 44100, 48000})


def choose_audio(a: AudioStreamInfo, syntax: VideoTransferSyntax,
                 container: OutputContainer, wanted: bool) -> AudioDecision:
    """PS3.5 8.2.12 for H.264/HEVC; MPEG-1 Layer III for MPEG-2 systems."""
    if not wanted:
        return AudioDecision(a.index, False, "--no-audio")
    if a.channels not in (1, 2):
        return AudioDecision(a.index, False, f"{a.codec} with {a.channels} channels; "
                             "DICOM describes mono or stereo channels only")
    if syntax.codec == "mpeg2video":
        if a.codec == "mp3" and a.sample_rate in AUDIO_RATES_MPEG1:
            return AudioDecision(a.index, True, "MP3 in an MPEG-2 system stream")
        return AudioDecision(a.index, False, f"{a.codec} {a.sample_rate} Hz is not allowed with "
                             "MPEG-2 video (MP3 only)")
    if a.codec == "aac":
        if a.sample_rate == 48000:
            return AudioDecision(a.index, True, "AAC 48 kHz")
        return AudioDecision(a.index, False, f"AAC at {a.sample_rate} Hz; DICOM allows AAC at "
                             "48 kHz only")
    if a.codec in ("mp3", "mp2") and a.sample_rate in AUDIO_RATES_MPEG1:
        return AudioDecision(a.index, True, f"{'MP3' if a.codec == 'mp3' else 'MPEG-1 Layer II'}")
    if a.codec == "ac3" and container is OutputContainer.MPEG_TS and a.sample_rate == 48000:
        return AudioDecision(a.index, True, "AC-3 48 kHz in a transport stream")
    return AudioDecision(a.index, False, f"{a.codec} audio is not allowed in DICOM video "
                         "(AAC 48 kHz, MP3 or MPEG-1 Layer II)")


# --- layout: one fragment, several fragments, or several instances -------------------------

def estimated_container_bytes(payload: int, frames: int, container: OutputContainer) -> int:
    """A safe upper bound of the muxed size, so a cut never overshoots an item."""
    if container is OutputContainer.MP4:
        return payload + 64 * frames + (1 << 20)
    return payload * 21 // 20 + 200 * frames + (1 << 20)


def choose_layout(info: MediaInfo, syntax: VideoTransferSyntax, container: OutputContainer,
                  audio: tuple[AudioDecision, ...], request: Request
                  ) -> tuple[Layout, tuple[Segment, ...], str, str]:
    v = info.video
    frames = v.timing.frame_count
    payload = info.total_packet_bytes if any(a.copy for a in audio) else v.packet_bytes
    estimate = estimated_container_bytes(payload, frames, container)
    whole = (Segment(0, frames),)
    if request.fragmentable and syntax.fragmentable_uid:
        return (Layout.FRAGMENTS, whole, syntax.fragmentable_uid,
                "--fragmentable: one instance, Fragmentable transfer syntax")
    if request.fragmentable and syntax.multi_fragment:
        layout = Layout.FRAGMENTS if estimate > request.max_item_bytes else Layout.SINGLE
        return (layout, whole, syntax.uid, f"--fragmentable: {syntax.name} has no "
                "Fragmentable twin because it already allows several fragments (PS3.5 "
                "8.2.10/8.2.11); one instance under its own UID")
    if estimate <= request.max_item_bytes:
        return Layout.SINGLE, whole, syntax.uid, "the bitstream fits one fragment"
    if syntax.multi_fragment:
        return (Layout.FRAGMENTS, whole, syntax.uid,
                f"{syntax.name} may span several fragments")
    # key frame offsets count every demuxed packet, so the cut works on the same measure
    segments = split_at_keyframes(v.keyframes, frames, info.total_packet_bytes, container,
                                  request.max_item_bytes)
    return (Layout.SPLIT, segments, syntax.uid,
            f"about {estimate} bytes exceed one fragment ({request.max_item_bytes}); split into "
            f"{len(segments)} independently playable instances at key frames")


def split_at_keyframes(keyframes: tuple[KeyFrame, ...], frame_count: int, payload_bytes: int,
                       container: OutputContainer, max_bytes: int) -> tuple[Segment, ...]:
    """Greedy cut at key frames so that every piece stays under max_bytes once muxed."""
    if not keyframes or keyframes[0].frame_index != 0:
        keyframes = (KeyFrame(0, 0), *keyframes)
    bounds = [*keyframes, KeyFrame(frame_count, payload_bytes)]
    segments: list[Segment] = []
    start = bounds[0]
    previous = start
    for point in bounds[1:]:
        size = estimated_container_bytes(point.bytes_before - start.bytes_before,
                                         point.frame_index - start.frame_index, container)
        if size > max_bytes and previous.frame_index > start.frame_index:
            segments.append(Segment(start.frame_index, previous.frame_index))
            start = previous
        previous = point
    segments.append(Segment(start.frame_index, frame_count))
    return tuple(segments)
