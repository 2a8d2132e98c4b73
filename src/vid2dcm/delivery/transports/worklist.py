"""Modality Worklist: find the order a recording belongs to, and file the video under it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from pydicom import Dataset

from vid2dcm.core.errors import UsageError
from vid2dcm.core.metadata import METADATA_ATTRIBUTES, from_dicom
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.transports.dimse import find_worklist

RETURN_KEYS = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "AccessionNumber",
               "StudyInstanceUID", "RequestedProcedureID", "RequestedProcedureDescription",
               "ReferringPhysicianName")
STEP_KEYS = ("Modality", "ScheduledStationAETitle", "ScheduledProcedureStepStartDate",
             "ScheduledProcedureStepStartTime", "ScheduledProcedureStepID",
             "ScheduledProcedureStepDescription")


@dataclass(frozen=True)
class WorklistEntry:
    patient_name: str
    patient_id: str
    patient_birth_date: str
    patient_sex: str
    accession_number: str
    study_instance_uid: str
    requested_procedure_id: str
    requested_procedure_description: str
    referring_physician_name: str
    modality: str
    scheduled_date: str
    scheduled_time: str
    scheduled_procedure_step_id: str
    scheduled_procedure_step_description: str

    def metadata_fields(self) -> dict[str, object]:
        """Metadata fields for an instance acquired for this order (empty values left out),
        converted by the VRs of core.metadata's one table; the requested procedure also
        describes the study."""
        fields: dict[str, object] = {}
        for m in METADATA_ATTRIBUTES:
            if m.field in ORDER_FIELDS:
                value = from_dicom(m.vr, getattr(self, m.field))
                if value is not None:
                    fields[m.field] = value
        if "requested_procedure_description" in fields:
            fields.setdefault("study_description", fields["requested_procedure_description"])
        if fields.get("patient_sex") not in ("M", "F", "O"):
            fields.pop("patient_sex", None)
        return fields


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


ORDER_FIELDS = frozenset({
    "patient_name", "patient_id", "patient_birth_date", "patient_sex", "accession_number",
    "study_instance_uid", "referring_physician_name", "requested_procedure_id",
    "requested_procedure_description", "scheduled_procedure_step_id",
    "scheduled_procedure_step_description"})
"""What a worklist answer decides about an acquisition (PS3.4 K.6.1.2; IHE RAD-5)."""

