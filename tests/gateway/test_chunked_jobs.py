"""A long transcode spread over the worker pool (issue 17): the job is split into chunk tasks
on the same huey queue, two real `vid2dcm worker` processes (SQLite queue) encode them, the
last chunk queues the join, and the joined video is written and read back like any job's. A
chunk that cannot be encoded (twice) fails the job with a plain reason; exactly one of two
chunk tasks finishing together queues the join."""

from __future__ import annotations

import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest
from test_service import ADMIN, Gateway, _wait_token

from dcmtk_peers import free_port, stop, wait_listening
from readback import read_back
from vid2dcm.apps.gateway.chunking import (
    JOINING,
    chunk_folder,
    encode_job_chunk,
    joined_chunks,
    split_job,
)
from vid2dcm.apps.gateway.jobs import execute, failure_kind
from vid2dcm.apps.gateway.models import JobRequest
from vid2dcm.apps.gateway.settings import ServiceSettings, hash_token
from vid2dcm.apps.gateway.store import open_store
from vid2dcm.core.metadata import Metadata
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

LONG = ClipSpec(codec="mpeg4", frames=150, rate=Fraction(25), audio=AudioSpec(),
                options={"g": "20", "bf": "2", "qscale": "3"})
"""6 s of MPEG-4 Part 2 (transcoded to H.264), a key frame every 0.8 s."""

CHUNKING = {"chunk_count": 2, "chunk_threshold_s": 3.0, "chunk_min_s": 1.5}
PATIENT = Metadata(patient_name="Chunk^Test", patient_id="CH1")


@pytest.mark.integration
def test_two_workers_transcode_one_job_in_chunks(tmp_path: Path) -> None:
    data = tmp_path / "gw"
    data.mkdir()
    port = free_port()
    (data / "service.toml").write_text(
        f'[service]\nport = {port}\nchunk_count = 2\nchunk_threshold_s = 3.0\n'
        f'chunk_min_s = 1.5\ntokens = [{{ sha256 = "{hash_token(ADMIN)}", role = "admin" }}]\n')
    cli = [sys.executable, "-m", "vid2dcm"]
    logs = [(data / f"worker{n}.log").open("wb") for n in range(2)]
    procs = [subprocess.Popen([*cli, "worker", "--data", str(data)], stdout=log, stderr=log,
                              start_new_session=True) for log in logs]
    try:
        server = subprocess.Popen([*cli, "serve", "--data", str(data)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        procs.append(server)
        wait_listening(port, server, seconds=30)
        gateway = Gateway(f"http://127.0.0.1:{port}", data)
        clip = synthesize(tmp_path / "long.mp4", LONG)
        _, upload = gateway.call("PUT", "/uploads/long.mp4", token=ADMIN, body=clip.read_bytes())
        _, created = gateway.call("POST", "/jobs", token=ADMIN, json_body={
            "upload_id": upload["id"], "metadata": PATIENT.model_dump(exclude_none=True)})
        job = _wait_token(gateway, created["id"], ADMIN, seconds=120)
        assert job["status"] == "done", (job, [p.read_text() for p in data.glob("*.log")])
        assert job["attempts"] == 1, "the join is the same run, not a second attempt"
        worker = job["result"]["worker"]
        assert "joined chunks encoded by" in worker, worker
        print(f"chunked job: {worker}")
        assert job["result"]["files"][0]["frames"] == 150
        out = data / "outputs" / created["id"] / job["result"]["files"][0]["name"]
        back = read_back(out, tmp_path)
        assert back.decoded_frames == 150
        assert not chunk_folder(ServiceSettings(data_dir=data), created["id"]).exists()
    finally:
        for proc in reversed(procs):
            stop(proc)
        for log in logs:
            log.close()


def _job(tmp_path: Path) -> tuple[ServiceSettings, str]:
    settings = ServiceSettings(data_dir=tmp_path / "data", **CHUNKING)  # type: ignore[arg-type]
    settings.prepare()
    clip = synthesize(settings.uploads / "long.mp4", LONG)
    store = open_store(settings)
    upload = store.add_upload("long.mp4", clip, clip.stat().st_size)
    job_id = store.add_job(JobRequest(upload_id=upload, metadata=PATIENT))
    return settings, job_id


def test_a_chunk_that_fails_fails_the_job(tmp_path: Path) -> None:
    settings, job_id = _job(tmp_path)
    queued: list[tuple[str, int]] = []
    execute(settings, job_id, split=lambda job, n: queued.append((job, n)))
    assert queued == [(job_id, 0), (job_id, 1)]
    store = open_store(settings)
    assert store.job(job_id).status == "running"  # type: ignore[union-attr]
    joins: list[str] = []
    encode_job_chunk(settings, job_id, 0, joins.append, failure_kind)
    assert joins == [] and joined_chunks(settings, job_id) is None
    (settings.uploads / "long.mp4").write_bytes(b"not a video any more")
    encode_job_chunk(settings, job_id, 1, joins.append, failure_kind)
    job = store.job(job_id)
    assert job is not None and job.status == "failed" and joins == []
    assert job.error is not None and job.error.startswith("chunk 2 of 2 could not be transcoded")
    assert not chunk_folder(settings, job_id).exists()


def test_exactly_one_chunk_task_queues_the_join(tmp_path: Path) -> None:
    settings, job_id = _job(tmp_path)
    assert split_job(settings, job_id, settings.uploads / "long.mp4", "photographic", "auto",
                     lambda job, n: None)
    open_store(settings).claim(job_id)
    joins: list[str] = []
    encode_job_chunk(settings, job_id, 0, joins.append, failure_kind)
    encode_job_chunk(settings, job_id, 1, joins.append, failure_kind)
    assert joins == [job_id]
    # a chunk task run again (a re-delivered queue message) finds the join already taken
    encode_job_chunk(settings, job_id, 1, joins.append, failure_kind)
    assert joins == [job_id] and (chunk_folder(settings, job_id) / JOINING).is_file()
    started = time.monotonic()
    execute(settings, job_id)
    job = open_store(settings).job(job_id)
    assert job is not None and job.status == "done", job
    assert job.result is not None and job.result.files[0].frames == 150
    assert job.attempts == 1
    print(f"join + write: {time.monotonic() - started:.1f} s")
