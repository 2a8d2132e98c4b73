"""Where videos go: DIMSE peers (AE@HOST:PORT) and DICOMweb STOW-RS endpoints, named in a TOML
file or written inline on the command line."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from vid2dcm.core.errors import UsageError

AE_PATTERN = re.compile(r"^(?P<ae>[^@]{1,16})@(?P<host>[^:@]+):(?P<port>\d{1,5})$")


class TlsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    ca_file: Path
    """Certificate authority that signed the peer's certificate."""
    cert_file: Path | None = None
    """Client certificate, for peers that want one."""
    key_file: Path | None = None
    server_hostname: str | None = None
    """Name to check the peer certificate against (default: the host)."""


class Destination(BaseModel):
    """One place to deliver to. Everything but the address has a safe default."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = ""
    kind: Literal["dimse", "stow"] = "dimse"
    ae_title: str = Field(default="", max_length=16)
    host: str = ""
    port: int = Field(default=104, ge=1, le=65535)
    calling_ae_title: str = Field(default="VID2DCM", min_length=1, max_length=16)
    url: str = ""
    """STOW-RS base URL, e.g. http://127.0.0.1:8042/dicom-web (studies is appended)."""
    bearer_token: str | None = None
    username: str | None = None
    password: str | None = None
    tls: TlsSettings | None = None
    max_object_bytes: int | None = Field(default=None, ge=1024)
    """Larger instances are split (copy path) before sending; e.g. 2 GB for some clouds."""
    accepted_syntaxes: tuple[str, ...] | None = None
    """Override what the peer is asked for (some PACS accept a syntax they then mishandle)."""
    lossy_fallback: bool = True
    """May a video the peer refuses be sent frame by frame instead (no audio, larger)?"""
    storage_commitment: bool = False
    commitment_port: int | None = Field(default=None, ge=1, le=65535)
    """Where we listen for an N-EVENT-REPORT the peer sends on a new association (None: only
    the same association is used)."""
    commitment_listen_host: str = "127.0.0.1"
    """Address to listen on for that association: a PACS on another machine needs this host's
    LAN address (or 0.0.0.0); loopback only works with a PACS on this machine."""
    commitment_ae_title: str | None = Field(default=None, min_length=1, max_length=16)
    """Our AE title for that association (default: calling_ae_title), as the PACS knows us."""
    commitment_timeout_s: float = Field(default=30.0, gt=0)
    retries: int = Field(default=3, ge=0, le=20)
    retry_delay_s: float = Field(default=2.0, ge=0)
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _address(self) -> Destination:
        if self.kind == "dimse" and not (self.ae_title and self.host):
            raise ValueError("a DIMSE destination needs ae_title, host and port")
        if self.kind == "stow" and not self.url.startswith(("http://", "https://")):
            raise ValueError("a STOW-RS destination needs an http(s) url")
        return self

    def describe(self) -> str:
        if self.kind == "stow":
            return self.url
        return f"{self.ae_title}@{self.host}:{self.port}"


def parse_destination(text: str, config: Path | None = None, **overrides: object) -> Destination:
    """AE@HOST:PORT, an http(s) STOW-RS URL, or the name of an entry in the config file."""
    match = AE_PATTERN.match(text)
    try:
        if match:
            return Destination(ae_title=match["ae"], host=match["host"], port=int(match["port"]),
                               **overrides)  # type: ignore[arg-type]
        if text.startswith(("http://", "https://")):
            return Destination(kind="stow", url=text, **overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise UsageError(f"destination {text}: {exc.errors()[0]['msg']}") from exc
    named = load_destinations(config) if config else {}
    if text in named:
        return named[text]
    raise UsageError(f"destination {text!r} is neither AE@HOST:PORT, a URL, nor a name in "
                     f"{config or 'a --config file'}")


def load_destinations(path: Path) -> dict[str, Destination]:
    """[destinations.NAME] tables of a TOML file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise UsageError(f"config file {path} does not exist") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"config file {path} is not valid TOML: {exc}") from exc
    tables = data.get("destinations", {})
    if not isinstance(tables, dict):
        raise UsageError(f"config file {path}: [destinations] must be a table")
    found = {}
    for name, table in tables.items():
        try:
            found[name] = Destination(name=name, **table)
        except (ValidationError, TypeError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise UsageError(f"config file {path}: destination {name}: {msg}") from exc
    return found
