"""Loopback live senders for the recording tests, each started and stopped by PID.

ffmpeg encodes lavfi test patterns in real time (-re) and sends them as UDP MPEG-TS, HTTP
(listen mode), RTMP (listen mode), HLS (+ python -m http.server) or SRT (listener); the
GStreamer RTSP server (rtsp_server.py) serves RTSP with RTCP sender reports. UdpProxy
timestamps the first datagram of a stream on its way to the recorder: the independent "true"
start time for the synchronisation test.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).parent
FFMPEG = shutil.which("ffmpeg")
GST_PYTHON = "/usr/bin/python3"


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Process:
    """A child process stopped by its PID (terminate, then kill), never by name."""

    def __init__(self, args: list[str], cwd: Path | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(args, cwd=cwd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     text=True)
        self.started = time.time()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pause(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def wait_line(self, text: str, timeout: float = 20) -> None:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if text in line:
                return
            if not line and self.proc.poll() is not None:
                break
        raise RuntimeError(f"{self.args[0]} did not print {text!r}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def ffmpeg_sender(output: list[str], seconds: float | None = None, *, audio: bool = False,
                  size: str = "160x120", rate: int = 25, frames: int | None = None,
                  cwd: Path | None = None) -> Process:
    """lavfi test pattern -> H.264 (1 s GOP, zero latency) [+ AAC] -> output args."""
    assert FFMPEG, "ffmpeg is not installed"
    args = [FFMPEG, "-hide_banner", "-nostdin", "-loglevel", "error", "-re",
            "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}"]
    if audio:
        args += ["-re", "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]
    args += ["-c:v", "libx264", "-preset", "veryfast", "-tune", "zerolatency",
             "-g", str(rate), "-pix_fmt", "yuv420p"]
    args += ["-c:a", "aac", "-b:a", "64k"] if audio else ["-an"]
    if frames is not None:
        args += ["-frames:v", str(frames)]
    if seconds is not None:
        args += ["-t", str(seconds)]
    return Process(args + output, cwd=cwd)


def udp_sender(port: int, seconds: float | None = None, **kw: object) -> Process:
    return ffmpeg_sender(["-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"], seconds,
                         **kw)  # type: ignore[arg-type]


def rtsp_server(port: int) -> Process:
    server = Process([GST_PYTHON, str(HERE / "rtsp_server.py"), str(port)])
    server.wait_line("ready")
    return server


def gst_rtsp_available() -> bool:
    if not Path(GST_PYTHON).exists():
        return False
    probe = subprocess.run([GST_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer',"
                            " '1.0'); from gi.repository import GstRtspServer"],
                           capture_output=True, check=False)
    return probe.returncode == 0


def http_server(folder: Path, port: int) -> Process:
    server = Process([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                     cwd=folder)
    wait_tcp(port)
    return server


def wait_tcp(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def wait_listening(port: int, timeout: float = 10) -> None:
    """Wait for a TCP listener without connecting to it: ffmpeg's -listen 1 output serves a
    single client, so a test connection would use it up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            try:
                rows = Path(table).read_text().splitlines()[1:]
            except OSError:
                continue
            for row in rows:
                fields = row.split()
                if fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                    return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class UdpProxy:
    """Forwards datagrams from listen_port to target_port and notes when the first came."""

    def __init__(self, target_port: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.target = ("127.0.0.1", target_port)
        self.first: float | None = None
        self.running = True
        self.out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if self.first is None:
                self.first = time.time()
            self.out.sendto(data, self.target)

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        self.sock.close()
        self.out.close()


class SilentServer:
    """Accepts TCP connections and never answers: the source that 'accepts but never sends'."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port: int = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self.running = True
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while self.running:
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.running = False
        self.thread.join(2)
        for c in self.accepted:
            c.close()
        self.sock.close()
