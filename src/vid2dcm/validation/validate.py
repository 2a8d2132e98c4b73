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
from pydicom.uid import MPEG4HP41

from vid2dcm.core.conformance import choose_transfer_syntax
from vid2dcm.core.errors import InputError
from vid2dcm.core.frame_syntaxes import FrameSyntax, frame_syntax_by_uid
from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.core.syntaxes import VideoTransferSyntax, allows_multiple_fragments, by_uid
from vid2dcm.probing.probe import probe_opened
from vid2dcm.reading.reader import VideoObject, iter_frames, open_video_object
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
    """'passed', 'failed', 'passed on twin', 'not installed' or 'not run'."""

    @property
    def errors(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        return not self.errors


def validate(path: str | Path, use_dciodvfy: bool = True) -> Report:
    path = Path(path)
    video = open_video_object(path)
    findings: list[Finding] = []
    syntax = by_uid(video.transfer_syntax_uid)
    frames = frame_syntax_by_uid(video.transfer_syntax_uid)
    findings += _check_header(video.dataset, frames)
    bitstream = None
    if frames is not None:
        findings += _check_frames(video, frames)
    elif syntax is None:
        findings.append(_own(Severity.ERROR, f"transfer syntax {video.transfer_syntax_uid} is "
                             "neither a video nor a frame encoding vid2dcm knows"))
    else:
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


def _check_header(ds: Dataset, frames: FrameSyntax | None) -> list[Finding]:
    found = []
    iod = iod_for_sop_class(str(ds.get("SOPClassUID", "")))
    if iod is None:
        found.append(_own(Severity.ERROR, f"SOP class {ds.get('SOPClassUID')} is not a video IOD"))
    elif ds.get("Modality") != iod.modality:
        found.append(_own(Severity.ERROR, f"Modality {ds.get('Modality')} must be "
                          f"{iod.modality} for {iod.name}"))
    elif iod.frames_only and frames is None:
        found.append(_own(Severity.ERROR, f"{iod.name} is written frame by frame by vid2dcm"))
    expected_pixels = dict(PIXEL_ATTRIBUTES)
    if frames is not None:
        expected_pixels["PhotometricInterpretation"] = frames.photometric
    meta = getattr(ds, "file_meta", None)
    video_syntax = by_uid(str(meta.get("TransferSyntaxUID", ""))) if meta is not None else None
    if video_syntax is not None:
        bits = video_syntax.bits
        expected_pixels.update(BitsAllocated=bits[0], BitsStored=bits[1], HighBit=bits[2])
    for keyword, expected in expected_pixels.items():
        if ds.get(keyword) != expected:
            found.append(_own(Severity.ERROR, f"{keyword} is {ds.get(keyword)!r}, "
                              f"video requires {expected!r}"))
    for pointer in _as_list(ds.get("FrameIncrementPointer")):
        if not isinstance(pointer, int) or pointer not in ds:
            found.append(_own(Severity.ERROR, f"Frame Increment Pointer names {pointer}, "
                              "which is absent"))
    vector = ds.get("FrameTimeVector")
    if vector is not None and int(ds.get("NumberOfFrames", 0)) != len(_as_list(vector)):
        found.append(_own(Severity.ERROR, "Frame Time Vector length differs from Number of "
                          "Frames"))
    return found


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, list | tuple | MultiValue):
        return list(value)
    return [value]


def _check_frames(video: VideoObject, frames: FrameSyntax) -> list[Finding]:
    """Frame objects: one fragment per frame, offset table consistent, every frame decodes."""
    ds = video.dataset
    expected = int(ds.get("NumberOfFrames", 0))
    found = []
    layout = video.layout
    if frames.encapsulated:
        if layout is None:
            return [_own(Severity.ERROR, "Pixel Data is missing or not encapsulated")]
        if len(layout.fragments) != expected:
            found.append(_own(Severity.ERROR, f"{len(layout.fragments)} fragments for "
                              f"{expected} frames; vid2dcm writes one fragment per frame"))
        if layout.basic_offset_table_length not in (0, 4 * expected):
            found.append(_own(Severity.ERROR, "the Basic Offset Table holds "
                              f"{layout.basic_offset_table_length // 4} entries for {expected} "
                              "frames"))
    decoded = 0
    try:
        for pixels in iter_frames(video):
            decoded += 1
            if pixels.shape[:2] != (ds.Rows, ds.Columns):
                found.append(_own(Severity.ERROR, f"frame {decoded} is {pixels.shape[1]}x"
                                  f"{pixels.shape[0]}, header says {ds.Columns}x{ds.Rows}"))
                break
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

DCIODVFY_NOISE = ("would be needed to build DICOMDIR", "(7fe0,0003)")
"""DICOMDIR hints and the (7FE0,0003) attribute this dicom3tools release predates."""


def run_dciodvfy(video: VideoObject) -> tuple[str, list[Finding]]:
    exe = shutil.which("dciodvfy")
    if exe is None:
        return "not installed", [Finding(Severity.NOTE, "dciodvfy", "dciodvfy is not "
                                         "installed; IOD not checked by dicom3tools")]
    syntax = by_uid(video.transfer_syntax_uid)
    if frame_syntax_by_uid(video.transfer_syntax_uid) is not None or (
            syntax is not None and syntax.known_to_dciodvfy
            and video.transfer_syntax_uid == syntax.uid):
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
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=300, check=False)
    found = []
    for line in (proc.stdout + proc.stderr).splitlines():
        m = DCIODVFY_LINE.match(line.strip())
        if not m or any(noise in line for noise in DCIODVFY_NOISE):
            continue
        severity = Severity.ERROR if m.group(1) == "Error" else Severity.WARNING
        found.append(Finding(severity, "dciodvfy", m.group(2)))
    failed = any(f.severity is Severity.ERROR for f in found)
    return ("failed" if failed else "passed"), found


def _write_twin(source: Path, twin: Path, tmp: Path) -> None:
    ds = dcmread(source, stop_before_pixels=True)
    ds.file_meta.TransferSyntaxUID = MPEG4HP41
    ds.LossyImageCompressionMethod = "ISO_14496_10"
    # the twin is labelled 8-bit H.264: a 10-bit syntax's 16/10/9 (PS3.5 8.2.11, checked by
    # vid2dcm's own header rule) would be judged against H.264's 8/8/7
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    token = tmp / "token.bin"
    token.write_bytes(b"\x00\x00")
    with twin.open("wb") as out:
        dcmwrite(out, ds, enforce_file_format=True)
        write_pixel_data(out, token, 2**32 - 2)
