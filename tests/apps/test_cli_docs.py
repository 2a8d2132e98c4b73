"""The command line's documentation is held to the code: the exit-code tables of --help, the
README, docs/cli.md and docs/troubleshooting.md against codes.EXIT_CODES; the JSON shapes in
docs/cli.md against the pydantic models; the help text without swallowed words or <bool>."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from vid2dcm.apps.cli import COMMANDS
from vid2dcm.apps.cli.codes import EXIT_CODES, exit_code_for
from vid2dcm.apps.report import JSON_SHAPES
from vid2dcm.core import errors

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CLI_DOC = ROOT / "docs" / "cli.md"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"


def _table(text: str, header: str) -> list[list[str]]:
    """Rows of the markdown table that starts with the given header line."""
    lines = text[text.index(header):].splitlines()[2:]
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_readme_exit_codes_match_the_code() -> None:
    rows = _table(README.read_text(), "| exit code | meaning |")
    assert [(int(r[0]), r[1]) for r in rows] == [(e.code, e.meaning) for e in EXIT_CODES]


def test_cli_doc_exit_codes_match_the_code() -> None:
    rows = _table(CLI_DOC.read_text(), "| code | kind | meaning |")
    assert [(int(r[0]), r[1], r[2]) for r in rows] == [(e.code, e.kind, e.meaning)
                                                       for e in EXIT_CODES]


def test_troubleshooting_headings_are_the_exit_codes() -> None:
    codes = [int(c) for c in re.findall(r"^## Exit code (\d+)", TROUBLESHOOTING.read_text(),
                                         flags=re.M)]
    assert codes == [e.code for e in EXIT_CODES if e.code]


def test_help_lists_the_exit_codes() -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "--help"], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 0
    for e in EXIT_CODES:
        assert re.search(rf"^\s*{e.code}\s+{re.escape(e.meaning)}$", proc.stdout, re.M), e


@pytest.mark.parametrize("exc", [errors.UsageError("x"), errors.InputError("x"),
                                 errors.NotStorableError("x"), errors.OutputError("x"),
                                 errors.DeliveryError("x"), errors.ServiceError("x"),
                                 errors.Vid2DcmError("x")])
def test_each_error_class_maps_to_its_own_exit_code(exc: errors.Vid2DcmError) -> None:
    assert exit_code_for(exc).code == exc.exit_code


def test_an_unforeseen_exception_is_exit_1() -> None:
    assert exit_code_for(ValueError("x")).code == 1
    assert exit_code_for(FileNotFoundError("x")).code == 5
    assert exit_code_for(KeyboardInterrupt()).code == 130


def _documented_fields(name: str) -> list[str]:
    text = CLI_DOC.read_text()
    section = text[text.index(f"### {name}\n"):]
    return [r[0].strip("`") for r in _table(section, "| field | type | meaning |")]


@pytest.mark.parametrize("name", sorted(JSON_SHAPES))
def test_cli_doc_lists_every_json_field(name: str) -> None:
    assert _documented_fields(name) == list(JSON_SHAPES[name].model_fields)


@pytest.mark.parametrize("name", [name for name, f in COMMANDS
                                  if f.__module__.startswith("vid2dcm.apps.cli.")])
def test_help_has_no_swallowed_text_or_type_labels(name: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", name, "--help"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout
    options = [line for line in proc.stdout.splitlines() if line.lstrip().startswith("-")]
    for line in options:
        assert not re.search(r"<(str|int|float|list|path)", line), line
    if "--config" in proc.stdout:
        assert "[destinations.NAME]" in proc.stdout


def test_every_command_is_registered_and_has_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "--help"], capture_output=True,
                          text=True, check=False)
    listed = re.findall(r"^  ([\w-]+)\s", proc.stdout.split("Commands:")[1], flags=re.M)
    assert listed[:len(COMMANDS)] == [name for name, _ in COMMANDS]


def test_shell_completion_is_offered_and_documented() -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "--help"], capture_output=True,
                          text=True, check=False)
    assert "--install-completion" in proc.stdout
    assert "vid2dcm --install-completion" in CLI_DOC.read_text()


def test_completion_completes_commands_and_choices() -> None:
    env = {**__import__("os").environ, "_VID2DCM_COMPLETE": "complete_bash",
           "COMP_WORDS": "vid2dcm convert --sop ", "COMP_CWORD": "3"}
    proc = subprocess.run([sys.executable, "-m", "vid2dcm"], env=env, capture_output=True,
                          text=True, check=False)
    assert proc.stdout.split() == ["photographic", "endoscopic", "microscopic", "ultrasound",
                                   "sc"]


def test_no_arguments_print_the_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "vid2dcm"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and proc.stderr == ""
    assert proc.stdout.startswith("Usage: vid2dcm")


@pytest.mark.parametrize("module", ["vid2dcm", "vid2dcm.apps.cli"])
def test_both_module_entry_points_run(module: str) -> None:
    from vid2dcm import __version__

    proc = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True,
                          text=True, check=False)
    assert (proc.returncode, proc.stdout.strip()) == (0, f"vid2dcm {__version__}")


def test_console_script_points_at_main() -> None:
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["vid2dcm"] == "vid2dcm.apps.cli:main"


def test_every_command_lives_in_the_cli_package() -> None:
    """Every command fails the one way (apps/cli/failure.py) and imports its engine lazily."""
    assert all(f.__module__.startswith("vid2dcm.apps.cli.") for _, f in COMMANDS)
