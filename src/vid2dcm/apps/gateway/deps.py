"""FastAPI dependencies: the settings, store and queue of the app being served (set by
`create_app`, overridable in tests with `app.dependency_overrides`), who is calling, what they
may do, and the audit trail bound to them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Cookie, Depends, Header, HTTPException, Request

from vid2dcm.apps.gateway.audit import record
from vid2dcm.apps.gateway.auth import (
    SESSION_COOKIE,
    Principal,
    session_principal,
    token_principal,
)
from vid2dcm.apps.gateway.queue import JobQueue
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Job, Store


def get_settings(request: Request) -> ServiceSettings:
    settings: ServiceSettings = request.app.state.settings
    return settings


def get_store(request: Request) -> Store:
    store: Store = request.app.state.store
    return store


def get_queue(request: Request) -> JobQueue:
    queue: JobQueue = request.app.state.queue
    return queue


Settings = Annotated[ServiceSettings, Depends(get_settings)]
StoreDep = Annotated[Store, Depends(get_store)]
QueueDep = Annotated[JobQueue, Depends(get_queue)]


def caller(store: StoreDep, settings: Settings,
           authorization: Annotated[str | None, Header()] = None,
           session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None) -> Principal:
    """A bearer token (machines) or the session cookie (people); 401 otherwise."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        found = (token_principal(store, settings, token.strip())
                 if scheme.lower() == "bearer" and token.strip() else None)
        if found is None:
            raise HTTPException(401, "unknown or expired token",
                                headers={"WWW-Authenticate": "Bearer"})
        return found
    if session:
        found = session_principal(store, settings, session)
        if found is not None:
            return found
        raise HTTPException(401, "your session has ended: sign in again",
                            headers={"WWW-Authenticate": "Bearer"})
    raise HTTPException(401, "sign in, or send a bearer token",
                        headers={"WWW-Authenticate": "Bearer"})


Caller = Annotated[Principal, Depends(caller)]


def needs(scope: str) -> Callable[[Principal], Principal]:
    """A dependency: the caller, if their role (and token) allows `scope`; 403 otherwise."""
    def check(who: Caller) -> Principal:
        if scope not in who.scopes:
            raise HTTPException(403, f"this needs the {scope} permission "
                                     f"(you are signed in as {who.role})")
        return who
    return check


Uploader = Annotated[Principal, Depends(needs("upload"))]
Reader = Annotated[Principal, Depends(needs("jobs"))]
Reviewer = Annotated[Principal, Depends(needs("review"))]
Admin = Annotated[Principal, Depends(needs("admin"))]


@dataclass(frozen=True)
class Audit:
    """The audit trail, already knowing who is acting and from where."""

    store: Store
    settings: ServiceSettings
    who: Principal
    client: str

    def __call__(self, action: str, job: str | None = None, upload: str | None = None,
                 study: str | None = None) -> None:
        record(self.store, self.settings, self.who.name, action, job=job, upload=upload,
               study=study, role=self.who.role, client=self.client)


def client_address(request: Request) -> str:
    return request.client.host if request.client else ""


def audit_for(store: StoreDep, settings: Settings, who: Caller, request: Request) -> Audit:
    return Audit(store, settings, who, client_address(request))


AuditDep = Annotated[Audit, Depends(audit_for)]


def exporter(job_id: str, who: Caller, audit: AuditDep) -> Principal:
    """De-identified exports (issue 16): reviewers and admins (the review permission); anyone
    else gets 403, and the refusal is audited with the job they tried."""
    import re

    if "review" not in who.scopes:
        audit("export refused", job=job_id if re.fullmatch(r"[0-9a-f]{32}", job_id) else None)
        raise HTTPException(403, f"exports need the review permission "
                                 f"(you are signed in as {who.role})")
    return who


Exporter = Annotated[Principal, Depends(exporter)]


def visible_job(store: Store, who: Principal, job_id: str) -> Job:
    """The job if this caller may see it. Another uploader's job is 404, not 403: its
    existence is not theirs to know."""
    import re

    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        raise HTTPException(400, "malformed job id")
    job = store.job(job_id)
    if job is None or not who.sees(job.owner, job.ward):
        raise HTTPException(404, "no such job")
    return job
