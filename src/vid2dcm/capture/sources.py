"""Live sources: what the user types (a URL, a device, a lavfi graph) turned into what PyAV
opens, with the demuxer/protocol options that make each scheme behave on real networks.

Pure parsing: nothing here opens a socket. The options come from measured failure signatures
(see docs/recording.md): RTSP over TCP (UDP loses packets behind NAT and on busy links), a
socket timeout on every network protocol so a silent source raises instead of hanging, a big
non-fatal FIFO for UDP, the newest HLS segment for live playlists. The PyAV wheel has no SRT
protocol, so srt:// is read through a relay subprocess (srt-live-transmit -> local UDP).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from vid2dcm.core.errors import UsageError


class SourceKind(StrEnum):
    RTSP = "rtsp"
    RTMP = "rtmp"
    SRT = "srt"
    UDP = "udp"
    HTTP = "http"
    HLS = "hls"
    V4L2 = "v4l2"
    LAVFI = "lavfi"
    WEBRTC = "webrtc"
    """Pushed in by the gateway's WebRTC receiver (capture.pushed); never parsed from a URL."""


@dataclass(frozen=True)
class Relay:
    """A helper process that turns a protocol PyAV lacks into one it has.

    command is run with {port} replaced by a free local UDP port; PyAV then reads
    udp://127.0.0.1:{port}. The recorder starts and stops it with each connection."""

    command: tuple[str, ...]


@dataclass(frozen=True)
class SourceSpec:
    name: str
    """Label for the series (Series Description) and for logs."""
    kind: SourceKind
    url: str
    """What av.open() receives (for a relayed source: a template with {port})."""
    format: str | None = None
    options: tuple[tuple[str, str], ...] = ()
    relay: Relay | None = None
    latency_s: float = 0.0
    """Encoder + network delay subtracted from the arrival clock (no sender clock)."""
    display: str = ""
    """The URL with any password removed: safe for logs and reports."""
    live_pacing: bool = field(default=False)
    """lavfi graphs run as fast as the CPU allows unless paced; a live stand-in is paced."""

    @property
    def option_dict(self) -> dict[str, str]:
        return dict(self.options)

    @property
    def sender_clock(self) -> str | None:
        """Which sender clock the protocol can carry (RTCP SR for RTSP/RTP); None: only the
        receiver's clock is available."""
        return "RTCP" if self.kind is SourceKind.RTSP else None


NAME = re.compile(r"^([A-Za-z][A-Za-z0-9_.-]{0,31})=(.+)$")
MICRO = 1_000_000


def parse_source(text: str, *, read_timeout_s: float = 5.0, index: int = 1) -> SourceSpec:
    """NAME=URL or URL; an optional '#latency=SECONDS' suffix sets the per-source latency.

    Raises UsageError with one line for anything that is not a supported source."""
    raw = text.strip()
    name = f"source{index}"
    m = NAME.match(raw)
    if m and ("://" in m.group(2) or m.group(2).startswith(("/dev/", "lavfi:"))):
        name, raw = m.group(1), m.group(2)
    latency = 0.0
    if "#" in raw and not raw.startswith("lavfi:"):
        raw, _, fragment = raw.partition("#")
        latency = _latency(fragment, text)
    if raw.startswith("lavfi:"):
        graph, _, fragment = raw[len("lavfi:"):].partition("#")
        if fragment:
            latency = _latency(fragment, text)
        if not graph:
            raise UsageError("lavfi: needs a filter graph, e.g. lavfi:testsrc2=rate=25")
        return SourceSpec(name, SourceKind.LAVFI, graph + ",realtime", "lavfi", (),
                          latency_s=latency, display="lavfi:" + graph, live_pacing=True)
    if raw.startswith("/dev/"):
        return _v4l2(name, raw, latency)
    parts = urlsplit(raw)
    scheme = parts.scheme.lower()
    timeout_us = str(int(read_timeout_s * MICRO))
    display = _redact(raw)
    if scheme in ("rtsp", "rtsps"):
        query = dict(parse_qsl(parts.query))
        transport = query.pop("transport", "tcp")
        if transport not in ("tcp", "udp", "http"):
            raise UsageError(f"{display}: transport must be tcp, udp or http")
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return SourceSpec(name, SourceKind.RTSP, url, "rtsp",
                          (("rtsp_transport", transport), ("timeout", timeout_us)),
                          latency_s=latency, display=display)
    if scheme in ("rtmp", "rtmps"):
        # the FLV demuxer otherwise analyses 5 s of a live stream before open() returns
        return SourceSpec(name, SourceKind.RTMP, raw, "flv",
                          (("rw_timeout", timeout_us), ("analyzeduration", "1000000")),
                          latency_s=latency, display=display)
    if scheme == "udp":
        query = dict(parse_qsl(parts.query))
        query.setdefault("overrun_nonfatal", "1")
        query.setdefault("fifo_size", "1000000")
        url = urlunsplit(parts._replace(query=urlencode(query)))
        return SourceSpec(name, SourceKind.UDP, url, "mpegts", (("timeout", timeout_us),),
                          latency_s=latency, display=_redact(url))
    if scheme in ("http", "https"):
        if parts.path.lower().endswith(".m3u8"):
            return SourceSpec(name, SourceKind.HLS, raw, "hls",
                              (("live_start_index", "-1"), ("rw_timeout", timeout_us)),
                              latency_s=latency, display=display)
        return SourceSpec(name, SourceKind.HTTP, raw, None, (("rw_timeout", timeout_us),),
                          latency_s=latency, display=display)
    if scheme == "srt":
        return _srt(name, raw, parts.query, latency, timeout_us, display)
    raise UsageError(f"unsupported source {display!r}: use rtsp://, rtmp://, srt://, udp://, "
                     "http(s)://, /dev/videoN or lavfi:")


def _latency(fragment: str, text: str) -> float:
    key, _, value = fragment.partition("=")
    try:
        if key != "latency":
            raise ValueError
        seconds = float(value)
    except ValueError:
        raise UsageError(f"{_redact(text)}: the only suffix is #latency=SECONDS") from None
    if not 0 <= seconds < 60:
        raise UsageError(f"{_redact(text)}: latency must be between 0 and 60 seconds")
    return seconds


def _v4l2(name: str, raw: str, latency: float) -> SourceSpec:
    """/dev/video0?video_size=1920x1080&framerate=30&input_format=mjpeg (V4L2 demuxer)."""
    path, _, query = raw.partition("?")
    if not re.fullmatch(r"/dev/video\d+", path):
        raise UsageError(f"{raw}: capture devices are /dev/videoN")
    allowed = {"video_size", "framerate", "input_format", "standard", "ts"}
    options = parse_qsl(query)
    bad = [k for k, _ in options if k not in allowed]
    if bad:
        raise UsageError(f"{path}: unknown V4L2 option {bad[0]!r} "
                         f"(known: {', '.join(sorted(allowed))})")
    if not any(k == "ts" for k, _ in options):
        options.append(("ts", "abs"))
    return SourceSpec(name, SourceKind.V4L2, path, "v4l2", tuple(options), latency_s=latency,
                      display=path)


def _srt(name: str, raw: str, query: str, latency: float, timeout_us: str,
         display: str) -> SourceSpec:
    """The PyAV wheel lacks libsrt: srt-live-transmit (Debian srt-tools) receives SRT and
    forwards the MPEG-TS to a local UDP port PyAV reads. Caller mode unless the URL says
    otherwise (mode=listener turns vid2dcm into the SRT listener an encoder pushes to)."""
    tool = shutil.which("srt-live-transmit")
    if tool is None:
        raise UsageError("srt:// needs srt-live-transmit (Debian package srt-tools)")
    params = dict(parse_qsl(query))
    params.setdefault("mode", "caller")
    parts = urlsplit(raw)
    srt_url = urlunsplit(parts._replace(query=urlencode(params)))
    command = (tool, "-q", "-a:no", srt_url,
               "udp://127.0.0.1:{port}?ttl=1")
    url = "udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=1000000"
    return SourceSpec(name, SourceKind.SRT, url, "mpegts", (("timeout", timeout_us),),
                      relay=Relay(command), latency_s=latency, display=display)


SECRET_PARAMS = {"passphrase", "password", "pass", "pwd", "token", "key", "streamid"}
"""Query parameters that carry secrets (SRT passphrase, stream keys, tokens)."""


def _redact(url: str) -> str:
    """Drop user:password and secret query parameters from a URL before it is logged or
    written anywhere."""
    parts = urlsplit(url)
    if parts.username is not None or parts.password is not None:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=host)
    query = parse_qsl(parts.query, keep_blank_values=True)
    if any(k.lower() in SECRET_PARAMS for k, _ in query):
        parts = parts._replace(query=urlencode(
            [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in query], safe="*"))
    return urlunsplit(parts)


def is_device(spec: SourceSpec) -> bool:
    return spec.kind is SourceKind.V4L2 and Path(spec.url).exists()
