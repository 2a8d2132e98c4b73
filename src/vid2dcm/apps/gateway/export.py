"""Gateway export: a finished job's instances de-identified into a downloadable ZIP (admin
only, audited by the caller). The site secret comes from $VID2DCM_DEID_SECRET on the gateway,
so exports of one patient carry the same pseudonym and UIDs every time."""

from __future__ import annotations

import shutil
import uuid
import zipfile
from pathlib import Path

from fastapi import HTTPException

from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.deidentify import DeidSettings, deidentify
from vid2dcm.deidentify.convert import profile_named


def export_job(settings: ServiceSettings, store: Store, job_id: str, profile: str
               ) -> tuple[Path, Path]:
    """(ZIP path, scratch folder to delete once sent). Errors are HTTP errors whose text
    names no file and no patient."""
    job = store.job(job_id)
    if job is None or job.result is None or job.status != "done":
        raise HTTPException(404, "no finished job with files")
    names = [f.name for f in job.result.files]
    if not names:
        raise HTTPException(404, "no files for this job")
    try:
        options = profile_named(profile)
    except Vid2DcmError as exc:
        raise HTTPException(400, str(exc)) from exc
    folder = settings.data_dir / "exports" / uuid.uuid4().hex
    sources = [settings.outputs / job.id / name for name in names]
    try:
        reports = deidentify(sources, folder / "files", DeidSettings(options=options))
        archive = folder / "export.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for report in reports:
                stem = Path(report.output).stem
                zf.write(folder / "files" / report.output, report.output)
                zf.write(folder / "files" / f"{stem}.deid.json", f"{stem}.deid.json")
    except Vid2DcmError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        message = str(exc)
        for source in sources:
            message = message.replace(str(source), "instance")
        raise HTTPException(422, f"de-identification failed: {message}") from exc
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return archive, folder
