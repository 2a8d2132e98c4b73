"""Gateway throughput: upload and convert N copies of a 60 s 1080p30 H.264 + AAC clip (copy
path) through the REST API, one worker process per CPU, SQLite queue.

    .venv/bin/python benchmarks/gateway.py [--jobs 6]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from fractions import Fraction
from pathlib import Path

from vid2dcm.apps.gateway.settings import hash_token
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

TOKEN = "bench-token"


def call(url: str, method: str = "GET", body: bytes | None = None, data: object = None
         ) -> dict[str, object]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=600) as r:
        return dict(json.loads(r.read()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=6)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = synthesize(folder / "hd60.mp4", ClipSpec(
            width=1920, height=1080, rate=Fraction(30), frames=1800, audio=AudioSpec(),
            options={"preset": "superfast", "profile": "high"}, bit_rate=8_000_000))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        data = folder / "data"
        data.mkdir()
        (data / "service.toml").write_text(
            f'[service]\nport = {port}\ntokens = [{{ sha256 = "{hash_token(TOKEN)}", '
            'role = "admin" }]\n')
        cli = [sys.executable, "-m", "vid2dcm.apps.cli"]
        procs = [subprocess.Popen([*cli, "worker", "--data", str(data), "--workers",
                                   str(os.cpu_count() or 1)]),
                 subprocess.Popen([*cli, "serve", "--data", str(data)])]
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    urllib.request.urlopen(url + "/health", timeout=1)
                    break
                except OSError:
                    time.sleep(0.1)
            payload = clip.read_bytes()
            start = time.perf_counter()
            uploads = [call(f"{url}/uploads/hd{n}.mp4", "PUT", payload)["id"]
                       for n in range(args.jobs)]
            uploaded = time.perf_counter() - start
            jobs = [call(f"{url}/jobs", "POST", data={"upload_id": u})["id"] for u in uploads]
            while True:
                states = [call(f"{url}/jobs/{j}")["status"] for j in jobs]
                if all(s in ("done", "failed") for s in states):
                    break
                time.sleep(0.2)
            converted = time.perf_counter() - start - uploaded
            mb = len(payload) * args.jobs / 1e6
            print(f"{args.jobs} x {len(payload) / 1e6:.0f} MB: upload {mb / uploaded:.0f} MB/s "
                  f"({uploaded:.2f} s); conversion {args.jobs / converted * 60:.0f} jobs/min "
                  f"({converted:.2f} s); states {sorted(set(states))}")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
