"""Reading video instances back: the header without the pixels, and the bitstream in chunks."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from functools import cached_property
from pathlib import Path
from typing import Any

import av
import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.pixels.utils import iter_pixels

from vid2dcm.core.errors import InputError, OutputError
from vid2dcm.core.syntaxes import by_uid
from vid2dcm.writing.encapsulation import CHUNK, FragmentReader, PixelDataLayout, read_layout


@dataclass(frozen=True)
class VideoObject:
    """A DICOM file opened lazily: header parsed, Pixel Data located but not loaded."""

    path: Path
    dataset: Dataset
    transfer_syntax_uid: str
    layout: PixelDataLayout | None

    @cached_property
    def bitstream_length(self) -> int:
        """Length of the stream once fragments are joined, without the pad byte: from
        (7FE0,0003) when present, else, for an MP4 whose boxes end one byte before the last
        fragment does, that length (the 0x00 pad of an odd stream), else the stored length."""
        if self.layout is None:
            return 0
        stored = self.layout.stored_length
        declared = self.dataset.get("EncapsulatedPixelDataValueTotalLength")
        if declared is not None and 0 < int(declared) <= stored:
            return int(declared)
        with FragmentReader(self.path, self.layout, stored) as raw:
            if mp4_boxes_end(raw, stored) == stored - 1:
                return stored - 1
        return stored

    def open_bitstream(self) -> FragmentReader:
        if self.layout is None:
            raise InputError(f"{self.path}: holds no encapsulated Pixel Data")
        return FragmentReader(self.path, self.layout, self.bitstream_length)

    @contextmanager
    def open_media(self) -> Iterator[Any]:
        """The embedded video opened by PyAV straight from the DICOM file."""
        with self.open_bitstream() as raw, av.open(raw) as container:
            yield container


def mp4_boxes_end(raw: io.RawIOBase, length: int) -> int | None:
    """Where the top-level boxes of an ISO BMFF (MP4) stream end, or None when the stream
    is not one (ISO/IEC 14496-12 4.2: 32-bit size, 1 = 64-bit size follows, 0 = to the end)."""
    raw.seek(4)
    if raw.read(4) != b"ftyp":
        return None
    at = 0
    while at + 8 <= length:
        raw.seek(at)
        header = raw.read(16)
        size = int.from_bytes(header[:4], "big")
        if size == 1 and len(header) == 16:
            size = int.from_bytes(header[8:16], "big")
        elif size == 0:
            return length
        if size < 8:
            return None
        at += size
    return at


def open_video_object(path: str | Path) -> VideoObject:
    """The header of any DICOM instance, and where its Pixel Data lies. A file that is no
    composite instance (no SOP Class UID) or ends inside an element is an InputError (exit 3):
    reporting on what is left of it would be reporting on another file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        ds = dcmread(path, defer_size=1024)
    except (InvalidDicomError, EOFError, OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from exc
    _refuse_truncated(path, ds)
    if not str(ds.get("SOPClassUID", "")):
        raise InputError(f"{path}: not a DICOM composite instance (no SOP Class UID)")
    ts = str(ds.file_meta.get("TransferSyntaxUID", ""))
    layout = None
    if "PixelData" in ds:
        elem = ds.get_item("PixelData", keep_deferred=True)
        value_tell = getattr(elem, "value_tell", None)
        if getattr(elem, "length", 0) == 0xFFFFFFFF and value_tell is not None:
            with path.open("rb") as fp:
                try:
                    layout = read_layout(fp, value_tell)
                except ValueError as exc:
                    raise InputError(f"{path}: damaged Pixel Data ({exc})") from exc
    return VideoObject(path, ds, ts, layout)


def _refuse_truncated(path: Path, ds: Dataset) -> None:
    """pydicom stops quietly at the end of a short file; an element whose declared length
    runs past the end of the file means the file was cut."""
    size = path.stat().st_size
    for tag in list(ds.keys()):
        raw = ds.get_item(tag, keep_deferred=True)
        tell, length = getattr(raw, "value_tell", None), getattr(raw, "length", None)
        if tell is not None and length not in (None, 0xFFFFFFFF) and tell + length > size:
            raise InputError(f"{path}: truncated: element {tag} needs {tell + length} bytes, "
                             f"the file has {size}")


def is_video(video: VideoObject) -> bool:
    """Pixel Data holds a video bitstream (an MPEG transfer syntax), not separate frames."""
    return by_uid(video.transfer_syntax_uid) is not None


def frames_unsupported(video: VideoObject) -> str | None:
    """Why the frames of this object cannot be turned into a video, or None when they can:
    8-bit colour frames (RGB or YBR), as every IOD vid2dcm writes frame by frame has."""
    ds = video.dataset
    if "PixelData" not in ds:
        return "holds no Pixel Data"
    photometric = str(ds.get("PhotometricInterpretation", ""))
    bits = int(ds.get("BitsAllocated", 0) or 0)
    samples = int(ds.get("SamplesPerPixel", 0) or 0)
    if samples != 3 or not (photometric == "RGB" or photometric.startswith("YBR")):
        return (f"holds {photometric or 'unknown'} frames ({samples} sample(s) per pixel); "
                "only colour frames (RGB or YBR) can be extracted as video")
    if bits != 8:
        return f"holds {bits}-bit frames; only 8-bit frames can be extracted as video"
    return None


def frame_count(ds: Dataset) -> int:
    """Number of Frames, 1 for a single-frame image that does not carry it."""
    value = ds.get("NumberOfFrames")
    return int(value) if value not in (None, "") else 1


def iter_frames(video: VideoObject) -> Iterator[np.ndarray]:
    """Decoded RGB frames of a frame-by-frame object, one at a time (pydicom's decoders:
    RLE natively, JPEG/JPEG-LS through libjpeg, J2K through OpenJPEG)."""
    yield from iter_pixels(video.path)


def extract_bitstream(path: str | Path, out: str | Path, overwrite: bool = False) -> int:
    """Stream the embedded video to out (pad byte removed); returns the bytes written.

    A frame-by-frame object has no bitstream: its decoded frames are written as a lossless
    FFV1 video (Matroska) at the Cine rate instead, so it plays and can be compared."""
    video = open_video_object(path)
    out = Path(out)
    if out.exists() and not overwrite:
        raise OutputError(f"{out} already exists (use --overwrite to replace it)")
    if not is_video(video):
        why = frames_unsupported(video)
        if why is not None:
            raise InputError(f"{video.path}: unsupported: {why}")
        return _frames_to_video(video, out)
    partial = out.with_name(out.name + ".partial")
    written = 0
    try:
        with video.open_bitstream() as src, partial.open("wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)
                written += len(chunk)
            dst.flush()
            os.fsync(dst.fileno())
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from exc
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return written


def _frames_to_video(video: VideoObject, out: Path) -> int:
    rate = Fraction(int(video.dataset.get("CineRate") or 25))
    partial = out.with_name(out.name + ".partial")
    try:
        with av.open(str(partial), "w", format="matroska") as container:
            stream = container.add_stream("ffv1", rate=rate)
            stream.width, stream.height = int(video.dataset.Columns), int(video.dataset.Rows)
            stream.pix_fmt = "yuv444p"
            for index, pixels in enumerate(_decoded(video)):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), format="rgb24")
                frame.pts = index
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
        partial.replace(out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out.stat().st_size


def _decoded(video: VideoObject) -> Iterator[np.ndarray]:
    """Frames as 8-bit RGB; a frame no decoder can read is an InputError, not a crash."""
    frames = iter_frames(video)
    index = 0
    while True:
        try:
            pixels = next(frames)
        except StopIteration:
            return
        except (ValueError, RuntimeError, NotImplementedError, OSError) as exc:
            raise InputError(f"{video.path}: frame {index + 1} does not decode ({exc})") from exc
        index += 1
        if pixels.ndim == 2 or pixels.dtype != np.uint8:
            raise InputError(f"{video.path}: unsupported: frame {index} decodes to "
                             f"{pixels.dtype} {pixels.shape}, not 8-bit colour")
        yield pixels
