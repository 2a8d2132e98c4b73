"""Destinations: inline addresses, STOW URLs and named entries of a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from vid2dcm.core.errors import UsageError
from vid2dcm.delivery.destinations import load_destinations, parse_destination


def test_inline_ae_address() -> None:
    dest = parse_destination("PACS@127.0.0.1:11112")
    assert (dest.kind, dest.ae_title, dest.host, dest.port) == ("dimse", "PACS", "127.0.0.1",
                                                               11112)
    assert dest.lossy_fallback and dest.retries == 3


def test_stow_url() -> None:
    dest = parse_destination("http://127.0.0.1:8042/dicom-web")
    assert dest.kind == "stow"


def test_named_destinations_from_toml(tmp_path: Path) -> None:
    config = tmp_path / "vid2dcm.toml"
    config.write_text('''
[destinations.pacs]
ae_title = "ORTHANC"
host = "127.0.0.1"
port = 4242
lossy_fallback = false
max_object_bytes = 2000000000

[destinations.cloud]
kind = "stow"
url = "https://127.0.0.1:8443/dicom-web"
bearer_token = "abc"
''')
    named = load_destinations(config)
    assert named["pacs"].lossy_fallback is False
    assert named["pacs"].max_object_bytes == 2_000_000_000
    assert parse_destination("cloud", config).bearer_token == "abc"


@pytest.mark.parametrize("text", ["", "nohost", "AE@host", "A@h:99999",
                                  "WAYTOOLONGAETITLE1@h:104"])
def test_bad_addresses_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError):
        parse_destination(text)


def test_unknown_key_in_config_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('[destinations.x]\nae_title = "A"\nhost = "h"\nprot = 1\n')
    with pytest.raises(UsageError, match="destination x"):
        load_destinations(config)
