"""validate: a video instance checked by vid2dcm's own rules and, when installed, by dciodvfy.

Own checks compare the header with the bitstream it carries (frames, size, codec, level);
dciodvfy checks the IOD. dicom3tools does not know HEVC or the Fragmentable syntaxes, so for
those it checks an H.264-labelled twin of the header: same attributes, token Pixel Data.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.filewriter import dcmwrite
from pydicom.multival import MultiValue
from pydicom.uid import MPEG4HP41, UID

from vid2dcm.core.conformance import choose_transfer_syntax
from vid2dcm.core.errors import InputError
from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.core.syntaxes import VideoTransferSyntax, allows_multiple_fragments, by_uid
from vid2dcm.probing.probe import probe_opened
from vid2dcm.reading.reader import VideoObject, frame_count, iter_frames, open_video_object
from vid2dcm.writing.encapsulation import write_pixel_data

PIXEL_ATTRIBUTES = {
    "SamplesPerPixel": 3,
    "PhotometricInterpretation": "YBR_PARTIAL_420",
    "PlanarConfiguration": 0,
    "BitsAllocated": 8,
    "BitsStored": 8,
    "HighBit": 7,
    "PixelRepresentation": 0,
}
DCIODVFY_LINE = re.compile(r"^(Error|Warning) - (.*)$")


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    source: str
    message: str


@dataclass(frozen=True)
class Report:
    path: Path
    findings: tuple[Finding, ...]
    bitstream: MediaInfo | None = None
    dciodvfy: str = field(default="not run")
    """'passed', 'failed', 'crashed (...)', any of these '... on twin', 'not installed' or
    'not run'."""

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(path: str | Path, use_dciodvfy: bool = True) -> Report:
    """A video object is checked against its bitstream; any other image object (frames,
    foreign or vid2dcm's own) by decoding its frames. A file with no Pixel Data is no image
    vid2dcm can judge: InputError (exit 3)."""
    path = Path(path)
    video = open_video_object(path)
    if "PixelData" not in video.dataset:
        raise InputError(f"{path}: unsupported: holds no Pixel Data "
                         f"({video.dataset.get('SOPClassUID', 'unknown SOP class')}); "
                         "only image objects can be validated")
    findings: list[Finding] = []
    syntax = by_uid(video.transfer_syntax_uid)
    bitstream = None
    if syntax is None:
        findings += _check_frame_header(video.dataset)
        findings += _check_frames(video)
    else:
        findings += _check_header(video.dataset)
        findings += _check_encapsulation(video)
        if video.layout is not None and video.layout.fragments:
            bitstream, found = _check_bitstream(video, syntax)
            findings += found
    status = "not run"
    if use_dciodvfy:
        status, found = run_dciodvfy(video)
        findings += found
    return Report(path, tuple(findings), bitstream, status)


def _own(severity: Severity, message: str) -> Finding:
    return Finding(severity, "vid2dcm", message)


def _check_header(ds: Dataset) -> list[Finding]:
    """A video object: a video IOD with the pixel description PS3.5 8.2 fixes for video."""
    found = []
    iod = iod_for_sop_class(str(ds.get("SOPClassUID", "")))
    if iod is None:
        found.append(_own(Severity.ERROR, f"SOP class {ds.get('SOPClassUID')} is not a video IOD"))
    elif ds.get("Modality") != iod.modality:
        found.append(_own(Severity.ERROR, f"Modality {ds.get('Modality')} must be "
                          f"{iod.modality} for {iod.name}"))
    elif iod.frames_only:
        found.append(_own(Severity.ERROR, f"{iod.name} is written frame by frame by vid2dcm"))
    expected_pixels = dict(PIXEL_ATTRIBUTES)
    meta = getattr(ds, "file_meta", None)
    video_syntax = by_uid(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
    if video_syntax is not None:  # 16/10/9 for HEVC Main 10 (PS3.5 8.2.11)
        bits = video_syntax.bits
        expected_pixels.update(BitsAllocated=bits[0], BitsStored=bits[1], HighBit=bits[2])
    for keyword, expected in expected_pixels.items():
        if ds.get(keyword) != expected:
            found.append(_own(Severity.ERROR, f"{keyword} is {ds.get(keyword)!r}, "
                              f"video requires {expected!r}"))
    return found + _check_multi_frame(ds)


def _check_frame_header(ds: Dataset) -> list[Finding]:
    """A frame object (vid2dcm's or anyone's): the IOD is left to dciodvfy; vid2dcm checks
    what it relies on when it reads frames."""
    found = []
    iod = iod_for_sop_class(str(ds.get("SOPClassUID", "")))
    if iod is not None and ds.get("Modality") != iod.modality:
        found.append(_own(Severity.ERROR, f"Modality {ds.get('Modality')} must be "
                          f"{iod.modality} for {iod.name}"))
    if iod is None:
        found.append(_own(Severity.NOTE, f"{_sop_name(ds)}: not an IOD vid2dcm writes; "
                          "checked as a frame object (frames decode, count and size)"))
    if "NumberOfFrames" in ds:
        found += _check_multi_frame(ds)
    return found


def _sop_name(ds: Dataset) -> str:
    uid = UID(str(ds.get("SOPClassUID", "")))
    return uid.name if uid.is_valid else str(uid)


def _check_multi_frame(ds: Dataset) -> list[Finding]:
    found = []
    for pointer in _as_list(ds.get("FrameIncrementPointer")):
        if not isinstance(pointer, int) or pointer not in ds:
            found.append(_own(Severity.ERROR, f"Frame Increment Pointer names {pointer}, "
                              "which is absent"))
    vector = ds.get("FrameTimeVector")
    if vector is not None and frame_count(ds) != len(_as_list(vector)):
        found.append(_own(Severity.ERROR, "Frame Time Vector length differs from Number of "
                          "Frames"))
    return found


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def _check_frames(video: VideoObject) -> list[Finding]:
    """Frame objects: every frame decodes, as many as Number of Frames (1 when absent), at
    the header's size. A frame may span several fragments (PS3.5 A.4), so fragments may
    outnumber frames, never the reverse."""
    ds = video.dataset
    expected = frame_count(ds)
    found = []
    layout = video.layout
    if UID(video.transfer_syntax_uid).is_encapsulated:
        if layout is None:
            return [_own(Severity.ERROR, "Pixel Data is missing or not encapsulated")]
        if not layout.terminated:
            found.append(_own(Severity.ERROR, "Pixel Data has no Sequence Delimitation Item "
                              "(truncated file)"))
        if len(layout.fragments) < expected:
            found.append(_own(Severity.ERROR, f"{len(layout.fragments)} fragments for "
                              f"{expected} frames; every frame needs at least one"))
        if layout.basic_offset_table_length not in (0, 4 * expected):
            found.append(_own(Severity.ERROR, "the Basic Offset Table holds "
                              f"{layout.basic_offset_table_length // 4} entries for {expected} "
                              "frames"))
        if found:
            return found
    decoded = 0
    try:
        for pixels in iter_frames(video):
            decoded += 1
            if pixels.shape[:2] != (ds.Rows, ds.Columns):
                found.append(_own(Severity.ERROR, f"frame {decoded} is {pixels.shape[1]}x"
                                  f"{pixels.shape[0]}, header says {ds.Columns}x{ds.Rows}"))
                break
    except NotImplementedError as exc:  # no decoder here: no verdict either way
        raise InputError(f"{video.path}: unsupported: no decoder for transfer syntax "
                         f"{video.transfer_syntax_uid} ({exc})") from exc
    except Exception as exc:  # any decoder failure is a finding, not a crash
        found.append(_own(Severity.ERROR, f"frame {decoded + 1} does not decode: {exc}"))
        return found
    if decoded != expected:
        found.append(_own(Severity.ERROR, f"{decoded} frames decode, Number of Frames is "
                          f"{expected}"))
    return found


def _check_encapsulation(video: VideoObject) -> list[Finding]:
    layout = video.layout
    if layout is None:
        return [_own(Severity.ERROR, "Pixel Data is missing or not encapsulated")]
    found = []
    if layout.basic_offset_table_length:
        found.append(_own(Severity.ERROR, "the Basic Offset Table is not empty; video needs an "
                          "empty one"))
    if not layout.terminated:
        found.append(_own(Severity.ERROR, "Pixel Data has no Sequence Delimitation Item "
                          "(truncated file)"))
    if not layout.fragments:
        found.append(_own(Severity.ERROR, "Pixel Data holds no fragment"))
    if len(layout.fragments) > 1 and not allows_multiple_fragments(video.transfer_syntax_uid):
        found.append(_own(Severity.ERROR, f"{len(layout.fragments)} fragments, but this "
                          "transfer syntax needs the whole stream in one"))
    for n, fragment in enumerate(layout.fragments, 1):
        if fragment.length == 0 or fragment.length % 2:
            found.append(_own(Severity.ERROR, f"fragment {n} has length {fragment.length}; "
                              "fragments must be even and non-empty"))
    declared = video.dataset.get("EncapsulatedPixelDataValueTotalLength")
    if declared is not None and not (0 <= layout.stored_length - int(declared) <= 1):
        found.append(_own(Severity.ERROR, f"Encapsulated Pixel Data Value Total Length "
                          f"{declared} does not match the {layout.stored_length} bytes stored"))
    return found


def _check_bitstream(video: VideoObject, syntax: VideoTransferSyntax
                     ) -> tuple[MediaInfo | None, list[Finding]]:
    ds = video.dataset
    try:
        info = probe_opened(video.path, video.bitstream_length, video.open_media)
    except InputError as exc:
        return None, [_own(Severity.ERROR, f"the embedded video does not play: {exc}")]
    v = info.video
    found = []
    container = _container_kind(info)
    if v.codec != syntax.codec:
        found.append(_own(Severity.ERROR, f"the bitstream is {v.codec}, the transfer syntax "
                          f"says {syntax.codec}"))
    elif container not in syntax.containers:
        found.append(_own(Severity.ERROR, f"{v.codec} in a {container} container; allowed: "
                          f"{', '.join(sorted(syntax.containers))}"))
    facts = {
        "NumberOfFrames": (int(ds.get("NumberOfFrames", 0)), v.timing.frame_count),
        "Rows": (ds.get("Rows"), v.height),
        "Columns": (ds.get("Columns"), v.width),
        "CineRate": (ds.get("CineRate", v.timing.cine_rate), v.timing.cine_rate),
    }
    for keyword, (header, stream) in facts.items():
        if header != stream:
            found.append(_own(Severity.ERROR, f"{keyword} is {header}, the bitstream has {stream}"))
    declared = len(ds.get("MultiplexedAudioChannelsDescriptionCodeSequence") or [])
    if declared != len(info.audio):
        found.append(_own(Severity.ERROR, f"the bitstream carries {len(info.audio)} audio "
                          f"stream(s), the header declares {declared} (Multiplexed Audio "
                          "Channels Description Code Sequence, PS3.3 C.7.6.5)"))
    frame_time = ds.get("FrameTime")
    if frame_time is not None and abs(float(frame_time) - v.timing.frame_time_ms) > 0.001:
        found.append(_own(Severity.ERROR, f"Frame Time {frame_time} ms, the bitstream runs at "
                          f"{v.timing.frame_time_ms:.4f} ms per frame"))
    qualifies, broken = choose_transfer_syntax(v)
    if qualifies is None:
        found.append(_own(Severity.ERROR, f"the bitstream breaks {syntax.name}: "
                          + "; ".join(broken)))
    elif qualifies is not syntax:
        found.append(_own(Severity.WARNING, f"the bitstream qualifies for {qualifies.name}, "
                          f"labelled {syntax.name}"))
    return info, found


def _container_kind(info: MediaInfo) -> str:
    if info.container.startswith("mov,mp4"):
        return "quicktime" if info.major_brand == "qt" else "mp4"
    return info.container


# --- dciodvfy ----------------------------------------------------------------------------------

def run_dciodvfy(video: VideoObject) -> tuple[str, list[Finding]]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return "not installed", [Finding(Severity.NOTE, "dciodvfy", "dciodvfy is not "
                                         "installed; IOD not checked by dicom3tools")]
    syntax = by_uid(video.transfer_syntax_uid)
    if syntax is None or (syntax.known_to_dciodvfy and video.transfer_syntax_uid == syntax.uid):
        status, found = _dciodvfy(exe, video.path)
        return status, found
    with tempfile.TemporaryDirectory(prefix="vid2dcm-twin-") as tmp:
        twin = Path(tmp) / "twin.dcm"
        _write_twin(video.path, twin, Path(tmp))
        status, found = _dciodvfy(exe, twin)
    note = Finding(Severity.NOTE, "dciodvfy", f"dciodvfy does not know transfer syntax "
                   f"{video.transfer_syntax_uid}; the IOD was checked on an H.264-labelled "
                   "twin of this header")
    return f"{status} on twin", [note, *found]


def _dciodvfy(exe: str, path: Path) -> tuple[str, list[Finding]]:
    """Every Error and Warning line dciodvfy prints, none filtered (its DICOMDIR hints
    included: media need those attributes). dciodvfy exits 0 when it found no error and 1
    when it printed some; any other status, a signal above all (the PyPI release aborts on
    VRs it does not know), or 1 with no error printed, means it gave no verdict: that is an
    error, never "passed"."""
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=300, check=False)
    found = []
    for line in (proc.stdout + proc.stderr).splitlines():
        m = DCIODVFY_LINE.match(line.strip())
        if not m:
            continue
        severity = Severity.ERROR if m.group(1) == "Error" else Severity.WARNING
        found.append(Finding(severity, "dciodvfy", m.group(2)))
    failed = any(f.severity is Severity.ERROR for f in found)
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and not failed):
        how = (f"signal {-proc.returncode}" if proc.returncode < 0
               else f"exit status {proc.returncode}")
        found.append(Finding(Severity.ERROR, "dciodvfy", f"dciodvfy crashed ({how}) before "
                             "its verdict: the IOD was not checked"))
        return f"crashed ({how})", found
    return ("failed" if failed else "passed"), found


def _write_twin(source: Path, twin: Path, tmp: Path) -> None:
    ds = dcmread(source, stop_before_pixels=True)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.LossyImageCompressionMethod = "ISO_14496_10"
    # the twin is labelled 8-bit H.264: a 10-bit syntax's 16/10/9 (PS3.5 8.2.11, checked by
    # vid2dcm's own header rule) would be judged against H.264's 8/8/7
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    if "EncapsulatedPixelDataValueTotalLength" in ds:  # the twin's token is one fragment
        del ds.EncapsulatedPixelDataValueTotalLength
    token = tmp / "token.bin"
    token.write_bytes(b"\x00\x00")
    with twin.open("wb") as out:
        dcmwrite(out, ds, enforce_file_format=True)
        write_pixel_data(out, token, 2**32 - 2)
