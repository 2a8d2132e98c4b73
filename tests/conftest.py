"""Shared fixtures: every test video is synthesised here with PyAV; nothing binary is committed."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from vid2dcm.producing.synth import ClipSpec, synthesize

MakeClip = Callable[[str, ClipSpec], Path]


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory) -> MakeClip:
    """Synthesise a clip once per session under a stable name; returns its path."""
    folder = tmp_path_factory.mktemp("clips")
    cache: dict[str, Path] = {}

    def make(name: str, spec: ClipSpec) -> Path:
        if name not in cache:
            cache[name] = synthesize(folder / name, spec)
        return cache[name]

    return make


SERVER_MODULES: dict[str, tuple[str, ...]] = {
    "test_delivery": ("needs_orthanc", "needs_dcmtk"),
    "test_pacs_acceptance": ("needs_orthanc",),
    "test_service": ("needs_orthanc", "needs_browser", "needs_redis"),
    "test_memory": ("needs_dcmtk",),
    "test_tls": ("needs_dcmtk",),
    "test_worklist": ("needs_dcmtk",),
    "test_gateway_postgres": ("needs_postgres",),
}
"""Modules whose tests start real servers (Orthanc, DCMTK peers, Redis, Chromium): each gets
its needs_* markers and `integration`, so `pytest -m "not integration"` is the inner loop."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = item.module.__name__.rsplit(".", 1)[-1] if item.module else ""
        needs = SERVER_MODULES.get(module, ())
        for name in needs:
            item.add_marker(getattr(pytest.mark, name))
        if needs or any(m.name.startswith("needs_") for m in item.iter_markers()):
            item.add_marker(pytest.mark.integration)
