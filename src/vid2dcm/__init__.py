"""vid2dcm: clinical video into conformant DICOM, copying the bitstream when DICOM accepts it."""

from __future__ import annotations

__version__ = "0.1.0"

from vid2dcm.conversion import ConversionResult, WrittenFile, convert
from vid2dcm.dicom.iods import SopChoice
from vid2dcm.dicom.reader import extract_bitstream as extract
from vid2dcm.dicom.validate import Report, validate
from vid2dcm.errors import (
    InputError,
    NotStorableError,
    OutputError,
    UsageError,
    Vid2DcmError,
)
from vid2dcm.media.info import MediaInfo
from vid2dcm.media.probe import probe
from vid2dcm.metadata import CodedConcept, Metadata
from vid2dcm.planning import ContainerChoice, Plan, Request, TranscodePolicy
from vid2dcm.planning import plan_conversion as plan

__all__ = [
    "CodedConcept",
    "ContainerChoice",
    "ConversionResult",
    "InputError",
    "MediaInfo",
    "Metadata",
    "NotStorableError",
    "OutputError",
    "Plan",
    "Report",
    "Request",
    "SopChoice",
    "TranscodePolicy",
    "UsageError",
    "Vid2DcmError",
    "WrittenFile",
    "__version__",
    "convert",
    "extract",
    "plan",
    "probe",
    "validate",
]
