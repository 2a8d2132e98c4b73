"""Modality Performed Procedure Step SCU (PS3.4 F.7): tell the RIS a recording is under way,
then that it completed (with what was made) or was discontinued.

N-CREATE at the start with PPS Status IN PROGRESS and every attribute that will be set later
present (empty where unknown): only attributes created at N-CREATE may be N-SET
(PS3.4 F.7.2.2.1; also the common SCP rule). N-SET at the end: COMPLETED with the Performed
Series Sequence (one item per series, its instances in the Referenced Image Sequence), or
DISCONTINUED with a reason code (CID 9300). The Performed Series Sequence must not be empty
at either final state.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from pydicom import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityPerformedProcedureStep,
)

from vid2dcm.core.errors import DeliveryError
from vid2dcm.core.metadata import Metadata
from vid2dcm.core.uids import new_uid
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.transports.dimse import with_association

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
DISCONTINUED_REASONS = {
    "equipment": ("110501", "Equipment failure"),
    "patient": ("110503", "Patient condition prevented continuing"),
    "cancelled": ("110513", "Discontinued for unspecified reason"),
}
"""CID 9300 Procedure Discontinuation Reasons (DCM)."""


@dataclass(frozen=True)
class PerformedSeries:
    series_instance_uid: str
    series_description: str
    instances: tuple[tuple[str, str], ...]
    """(SOP Class UID, SOP Instance UID) of each image made in this series."""
    protocol_name: str = "vid2dcm recording"


@dataclass(frozen=True)
class ProcedureStep:
    """An MPPS instance we created: its UID and what went into the N-CREATE."""

    sop_instance_uid: str
    started: datetime
    dest: Destination


def start_procedure_step(dest: Destination, metadata: Metadata, *, study_instance_uid: str,
                         modality: str, station_ae_title: str | None = None,
                         description: str = "Video recording",
                         started: datetime | None = None) -> ProcedureStep:
    """N-CREATE IN PROGRESS; returns the step to complete or discontinue later."""
    started = started or datetime.now()
    uid = new_uid(metadata.uid_root)
    ds = in_progress_dataset(metadata, uid, study_instance_uid=study_instance_uid,
                             modality=modality,
                             station_ae_title=station_ae_title or dest.calling_ae_title,
                             description=description, started=started)

    def create(assoc: Association) -> None:
        status, _ = assoc.send_n_create(ds, ModalityPerformedProcedureStep, uid)
        _check(status, "N-CREATE")

    with_association(dest, _contexts(), create, "MPPS N-CREATE")
    return ProcedureStep(uid, started, dest)


def in_progress_dataset(metadata: Metadata, uid: str, *, study_instance_uid: str,
                        modality: str, station_ae_title: str, description: str,
                        started: datetime) -> Dataset:
    """The N-CREATE attribute list (also what the conformance statement lists)."""
    m = metadata
    ds = Dataset()
    step = Dataset()
    step.StudyInstanceUID = study_instance_uid
    step.AccessionNumber = m.accession_number
    step.ReferencedStudySequence = DicomSequence([])
    step.RequestedProcedureID = m.requested_procedure_id
    step.RequestedProcedureDescription = m.requested_procedure_description
    step.ScheduledProcedureStepID = m.scheduled_procedure_step_id
    step.ScheduledProcedureStepDescription = m.scheduled_procedure_step_description
    step.ScheduledProtocolCodeSequence = DicomSequence([])
    ds.ScheduledStepAttributesSequence = DicomSequence([step])
    ds.PatientName = m.patient_name
    ds.PatientID = m.patient_id
    ds.PatientBirthDate = m.patient_birth_date.strftime("%Y%m%d") if m.patient_birth_date else ""
    ds.PatientSex = m.patient_sex or ""
    ds.ReferencedPatientSequence = DicomSequence([])
    ds.PerformedProcedureStepID = uid[-16:]
    ds.PerformedStationAETitle = station_ae_title
    ds.PerformedStationName = ""
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate = started.strftime("%Y%m%d")
    ds.PerformedProcedureStepStartTime = started.strftime("%H%M%S")
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = description[:64]
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = DicomSequence([])
    ds.PerformedProcedureStepEndDate = ""
    ds.PerformedProcedureStepEndTime = ""
    ds.Modality = modality
    ds.StudyID = m.study_id
    ds.PerformedProtocolCodeSequence = DicomSequence([])
    ds.PerformedSeriesSequence = DicomSequence([])
    ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = DicomSequence([])
    if any(ord(ch) > 127 for ch in m.patient_name):
        ds.SpecificCharacterSet = "ISO_IR 192"
    return ds


def complete_procedure_step(step: ProcedureStep, series: list[PerformedSeries],
                            ended: datetime | None = None) -> None:
    _final(step, "COMPLETED", series, None, ended)


def discontinue_procedure_step(step: ProcedureStep, series: list[PerformedSeries],
                               reason: str = "cancelled", ended: datetime | None = None
                               ) -> None:
    if reason not in DISCONTINUED_REASONS:
        raise ValueError(f"unknown discontinuation reason {reason!r}")
    _final(step, "DISCONTINUED", series, reason, ended)


def _final(step: ProcedureStep, status: str, series: list[PerformedSeries],
           reason: str | None, ended: datetime | None) -> None:
    if not series:
        raise DeliveryError(f"MPPS {status} needs at least one performed series")
    ds = final_dataset(status, series, reason, ended or datetime.now())

    def update(assoc: Association) -> None:
        status_ds, _ = assoc.send_n_set(ds, ModalityPerformedProcedureStep,
                                        step.sop_instance_uid)
        _check(status_ds, "N-SET")

    with_association(step.dest, _contexts(), update, f"MPPS N-SET {status}")


def final_dataset(status: str, series: list[PerformedSeries], reason: str | None,
                  ended: datetime) -> Dataset:
    """The N-SET modification list (COMPLETED, or DISCONTINUED with a CID 9300 reason)."""
    ds = Dataset()
    ds.PerformedProcedureStepStatus = status
    ds.PerformedProcedureStepEndDate = ended.strftime("%Y%m%d")
    ds.PerformedProcedureStepEndTime = ended.strftime("%H%M%S")
    ds.PerformedSeriesSequence = DicomSequence([_series_item(s) for s in series])
    if reason is not None:
        code = Dataset()
        code.CodeValue, code.CodeMeaning = DISCONTINUED_REASONS[reason]
        code.CodingSchemeDesignator = "DCM"
        ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = DicomSequence([code])
    return ds


def _series_item(s: PerformedSeries) -> Dataset:
    item = Dataset()
    item.PerformingPhysicianName = ""
    item.ProtocolName = s.protocol_name
    item.OperatorsName = ""
    item.SeriesInstanceUID = s.series_instance_uid
    item.SeriesDescription = s.series_description[:64]
    item.RetrieveAETitle = ""
    refs = []
    for sop_class, sop_instance in s.instances:
        ref = Dataset()
        ref.ReferencedSOPClassUID = sop_class
        ref.ReferencedSOPInstanceUID = sop_instance
        refs.append(ref)
    item.ReferencedImageSequence = DicomSequence(refs)
    item.ReferencedNonImageCompositeSOPInstanceSequence = DicomSequence([])
    return item


def _contexts() -> list[tuple[str, str]]:
    uid = str(ModalityPerformedProcedureStep)
    return [(uid, EXPLICIT_LE), (uid, IMPLICIT_LE)]


def _check(status: Dataset | None, what: str) -> None:
    if status is None:
        raise DeliveryError(f"MPPS {what}: no response (timeout or aborted association)")
    code = int(status.get("Status", -1))
    if code != 0x0000:
        comment = status.get("ErrorComment", "")
        raise DeliveryError(f"MPPS {what} refused: status 0x{code:04X} {comment}".rstrip())
