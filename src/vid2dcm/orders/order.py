"""The order record: what the HIS (HL7 v2 or FHIR) asked for, in vid2dcm's own terms.

Patient and order facts are `Metadata` fields (the one record that fills the DICOM header via
core.metadata's attribute table), so an order binds to a recording exactly like a Modality
Worklist entry does. What DICOM has no Metadata field for (placer/filler numbers, status, the
assigning authority of the patient ID, the ward) lives beside it on the Order.
"""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from vid2dcm.core.metadata import ATTRIBUTE, CodedConcept, Metadata, to_dicom


class OrderStatus(StrEnum):
    """Where the order stands (HL7 table 0038 ORC-5, FHIR ServiceRequest.status, reduced)."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in-progress"
    COMPLETED = "completed"
    CANCELLED = "cancelled"

    @property
    def is_open(self) -> bool:
        return self in (OrderStatus.SCHEDULED, OrderStatus.IN_PROGRESS)


class OrderSource(StrEnum):
    HL7 = "hl7"
    FHIR = "fhir"
    MANUAL = "manual"


class Order(BaseModel):
    """One requested procedure. The placer order number is the key (ORC-2 /
    ServiceRequest.identifier PLAC): the HIS cancels and changes by it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    placer_order_number: str = Field(min_length=1, max_length=64)
    filler_order_number: str = Field(default="", max_length=64)
    status: OrderStatus = OrderStatus.SCHEDULED
    source: OrderSource = OrderSource.HL7
    metadata: Metadata = Metadata()
    """Patient, accession, study UID, requested procedure: the fields the header gets."""
    patient_id_issuer: str = Field(default="", max_length=64)
    """PID-3.4 assigning authority (DICOM Issuer of Patient ID, PS3.3 C.7.1.1)."""
    procedure: CodedConcept | None = None
    """OBR-4 universal service identifier / ServiceRequest.code: routing keys on it."""
    modality: str = Field(default="", max_length=16)
    department: str = Field(default="", max_length=64)
    """PV1-3 point of care (ward) / ServiceRequest.locationCode."""
    ordering_service: str = Field(default="", max_length=64)
    """ORC-17 entering organization / ServiceRequest.requester display."""
    scheduled_start: datetime | None = None
    fhir_id: str = Field(default="", max_length=64)
    """Logical id of the ServiceRequest on the FHIR server (ImagingStudy.basedOn)."""
    updated: datetime | None = None

    @property
    def accession_number(self) -> str:
        return self.metadata.accession_number

    @property
    def patient_id(self) -> str:
        return self.metadata.patient_id

    def scheduled_on(self, day: date) -> bool:
        return self.scheduled_start is not None and self.scheduled_start.date() == day

    def metadata_fields(self) -> dict[str, object]:
        """Metadata fields for an instance acquired for this order, the same shape
        `WorklistEntry.metadata_fields()` gives: set values only; the requested procedure also
        describes the study."""
        fields = self.metadata.model_dump(exclude_unset=True, exclude_defaults=True)
        if "requested_procedure_description" in fields:
            fields.setdefault("study_description", fields["requested_procedure_description"])
        return fields

    def worklist_fields(self) -> dict[str, str]:
        """The order as the fields of a Modality Worklist entry (delivery's `WorklistEntry`,
        DICOM value strings), so the staff page can list HL7/FHIR orders and worklist answers
        alike: `WorklistEntry(**order.worklist_fields())`."""
        md = self.metadata
        fields = {name: str(to_dicom(ATTRIBUTE[name].vr, getattr(md, name)) or "")
                  for name in ("patient_name", "patient_id", "patient_birth_date", "patient_sex",
                               "accession_number", "study_instance_uid",
                               "requested_procedure_id", "requested_procedure_description",
                               "referring_physician_name", "scheduled_procedure_step_id",
                               "scheduled_procedure_step_description")}
        start = self.scheduled_start
        fields.update(modality=self.modality,
                      scheduled_date=start.strftime("%Y%m%d") if start else "",
                      scheduled_time=start.strftime("%H%M%S") if start else "")
        return fields
