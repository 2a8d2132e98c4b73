"""The vid2dcm command line, one module per family of commands:

main (the app, the command list), failure (the one failure path: any error -> one line + exit
code), codes (the exit-code table), options (shared options and the checks run before any
work), output (stdout/stderr, JSON, progress), identity (no delivery without a Patient ID),
inspect (probe, info, extract, validate), convert (convert, sample), deliver (echo, send,
worklist), service (serve, worker, gateway, token, watch), record, deidentify, media, orders
(hl7-listen, orders, oru, fhir-poll, route, kos), doctor.

Issue 17: `vid2dcm --version` answers before Typer, rich, pydantic or any engine is imported
(about 20 ms instead of a second); main, COMMANDS and app are imported on first use (PEP 562).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vid2dcm.apps.cli.main import COMMANDS, app

__all__ = ["COMMANDS", "app", "main"]


def main(argv: list[str] | None = None) -> int:
    """Entry point (console script vid2dcm, python -m vid2dcm)."""
    args = sys.argv[1:] if argv is None else argv
    if args == ["--version"]:
        from vid2dcm.core.version import __version__

        sys.stdout.write(f"vid2dcm {__version__}\n")
        return 0
    from vid2dcm.apps.cli.main import main as run

    return run(args)


def __getattr__(name: str) -> Any:
    if name in ("COMMANDS", "app"):
        from importlib import import_module

        return getattr(import_module("vid2dcm.apps.cli.main"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    """Importing the submodule main binds it as this package's attribute `main`, which would
    hide the entry-point function of the same name (the console script is
    vid2dcm.apps.cli:main). The function stays; the module is sys.modules[...main]."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "main" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
