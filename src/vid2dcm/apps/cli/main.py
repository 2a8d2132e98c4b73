"""The vid2dcm command line: the Typer app, the list of commands, and the one place where
every failure becomes one line on stderr (plus {"error": ...} on stdout under --json) and the
exit code of codes.EXIT_CODES. -v shows the traceback.

A new command is a function in its own module and one line in COMMANDS. Command modules
import their engines (pipeline, pynetdicom, capture, de-identification) inside the command
function, so registering every command costs only the option declarations (issue 17)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer

from vid2dcm.apps.cli import (
    convert,
    deidentify,
    deliver,
    doctor,
    inspect,
    media,
    orders,
    record,
    service,
)
from vid2dcm.apps.cli.codes import exit_code_table
from vid2dcm.apps.cli.failure import guarded, report_failure
from vid2dcm.apps.cli.output import out
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
    ("record", record.record),
    ("serve", service.serve),
    ("worker", service.worker),
    ("gateway", service.gateway),
    ("token", service.token),
    ("deidentify", deidentify.deidentify),
    ("media", media.media),
    ("orders", orders.orders),
    ("hl7-listen", orders.hl7_listen),
    ("fhir-poll", orders.fhir_poll),
    ("oru", orders.oru),
    ("route", orders.route_command),
    ("kos", orders.kos),
    ("doctor", doctor.doctor),
)
"""(name, function) in the order --help lists them. Register a command with one line here."""

HELP = ("Turn video into conformant DICOM, copying the bitstream when DICOM accepts it.\n\n"
        "Shell completion: vid2dcm --install-completion (bash, zsh, fish, PowerShell).")



def _typer() -> typer.Typer:
    return typer.Typer(no_args_is_help=True, pretty_exceptions_enable=False,
                       rich_markup_mode=None, help=HELP, epilog=exit_code_table(),
                       context_settings={"help_option_names": ["--help", "-h"]})


app = _typer()


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


def app_for(args: list[str]) -> typer.Typer:
    """The app a command line needs. Typer turns the annotations of every registered command
    into Click options each time the app runs (about 0.15 s for all of them here, issue 17);
    `vid2dcm CMD ...` gets an app holding CMD alone, the same command with the same options
    and help. Anything else (--help, `user`, an unknown name) gets the whole app."""
    function = dict(COMMANDS).get(args[0]) if args else None
    if function is None:
        return app
    one = _typer()
    one.callback()(_root)
    one.command(name=args[0])(guarded(function))
    return one


def main(argv: list[str] | None = None) -> int:
    """Entry point: option errors are one line too (not Click's usage panel), and under
    --json an error object on stdout."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app_for(args)(args=args, standalone_mode=False, prog_name="vid2dcm")
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
