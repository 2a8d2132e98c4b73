"""Modality Worklist: find the order a recording belongs to, and file the video under it."""

from __future__ import annotations

from datetime import date

from pydicom import Dataset

from vid2dcm.core.errors import UsageError
from vid2dcm.core.worklist import WorklistEntry
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.transports.dimse import find_worklist

RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
               "StudyInstanceUID", "RequestedProcedureID", "RequestedProcedureDescription",
               "ReferringPhysicianName")
STEP_KEYS = ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
             "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID",
             "ScheduledProcedureStepDescription")


def query(dest: Destination, on: date | None = None, modality: str | None = None,
          accession: str | None = None, patient_id: str | None = None) -> list[WorklistEntry]:
    ds = Dataset()
    for key in RETURN_KEYS:
        setattr(ds, key, "")
    ds.AccessionNumber = accession or ""
    ds.PatientID = patient_id or ""
    step = Dataset()
    for key in STEP_KEYS:
        setattr(step, key, "")
    step.Modality = modality or ""
    step.ScheduledProcedureStepStartDate = on.strftime("%Y%m%d") if on else ""
    ds.ScheduledProcedureStepSequence = [step]
    return [_entry(found) for found in find_worklist(dest, ds)]


def the_order(dest: Destination, accession: str) -> WorklistEntry:
    """Exactly one worklist entry for an accession number, or a clear error."""
    entries = query(dest, accession=accession)
    if len(entries) != 1:
        raise UsageError(f"worklist {dest.describe()} has {len(entries)} entries for accession "
                         f"{accession}; expected exactly one")
    return entries[0]


def _entry(ds: Dataset) -> WorklistEntry:
    steps = ds.get("ScheduledProcedureStepSequence") or [Dataset()]
    step = steps[0]
    return WorklistEntry(
        patient_name=str(ds.get("PatientName", "")),
        patient_id=str(ds.get("PatientID", "")),
        patient_birth_date=str(ds.get("PatientBirthDate", "")),
        patient_sex=str(ds.get("PatientSex", "")),
        accession_number=str(ds.get("AccessionNumber", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        requested_procedure_id=str(ds.get("RequestedProcedureID", "")),
        requested_procedure_description=str(ds.get("RequestedProcedureDescription", "")),
        referring_physician_name=str(ds.get("ReferringPhysicianName", "")),
        modality=str(step.get("Modality", "")),
        scheduled_date=str(step.get("ScheduledProcedureStepStartDate", "")),
        scheduled_time=str(step.get("ScheduledProcedureStepStartTime", "")),
        scheduled_procedure_step_id=str(step.get("ScheduledProcedureStepID", "")),
        scheduled_procedure_step_description=str(
            step.get("ScheduledProcedureStepDescription", "")),
    )


__all__ = ["WorklistEntry", "query", "the_order"]
