"""Other representations of an instance, for peers that refuse the one it has.

A Fragmentable file whose stream fits one fragment is rewritten under its non-fragmentable twin
(same pixels, same SOP Instance UID); anything else is extracted and converted again, filed in
the same study and series."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.uid import UID

from vid2dcm.core.dates import parse_da, parse_dt
from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.metadata import CodedConcept, Metadata
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request, TranscodePolicy
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.writing.encapsulation import CHUNK

MAX_SIZE_FOR = {"1.2.840.10008.1.2.4.102": (1920, 1080), "1.2.840.10008.1.2.4.104": (1920, 1080)}


@dataclass(frozen=True)
class Alternative:
    paths: tuple[Path, ...]
    note: str


def twin(source: Path, target_syntax: str, out: Path) -> Alternative | None:
    """The same file under another transfer syntax, when its bitstream is one fragment."""
    video = open_video_object(source)
    if video.layout is None or len(video.layout.fragments) != 1:
        return None
    elem = video.dataset.get_item("PixelData", keep_deferred=True)
    value_tell = getattr(elem, "value_tell", None)
    if value_tell is None:
        return None
    ds = dcmread(source, stop_before_pixels=True)
    ds.file_meta.TransferSyntaxUID = UID(target_syntax)
    with out.open("wb") as dst, source.open("rb") as src:
        dcmwrite(dst, ds, enforce_file_format=True)
        src.seek(value_tell - 12)
        shutil.copyfileobj(src, dst, CHUNK)
    return Alternative((out,), f"rewritten as {target_syntax}, same SOP Instance UID")


def reconvert(source: Path, work: Path, request: Request) -> Alternative:
    """Extract the pictures and convert them again with request (same study and series)."""
    video = open_video_object(source)
    work.mkdir(parents=True, exist_ok=True)
    media = work / "media.bin"
    extract_bitstream(source, media, overwrite=True)
    iod = iod_for_sop_class(str(video.dataset.SOPClassUID))
    if iod is not None:
        request = replace(request, sop=iod.choice)
    result = convert(media, work / f"{source.stem}.dcm", metadata=metadata_from(video.dataset),
                     options=request, overwrite=True)
    media.unlink(missing_ok=True)
    return Alternative(tuple(f.path for f in result.files),
                       f"re-encoded as {result.files[0].transfer_syntax_uid}")


def transcode_request(target_syntax: str) -> Request:
    return Request(transcode=TranscodePolicy.ALWAYS, max_size=MAX_SIZE_FOR.get(target_syntax))


def metadata_from(ds: Dataset) -> Metadata:
    """Patient, study and series facts of an existing instance, so a re-encoded copy files
    under the same patient, study and series."""
    region = ds.get("AnatomicRegionSequence")
    fields: dict[str, object] = {
        "patient_name": str(ds.get("PatientName", "")),
        "patient_id": str(ds.get("PatientID", "")),
        "patient_birth_date": parse_da(ds.get("PatientBirthDate")),
        "patient_sex": ds.get("PatientSex") or None,
        "accession_number": str(ds.get("AccessionNumber", "")),
        "study_instance_uid": str(ds.StudyInstanceUID),
        "study_id": str(ds.get("StudyID", "")),
        "study_description": str(ds.get("StudyDescription", "")),
        "referring_physician_name": str(ds.get("ReferringPhysicianName", "")),
        "series_instance_uid": str(ds.SeriesInstanceUID),
        "series_number": int(ds.get("SeriesNumber") or 1),
        "series_description": str(ds.get("SeriesDescription", "")),
        "manufacturer": str(ds.get("Manufacturer", "")),
        "acquisition_datetime": parse_dt(ds.get("AcquisitionDateTime")),
    }
    if region:
        item = region[0]
        fields["anatomic_region"] = CodedConcept(value=item.CodeValue,
                                                 scheme=item.CodingSchemeDesignator,
                                                 meaning=item.CodeMeaning)
    if ds.get("ImageLaterality") in ("R", "L", "U", "B"):
        fields["image_laterality"] = ds.ImageLaterality
    for request in ds.get("RequestAttributesSequence", [])[:1]:
        for keyword, field in (("RequestedProcedureID", "requested_procedure_id"),
                               ("RequestedProcedureDescription",
                                "requested_procedure_description"),
                               ("ScheduledProcedureStepID", "scheduled_procedure_step_id"),
                               ("ScheduledProcedureStepDescription",
                                "scheduled_procedure_step_description")):
            if request.get(keyword):
                fields[field] = str(request.get(keyword))
    return Metadata.model_validate({k: v for k, v in fields.items() if v is not None})
