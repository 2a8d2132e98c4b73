"""Compatibility: `vid2dcm record` now lives in vid2dcm.apps.cli.record; this name stays for code
that builds its own Typer app from it. The function is wrapped in the CLI's one failure path
(one line, the documented exit code, {"error": ...} under --json)."""

from vid2dcm.apps.cli.failure import guarded
from vid2dcm.apps.cli.record import record as _record

record = guarded(_record)

__all__ = ["record"]
