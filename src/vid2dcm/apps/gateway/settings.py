"""Gateway settings: one data folder holds everything (uploads, outputs, job store, queue)."""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.core.errors import UsageError

DATA_ENV = "VID2DCM_DATA"
QUEUE_ENV = "VID2DCM_QUEUE_URL"


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Literal["uploader", "admin"] = "uploader"
    name: str = ""


class ServiceSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    data_dir: Path
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    quota_bytes: int = Field(default=50 * 2**30, ge=1)
    """Uploads plus outputs may not exceed this; an upload that would is refused with 413."""
    tokens: tuple[TokenEntry, ...] = ()
    destinations_file: Path | None = None
    default_destinations: tuple[str, ...] = ()
    """Where a job goes when its request names no destination (names in destinations_file)."""
    worklist: str | None = None
    """Modality Worklist to offer: AE@HOST:PORT or a name in destinations_file."""

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def outputs(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    def prepare(self) -> None:
        for folder in (self.data_dir, self.uploads, self.outputs):
            folder.mkdir(parents=True, exist_ok=True)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_settings(data_dir: Path | None = None) -> ServiceSettings:
    """data_dir/service.toml, if present, with [service] keys; the folder from the argument or
    VID2DCM_DATA."""
    folder = data_dir or (Path(os.environ[DATA_ENV]) if DATA_ENV in os.environ else None)
    if folder is None:
        raise UsageError(f"no data folder: pass --data or set {DATA_ENV}")
    config = folder / "service.toml"
    values: dict[str, object] = {}
    if config.exists():
        try:
            values = dict(tomllib.loads(config.read_text(encoding="utf-8")).get("service", {}))
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{config} is not valid TOML: {exc}") from exc
    return ServiceSettings(data_dir=folder, **values)  # type: ignore[arg-type]
