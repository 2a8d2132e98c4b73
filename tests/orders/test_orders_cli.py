"""The orders CLI commands, on a Typer app they are registered on (as apps/cli.py will)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from test_orders_hl7 import ORM
from typer.testing import CliRunner

from dcmtk_peers import free_port, stop
from vid2dcm.apps.gateway.integration import order_store
from vid2dcm.apps.gateway.settings import load_settings
from vid2dcm.apps.orders_command import register
from vid2dcm.orders.inbox import handle
from vid2dcm.orders.mllp import send_message
from vid2dcm.orders.store import OrderStore

app = typer.Typer()
register(app)
runner = CliRunner()

APP = "import sys, typer; from vid2dcm.apps.orders_command import register; " \
      "app = typer.Typer(); register(app); sys.exit(app())"


def test_orders_listing_and_lookup(tmp_path: Path) -> None:
    handle(ORM, OrderStore(tmp_path / "orders.sqlite"))
    result = runner.invoke(app, ["orders", "--data", str(tmp_path), "--date", "20261203"])
    assert result.exit_code == 0, result.output
    assert "ACC100" in result.output and "1 order" in result.output
    result = runner.invoke(app, ["orders", "--data", str(tmp_path), "--accession", "NOPE"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["orders", "--data", str(tmp_path), "--date", "tomorrow"])
    assert result.exit_code == 2


def test_route_explains(tmp_path: Path) -> None:
    handle(ORM, OrderStore(tmp_path / "orders.sqlite"))
    config = tmp_path / "settings.toml"
    config.write_text('[destinations.pacs]\nae_title = "PACS"\nhost = "127.0.0.1"\n'
                      '[destinations.research]\nae_title = "R"\nhost = "127.0.0.1"\n'
                      '[routing]\ndefault = ["pacs"]\n[[routing.rules]]\nname = "endoscopy"\n'
                      'modality = ["ES"]\ndestinations = ["pacs", "research"]\n')
    result = runner.invoke(app, ["route", "--config", str(config), "--data", str(tmp_path),
                                 "--accession", "ACC100"])
    assert result.exit_code == 0, result.output
    assert "sent to research because rule 'endoscopy' matched modality ES" in result.output
    config.write_text(config.read_text().replace('"research"]', '"gone"]'))
    result = runner.invoke(app, ["route", "--config", str(config)])
    assert result.exit_code == 2 and "unknown destination 'gone'" in result.output


def test_kos_bad_input_is_one_line(tmp_path: Path) -> None:
    notdicom = tmp_path / "x.dcm"
    notdicom.write_text("hello")
    proc = subprocess.run([sys.executable, "-c", APP, "kos", str(notdicom), "-o",
                           str(tmp_path / "k.dcm")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("vid2dcm: error:")
    assert not (tmp_path / "k.dcm").exists()


@pytest.mark.integration
def test_hl7_listen_command(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", APP, "hl7-listen", "--data", str(tmp_path),
                             "--listen", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().decode()
        assert f"listening for HL7 on 127.0.0.1:{port}" in line
        deadline = time.monotonic() + 10
        while True:
            try:
                ack = send_message("127.0.0.1", port, ORM, timeout_s=5)
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert ack.code == "AA"
    finally:
        stop(proc)  # type: ignore[arg-type]
    # The gateway's store (sealed: the plain OrderStore finds nothing by accession there).
    assert order_store(load_settings(tmp_path)).find_by_accession("ACC100") is not None
    assert OrderStore(tmp_path / "orders.sqlite").find_by_accession("ACC100") is None


def test_kos_command_writes_a_valid_manifest(make_clip, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import pydicom

    from readback import dciodvfy_errors
    from vid2dcm.core.metadata import Metadata
    from vid2dcm.pipeline import convert
    from vid2dcm.planning.plan import Request
    from vid2dcm.producing.synth import ClipSpec

    video = convert(make_clip("kos.mp4", ClipSpec(width=64, height=48, frames=25)),
                    tmp_path / "v.dcm", metadata=Metadata(patient_id="CLI1"),
                    options=Request()).files[0].path
    out = tmp_path / "kos.dcm"
    result = runner.invoke(app, ["kos", str(video), "-o", str(out), "--title", "manifest"])
    assert result.exit_code == 0, result.output
    assert dciodvfy_errors(out) == []
    assert pydicom.dcmread(out).ConceptNameCodeSequence[0].CodeMeaning == "Manifest"
    again = runner.invoke(app, ["kos", str(video), "-o", str(out)])
    assert again.exit_code == 2 and "exists" in again.output


@pytest.mark.integration
def test_oru_message_kinds_from_the_result_table(tmp_path: Path) -> None:
    """`vid2dcm oru --message KIND` sends each kind of RESULT_MESSAGES (the names of
    `[hl7] result_message`) to a python-hl7 MLLP server on loopback; each is parsed with
    python-hl7 and has that kind's MSH-9 and MSH-12, the order and the Study Instance UID.
    A name not in the table is one line and the usage exit code, before anything is made."""
    import hl7

    from vid2dcm.apps.cli.codes import EXIT_CODES
    from vid2dcm.orders.hl7_mapping import field_value
    from vid2dcm.orders.mllp import MllpServer
    from vid2dcm.orders.results import RESULT_MESSAGES, STUDY_UID_CODE

    study = "1.2.826.0.1.3680043.10.543.100"
    handle(ORM, OrderStore(tmp_path / "orders.sqlite"))
    got: list[str] = []

    def on_message(text: str) -> str:
        got.append(text)
        return str(hl7.parse(text).create_ack("AA"))

    with MllpServer(on_message, "127.0.0.1", 0) as his:
        to = f"{his.address[0]}:{his.address[1]}"
        for kind in RESULT_MESSAGES:
            result = runner.invoke(app, ["oru", "--data", str(tmp_path), "--to", to,
                                         "--accession", "ACC100", "--study-uid", study,
                                         "--viewer-url", "http://viewer.example/s",
                                         "--message", kind])
            assert result.exit_code == 0, result.output
            assert result.output.strip() == f"HIS acknowledged the {kind} (AA)"
    assert len(got) == len(RESULT_MESSAGES)
    for kind, text in zip(RESULT_MESSAGES, got, strict=True):
        message = hl7.parse(text)
        form = RESULT_MESSAGES[kind]
        assert (field_value(message, "MSH-9", whole=True),
                field_value(message, "MSH-12")) == (form.message_type, form.version), kind
        assert (field_value(message, "ORC-2"), field_value(message, "OBR-18")) == (
            "PLC100", "ACC100")
        observations = [s for s in message if str(s[0]) == "OBX"]
        uid = [o for o in observations if str(o[3][0][0]) == STUDY_UID_CODE[0]]
        assert len(uid) == 1 and str(uid[0][5]) == study, kind
        assert "http://viewer.example/s" in text

    usage = next(e.code for e in EXIT_CODES if e.kind == "usage")
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "vid2dcm", "oru", "--data", str(empty),
                           "--to", "127.0.0.1:9", "--accession", "ACC100", "--study-uid",
                           study, "--message", "ORU^R99"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == usage == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("vid2dcm: error:")
    assert "'ORU^R99'" in proc.stderr and "'ORU^R01 2.3.1'" in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert list(empty.iterdir()) == []  # no order store made for a bad option
