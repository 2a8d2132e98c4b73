"""vid2dcm doctor: is this installation able to do its work, and if not, what to fix.

Checks the FFmpeg build PyAV carries (the decoders and encoders the pipeline uses), the DICOM
tools the validator and tests call (DCMTK, dicom3tools), the gateway data folder, the gateway
port, and a C-ECHO to each DIMSE destination of --config. Exit 1 when a check failed;
warnings (optional parts missing) keep exit 0."""

from __future__ import annotations

import contextlib
import shutil
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

import typer

from vid2dcm.apps.cli.codes import Reported
from vid2dcm.apps.cli.options import Config, Json, Verbose
from vid2dcm.apps.cli.output import emit, styled
from vid2dcm.apps.report import CheckReport, DoctorReport

CODECS: tuple[tuple[str, Literal["r", "w"], bool, str], ...] = (
    # (codec, mode, required, what for)
    ("h264", "r", True, "reading H.264 (probe, validate, transcode input)"),
    ("hevc", "r", True, "reading HEVC"),
    ("mpeg2video", "r", True, "reading MPEG-2"),
    ("aac", "r", True, "reading AAC audio"),
    ("libx264", "w", True, "transcoding to H.264 (phone video, WebM, 10-bit...)"),
    ("aac", "w", True, "re-encoding audio to AAC"),
    ("libx265", "w", False, "transcoding to HEVC (pictures beyond 1080p60)"),
    ("mjpeg", "w", False, "frame-by-frame JPEG (--frames jpeg, lossy fallback)"),
    ("mp2", "w", False, "audio for MPEG-2 video"),
)
TOOLS: tuple[tuple[str, str, str], ...] = (
    ("dciodvfy", "dicom3tools", "validate's IOD check (skipped without it)"),
    ("dcmdump", "dcmtk", "reading files back in tests and by hand"),
    ("echoscu", "dcmtk", "checking PACS by hand"),
    ("storescu", "dcmtk", "sending by hand, comparing with vid2dcm send"),
)
APT = "scripts/install-system-deps (or apt-get install {package})"


def _codec(name: str, mode: Literal["r", "w"]) -> bool:
    import av

    try:
        av.codec.Codec(name, mode)
        return True
    except Exception:  # PyAV raises UnknownCodecError (a ValueError) or FFmpegError
        return False


def check_ffmpeg() -> list[CheckReport]:
    import av

    version = getattr(av, "ffmpeg_version_info", "") or "?"
    found = [CheckReport(name="PyAV / FFmpeg", status="ok",
                         detail=f"PyAV {av.__version__}, FFmpeg {version}", fix="")]
    for codec, mode, required, purpose in CODECS:
        ok = _codec(codec, mode)
        role = "encoder" if mode == "w" else "decoder"
        found.append(CheckReport(
            name=f"{role} {codec}", status="ok" if ok else ("failed" if required else "warning"),
            detail=purpose if ok else f"missing: needed for {purpose}",
            fix="" if ok else "install a PyAV wheel whose FFmpeg has it (pip install --force-"
                              "reinstall av), or build PyAV against a full FFmpeg"))
    return found


def check_tools() -> list[CheckReport]:
    found = []
    for tool, package, purpose in TOOLS:
        path = shutil.which(tool)
        found.append(CheckReport(
            name=tool, status="ok" if path else "warning",
            detail=path or f"not found: {purpose}",
            fix="" if path else APT.format(package=package)))
    return found


def check_data(folder: Path) -> CheckReport:
    from vid2dcm.apps.cli.service import prepare_data
    from vid2dcm.core.errors import ServiceError

    existed = folder.exists()
    try:
        prepare_data(folder)
    except ServiceError as exc:
        return CheckReport(name="data folder", status="failed", detail=str(exc),
                           fix=f"chmod u+w {folder}, or pass --data FOLDER to serve/worker")
    finally:
        if not existed and folder.exists():
            with contextlib.suppress(OSError):
                folder.rmdir()
    return CheckReport(name="data folder", status="ok",
                       detail=f"{folder} is writable" + ("" if existed else " (will be created)"),
                       fix="")


def check_port(host: str, port: int) -> CheckReport:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1)
        busy = s.connect_ex((host, port)) == 0
    if busy:
        return CheckReport(name="gateway port", status="warning",
                           detail=f"{host}:{port} is in use (a gateway already running?)",
                           fix=f"stop it, or start with --port / make run PORT={port + 1}")
    return CheckReport(name="gateway port", status="ok", detail=f"{host}:{port} is free", fix="")


def check_destinations(config: Path) -> list[CheckReport]:
    from vid2dcm.core.errors import Vid2DcmError
    from vid2dcm.delivery.destinations import load_destinations

    try:
        destinations = load_destinations(config)
    except Vid2DcmError as exc:
        return [CheckReport(name="destinations", status="failed", detail=str(exc),
                            fix="correct the file (docs/cli.md, destinations file)")]
    found = []
    for name, dest in sorted(destinations.items()):
        if dest.kind != "dimse":
            found.append(CheckReport(name=f"destination {name}", status="ok",
                                     detail=f"{dest.describe()} (STOW-RS: not contacted)",
                                     fix=""))
            continue
        from vid2dcm.delivery.transports.dimse import echo

        try:
            result = echo(dest.model_copy(update={"retries": 0, "timeout_s": 5.0}))
            found.append(CheckReport(
                name=f"destination {name}", status="ok" if result.status == 0 else "failed",
                detail=f"{dest.describe()}: C-ECHO status 0x{result.status:04X} in "
                       f"{result.seconds * 1000:.0f} ms",
                fix="" if result.status == 0 else "ask the PACS administrator why C-ECHO is "
                                                  "refused"))
        except Vid2DcmError as exc:
            found.append(CheckReport(
                name=f"destination {name}", status="failed", detail=str(exc),
                fix=f"check host, port and that the PACS knows calling AE "
                    f"{dest.calling_ae_title} (vid2dcm echo {name} --config {config})"))
    return found


def doctor(
    data: Annotated[Path | None, typer.Option(
        "--data", metavar="FOLDER", help="Gateway data folder to check (default as serve).")
    ] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, metavar="PORT",
                                             help="Gateway port to check (default 8080).")
                    ] = None,
    config: Config = None,
    as_json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Check the installation (FFmpeg features, DCMTK/dicom3tools, data folder, port, PACS
    echo for --config destinations) and say what to fix; exit 1 if a check failed."""
    from vid2dcm.apps.cli.service import default_data_dir

    folder = data or default_data_dir()
    steps: list[Callable[[], list[CheckReport]]] = [
        check_ffmpeg, check_tools, lambda: [check_data(folder)],
        lambda: [check_port("127.0.0.1", port or 8080)],
    ]
    if config is not None:
        steps.append(lambda: check_destinations(config))
    checks = [c for step in steps for c in step()]
    report = DoctorReport(ok=all(c.status != "failed" for c in checks), checks=checks)
    if as_json:
        emit(report)
    else:
        colour = {"ok": "green", "warning": "yellow", "failed": "red"}
        from rich.markup import escape

        for c in checks:
            fix = f"\n      fix: {escape(c.fix)}" if c.fix else ""
            styled(f"[{colour[c.status]}]{c.status:7}[/] {escape(c.name)}: {escape(c.detail)}"
                   f"{fix}")
    if not report.ok:
        failed = sum(c.status == "failed" for c in checks)
        raise Reported(f"{failed} check(s) failed; each says what to fix")
