"""HLS EXT-X-PROGRAM-DATE-TIME as a sender clock (RFC 8216 4.3.2.6).

FFmpeg reads the tag but does not expose it, so the playlist is fetched here as well. With
live_start_index=-1 the demuxer starts at the newest segment of the playlist it loaded while
opening; that segment is known for sure only when the newest segment is the same just before
the open and just after the first packet. Then the first packet's time is that segment's
PROGRAM-DATE-TIME. Otherwise (a segment was published in between) the receiver clock is used.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin


@dataclass(frozen=True)
class Segment:
    sequence: int
    program_date_time: float | None
    """Unix time of the segment's first sample, if the playlist says."""
    duration_s: float
    uri: str


def parse_playlist(text: str) -> tuple[list[Segment], str | None]:
    """A media playlist's segments; or, for a master playlist, ([], first variant URI)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines or lines[0] != "#EXTM3U":
        raise ValueError("not an M3U8 playlist")
    sequence = 0
    segments: list[Segment] = []
    pdt: float | None = None
    duration = 0.0
    variant = False
    for line in lines[1:]:
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            sequence = int(line.split(":", 1)[1])
        elif line.startswith("#EXT-X-PROGRAM-DATE-TIME:"):
            pdt = _iso(line.split(":", 1)[1])
        elif line.startswith("#EXTINF:"):
            duration = float(line.split(":", 1)[1].split(",", 1)[0])
        elif line.startswith("#EXT-X-STREAM-INF"):
            variant = True
        elif not line.startswith("#"):
            if variant:
                return [], line
            segments.append(Segment(sequence + len(segments), pdt, duration, line))
            # a PDT applies to its segment; the next ones follow on by their durations
            pdt = pdt + duration if pdt is not None else None
    return segments, None


def _iso(text: str) -> float:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]  # +0000 -> +00:00 (what ffmpeg writes)
    return datetime.fromisoformat(text).timestamp()


def newest_segment(url: str, timeout: float = 3.0) -> Segment | None:
    """The last segment of the (media) playlist at url; None when unreadable."""
    try:
        for _ in range(2):
            with urllib.request.urlopen(url, timeout=timeout) as response:
                text = response.read(2**20).decode("utf-8", "replace")
            segments, variant = parse_playlist(text)
            if variant is None:
                return segments[-1] if segments else None
            url = urljoin(url, variant)
    except (OSError, ValueError):
        return None
    return None
