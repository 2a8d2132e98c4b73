"""vid2dcm: clinical video into conformant DICOM, copying the bitstream when DICOM accepts it.

The public API is the pipeline, one function per stage (see docs/architecture.md):
probe -> plan -> convert (produce + write) -> validate -> deliver; extract reads a bitstream back.

Names are imported on first use (PEP 562), so `import vid2dcm` and `vid2dcm --version` do not
pay for PyAV, pydicom and pynetdicom until a stage is actually called.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from vid2dcm.core.version import __version__

if TYPE_CHECKING:
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
    from vid2dcm.delivery.receipts import Receipt
    from vid2dcm.delivery.send import deliver
    from vid2dcm.pipeline import ConversionResult, WrittenFile, convert
    from vid2dcm.planning.plan import ContainerChoice, Plan, Request, TranscodePolicy
    from vid2dcm.planning.plan import plan_conversion as plan
    from vid2dcm.probing.probe import probe
    from vid2dcm.reading.reader import extract_bitstream as extract
    from vid2dcm.validation.validate import Report, validate

_WHERE: dict[str, tuple[str, str]] = {
    "DeliveryError": ("vid2dcm.core.errors", "DeliveryError"),
    "InputError": ("vid2dcm.core.errors", "InputError"),
    "NotStorableError": ("vid2dcm.core.errors", "NotStorableError"),
    "OutputError": ("vid2dcm.core.errors", "OutputError"),
    "UsageError": ("vid2dcm.core.errors", "UsageError"),
    "Vid2DcmError": ("vid2dcm.core.errors", "Vid2DcmError"),
    "SopChoice": ("vid2dcm.core.iods", "SopChoice"),
    "MediaInfo": ("vid2dcm.core.media_info", "MediaInfo"),
    "CodedConcept": ("vid2dcm.core.metadata", "CodedConcept"),
    "Metadata": ("vid2dcm.core.metadata", "Metadata"),
    "Receipt": ("vid2dcm.delivery.receipts", "Receipt"),
    "deliver": ("vid2dcm.delivery.send", "deliver"),
    "ConversionResult": ("vid2dcm.pipeline", "ConversionResult"),
    "WrittenFile": ("vid2dcm.pipeline", "WrittenFile"),
    "convert": ("vid2dcm.pipeline", "convert"),
    "ContainerChoice": ("vid2dcm.planning.plan", "ContainerChoice"),
    "Plan": ("vid2dcm.planning.plan", "Plan"),
    "Request": ("vid2dcm.planning.plan", "Request"),
    "TranscodePolicy": ("vid2dcm.planning.plan", "TranscodePolicy"),
    "plan": ("vid2dcm.planning.plan", "plan_conversion"),
    "probe": ("vid2dcm.probing.probe", "probe"),
    "extract": ("vid2dcm.reading.reader", "extract_bitstream"),
    "Report": ("vid2dcm.validation.validate", "Report"),
    "validate": ("vid2dcm.validation.validate", "validate"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _WHERE[name]
    except KeyError:
        raise AttributeError(f"module 'vid2dcm' has no attribute {name!r}") from None
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])


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
