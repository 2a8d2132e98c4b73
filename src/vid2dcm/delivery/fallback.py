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

from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.metadata import Metadata, metadata_fields_from, tolerant_metadata
from vid2dcm.core.syntaxes import by_uid
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request, TranscodePolicy
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.writing.encapsulation import CHUNK


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
    syntax = by_uid(target_syntax)
    return Request(transcode=TranscodePolicy.ALWAYS,
                   max_size=syntax.transcode_box if syntax else None)


def metadata_from(ds: Dataset) -> Metadata:
    """Patient, study and series facts of an existing instance (through core.metadata's one
    table), so a re-encoded copy files under the same patient, study and series. A value the
    record refuses (a foreign file's odd Patient Sex, say) is left out, never guessed."""
    return tolerant_metadata(metadata_fields_from(ds))
