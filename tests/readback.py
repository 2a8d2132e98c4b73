"""The read-back battery every produced DICOM file goes through, using independent tools.

pydicom reads the header, DCMTK's dcmdump parses the whole file, dciodvfy checks the IOD (zero
errors), the embedded video is extracted with vid2dcm and decoded by PyAV, and the decoded frame
count and size must equal Number of Frames and Rows/Columns.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import av
import pydicom

from vid2dcm.core.frame_syntaxes import frame_syntax_by_uid
from vid2dcm.core.syntaxes import by_uid
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.validation.validate import Severity, run_dciodvfy, validate

H264_VCL = set(range(1, 6))
HEVC_VCL = set(range(0, 32))


@dataclass(frozen=True)
class ReadBack:
    dataset: pydicom.Dataset
    extracted: Path
    decoded_frames: int
    dcmdump: str


def read_back(path: Path, work: Path) -> ReadBack:
    """Run the whole battery on one file; assertion failures name the tool that objected."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    assert ds.file_meta.TransferSyntaxUID == open_video_object(path).transfer_syntax_uid

    dump = subprocess.run(["dcmdump", "-M", "+L", str(path)], capture_output=True, text=True,
                          errors="replace", check=False)
    assert dump.returncode == 0, f"dcmdump failed: {dump.stderr}"
    assert "E: " not in dump.stderr, dump.stderr
    syntax = by_uid(str(ds.file_meta.TransferSyntaxUID))
    frames = frame_syntax_by_uid(str(ds.file_meta.TransferSyntaxUID))
    native = frames is not None and not frames.encapsulated
    assert ("PixelSequence" in dump.stdout) is not native, "Pixel Data encoding unexpected"

    assert syntax is not None or frames is not None
    if frames is not None or (syntax is not None and syntax.known_to_dciodvfy
                              and ds.file_meta.TransferSyntaxUID == syntax.uid):
        errors = dciodvfy_errors(path)
        assert errors == [], f"dciodvfy: {errors}"
    else:
        # dicom3tools (Debian 12) does not know HEVC or the Fragmentable syntaxes: it cannot
        # even parse such a file. The IOD is checked on an H.264-labelled twin of the header
        # and the bitstream by vid2dcm's own validator below.
        status, findings = run_dciodvfy(open_video_object(path))
        errors = [f.message for f in findings if f.severity is Severity.ERROR]
        assert errors == [] and status == "passed on twin", f"dciodvfy twin: {errors}"

    report = validate(path, use_dciodvfy=False)
    assert report.ok, [f.message for f in report.errors]

    extracted = work / (path.stem + ".video")
    extract_bitstream(path, extracted, overwrite=True)
    frames, (width, height) = decode_count(extracted)
    assert frames == int(ds.NumberOfFrames), (frames, ds.NumberOfFrames)
    assert (width, height) == (ds.Columns, ds.Rows)
    return ReadBack(ds, extracted, frames, dump.stdout)


def dciodvfy_errors(path: Path) -> list[str]:
    assert shutil.which("dciodvfy"), "dciodvfy is not installed"
    proc = subprocess.run(["dciodvfy", "-new", str(path)], capture_output=True, text=True,
                          errors="replace", check=False)
    return [line for line in (proc.stdout + proc.stderr).splitlines()
            if line.startswith("Error")]


def decode_count(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        count = 0
        size = (0, 0)
        for frame in container.decode(stream):
            count += 1
            size = (frame.width, frame.height)
    return count, size


def coded_pictures(path: Path) -> list[bytes]:
    """The coded picture data of every video packet in decode order, container framing removed:
    VCL NAL units for H.264/HEVC (start codes or length prefixes dropped), whole packets for
    MPEG-2. Equal lists mean the pictures were copied bit-exact."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        extradata = stream.codec_context.extradata or b""
        length_size = _length_size(codec, extradata)
        pictures = []
        for packet in container.demux(stream):
            if packet.size == 0:
                continue
            data = bytes(packet)
            if codec == "mpeg2video":
                pictures.append(data)
                continue
            units = _length_prefixed(data, length_size) if length_size else _annex_b(data)
            vcl = H264_VCL if codec == "h264" else HEVC_VCL
            pictures.append(b"".join(u for u in units if _nal_type(codec, u) in vcl))
    return pictures


def _length_size(codec: str, extradata: bytes) -> int:
    if not extradata or extradata[0] != 1:
        return 0
    if codec == "h264":
        return (extradata[4] & 3) + 1
    return (extradata[21] & 3) + 1


def _nal_type(codec: str, unit: bytes) -> int:
    return unit[0] & 0x1F if codec == "h264" else (unit[0] >> 1) & 0x3F


def _length_prefixed(data: bytes, size: int) -> list[bytes]:
    units, pos = [], 0
    while pos + size <= len(data):
        n = int.from_bytes(data[pos:pos + size], "big")
        units.append(data[pos + size:pos + size + n])
        pos += size + n
    return units


def _annex_b(data: bytes) -> list[bytes]:
    units = []
    for chunk in data.split(b"\x00\x00\x01"):
        chunk = chunk.rstrip(b"\x00") if chunk else chunk
        if chunk:
            units.append(chunk)
    return units
