"""Live recording with lavfi sources: no network, no processes but the recorder itself.

Every DICOM file made is read back by pydicom, dcmdump and dciodvfy and its video decoded
(tests/readback.py); frame counts must equal what the recorder wrote into each piece.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from readback import dciodvfy_errors, read_back
from vid2dcm.capture.finalize import finalize, repair
from vid2dcm.capture.pieces import load_pieces
from vid2dcm.capture.recorder import RecorderSettings
from vid2dcm.capture.recover import recover
from vid2dcm.capture.session import RecordingSession
from vid2dcm.capture.sources import SourceKind, parse_source
from vid2dcm.core.errors import InputError, OutputError, UsageError
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import Metadata

SMALL = "lavfi:testsrc2=size=160x120:rate=25"
META = Metadata(patient_name="Doe^Jane", patient_id="REC-1", accession_number="ACC42")


# -- sources -----------------------------------------------------------------------------------
def test_rtsp_defaults_to_tcp_and_a_socket_timeout() -> None:
    spec = parse_source("scope=rtsp://user:secret@10.0.0.5:554/stream1", read_timeout_s=3)
    assert spec.name == "scope" and spec.kind is SourceKind.RTSP
    assert spec.option_dict == {"rtsp_transport": "tcp", "timeout": "3000000"}
    assert "secret" not in spec.display and spec.display == "rtsp://10.0.0.5:554/stream1"
    assert spec.sender_clock == "RTCP"
    udp = parse_source("rtsp://cam/x?transport=udp")
    assert udp.option_dict["rtsp_transport"] == "udp" and "transport" not in udp.url


def test_scheme_options() -> None:
    udp = parse_source("udp://127.0.0.1:5000#latency=0.12")
    assert "overrun_nonfatal=1" in udp.url and "fifo_size=1000000" in udp.url
    assert udp.latency_s == pytest.approx(0.12) and udp.format == "mpegts"
    hls = parse_source("http://127.0.0.1:8090/live.m3u8")
    assert hls.kind is SourceKind.HLS and hls.option_dict["live_start_index"] == "-1"
    assert parse_source("https://enc/live.ts").kind is SourceKind.HTTP
    assert parse_source("rtmp://127.0.0.1/live/key").format == "flv"
    v4l2 = parse_source("/dev/video0?video_size=1920x1080&input_format=mjpeg")
    assert v4l2.kind is SourceKind.V4L2 and v4l2.option_dict["video_size"] == "1920x1080"
    lavfi = parse_source(SMALL, index=3)
    assert lavfi.name == "source3" and lavfi.url.endswith(",realtime")


def test_srt_goes_through_a_relay() -> None:
    if not _has("srt-live-transmit"):
        pytest.skip("srt-tools not installed")
    spec = parse_source("srt://127.0.0.1:9000?latency=120")
    assert spec.kind is SourceKind.SRT and spec.relay is not None
    assert "mode=caller" in " ".join(spec.relay.command)
    assert spec.url.startswith("udp://127.0.0.1:{port}")
    secret = parse_source("srt://10.0.0.9:9000?passphrase=topsecret123&latency=200")
    assert "topsecret123" not in secret.display and "latency=200" in secret.display
    assert secret.relay is not None and "topsecret123" in " ".join(secret.relay.command)


@pytest.mark.parametrize("text", ["ftp://x/y", "/dev/sda", "lavfi:", "udp://h:1#latency=x",
                                  "/dev/video0?bogus=1", "rtsp://h/x?transport=carrier"])
def test_bad_sources_are_one_clear_error(text: str) -> None:
    with pytest.raises(UsageError):
        parse_source(text)


# -- recording and finalisation ----------------------------------------------------------------
def test_two_sources_segments_and_a_still(tmp_path: Path) -> None:
    """Two lavfi cameras, 2 s segments, a still: one study, one series per source, instances
    numbered on with Temporal Predecessor links, exact frame counts, everything valid."""
    folder = tmp_path / "recording"
    session = RecordingSession(
        [parse_source("scope=" + SMALL), parse_source("room=lavfi:testsrc=size=160x120:rate=30")],
        folder, META, settings=RecorderSettings(max_segment_s=2), sop=SopChoice.ENDOSCOPIC)
    session.start()
    time.sleep(2.5)
    session.snapshot("scope")
    time.sleep(2.2)
    live = session.state
    assert live.frames > 0 and live.bytes > 0 and all(s.status == "recording"
                                                       for s in live.sources)
    session.stop()
    result = session.finalize(tmp_path)
    assert {s.name for s in result.sources} == {"scope", "room"}
    series = set()
    for source in result.sources:
        pieces = load_pieces(folder / source.name)
        assert len(pieces) >= 2 and len(source.files) == len(pieces)
        assert [p.frames for p in pieces] == [f.frames for f in source.files]
        previous = None
        for number, f in enumerate(source.files, 1):
            back = read_back(f.path, tmp_path)
            ds = back.dataset
            assert ds.StudyInstanceUID == result.study_instance_uid
            assert ds.SeriesDescription == source.name and ds.Modality == "ES"
            assert ds.StationName == source.name
            assert int(ds.InstanceNumber) == number
            assert ds.AccessionNumber == "ACC42"
            assert "AcquisitionDateTime" in ds
            if previous is not None:
                assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == previous
            previous = ds.SOPInstanceUID
            series.add(ds.SeriesInstanceUID)
    assert len(series) == 2
    scope = next(s for s in result.sources if s.name == "scope")
    assert len(scope.stills) == 1
    still = pydicom.dcmread(scope.stills[0].path)
    assert still.SOPClassUID == pydicom.uid.VLEndoscopicImageStorage
    assert still.StudyInstanceUID == result.study_instance_uid
    assert still.ReferencedImageSequence[0].ReferencedSOPInstanceUID in {
        f.sop_instance_uid for f in scope.files}
    assert (still.Rows, still.Columns) == (120, 160)
    assert len(still.PixelData) == 120 * 160 * 3
    assert dciodvfy_errors(scope.stills[0].path) == []
    assert scope.stills[0].sop_instance_uid == still.SOPInstanceUID
    dump = subprocess.run(["dcmdump", str(scope.stills[0].path)], capture_output=True, text=True)
    assert dump.returncode == 0 and "E: " not in dump.stderr
    starts = {e.source: e for e in result.sync}
    assert all(e.method == "arrival" for e in starts.values())
    assert min(abs(e.offset_s or 0) for e in starts.values()) == 0
    with pytest.raises(OutputError):  # the folder holds a recording: never overwritten
        RecordingSession([parse_source(SMALL)], folder, META)


def test_pre_record_keeps_gops_before_the_trigger(tmp_path: Path) -> None:
    folder = tmp_path / "recording"
    session = RecordingSession([parse_source("cam=" + SMALL)], folder, META,
                               settings=RecorderSettings(pre_record_s=1.5), armed=True)
    session.start()
    time.sleep(3.2)
    assert session.state.sources[0].status == "buffering"
    assert session.state.frames == 0
    triggered = time.monotonic()
    session.trigger()
    time.sleep(1.5)
    session.stop()
    stopped = time.monotonic()
    piece = load_pieces(folder / "cam")[0]
    # the buffer holds whole 1 s GOPs reaching back at least 1.5 s before the trigger
    assert 1.5 <= piece.pre_record_s <= 3.0
    assert piece.duration_s > (stopped - triggered) + 1.0
    result = finalize(folder, tmp_path)
    f = result.sources[0].files[0]
    assert read_back(f.path, tmp_path).decoded_frames == piece.frames == f.frames


def test_max_segment_by_size_frame_by_frame_iod(tmp_path: Path) -> None:
    """Size-limited pieces, finalised as Secondary Capture (frame by frame): numbered on and
    linked like the video IODs."""
    folder = tmp_path / "recording"
    session = RecordingSession([parse_source("cam=" + SMALL)], folder, META,
                               settings=RecorderSettings(max_segment_bytes=40_000),
                               sop=SopChoice.SC)
    session.start()
    time.sleep(3.3)
    session.stop()
    pieces = load_pieces(folder / "cam")
    assert len(pieces) >= 2
    assert all(p.bytes >= 40_000 for p in pieces[:-1])
    assert [p.opened_because for p in pieces[1:]] == ["max-segment"] * (len(pieces) - 1)
    result = finalize(folder, tmp_path)
    files = result.sources[0].files
    assert [f.frames for f in files] == [p.frames for p in pieces]
    for number, f in enumerate(files, 1):
        ds = read_back(f.path, tmp_path).dataset
        assert ds.SOPClassUID == pydicom.uid.MultiFrameTrueColorSecondaryCaptureImageStorage
        assert int(ds.InstanceNumber) == number
        if number > 1:
            assert ds.ReferencedImageSequence[0].ReferencedSOPInstanceUID == \
                files[number - 2].sop_instance_uid


def test_disk_guard_stops_cleanly_and_keeps_what_was_recorded(tmp_path: Path) -> None:
    """A 400 KB quota with 50 KB kept free: the recorder stops by itself before the quota is
    reached, says why, and the pieces so far are valid DICOM."""
    folder = tmp_path / "recording"
    quota = 400_000

    def free(path: Path) -> int:
        used = sum(p.stat().st_size for p in path.glob("*.ts"))
        return quota - used

    session = RecordingSession([parse_source("cam=lavfi:testsrc2=size=320x240:rate=25")],
                               folder, META, settings=RecorderSettings(min_free_bytes=50_000),
                               free_space=free)
    session.start()
    deadline = time.monotonic() + 20
    while session.should_stop() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    reason = session.should_stop()
    assert reason is not None and reason.startswith("disk space low")
    session.stop()
    result = finalize(folder, tmp_path)
    assert result.stop_reason is not None and result.stop_reason.startswith("disk space low")
    size = sum(p.stat().st_size for p in (folder / "cam").glob("*.ts"))
    assert quota / 2 <= size < quota - 20_000
    for f in result.sources[0].files:
        read_back(f.path, tmp_path)


def test_repair_drops_a_torn_tail(tmp_path: Path) -> None:
    folder = tmp_path / "recording"
    session = RecordingSession([parse_source("cam=" + SMALL)], folder, META)
    session.start()
    time.sleep(2.5)
    session.stop()
    piece = folder / "cam" / "piece-0001.ts"
    data = piece.read_bytes()
    torn = tmp_path / "torn.ts"
    torn.write_bytes(data[: len(data) - 3000])  # mid-packet, as a power cut would leave it
    fixed = repair(torn)
    from readback import decode_count

    frames, _ = decode_count(fixed)
    assert 0 < frames < load_pieces(folder / "cam")[0].frames


def test_hls_playlist_parsing() -> None:
    from vid2dcm.capture.hls import parse_playlist

    media = ("#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-MEDIA-SEQUENCE:41\n#EXTINF:2.000000,\n"
             "#EXT-X-PROGRAM-DATE-TIME:2026-12-03T13:10:24.112+0000\nlive41.ts\n"
             "#EXTINF:1.500000,\nlive42.ts\n")
    segments, variant = parse_playlist(media)
    assert variant is None and [s.sequence for s in segments] == [41, 42]
    assert segments[0].program_date_time == pytest.approx(1796303424.112)
    assert segments[1].program_date_time == pytest.approx(1796303426.112)
    assert segments[1].duration_s == 1.5 and segments[1].uri == "live42.ts"
    master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=800000\nlow/index.m3u8\n"
    assert parse_playlist(master) == ([], "low/index.m3u8")
    no_pdt, _ = parse_playlist("#EXTM3U\n#EXTINF:1,\na.ts\n")
    assert no_pdt[0].program_date_time is None and no_pdt[0].sequence == 0
    with pytest.raises(ValueError):
        parse_playlist("<html>")


def test_sync_report_offsets_and_drift(tmp_path: Path) -> None:
    """Offsets are relative to the earliest source; drift is receiver span minus media span,
    per minute, once a source has more than 10 s."""
    from datetime import datetime

    from vid2dcm.capture.finalize import sync_report
    from vid2dcm.capture.pieces import PieceRecord, SessionManifest, SourceRecord, write_json

    manifest = SessionManifest(started=datetime.now(), study_instance_uid="1.2.3",
                               metadata=META, sources=[
                                   SourceRecord(name="a", display="a", series_instance_uid="1.1",
                                                series_number=1),
                                   SourceRecord(name="b", display="b", series_instance_uid="1.2",
                                                series_number=2)])
    pieces = {"a": [(1000.0, "arrival", 30.0, 30.003)],
              "b": [(1000.9871, "RTCP", 5.0, 5.0)]}
    for name, rows in pieces.items():
        (tmp_path / name).mkdir()
        for n, (wall, method, media, arrival) in enumerate(rows, 1):
            write_json(tmp_path / name / f"piece-{n:04d}.json", PieceRecord(
                index=n, file=f"piece-{n:04d}.ts", source=name, connection=1,
                start_wall=wall, time_method=method, frames=1, media_span_s=media,  # type: ignore[arg-type]
                arrival_span_s=arrival))
    report = {e.source: e for e in sync_report(tmp_path, manifest)}
    assert report["a"].offset_s == 0 and report["b"].offset_s == pytest.approx(0.9871)
    assert report["a"].method == "arrival" and report["b"].method == "RTCP"
    assert report["a"].drift_ms_per_min == pytest.approx(6.0)
    assert report["b"].drift_ms_per_min is None  # too short to say


def test_finalize_refuses_a_folder_without_a_recording(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        finalize(tmp_path, tmp_path)
    with pytest.raises(InputError):
        recover(tmp_path / "missing")


# -- the command line --------------------------------------------------------------------------
APP = ("import typer, sys; from vid2dcm.apps.record_command import record; "
       "app = typer.Typer(add_completion=False); app.command()(record); "
       "app.command(name='noop', hidden=True)(lambda: None); "
       "sys.exit(app(['record', *sys.argv[1:]], standalone_mode=False) or 0)")
"""A tiny app with the record command, as the lead will register it."""


def cli(*args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", APP, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)  # type: ignore


def wait_recording(proc: subprocess.Popen[str]) -> None:
    """The command says so on stderr once its signal handlers are in place."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("recording "), line


def test_cli_duration_then_sigterm_and_snapshot(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = cli(f"cam={SMALL}", "-o", str(out), "--duration", "2.5", "--patient-id", "P7",
               "--patient-name", "Secret^Name", "--sop", "photographic")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    files = sorted(out.glob("cam-*.dcm"))
    assert len(files) == 1 and str(files[0]) in stdout
    back = read_back(files[0], tmp_path)
    assert 35 <= back.decoded_frames <= 80  # ~2.5 s at 25 fps, counted from the start
    assert "Secret" not in stdout + stderr

    assert (out / "recording" / "session.json").is_file()  # kept unless --remove-pieces
    out2 = tmp_path / "out2"
    proc = cli(f"cam={SMALL}", "-o", str(out2), "--remove-pieces")
    wait_recording(proc)
    time.sleep(2.0)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    assert len(list(out2.glob("cam-still-*.dcm"))) == 1
    assert not (out2 / "recording").exists()
    for f in out2.glob("cam-0*.dcm"):
        read_back(f, tmp_path)


@pytest.mark.slow
def test_cli_keys_pre_record_start_still_and_quit(tmp_path: Path) -> None:
    """--snapshot-key: 'r' starts keeping (after 1 s of pre-record), 's' takes a still, 'q'
    stops; the piece reaches back before the 'r'."""
    out = tmp_path / "out"
    proc = cli(f"cam={SMALL}", "-o", str(out), "--pre-record", "1", "--snapshot-key",
               stdin=subprocess.PIPE)
    assert proc.stdin is not None
    wait_recording(proc)
    time.sleep(2.5)
    proc.stdin.write("r\n")
    proc.stdin.flush()
    time.sleep(1.5)
    proc.stdin.write("s\n")
    proc.stdin.flush()
    time.sleep(1.0)
    proc.stdin.write("q\n")
    proc.stdin.flush()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    (piece,) = load_pieces(out / "recording" / "cam")
    assert piece.pre_record_s >= 1.0
    assert len(list(out.glob("cam-still-*.dcm"))) == 1
    read_back(out / "cam-001.dcm", tmp_path)


def test_cli_bad_source_is_one_line_and_no_output(tmp_path: Path) -> None:
    proc = cli("ftp://example/x", "-o", str(tmp_path / "o"))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 2
    assert stderr.strip().count("\n") == 0 and stderr.startswith("vid2dcm: error:")
    assert not (tmp_path / "o").exists()
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "cam-001.dcm").write_bytes(b"earlier result")
    proc = cli(f"cam={SMALL}", "-o", str(taken))
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 5 and "already exists" in stderr, stderr
    assert (taken / "cam-001.dcm").read_bytes() == b"earlier result"
    assert not (taken / "recording").exists()


@pytest.mark.slow
@pytest.mark.slow
def test_cli_source_that_never_answers(tmp_path: Path) -> None:
    """Nothing recorded: one line, exit code 5, no recording folder left behind."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "o"
    proc = cli(f"udp://127.0.0.1:{port}", "-o", str(out), "--duration", "1.5",
               "--read-timeout", "1")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 5, stderr
    assert stderr.splitlines()[-1] == ("vid2dcm: error: nothing was recorded: no source "
                                       "delivered a key frame")
    assert not (out / "recording").exists()


@pytest.mark.slow
def test_sigkill_then_recover(tmp_path: Path) -> None:
    """A recorder killed outright loses at most its last packet: --recover makes DICOM of
    everything before it."""
    out = tmp_path / "out"
    proc = cli(f"cam={SMALL}", "-o", str(out), "--max-segment", "2")
    wait_recording(proc)
    time.sleep(3.0)  # mid-way through the second 2 s piece
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    assert not list(out.glob("*.dcm"))
    pieces = load_pieces(out / "recording" / "cam")
    assert pieces and pieces[-1].closed_because is None
    proc = cli("--recover", str(out), "--json")
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    import json

    report = json.loads(stdout)
    files = sorted(out.glob("cam-*.dcm"))
    skipped = report["sources"][0]["skipped"]
    # a piece killed a packet after it opened has nothing left once its torn tail is cut
    assert len(files) + len(skipped) == len(pieces) and len(files) >= 1
    assert all(s.startswith(pieces[-1].file) for s in skipped)
    for f in files:
        read_back(f, tmp_path)
    assert report["stop_reason"].startswith("recovered")
    again = cli("--recover", str(out))
    _, stderr = again.communicate(timeout=30)
    assert again.returncode == 2 and "already" in stderr


def _has(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None
