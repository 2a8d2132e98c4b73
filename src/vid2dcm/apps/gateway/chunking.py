"""A long transcode job spread over the worker pool: split, chunk tasks, join.

The first run of a job (`execute`) asks `split_job` whether its video is a long transcode; if
so it leaves the job running and queues one chunk task per chunk on the same queue, which any
worker process on any machine takes. Each chunk task encodes its chunk into the job's chunk
folder in the shared data folder (data_dir/chunks/<job>/), then marks it done; the task that
finds every chunk done and wins the O_EXCL "joining" marker queues the join, which is the job's
normal run with the chunks already encoded (producing/chunks.py joins them bit-exactly; the
result is re-planned, written and delivered like any job). A chunk that fails twice fails the
job with a clear reason; the other chunks then stop early.

Queue-free like jobs.py: queue.py wires these functions to huey tasks.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vid2dcm.apps.gateway.models import FailureKind
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import open_store
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.planning.chunks import ChunkPlan
from vid2dcm.planning.video_target import VideoTarget

JOINING = "joining"
"""Created with O_EXCL by the chunk task that queues the join: exactly one does."""

ATTEMPTS = 2
"""A chunk is encoded at most this often (one retry) before it fails its job."""


@dataclass(frozen=True)
class ChunkedJob:
    info: MediaInfo
    target: VideoTarget
    plan: ChunkPlan


def chunk_folder(settings: ServiceSettings, job_id: str) -> Path:
    return settings.data_dir / "chunks" / job_id


def chunk_files(settings: ServiceSettings, job_id: str, count: int) -> list[Path]:
    folder = chunk_folder(settings, job_id)
    return [folder / f"chunk-{n:04d}.nut" for n in range(count)]


def chunked_job(settings: ServiceSettings, source: Path, sop: str, transcode: str
                ) -> ChunkedJob | None:
    """The job's chunks when its video is a transcode long enough to spread (the same answer
    on every worker: the plan is a pure function of the probed file and the settings)."""
    if settings.chunk_count < 2 or not source.is_file():
        return None
    from vid2dcm.planning.chunks import chunk_transcode
    from vid2dcm.planning.plan import Request, plan_conversion
    from vid2dcm.probing.probe import probe

    try:
        info = probe(source)
        plan = plan_conversion(info, Request(sop=sop, transcode=transcode))  # type: ignore[arg-type]
    except (Vid2DcmError, ValueError):
        return None  # the job's normal run reports the problem
    target = plan.video_target
    if (target is None or not plan.needs_transcode or plan.frame_syntax is not None
            or info.video.timing.duration_s < settings.chunk_threshold_s):
        return None
    chunks = chunk_transcode(info.video, target, settings.chunk_count, settings.chunk_min_s)
    return ChunkedJob(info, target, chunks) if chunks.parallel else None


def split_job(settings: ServiceSettings, job_id: str, source: Path, sop: str, transcode: str,
              enqueue_chunk: Callable[[str, int], None]) -> bool:
    """Queue the chunk tasks of a long transcode; False (nothing queued) when the job runs in
    one piece."""
    job = chunked_job(settings, source, sop, transcode)
    if job is None:
        return False
    folder = chunk_folder(settings, job_id)
    # a job split before (its worker restarted and the job was re-queued) keeps the chunks
    # already done: chunk tasks are idempotent and the O_EXCL marker lets only one join run
    folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    (folder / "count").write_text(str(len(job.plan.chunks)))
    for n in range(len(job.plan.chunks)):
        enqueue_chunk(job_id, n)
    return True


def encode_job_chunk(settings: ServiceSettings, job_id: str, index: int,
                     enqueue_join: Callable[[str], None],
                     failure_kind: Callable[[BaseException], FailureKind]) -> None:
    """One chunk task: encode chunk `index` of the job (retried once), mark it done, and queue
    the join when it is the last one. failure_kind is jobs.failure_kind (passed in: jobs.py
    imports this module)."""
    from vid2dcm.producing.chunks import encode_chunk, resolve_cuts

    store = open_store(settings)
    job = store.job(job_id)
    folder = chunk_folder(settings, job_id)
    if job is None or job.status != "running" or not (folder / "count").is_file():
        return  # failed or finished meanwhile: nothing to do
    count = int((folder / "count").read_text())
    upload = store.upload(job.request.upload_id)
    error: BaseException | None = None
    for _ in range(ATTEMPTS):
        try:
            planned = chunked_job(settings, upload.path, job.request.sop,
                                  job.request.transcode) if upload else None
            if planned is None or len(planned.plan.chunks) != count:
                raise Vid2DcmError("the video or the chunk settings changed since the job "
                                   "was split")
            cut = resolve_cuts(planned.info, planned.plan)[index]
            encode_chunk(planned.info, planned.target, cut,
                         chunk_files(settings, job_id, count)[index])
            error = None
            break
        except Exception as exc:  # retried once, then the job fails with the reason
            error = exc
    if error is not None:
        reason = str(error) if isinstance(error, Vid2DcmError) else type(error).__name__
        store.finish(job_id, None, f"chunk {index + 1} of {count} could not be transcoded: "
                                   f"{reason}", failure_kind(error))
        shutil.rmtree(folder, ignore_errors=True)
        return
    (folder / f"done-{index:04d}").write_text(f"{socket.gethostname()}:{os.getpid()}")
    if all((folder / f"done-{n:04d}").is_file() for n in range(count)):
        try:
            os.close(os.open(folder / JOINING, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            return  # another chunk task finished at the same moment and queued the join
        enqueue_join(job_id)


def joined_chunks(settings: ServiceSettings, job_id: str) -> tuple[list[Path], list[str]] | None:
    """The encoded chunk files of a job whose chunks are all done, and the workers that
    encoded them; None for a job that was not split."""
    folder = chunk_folder(settings, job_id)
    if not (folder / JOINING).is_file():
        return None
    count = int((folder / "count").read_text())
    workers = [(folder / f"done-{n:04d}").read_text() for n in range(count)]
    return chunk_files(settings, job_id, count), workers


def forget_chunks(settings: ServiceSettings, job_id: str) -> None:
    shutil.rmtree(chunk_folder(settings, job_id), ignore_errors=True)
