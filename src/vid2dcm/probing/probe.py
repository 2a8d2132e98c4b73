"""probe: read an input once, by demuxing packets, and describe it as a MediaInfo."""

from __future__ import annotations

import re
from array import array
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import Any

import av

from vid2dcm.core.errors import InputError
from vid2dcm.core.media_info import (
    AudioStreamInfo,
    FrameTiming,
    KeyFrame,
    MediaInfo,
    StreamSummary,
    VideoStreamInfo,
)
from vid2dcm.probing.timing import FrameTimingCounter

STILL_IMAGE_CODECS = frozenset(
    {"png", "mjpeg", "jpeg2000", "bmp", "tiff", "gif", "webp", "jpegls", "ppm", "pgm", "dpx"}
)
GUESSED_RATE_DEMUXERS = frozenset({"asf"})
"""Containers that store no frame rate: FFmpeg's nominal rate is a guess from timestamps."""
IMAGE_DEMUXERS = re.compile(r"^(image2|.*_pipe)$")


Opener = Callable[[], Any]
"""Returns a fresh av container on each call (probing reads the input twice)."""


def probe(path: str | Path, stream: int | None = None,
          frame_rate: Fraction | None = None) -> MediaInfo:
    """Describe a video file: container, streams, codec facts and exact frame timing.

    stream picks a video stream by its container index (default: the first video stream
    that is not cover art); frame_rate times a raw elementary stream that has no timestamps
    (it overrides the SPS/VPS VUI timing)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file")
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"{path}: file is empty")
    return probe_opened(path, size, lambda: av.open(str(path)), stream, frame_rate)


def probe_opened(label: Path, size: int, opener: Opener, stream: int | None = None,
                 frame_rate: Fraction | None = None) -> MediaInfo:
    """probe() for any source PyAV can open, e.g. a bitstream inside a DICOM file."""
    try:
        with opener() as container:
            again = _Rewound(container) if container.format.name.startswith("mov") else opener
            return _describe(label, size, container, again, stream, frame_rate)
    except InputError:
        raise
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"{label}: not a readable video file ({_reason(exc)})") from exc


class _Rewound:
    """An Opener giving the open MP4/MOV container back, sought to its start (and left there
    afterwards), instead of opening the file again: seeking in a sample table is exact and
    cheap, while each open runs FFmpeg's stream analysis, which decodes pictures (0.4 s per
    open for a 1080p stream of large pictures on the reference machine; issue 17)."""

    def __init__(self, container: Any) -> None:
        self.container = container

    def __call__(self) -> _Rewound:
        return self

    def __enter__(self) -> Any:
        self.container.seek(0)
        return self.container

    def __exit__(self, *exc: object) -> None:
        self.container.seek(0)  # the caller's own demuxing starts from the start again


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.split(";")[0].replace(str(getattr(exc, "filename", "")), "").strip(" :'") or text


def _is_cover_art(stream: Any) -> bool:
    return bool(int(stream.disposition or 0) & int(av.stream.Disposition.attached_pic))


def _usable(stream: Any) -> bool:
    """A video stream FFmpeg knows a decoder for (damage can conjure streams without one)."""
    cc = stream.codec_context
    return cc is not None and bool(cc.name) and not _is_cover_art(stream)


def _pick_video(path: Path, container: Any, wanted: int | None) -> Any:
    videos = [s for s in container.streams.video if _usable(s)]
    if wanted is not None:
        chosen = next((s for s in videos if s.index == wanted), None)
        if chosen is None:
            listed = ", ".join(f"#{s.index}" for s in videos) or "none"
            raise InputError(f"{path}: stream #{wanted} is not a video stream "
                             f"(video streams: {listed})")
        return chosen
    if not videos:
        kinds = sorted({("cover art" if _is_cover_art(s) else s.type)
                        for s in container.streams})
        found = ", ".join(kinds) if kinds else "no streams"
        raise InputError(f"{path}: has no video stream (found: {found})")
    return videos[0]


def _summaries(container: Any) -> tuple[StreamSummary, ...]:
    out = []
    for s in container.streams:
        cc = getattr(s, "codec_context", None)
        codec = (cc.name if cc is not None else None) or getattr(s, "codec_tag", "") or "unknown"
        kind = str(s.type)
        if s.type == "video" and not _usable(s):
            kind = "cover art" if _is_cover_art(s) else "undecodable video"
        if s.type == "video" and cc is not None:
            rate = s.average_rate or s.guessed_rate
            detail = f"{cc.width}x{cc.height}" + (f" at {float(rate):.3f} fps" if rate else "")
        else:
            meta = dict(s.metadata or {})
            detail = ", ".join(f"{k} {meta[k]}" for k in ("language", "handler_name", "title")
                               if meta.get(k))
        out.append(StreamSummary(s.index, kind, DECODER_TO_CODEC.get(codec, codec), detail))
    return tuple(out)


def _describe(path: Path, size: int, container: Any, opener: Opener, wanted: int | None,
              frame_rate: Fraction | None) -> MediaInfo:
    fmt = container.format.name
    vstream = _pick_video(path, container, wanted)
    vcc = vstream.codec_context
    if IMAGE_DEMUXERS.match(fmt):
        raise InputError(f"{path}: is a still image ({vcc.name}), not a video")
    audio_streams = [a for a in container.streams.audio
                     if a.codec_context is not None and a.codec_context.name]
    nominal = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    counter = FrameTimingCounter(vstream.time_base or Fraction(1, 90000), _fraction(nominal))
    counter.header_rate_declared = fmt not in GUESSED_RATE_DEMUXERS
    keyframes: list[KeyFrame] = []
    sizes = array("q")
    total_bytes = 0
    video_bytes = 0
    audio_packets = 0
    has_ts = True
    warnings: list[str] = []
    indexed = _from_index(container, vstream, audio_streams, size, opener)
    if indexed is not None:
        counter, keyframes, total_bytes, video_bytes, audio_packets, sizes = indexed
    heard: set[int] = set()
    """Audio streams with at least one packet (a track can be declared and empty)."""
    held: Any = None
    """The newest video packet, added once the next one shows it is complete."""
    last_end = 0
    try:
        for packet in [] if indexed is not None else container.demux([vstream, *audio_streams]):
            if packet.size == 0:
                continue
            if packet.stream.index == vstream.index:
                if held is not None:
                    _add(counter, keyframes, held, total_bytes)
                    total_bytes += held[1]
                    video_bytes += held[1]
                    sizes.append(held[1])
                held = (packet.pts, packet.size, packet.duration or 0, packet.is_keyframe,
                        packet.time_base)
                last_end = (packet.pos or 0) + packet.size if packet.pos is not None else -1
                if packet.pts is None and packet.dts is None:
                    has_ts = False
            else:
                audio_packets += 1
                heard.add(packet.stream.index)
                total_bytes += packet.size
    except av.error.FFmpegError as exc:
        if held is None and counter.count == 0:
            raise InputError(f"{path}: damaged or truncated ({_reason(exc)})") from exc
        warnings.append(f"reading stopped after {counter.count + 1} frames at damage "
                        f"({_reason(exc)}); the frames before it are converted")
    index_count = vstream.frames or 0
    if held is not None:
        truncated_tail = (indexed is None and index_count > counter.count + 1
                          and last_end >= size and counter.count > 0)
        if truncated_tail:
            warnings.append("the last frame is cut off by the end of the file and is left out")
        else:
            _add(counter, keyframes, held, total_bytes)
            total_bytes += held[1]
            video_bytes += held[1]
            sizes.append(held[1])
    if counter.count == 0:
        raise InputError(f"{path}: the video stream holds no frames")
    if vcc.name in STILL_IMAGE_CODECS and counter.count <= 1:
        raise InputError(f"{path}: is a still image ({vcc.name}), not a video")
    if not has_ts:
        counter.nominal_rate, counter.rate_origin = _raw_rate(vstream, frame_rate)
    elif frame_rate is not None:
        warnings.append("--frame-rate ignored: the container's timestamps time the frames")
    timing = counter.result()
    if indexed is not None:
        timing = replace(timing, count_source="MP4 sample table (every sample present in the "
                         "file, none discarded)")
    elif index_count and index_count > timing.frame_count:
        timing, note = _index_gap(timing, index_count, vstream, fmt)
        if note:
            warnings.append(note)
    elif index_count and index_count == timing.frame_count:
        timing = replace(timing, count_source="packet count, equal to the container index")
    elif index_count:
        timing = replace(timing, count_source=f"packet count (the container index lists only "
                         f"{index_count})")
    rotation, interlaced, stereo = _first_frame_facts(path, opener, vstream.index)
    video = VideoStreamInfo(
        index=vstream.index,
        codec=DECODER_TO_CODEC.get(vcc.name, vcc.name),
        codec_tag=(vstream.codec_tag or "").strip("\x00 "),
        profile=vcc.profile,
        level=vcc.level if vcc.level is not None and vcc.level >= 0 else None,
        tier=_hevc_tier(vcc.extradata) if vcc.name == "hevc" else None,
        width=vcc.width,
        height=vcc.height,
        pix_fmt=vcc.pix_fmt or "unknown",
        chroma=chroma_subsampling(vcc.pix_fmt or ""),
        bit_depth=_bit_depth(vcc.pix_fmt),
        sample_aspect_ratio=_fraction(vcc.sample_aspect_ratio),
        rotation=rotation,
        interlaced=interlaced,
        color_range=_color_range(vcc),
        timing=timing,
        keyframes=tuple(keyframes),
        packet_bytes=video_bytes,
        has_timestamps=has_ts,
        peak_bit_rate=peak_bit_rate(sizes, timing.rate),
        stereo=stereo,
    )
    streams = _summaries(container)
    warnings += _dropped_streams(streams, vstream.index, wanted is not None)
    if indexed is not None:
        heard = {a.index for a in audio_streams if len(a.index_entries)}
    for a in audio_streams:
        if a.index not in heard:
            warnings.append(f"audio stream #{a.index} ({a.codec_context.name}) holds no "
                            "packets and is left out")
    audio = tuple(_audio_info(a) for a in audio_streams if a.index in heard)
    duration = float(container.duration / av.time_base) if container.duration else 0.0
    return MediaInfo(
        path=path,
        container=fmt,
        size_bytes=size,
        duration_s=duration or timing.duration_s,
        video=video,
        audio=audio,
        total_packet_bytes=total_bytes,
        audio_packets=audio_packets,
        major_brand=(container.metadata.get("major_brand") or "").strip() or None,
        creation_time=_timestamp(container.metadata.get("creation_time")),
        streams=streams,
        warnings=tuple(warnings),
    )


def _add(counter: FrameTimingCounter, keyframes: list[KeyFrame], held: tuple[Any, ...],
         bytes_before: int) -> None:
    pts, _size, duration, key, time_base = held
    if key:
        pts_s = float(pts * time_base) if pts is not None else None
        keyframes.append(KeyFrame(counter.count, bytes_before, pts_s))
    counter.add(pts, duration)


def _raw_rate(vstream: Any, override: Fraction | None) -> tuple[Fraction | None, str]:
    """A raw elementary stream has no timestamps: its rate comes from --frame-rate, else the
    SPS/VPS VUI timing (or MPEG-2 sequence header) the decoder read, else the demuxer default."""
    if override is not None:
        return override, "--frame-rate"
    signalled = _fraction(vstream.codec_context.framerate)
    if signalled is not None:
        name = vstream.codec_context.name
        where = {"h264": "SPS VUI timing", "hevc": "VPS/SPS VUI timing"}.get(
            name, "sequence header")
        return signalled, where
    header = _fraction(vstream.average_rate or vstream.guessed_rate)
    return header, "demuxer default (no timing in the stream; use --frame-rate)"


def _index_gap(timing: FrameTiming, index_count: int, vstream: Any, fmt: str
               ) -> tuple[FrameTiming, str | None]:
    """The container index lists more entries than there are coded frames. Entries inside
    the timeline are null 'repeat' frames (AVI drop frames: the previous picture stays on
    screen); entries beyond the last coded frame mean the file lost its end."""
    slots = timing.frame_count
    if vstream.time_base and timing.rate and timing.variable:
        slots = round(timing.duration_s * float(vstream.average_rate or timing.rate))
    if timing.variable and slots >= index_count - 1:
        nulls = index_count - timing.frame_count
        return replace(timing, null_frames=nulls, count_source=(
            f"packet count: {timing.frame_count} coded frames; the {fmt} index lists "
            f"{index_count}, {nulls} of them null (repeat the previous picture, kept as "
            "longer frame times)")), None
    return replace(timing, count_source=f"packet count ({index_count} in the container "
                   "index: the rest is missing)"), (
        f"damaged or truncated: the container index lists {index_count} frames but only "
        f"{timing.frame_count} can be read; those {timing.frame_count} are converted")


def peak_bit_rate(sizes: array[int], rate: Fraction) -> int | None:
    """Most bits in any window of one second of frames (decode order), as bits/s."""
    if not sizes or not rate:
        return None
    window = max(1, round(float(rate)))
    if len(sizes) <= window:
        return round(sum(sizes) * 8 * float(rate) / len(sizes))
    current = sum(sizes[:window])
    best = current
    for i in range(window, len(sizes)):
        current += sizes[i] - sizes[i - window]
        best = max(best, current)
    return round(best * 8 * float(rate) / window)


def _dropped_streams(streams: tuple[StreamSummary, ...], chosen: int, picked: bool
                     ) -> list[str]:
    """Streams that no output keeps, named (other video streams get instances of their own
    unless one was picked)."""
    notes = []
    for s in streams:
        if s.index == chosen or s.kind == "audio":
            continue
        if s.kind == "video" and not picked:
            continue
        what = f"{s.kind} stream #{s.index} ({s.codec}{', ' + s.detail if s.detail else ''})"
        notes.append(f"{what} is not stored: DICOM video objects carry one video stream and "
                     "its audio" if s.kind in ("video", "cover art", "undecodable video")
                     else f"{what} is not stored: DICOM video objects carry no {s.kind} tracks")
    return notes


INDEX_LIMIT = 2**32 - 2
"""Above one fragment the stream may be split at key frames, which needs presentation times
that only demuxing gives; below it the MP4 sample table is exact and far cheaper to read."""


PTS_SAMPLE = 600
"""Packets demuxed to see display times before trusting a sample table's decode times."""


def _from_index(container: Any, vstream: Any, audio_streams: list[Any], size: int,
                opener: Opener
                ) -> tuple[FrameTimingCounter, list[KeyFrame], int, int, int, array[int]] | None:
    """Frame facts from an MP4/MOV sample table, without reading the media data; None when
    the table cannot be trusted on its own (not MP4, edit-list discards, truncated data,
    display times that are not as even as the decode times)."""
    if not container.format.name.startswith("mov") or vstream.time_base is None:
        return None
    entries = vstream.index_entries
    count = len(entries)
    if count == 0 or count != (vstream.frames or 0):
        return None
    stamps = [e.timestamp for e in entries]
    steps = {b - a for a, b in pairwise(stamps)}
    if steps and max(steps) - min(steps) > 1:
        return None  # variable rate: decode-order times are not display intervals; demux
    if not _even_display_times(opener, vstream.index):
        return None  # even decode times, uneven display times (x264 fed variable-rate)
    samples = []
    for stream in [vstream, *audio_streams]:
        for entry in stream.index_entries:
            if entry.is_discard and stream is vstream:
                return None  # an edit list hides frames: count what demuxing yields
            samples.append((entry.pos, entry.size, stream is vstream, entry))
    samples.sort(key=lambda s: s[0])
    last = samples[-1]
    if last[0] + last[1] > size:
        return None
    total = sum(s[1] for s in samples)
    if total > INDEX_LIMIT:
        return None
    nominal = vstream.average_rate or vstream.guessed_rate or vstream.base_rate
    counter = FrameTimingCounter(vstream.time_base, _fraction(nominal))
    keyframes: list[KeyFrame] = []
    before = video_bytes = audio_packets = 0
    sizes = array("q")
    for _pos, length, is_video, entry in samples:
        if is_video:
            sizes.append(length)
            if entry.is_keyframe:
                keyframes.append(KeyFrame(counter.count, before,
                                          float(entry.timestamp * vstream.time_base)))
            counter.add(entry.timestamp, 0)
            video_bytes += length
        else:
            audio_packets += 1
        before += length
    return counter, keyframes, total, video_bytes, audio_packets, sizes


def segment_video_bytes(info: MediaInfo, bounds: list[tuple[int, int]]) -> list[int]:
    """Video payload bytes of each [first, end) range of frames (decode order), known before
    anything is written: from the MP4/MOV sample table when it lists exactly the probed
    frames (nothing read but the index), else by demuxing without decoding. A split
    instance's header states its compression ratio, so these are needed before its bitstream
    is streamed into the file."""
    totals = [0] * len(bounds)
    ends = [end for _first, end in bounds]
    count = info.video.timing.frame_count
    with av.open(str(info.path)) as container:
        stream = container.streams[info.video.index]
        entries: Any = stream.index_entries if container.format.name.startswith("mov") else []
        if len(entries) == count and not any(e.is_discard for e in entries):
            sizes: Any = (e.size for e in entries)
        else:
            sizes = (p.size for p in container.demux(stream) if p.size)
        part = 0
        for frame, length in enumerate(sizes):
            if frame >= count:
                break
            while frame >= ends[part]:
                part += 1
            totals[part] += length
    return totals


def _even_display_times(opener: Opener, index: int) -> bool:
    """Whether the first packets' presentation times step evenly. The sample table holds
    decode times only; an encoder fed variable-rate pictures (x264 without VFR input) writes
    even decode times under uneven presentation times."""
    with opener() as container:
        stream = container.streams[index]
        stamps = []
        for packet in container.demux(stream):
            if packet.pts is not None and packet.size:
                stamps.append(packet.pts)
            if len(stamps) >= PTS_SAMPLE:
                break
    stamps.sort()
    steps = {b - a for a, b in pairwise(stamps)}
    return not steps or max(steps) - min(steps) <= 1


def _first_frame_facts(path: Path, opener: Opener, index: int) -> tuple[int, bool, str | None]:
    """Rotation, scan type and stereo packing live in frame side data: decode the first
    picture. Damaged or cut-off packets are skipped, as the conversion skips them."""
    error: Exception | None = None
    with opener() as container:
        stream = container.streams[index]
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets, None)
            except av.error.FFmpegError as exc:
                error, packet = exc, None
            try:
                for frame in stream.decode(packet):
                    return _frame_facts(frame)
            except av.error.FFmpegError as exc:
                error = exc
                if packet is None:
                    break
                continue
            if packet is None:
                break
    reason = _reason(error) if error else "no picture in the stream"
    raise InputError(f"{path}: the video does not decode ({reason})")


def _frame_facts(frame: Any) -> tuple[int, bool, str | None]:
    stereo = None
    for side in frame.side_data:
        if str(getattr(side.type, "name", side.type)) == "STEREO3D":
            stereo = "frame packing"
    return int(frame.rotation or 0) % 360, bool(frame.interlaced_frame), stereo


DECODER_TO_CODEC = {"mp3float": "mp3", "mp2float": "mp2", "aac_fixed": "aac", "ac3_fixed": "ac3",
                    "libdav1d": "av1", "libaom-av1": "av1", "libvpx-vp9": "vp9",
                    "libvpx": "vp8", "libopus": "opus"}
"""PyAV names the decoder picked; rules are about the codec."""


def _timestamp(value: str | None) -> datetime | None:
    """Container creation_time (ISO 8601, UTC) as local time; None when absent or zero."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.year < 1971:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone().replace(tzinfo=None)


def _audio_info(stream: Any) -> AudioStreamInfo:
    cc = stream.codec_context
    return AudioStreamInfo(
        index=stream.index,
        codec=DECODER_TO_CODEC.get(cc.name, cc.name),
        profile=cc.profile,
        sample_rate=cc.sample_rate or 0,
        channels=cc.channels or 0,
        bit_rate=cc.bit_rate or None,
    )


def chroma_subsampling(pix_fmt: str) -> str:
    if re.match(r"^(yuvj?420|nv12|nv21|p010|p016|yuva420)", pix_fmt):
        return "4:2:0"
    if re.match(r"^(yuvj?422|nv16|uyvy|yuyv|y210|yuva422)", pix_fmt):
        return "4:2:2"
    if re.match(r"^(yuvj?444|gbr|rgb|bgr|yuva444|nv24)", pix_fmt):
        return "4:4:4"
    if pix_fmt.startswith("gray"):
        return "4:0:0"
    return "unknown"


def _bit_depth(pix_fmt: str | None) -> int:
    if not pix_fmt:
        return 0
    try:
        return int(av.VideoFormat(pix_fmt).components[0].bits)
    except (ValueError, IndexError):
        return 0


def _color_range(cc: Any) -> str:
    if (cc.pix_fmt or "").startswith("yuvj"):
        return "full"
    value = int(cc.color_range or 0)
    return {1: "limited", 2: "full"}.get(value, "unspecified")


def _hevc_tier(extradata: bytes | None) -> str | None:
    """general_tier_flag sits in byte 1 of an hvcC record; Annex-B extradata does not say."""
    if extradata and len(extradata) > 2 and extradata[0] == 1:
        return "High" if extradata[1] & 0x20 else "Main"
    return None


def _fraction(value: object) -> Fraction | None:
    if value is None:
        return None
    if not isinstance(value, int | float | str | Fraction):
        return None
    frac = Fraction(value)
    return frac if frac > 0 else None
