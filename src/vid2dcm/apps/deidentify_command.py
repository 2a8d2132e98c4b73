"""Compatibility: `vid2dcm deidentify` now lives in vid2dcm.apps.cli.deidentify; this name
stays for code that builds its own Typer app from it. The function is wrapped in the CLI's
one failure path (one line, the documented exit code, {"error": ...} under --json)."""

from vid2dcm.apps.cli.deidentify import deidentify as _deidentify
from vid2dcm.apps.cli.failure import guarded

deidentify = guarded(_deidentify)

__all__ = ["deidentify"]
