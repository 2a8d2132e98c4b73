"""Chunked transcoding, end to end on a small clip with forced short chunks: the join is the
chunks' packets byte for byte, every source frame arrives once, each chunk starts with an IDR
picture, the pictures on both sides of every join match their source like the rest of the video
(a missing or repeated frame at a join fails the same bound), a missing or repeated chunk is
refused, and `convert --jobs N` writes a DICOM file that reads back like any other."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import pytest

from conftest import MakeClip
from readback import coded_pictures, read_back
from vid2dcm.core.errors import OutputError
from vid2dcm.pipeline import convert
from vid2dcm.planning.chunks import plan_chunks
from vid2dcm.planning.plan import Request, plan_conversion
from vid2dcm.probing.probe import probe
from vid2dcm.producing.chunks import join_chunks, resolve_cuts, run_chunks
from vid2dcm.producing.quality import psnr_per_frame
from vid2dcm.producing.synth import AudioSpec, ClipSpec

SOURCE = ClipSpec(codec="mpeg4", frames=150, rate=Fraction(25), audio=AudioSpec(),
                  options={"g": "20", "bf": "2", "qscale": "3"})
"""6 s of 320x240 MPEG-4 Part 2 (not storable: transcoded), B-frames, a key frame every 0.8 s,
AAC audio."""

SEAM_MARGIN_DB = 4.0
"""A frame at a join may score at most this much under the median of the video."""


def packets(path: Path) -> list[tuple[bytes, bool]]:
    with av.open(str(path)) as c:
        return [(bytes(p), p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]


def seam_ok(scores: list[float], joins: list[int], floor: float) -> bool:
    return all(scores[i] >= floor for j in joins for i in (j - 1, j))


@pytest.fixture(scope="module")
def chunked(make_clip: MakeClip, tmp_path_factory: pytest.TempPathFactory
            ) -> tuple[Path, list[Path], list[int]]:
    src = make_clip("chunk_source.mp4", SOURCE)
    work = tmp_path_factory.mktemp("chunks")
    info = probe(src)
    plan = plan_conversion(info, Request(transcode="always"))
    assert plan.video_target is not None and plan.container is not None
    chunks = plan_chunks(info.video.keyframes, info.video.timing.duration_s, 3, 1.5)
    assert len(chunks.chunks) == 3, chunks.reason
    cuts = resolve_cuts(info, chunks)
    parts = [work / f"c{c.index}.nut" for c in cuts]
    results = run_chunks(info, plan.video_target, cuts, parts, 3)
    joined = work / "joined.mp4"
    frames = join_chunks(info, parts, plan.audio, plan.container, joined)
    assert frames == sum(r.frames_out for r in results)
    starts = [sum(r.frames_out for r in results[:n]) for n in range(1, len(results))]
    return joined, parts, starts


def test_join_is_the_chunks_byte_for_byte(chunked: tuple[Path, list[Path], list[int]]) -> None:
    """The MP4 muxer only swaps the encoder's start codes for length prefixes: the coded
    pictures (VCL NAL units) are the chunks' own, in order, none re-encoded."""
    joined, parts, _ = chunked
    pieces = [coded_pictures(p) for p in parts]
    assert coded_pictures(joined) == [p for piece in pieces for p in piece]
    for part, piece in zip(parts, pieces, strict=True):
        assert piece[0][0] & 0x1F == 5, "every chunk starts with an IDR picture"
        assert packets(part)[0][1]
        assert sum(1 for p in piece if p[0] & 0x1F == 5) >= 1


def test_every_frame_once_and_no_seams(make_clip: MakeClip,
                                       chunked: tuple[Path, list[Path], list[int]]) -> None:
    joined, _, joins = chunked
    src = make_clip("chunk_source.mp4", SOURCE)
    info = probe(src)
    target = plan_conversion(info, Request(transcode="always")).video_target
    assert target is not None
    out = probe(joined)
    assert out.video.timing.frame_count == info.video.timing.frame_count == 150
    assert not out.video.timing.variable and out.video.timing.rate == 25
    assert [a.codec for a in out.audio] == ["aac"]
    scores = psnr_per_frame(info, target, joined)
    assert len(scores) == 150
    assert statistics.median(scores) > 35
    floor = statistics.median(scores) - SEAM_MARGIN_DB  # the video away from the joins
    assert seam_ok(scores, joins, floor), [scores[j - 1:j + 1] for j in joins]
    # the same bound fails a join that lost or repeated a frame: every later picture is
    # compared with its neighbour's source
    for j in joins:
        assert not seam_ok(scores[:j] + psnr_shifted(info, target, joined, j, -1), [j], floor)
        assert not seam_ok(scores[:j] + psnr_shifted(info, target, joined, j, +1), [j], floor)


def psnr_shifted(info: object, target: object, joined: Path, at: int, shift: int) -> list[float]:
    """PSNR from frame `at` on, as if the join had dropped (-1) or repeated (+1) a frame."""
    from vid2dcm.producing.quality import _luma, _reference_luma, psnr

    refs = list(_reference_luma(info, target))  # type: ignore[arg-type]
    coded = list(_luma(joined))
    broken = coded[:at] + coded[at + 1:] if shift < 0 else [*coded[:at], coded[at - 1], *coded[at:]]
    return [psnr(r, c) for r, c in zip(refs[at:], broken[at:], strict=False)]


def test_a_missing_or_repeated_chunk_is_refused(
        make_clip: MakeClip, chunked: tuple[Path, list[Path], list[int]], tmp_path: Path) -> None:
    _, parts, _ = chunked
    info = probe(make_clip("chunk_source.mp4", SOURCE))
    plan = plan_conversion(info, Request(transcode="always"))
    assert plan.container is not None
    for wrong in ([parts[0], parts[2]], [parts[0], parts[1], parts[1], parts[2]],
                  [parts[1], parts[0], parts[2]]):
        out = tmp_path / "bad.mp4"
        with pytest.raises(OutputError, match="chunk"):
            join_chunks(info, wrong, plan.audio, plan.container, out)
        assert not out.exists()


def test_convert_jobs_reads_back_like_a_single_pass(make_clip: MakeClip, tmp_path: Path) -> None:
    src = make_clip("chunk_source.mp4", SOURCE)
    single = convert(src, tmp_path / "single.dcm", options=Request(transcode="always"))
    chunked = convert(src, tmp_path / "chunked.dcm",
                      options=Request(transcode="always", jobs=2, min_chunk_s=2.0))
    assert chunked.frames == single.frames == 150
    assert not any("--jobs" in w for w in chunked.warnings), chunked.warnings
    # the same clip is too short for two default (10 s) chunks: one pass, and it says why
    short = convert(src, tmp_path / "short.dcm", options=Request(transcode="always", jobs=2))
    assert short.frames == 150
    assert any(w.startswith("--jobs 2: transcoded in a single pass (") and "shorter" in w
               for w in short.warnings), short.warnings
    assert chunked.files[0].transfer_syntax_uid == single.files[0].transfer_syntax_uid
    assert chunked.transcode is not None and chunked.transcode.frames_out == 150
    back = read_back(chunked.files[0].path, tmp_path)
    assert back.decoded_frames == 150
    assert int(back.dataset.NumberOfFrames) == 150


def test_cli_jobs(make_clip: MakeClip, tmp_path: Path) -> None:
    """`vid2dcm convert --jobs 2` on a clip long enough for two default (10 s) chunks."""
    src = make_clip("chunk_long.mp4", ClipSpec(codec="mpeg4", width=160, height=120,
                                               rate=Fraction(10), frames=230,
                                               options={"g": "10"}))
    out = tmp_path / "long.dcm"
    done = subprocess.run([sys.executable, "-m", "vid2dcm", "convert", str(src), "-o", str(out),
                           "--jobs", "2", "--json", "--quiet", "--allow-unidentified"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["files"][0]["frames"] == 230, report
    back = read_back(out, tmp_path)
    assert back.decoded_frames == 230
