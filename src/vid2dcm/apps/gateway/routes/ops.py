"""Operations: health and readiness (no sign-in), Prometheus metrics, the audit log."""

from __future__ import annotations

import time

from fastapi import APIRouter, HTTPException
from fastapi.responses import PlainTextResponse, Response

from vid2dcm.apps.gateway.audit import export
from vid2dcm.apps.gateway.deps import Admin, AuditDep, Caller, Settings, StoreDep
from vid2dcm.apps.gateway.models import AuditEntry, StatusAnswer

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=StatusAnswer)
def health() -> StatusAnswer:
    return StatusAnswer(status="ok")


@router.get("/ready", response_model=StatusAnswer)
def ready(store: StoreDep, settings: Settings) -> StatusAnswer:
    """Ready when the job store answers and the data folder takes writes."""
    try:
        store.counts()
        probe = settings.data_dir / ".ready"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HTTPException(503, f"not ready: {exc.strerror or 'storage error'}") from exc
    return StatusAnswer(status="ready")


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(who: Caller, store: StoreDep, settings: Settings) -> str:
    """Prometheus text format: jobs by state, job durations, stored upload bytes, failures by
    kind, the age of the oldest undelivered parcel. Counts only: nothing about any patient."""
    if "metrics" not in who.scopes:
        raise HTTPException(403, "this needs the metrics permission")
    counts = store.counts()
    lines = ["# TYPE vid2dcm_jobs gauge"]
    lines += [f'vid2dcm_jobs{{state="{state}"}} {n}' for state, n in counts.items()]
    durations = store.finished_durations()
    lines += ["# TYPE vid2dcm_job_seconds summary",
              f"vid2dcm_job_seconds_count {len(durations)}",
              f"vid2dcm_job_seconds_sum {sum(durations):.3f}",
              "# TYPE vid2dcm_upload_bytes gauge",
              f"vid2dcm_upload_bytes {store.used_bytes()}",
              "# TYPE vid2dcm_quota_bytes gauge",
              f"vid2dcm_quota_bytes {settings.quota_bytes}",
              "# TYPE vid2dcm_queue_depth gauge",
              f"vid2dcm_queue_depth {counts['queued']}",
              "# TYPE vid2dcm_failures gauge"]
    lines += [f'vid2dcm_failures{{reason="{kind}"}} {n}'
              for kind, n in sorted(store.failure_kinds().items())]
    oldest = store.oldest_waiting_parcel()
    lines += ["# HELP vid2dcm_outbox_oldest_seconds Age of the oldest parcel not yet delivered "
              "(0: outbox empty).",
              "# TYPE vid2dcm_outbox_oldest_seconds gauge",
              f"vid2dcm_outbox_oldest_seconds "
              f"{max(0.0, time.time() - oldest) if oldest is not None else 0.0:.3f}"]
    return "\n".join(lines) + "\n"


@router.get("/audit/export", response_class=Response)
def audit_export(_who: Admin, store: StoreDep, audit: AuditDep) -> Response:
    """The audit log as DICOM Audit Messages (PS3.15 A.5), newest first."""
    body = export(store.audit_log())
    audit("audit export")
    return Response(body, media_type="application/xml")


@router.get("/audit", response_model=list[AuditEntry])
def audit_log(_who: Admin, store: StoreDep, audit: AuditDep) -> list[AuditEntry]:
    entries = store.audit_log()
    audit("audit export")
    return entries
