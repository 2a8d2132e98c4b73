"""Defaults that serve (issue 18): the data folder default, port in use (exit 7, nothing
printed as if up), the gateway's free-port fallback, `token` output that pastes into
service.toml, watch --once's exit code, and progress with time left."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from dcmtk_peers import free_port, stop, wait_listening
from readback import read_back
from vid2dcm.apps.cli.output import ProgressReport
from vid2dcm.apps.cli.service import SERVICE_TEMPLATE, default_data_dir
from vid2dcm.apps.gateway.settings import hash_token, load_settings
from vid2dcm.producing.synth import ClipSpec, synthesize

HIGH = {"preset": "superfast", "profile": "high"}
CLI = [sys.executable, "-m", "vid2dcm"]


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "VID2DCM_DATA"}
    env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
    return env


# --- token ----------------------------------------------------------------------------------

def _token(*args: str) -> tuple[str, str]:
    proc = subprocess.run([*CLI, "token", *args], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    value = proc.stderr.strip().splitlines()[-1]
    return value, proc.stdout


def test_token_output_appends_to_service_toml_as_it_is(tmp_path: Path) -> None:
    """Both the settings gateway writes and a hand-made [service] table take the stdout of
    `token` appended as it is; the token itself (stderr) matches the stored hash."""
    for start in (SERVICE_TEMPLATE.format(path="x", digest="a" * 64), "[service]\nport = 9\n"):
        data = tmp_path / f"d{len(start)}"
        data.mkdir()
        config = data / "service.toml"
        config.write_text(start)
        admin, toml_admin = _token("--role", "admin", "--name", 'IT "desk"')
        uploader, toml_uploader = _token("--name", "nurse")
        assert admin not in toml_admin and uploader not in toml_uploader
        config.write_text(config.read_text() + toml_admin + toml_uploader)
        tokens = load_settings(data).tokens
        assert [(t.sha256, t.role, t.name) for t in tokens[-2:]] == [
            (hash_token(admin), "admin", 'IT "desk"'), (hash_token(uploader), "uploader", "nurse")]


def test_a_first_start_writes_tokens_that_token_output_appends_to(tmp_path: Path) -> None:
    """The settings a first `gateway` start writes (bootstrap: an inline token list) are
    rewritten as [[service.tokens]] tables, so `vid2dcm token >> service.toml` stays valid."""
    from vid2dcm.apps.cli.service import tokens_as_tables
    from vid2dcm.apps.gateway.bootstrap import embedded_defaults

    data = tmp_path / "gw"
    first, _password = embedded_defaults(data)
    tokens_as_tables(data / "service.toml")
    value, toml = _token("--role", "reviewer", "--name", "desk")
    (data / "service.toml").write_text((data / "service.toml").read_text() + toml)
    tokens = load_settings(data).tokens
    assert [(t.sha256, t.role) for t in tokens] == [(hash_token(first), "admin"),
                                                   (hash_token(value), "reviewer")]


# --- data folder and ports ------------------------------------------------------------------

def test_default_data_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("VID2DCM_DATA", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_data_dir() == tmp_path / "vid2dcm"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_data_dir() == Path.home() / ".local" / "share" / "vid2dcm"
    monkeypatch.setenv("VID2DCM_DATA", str(tmp_path / "explicit"))
    assert default_data_dir() == tmp_path / "explicit"


def _get(url: str, token: str) -> tuple[int, object]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, json.loads(response.read())


@pytest.mark.integration
def test_serve_without_data_uses_the_default_folder_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    env = _env(tmp_path)
    folder = tmp_path / "xdg" / "vid2dcm"
    proc = subprocess.Popen([*CLI, "serve", "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        wait_listening(port, proc, seconds=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=10) as r:
            assert r.status == 200
    finally:
        stop(proc)
    assert proc.stderr is not None
    said = proc.stderr.read().decode()
    assert f"vid2dcm: data folder {folder} (settings: {folder / 'service.toml'})" in said
    assert f"serving on http://127.0.0.1:{port}/" in said
    assert folder.is_dir()


def test_gateway_on_a_taken_port_says_so_before_anything(tmp_path: Path) -> None:
    """Exit 7, one line naming a free port, no URL or token printed, nothing created."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        proc = subprocess.run([*CLI, "gateway", "--data", str(tmp_path / "gw"), "--port",
                               str(port)], capture_output=True, text=True, timeout=60,
                              check=False, env=_env(tmp_path))
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == ""
    line = proc.stderr.strip()
    assert "\n" not in line and "Traceback" not in line
    suggested = re.search(r"--port (\d+), or make run PORT=(\d+)", line)
    assert suggested and suggested[1] == suggested[2]
    assert not (tmp_path / "gw").exists()


@pytest.mark.integration
def test_gateway_falls_back_to_a_free_port_and_a_pasted_token_works(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    data.mkdir()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = busy.getsockname()[1]
        token, toml = _token("--role", "admin", "--name", "test")
        (data / "service.toml").write_text(f"[service]\nport = {taken}\n" + toml)
        proc = subprocess.Popen([*CLI, "gateway", "--data", str(data)], env=_env(tmp_path),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        try:
            assert proc.stdout is not None and proc.stderr is not None
            first = proc.stdout.readline().decode()
            url = re.search(r"http://127\.0\.0\.1:(\d+)/", first)
            assert url, first
            port = int(url[1])
            assert port != taken
            wait_listening(port, proc, seconds=30)
            assert _get(f"http://127.0.0.1:{port}/jobs", token) == (200, [])
        finally:
            stop(proc)
        said = proc.stderr.read().decode()
    assert f"port {taken} is in use; using {port} instead" in said


@pytest.mark.parametrize("command", ["worker", "serve", "gateway"])
def test_an_unreachable_shared_queue_stops_the_service_at_once(command: str,
                                                               tmp_path: Path) -> None:
    env = {**_env(tmp_path), "VID2DCM_QUEUE_URL": f"redis://127.0.0.1:{free_port()}"}
    proc = subprocess.run([*CLI, command, "--data", str(tmp_path / "gw"), "--port",
                           str(free_port())] if command != "worker" else
                          [*CLI, command, "--data", str(tmp_path / "gw")],
                          capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 7, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and "does not answer" in proc.stderr
    assert "redis://127.0.0.1" in proc.stderr and "VID2DCM_QUEUE_URL" in proc.stderr
    assert not (tmp_path / "gw").exists()


# --- watch --once ---------------------------------------------------------------------------

def test_watch_once_exits_with_the_first_failure(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    synthesize(folder / "rec.mp4", ClipSpec(width=64, height=48, frames=5, options=HIGH))
    (folder / "junk.mp4").write_bytes(b"not a video" * 100)
    proc = subprocess.run([*CLI, "watch", str(folder), "--once", "--interval", "0.2",
                           "--settle", "0.3"], capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 3, proc.stderr
    assert "junk.mp4: FAILED" in proc.stderr
    assert proc.stderr.count("vid2dcm: error:") == 1
    assert "rec.mp4: done" in proc.stdout
    assert (folder / "failed" / "junk.mp4.reason.txt").exists()
    assert int(read_back(folder / "dicom" / "rec.dcm", tmp_path).dataset.NumberOfFrames) == 5
    clean = tmp_path / "clean"
    clean.mkdir()
    shutil.copy(folder / "done" / "rec.mp4", clean / "ok.mp4")
    ok = subprocess.run([*CLI, "watch", str(clean), "--once", "--interval", "0.2", "--settle",
                         "0.3"], capture_output=True, text=True, timeout=120, check=False)
    assert ok.returncode == 0, ok.stderr


# --- progress -------------------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_when_not_a_terminal() -> None:
    clock, stream = Clock(), io.StringIO()
    report = ProgressReport(stream=stream, terminal=False, clock=clock, every_s=5)
    report("probing", None)
    clock.now += 0.5
    report("transcoding", 0.0)
    assert stream.getvalue() == "", "nothing in the first second"
    for step in range(1, 21):  # 20 s of transcoding, linear
        clock.now += 1
        report("transcoding", step / 20)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "vid2dcm: transcoding: 5 %, about 19 s left"
    assert len(lines) == 4, lines  # at 1, 6, 11, 16 s: one line per 5 seconds
    assert lines[-1] == "vid2dcm: transcoding: 80 %, about 4 s left"
    report("writing clip.dcm", None)
    clock.now += 5
    report("writing clip.dcm", None)
    assert stream.getvalue().splitlines()[-1].startswith("vid2dcm: writing clip.dcm (")


def test_progress_quiet_prints_nothing() -> None:
    clock, stream = Clock(), io.StringIO()
    report = ProgressReport(quiet=True, stream=stream, terminal=False, clock=clock, every_s=0)
    for step in range(10):
        clock.now += 2
        report("transcoding", step / 10)
    assert stream.getvalue() == ""


def test_convert_prints_progress_into_a_log(tmp_path: Path) -> None:
    """A real transcode with stderr going to a pipe: plain lines with percent and time left."""
    source = synthesize(tmp_path / "b.mp4", ClipSpec(width=320, height=240, frames=120,
                                                     noise=True,
                                                     options={"preset": "superfast",
                                                              "profile": "baseline"}))
    env = {**os.environ, "VID2DCM_PROGRESS_SECONDS": "0.2"}
    started = time.monotonic()
    proc = subprocess.run([*CLI, "convert", str(source), "-o", str(tmp_path / "b.dcm"),
                           "--speed", "slow"], capture_output=True, text=True, timeout=300,
                          check=False, env=env)
    assert proc.returncode == 0, proc.stderr
    if time.monotonic() - started < 2.5:
        pytest.skip("the transcode finished too fast to show progress on this machine")
    lines = proc.stderr.splitlines()
    assert any(re.fullmatch(r"vid2dcm: transcoding: \d+ %(, about [\dmin s]+ left)?", line)
               for line in lines), lines
    quiet = subprocess.run([*CLI, "convert", str(source), "-o", str(tmp_path / "q.dcm"),
                            "--speed", "slow", "--quiet"], capture_output=True, text=True,
                           timeout=300, check=False, env=env)
    assert quiet.returncode == 0 and quiet.stderr == ""


@pytest.mark.integration
def test_serve_https_on_its_own_socket(tmp_path: Path) -> None:
    """serve binds the port itself (so 'in use' is found first) and hands the socket to
    uvicorn; HTTPS must still work on it."""
    import ssl

    from pki import make_ca, make_leaf

    ca_key, ca_cert = make_ca(tmp_path, "ca")
    key, cert = make_leaf(tmp_path, "127.0.0.1", ca_key, ca_cert)
    port = free_port()
    proc = subprocess.Popen([*CLI, "serve", "--data", str(tmp_path / "gw"), "--port", str(port),
                             "--ssl-certfile", str(cert), "--ssl-keyfile", str(key)],
                            env=_env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        wait_listening(port, proc, seconds=30)
        context = ssl.create_default_context(cafile=str(ca_cert))
        with urllib.request.urlopen(f"https://127.0.0.1:{port}/health", context=context,
                                    timeout=10) as response:
            assert response.status == 200
    finally:
        stop(proc)
    assert proc.stderr is not None
    assert f"serving on https://127.0.0.1:{port}/" in proc.stderr.read().decode()


@pytest.mark.skipif(shutil.which("script") is None, reason="needs script(1) for a terminal")
def test_convert_shows_a_bar_with_percent_and_time_left_on_a_terminal(tmp_path: Path) -> None:
    source = synthesize(tmp_path / "t.mp4", ClipSpec(width=320, height=240, frames=150,
                                                     noise=True,
                                                     options={"preset": "superfast",
                                                              "profile": "baseline"}))
    command = (f"{sys.executable} -m vid2dcm convert {source} -o {tmp_path / 't.dcm'} "
               "--speed slow")
    started = time.monotonic()
    proc = subprocess.run(["script", "-qec", command, "/dev/null"], capture_output=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout
    if time.monotonic() - started < 3:
        pytest.skip("the transcode finished too fast to show a bar on this machine")
    screen = re.sub(rb"\x1b\[[0-9;]*[A-Za-z]", b"", proc.stdout).decode(errors="replace")
    assert re.search(r"transcoding .*\d+%", screen), screen
    assert re.search(r"\d+ s left", screen), screen
    assert int(read_back(tmp_path / "t.dcm", tmp_path).dataset.NumberOfFrames) == 150
