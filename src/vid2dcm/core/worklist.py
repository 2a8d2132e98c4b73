"""A scheduled procedure step as vid2dcm uses it: the record a DICOM worklist answer, an HL7 or
FHIR order and the gateway's /worklist all reduce to, declared once here (PS3.4 K.6.1.2.2
return keys) so the transports, the API and `vid2dcm worklist --json` cannot drift apart."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from vid2dcm.core.metadata import METADATA_ATTRIBUTES, from_dicom

ORDER_FIELDS = frozenset({
    "patient_name", "patient_id", "patient_birth_date", "patient_sex", "accession_number",
    "study_instance_uid", "referring_physician_name", "requested_procedure_id",
    "requested_procedure_description", "scheduled_procedure_step_id",
    "scheduled_procedure_step_description"})
"""What a worklist answer decides about an acquisition (PS3.4 K.6.1.2; IHE RAD-5)."""


class WorklistEntry(BaseModel):
    """One scheduled procedure step (PS3.4 K.6.1.2.2 return keys). The one declaration of these
    fields: the gateway's /worklist items and `vid2dcm worklist --json` are this model."""

    model_config = ConfigDict(frozen=True, extra="forbid")
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
