"""The gateway's REST API (FastAPI). Every endpoint but /health needs a bearer token; tokens
are stored as SHA-256 hashes; roles are uploader and admin. No patient data is logged."""


import hashlib
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import (
    FileResponse,
    HTMLResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from pydantic import ValidationError
from starlette.background import BackgroundTask
from tuspyserver import create_tus_router

from vid2dcm.apps.gateway.export import export_job
from vid2dcm.apps.gateway.jobs import JobRequest, enqueue
from vid2dcm.apps.gateway.settings import ServiceSettings, TokenEntry, hash_token
from vid2dcm.apps.gateway.store import Store
from vid2dcm.core.dates import parse_day
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.reading.reader import VideoObject, open_video_object

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
JOB_ID = re.compile(r"^[0-9a-f]{32}$")
CHUNK = 1 << 20


def create_app(settings: ServiceSettings) -> FastAPI:
    settings.prepare()
    store = Store(settings.database)
    app = FastAPI(title="vid2dcm gateway", version="0.1")

    def caller(authorization: Annotated[str | None, Header()] = None) -> TokenEntry:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise HTTPException(401, "a bearer token is required",
                                headers={"WWW-Authenticate": "Bearer"})
        digest = hash_token(token)
        for entry in settings.tokens:
            if entry.sha256 == digest:
                return entry
        raise HTTPException(401, "unknown token", headers={"WWW-Authenticate": "Bearer"})

    def admin(who: Annotated[TokenEntry, Depends(caller)]) -> TokenEntry:
        if who.role != "admin":
            raise HTTPException(403, "this action needs the admin role")
        return who

    def tus_auth(authorization: Annotated[str | None, Header()] = None) -> None:
        caller(authorization)

    def tus_quota(_metadata: dict[str, str], upload: dict[str, Any]) -> None:
        size = upload.get("size")
        room = settings.quota_bytes - store.used_bytes()
        if size is not None and int(size) > room:
            raise HTTPException(413, f"upload of {size} bytes exceeds the free quota "
                                     f"({max(room, 0)} bytes)")

    def tus_complete(file_path: str, metadata: dict[str, str]) -> None:
        """A finished resumable upload becomes an upload a job can use (same id). A `sha256`
        metadata value, when the client sends one, is checked against the bytes received."""
        path = Path(file_path)
        name = SAFE_CHARS.sub("_", metadata.get("filename", "upload"))[:200] or "upload"
        problem = _checksum_problem(path, metadata.get("sha256"))
        store.add_upload(name, path, path.stat().st_size, upload_id=path.name, problem=problem)

    app.include_router(create_tus_router(
        prefix="files", files_dir=str(settings.data_dir / "tus"),
        max_size=settings.quota_bytes, auth=tus_auth, days_to_keep=7,
        pre_create_hook=tus_quota, on_upload_complete=tus_complete))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        """The staff page: plain HTML and JavaScript, no build step."""
        return (Path(__file__).parent / "web" / "index.html").read_text(encoding="utf-8")

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    def ready() -> dict[str, str]:
        """Ready when the job store answers and the data folder takes writes."""
        try:
            store.counts()
            probe = settings.data_dir / ".ready"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise HTTPException(503, f"not ready: {exc.strerror or exc}") from exc
        return {"status": "ready"}

    @app.get("/worklist")
    def worklist(_who: Annotated[TokenEntry, Depends(caller)], date: str | None = None,
                 modality: str | None = None) -> list[dict[str, Any]]:
        """Scheduled procedures from the configured worklist (date: today or YYYYMMDD)."""
        from vid2dcm.delivery.destinations import parse_destination
        from vid2dcm.delivery.transports.worklist import query

        if not settings.worklist:
            raise HTTPException(404, "no worklist is configured")
        try:
            day = parse_day(date) if date else None
        except ValueError as exc:
            raise HTTPException(400, "date must be today or YYYYMMDD") from exc
        if modality is not None and not re.fullmatch(r"[A-Z]{2,3}", modality):
            raise HTTPException(400, "modality must be a DICOM modality code such as ES")
        try:
            entries = query(parse_destination(settings.worklist, settings.destinations_file),
                            day, modality)
        except Vid2DcmError as exc:
            raise HTTPException(502, f"worklist unavailable: {exc}") from exc
        return [asdict(e) for e in entries]

    @app.get("/metrics", response_class=PlainTextResponse)
    def metrics(_who: Annotated[TokenEntry, Depends(caller)]) -> str:
        """Prometheus text format: jobs by state, job durations, stored upload bytes."""
        lines = ["# TYPE vid2dcm_jobs gauge"]
        lines += [f'vid2dcm_jobs{{state="{state}"}} {n}' for state, n in store.counts().items()]
        durations = store.finished_durations()
        lines += ["# TYPE vid2dcm_job_seconds summary",
                  f"vid2dcm_job_seconds_count {len(durations)}",
                  f"vid2dcm_job_seconds_sum {sum(durations):.3f}",
                  "# TYPE vid2dcm_upload_bytes gauge",
                  f"vid2dcm_upload_bytes {store.used_bytes()}",
                  "# TYPE vid2dcm_quota_bytes gauge",
                  f"vid2dcm_quota_bytes {settings.quota_bytes}",
                  "# TYPE vid2dcm_queue_depth gauge",
                  f"vid2dcm_queue_depth {store.counts()['queued']}",
                  "# TYPE vid2dcm_failures gauge"]
        lines += [f'vid2dcm_failures{{reason="{reason}"}} {n}'
                  for reason, n in store.failure_reasons().items()]
        return "\n".join(lines) + "\n"

    @app.get("/audit")
    def audit(_who: Annotated[TokenEntry, Depends(admin)]) -> list[dict[str, Any]]:
        return store.audit_log()

    @app.put("/uploads/{name}", status_code=201)
    async def upload(name: str, request: Request,
                     who: Annotated[TokenEntry, Depends(caller)]) -> dict[str, Any]:
        if not SAFE_NAME.match(name) or ".." in name:
            raise HTTPException(400, "file name must be plain (letters, digits, . _ - space)")
        declared = request.headers.get("content-length")
        room = settings.quota_bytes - store.used_bytes()
        if declared is not None and int(declared) > room:
            raise HTTPException(413, f"upload of {declared} bytes exceeds the free quota "
                                     f"({max(room, 0)} bytes)")
        folder = settings.uploads / uuid.uuid4().hex
        folder.mkdir()
        target = folder / name
        size = 0
        try:
            with target.open("wb") as out:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > room:
                        raise HTTPException(413, "upload exceeds the free quota")
                    out.write(chunk)
        except BaseException:
            target.unlink(missing_ok=True)
            folder.rmdir()
            raise
        problem = _checksum_problem(target, request.headers.get("x-checksum-sha256"))
        if problem:
            target.unlink(missing_ok=True)
            folder.rmdir()
            raise HTTPException(400, problem)
        upload_id = store.add_upload(name, target, size)
        store.audit(who.name or who.role, "upload", upload=upload_id)
        return {"id": upload_id, "size": size}

    @app.post("/jobs", status_code=201)
    def create_job(body: dict[str, Any],
                   who: Annotated[TokenEntry, Depends(caller)]) -> dict[str, str]:
        try:
            request = JobRequest.model_validate(body)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise HTTPException(400, f"{where}: {first['msg']}") from exc
        if store.upload(request.upload_id) is None:
            raise HTTPException(404, "no such upload")
        problem = store.upload_problem(request.upload_id)
        if problem:
            raise HTTPException(409, f"the upload cannot be used: {problem}")
        job_id = store.add_job(request.upload_id,
                               request.model_dump(mode="json", exclude_unset=True))
        store.audit(who.name or who.role, "create job", job=job_id, upload=request.upload_id,
                    study=request.metadata.study_instance_uid)
        enqueue(job_id)
        return {"id": job_id}

    @app.get("/jobs")
    def list_jobs(_who: Annotated[TokenEntry, Depends(caller)]) -> list[dict[str, Any]]:
        return [_public(asdict(job)) for job in store.jobs()]

    @app.get("/jobs/{job_id}")
    def get_job(job_id: str, _who: Annotated[TokenEntry, Depends(caller)]) -> dict[str, Any]:
        job = store.job(_checked(job_id))
        if job is None:
            raise HTTPException(404, "no such job")
        return _public(asdict(job))

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str, who: Annotated[TokenEntry, Depends(admin)]) -> dict[str, str]:
        if not store.set_status(_checked(job_id), "cancelled", ("queued",)):
            raise HTTPException(409, "only a queued job can be cancelled")
        store.audit(who.name or who.role, "cancel job", job=job_id)
        return {"status": "cancelled"}

    @app.post("/jobs/{job_id}/retry")
    def retry(job_id: str, who: Annotated[TokenEntry, Depends(admin)]) -> dict[str, str]:
        if not store.set_status(_checked(job_id), "queued", ("failed", "cancelled")):
            raise HTTPException(409, "only a failed or cancelled job can be retried")
        store.audit(who.name or who.role, "retry job", job=job_id)
        enqueue(job_id)
        return {"status": "queued"}

    @app.get("/jobs/{job_id}/files/{index}")
    def download(job_id: str, index: int,
                 who: Annotated[TokenEntry, Depends(caller)]) -> FileResponse:
        path = _output(store, settings, job_id, index)
        store.audit(who.name or who.role, "download", job=job_id)
        return FileResponse(path, media_type="application/dicom", filename=path.name)

    @app.post("/jobs/{job_id}/export")
    def export(job_id: str, who: Annotated[TokenEntry, Depends(admin)],
               profile: str = "basic") -> FileResponse:
        """The job's instances de-identified (PS3.15 Annex E, vid2dcm deidentify) as a ZIP of
        DICOM files and their JSON reports."""
        archive, folder = export_job(settings, store, _checked(job_id), profile)
        store.audit(who.name or who.role, f"export de-identified ({profile})", job=job_id)
        return FileResponse(archive, media_type="application/zip",
                            filename=f"deidentified-{job_id}.zip",
                            background=BackgroundTask(shutil.rmtree, folder,
                                                      ignore_errors=True))

    @app.get("/jobs/{job_id}/files/{index}/video")
    def preview(job_id: str, index: int, _who: Annotated[TokenEntry, Depends(caller)],
                range_header: Annotated[str | None, Header(alias="range")] = None) -> Response:
        """The embedded video of a stored instance, with HTTP Range support, so a browser can
        play and seek it without downloading the whole file first."""
        path = _output(store, settings, job_id, index)
        video = open_video_object(path)
        length = video.bitstream_length
        start, end = _byte_range(range_header, length)
        media = "video/mp4" if _is_mp4(video) else "video/mp2t"

        def body() -> Iterator[bytes]:
            with video.open_bitstream() as raw:
                raw.seek(start)
                left = end - start + 1
                while left > 0:
                    chunk = raw.read(min(CHUNK, left))
                    if not chunk:
                        return
                    left -= len(chunk)
                    yield chunk

        headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1)}
        if range_header:
            headers["Content-Range"] = f"bytes {start}-{end}/{length}"
        return StreamingResponse(body(), status_code=206 if range_header else 200,
                                 media_type=media, headers=headers)

    return app


def _output(store: Store, settings: ServiceSettings, job_id: str, index: int) -> Path:
    job = store.job(_checked(job_id))
    if job is None or job.result is None:
        raise HTTPException(404, "no files for this job")
    files = job.result.get("files", [])
    if not 0 <= index < len(files):
        raise HTTPException(404, "no such file")
    return Path(settings.outputs / job.id / files[index]["name"])


def _byte_range(header: str | None, length: int) -> tuple[int, int]:
    if not header:
        return 0, length - 1
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not match or not (match[1] or match[2]):
        raise HTTPException(416, "unsupported Range", headers={"Content-Range":
                                                              f"bytes */{length}"})
    if match[1]:
        start = int(match[1])
        end = min(int(match[2]), length - 1) if match[2] else length - 1
    else:
        start, end = max(0, length - int(match[2])), length - 1
    if start > end or start >= length:
        raise HTTPException(416, "Range not satisfiable",
                            headers={"Content-Range": f"bytes */{length}"})
    return start, end


def _is_mp4(video: VideoObject) -> bool:
    with video.open_bitstream() as raw:
        return raw.read(8)[4:8] == b"ftyp"


def _checksum_problem(path: Path, expected: str | None) -> str | None:
    if not expected:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected.strip().lower():
        return "checksum mismatch: the file arrived damaged; upload it again"
    return None


def _checked(job_id: str) -> str:
    if not JOB_ID.match(job_id):
        raise HTTPException(400, "malformed job id")
    return job_id


def _public(job: dict[str, Any]) -> dict[str, Any]:
    """The job as clients see it: the request's patient fields are not echoed back."""
    request = dict(job.pop("request"))
    request.pop("metadata", None)
    return {**job, "request": request}
