"""Compatibility: `vid2dcm media` now lives in vid2dcm.apps.cli.media; this name stays for code
that builds its own Typer app from it. The function is wrapped in the CLI's one failure path
(one line, the documented exit code, {"error": ...} under --json)."""

from vid2dcm.apps.cli.failure import guarded
from vid2dcm.apps.cli.media import media as _media

media = guarded(_media)

__all__ = ["media"]
