"""The gateway's typed records: what a client may ask (requests), what a job produced (results)
and what the API answers (`response_model` of every route). Patient fields appear only in
requests (and in the worklist, whose purpose is to show the patient); no job response
model has a field that could carry them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.core.metadata import Metadata
from vid2dcm.core.worklist import WorklistEntry

JobState = Literal["queued", "running", "waiting", "held", "done", "failed", "cancelled"]
FailureKind = Literal["unreadable input", "not storable", "delivery", "output", "request",
                      "internal"]
"""Why a job failed, taken from the exception's class (vid2dcm.core.errors), never from words
in its message; /metrics counts failures by these kinds."""


class JobRequest(BaseModel):
    """What a client may ask of a job; destinations are names from the gateway's own
    configuration, never addresses, so a client cannot make the gateway connect anywhere."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    upload_id: str = Field(pattern=r"^[0-9a-f]{32}$")
    metadata: Metadata = Metadata()
    sop: Literal["photographic", "endoscopic", "microscopic", "ultrasound", "sc"] = (
        "photographic")
    transcode: Literal["auto", "never", "always"] = "auto"
    destinations: tuple[str, ...] = ()
    accession: str | None = Field(default=None, max_length=16)
    """Fill patient and order from the gateway's worklist entry with this accession number."""
    unidentified: bool = False
    """The patient is not known yet: convert, then hold (never deliver) until a reviewer
    assigns the patient (POST /jobs/{id}/assign)."""
    issue: int = Field(default=0, ge=0, le=1000)
    """How often the patient was assigned afterwards (set by the gateway, not the client);
    each issue gets new UIDs."""


class PublicRequest(BaseModel):
    """A job request as clients see it: everything but the patient fields."""

    model_config = ConfigDict(frozen=True)
    upload_id: str
    sop: str
    transcode: str
    destinations: tuple[str, ...]
    accession: str | None
    unidentified: bool

    @classmethod
    def of(cls, request: JobRequest) -> PublicRequest:
        return cls(upload_id=request.upload_id, sop=request.sop, transcode=request.transcode,
                   destinations=request.destinations, accession=request.accession,
                   unidentified=request.unidentified)


class FileResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    frames: int
    bytes: int


class DeliveryResult(BaseModel):
    model_config = ConfigDict(frozen=True)
    destination: str
    ok: bool
    message: str
    sop_instance_uid: str | None = None
    committed: bool | None = None
    """Storage Commitment confirmed (archived), when the destination asks for it."""


class JobResult(BaseModel):
    """What a finished conversion produced and where it went."""

    model_config = ConfigDict(frozen=True)
    files: tuple[FileResult, ...] = ()
    action: str = ""
    warnings: tuple[str, ...] = ()
    deliveries: tuple[DeliveryResult, ...] = ()
    worker: str = ""
    study_instance_uid: str | None = None
    # orders and results (issue 15)
    routing: tuple[str, ...] = ()
    """Why each destination was chosen ("sent to A because rule 'x' matched ..."), when the
    routing table chose them."""
    notices: tuple[str, ...] = ()
    """MPPS, ORU^R01 and ImagingStudy outcomes: sent, or why not (no patient data)."""


class Notification(BaseModel):
    """One notice of a job (issue 15): the MPPS N-SET ("mpps:<destination>"), the result
    message to the HIS ("hl7:his") or the ImagingStudy ("fhir:imagingstudy"), as its outbox
    parcel stands: waiting (to be tried again at next_try), sent or gave up."""

    model_config = ConfigDict(frozen=True)
    name: str
    state: str
    attempts: int
    error: str | None = None
    next_try: float | None = None


class JobView(BaseModel):
    """A job as the API shows it."""

    model_config = ConfigDict(frozen=True)
    id: str
    upload_id: str
    status: JobState
    progress: float
    request: PublicRequest
    result: JobResult | None
    error: str | None
    failure_kind: FailureKind | None
    created: float
    started: float | None
    finished: float | None
    attempts: int
    owner: str
    state_text: str
    """The state in words a nurse understands, e.g. "waiting for PACS (next try at 14:05)"."""
    next_try: float | None
    """When the next delivery try is due (waiting jobs)."""
    notifications: tuple[Notification, ...] = ()
    """MPPS, result message and ImagingStudy of the job, each with its state (issue 15)."""


class Created(BaseModel):
    id: str


class UploadCreated(BaseModel):
    id: str
    size: int


class StatusAnswer(BaseModel):
    status: str


class AuditEntry(BaseModel):
    at: float
    who: str
    role: str
    client: str
    action: str
    job: str | None
    upload: str | None
    study: str | None


WorklistItem = WorklistEntry
"""A scheduled procedure step, for the staff page to pick the patient from."""


# de-identified exports (issue 16)
ExportState = Literal["preparing", "sending", "sent", "failed"]


class ExportResult(BaseModel):
    """What a de-identified export holds: the new (pseudonymous) instance UIDs and whether
    every instance passed the pixel verification. No original identifier is in it."""

    model_config = ConfigDict(frozen=True)
    sop_instance_uids: tuple[str, ...] = ()
    verification_passed: bool = False


class ExportView(BaseModel):
    """A send of a job's instances, de-identified, to the research destination."""

    model_config = ConfigDict(frozen=True)
    id: str
    job: str
    profile: str
    destination: str
    who: str
    state: ExportState
    created: float
    finished: float | None
    error: str | None
    """Why it failed, or (sending) why the last try did not store it."""
    result: ExportResult | None
    deliveries: tuple[DeliveryResult, ...] = ()
    attempts: int = 0
    next_try: float | None = None
    """When the next delivery try is due (state sending, after a failed try)."""
