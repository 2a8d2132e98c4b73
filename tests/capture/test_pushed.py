"""capture.pushed without a network: H.264 access units pushed in as a WebRTC receiver would
(Annex B, 90 kHz RTP clock) are kept bit-exact when core.conformance says the stream is
storable (High profile), and the RTP clock wrapping past 2**32 mid-piece does not tear the
piece's timing; Constrained Baseline is judged not storable (re-encoded)."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av
import pytest

from readback import coded_pictures
from vid2dcm.capture.pieces import load_pieces
from vid2dcm.capture.pushed import PushedRecorder, decide_h264
from vid2dcm.capture.recorder import RecorderSettings
from vid2dcm.capture.sources import SourceKind, SourceSpec
from vid2dcm.producing.synth import ClipSpec, synthesize

SPEC = SourceSpec(name="webrtc", kind=SourceKind.WEBRTC, url="", display="test sender")


def _units(path: Path) -> list[tuple[bytes, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return [(bytes(p), int(p.pts * p.time_base * 90_000)) for p in container.demux(stream)
                if p.size]


def _clip(tmp_path: Path, profile: str, width: int = 160, height: int = 120) -> Path:
    return synthesize(tmp_path / f"{profile}-{width}.ts", ClipSpec(
        width=width, height=height, frames=50, options={
            "preset": "superfast", "profile": profile,
            "x264-params": "keyint=25:repeat-headers=1:bframes=0"}))


def test_high_profile_is_kept_bit_exact_across_an_rtp_wrap(tmp_path: Path) -> None:
    clip = _clip(tmp_path, "high")
    recorder = PushedRecorder(SPEC, tmp_path / "rec", RecorderSettings())
    recorder.codec("H264")
    recorder.start()
    start = 2**32 - 45_000  # the 32-bit RTP clock wraps half a second in
    first = None
    for data, pts in _units(clip):
        first = pts if first is None else first
        recorder.put_access_unit(data, (start + pts - first) % 2**32)
    recorder.stop()
    assert recorder.join(10)
    assert recorder.decision is not None and recorder.decision.keep
    assert recorder.state.bitstream == "H264 High: kept as sent"
    (piece,) = load_pieces(tmp_path / "rec")
    assert not piece.transcoded and piece.frames == 50
    assert piece.media_span_s == pytest.approx(49 / 25, abs=0.01)  # no 13-hour jump
    stored = tmp_path / "rec" / piece.file
    assert coded_pictures(stored) == coded_pictures(clip)


def test_constrained_baseline_is_not_storable_so_it_is_re_encoded(tmp_path: Path) -> None:
    clip = _clip(tmp_path, "baseline")
    decision = decide_h264(_units(clip)[0][0])
    assert not decision.keep and decision.profile == "Constrained Baseline"
    assert any("High profile" in r for r in decision.reasons), decision
    assert decide_h264(_units(_clip(tmp_path, "high"))[0][0]).keep


def test_a_new_stream_mid_recording_starts_a_new_piece(tmp_path: Path) -> None:
    """A sender that changes its stream (a browser lowering the resolution) sends a new SPS:
    the recorder decides again and starts a new piece, each piece one size, both kept."""
    small, large = _clip(tmp_path, "high"), _clip(tmp_path, "high", 320, 240)
    recorder = PushedRecorder(SPEC, tmp_path / "rec", RecorderSettings())
    recorder.codec("H264")
    recorder.start()
    rtp = 0
    for clip in (small, large):
        for data, _ in _units(clip):
            recorder.put_access_unit(data, rtp)
            rtp += 3600
    recorder.stop()
    assert recorder.join(10)
    first, second = load_pieces(tmp_path / "rec")
    assert (first.opened_because, second.opened_because) == ("start", "format change")
    assert first.closed_because == "format change" and first.frames == second.frames == 50
    for piece, clip, size in ((first, small, (160, 120)), (second, large, (320, 240))):
        path = tmp_path / "rec" / piece.file
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            assert (stream.codec_context.width, stream.codec_context.height) == size
        assert coded_pictures(path) == coded_pictures(clip)


def test_disk_guard_and_a_crash_leave_a_recording_that_finalizes(tmp_path: Path) -> None:
    """A pushed source in a RecordingSession: the disk guard stops it cleanly (piece closed,
    the reason kept), and the folder finalises into valid DICOM with every frame written,
    as --recover would after a crash of the gateway (the session never stopped)."""
    from readback import read_back
    from vid2dcm.capture.finalize import finalize
    from vid2dcm.capture.session import RecordingSession
    from vid2dcm.core.metadata import Metadata

    clip = _clip(tmp_path, "high")
    free = [10 * 2**30]
    session = RecordingSession([SPEC], tmp_path / "rec", Metadata(
        patient_id="P-1", patient_name="Doe^Jane"), pushed=True,
        settings=RecorderSettings(min_free_bytes=2**20), free_space=lambda _: free[0])
    (recorder,) = session.recorders
    assert isinstance(recorder, PushedRecorder)
    recorder.codec("H264")
    session.start()
    units = _units(clip)
    for data, pts in units[:30]:
        recorder.put_access_unit(data, pts)
    deadline = time.monotonic() + 10
    while recorder.state.frames < 30:
        assert time.monotonic() < deadline, recorder.state
        time.sleep(0.05)
    free[0] = 2**19  # the disk fills
    time.sleep(0.3)  # past the guard's check interval
    for data, pts in units[30:]:
        recorder.put_access_unit(data, pts)
    deadline = time.monotonic() + 10
    while not recorder.stopping:
        assert time.monotonic() < deadline, recorder.state
        time.sleep(0.05)
    assert "disk space low" in str(recorder.state.stop_reason)
    (piece,) = load_pieces(tmp_path / "rec" / "webrtc")
    assert piece.closed_because == "disk space low" and 30 <= piece.frames < 50
    # no session.stop(): the gateway died; the folder is still a recording
    result = finalize(tmp_path / "rec", tmp_path / "out")
    (video,) = result.sources[0].files
    back = read_back(video.path, tmp_path)
    assert back.decoded_frames == int(back.dataset.NumberOfFrames) == piece.frames
    session.stop()


def test_a_still_asked_for_just_before_stop_is_taken(tmp_path: Path) -> None:
    """The snapshot API answers at once and the writer thread takes the still with the next
    picture; when stop comes before another picture (a sender that stalls, a nurse pressing
    Still then Stop), the still is taken from the last picture all the same, never dropped."""
    clip = _clip(tmp_path, "high")
    recorder = PushedRecorder(SPEC, tmp_path / "rec", RecorderSettings())
    recorder.codec("VP8")
    recorder.start()
    with av.open(str(clip)) as container:
        frames = list(container.decode(video=0))
    for n, frame in enumerate(frames):
        frame.pts, frame.time_base = n * 3600, Fraction(1, 90_000)
        recorder.put_frame(frame)
    deadline = time.monotonic() + 20
    while recorder.state.frames < len(frames):  # the writer has drained every picture
        assert time.monotonic() < deadline, recorder.state
        time.sleep(0.05)
    recorder.snapshot()
    recorder.stop()
    assert recorder.join(20)
    assert recorder.state.snapshots == 1
    assert len(list((tmp_path / "rec").glob("snap-*.png"))) == 1
