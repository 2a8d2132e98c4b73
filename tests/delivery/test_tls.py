"""DIMSE over TLS against DCMTK storescp, with a throw-away CA made by openssl in the test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dcmtk_peers import StoreSCP, running_storescp
from pki import make_ca, make_leaf
from vid2dcm.core.errors import DeliveryError
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.transports.dimse import echo
from vid2dcm.pipeline import convert
from vid2dcm.producing.synth import ClipSpec, synthesize


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, ca = make_ca(folder, "ca")
    _, other_ca = make_ca(folder, "other-ca")
    server_key, server = make_leaf(folder, "server", ca_key, ca)
    client_key, client = make_leaf(folder, "client", ca_key, ca)
    return {"ca": ca, "other_ca": other_ca, "server": server, "server_key": server_key,
            "client": client, "client_key": client_key}


@pytest.fixture(scope="module")
def tls_peer(pki: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[StoreSCP]:
    with running_storescp(tmp_path_factory.mktemp("tls-in"), "+tls", str(pki["server_key"]),
                          str(pki["server"]), "+cf", str(pki["ca"])) as peer:
        yield peer


def config(tmp_path: Path, peer: StoreSCP, ca: Path, pki: dict[str, Path]) -> Path:
    path = tmp_path / "vid2dcm.toml"
    path.write_text(f'''
[destinations.secure]
ae_title = "{peer.aet}"
host = "127.0.0.1"
port = {peer.port}
retries = 0
[destinations.secure.tls]
ca_file = "{ca}"
cert_file = "{pki['client']}"
key_file = "{pki['client_key']}"
''')
    return path


def cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "vid2dcm", *map(str, args)],
                          capture_output=True, text=True, check=False)


def test_send_over_tls(tls_peer: StoreSCP, pki: dict[str, Path], tmp_path: Path) -> None:
    clip = synthesize(tmp_path / "c.mp4", ClipSpec(options={"preset": "superfast",
                                                            "profile": "high"}, frames=10))
    dcm = convert(clip, tmp_path / "c.dcm").files[0].path
    cfg = config(tmp_path, tls_peer, pki["ca"], pki)
    assert cli("echo", "secure", "--config", cfg).returncode == 0
    proc = cli("send", dcm, "--to", "secure", "--config", cfg, "--allow-unidentified")
    assert proc.returncode == 0, proc.stderr
    assert len(tls_peer.received()) == 1


def test_untrusted_certificate_is_refused(tls_peer: StoreSCP, pki: dict[str, Path],
                                          tmp_path: Path) -> None:
    cfg = config(tmp_path, tls_peer, pki["other_ca"], pki)
    proc = cli("echo", "secure", "--config", cfg)
    assert proc.returncode == 6
    assert "TLS handshake failed: self-signed certificate" in proc.stderr
    plain = Destination(ae_title=tls_peer.aet, host="127.0.0.1", port=tls_peer.port,
                        retries=0, timeout_s=3)
    with pytest.raises(DeliveryError):
        echo(plain)  # a TLS-only peer must not accept a plain association
