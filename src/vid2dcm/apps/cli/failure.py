"""The one failure path: every command runs under guarded(), which turns any exception into one
line on stderr ("vid2dcm: error: ..."), {"error": {"code", "kind", "message"}} on stdout under
--json, and the exit code of codes.EXIT_CODES; -v adds the traceback. Kept apart from main so
a command module (and the compatibility modules apps/*_command.py) can use it without
importing every other command."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from typing import Any

import typer

from vid2dcm.apps.cli.codes import Reported, exit_code_for
from vid2dcm.apps.cli.output import UI, emit, err
from vid2dcm.core.errors import Vid2DcmError


def report_failure(exc: BaseException, *, as_json: bool, verbose: bool) -> int:
    """One line on stderr (and an error object on stdout under --json); the exit code."""
    row = exit_code_for(exc)
    if isinstance(exc, typer.TyperException):
        message = exc.format_message().replace("Value error, ", "")
    elif isinstance(exc, KeyboardInterrupt | typer.Abort):
        message = "interrupted"
    elif isinstance(exc, OSError):
        message = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    elif not isinstance(exc, Vid2DcmError):
        message = f"internal error: {type(exc).__name__}: {exc}"
    else:
        message = str(exc)
    code = getattr(exc, "exit_code", None) if isinstance(exc, typer.TyperException) else None
    code = code if isinstance(code, int) else row.code
    message = " ".join(message.split())  # one line, whatever the exception held
    if verbose and not isinstance(exc, typer.TyperException):
        traceback.print_exception(exc)
    if as_json and not isinstance(exc, Reported):
        from vid2dcm.apps.report import ErrorDetail, ErrorReport

        emit(ErrorReport(error=ErrorDetail(code=code, kind=row.kind, message=message)))
    err.print(f"vid2dcm: error: {message}", markup=False, highlight=False, soft_wrap=True)
    return code


def guarded(func: Callable[..., Any]) -> Callable[..., Any]:
    """Run a command with its --json/--quiet/-v settings in force and its failures reported
    the one way (Typer reads the signature through functools.wraps)."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> Any:
        UI.json = bool(kwargs.get("as_json", False))
        UI.quiet = bool(kwargs.get("quiet", False))
        UI.verbose = bool(kwargs.get("verbose", False))
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except (Exception, KeyboardInterrupt) as exc:
            raise typer.Exit(report_failure(exc, as_json=UI.json, verbose=UI.verbose)) from exc

    return run
