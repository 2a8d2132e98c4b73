"""Live recording from real network senders on loopback, and the faults real networks make.

Every sender is an ffmpeg (or GStreamer RTSP server) child process on 127.0.0.1, started and
stopped by PID (tests/live_senders.py). Every DICOM file is read back (tests/readback.py) and
its frame count must equal what the recorder wrote.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from live_senders import (
    FFMPEG,
    SilentServer,
    UdpProxy,
    ffmpeg_sender,
    free_port,
    gst_rtsp_available,
    http_server,
    rtsp_server,
    udp_sender,
    wait_listening,
)
from readback import read_back
from vid2dcm.capture.finalize import FinalizeResult
from vid2dcm.capture.pieces import PieceRecord, load_pieces
from vid2dcm.capture.recorder import RecorderSettings
from vid2dcm.capture.session import RecordingSession
from vid2dcm.capture.sources import parse_source
from vid2dcm.core.metadata import Metadata

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed")]
META = Metadata(patient_id="NET-1")
FAST = RecorderSettings(read_timeout_s=1.5, open_timeout_s=5, backoff_first_s=0.2,
                        backoff_max_s=1.0)


def record(tmp_path: Path, sources: list[str], seconds: float,
           settings: RecorderSettings = FAST,
           during: Callable[[RecordingSession], None] | None = None,
           ) -> tuple[RecordingSession, FinalizeResult]:
    session = RecordingSession([parse_source(s, read_timeout_s=settings.read_timeout_s)
                                for s in sources], tmp_path / "recording", META,
                               settings=settings)
    session.start()
    try:
        if during is not None:
            during(session)
        else:
            time.sleep(seconds)
    finally:
        session.stop()
    return session, session.finalize(tmp_path / "dicom")


def check(result: FinalizeResult, tmp_path: Path, folder: Path) -> dict[str, list[PieceRecord]]:
    """Each piece became exactly one valid instance with the frames the recorder wrote."""
    pieces = {}
    for source in result.sources:
        recorded = [p for p in load_pieces(folder / source.name) if p.frames]
        assert len(source.files) == len(recorded), source.skipped
        for piece, f in zip(recorded, source.files, strict=True):
            back = read_back(f.path, tmp_path)
            assert back.decoded_frames == piece.frames == f.frames
        pieces[source.name] = recorded
    return pieces


def wait_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_udp_h264_aac_is_copied(tmp_path: Path) -> None:
    port = free_port()
    sender = udp_sender(port, audio=True)
    try:
        _session, result = record(tmp_path, [f"cam=udp://127.0.0.1:{port}"], 3.5)
    finally:
        sender.stop()
    pieces = check(result, tmp_path, tmp_path / "recording")
    assert all(not p.transcoded for p in pieces["cam"])
    f = result.sources[0].files[0]
    assert f.action.value == "copy"
    ds = read_back(f.path, tmp_path).dataset
    assert len(ds.MultiplexedAudioChannelsDescriptionCodeSequence) >= 1


def test_udp_sender_paused_longer_than_the_read_timeout(tmp_path: Path) -> None:
    """SIGSTOP for 3 s (read timeout 1.5 s): the watchdog says "stalled" after 0.5 s, then
    AVERROR_EXIT, reconnect, a second piece; the recording neither hangs nor ends."""
    port = free_port()
    sender = udp_sender(port)
    stalled = []

    def pause(session: RecordingSession) -> None:
        wait_until(lambda: session.state.frames >= 40, 15)
        sender.pause()
        wait_until(lambda: session.state.sources[0].status == "stalled", 5)
        stalled.append(session.state.sources[0])
        wait_until(lambda: session.state.sources[0].reconnects >= 1, 10)
        time.sleep(1.5)
        sender.resume()
        wait_until(lambda: session.state.sources[0].pieces >= 2, 15)
        time.sleep(1.0)

    settings = RecorderSettings(read_timeout_s=1.5, backoff_first_s=0.2, watchdog_s=0.5)
    try:
        session, result = record(tmp_path, [f"cam=udp://127.0.0.1:{port}"], 0, settings,
                                 during=pause)
    finally:
        sender.stop()
    state = session.state.sources[0]
    assert stalled[0].watchdog_trips >= 1 and "no data" in (stalled[0].last_error or "")
    assert state.reconnects >= 1 and state.connections >= 2
    pieces = check(result, tmp_path, tmp_path / "recording")
    assert len(pieces["cam"]) >= 2
    assert pieces["cam"][0].closed_because.startswith("connection")  # type: ignore[union-attr]
    assert pieces["cam"][1].opened_because == "reconnect"


@pytest.mark.slow
def test_udp_sender_restarted_is_a_discontinuity_not_a_broken_timeline(tmp_path: Path) -> None:
    """Killed and restarted within the read timeout: timestamps jump back, a new piece starts
    at the restarted sender's first key frame, and no frame of either run is lost."""
    port = free_port()
    first = udp_sender(port, frames=60)
    second = None

    def restart(session: RecordingSession) -> None:
        nonlocal second
        wait_until(lambda: first.proc.poll() is not None, 20)
        time.sleep(0.3)
        second = udp_sender(port, frames=60)
        wait_until(lambda: second is not None and second.proc.poll() is not None, 20)
        time.sleep(0.5)

    settings = RecorderSettings(read_timeout_s=3, backoff_first_s=0.2)
    try:
        session, result = record(tmp_path, [f"cam=udp://127.0.0.1:{port}"], 0, settings,
                                 during=restart)
    finally:
        first.stop()
        if second is not None:
            second.stop()
    state = session.state.sources[0]
    pieces = check(result, tmp_path, tmp_path / "recording")["cam"]
    assert state.discontinuities == 1 and state.reconnects == 0
    assert [p.opened_because for p in pieces] == ["start", "discontinuity"]
    # nothing is lost at the jump; the last frame or two of a stream that simply ends stay
    # in the MPEG-TS demuxer (a PES is complete only when the next one starts)
    assert pieces[0].frames == 60 and 57 <= pieces[1].frames <= 60


def test_two_sources_one_second_apart_are_aligned_within_a_frame(tmp_path: Path) -> None:
    """The instances' Acquisition DateTimes differ by the true offset (the first datagram of
    each sender, seen by a proxy on the wire) within one frame (40 ms)."""
    ports = [free_port(), free_port()]
    proxies = [UdpProxy(p) for p in ports]
    senders = []

    def start_senders(session: RecordingSession) -> None:
        time.sleep(1.0)  # the recorders are listening
        senders.append(udp_sender(proxies[0].port))
        wait_until(lambda: proxies[0].first is not None, 10)
        time.sleep(1.0)
        senders.append(udp_sender(proxies[1].port))
        time.sleep(2.5)

    try:
        _, result = record(tmp_path, [f"a=udp://127.0.0.1:{ports[0]}",
                                      f"b=udp://127.0.0.1:{ports[1]}"], 0, during=start_senders)
    finally:
        for s in senders:
            s.stop()
        for p in proxies:
            p.close()
    check(result, tmp_path, tmp_path / "recording")
    first = {s.name: read_back(s.files[0].path, tmp_path).dataset for s in result.sources}
    from datetime import datetime

    acquired = {k: datetime.strptime(ds.AcquisitionDateTime, "%Y%m%d%H%M%S.%f")
                for k, ds in first.items()}
    measured = (acquired["b"] - acquired["a"]).total_seconds()
    assert proxies[0].first is not None and proxies[1].first is not None
    true_offset = proxies[1].first - proxies[0].first
    assert 0.9 < true_offset < 3.0
    print(f"sync error {abs(measured - true_offset) * 1000:.1f} ms "
          f"(true {true_offset:.3f} s, measured {measured:.3f} s)")
    assert abs(measured - true_offset) < 0.040
    report = {e.source: e for e in result.sync}
    assert report["b"].offset_s == pytest.approx(measured, abs=0.002)


@pytest.mark.slow
def test_http_ts_server_restarted_reconnects(tmp_path: Path) -> None:
    """ffmpeg as HTTP server: killed mid-recording (demux ends or errors), restarted 1 s
    later; the recorder reconnects with backoff and keeps recording."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/live.ts"
    out = ["-f", "mpegts", "-listen", "1", url]
    servers = [ffmpeg_sender(out)]
    wait_listening(port)

    def restart(session: RecordingSession) -> None:
        wait_until(lambda: session.state.frames >= 50, 15)
        servers[0].kill()
        time.sleep(1.0)
        servers.append(ffmpeg_sender(out))
        wait_listening(port)
        wait_until(lambda: session.state.sources[0].pieces >= 2, 20)
        time.sleep(1.0)

    try:
        session, result = record(tmp_path, [f"enc={url}"], 0, during=restart)
    finally:
        for s in servers:
            s.stop()
    state = session.state.sources[0]
    assert state.reconnects >= 1 and state.reconnect_s
    print(f"reconnect after HTTP server restart: {state.reconnect_s}")
    pieces = check(result, tmp_path, tmp_path / "recording")["enc"]
    assert len(pieces) >= 2


@pytest.mark.slow
def test_hls_live_playlist_with_program_date_time(tmp_path: Path) -> None:
    """HLS from ffmpeg with EXT-X-PROGRAM-DATE-TIME: the first piece starts at the PDT of the
    segment the demuxer started with. The writer is paused while the recorder opens, so that
    segment is certain (else the recorder falls back to its own clock, by design)."""
    from vid2dcm.capture.hls import parse_playlist

    hls = tmp_path / "hls"
    hls.mkdir()
    writer = ffmpeg_sender(["-f", "hls", "-hls_time", "1", "-hls_list_size", "4",
                            "-hls_flags", "delete_segments+program_date_time", "live.m3u8"],
                           cwd=hls)
    port = free_port()
    server = http_server(hls, port)
    newest = []
    try:
        wait_until(lambda: len(list(hls.glob("*.ts"))) >= 3, 15)
        writer.pause()
        segments, _ = parse_playlist((hls / "live.m3u8").read_text())
        newest.append(segments[-1])
        session = RecordingSession([parse_source(f"hls=http://127.0.0.1:{port}/live.m3u8")],
                                   tmp_path / "recording", META, settings=FAST)
        session.start()
        wait_until(lambda: session.state.frames > 0, 15)
        writer.resume()
        time.sleep(3.0)
        session.stop()
        result = session.finalize(tmp_path / "dicom")
    finally:
        writer.stop()
        server.stop()
    pieces = check(result, tmp_path, tmp_path / "recording")["hls"]
    assert sum(p.frames for p in pieces) >= 50
    assert pieces[0].time_method == "PDT"
    assert newest[0].program_date_time is not None and pieces[0].start_wall is not None
    assert abs(pieces[0].start_wall - newest[0].program_date_time) < 0.05


def test_rtmp_listen_mode(tmp_path: Path) -> None:
    port = free_port()
    url = f"rtmp://127.0.0.1:{port}/live/stream"
    sender = ffmpeg_sender(["-f", "flv", "-listen", "1", url])
    try:
        wait_listening(port)
        _, result = record(tmp_path, [f"rtmp={url}"], 4.0)
    finally:
        sender.stop()
    pieces = check(result, tmp_path, tmp_path / "recording")["rtmp"]
    assert sum(p.frames for p in pieces) >= 25


def test_srt_through_the_relay(tmp_path: Path) -> None:
    import shutil

    if shutil.which("srt-live-transmit") is None:
        pytest.skip("srt-tools is not installed")
    port = free_port()
    sender = ffmpeg_sender(["-f", "mpegts", f"srt://127.0.0.1:{port}?mode=listener"])
    try:
        time.sleep(0.5)
        _session, result = record(tmp_path, [f"srt=srt://127.0.0.1:{port}"], 4.0)
    finally:
        sender.stop()
    pieces = check(result, tmp_path, tmp_path / "recording")["srt"]
    assert sum(p.frames for p in pieces) >= 25


@pytest.mark.skipif(not gst_rtsp_available(), reason="gst-rtsp-server (python3-gi) missing")
def test_rtsp_with_rtcp_sender_clock(tmp_path: Path) -> None:
    """RTSP over TCP from the GStreamer server; the time base comes from RTCP sender reports
    (start_time_realtime), H.264 is copied."""
    port = free_port()
    server = rtsp_server(port)
    began = time.time()
    try:
        _session, result = record(tmp_path, [f"scope=rtsp://127.0.0.1:{port}/test"], 4.0)
    finally:
        server.stop()
    pieces = check(result, tmp_path, tmp_path / "recording")["scope"]
    assert {f.action.value for f in result.sources[0].files} == {"copy"}
    assert pieces[0].time_method == "RTCP"
    # the sender's clock is this machine's clock: the first frame lies within the recording
    assert pieces[0].start_wall is not None
    assert began - 0.5 < pieces[0].start_wall < began + 4.0


def test_source_that_accepts_but_never_sends(tmp_path: Path) -> None:
    """The open times out, the recorder keeps retrying with backoff, says why, and stops
    cleanly when asked; there is nothing to finalise."""
    silent = SilentServer()
    settings = RecorderSettings(read_timeout_s=1, open_timeout_s=1, backoff_first_s=0.2,
                                backoff_max_s=0.5)
    url = f"http://operator:hunter2@127.0.0.1:{silent.port}/x.ts?token=abc123"
    session = RecordingSession([parse_source(f"dead={url}",
                                             read_timeout_s=1)], tmp_path / "recording", META,
                               settings=settings)
    try:
        session.start()
        time.sleep(3.5)
        state = session.state.sources[0]
        started = time.monotonic()
        session.stop()
        assert time.monotonic() - started < 5
    finally:
        silent.close()
    assert state.status in ("connecting", "reconnecting") and state.frames == 0
    assert state.last_error is not None and len(silent.accepted) >= 2
    assert "hunter2" not in state.last_error and "abc123" not in state.last_error
    manifest = (tmp_path / "recording" / "session.json").read_text()
    assert "hunter2" not in manifest and "abc123" not in manifest
    from vid2dcm.core.errors import OutputError

    with pytest.raises(OutputError):
        session.finalize(tmp_path / "dicom")
