"""A still taken during a recording, as a single-frame DICOM image in the same study.

VL Photographic Image (PS3.3 A.33.4) or VL Endoscopic Image (A.32.1), matching the video's
IOD; Secondary Capture (A.8.1) for the others. Native RGB, so nothing is lost twice. The
General Image Module's Referenced Image Sequence (C.7.6.1) points at the video instance that
was being recorded when the still was taken, with purpose "Source image" (CID 7201): the
still is one of that video's pictures.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import av
from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    SecondaryCaptureImageStorage,
    VLEndoscopicImageStorage,
    VLPhotographicImageStorage,
)

from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import Metadata
from vid2dcm.core.version import __version__

STILL_CLASSES: dict[SopChoice, tuple[str, str]] = {
    SopChoice.PHOTOGRAPHIC: (str(VLPhotographicImageStorage), "XC"),
    SopChoice.ENDOSCOPIC: (str(VLEndoscopicImageStorage), "ES"),
}
"""Single-frame companions of the video IODs; anything else becomes Secondary Capture."""


def still_class(sop: SopChoice) -> str:
    return STILL_CLASSES.get(sop, (str(SecondaryCaptureImageStorage), "OT"))[0]


def write_still(png: Path, target: Path, *, metadata: Metadata, sop: SopChoice,
                study_uid: str, series_uid: str, sop_instance_uid: str, instance_number: int,
                taken_at: datetime, video: tuple[str, str] | None) -> Path:
    """video is (SOP Class UID, SOP Instance UID) of the recording the still comes from."""
    with av.open(str(png)) as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
    pixels = frame.to_ndarray()
    sop_class, modality = STILL_CLASSES.get(sop, (str(SecondaryCaptureImageStorage), "OT"))
    ds = Dataset()
    m = metadata
    ds.PatientName = m.patient_name
    ds.PatientID = m.patient_id
    ds.PatientBirthDate = m.patient_birth_date.strftime("%Y%m%d") if m.patient_birth_date else ""
    ds.PatientSex = m.patient_sex or ""
    ds.StudyInstanceUID = study_uid
    ds.StudyDate = (m.study_date or taken_at.date()).strftime("%Y%m%d")
    ds.StudyTime = (m.study_time or taken_at.time()).strftime("%H%M%S")
    ds.ReferringPhysicianName = m.referring_physician_name
    ds.StudyID = m.study_id
    ds.AccessionNumber = m.accession_number
    if m.study_description:
        ds.StudyDescription = m.study_description
    ds.Modality = modality
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = m.series_number
    ds.SeriesDescription = (m.series_description or "recording")[:56] + " stills"
    ds.Manufacturer = m.manufacturer
    if m.institution_name:
        ds.InstitutionName = m.institution_name
    if m.station_name:
        ds.StationName = m.station_name
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = ""
    ds.ContentDate = taken_at.strftime("%Y%m%d")
    ds.ContentTime = taken_at.strftime("%H%M%S.%f")
    ds.AcquisitionDateTime = taken_at.strftime("%Y%m%d%H%M%S.%f")
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.LossyImageCompression = "00"
    if video is not None:
        ref = Dataset()
        ref.ReferencedSOPClassUID = video[0]
        ref.ReferencedSOPInstanceUID = video[1]
        purpose = Dataset()
        purpose.CodeValue, purpose.CodingSchemeDesignator = "121324", "DCM"
        purpose.CodeMeaning = "Source image"
        ref.PurposeOfReferenceCodeSequence = DicomSequence([purpose])
        ds.ReferencedImageSequence = DicomSequence([ref])
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "RGB"
    ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = pixels.shape[0], pixels.shape[1]
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    if sop in STILL_CLASSES:
        ds.AcquisitionContextSequence = DicomSequence([])
        region = Dataset()
        region.CodeValue = m.anatomic_region.value
        region.CodingSchemeDesignator = m.anatomic_region.scheme
        region.CodeMeaning = m.anatomic_region.meaning
        ds.AnatomicRegionSequence = DicomSequence([region])
        ds.ImageLaterality = m.image_laterality
    else:
        ds.ConversionType = "WSD"
        ds.BurnedInAnnotation = m.burned_in_annotation or "YES"
        ds.Laterality = ""
    if any(ord(ch) > 127 for ch in f"{m.patient_name}{m.study_description}"
           f"{m.series_description}{m.institution_name}"):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_instance_uid
    now = datetime.now().astimezone()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.TimezoneOffsetFromUTC = now.strftime("%z")
    ds.SoftwareVersions = f"vid2dcm {__version__}"
    ds.PixelData = pixels.tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"VID2DCM_{__version__}"[:16]
    ds.file_meta = meta
    partial = target.with_name(target.name + ".partial")
    ds.save_as(partial, enforce_file_format=True)
    partial.replace(target)
    return target
