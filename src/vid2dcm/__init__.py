"""vid2dcm: clinical video into conformant DICOM, copying the bitstream when DICOM accepts it.

The public API is the pipeline, one function per stage (see docs/architecture.md):
probe -> plan -> convert (produce + write) -> validate -> deliver; extract reads a bitstream back.
"""

from __future__ import annotations

from vid2dcm.core.errors import (
    DeliveryError,
    InputError,
    NotStorableError,
    OutputError,
    UsageError,
    Vid2DcmError,
)
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.core.metadata import CodedConcept, Metadata
from vid2dcm.core.version import __version__
from vid2dcm.delivery.receipts import Receipt
from vid2dcm.delivery.send import deliver
from vid2dcm.pipeline import ConversionResult, WrittenFile, convert
from vid2dcm.planning.plan import ContainerChoice, Plan, Request, TranscodePolicy
from vid2dcm.planning.plan import plan_conversion as plan
from vid2dcm.probing.probe import probe
from vid2dcm.reading.reader import extract_bitstream as extract
from vid2dcm.validation.validate import Report, validate

__all__ = [
    "CodedConcept",
    "ContainerChoice",
    "ConversionResult",
    "DeliveryError",
    "InputError",
    "MediaInfo",
    "Metadata",
    "NotStorableError",
    "OutputError",
    "Plan",
    "Receipt",
    "Report",
    "Request",
    "SopChoice",
    "TranscodePolicy",
    "UsageError",
    "Vid2DcmError",
    "WrittenFile",
    "__version__",
    "convert",
    "deliver",
    "extract",
    "plan",
    "probe",
    "validate",
]
