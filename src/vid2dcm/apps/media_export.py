"""Patient media: a PS3.10 file set (DICOMDIR + instances) a patient can take home, plus an
INDEX.HTM that plays the videos in any browser.

The file set is written by pydicom's FileSet (PS3.10 8, PS3.3 F: DICOMDIR with PATIENT, STUDY,
SERIES and IMAGE records; file IDs of at most 8 upper-case characters per component, as ISO
9660 requires). The General Purpose media profile (PS3.11) that fits the files' transfer
syntaxes is named in the result, when one profile fits them all; DCMTK's dcmmkdir checks the
files against it in the tests. Browsers play H.264 in MP4 only: those bitstreams are copied
out (a TS is remuxed to MP4, packets untouched) under VIDEOS/ for INDEX.HTM; HEVC and MPEG-2
need a desktop DICOM viewer, and INDEX.HTM says so. Patient name and ID are not written
into INDEX.HTM (it is a plain file anyone holding the media can open first).
"""

from __future__ import annotations

import html
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import av
from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.fileset import FileSet

from vid2dcm.core.errors import InputError, OutputError
from vid2dcm.core.frame_syntaxes import frame_syntax_by_uid
from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.syntaxes import by_uid, uid_name
from vid2dcm.reading.reader import extract_bitstream

GENERAL_PURPOSE_PROFILES: dict[str, tuple[str, str]] = {
    "1.2.840.10008.1.2.4.100": ("STD-GEN-BD-MPEG2-MPML", "--general-bd-mpeg2-mpml"),
    "1.2.840.10008.1.2.4.101": ("STD-GEN-BD-MPEG2-MPHL", "--general-bd-mpeg2-mphl"),
    "1.2.840.10008.1.2.4.102": ("STD-GEN-BD-MPEG4-HPLV41", "--general-bd-mpeg4-hp"),
    "1.2.840.10008.1.2.4.103": ("STD-GEN-BD-MPEG4-HPLV41BD", "--general-bd-mpeg4-hpbd"),
    "1.2.840.10008.1.2.4.104": ("STD-GEN-BD-MPEG4-HPLV42-2D", "--general-bd-mpeg4-hp2d"),
    "1.2.840.10008.1.2.4.50": ("STD-GEN-USB/MMC/CF/SD-JPEG", "--usb-and-flash-jpeg"),
    "1.2.840.10008.1.2.4.90": ("STD-GEN-USB/MMC/CF/SD-J2K", "--usb-and-flash-j2k"),
    "1.2.840.10008.1.2.1": ("STD-GEN-CD/DVD-RAM", "--general-purpose"),
}
"""Transfer syntax -> (PS3.11 General Purpose profile, the dcmmkdir option that checks it).
HEVC, the Fragmentable syntaxes, JPEG-LS and RLE have no General Purpose profile that DCMTK
3.6.7 knows; such files are still written, and the result says no profile applies."""

BROWSER_PLAYABLE = frozenset({"h264"})


@dataclass(frozen=True)
class MediaItem:
    file_id: str
    """Path of the instance in the file set, e.g. PT000000/ST000000/SE000000/IM000000."""
    sop_instance_uid: str
    transfer_syntax: str
    video: str | None
    """VIDEOS/Vnnnn.MP4 when a browser can play it, else None."""


@dataclass(frozen=True)
class MediaResult:
    folder: Path
    items: tuple[MediaItem, ...]
    profile: str | None
    """The General Purpose profile every file fits, or None."""
    dcmmkdir_option: str | None


def collect(paths: Iterable[Path], study: str | None = None) -> list[Path]:
    """DICOM instances named, or found under named folders; only study's when given."""
    found: list[Path] = []
    for path in paths:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder")
        candidates = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() \
            else [path]
        for candidate in candidates:
            try:
                ds = dcmread(candidate, stop_before_pixels=True)
            except (InvalidDicomError, OSError, ValueError, EOFError):
                if path.is_dir():
                    continue  # a folder may hold other files
                raise InputError(f"{candidate}: not a readable DICOM file") from None
            if path.is_dir() and "SOPClassUID" not in ds:
                continue  # e.g. a DICOMDIR
            if study is None or str(ds.get("StudyInstanceUID", "")) == study:
                found.append(candidate)
    if not found:
        raise InputError("no DICOM instance to export" + (f" for study {study}" if study else ""))
    return found


def export_media(out_dir: Path, files: list[Path]) -> MediaResult:
    """Write the file set into out_dir (new or empty); all or nothing."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise OutputError(f"{out_dir} is not empty")
    for path in files:
        _check_recordable(path)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vid2dcm-media-", dir=out_dir.parent.resolve()) as tmp:
        staging = Path(tmp) / "media"
        fs = FileSet()
        fs.ID = "VID2DCM"
        for path in files:
            fs.add(str(path))
        fs.write(staging)
        items = _videos(staging, fs)
        syntaxes = {i.transfer_syntax for i in items}
        profiles = {GENERAL_PURPOSE_PROFILES.get(ts) for ts in syntaxes}
        profile = next(iter(profiles)) if len(profiles) == 1 else None
        result = MediaResult(out_dir, tuple(items), profile[0] if profile else None,
                             profile[1] if profile else None)
        (staging / "INDEX.HTM").write_text(_index_html(result, fs), encoding="utf-8")
        if out_dir.exists():
            out_dir.rmdir()
        shutil.move(str(staging), out_dir)
    return result


def _check_recordable(path: Path) -> None:
    """A DICOMDIR PATIENT record needs Patient ID, a STUDY record Study ID (PS3.3 F.5, Type 1
    there though Type 2 in the instance): refuse before writing anything."""
    ds = dcmread(path, stop_before_pixels=True)
    for keyword, hint in (("PatientID", "set patient_id when converting"),
                          ("StudyID", "set study_id or an accession number when converting"),
                          ("SOPInstanceUID", "")):
        if not str(ds.get(keyword, "")).strip():
            raise InputError(f"{path}: {keyword} is empty; a DICOMDIR record needs it"
                             + (f" ({hint})" if hint else ""))


def _videos(staging: Path, fs: FileSet) -> list[MediaItem]:
    items = []
    videos = staging / "VIDEOS"
    for n, instance in enumerate(fs, 1):
        path = Path(instance.path)
        ts = str(instance.TransferSyntaxUID)
        playable = None
        syntax = by_uid(ts)
        if syntax is not None and syntax.codec in BROWSER_PLAYABLE:
            videos.mkdir(exist_ok=True)
            target = videos / f"V{n:04d}.MP4"
            _browser_mp4(path, target)
            playable = f"VIDEOS/{target.name}"
        items.append(MediaItem(Path(instance.path).relative_to(staging).as_posix(),
                               instance.SOPInstanceUID, ts, playable))
    return items


def _browser_mp4(dicom: Path, target: Path) -> None:
    """The embedded stream as a plain MP4 (packets copied; a TS is remuxed, never decoded)."""
    raw = target.with_suffix(".BIN")
    extract_bitstream(dicom, raw, overwrite=True)
    try:
        with av.open(str(raw)) as src, av.open(str(target), "w", format="mp4",
                                               options={"movflags": "+faststart"}) as dst:
            streams = {s.index: dst.add_stream_from_template(s) for s in src.streams
                       if s.type == "video" or (s.type == "audio"
                                                and s.codec_context.name == "aac")}
            for packet in src.demux(*[src.streams[i] for i in streams]):
                if packet.size == 0:
                    continue
                packet.stream = streams[packet.stream.index]
                dst.mux(packet)
    finally:
        raw.unlink(missing_ok=True)


def _index_html(result: MediaResult, fs: FileSet) -> str:
    rows = []
    for item, instance in zip(result.items, fs, strict=True):
        ds = instance.load()
        iod = iod_for_sop_class(str(ds.SOPClassUID))
        what = html.escape(iod.name if iod else str(ds.SOPClassUID))
        when = html.escape(f"{ds.get('StudyDate', '')} {ds.get('SeriesDescription', '')}")
        if item.video:
            player = (f'<video controls preload="metadata" width="640" '
                      f'src="{html.escape(item.video)}"></video>')
        elif frame_syntax_by_uid(item.transfer_syntax) is not None:
            player = "stored frame by frame: open it in a DICOM viewer"
        else:
            player = (f"{html.escape(uid_name(item.transfer_syntax))}: browsers cannot play "
                      "it; open it in a desktop DICOM viewer")
        rows.append(f"<li><p>{what}, {when} &middot; <code>{html.escape(item.file_id)}"
                    f"</code></p>{player}</li>")
    profile = html.escape(result.profile or "none of the General Purpose profiles")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Video media</title></head><body>\n<h1>Video media</h1>\n"
            "<p>DICOM file set (open DICOMDIR in a DICOM viewer). Media profile: "
            f"{profile}.</p>\n<ol>\n" + "\n".join(rows) + "\n</ol>\n</body></html>\n")
