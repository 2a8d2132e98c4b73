"""Measured figures for live recording (issue 13), all on loopback:

1. CPU and memory of `vid2dcm record` while copying a 1080p30 H.264 stream (UDP MPEG-TS):
   the stream is encoded once beforehand and sent with `ffmpeg -re -c copy`, so the sender
   costs nothing; the recorder's CPU is sampled from /proc while it records (finalising
   excluded) and its peak RSS read from VmHWM.
2. Reconnect time after a source restart: the RTSP server (GStreamer) killed and restarted.
3. Frames lost per reconnect: a UDP sender of a known frame count paused (SIGSTOP) longer
   than the read timeout, then resumed.
4. Time-sync error between two sources started ~1 s apart (proxy on the wire = truth).

    .venv/bin/python benchmarks/record_live.py [--seconds 20]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import pydicom

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from live_senders import (  # noqa: E402
    FFMPEG,
    Process,
    UdpProxy,
    free_port,
    gst_rtsp_available,
    rtsp_server,
    udp_sender,
)

APP = ("import typer, sys; from vid2dcm.apps.record_command import record; "
       "app = typer.Typer(add_completion=False); app.command()(record); "
       "app.command(name='noop', hidden=True)(lambda: None); "
       "sys.exit(app(['record', *sys.argv[1:]], standalone_mode=False) or 0)")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def copy_1080p30(work: Path, seconds: float) -> dict[str, float]:
    clip = work / "1080p30.ts"
    assert FFMPEG
    subprocess.run([FFMPEG, "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=size=1920x1080:rate=30,format=yuv420p", "-t", str(seconds + 8),
                    "-c:v", "libx264", "-preset", "ultrafast", "-profile:v", "high",
                    "-x264-params", "cabac=1:8x8dct=1", "-g", "30", "-b:v", "8M",
                    "-f", "mpegts", str(clip)], check=True)
    port = free_port()
    out = work / "out1080"
    rec = subprocess.Popen([sys.executable, "-c", APP, f"cam=udp://127.0.0.1:{port}", "-o",
                            str(out), "--max-segment", "10"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    sender = Process([FFMPEG, "-v", "error", "-re", "-i", str(clip), "-c", "copy", "-f",
                      "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"])
    time.sleep(3)
    c0, t0 = cpu_seconds(rec.pid), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_seconds(rec.pid), time.monotonic()
    rss = peak_rss_mib(rec.pid)
    rec.terminate()
    rec.communicate(timeout=300)
    sender.stop()
    frames = sum(int(pydicom.dcmread(f, stop_before_pixels=True).NumberOfFrames)
                 for f in out.glob("cam-*.dcm"))
    stream_mbit = clip.stat().st_size * 8 / (seconds + 8) / 1e6
    return {"cpu_percent_of_one_core": round(100 * (c1 - c0) / (t1 - t0), 1),
            "peak_rss_mib": round(rss, 1), "frames_recorded": frames,
            "stream_mbit_s": round(stream_mbit, 1)}


def rtsp_restart(work: Path) -> dict[str, object]:
    from vid2dcm.capture.recorder import Recorder, RecorderSettings
    from vid2dcm.capture.sources import parse_source

    port = free_port()
    server = rtsp_server(port)
    rec = Recorder(parse_source(f"rtsp://127.0.0.1:{port}/test", read_timeout_s=2),
                   work / "rtsp", RecorderSettings(read_timeout_s=2, backoff_first_s=0.25,
                                                   backoff_max_s=1.0))
    rec.start()
    time.sleep(4)
    server.kill()
    time.sleep(1.0)
    server = rtsp_server(port)
    time.sleep(6)
    rec.stop()
    rec.join(10)
    server.stop()
    return {"reconnects": rec.state.reconnects, "reconnect_s": rec.state.reconnect_s,
            "last_error": rec.state.last_error}


def udp_pause(work: Path) -> dict[str, object]:
    from vid2dcm.capture.recorder import Recorder, RecorderSettings
    from vid2dcm.capture.sources import parse_source

    port = free_port()
    total = 250
    rec = Recorder(parse_source(f"udp://127.0.0.1:{port}", read_timeout_s=1.5), work / "udp",
                   RecorderSettings(read_timeout_s=1.5, backoff_first_s=0.2))
    rec.start()
    time.sleep(1)
    sender = udp_sender(port, frames=total)
    time.sleep(4)
    sender.pause()
    time.sleep(3)
    sender.resume()
    sender.proc.wait(60)
    time.sleep(1.5)
    rec.stop()
    rec.join(10)
    return {"sent": total, "recorded": rec.state.frames, "lost": total - rec.state.frames,
            "reconnects": rec.state.reconnects, "reconnect_s": rec.state.reconnect_s}


def sync_error(work: Path, runs: int = 3) -> list[float]:
    from vid2dcm.capture.session import RecordingSession
    from vid2dcm.capture.sources import parse_source
    from vid2dcm.core.metadata import Metadata

    errors = []
    for run in range(runs):
        ports = [free_port(), free_port()]
        proxies = [UdpProxy(p) for p in ports]
        folder = work / f"sync{run}"
        session = RecordingSession([parse_source(f"a=udp://127.0.0.1:{ports[0]}"),
                                    parse_source(f"b=udp://127.0.0.1:{ports[1]}")],
                                   folder / "recording", Metadata())
        session.start()
        time.sleep(1)
        senders = [udp_sender(proxies[0].port)]
        time.sleep(1)
        senders.append(udp_sender(proxies[1].port))
        time.sleep(3)
        session.stop()
        for s in senders:
            s.stop()
        result = session.finalize(folder)
        got = {s.name: datetime.strptime(pydicom.dcmread(s.files[0].path).AcquisitionDateTime,
                                         "%Y%m%d%H%M%S.%f") for s in result.sources}
        measured = (got["b"] - got["a"]).total_seconds()
        assert proxies[0].first and proxies[1].first
        errors.append(round((measured - (proxies[1].first - proxies[0].first)) * 1000, 1))
        for p in proxies:
            p.close()
    return errors


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--only-copy", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        print("1080p30 copy:", copy_1080p30(work, args.seconds), flush=True)
        if args.only_copy:
            return
        if gst_rtsp_available():
            print("RTSP server restart:", rtsp_restart(work), flush=True)
        print("UDP sender paused 3 s:", udp_pause(work), flush=True)
        print("sync error (ms) per run:", sync_error(work), flush=True)


if __name__ == "__main__":
    main()
