"""`vid2dcm deidentify IN... -o OUT`. Safe as typed: Basic Profile + Clean Pixel Data + Clean
Descriptors, audio removed; every option switches one of those off or adds another. The engine
(OCR, face detector, encoder) is imported only when the command runs. A failure goes through
the CLI's one failure path and leaves no output behind: a folder this run created is removed,
and in a folder that existed only the entries this run added are."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vid2dcm.apps.cli.options import Json, Quiet, Verbose
from vid2dcm.apps.cli.output import emit, line
from vid2dcm.core.errors import InputError, UsageError

if TYPE_CHECKING:
    from vid2dcm.producing.filters import MaskBox

SECRET_ENV = "VID2DCM_DEID_SECRET"
"""vid2dcm.deidentify.pseudonyms.SECRET_ENV (repeated so --help needs no engine import)."""


def deidentify(
    inputs: Annotated[list[Path], typer.Argument(metavar="FILE...",
                                                 help="DICOM video or frame objects.")],
    out: Annotated[Path, typer.Option("--out", "-o", metavar="FOLDER", help="Output folder.")],
    secret_file: Annotated[Path | None, typer.Option(
        metavar="FILE",
        help=f"File holding the site secret for consistent pseudonyms (else ${SECRET_ENV}; "
        "without either, pseudonyms differ between runs).")] = None,
    keep_audio: Annotated[bool, typer.Option(help="Keep the audio (speech identifies).")
                          ] = False,
    mute: Annotated[list[str] | None, typer.Option(
        metavar="START-END",
        help="With --keep-audio: silence START-END seconds (repeatable).")] = None,
    clean_pixel_data: Annotated[bool, typer.Option(
        help="Mask burned-in text (device table + OCR) and verify by OCR.")] = True,
    clean_descriptors: Annotated[bool, typer.Option(
        help="Keep descriptions with identifiers removed (off: remove them).")] = True,
    clean_faces: Annotated[bool, typer.Option(
        "--clean-faces", help="Clean Recognizable Visual Features: blur faces.")] = False,
    retain_full_dates: Annotated[bool, typer.Option()] = False,
    retain_modified_dates: Annotated[bool, typer.Option(
        help="Shift dates by a per-patient offset instead of removing them.")] = False,
    retain_patient_characteristics: Annotated[bool, typer.Option()] = False,
    retain_device_identity: Annotated[bool, typer.Option()] = False,
    retain_institution_identity: Annotated[bool, typer.Option()] = False,
    retain_uids: Annotated[bool, typer.Option()] = False,
    retain_safe_private: Annotated[bool, typer.Option()] = False,
    clean_graphics: Annotated[bool, typer.Option()] = False,
    clean_structured_content: Annotated[bool, typer.Option()] = False,
    mask: Annotated[list[str] | None, typer.Option(
        metavar="X,Y,W,H[,START,END]",
        help="Extra box to fill: X,Y,W,H[,START_S,END_S] in pixels (repeatable).")] = None,
    mask_settings: Annotated[Path | None, typer.Option(
        metavar="FILE", help="Device mask table (JSON) instead of the bundled one.")] = None,
    sample_every: Annotated[float, typer.Option(
        metavar="SECONDS",
        help="Seconds between frames analysed by OCR and the face detector.")] = 1.0,
    verify: Annotated[bool, typer.Option(
        help="OCR the output and fail if an identifier is readable.")] = True,
    lookup: Annotated[Path | None, typer.Option(
        metavar="FILE",
        help="Encrypted pseudonym lookup to add to (readable with the site secret).")] = None,
    overwrite: Annotated[bool, typer.Option()] = False,
    as_json: Json = False,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """De-identify video and frame objects (PS3.15 Annex E): header, audio, burned-in text
    and, on request, faces; each output gets a JSON report beside it (--json: one
    DeidentifyReport per input)."""
    # Every option first: nothing is read or written until all of them are good.
    if sample_every <= 0:
        raise UsageError(f"--sample-every: {sample_every} is not positive, e.g. 1.0")
    secret = _secret(secret_file)
    masks = tuple(parse_mask(m) for m in mask or ())
    muted = tuple(parse_interval(m) for m in mute or ())
    missing = [p for p in inputs if not p.is_file()]
    if missing:
        raise InputError(f"{missing[0]}: no such file")
    from vid2dcm.apps.report import deidentify_report
    from vid2dcm.deidentify import DeidSettings, ProfileOptions
    from vid2dcm.deidentify import deidentify as run_deidentify

    options = ProfileOptions(
        clean_pixel_data=clean_pixel_data,
        clean_recognizable_visual_features=clean_faces,
        clean_graphics=clean_graphics, clean_structured_content=clean_structured_content,
        clean_descriptors=clean_descriptors, retain_full_dates=retain_full_dates,
        retain_modified_dates=retain_modified_dates,
        retain_patient_characteristics=retain_patient_characteristics,
        retain_device_identity=retain_device_identity, retain_uids=retain_uids,
        retain_safe_private=retain_safe_private,
        retain_institution_identity=retain_institution_identity,
        remove_audio=not keep_audio)
    settings = DeidSettings(options=options, secret=secret, sample_every_s=sample_every,
                            mask_settings=mask_settings, masks=masks, verify=verify,
                            lookup=lookup, mute=muted)
    with _no_leftovers(out):
        reports = run_deidentify(list(inputs), out, settings, overwrite=overwrite)
    for source, report in zip(inputs, reports, strict=True):
        if as_json:
            emit(deidentify_report(source, out / report.output, report))
            continue
        check = report.verification
        line(f"{source} -> {out / report.output}: {report.frames_out} frames, "
             f"{len(report.masks)} masks, audio {report.audio}, verification "
             f"{'passed' if check.passed and check.ran else 'not run'}")


class _no_leftovers:
    """On failure, remove what this run added under folder (the folder too, if it made it)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.existed = folder.exists()
        self.before = set(folder.iterdir()) if folder.is_dir() else set()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, *_rest: object) -> None:
        if kind is None:
            return
        if not self.existed:
            shutil.rmtree(self.folder, ignore_errors=True)
            return
        if self.folder.is_dir():
            for entry in set(self.folder.iterdir()) - self.before:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)


def parse_mask(text: str) -> MaskBox:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"--mask {text!r}: numbers X,Y,W,H[,START,END] expected") from exc
    if len(values) not in (4, 6) or values[2] <= 0 or values[3] <= 0:
        raise UsageError(f"--mask {text!r}: X,Y,W,H[,START,END] with positive size expected")
    start, end = (values[4], values[5]) if len(values) == 6 else (-1.0, 1e9)
    x, y, w, h = (int(v) for v in values[:4])
    from vid2dcm.producing.filters import MaskBox

    return MaskBox(x, y, w, h, start, end, "fill")


def parse_interval(text: str) -> tuple[float, float]:
    try:
        start, end = (float(v) for v in text.split("-", 1))
    except ValueError as exc:
        raise UsageError(f"--mute {text!r}: START-END in seconds expected") from exc
    return start, end


def _secret(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"--secret-file {path}: {exc.strerror or exc}") from exc
