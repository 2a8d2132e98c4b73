"""Key Object Selection (KOS) manifest: "these are the key objects of this study".

A Key Object Selection Document (PS3.3 A.35.4, template TID 2010) built with highdicom's `ko`
module, referencing video instances (IMAGE items: they have Rows/Columns) and snapshots. It is
sent with the study so that a viewer opens the key objects first, and it is the building block
of IHE XDS-I.b: the manifest an Imaging Document Source publishes is exactly such a KOS, titled
(113030, DCM, "Manifest") (IHE RAD TF-3 4.68). What a full XDS-I.b submission still needs is in
docs/integration.md.

The document inherits patient and study from the referenced instances (highdicom refuses
references to more than one study), gets its own series, and is written with Explicit VR Little
Endian; `uid_seed` makes its UIDs repeatable so that a re-sent manifest replaces itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import highdicom as hd
from highdicom.ko import KeyObjectSelection, KeyObjectSelectionDocument
from pydicom import Dataset, dcmread
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pydicom.uid import generate_uid

from vid2dcm.core.errors import InputError, OutputError
from vid2dcm.core.version import __version__

TITLES: dict[str, Code] = {
    "of-interest": Code("113000", "DCM", "Of Interest"),
    "manifest": Code("113030", "DCM", "Manifest"),
    "for-teaching": Code("113004", "DCM", "For Teaching"),
    "quality-issue": Code("113001", "DCM", "Rejected for Quality Reasons"),
}
"""Document titles from CID 7010 "Key Object Selection Document Title"."""

Title = Literal["of-interest", "manifest", "for-teaching", "quality-issue"]


def read_references(paths: Sequence[Path]) -> list[Dataset]:
    """The headers of the objects to reference (pixel data is never read)."""
    found: list[Dataset] = []
    for path in paths:
        try:
            found.append(dcmread(path, stop_before_pixels=True))
        except Exception as exc:
            raise InputError(f"{path}: not a readable DICOM file ({type(exc).__name__})") \
                from None
    if not found:
        raise InputError("a key object selection needs at least one instance")
    studies = {str(ds.StudyInstanceUID) for ds in found}
    if len(studies) != 1:
        raise InputError(f"the instances belong to {len(studies)} studies; a key object "
                         "selection covers one")
    return found


def build_kos(paths: Sequence[Path], out: Path, *, title: Title = "of-interest",
              description: str | None = None, series_number: int = 990,
              uid_seed: str | None = None, manufacturer: str = "vid2dcm",
              institution_name: str | None = None) -> Path:
    """Write the KOS for `paths` to `out` (a file path) and return it."""
    if title not in TITLES:
        raise InputError(f"unknown key object title {title!r} (one of {', '.join(TITLES)})")
    refs = read_references(paths)
    seed = None if uid_seed is None else [f"{uid_seed}/kos/{title}"]
    series_uid = generate_uid(entropy_srcs=None if seed is None else [*seed, "series"])
    sop_uid = generate_uid(entropy_srcs=None if seed is None else [*seed, "instance"])
    content = KeyObjectSelection(
        document_title=TITLES[title],
        referenced_objects=refs,
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device,
            observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
                uid=generate_uid(entropy_srcs=["vid2dcm", "observer"]),
                manufacturer_name=manufacturer[:64], model_name="vid2dcm")),
        description=description[:1024] if description else None,
    )
    requested = _requested_procedures(refs)
    try:
        document = KeyObjectSelectionDocument(
            evidence=refs, content=content, series_instance_uid=series_uid,
            series_number=series_number, sop_instance_uid=sop_uid, instance_number=1,
            manufacturer=manufacturer[:64], institution_name=institution_name,
            requested_procedures=requested or None)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InputError(f"key object selection: {exc}") from None
    document.SoftwareVersions = __version__
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    try:
        document.save_as(tmp, enforce_file_format=True)
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {exc}") from None
    return out


def _requested_procedures(refs: Sequence[Dataset]) -> list[Dataset]:
    """Referenced Request Sequence items (PS3.3 C.17.2 SR Document General Module) from the
    instances' Request Attributes: the accession and requested procedure the manifest is for.
    """
    items = []
    first = refs[0]
    for req in first.get("RequestAttributesSequence", []):
        item = Dataset()
        item.StudyInstanceUID = first.StudyInstanceUID
        item.AccessionNumber = first.get("AccessionNumber", "")
        item.ReferencedStudySequence = []
        item.RequestedProcedureID = req.get("RequestedProcedureID", "")
        item.RequestedProcedureDescription = req.get("RequestedProcedureDescription", "")
        item.RequestedProcedureCodeSequence = []
        item.PlacerOrderNumberImagingServiceRequest = ""
        item.FillerOrderNumberImagingServiceRequest = ""
        items.append(item)
    return items
