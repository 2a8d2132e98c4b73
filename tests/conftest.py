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
