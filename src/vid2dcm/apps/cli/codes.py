"""The exit codes: one table from exception class to code, name, meaning and remedy. --help, the
README, docs/cli.md and docs/troubleshooting.md list the same table; tests compare them with it."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from vid2dcm.core.errors import (
    DeliveryError,
    InputError,
    NotStorableError,
    OutputError,
    ServiceError,
    UsageError,
    Vid2DcmError,
)


class Reported(Vid2DcmError):
    """The command has printed its results, failures among them (validate findings, doctor
    checks, delivery receipts, the failed files of a folder); what is left is a closing line
    and the exit code. Under --json no error object follows: the results said it."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


class UnidentifiedError(Vid2DcmError):
    """Delivery of an instance without a Patient ID (0010,0020) was refused (issue 11): a PACS
    files it under an empty or made-up patient, where nobody finds it and where it may merge
    with another unidentified patient's images. --allow-unidentified sends it anyway."""

    exit_code = 8


@dataclass(frozen=True)
class ExitCode:
    code: int
    kind: str
    """Stable name, used as error.kind in --json output."""
    meaning: str
    remedy: str
    raised_by: tuple[type[BaseException], ...] = ()


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(0, "ok", "success", ""),
    ExitCode(1, "failed",
             "validate found errors, doctor found a failing check, or an internal error",
             "read the findings printed above; an internal error is a bug: run again with -v "
             "and report the traceback", (Vid2DcmError,)),
    ExitCode(2, "usage",
             "bad option or value, bad metadata file, settings file (service.toml) or "
             "destinations file",
             "the message names the option or key, the bad value and a good example; "
             "`vid2dcm COMMAND --help` lists the options", (UsageError, typer.TyperException)),
    ExitCode(3, "input",
             "input unreadable or unsupported: missing, empty, not a video, truncated, audio "
             "only, an image, nothing decodable, not a DICOM video file",
             "check the path; `vid2dcm probe FILE` says what was found in it", (InputError,)),
    ExitCode(4, "not-storable",
             "not storable without transcoding and --transcode never was given, or more "
             "uncompressed frames than native Pixel Data can hold",
             "drop --transcode never (the message names the rule), or choose --frames jpeg",
             (NotStorableError,)),
    ExitCode(5, "output",
             "output or I/O failure: folder missing, file exists, disk full, permission denied",
             "create the folder, pass --overwrite, free space or fix permissions",
             (OutputError, OSError)),
    ExitCode(6, "delivery",
             "delivery failed: peer unreachable, refused every option, commitment refused, "
             "TLS or HTTP authentication failure",
             "`vid2dcm echo DEST` and `vid2dcm doctor --config FILE`; check AE titles, host, "
             "port and credentials", (DeliveryError,)),
    ExitCode(7, "service",
             "a service (serve, worker, gateway) could not start: port in use, data folder "
             "not writable or made by another version",
             "choose another --port (make run PORT=8081), fix the folder's permissions or "
             "pass another --data", (ServiceError,)),
    ExitCode(8, "unidentified",
             "delivery refused: an instance has no Patient ID",
             "give --patient-id (or a --metadata file with patient_id, or --worklist), or "
             "pass --allow-unidentified to deliver it anyway", (UnidentifiedError,)),
    ExitCode(130, "interrupted", "interrupted (Ctrl-C)", "run it again",
             (KeyboardInterrupt, typer.Abort)),
)

INTERNAL = EXIT_CODES[1]
BY_CODE = {e.code: e for e in EXIT_CODES}


def exit_code_for(exc: BaseException) -> ExitCode:
    """The most specific row whose exception classes match (walks the class's MRO, so a
    subclass of UsageError is a usage error); anything unforeseen is an internal error."""
    if isinstance(exc, Reported):
        return BY_CODE.get(exc.exit_code, INTERNAL)
    for cls in type(exc).__mro__:
        for row in EXIT_CODES:
            if cls in row.raised_by:
                return row
    return INTERNAL


def exit_code_table() -> str:
    """The table as plain text lines for --help (\\b keeps click from re-wrapping them)."""
    lines = ["\b", "Exit codes:"]
    lines += [f"  {e.code:>3}  {e.meaning}" for e in EXIT_CODES]
    return "\n".join(lines)
