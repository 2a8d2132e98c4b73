"""Hospital sign-on: OpenID Connect authorization code flow with PKCE (RFC 7636, S256) as a
confidential client, through authlib. The ID token's signature (the provider's JWKS), issuer,
audience, expiry and nonce are checked; the role comes from a configured claim and must be one
of the gateway's roles, otherwise sign-on is refused. A signed-on person gets the same session
cookie as a local account (their account row has no usable password)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from vid2dcm.apps.gateway.auth import ROLE_SCOPES, ROLES, USER_NAME, Principal
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store

NO_PASSWORD = "!oidc"
"""The password hash of a signed-on account: never verifies, so only the provider signs in."""
PENDING_S = 600
"""A sign-on must come back from the provider within ten minutes."""


class SignOnError(Exception):
    """The provider's answer was not acceptable; the message is for the person signing in."""


@dataclass(frozen=True)
class Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    issuer: str


def _discover(settings: ServiceSettings) -> Provider:
    import httpx

    assert settings.oidc_issuer is not None
    url = settings.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        meta = httpx.get(url, timeout=10).raise_for_status().json()
    except httpx.HTTPError as exc:
        raise SignOnError("the hospital sign-on service does not answer") from exc
    if meta.get("issuer") != settings.oidc_issuer.rstrip("/"):
        raise SignOnError("the sign-on service names another issuer")
    return Provider(meta["authorization_endpoint"], meta["token_endpoint"], meta["jwks_uri"],
                    meta["issuer"])


def _client(settings: ServiceSettings) -> Any:
    from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(settings.oidc_client_id, settings.oidc_client_secret,
                        scope="openid profile", redirect_uri=settings.oidc_redirect_uri,
                        code_challenge_method="S256", timeout=10)


def start(settings: ServiceSettings, store: Store) -> str:
    """The provider URL to send the browser to; state, nonce and PKCE verifier are kept in
    the store until the browser comes back."""
    provider = _discover(settings)
    state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    store.add_sign_on(state, nonce, verifier)
    url, _ = _client(settings).create_authorization_url(
        provider.authorization_endpoint, state=state, nonce=nonce, code_verifier=verifier)
    return str(url)


def finish(settings: ServiceSettings, store: Store, state: str, code: str) -> Principal:
    """Exchange the code (with the PKCE verifier), check the ID token, map the role claim."""
    from authlib.jose import JsonWebKey, jwt
    from authlib.jose.errors import JoseError

    pending = store.take_sign_on(state, PENDING_S)
    if pending is None:
        raise SignOnError("this sign-on link has expired; start again")
    nonce, verifier = pending
    provider = _discover(settings)
    client = _client(settings)
    try:
        token = client.fetch_token(provider.token_endpoint, code=code, code_verifier=verifier,
                                   grant_type="authorization_code")
        keys = JsonWebKey.import_key_set(client.get(provider.jwks_uri).raise_for_status().json())
        claims = jwt.decode(token["id_token"], keys, claims_options={
            "iss": {"essential": True, "value": provider.issuer},
            "aud": {"essential": True, "value": settings.oidc_client_id},
            "nonce": {"essential": True, "value": nonce},
            "exp": {"essential": True}})
        claims.validate(leeway=30)
    except (JoseError, KeyError, ValueError) as exc:
        raise SignOnError("the sign-on answer did not check out; start again") from exc
    except Exception as exc:  # httpx / authlib transport errors
        raise SignOnError("the hospital sign-on service did not complete the sign-on") from exc
    import re

    name = str(claims.get("preferred_username") or claims["sub"])
    role = str(claims.get(settings.oidc_role_claim) or "")
    if role not in ROLES:
        raise SignOnError("your hospital account has no role for this gateway; ask IT")
    if not re.match(USER_NAME, name):
        raise SignOnError("your hospital user name cannot be used here; ask IT")
    existing = store.user(name)
    if existing is not None and existing.password_hash != NO_PASSWORD:
        raise SignOnError("a local account has this name; ask IT")
    if existing is not None and existing.disabled:
        raise SignOnError("your account is disabled here; ask IT")
    store.put_user(name, role, NO_PASSWORD)
    return Principal(name, role, ROLE_SCOPES[role], "session")
