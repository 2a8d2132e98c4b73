"""Uploads: a plain PUT (scripts, recorders) and resumable tus 1.0 (the staff page). Both are
audited, both count against the quota, and an upload belongs to whoever sent it."""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from tuspyserver import create_tus_router

from vid2dcm.apps.gateway.deps import AuditDep, StoreDep, Uploader, needs
from vid2dcm.apps.gateway.models import UploadCreated
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store

SAFE_CHARS = re.compile(r"[^A-Za-z0-9._ -]")
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,199}$")
CHUNK = 1 << 20

router = APIRouter(tags=["uploads"])


@router.put("/uploads/{name}", status_code=201, response_model=UploadCreated)
async def upload(name: str, request: Request, who: Uploader, store: StoreDep,
                 audit: AuditDep) -> UploadCreated:
    settings: ServiceSettings = request.app.state.settings
    if not SAFE_NAME.match(name) or ".." in name:
        raise HTTPException(400, "file name must be plain (letters, digits, . _ - space)")
    declared = request.headers.get("content-length")
    room = settings.quota_bytes - store.used_bytes()
    if declared is not None and int(declared) > room:
        raise HTTPException(413, f"upload of {declared} bytes exceeds the free quota "
                                 f"({max(room, 0)} bytes)")
    folder = settings.uploads / uuid.uuid4().hex
    folder.mkdir(mode=0o700)
    target = folder / ("upload" + stored_suffix(name))  # the name may hold a patient's
    size = 0
    try:
        with target.open("wb") as out:
            target.chmod(0o600)
            async for chunk in request.stream():
                size += len(chunk)
                if size > room:
                    raise HTTPException(413, "upload exceeds the free quota")
                out.write(chunk)
    except BaseException:
        target.unlink(missing_ok=True)
        folder.rmdir()
        raise
    problem = checksum_problem(target, request.headers.get("x-checksum-sha256"))
    if problem:
        target.unlink(missing_ok=True)
        folder.rmdir()
        raise HTTPException(400, problem)
    upload_id = store.add_upload(name, target, size, owner=who.name)
    audit("upload", upload=upload_id)
    return UploadCreated(id=upload_id, size=size)


def tus_router(settings: ServiceSettings, store: Store) -> APIRouter:
    """tus 1.0 at /files, with the caller checked on every request (upload scope), the quota
    checked before anything is written, and a finished upload recorded under its sender."""
    folder = settings.data_dir / "tus"
    folder.mkdir(mode=0o700, exist_ok=True)

    def pre_create_dep(audit: AuditDep) -> Callable[[dict[str, str], dict[str, Any]], None]:
        def check(_metadata: dict[str, str], upload: dict[str, Any]) -> None:
            size = upload.get("size")
            room = settings.quota_bytes - store.used_bytes()
            if size is not None and int(size) > room:
                raise HTTPException(413, f"upload of {size} bytes exceeds the free quota "
                                         f"({max(room, 0)} bytes)")
            audit("upload started (tus)")
        return check

    def complete_dep(audit: AuditDep) -> Callable[[str, dict[str, str]], None]:
        def complete(file_path: str, metadata: dict[str, str]) -> None:
            """A finished resumable upload becomes an upload a job can use (same id). A
            `sha256` metadata value, when the client sends one, is checked."""
            path = Path(file_path)
            path.chmod(0o600)
            name = SAFE_CHARS.sub("_", metadata.get("filename", "upload"))[:200] or "upload"
            problem = checksum_problem(path, metadata.get("sha256"))
            store.add_upload(name, path, path.stat().st_size, upload_id=path.name,
                             problem=problem, owner=audit.who.name)
            audit("upload (tus)", upload=path.name)
        return complete

    router: APIRouter = create_tus_router(
        prefix="files", files_dir=str(folder), max_size=settings.quota_bytes,
        auth=needs("upload"),  # type: ignore[arg-type]  # any FastAPI dependency will do
        days_to_keep=7, pre_create_dep=pre_create_dep, upload_complete_dep=complete_dep)
    return router


def stored_suffix(name: str) -> str:
    """The file's extension only (a name like doe_jane.mp4 names a patient); kept so tools
    that look at extensions still see what the file is."""
    suffix = Path(name).suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,8}", suffix) else ""


def checksum_problem(path: Path, expected: str | None) -> str | None:
    if not expected:
        return None
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    if digest.hexdigest() != expected.strip().lower():
        return "checksum mismatch: the file arrived damaged; upload it again"
    return None

