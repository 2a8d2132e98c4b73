"""The public facade: every documented name resolves, and importing it stays cheap."""

from __future__ import annotations

import subprocess
import sys

import vid2dcm


def test_every_public_name_resolves_to_its_stage() -> None:
    for name in vid2dcm.__all__:
        assert getattr(vid2dcm, name) is not None, name
    assert vid2dcm.plan.__name__ == "plan_conversion"
    assert vid2dcm.extract.__name__ == "extract_bitstream"
    assert vid2dcm.deliver.__module__ == "vid2dcm.delivery.send"


def test_unknown_name_is_an_attribute_error() -> None:
    try:
        vid2dcm.no_such_thing  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_import_does_not_load_the_media_or_network_stack() -> None:
    code = ("import sys, vid2dcm; heavy = {'av', 'pydicom', 'pynetdicom', 'numpy', 'fastapi'}"
            " & set(sys.modules); print(sorted(heavy))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
