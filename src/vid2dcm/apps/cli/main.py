"""The vid2dcm command line: the Typer app, the list of commands, and the one place where
every failure becomes one line on stderr (plus {"error": ...} on stdout under --json) and the
exit code of codes.EXIT_CODES. -v shows the traceback.

A new command is a function in its own module and one line in COMMANDS."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from typing import Annotated, Any

import typer

from vid2dcm.apps import deidentify_command, media_command, orders_command, record_command
from vid2dcm.apps.cli import convert, deliver, doctor, inspect, service
from vid2dcm.apps.cli.codes import Reported, exit_code_for, exit_code_table
from vid2dcm.apps.cli.output import UI, emit, err, out
from vid2dcm.apps.report import ErrorDetail, ErrorReport
from vid2dcm.core.errors import Vid2DcmError
from vid2dcm.core.version import __version__

COMMANDS: tuple[tuple[str, Callable[..., Any]], ...] = (
    ("probe", inspect.probe),
    ("convert", convert.convert),
    ("info", inspect.info),
    ("extract", inspect.extract),
    ("validate", inspect.validate),
    ("sample", convert.sample),
    ("echo", deliver.echo),
    ("send", deliver.send),
    ("worklist", deliver.worklist),
    ("watch", service.watch),
    ("record", record_command.record),
    ("serve", service.serve),
    ("worker", service.worker),
    ("gateway", service.gateway),
    ("token", service.token),
    ("deidentify", deidentify_command.deidentify),
    ("media", media_command.media),
    ("orders", orders_command.orders),
    ("hl7-listen", orders_command.hl7_listen),
    ("fhir-poll", orders_command.fhir_poll),
    ("oru", orders_command.oru),
    ("route", orders_command.route_command),
    ("kos", orders_command.kos),
    ("doctor", doctor.doctor),
)
"""(name, function) in the order --help lists them. Register a command with one line here."""

HELP = ("Turn video into conformant DICOM, copying the bitstream when DICOM accepts it.\n\n"
        "Shell completion: vid2dcm --install-completion (bash, zsh, fish, PowerShell).")

app = typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help=HELP, epilog=exit_code_table(),
                  context_settings={"help_option_names": ["--help", "-h"]})


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


for _name, _function in COMMANDS:
    app.command(name=_name)(guarded(_function))

users = typer.Typer(help="Gateway accounts (people who sign in on the staff page).",
                    no_args_is_help=True)
users.command("add")(guarded(service.user_add))
users.command("disable")(guarded(service.user_disable))
app.add_typer(users, name="user")


def _version(value: bool) -> None:
    if value:
        out.print(f"vid2dcm {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    pass


def main(argv: list[str] | None = None) -> int:
    """Entry point: option errors are one line too (not Click's usage panel), and under
    --json an error object on stdout."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args, standalone_mode=False, prog_name="vid2dcm")
    except typer.Exit as exc:
        return int(exc.exit_code)
    except (typer.TyperException, typer.Abort, KeyboardInterrupt) as exc:
        context = getattr(exc, "ctx", None)
        if type(exc).__name__ == "NoArgsIsHelpError" and context is not None:
            sys.stdout.write(context.get_help() + "\n")  # `vid2dcm` alone: the help
            return 0
        return report_failure(exc, as_json="--json" in args, verbose=False)
    return code if isinstance(code, int) else 0


if __name__ == "__main__":
    sys.exit(main())
