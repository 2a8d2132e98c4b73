"""Other representations of an instance, for peers that refuse the one it has.

A Fragmentable file whose stream fits one item is rewritten under its non-fragmentable twin,
its fragments joined into that one item: the same pixels in another transfer syntax, so the
same SOP Instance UID (PS3.5 10: a transfer syntax is an encoding, not content). A stream too
long for one item must be split into several instances (new UIDs); those are remuxed, not
re-encoded, and each names the instance it came from. Anything else is extracted and converted
again, filed in the same study and series."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import UID

from vid2dcm.core.errors import InputError
from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.metadata import Metadata, metadata_fields_from, tolerant_metadata
from vid2dcm.core.syntaxes import MAX_ITEM_BYTES, by_uid
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Action, Request, TranscodePolicy
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.writing.encapsulation import (
    CHUNK,
    PIXEL_DATA_HEADER,
    SEQUENCE_DELIMITER,
    item_header,
)


@dataclass(frozen=True)
class Alternative:
    paths: tuple[Path, ...]
    note: str


def twin(source: Path, target_syntax: str, out: Path) -> Alternative | None:
    """The same instance under another transfer syntax, its fragments joined into one item,
    when the joined stream fits one item (2^32-2 bytes); None otherwise."""
    video = open_video_object(source)
    layout = video.layout
    if layout is None or not layout.fragments or layout.stored_length > MAX_ITEM_BYTES:
        return None
    ds = dcmread(source, stop_before_pixels=True)
    ds.file_meta.TransferSyntaxUID = UID(target_syntax)
    if "EncapsulatedPixelDataValueTotalLength" in ds:  # one item: see writer
        del ds.EncapsulatedPixelDataValueTotalLength
    with out.open("wb") as dst, source.open("rb") as src:
        dcmwrite(dst, ds, enforce_file_format=True)
        dst.write(PIXEL_DATA_HEADER + item_header(0) + item_header(layout.stored_length))
        for fragment in layout.fragments:
            src.seek(fragment.offset)
            left = fragment.length
            while left:
                chunk = src.read(min(CHUNK, left))
                if not chunk:
                    raise InputError(f"{source}: Pixel Data ends early")
                dst.write(chunk)
                left -= len(chunk)
        dst.write(SEQUENCE_DELIMITER)
    joined = f", {len(layout.fragments)} fragments joined" if len(layout.fragments) > 1 else ""
    return Alternative((out,), f"rewritten as {target_syntax}{joined}, same SOP Instance UID")


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
    paths = tuple(f.path for f in result.files)
    original = str(video.dataset.SOPInstanceUID)
    if len(paths) > 1 or result.files[0].sop_instance_uid != original:
        for path in paths:
            _refer_to(path, video.dataset)
    how = "remuxed" if all(f.action is Action.COPY for f in result.files) else "re-encoded"
    parts = f" into {len(paths)} instances" if len(paths) > 1 else ""
    return Alternative(paths, f"{how}{parts} as {result.files[0].transfer_syntax_uid}, "
                       f"new SOP Instance UID; Source Image Sequence names {original}")


def _refer_to(path: Path, source: Dataset) -> None:
    """Source Image Sequence (0008,2112, General Image module, PS3.3 C.7.6.1) naming the
    instance this one was made from, so an archive holding both can tie them together. Only
    the header is rewritten; Pixel Data is copied across in chunks."""
    video = open_video_object(path)
    elem = video.dataset.get_item("PixelData", keep_deferred=True)
    value_tell = getattr(elem, "value_tell", None)
    if value_tell is None:
        raise InputError(f"{path}: Pixel Data not found")
    ds = dcmread(path, stop_before_pixels=True)
    item = Dataset()
    item.ReferencedSOPClassUID = source.SOPClassUID
    item.ReferencedSOPInstanceUID = source.SOPInstanceUID
    ds.SourceImageSequence = DicomSequence([item])
    linked = path.with_name(path.name + ".linked")
    header = 8 if ds.file_meta.TransferSyntaxUID.is_implicit_VR else 12  # tag, (VR), length
    with linked.open("wb") as dst, path.open("rb") as src:
        dcmwrite(dst, ds, enforce_file_format=True)
        src.seek(value_tell - header)
        shutil.copyfileobj(src, dst, CHUNK)
    linked.replace(path)


def transcode_request(target_syntax: str) -> Request:
    syntax = by_uid(target_syntax)
    return Request(transcode=TranscodePolicy.ALWAYS,
                   max_size=syntax.transcode_box if syntax else None)


def metadata_from(ds: Dataset) -> Metadata:
    """Patient, study and series facts of an existing instance (through core.metadata's one
    table), so a re-encoded copy files under the same patient, study and series. A value the
    record refuses (a foreign file's odd Patient Sex, say) is left out, never guessed."""
    return tolerant_metadata(metadata_fields_from(ds))
