"""`vid2dcm media OUT_DIR FILES... [--study UID]`: patient media (DICOMDIR file set and an
INDEX.HTM that plays the videos). Listed in COMMANDS in apps/cli/main.py; failures go through
the CLI's one failure path (one line, the documented exit code, {"error": ...} under --json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vid2dcm.apps.cli.options import Verbose
from vid2dcm.apps.cli.output import line


def media(
    out_dir: Annotated[Path, typer.Argument(metavar="OUT_DIR",
                                            help="New (or empty) folder for the file set.")],
    files: Annotated[list[Path], typer.Argument(
        metavar="FILE...", help="DICOM files, or folders searched for them.")],
    study: Annotated[str | None, typer.Option(
        "--study", metavar="UID", help="Only the instances of this Study Instance UID.")
    ] = None,
    verbose: Verbose = False,
) -> None:
    """Patient media: DICOMDIR file set (PS3.10) plus INDEX.HTM that plays H.264 videos."""
    from vid2dcm.apps.media_export import collect, export_media

    result = export_media(out_dir, collect(files, study))
    playable = sum(1 for i in result.items if i.video)
    line(f"{out_dir}  {len(result.items)} instances, {playable} playable in a browser, "
         f"profile {result.profile or 'none'}")
