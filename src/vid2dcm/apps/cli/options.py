"""Options shared by several commands, declared once, and the checks that run on every option
before any work starts: a bad --send address or AE title must stop the command before a
conversion has written anything. Each refusal is one line naming the option, the bad value and
a good example (patient values excepted: they are never repeated)."""

from __future__ import annotations

import re
from fractions import Fraction
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from vid2dcm.core.errors import UsageError
from vid2dcm.core.frame_syntaxes import FrameEncoding
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import Metadata, MetadataError, load_metadata
from vid2dcm.delivery.destinations import (
    AE_PATTERN,
    Destination,
    load_destinations,
    parse_destination,
)
from vid2dcm.planning.plan import ContainerChoice, Request, TranscodePolicy
from vid2dcm.planning.video_target import Quality, Speed

# --- reporting options (every command that reports has them) ----------------------------------

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q",
                                     help="No progress or warnings on stderr; errors only.")]
Json = Annotated[bool, typer.Option(
    "--json", help="One JSON object per result on stdout (errors too); see docs/cli.md.")]
Config = Annotated[Path | None, typer.Option(
    "--config", metavar="FILE",
    help="TOML file of named destinations, one [destinations.NAME] table each.")]

# --- what to make (probe and convert) ----------------------------------------------------------

Sop = Annotated[SopChoice, typer.Option(
    help="IOD to write: photographic, endoscopic, microscopic (video), ultrasound, sc "
         "(frame by frame).")]
Container = Annotated[ContainerChoice | None, typer.Option(
    help="Container inside Pixel Data for H.264/HEVC: mp4 (default) or ts.")]
NoAudio = Annotated[bool, typer.Option("--no-audio", help="Drop all audio.")]
Transcode = Annotated[TranscodePolicy, typer.Option(
    help="auto: only when DICOM needs it; never: stop with exit code 4 instead; always.")]
MaxSize = Annotated[str | None, typer.Option(
    metavar="WxH", help="Box transcoded pictures must fit, e.g. 1920x1080.")]
Frames = Annotated[FrameEncoding | None, typer.Option(
    help="Store frame by frame: jpeg, jpeg-ls, j2k, rle or raw (default jpeg for --sop "
         "ultrasound and sc).")]
QualityOpt = Annotated[Quality, typer.Option(
    "--quality", help="Transcode quality: archive (CRF 16), standard (20), compact (26).")]
SpeedOpt = Annotated[Speed, typer.Option(
    "--speed", help="Transcode speed: fast (x264 superfast), balanced (veryfast), slow "
                    "(medium).")]

StreamOpt = Annotated[int | None, typer.Option(
    "--stream", min=0, metavar="N",
    help="Only this video stream (its index, as probe lists it); by default every video "
         "stream becomes its own instance.")]
FrameRate = Annotated[str | None, typer.Option(
    "--frame-rate", metavar="RATE",
    help="Frame rate of a raw stream (.h264/.hevc/.m2v has no timestamps), e.g. 25 or "
         "30000/1001.")]


def frame_rate(text: str | None) -> Fraction | None:
    """--frame-rate: a positive number or fraction (30000/1001), checked before any work."""
    if text is None:
        return None
    try:
        rate = Fraction(text.strip())
    except (ValueError, ZeroDivisionError):
        rate = None
    if rate is None or rate <= 0 or rate > 1000:
        raise UsageError(f"--frame-rate: {text!r} is not a frame rate (a positive number up "
                         "to 1000), e.g. 25 or 30000/1001")
    return rate


# --- delivery ------------------------------------------------------------------------------------

AllowUnidentified = Annotated[bool, typer.Option(
    "--allow-unidentified",
    help="Deliver instances without a Patient ID (refused otherwise, exit code 8).")]
CallingAet = Annotated[str | None, typer.Option(
    "--calling-aet", metavar="AE", help="Our AE title (1-16 characters; default VID2DCM).")]

AE_EXAMPLE = "e.g. PACS@10.0.0.5:104"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\\]")


def check_ae_title(option: str, value: str) -> str:
    """PS3.5 6.2 AE: 1-16 characters of the default repertoire, no backslash or control
    characters, not only spaces."""
    if not value.strip():
        raise UsageError(f"{option}: {value!r} is empty; an AE title has 1-16 characters, "
                         "e.g. VID2DCM")
    if len(value) > 16:
        raise UsageError(f"{option}: {value!r} has {len(value)} characters, an AE title at "
                         "most 16 (PS3.5 6.2), e.g. VID2DCM")
    if _CONTROL.search(value) or not value.isascii():
        raise UsageError(f"{option}: {value!r} holds characters an AE title may not (ASCII, "
                         "no backslash or control characters), e.g. VID2DCM")
    return value


def check_address(option: str, text: str) -> None:
    """AE@HOST:PORT written inline: each part checked, so the message says which is wrong."""
    if text.startswith(("http://", "https://")) or "@" not in text:
        return
    ae, _, rest = text.rpartition("@")
    if not ae:
        raise UsageError(f"{option}: {text!r} has no AE title before @, {AE_EXAMPLE}")
    check_ae_title(option, ae)
    host, sep, port = rest.rpartition(":")
    if not sep or not host:
        raise UsageError(f"{option}: {text!r} needs HOST:PORT after @, {AE_EXAMPLE}")
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"{option}: {text!r} has port {port!r}; a port is 1-65535, "
                         f"{AE_EXAMPLE}")


def destination(option: str, text: str, config: Path | None,
                **overrides: object) -> Destination:
    """An inline address, a STOW-RS URL or a name in --config, checked now, before any work."""
    check_address(option, text)
    if text.startswith(("http://", "https://")) and "://" in text and not text.split(
            "://", 1)[1].strip("/"):
        raise UsageError(f"{option}: {text!r} has no host, e.g. https://pacs/dicom-web")
    inline = AE_PATTERN.match(text) or text.startswith(("http://", "https://"))
    if not inline:
        known = sorted(load_destinations(config)) if config else []
        if text not in known:
            names = f" (names in {config}: {', '.join(known) or 'none'})" if config else \
                " (names need --config FILE)"
            raise UsageError(f"{option}: {text!r} is neither AE@HOST:PORT, an http(s) URL nor "
                             f"a configured name{names}, {AE_EXAMPLE}")
    try:
        found = parse_destination(text, config)
    except UsageError as exc:
        raise UsageError(f"{option}: {exc}") from exc
    if not overrides:
        return found
    try:
        return Destination.model_validate({**found.model_dump(), **overrides})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise UsageError(f"{option}: {text}: {first['msg']}") from exc


def config_file(config: Path | None) -> None:
    """Read --config now (a typo in it is a usage error before any work), naming the table
    and key at fault."""
    if config is not None:
        try:
            load_destinations(config)
        except UsageError as exc:
            raise UsageError(f"--config: {_which_key(config) or exc}") from exc


def _which_key(config: Path) -> str | None:
    """The first bad key of a destinations file, with a close match for a typo."""
    import difflib
    import tomllib

    try:
        tables = tomllib.loads(config.read_text(encoding="utf-8")).get("destinations", {})
    except (OSError, ValueError):
        return None
    if not isinstance(tables, dict):
        return None
    for name, table in tables.items():
        if not isinstance(table, dict):
            return f"config file {config}: [destinations.{name}] must be a table of settings"
        try:
            Destination.model_validate({"name": name, **table})
        except ValidationError as exc:
            first = exc.errors()[0]
            key = ".".join(str(p) for p in first["loc"])
            if first["type"] == "extra_forbidden":
                close = difflib.get_close_matches(str(first["loc"][-1]),
                                                  Destination.model_fields, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                return f"config file {config}: [destinations.{name}] {key}: unknown key{hint}"
            value = first.get("input")
            secret = any(w in key for w in ("password", "token"))
            got = f" (got {value!r})" if isinstance(value, str | int | float) and \
                not secret else ""
            where = f" {key}:" if key else ":"
            message = str(first["msg"]).removeprefix("Value error, ")
            return f"config file {config}: [destinations.{name}]{where} {message}{got}"
    return None


def box(text: str | None, option: str = "--max-size") -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 16 for p in parts):
        raise UsageError(f"{option}: {text!r} is not WIDTHxHEIGHT (each at least 16), "
                         "e.g. 1920x1080")
    return int(parts[0]), int(parts[1])


def build_request(*, sop: SopChoice, container: ContainerChoice | None, no_audio: bool,
                  transcode: TranscodePolicy, max_size: str | None,
                  **more: object) -> Request:
    """The conversion request from the options probe and convert share (plus convert's own)."""
    try:
        return Request(sop=sop, container=container, audio=not no_audio, transcode=transcode,
                       max_size=box(max_size), **more)  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        raise UsageError(str(exc)) from exc


OPTION_FOR_FIELD = {
    "patient_name": "--patient-name", "patient_id": "--patient-id",
    "accession_number": "--accession", "study_instance_uid": "--study-uid",
    "uid_root": "--uid-root",
}


def build_metadata(path: Path | None, base: dict[str, object] | None = None,
                   **fields: str | None) -> Metadata:
    """Metadata from a JSON file and the options that override it; a refused option value is
    reported under the option's name (patient values are not repeated)."""
    try:
        return load_metadata(path, base, **fields)
    except MetadataError as exc:
        option = OPTION_FOR_FIELD.get(exc.field)
        if option and fields.get(exc.field) is not None:
            raise UsageError(f"{option} ({exc.field}): {exc.reason}") from exc
        raise
