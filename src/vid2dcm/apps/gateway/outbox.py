"""The outbox's retry policy, shared by DICOM deliveries (jobs.py) and notices
(integration.py): one backoff, one way to ask the queue for a later try."""

from __future__ import annotations

from collections.abc import Callable

from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store

Later = Callable[[str, float], None]
"""Ask the queue to try a job's deliveries again in so many seconds."""


def backoff(settings: ServiceSettings, attempts: int) -> float:
    """Seconds before try number attempts+1: doubling from retry_first_s up to retry_max_s."""
    return float(min(settings.retry_max_s, settings.retry_first_s * 2 ** (attempts - 1)))


NOTICE_KINDS = ("hl7:", "fhir:", "mpps:")
"""Outbox parcels named "kind:target" are notices, not DICOM deliveries: "hl7:his" (the
result message), "fhir:imagingstudy", "mpps:<destination>" (the N-SET)."""


def due_jobs(store: Store, now: float) -> list[str]:
    """Jobs with a due parcel: a DICOM delivery of a waiting job, or a notice of a job that
    is done or failed (what the queue's minute sweep hands to deliver_job)."""
    due = store.due_parcels(now) + store.due_notices(now, NOTICE_KINDS)
    return sorted({job for job, _ in due})
