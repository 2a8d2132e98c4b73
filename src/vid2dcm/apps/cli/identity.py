"""Issue 11: never deliver an instance without a Patient ID unless asked to.

A PACS files an instance under its Patient ID (0010,0020; Type 2 in the Patient Module, PS3.3
C.7.1.1, so an empty value is conformant). Empty, it lands under an unknown patient: nobody
finds it by the patient's number, and some archives merge every such instance into one
"patient". So every delivering command (send, convert --send/--stow, watch --to,
record --send) refuses, before any work or traffic, unless --allow-unidentified is given.
Patient values are never echoed: the messages name only the file."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from vid2dcm.apps.cli.codes import UnidentifiedError
from vid2dcm.core.metadata import Metadata

REMEDY = "give --patient-id ID (or patient_id in --metadata, or --worklist), or pass " \
         "--allow-unidentified"


def require_patient(meta: Metadata, subject: str | Path, *, allowed: bool,
                    delivering: bool) -> None:
    """Refuse, before converting, when the result would be delivered without a Patient ID."""
    if delivering and not allowed and not meta.patient_id.strip():
        raise UnidentifiedError(f"{subject}: no Patient ID to deliver with; {REMEDY}")


def patient_id_of(path: Path) -> str:
    """The file's Patient ID ("" when absent); only the header up to it is read."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    from vid2dcm.core.errors import InputError

    try:
        ds = dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
    except (InvalidDicomError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: not a DICOM file ({exc})") from exc
    return str(ds.get("PatientID", "") or "").strip()


def require_identified_files(files: Iterable[Path], *, allowed: bool) -> None:
    """Refuse the first file without a Patient ID, before anything is sent."""
    if allowed:
        return
    for path in files:
        if not patient_id_of(path):
            raise UnidentifiedError(f"{path}: no Patient ID (0010,0020); set one (e.g. "
                                    "dcmodify -i \"(0010,0020)=ID\" FILE, or convert again "
                                    "with --patient-id) or pass --allow-unidentified")
