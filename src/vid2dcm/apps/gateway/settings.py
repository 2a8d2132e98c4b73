"""Gateway settings: one data folder holds everything (uploads, outputs, job store, queue).

Settings are a value passed to `create_app(settings)` and `make_queue(settings)`; nothing in the
gateway reads process-wide state once they are made. `load_settings` is the one place that
reads the data folder's service.toml (and, for the queue URL only, the environment)."""

from __future__ import annotations

import hashlib
import os
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from vid2dcm.core.errors import UsageError
from vid2dcm.orders.routing import RoutingTable

DATA_ENV = "VID2DCM_DATA"
QUEUE_ENV = "VID2DCM_QUEUE_URL"
DATABASE_ENV = "VID2DCM_DATABASE_URL"

Role = Literal["uploader", "reviewer", "admin"]


class TokenEntry(BaseModel):
    """A machine token written in service.toml (kept for recorders and scripts set up before
    tokens could be managed through the API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    role: Role = "uploader"
    name: str = ""


# orders and results (issue 15)
class Hl7Settings(BaseModel):
    """`[hl7]`: the order listener (MLLP, TLS optional) and the HIS that gets ORU^R01."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    listen: str | None = "127.0.0.1:2575"
    """HOST:PORT the MLLP listener binds while the gateway runs; empty: no listener."""
    tls_cert: Path | None = None
    tls_key: Path | None = None
    """Listener certificate and key: MLLP over TLS when both are set."""
    tls_client_ca: Path | None = None
    """Senders must present a certificate signed by this CA (mutual TLS)."""
    his: str | None = None
    """HOST:PORT of the HIS's MLLP listener for the ORU^R01 "images available"."""
    his_ca: Path | None = None
    """Reach the HIS over TLS, verified against this CA."""
    application: str = "VID2DCM"
    facility: str = ""
    # results message kind (issue 15): a key of orders.results.RESULT_MESSAGES
    result_message: Literal["ORU^R01", "ORU^R01 2.3.1", "ORM^O01", "OMI^O23"] = "ORU^R01"
    """What the HIS gets once a study is stored: ORU^R01 v2.5.1 (default), ORU^R01 v2.3.1,
    an ORM^O01 v2.3.1 status update or an OMI^O23 v2.5.1 status update (docs/integration.md)."""


class FhirSettings(BaseModel):
    """`[fhir]`: the FHIR server polled for ServiceRequests and given ImagingStudy."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    server: str | None = Field(default=None, pattern=r"^https?://")
    version: Literal["R4", "R5"] = "R5"
    poll_s: float = Field(default=0.0, ge=0)
    """Poll the server for ServiceRequests this often; 0: never (POST /fhir/ServiceRequest
    only)."""
    bearer_token: str | None = None
    ca_file: Path | None = None
    wado_rs_url: str = ""
    """The PACS's DICOMweb base, written as the ImagingStudy endpoint."""


# de-identified exports (issue 16)
class DeidentifySettings(BaseModel):
    """`[deidentify]`: where a reviewer's "send de-identified" export goes."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    research_destination: str | None = None
    """A name in destinations_file (DIMSE or STOW-RS) that receives de-identified copies;
    unset: exports are ZIP downloads only."""


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
    queue_url: str | None = None
    """redis://... to share one queue between several workers; default: SQLite in data_dir."""
    session_idle_s: int = Field(default=30 * 60, ge=10)
    """A signed-in session ends after this long without a request."""
    session_max_s: int = Field(default=12 * 3600, ge=10)
    """... and after this long in any case (one shift)."""
    login_failures_per_minute: int = Field(default=10, ge=1)
    """Failed sign-ins for one user or one client address within a minute before 429."""
    audit_syslog: str | None = Field(default=None,
                                     pattern=r"^(udp|tcp|tls)://[^/:]+:\d{1,5}$")
    """Forward every audit entry as a DICOM audit message in RFC 5424 syslog to this
    collector: udp://host:514, tcp://host:601 or tls://host:6514 (RFC 5425)."""
    audit_syslog_ca: Path | None = None
    """CA certificate(s) that sign the tls:// collector's certificate (default: the
    system's)."""
    delivery_window_s: int = Field(default=24 * 3600, ge=0)
    """How long a PACS may stay unreachable before a job gives up (the outbox retries)."""
    retry_first_s: float = Field(default=30.0, gt=0)
    retry_max_s: float = Field(default=900.0, gt=0)
    """Backoff between delivery tries: doubling from retry_first_s up to retry_max_s."""
    upload_retention_s: int = Field(default=24 * 3600, ge=0)
    """An upload is deleted this long after every job made from it succeeded."""
    output_retention_s: int = Field(default=7 * 24 * 3600, ge=0)
    """The converted files of a job stored in its PACS are deleted this long after (the PACS
    keeps the record; the gateway is not an archive)."""
    store_key_file: Path | None = None
    """AES-GCM key for patient fields in the job store; default data_dir/store.key, made on
    first start. A key kept elsewhere must exist."""
    oidc_issuer: str | None = None
    """Hospital sign-on (OpenID Connect): the provider's issuer URL; unset: local accounts
    only."""
    oidc_client_id: str = "vid2dcm"
    oidc_client_secret: str = ""
    oidc_redirect_uri: str = ""
    """This gateway's /auth/oidc/callback as the browser reaches it (registered at the
    provider)."""
    oidc_role_claim: str = "vid2dcm_role"
    """The ID token claim holding uploader, reviewer or admin."""
    tls: bool = False
    """Served over HTTPS (cookies get Secure, responses HSTS)."""
    # orders and results (issue 15)
    hl7: Hl7Settings | None = None
    fhir: FhirSettings | None = None
    routing: RoutingTable | None = None
    """Destinations of a job that names none, chosen by rule (replaces default_destinations
    when set)."""
    mpps_destination: str | None = None
    """MPPS SCP (a name in destinations_file or AE@HOST:PORT) told about jobs bound to an
    order."""
    kos: bool = False
    """Send a Key Object Selection (key images) manifest with each study."""
    viewer_url: str = ""
    """Viewer link put in the ORU; {study} is replaced by the Study Instance UID."""
    # recordings (issue 13): live sources the staff page may record from
    recording_sources: dict[str, str] = {}
    """Name -> source (rtsp://, udp://, /dev/videoN, lavfi:...) as `vid2dcm record` takes it;
    clients choose names only, never URLs ([service.recording_sources] in service.toml)."""
    recording_mpps: str | None = None
    """MPPS SCP (AE@HOST:PORT or a name in destinations_file) told about each recording."""
    recording_max_segment_s: float | None = Field(default=None, gt=0)
    """A long recording becomes several instances of its series, cut at key frames."""
    # chunked transcoding across workers (issue 17)
    chunk_count: int = Field(default=1, ge=1, le=64)
    """A long transcode is split at source key frames into this many chunks, each a queue
    task any worker may take; 1: one worker transcodes the whole video."""
    chunk_threshold_s: float = Field(default=60.0, ge=0)
    """Videos shorter than this are transcoded in one piece (splitting costs a few seconds)."""
    chunk_min_s: float = Field(default=10.0, gt=0)
    """Shortest chunk (planning/chunks.py MIN_CHUNK_S)."""
    # de-identified exports (issue 16)
    deidentify: DeidentifySettings | None = None
    # shared job store and worker leases (issue 17)
    database_url: str | None = Field(default=None,
                                     pattern=r"^(sqlite:///|postgresql\+psycopg://)")
    """SQLAlchemy URL of the job store shared by several machines
    (postgresql+psycopg://user:password@host/db); default: SQLite data_dir/jobs.sqlite."""
    lease_s: float = Field(default=60.0, gt=0)
    """A worker running a job holds it this long past its last heartbeat; a job whose lease
    has expired (its worker died) may be taken by another worker."""
    heartbeat_s: float = Field(default=10.0, gt=0)
    """How often the worker running a job renews its lease (well under lease_s)."""
    lease_recoveries: int = Field(default=1, ge=0)
    """How often a job whose worker died is run again before it is failed."""

    @model_validator(mode="after")
    def _beats_within_the_lease(self) -> ServiceSettings:
        if self.heartbeat_s * 2 > self.lease_s:
            raise ValueError(f"heartbeat_s ({self.heartbeat_s:g}) must be at most half of "
                             f"lease_s ({self.lease_s:g}), or a live worker loses its jobs")
        return self

    @property
    def uploads(self) -> Path:
        return self.data_dir / "uploads"

    @property
    def outputs(self) -> Path:
        return self.data_dir / "outputs"

    @property
    def database(self) -> Path:
        return self.data_dir / "jobs.sqlite"

    @property
    def key_file(self) -> Path:
        return self.store_key_file or self.data_dir / "store.key"

    def prepare(self) -> None:
        """Create the data folders, readable by the service's own user only (0700), and make
        this process create every later file private (umask 077: 0600 files, 0700 folders),
        including those libraries write (the tus upload and its .info, the huey queue)."""
        os.umask(0o077)
        for folder in (self.data_dir, self.uploads, self.outputs):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def load_settings(data_dir: Path | None = None, **overrides: object) -> ServiceSettings:
    """data_dir/service.toml, if present, with [service] keys; the folder from the argument or
    VID2DCM_DATA; the queue URL from service.toml, else VID2DCM_QUEUE_URL (the database URL
    likewise, else VID2DCM_DATABASE_URL); `overrides` (e.g.
    from command-line options) on top."""
    folder = data_dir or (Path(os.environ[DATA_ENV]) if DATA_ENV in os.environ else None)
    if folder is None:
        raise UsageError(f"no data folder: pass --data or set {DATA_ENV}")
    config = folder / "service.toml"
    values: dict[str, object] = {}
    if config.exists():
        try:
            document = tomllib.loads(config.read_text(encoding="utf-8"))
            values = dict(document.get("service", {}))
            values.update({k: document[k] for k in ("hl7", "fhir", "routing", "deidentify")
                           if k in document})
        except tomllib.TOMLDecodeError as exc:
            raise UsageError(f"{config} is not valid TOML: {exc}") from exc
    if "queue_url" not in values and os.environ.get(QUEUE_ENV):
        values["queue_url"] = os.environ[QUEUE_ENV]
    if "database_url" not in values and os.environ.get(DATABASE_ENV):
        values["database_url"] = os.environ[DATABASE_ENV]
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return ServiceSettings(data_dir=folder, **values)  # type: ignore[arg-type]
    except ValueError as exc:
        raise UsageError(f"{config}: {exc}") from exc
