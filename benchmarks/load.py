"""Load test (issue 17): N uploads and jobs sent by C concurrent clients to one gateway server and
two worker processes, on loopback only, bounded in size and time.

Reports, per job store: jobs per minute, the API's p50/p99 latency (GET /jobs and GET
/jobs/{id}, sampled every 50 ms while the workers transcode), and the two invariants a shared
store must keep: no job lost (every job finished `done`) and none duplicated (every job ran once:
`attempts == 1`, and exactly one output instance per job in the shared data folder).

    .venv/bin/python benchmarks/load.py [--jobs 12] [--clients 4] [--workers 2]
                                        [--store sqlite|postgresql|both]

`postgresql` starts a throw-away PostgreSQL (Debian `postgresql`, tests/postgres.py) on a free
loopback port and points the gateway and workers at it with VID2DCM_DATABASE_URL; the queue
stays huey on SQLite in the shared data folder (Redis is the scaled-out queue, measured apart).
Each job is a real transcode (VP9 WebM -> H.264: what a phone's browser upload needs), so the
latency figures are taken while both cores encode.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from vid2dcm.apps.gateway.settings import hash_token
from vid2dcm.producing.synth import ClipSpec, synthesize

TOKEN = "load-token"
ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class LoadResult:
    store: str
    jobs: int
    clients: int
    workers: int
    seconds: float
    jobs_per_min: float
    p50_ms: float
    p99_ms: float
    samples: int
    lost: int
    duplicated: int
    states: tuple[str, ...]


def call(url: str, method: str = "GET", body: bytes | None = None, data: object = None
         ) -> object:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    if data is not None:
        body = json.dumps(data).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=120) as r:
        return json.loads(r.read())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def postgres_url(folder: Path) -> Iterator[str]:
    sys.path.insert(0, str(ROOT / "tests"))
    from postgres import running_postgres  # type: ignore[import-not-found]

    with running_postgres() as server:  # its own 0700 folder, owned by the server's user
        yield str(server.new_database())


@contextmanager
def gateway(folder: Path, workers: int, database_url: str | None) -> Iterator[str]:
    port = free_port()
    data = folder / "data"
    data.mkdir()
    (data / "service.toml").write_text(
        f'[service]\nport = {port}\ntokens = [{{ sha256 = "{hash_token(TOKEN)}", '
        'role = "admin" }]\n')
    env = dict(os.environ)
    if database_url:
        env["VID2DCM_DATABASE_URL"] = database_url
    cli = [sys.executable, "-m", "vid2dcm.apps.cli"]
    procs = [subprocess.Popen([*cli, "serve", "--data", str(data)], env=env)]
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(url + "/health", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        procs += [subprocess.Popen([*cli, "worker", "--data", str(data), "--workers", "1"],
                                   env=env) for _ in range(workers)]
        yield url
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def one_job(url: str, payload: bytes, n: int) -> str:
    upload = call(f"{url}/uploads/load{n}.webm", "PUT", payload)
    assert isinstance(upload, dict)
    metadata = {"patient_name": f"LOAD^TEST{n}", "patient_id": f"LOAD-{n:04d}"}
    job = call(f"{url}/jobs", "POST", data={"upload_id": upload["id"], "metadata": metadata})
    assert isinstance(job, dict)
    return str(job["id"])


def run(store: str, folder: Path, clip: Path, jobs: int, clients: int, workers: int,
        database_url: str | None) -> LoadResult:
    payload = clip.read_bytes()
    latencies: list[float] = []
    done = threading.Event()
    with gateway(folder, workers, database_url) as url:
        ids: list[str] = []

        def sample() -> None:
            while not done.is_set():
                for path in ["/jobs", *(f"/jobs/{j}" for j in ids[-1:])]:
                    started = time.perf_counter()
                    call(url + path)
                    latencies.append((time.perf_counter() - started) * 1000)
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        start = time.perf_counter()
        sampler.start()
        with ThreadPoolExecutor(clients) as pool:
            ids.extend(pool.map(lambda n: one_job(url, payload, n), range(jobs)))
        views: list[dict[str, object]] = []
        deadline = time.monotonic() + 60 * jobs
        while time.monotonic() < deadline:
            views = [v for j in ids if isinstance(v := call(f"{url}/jobs/{j}"), dict)]
            if all(v["status"] in ("done", "failed", "held", "cancelled") for v in views):
                break
            time.sleep(0.25)
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    outputs = folder / "data" / "outputs"
    per_job = {j: len(list((outputs / j).rglob("*.dcm"))) if (outputs / j).is_dir() else 0
               for j in ids}
    lost = sum(1 for v in views if v["status"] != "done")
    duplicated = sum(1 for v in views if v["attempts"] != 1) + sum(
        1 for count in per_job.values() if count > 1)
    ordered = sorted(latencies)
    return LoadResult(
        store=store, jobs=jobs, clients=clients, workers=workers, seconds=seconds,
        jobs_per_min=jobs / seconds * 60, p50_ms=statistics.median(ordered),
        p99_ms=ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        samples=len(ordered), lost=lost, duplicated=duplicated,
        states=tuple(sorted({str(v["status"]) for v in views})))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--store", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    stores = ("sqlite", "postgresql") if args.store == "both" else (args.store,)
    results: list[LoadResult] = []
    with tempfile.TemporaryDirectory(prefix="vid2dcm-load-") as tmp:
        clip = synthesize(Path(tmp) / "phone.webm", ClipSpec(
            codec="libvpx-vp9", width=640, height=360, rate=Fraction(30), frames=150,
            options={"deadline": "realtime", "cpu-used": "8"}))
        for store in stores:
            folder = Path(tmp) / store
            folder.mkdir()
            if store == "postgresql":
                with postgres_url(folder / "pg") as db_url:
                    results.append(run(store, folder, clip, args.jobs, args.clients,
                                       args.workers, db_url))
            else:
                results.append(run(store, folder, clip, args.jobs, args.clients,
                                   args.workers, None))
    print("| store | jobs | clients | workers | jobs/min | API p50 ms | API p99 ms | lost "
          "| duplicated |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.store} | {r.jobs} | {r.clients} | {r.workers} | {r.jobs_per_min:.1f} "
              f"| {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.lost} | {r.duplicated} |")
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in results], indent=2))
    if any(r.lost or r.duplicated for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
