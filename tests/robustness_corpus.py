"""A seeded, randomised corpus of small videos made by FFmpeg, and the check every one must pass.

Used by the fast slice in tests/pipeline/test_robustness.py and by benchmarks/robustness.py (>= 1000
cases). A case is a random draw of codec x container x pixel format x rate x size (odd too) x
audio codec x VFR x interlace x SAR x GOP, plus, for some, damage (truncation, noise). The
Debian `ffmpeg` command line makes each file; a case FFmpeg cannot make (an encoder that
refuses an odd size, a muxer that refuses a codec) is not a valid input and is skipped, as is
one FFmpeg itself cannot decode.

A valid input passes when vid2dcm converts it to objects that pass the read-back battery
(pydicom, dcmdump, dciodvfy, vid2dcm validate, decoded frame count == Number of Frames), whose
Number of Frames adds up to the frames that decode from the source, and whose Frame Time (or
Frame Time Vector) matches the source's timing. A damaged input passes when it converts the
same way (frames counted in the output), or is refused with one clear line.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import pydicom

from readback import read_back
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.pipeline import convert


@dataclass(frozen=True)
class Codec:
    encoder: str
    containers: tuple[str, ...]
    pix_fmts: tuple[str, ...]
    extra: tuple[str, ...] = ()
    interlace: tuple[str, ...] = ()
    """Encoder flags that code the pictures as interlaced (empty: not supported)."""
    gop: bool = True


CODECS: dict[str, Codec] = {
    "h264": Codec("libx264", ("mp4", "mkv", "mov", "avi", "ts", "flv", "h264"),
                  ("yuv420p", "yuv420p", "yuv422p", "yuv444p", "yuv420p10le", "yuvj420p"),
                  ("-preset", "ultrafast", "-tune", "zerolatency"),
                  ("-flags", "+ildct+ilme", "-x264opts", "tff=1")),
    "h264b": Codec("libx264", ("mp4", "mkv", "mov", "ts"), ("yuv420p",),
                   ("-preset", "veryfast", "-bf", "3")),
    "hevc": Codec("libx265", ("mp4", "mkv", "mov", "ts", "hevc"),
                  ("yuv420p", "yuv420p10le", "yuv422p"),
                  ("-preset", "ultrafast", "-x265-params", "log-level=error")),
    "mpeg2": Codec("mpeg2video", ("mpg", "ts", "mkv", "m2v", "mp4"), ("yuv420p", "yuv422p"),
                   ("-q:v", "4"), ("-flags", "+ildct+ilme", "-top", "1")),
    "mpeg1": Codec("mpeg1video", ("mpg", "mkv"), ("yuv420p",), ("-q:v", "4")),
    "mpeg4": Codec("mpeg4", ("avi", "mp4", "mkv", "mov"), ("yuv420p",), ("-q:v", "5")),
    "mjpeg": Codec("mjpeg", ("avi", "mov", "mkv"), ("yuvj420p", "yuvj422p", "yuvj444p"),
                   ("-q:v", "5"), gop=False),
    "vp8": Codec("libvpx", ("webm", "mkv"), ("yuv420p",), ("-b:v", "300k", "-deadline",
                                                            "realtime", "-cpu-used", "8")),
    "vp9": Codec("libvpx-vp9", ("webm", "mkv", "mp4"), ("yuv420p", "yuv444p"),
                 ("-b:v", "300k", "-deadline", "realtime", "-cpu-used", "8")),
    "av1": Codec("libaom-av1", ("mkv", "mp4", "webm"), ("yuv420p",),
                 ("-cpu-used", "8", "-b:v", "200k", "-usage", "realtime")),
    "ffv1": Codec("ffv1", ("mkv", "avi"), ("yuv420p", "yuv444p", "gray", "yuv420p10le"),
                  gop=False),
    "huffyuv": Codec("huffyuv", ("avi", "mkv"), ("yuv422p", "rgb24"), gop=False),
    "rawvideo": Codec("rawvideo", ("avi", "mkv", "nut"), ("yuv420p", "bgr24"), gop=False),
    "prores": Codec("prores_ks", ("mov",), ("yuv422p10le", "yuv444p10le"), ("-profile:v", "0"),
                    gop=False),
    "wmv2": Codec("wmv2", ("avi", "asf"), ("yuv420p",)),
    "flv1": Codec("flv", ("flv",), ("yuv420p",)),
    "theora": Codec("libtheora", ("ogg", "mkv"), ("yuv420p",), ("-q:v", "5")),
    "cinepak": Codec("cinepak", ("avi", "mov"), ("rgb24",), gop=False),
    "utvideo": Codec("utvideo", ("avi", "mkv"), ("yuv420p", "yuv422p", "gbrp"), gop=False),
    "qtrle": Codec("qtrle", ("mov",), ("rgb24",), gop=False),
    "png": Codec("png", ("mov", "mkv"), ("rgb24",), gop=False),
    "h263p": Codec("h263p", ("avi", "mkv"), ("yuv420p",), ("-q:v", "5")),
    "msmpeg4v2": Codec("msmpeg4v2", ("avi",), ("yuv420p",), ("-q:v", "5")),
}

AUDIO: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "aac48": (("-c:a", "aac", "-ar", "48000", "-b:a", "64k"), ("mp4", "mkv", "mov", "ts", "flv")),
    "aac44": (("-c:a", "aac", "-ar", "44100", "-b:a", "64k"), ("mp4", "mkv", "mov", "ts")),
    "mp3": (("-c:a", "libmp3lame", "-ar", "44100", "-b:a", "64k"),
            ("mp4", "mkv", "mov", "avi", "ts", "mpg", "flv")),
    "mp2": (("-c:a", "mp2", "-ar", "48000", "-b:a", "128k"), ("mpg", "ts", "mkv", "avi")),
    "ac3": (("-c:a", "ac3", "-ar", "48000", "-b:a", "96k"), ("ts", "mkv", "mp4", "mpg", "avi")),
    "opus": (("-c:a", "libopus", "-ar", "48000", "-b:a", "32k"), ("webm", "mkv", "ogg")),
    "vorbis": (("-c:a", "libvorbis", "-ar", "44100", "-q:a", "2"), ("webm", "mkv", "ogg")),
    "pcm": (("-c:a", "pcm_s16le", "-ar", "48000"), ("avi", "mov", "mkv", "nut")),
    "flac": (("-c:a", "flac", "-ar", "48000"), ("mkv", "nut")),
    "alac": (("-c:a", "alac", "-ar", "44100"), ("mov",)),
    "wmav2": (("-c:a", "wmav2", "-ar", "44100"), ("asf", "avi")),
}

EXTENSIONS = {"mpg": "mpg", "ts": "ts", "m2v": "m2v", "h264": "h264", "hevc": "hevc",
              "asf": "wmv", "nut": "nut"}
FORMATS = {"mpg": "mpeg", "ts": "mpegts", "m2v": "mpeg2video", "h264": "h264", "hevc": "hevc",
           "asf": "asf", "mkv": "matroska", "mov": "mov", "mp4": "mp4", "avi": "avi",
           "flv": "flv", "webm": "webm", "ogg": "ogg", "nut": "nut"}
RAW = frozenset({"h264", "hevc", "m2v"})
RATES = (Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(24), Fraction(50),
         Fraction(60), Fraction(15), Fraction(12), Fraction(60000, 1001), Fraction(10))
SIZES = ((64, 48), (65, 49), (96, 64), (66, 38), (81, 45), (128, 72), (48, 64), (33, 31),
         (160, 90), (72, 55))
DAMAGE = ("truncate", "noise")


@dataclass(frozen=True)
class Case:
    number: int
    codec: str
    container: str
    pix_fmt: str
    rate: Fraction
    size: tuple[int, int]
    frames: int
    audio: str | None
    vfr: bool
    interlace: bool
    sar: Fraction | None
    gop: int
    damage: str | None = None

    @property
    def name(self) -> str:
        bits = [f"{self.number:04d}", self.codec, self.container, self.pix_fmt,
                f"{float(self.rate):g}fps", f"{self.size[0]}x{self.size[1]}"]
        bits += [f"a-{self.audio}"] if self.audio else []
        bits += ["vfr"] if self.vfr else []
        bits += ["interlaced"] if self.interlace else []
        bits += [f"sar{self.sar.numerator}-{self.sar.denominator}"] if self.sar else []
        bits += [f"gop{self.gop}"] if self.gop else []
        bits += [self.damage] if self.damage else []
        return "_".join(bits)

    @property
    def extension(self) -> str:
        return EXTENSIONS.get(self.container, self.container)

    @property
    def classes(self) -> tuple[str, ...]:
        """What the case exercises, for success rates by class."""
        out = [f"codec {self.codec}", f"container {self.container}",
               f"pix_fmt {self.pix_fmt}", f"audio {self.audio or 'none'}"]
        out += ["size odd"] if self.size[0] % 2 or self.size[1] % 2 else ["size even"]
        out += ["vfr"] if self.vfr else []
        out += ["interlaced"] if self.interlace else []
        out += ["non-square SAR"] if self.sar else []
        out += [f"damage {self.damage}"] if self.damage else ["undamaged"]
        return tuple(out)


def draw_cases(seed: int, count: int, damaged_share: float = 0.12) -> list[Case]:
    """count random cases; the same seed gives the same cases."""
    rng = random.Random(seed)
    names = sorted(CODECS)
    cases = []
    for number in range(count):
        codec_name = rng.choice(names)
        codec = CODECS[codec_name]
        container = rng.choice(codec.containers)
        audio_choices = [a for a, (_, hosts) in AUDIO.items() if container in hosts]
        audio = (rng.choice(audio_choices)
                 if audio_choices and container not in RAW and rng.random() < 0.45 else None)
        vfr = container not in RAW and rng.random() < 0.15
        cases.append(Case(
            number=number, codec=codec_name, container=container,
            pix_fmt=rng.choice(codec.pix_fmts), rate=rng.choice(RATES),
            size=rng.choice(SIZES), frames=rng.randint(6, 20), audio=audio, vfr=vfr,
            interlace=bool(codec.interlace) and rng.random() < 0.2,
            sar=rng.choice((Fraction(4, 3), Fraction(16, 15), Fraction(8, 9)))
            if rng.random() < 0.12 else None,
            gop=rng.choice((1, 5, 12, 0)) if codec.gop else 0,
            damage=rng.choice(DAMAGE) if rng.random() < damaged_share and container not in RAW
            else None))
    return cases


def ffmpeg_command(case: Case, out: Path) -> list[str]:
    codec = CODECS[case.codec]
    w, h = case.size
    rate = f"{case.rate.numerator}/{case.rate.denominator}"
    seconds = case.frames / float(case.rate) + 0.001
    cmd = ["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
           f"testsrc2=size={w}x{h}:rate={rate}:duration={seconds:.4f}"]
    if case.audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:duration={seconds:.4f}"]
    filters = []
    if case.vfr:
        filters.append("select='not(eq(mod(n\\,4)\\,2))'")
    if case.sar:
        filters.append(f"setsar={case.sar.numerator}/{case.sar.denominator}")
    if filters:
        cmd += ["-vf", ",".join(filters)]
    cmd += ["-fps_mode", "passthrough" if case.vfr else "cfr"]
    cmd += ["-c:v", codec.encoder, "-pix_fmt", case.pix_fmt, *codec.extra]
    if case.interlace:
        cmd += list(codec.interlace)
    if case.gop:
        cmd += ["-g", str(case.gop)]
    if case.audio:
        cmd += [*list(AUDIO[case.audio][0]), "-ac", "1"]
    cmd += ["-frames:v", str(case.frames), "-f", FORMATS[case.container], str(out)]
    return cmd


def make(case: Case, folder: Path) -> Path | None:
    """The case's file, or None when FFmpeg cannot make it (not a valid input)."""
    out = folder / f"{case.name}.{case.extension}"
    proc = subprocess.run(ffmpeg_command(case, out), capture_output=True, timeout=120,
                          check=False)
    if proc.returncode != 0 or not out.exists() or out.stat().st_size == 0:
        out.unlink(missing_ok=True)
        return None
    if case.damage:
        _damage(out, case)
    return out


def _damage(path: Path, case: Case) -> None:
    data = bytearray(path.read_bytes())
    rng = random.Random(case.number * 7919)
    if case.damage == "truncate":
        del data[int(len(data) * rng.uniform(0.55, 0.85)):]
    else:
        start = int(len(data) * 0.4)
        for _ in range(max(4, len(data) // 2000)):
            at = rng.randrange(start, len(data) - 1)
            data[at:at + 8] = bytes(rng.randrange(256) for _ in range(8))
    path.write_bytes(bytes(data))


@dataclass(frozen=True)
class SourceTruth:
    """What FFmpeg itself decodes from the input (the reference the output must match)."""

    frames: int
    streams: int
    """Video streams (not cover art)."""
    span_s: float | None
    """Display time from the first to the last decoded picture (None without timestamps)."""
    uniform: bool = True
    """Every display interval equal (within rounding): a constant-rate source."""


def decode_truth(path: Path) -> SourceTruth | None:
    """Decoded pictures of the first video stream; None when nothing decodes."""
    frames = 0
    stamps: list[float] = []
    try:
        with av.open(str(path)) as c:
            videos = [s for s in c.streams.video
                      if not int(s.disposition or 0) & int(av.stream.Disposition.attached_pic)]
            if not videos:
                return None
            stream = videos[0]
            packets = c.demux(stream)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except av.error.FFmpegError:
                    break  # the demuxer gave up: what decoded so far counts
                try:
                    decoded = stream.decode(packet)
                except av.error.FFmpegError:
                    continue  # a damaged packet: the decoder skips it, as ffmpeg does
                for frame in decoded:
                    frames += 1
                    if frame.pts is not None and frame.time_base is not None:
                        stamps.append(float(frame.pts * frame.time_base))
    except av.error.FFmpegError:
        return None
    if frames == 0:
        return None
    span = (max(stamps) - min(stamps)) if len(stamps) == frames and frames > 1 else None
    steps = [b - a for a, b in zip(sorted(stamps), sorted(stamps)[1:], strict=False)]
    mean = (span / (frames - 1)) if span else 0.0
    uniform = all(abs(d - mean) <= max(0.0015, 0.25 * mean) for d in steps)
    return SourceTruth(frames, len(videos), span, uniform)


@dataclass
class Outcome:
    case: Case
    status: str
    """'pass', 'fail' or 'skipped' (FFmpeg could not make or decode the input)."""
    message: str = ""
    seconds: float = 0.0
    details: dict[str, object] = field(default_factory=dict)


def run_case(case: Case, folder: Path) -> Outcome:
    started = time.monotonic()
    outcome = _run_case(case, folder)
    outcome.seconds = time.monotonic() - started
    return outcome


def _run_case(case: Case, folder: Path) -> Outcome:
    work = folder / case.name
    work.mkdir(parents=True, exist_ok=True)
    try:
        source = make(case, work)
        if source is None:
            return Outcome(case, "skipped", "ffmpeg cannot make this combination")
        truth = decode_truth(source)
        if truth is None and not case.damage:
            return Outcome(case, "skipped", "ffmpeg cannot decode what it made")
        out = work / "out"
        out.mkdir()
        try:
            result = convert(source, out)
        except Vid2DcmError as exc:
            text = str(exc)
            if case.damage and truth is None:
                return Outcome(case, "pass", f"refused (nothing decodes): {text}")
            if "\n" in text or not text:
                return Outcome(case, "fail", f"unclear refusal: {text!r}")
            return Outcome(case, "fail", f"refused: {type(exc).__name__}: {text}")
        except Exception as exc:
            return Outcome(case, "fail", f"crash: {type(exc).__name__}: {exc}")
        try:
            frames = 0
            for written in result.files:
                back = read_back(written.path, work)
                frames += back.decoded_frames
                _check_timing(case, written.path, truth, result.files)
        except AssertionError as exc:
            return Outcome(case, "fail", f"read-back: {str(exc)[:500]}")
        if truth is not None and not case.damage:
            expected = truth.frames * (truth.streams if len(result.files) > 1 else 1)
            if truth.streams == 1 and frames != truth.frames:
                return Outcome(case, "fail", f"{frames} frames stored, {truth.frames} decode "
                               "from the source")
            if truth.streams > 1 and len(result.files) < truth.streams:
                return Outcome(case, "fail", f"{truth.streams} video streams, "
                               f"{len(result.files)} objects ({expected} frames expected)")
        if case.damage and truth is not None and frames > truth.frames:
            return Outcome(case, "fail", f"{frames} frames stored, only {truth.frames} decode")
        return Outcome(case, "pass", f"{result.plan.action.value} "
                       f"{result.files[0].transfer_syntax_uid} {frames} frames",
                       details={"action": result.plan.action.value,
                                "syntax": result.files[0].transfer_syntax_uid,
                                "warnings": list(result.warnings)})
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _check_timing(case: Case, path: Path, truth: SourceTruth | None,
                  files: tuple[object, ...]) -> None:
    """Frame Time (CFR) must be the generated rate's; a Frame Time Vector must span what the
    source's timestamps span."""
    if case.damage or len(files) > 1:
        return
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    n = int(ds.NumberOfFrames)
    if "FrameTimeVector" in ds:
        vector = [float(x) for x in ds.FrameTimeVector]
        assert len(vector) == n, "Frame Time Vector length"
        if truth is not None and truth.span_s is not None:
            span_ms = sum(vector[1:])
            assert abs(span_ms - truth.span_s * 1000) <= max(2.0, 0.01 * span_ms), (
                f"Frame Time Vector spans {span_ms:.1f} ms, the source "
                f"{truth.span_s * 1000:.1f} ms")
        return
    frame_time = float(ds.FrameTime)
    if truth is not None and not truth.uniform and n > 2:
        raise AssertionError(f"variable-rate source written with one Frame Time {frame_time}")
    expected = 1000 / float(case.rate)
    if truth is not None and truth.span_s is not None and truth.frames == n and n > 1:
        # some encoders (libtheora) code fewer pictures than they were given, each shown
        # longer: the source's own timestamps are the reference then
        measured = truth.span_s * 1000 / (n - 1)
        if abs(measured - expected) > max(1.5, 0.01 * expected):
            expected = measured
            assert abs(frame_time - expected) <= max(1.0, 0.01 * expected), (
                f"Frame Time {frame_time} ms, the source's timestamps say {expected:.4f} ms")
            return
    assert abs(frame_time - expected) <= max(0.002, 0.001 * expected), (
        f"Frame Time {frame_time} ms, the source runs at {expected:.4f} ms")
