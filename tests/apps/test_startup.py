"""Start-up (issue 17): the command line loads only what a command needs.

The copy path cannot avoid PyAV and pydicom (it reads the video and writes the header), but
registering the commands, the core tables, planning and --help must not load pydicom (which
pulls NumPy and its pixel handlers, a third of a second here), and the UIDs made without it
must be pydicom's to the digit (a re-run job must re-create the instances a PACS already has)."""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
from pydicom.uid import generate_uid as pydicom_generate_uid

from vid2dcm.core.uids import UidSource, generate_uid, is_valid_uid, new_uid


def _loaded(code: str) -> set[str]:
    probe = (f"{code}\nimport sys\nheavy = {{'pydicom', 'numpy', 'pynetdicom', 'fastapi', "
             "'rich.progress'}\nprint(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()[-1]
    return set(ast.literal_eval(out))


def test_core_tables_and_planning_load_no_dicom_or_pixel_stack() -> None:
    assert _loaded("import vid2dcm.core.syntaxes, vid2dcm.core.iods, "
                   "vid2dcm.core.frame_syntaxes, vid2dcm.core.metadata, "
                   "vid2dcm.planning.plan") == set()


def test_command_registration_and_help_load_no_dicom_or_pixel_stack() -> None:
    assert _loaded("from vid2dcm.apps.cli import app\n"
                   "from typer.testing import CliRunner\n"
                   "assert CliRunner().invoke(app, ['--help']).exit_code == 0") == set()


@pytest.mark.parametrize("prefix", ["1.2.826.0.1.3680043.10.999.", "1.2.3.", "2.25.0."])
@pytest.mark.parametrize("entropy", ["vid2dcm/job-7/study", "x", ""])
def test_seeded_uids_are_pydicoms(prefix: str, entropy: str) -> None:
    assert generate_uid(prefix, entropy) == pydicom_generate_uid(prefix, entropy_srcs=[entropy])


def test_fresh_uids_are_valid_and_distinct() -> None:
    made = {new_uid(), new_uid("1.2.826.0.1.3680043.10.999"), *(new_uid() for _ in range(50))}
    assert len(made) == 52
    assert all(is_valid_uid(u) for u in made)
    assert all(len(u) <= 64 for u in made)
    rooted = UidSource("1.2.826.0.1.3680043.10.999", "seed").new("study")
    assert rooted == UidSource("1.2.826.0.1.3680043.10.999", "seed").new("study")
    assert rooted.startswith("1.2.826.0.1.3680043.10.999.") and is_valid_uid(rooted)


def test_a_bad_prefix_is_refused() -> None:
    with pytest.raises(ValueError):
        generate_uid("1.02.")
    with pytest.raises(ValueError):
        generate_uid("1." * 30)


def test_a_command_line_builds_only_its_command() -> None:
    """Typer converts every registered command's annotations when the app runs; one command
    gets an app with that command alone, with the same options as in the whole app."""
    import typer

    from vid2dcm.apps.cli.main import COMMANDS, app, app_for

    whole = typer.main.get_command(app)
    assert app_for([]) is app and app_for(["--help"]) is app and app_for(["user"]) is app
    assert app_for(["no-such-command"]) is app
    for name, _function in COMMANDS:
        one = typer.main.get_command(app_for([name, "--help"]))
        assert list(one.commands) == [name]  # type: ignore[attr-defined]
        mine, theirs = one.commands[name], whole.commands[name]  # type: ignore[attr-defined]
        assert [p.name for p in mine.params] == [p.name for p in theirs.params]
        assert mine.help == theirs.help
