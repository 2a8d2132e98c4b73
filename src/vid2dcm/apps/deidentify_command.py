"""`vid2dcm deidentify IN... -o OUT`: the command function, registered by the CLI with
`app.command()(deidentify)`. Safe as typed: Basic Profile + Clean Pixel Data + Clean
Descriptors, audio removed; every option switches one of those off or adds another."""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, NoReturn

import typer

from vid2dcm.core.errors import UsageError, Vid2DcmError
from vid2dcm.deidentify import DeidSettings, ProfileOptions
from vid2dcm.deidentify import deidentify as run_deidentify
from vid2dcm.deidentify.pseudonyms import SECRET_ENV
from vid2dcm.producing.filters import MaskBox


def deidentify(
    inputs: Annotated[list[Path], typer.Argument(help="DICOM video or frame objects.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    secret_file: Annotated[Path | None, typer.Option(
        help=f"File holding the site secret for consistent pseudonyms (else ${SECRET_ENV}; "
        "without either, pseudonyms differ between runs).")] = None,
    keep_audio: Annotated[bool, typer.Option(help="Keep the audio (speech identifies).")
                          ] = False,
    mute: Annotated[list[str] | None, typer.Option(
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
        help="Extra box to fill: X,Y,W,H[,START_S,END_S] in pixels (repeatable).")] = None,
    mask_settings: Annotated[Path | None, typer.Option(
        help="Device mask table (JSON) instead of the bundled one.")] = None,
    sample_every: Annotated[float, typer.Option(
        help="Seconds between frames analysed by OCR and the face detector.")] = 1.0,
    verify: Annotated[bool, typer.Option(
        help="OCR the output and fail if an identifier is readable.")] = True,
    lookup: Annotated[Path | None, typer.Option(
        help="Encrypted pseudonym lookup to add to (readable with the site secret).")] = None,
    overwrite: Annotated[bool, typer.Option()] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the reports as JSON.")
                       ] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """De-identify video and frame objects (PS3.15 Annex E): header, audio, burned-in text
    and, on request, faces; each output gets a JSON report beside it."""
    try:
        secret = _secret(secret_file)
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
        if sample_every <= 0:
            raise UsageError("--sample-every must be positive")
        settings = DeidSettings(options=options, secret=secret, sample_every_s=sample_every,
                                mask_settings=mask_settings,
                                masks=tuple(parse_mask(m) for m in mask or ()), verify=verify,
                                lookup=lookup, mute=tuple(parse_interval(m) for m in mute or ()))
        reports = run_deidentify(list(inputs), out, settings, overwrite=overwrite)
    except Vid2DcmError as exc:
        _fail(str(exc), exc.exit_code, verbose)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), 5, verbose)
    if as_json:
        typer.echo(json.dumps([json.loads(r.to_json()) for r in reports], indent=2))
        return
    for source, report in zip(inputs, reports, strict=True):
        check = report.verification
        typer.echo(f"{source} -> {out / report.output}: {report.frames_out} frames, "
                   f"{len(report.masks)} masks, audio {report.audio}, verification "
                   f"{'passed' if check.passed and check.ran else 'not run'}")


def parse_mask(text: str) -> MaskBox:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError as exc:
        raise UsageError(f"--mask {text!r}: numbers X,Y,W,H[,START,END] expected") from exc
    if len(values) not in (4, 6) or values[2] <= 0 or values[3] <= 0:
        raise UsageError(f"--mask {text!r}: X,Y,W,H[,START,END] with positive size expected")
    start, end = (values[4], values[5]) if len(values) == 6 else (-1.0, 1e9)
    x, y, w, h = (int(v) for v in values[:4])
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


def _fail(message: str, code: int, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc()
    print(f"vid2dcm: error: {message}", file=sys.stderr)
    raise typer.Exit(code)
