"""`vid2dcm media OUT_DIR FILES... [--study UID]`: patient media (DICOMDIR file set and an
INDEX.HTM that plays the videos). Registered on the CLI app by apps/cli with one line:
`app.command(name="media")(media)`."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from vid2dcm.apps.media_export import collect, export_media
from vid2dcm.core.errors import Vid2DcmError

_out = Console(soft_wrap=True)
_err = Console(stderr=True, soft_wrap=True)


def media(
    out_dir: Annotated[Path, typer.Argument(help="New (or empty) folder for the file set.")],
    files: Annotated[list[Path], typer.Argument(
        help="DICOM files, or folders searched for them.")],
    study: Annotated[str | None, typer.Option(
        "--study", help="Only the instances of this Study Instance UID.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v",
                                          help="Show tracebacks on errors.")] = False,
) -> None:
    """Patient media: DICOMDIR file set (PS3.10) plus INDEX.HTM that plays H.264 videos."""
    try:
        result = export_media(out_dir, collect(files, study))
    except Vid2DcmError as exc:
        if verbose:
            traceback.print_exc()
        _err.print(f"vid2dcm: error: {exc}", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except Exception as exc:  # still one line, never a traceback by default
        if verbose:
            traceback.print_exc()
        _err.print(f"vid2dcm: error: internal error: {type(exc).__name__}: {exc}",
                   markup=False, highlight=False)
        raise typer.Exit(1) from None
    playable = sum(1 for i in result.items if i.video)
    _out.print(f"{out_dir}  {len(result.items)} instances, {playable} playable in a browser, "
               f"profile {result.profile or 'none'}", markup=False, highlight=False)
