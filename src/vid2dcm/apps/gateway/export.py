"""Gateway export: a finished job's instances de-identified (vid2dcm.deidentify, PS3.15
Annex E), either as a downloadable ZIP or sent to the research destination named in settings
([deidentify] research_destination) through the normal delivery path: the same outbox,
C-STORE / STOW-RS transports, backoff and retry window as a job's delivery.

Reviewers and admins only (the routes check; a refusal is audited). The site secret comes from
$VID2DCM_DEID_SECRET on the gateway and worker, so exports of one patient carry the same
pseudonym and UIDs every time (a re-sent export replaces, it does not duplicate)."""

from __future__ import annotations

import shutil
import uuid
import zipfile
from pathlib import Path

from fastapi import HTTPException

from vid2dcm.apps.gateway.audit import record
from vid2dcm.apps.gateway.models import DeliveryResult, ExportResult
from vid2dcm.apps.gateway.outbox import Later
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Job, Store, open_store
from vid2dcm.core.errors import UsageError, Vid2DcmError
from vid2dcm.deidentify import DeidReport, DeidSettings, deidentify
from vid2dcm.deidentify.convert import profile_named


def finished_job(store: Store, job_id: str) -> Job:
    job = store.job(job_id)
    if job is None or job.result is None or job.status != "done" or not job.result.files:
        raise HTTPException(404, "no finished job with files")
    return job


def checked_profile(profile: str) -> str:
    try:
        profile_named(profile)
    except UsageError as exc:
        raise HTTPException(400, str(exc)) from exc
    return profile


class DeidFailed(Exception):
    """De-identification failed; the message names no file and no patient."""


def _deidentified(settings: ServiceSettings, job: Job, profile: str, folder: Path
                  ) -> list[DeidReport]:
    """De-identify the job's instances into folder; on failure nothing is left there and
    DeidFailed says why, with the server paths replaced."""
    assert job.result is not None
    # pictures only: a Key Object Selection manifest (settings.kos, frames 0) references the
    # original UIDs and is not exported
    sources = [settings.outputs / job.id / f.name for f in job.result.files if f.frames > 0]
    if not sources:
        raise DeidFailed("the job has no video or frame objects to export")
    try:
        return deidentify(sources, folder, DeidSettings(options=profile_named(profile)))
    except Vid2DcmError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        message = str(exc)
        for source in sources:
            message = message.replace(str(source), "instance")
        raise DeidFailed(message) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def export_job(settings: ServiceSettings, store: Store, job_id: str, profile: str
               ) -> tuple[Path, Path]:
    """(ZIP path, scratch folder to delete once sent). Errors are HTTP errors whose text
    names no file and no patient."""
    job = finished_job(store, job_id)
    checked_profile(profile)
    folder = settings.data_dir / "exports" / uuid.uuid4().hex
    try:
        reports = _deidentified(settings, job, profile, folder / "files")
    except DeidFailed as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(422, f"de-identification failed: {exc}") from exc
    try:
        archive = folder / "export.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for report in reports:
                stem = Path(report.output).stem
                zf.write(folder / "files" / report.output, report.output)
                zf.write(folder / "files" / f"{stem}.deid.json", f"{stem}.deid.json")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return archive, folder


# -- sending to the research destination ---------------------------------------------------

def research_destination(settings: ServiceSettings) -> str:
    name = settings.deidentify.research_destination if settings.deidentify else None
    if not name:
        raise HTTPException(409, "this gateway has no research destination "
                                 "([deidentify] research_destination)")
    return name


def export_folder(settings: ServiceSettings, export_id: str) -> Path:
    return settings.data_dir / "exports" / export_id


def run_export(settings: ServiceSettings, export_id: str, later: Later | None = None) -> None:
    """What the worker does with a new export: de-identify the job's instances into the
    export's folder, put the copy in the outbox, and try it once. A failed
    de-identification ends the export (failed, with the reason in words, no patient data)."""
    store = open_store(settings)
    export = store.export(export_id)
    if export is None or export.state != "preparing":
        return
    job = store.job(export.job)
    # a scratch folder of this run's own: a second worker running the same export (one
    # restarted while another still works on it) never touches this one's files
    scratch = export_folder(settings, f"{export_id}.{uuid.uuid4().hex}")
    try:
        if job is None or job.result is None or not job.result.files:
            raise UsageError("the job has no files any more")
        reports = _deidentified(settings, job, export.profile, scratch)
    except (DeidFailed, UsageError) as exc:
        shutil.rmtree(scratch, ignore_errors=True)
        if store.export_finished(export_id, f"de-identification failed: {exc}"):
            _audit(settings, store, export.destination, "export failed", export.job)
        return
    except Exception as exc:  # an export must end in a state, whatever happened
        shutil.rmtree(scratch, ignore_errors=True)
        if store.export_finished(export_id, f"internal error: {type(exc).__name__}"):
            _audit(settings, store, export.destination, "export failed", export.job)
        return
    folder = export_folder(settings, export_id)
    try:
        scratch.rename(folder)  # the first run to finish wins; the same secret, the same copy
    except OSError:
        shutil.rmtree(scratch, ignore_errors=True)
        return
    if not store.export_prepared(export_id, ExportResult(
            sop_instance_uids=tuple(Path(r.output).stem for r in reports),
            verification_passed=all(r.verification.passed for r in reports))):
        shutil.rmtree(folder, ignore_errors=True)  # ended meanwhile
        return
    deliver_export(settings, export_id, later)


def deliver_export(settings: ServiceSettings, export_id: str, later: Later | None = None
                   ) -> None:
    """One try of a due export parcel, exactly as deliver_job tries a job's: sent, or tried
    again after the backoff until the retry window has passed. The de-identified copy is
    deleted once it was stored or given up."""
    from vid2dcm.apps.gateway.jobs import try_parcel

    store = open_store(settings)
    export = store.export(export_id)
    if export is None or export.state != "sending" or export.result is None:
        return
    folder = export_folder(settings, export_id)
    files = [folder / f"{uid}.dcm" for uid in export.result.sop_instance_uids]
    for parcel in store.parcels(export_id):
        state, error = try_parcel(settings, store, export_id, parcel, files, later)
        if state in (None, "waiting"):
            continue
        store.export_finished(export_id, None if error is None else
                              f"not stored in {parcel.destination} after "
                              f"{parcel.attempts + 1} tries: {error}")
        _audit(settings, store, parcel.destination,
               "export delivery" if error is None else "export delivery failed", export.job)
        shutil.rmtree(folder, ignore_errors=True)


def _audit(settings: ServiceSettings, store: Store, destination: str, action: str,
           job: str) -> None:
    """Who (the worker, for the destination), what, which job; never patient data."""
    record(store, settings, f"worker:{destination}", f"{action} ({destination})", job=job,
           role="system")


def receipts_of(store: Store, export_id: str) -> tuple[tuple[DeliveryResult, ...], int,
                                                       float | None, str | None]:
    """(receipts, tries, next try, last try's problem) of an export's parcel, for its
    status."""
    parcels = store.parcels(export_id)
    receipts = tuple(r for p in parcels for r in p.receipts)
    waiting = [p for p in parcels if p.state == "waiting" and p.attempts]
    return (receipts, sum(p.attempts for p in parcels),
            min(p.next_try for p in waiting) if waiting else None,
            waiting[0].error if waiting else None)
