"""People and machines: local accounts (argon2 password hashes), signed-in sessions (a random
cookie value whose SHA-256 is kept, with idle and absolute expiry), and bearer tokens for
machines (scopes, expiry, revocable through the API without a restart).

Roles: an uploader creates jobs and sees only their own; a reviewer sees every job and assigns
patients to held ones; an admin also manages tokens, cancels and retries."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from vid2dcm.apps.gateway.settings import Role, ServiceSettings, hash_token
from vid2dcm.apps.gateway.store import Store, open_store
from vid2dcm.core.errors import UsageError

ROLES: tuple[Role, ...] = ("uploader", "reviewer", "admin")
Scope = Literal["upload", "jobs", "worklist", "metrics", "review", "admin"]
ROLE_SCOPES: dict[str, frozenset[str]] = {
    "uploader": frozenset({"upload", "jobs", "worklist", "metrics"}),
    "reviewer": frozenset({"upload", "jobs", "worklist", "metrics", "review"}),
    "admin": frozenset({"upload", "jobs", "worklist", "metrics", "review", "admin"}),
}
"""A token's scopes narrow its role's; they never widen them."""
SESSION_COOKIE = "vid2dcm_session"
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$"
_hasher = PasswordHasher()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a signed-in person or a machine token."""

    name: str
    role: str
    scopes: frozenset[str]
    via: Literal["session", "token"]
    ward: str = ""
    """An uploader also sees the jobs made on their ward (empty: only their own)."""

    @property
    def sees_all_jobs(self) -> bool:
        return self.role in ("reviewer", "admin")

    def sees(self, owner: str, ward: str) -> bool:
        return self.sees_all_jobs or owner == self.name or bool(self.ward and ward == self.ward)


def add_user(settings: ServiceSettings, name: str, role: str, password: str,
             ward: str = "") -> None:
    """Create (or reset) a local account; what `vid2dcm user add` calls."""
    import re

    if not re.match(USER_NAME, name):
        raise UsageError("user name: letters, digits and . _ @ - only (at most 64)")
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise UsageError("the password must have at least 8 characters")
    if ward and not re.match(USER_NAME, ward):
        raise UsageError("ward: letters, digits and . _ @ - only (at most 64)")
    open_store(settings).put_user(name, role, _hasher.hash(password), ward)


def disable_user(settings: ServiceSettings, name: str) -> None:
    """Disable an account and end its sessions at once; what `vid2dcm user disable` calls."""
    settings.prepare()
    if not open_store(settings).disable_user(name):
        raise UsageError(f"no user named {name}")


def check_password(store: Store, name: str, password: str) -> Principal | None:
    """The account if the password is right and it is enabled. A missing account costs the
    same hashing time as a wrong password, so timing does not tell which names exist."""
    user = store.user(name)
    if user is None:
        _hasher.hash(password)
        return None
    try:
        _hasher.verify(user.password_hash, password)
    except (VerificationError, InvalidHashError):
        return None
    if user.disabled:
        return None
    return Principal(user.name, user.role, ROLE_SCOPES[user.role], "session", user.ward)


def open_session(store: Store, user: str) -> str:
    """A new session; returns the cookie value (only its hash is stored)."""
    value = secrets.token_urlsafe(32)
    store.add_session(hash_token(value), user)
    return value


def session_principal(store: Store, settings: ServiceSettings, cookie: str
                      ) -> Principal | None:
    name = store.touch_session(hash_token(cookie), settings.session_idle_s,
                               settings.session_max_s)
    if name is None:
        return None
    user = store.user(name)
    if user is None or user.disabled:
        return None
    return Principal(user.name, user.role, ROLE_SCOPES[user.role], "session", user.ward)


def token_principal(store: Store, settings: ServiceSettings, token: str) -> Principal | None:
    """A token from service.toml (all of its role's scopes) or one issued through the API
    (its own scopes, until it expires or is revoked)."""
    digest = hash_token(token)
    for entry in settings.tokens:
        if secrets.compare_digest(entry.sha256, digest):
            return Principal(entry.name or entry.role, entry.role, ROLE_SCOPES[entry.role],
                             "token")
    record = store.token(digest)
    if record is None or record.revoked:
        return None
    if record.expires is not None and record.expires < time.time():
        return None
    return Principal(record.name, record.role,
                     ROLE_SCOPES[record.role] & frozenset(record.scopes), "token")


def issue_token(store: Store, name: str, role: str, scopes: tuple[str, ...],
                expires_in_s: float | None) -> tuple[str, str]:
    """A new machine token: (its id, its value). The value is shown once, never stored."""
    if role not in ROLES:
        raise UsageError(f"role must be one of {', '.join(ROLES)}")
    unknown = set(scopes) - ROLE_SCOPES["admin"]
    if unknown:
        raise UsageError(f"unknown scope(s): {', '.join(sorted(unknown))}")
    value = secrets.token_urlsafe(32)
    expires = time.time() + expires_in_s if expires_in_s else None
    token_id = store.add_token(hash_token(value), name, role,
                               tuple(scopes) or tuple(sorted(ROLE_SCOPES[role])), expires)
    return token_id, value
