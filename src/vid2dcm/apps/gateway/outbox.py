"""The outbox's retry policy, shared by DICOM deliveries (jobs.py) and notices
(integration.py): one backoff, one way to ask the queue for a later try."""

from __future__ import annotations

from collections.abc import Callable

from vid2dcm.apps.gateway.settings import ServiceSettings

Later = Callable[[str, float], None]
"""Ask the queue to try a job's deliveries again in so many seconds."""


def backoff(settings: ServiceSettings, attempts: int) -> float:
    """Seconds before try number attempts+1: doubling from retry_first_s up to retry_max_s."""
    return float(min(settings.retry_max_s, settings.retry_first_s * 2 ** (attempts - 1)))
