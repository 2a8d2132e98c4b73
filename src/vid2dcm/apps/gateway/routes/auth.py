"""Signing in and out (people, session cookie) and machine tokens (admins issue and revoke
them through the API; no restart)."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Cookie, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.apps.gateway import oidc
from vid2dcm.apps.gateway.audit import record
from vid2dcm.apps.gateway.auth import (
    SESSION_COOKIE,
    check_password,
    issue_token,
    open_session,
)
from vid2dcm.apps.gateway.deps import Admin, AuditDep, Caller, Settings, StoreDep, client_address
from vid2dcm.apps.gateway.models import StatusAnswer
from vid2dcm.core.errors import UsageError

router = APIRouter(prefix="/auth", tags=["auth"])


class Login(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Me(BaseModel):
    name: str
    role: str
    scopes: list[str]


class TokenOrder(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=64)
    role: str = "uploader"
    scopes: tuple[str, ...] = ()
    """Narrower than the role's, e.g. ["upload"] for a recorder; empty: all of the role's."""
    expires_in_s: int | None = Field(default=None, ge=60)


class IssuedToken(BaseModel):
    id: str
    token: str
    """Shown once; only its hash is kept."""


class TokenInfo(BaseModel):
    id: str
    name: str
    role: str
    scopes: list[str]
    expires: float | None
    revoked: bool


@router.post("/login", response_model=Me)
def login(body: Login, request: Request, response: Response, store: StoreDep,
          settings: Settings) -> Me:
    """Name and password -> an HttpOnly, SameSite=Strict session cookie (Secure under TLS).
    Too many failures for one name or one client address within a minute -> 429."""
    client = client_address(request)
    failures, first = store.recent_failures(body.username, client, 60)
    if failures >= settings.login_failures_per_minute:
        wait = max(1, math.ceil(first + 60 - time.time()))
        record(store, settings, body.username,
               "sign-in refused (too many failures)", client=client)
        raise HTTPException(429, f"too many failed sign-ins: try again in {wait} s",
                            headers={"Retry-After": str(wait)})
    who = check_password(store, body.username, body.password)
    if who is None:
        store.login_failed(body.username, client)
        record(store, settings, body.username, "sign-in failed", client=client)
        raise HTTPException(401, "wrong name or password")
    response.set_cookie(SESSION_COOKIE, open_session(store, who.name), httponly=True,
                        samesite="strict", secure=settings.tls, path="/")
    record(store, settings, who.name, "sign-in", role=who.role, client=client)
    return Me(name=who.name, role=who.role, scopes=sorted(who.scopes))


class AuthConfig(BaseModel):
    sign_on: bool
    """Hospital sign-on (OpenID Connect) is configured: the page offers its button."""


@router.get("/config", response_model=AuthConfig)
def config(settings: Settings) -> AuthConfig:
    return AuthConfig(sign_on=bool(settings.oidc_issuer))


@router.get("/oidc/login", include_in_schema=False)
def oidc_login(settings: Settings, store: StoreDep) -> RedirectResponse:
    """To the hospital's sign-on page (authorization code flow with PKCE)."""
    if not settings.oidc_issuer:
        raise HTTPException(404, "hospital sign-on is not configured")
    try:
        return RedirectResponse(oidc.start(settings, store), status_code=302)
    except oidc.SignOnError as exc:
        return _back_to_page(str(exc))


@router.get("/oidc/callback", include_in_schema=False)
def oidc_callback(request: Request, settings: Settings, store: StoreDep,
                  state: str = "", code: str = "", error: str = "") -> RedirectResponse:
    """Back from the provider: check everything, open a session, return to the page."""
    client = client_address(request)
    if not settings.oidc_issuer:
        raise HTTPException(404, "hospital sign-on is not configured")
    try:
        if error or not code or not state:
            raise oidc.SignOnError("the hospital sign-on was cancelled or refused")
        who = oidc.finish(settings, store, state, code)
    except oidc.SignOnError as exc:
        record(store, settings, "(hospital sign-on)", "sign-in failed",
               client=client)
        return _back_to_page(str(exc))
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, open_session(store, who.name), httponly=True,
                        samesite="strict", secure=settings.tls, path="/")
    record(store, settings, who.name, "sign-in", role=who.role, client=client)
    return response


def _back_to_page(reason: str) -> RedirectResponse:
    from urllib.parse import urlencode

    return RedirectResponse("/?" + urlencode({"signon": reason}), status_code=303)


@router.post("/logout", response_model=StatusAnswer)
def logout(who: Caller, response: Response, store: StoreDep, audit: AuditDep,
           session: Annotated[str | None, Cookie(alias=SESSION_COOKIE)] = None
           ) -> StatusAnswer:
    from vid2dcm.apps.gateway.settings import hash_token

    if session:
        store.end_session(hash_token(session))
    response.delete_cookie(SESSION_COOKIE, path="/")
    audit("sign-out")
    return StatusAnswer(status="signed out")


@router.get("/me", response_model=Me)
def me(who: Caller) -> Me:
    return Me(name=who.name, role=who.role, scopes=sorted(who.scopes))


@router.post("/tokens", status_code=201, response_model=IssuedToken)
def new_token(body: TokenOrder, _who: Admin, store: StoreDep, audit: AuditDep) -> IssuedToken:
    try:
        token_id, value = issue_token(store, body.name, body.role, body.scopes,
                                      body.expires_in_s)
    except UsageError as exc:
        raise HTTPException(422, str(exc)) from exc
    audit("issue token")
    return IssuedToken(id=token_id, token=value)


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(_who: Admin, store: StoreDep) -> list[TokenInfo]:
    return [TokenInfo(id=t.id, name=t.name, role=t.role, scopes=list(t.scopes),
                      expires=t.expires, revoked=t.revoked) for t in store.tokens()]


@router.delete("/tokens/{token_id}", response_model=StatusAnswer)
def revoke(token_id: str, _who: Admin, store: StoreDep, audit: AuditDep) -> StatusAnswer:
    if not store.revoke_token(token_id):
        raise HTTPException(404, "no such token")
    audit("revoke token")
    return StatusAnswer(status="revoked")
