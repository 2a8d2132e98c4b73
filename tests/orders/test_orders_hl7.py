"""HL7 v2 orders in and results out, over real MLLP connections on loopback.

The HIS side is python-hl7's MLLP client (orders.mllp.send_message) and a second MLLP listener
standing in for the HIS that receives the ORU. Every assertion reads the store (SQLite) or the
ACK/ORU the peer actually got.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from datetime import date, datetime
from pathlib import Path

import hl7
import pytest

from pki import make_ca, make_leaf
from vid2dcm.core.errors import DeliveryError
from vid2dcm.core.metadata import Metadata
from vid2dcm.core.worklist import WorklistEntry
from vid2dcm.orders.hl7_mapping import HL7_FIELDS, field_value
from vid2dcm.orders.inbox import handle
from vid2dcm.orders.mllp import MllpServer, client_context, send_message, server_context
from vid2dcm.orders.order import OrderStatus
from vid2dcm.orders.results import RESULT_MESSAGES, StudyAvailable, build_oru, send_oru
from vid2dcm.orders.store import OrderStore

ORM = "\r".join([
    "MSH|^~\\&|HIS|HOSP|VID2DCM|ENDO|20261203090000||ORM^O01|MSG0001|P|2.3.1",
    "PID|1||PAT001^^^HOSP^MR||Müller^Anna^B||19700102|F",
    "PV1|1|O|ENDO^R1|||||1234^Smith^Anne",
    "ORC|NW|PLC100^HIS|FIL100^RIS||SC||||||||||||GASTRO",
    "OBR|1|PLC100^HIS|FIL100^RIS|EGD^Gastroscopy^L||||||||||||||ACC100|RP100|SPS100||||ES|||"
    "^^^20261203101500",
    "ZDS|1.2.826.0.1.3680043.10.543.100^HIS^Application^DICOM",
])

OMI = "\r".join([
    "MSH|^~\\&|RIS|HOSP|VID2DCM|OR|20261203090000||OMI^O23^OMI_O23|MSG0002|P|2.5.1",
    "PID|1||PAT002^^^HOSP^MR||Doe^John||19800304|M",
    "PV1|1|I|SURG^OR2",
    "ORC|NW|PLC200^HIS|FIL200^RIS||SC",
    "TQ1|1||||||20261203141500",
    "OBR|1|PLC200^HIS|FIL200^RIS|LAPCHOL^Laparoscopic cholecystectomy^L",
    "IPC|ACC200^HIS|RP200|1.2.826.0.1.3680043.10.543.200|SPS200|XC^Photographic imaging^DCM",
])


def msg(text: str, **replace: str) -> str:
    for old, new in replace.items():
        text = text.replace(old, new)
    return text


@pytest.fixture
def store(tmp_path: Path) -> OrderStore:
    return OrderStore(tmp_path / "orders.sqlite")


@pytest.fixture
def listener(store: OrderStore) -> MllpServer:
    server = MllpServer(lambda text: handle(text, store)[0], "127.0.0.1", 0).start()
    yield server  # type: ignore[misc]
    server.stop()


def snapshot(store: OrderStore) -> list[tuple[object, ...]]:
    with sqlite3.connect(store.path) as db:
        return sorted(db.execute("SELECT * FROM orders").fetchall())


def send(listener: MllpServer, text: str):  # type: ignore[no-untyped-def]
    return send_message(*listener.address, text)


@pytest.mark.integration
def test_orm_o01_over_mllp_is_stored_and_found_by_accession(listener: MllpServer,
                                                            store: OrderStore) -> None:
    ack = send(listener, ORM)
    assert (ack.code, ack.control_id) == ("AA", "MSG0001"), ack.raw
    order = store.find_by_accession("ACC100")
    assert order is not None
    md = order.metadata
    assert (order.placer_order_number, order.filler_order_number) == ("PLC100", "FIL100")
    assert (md.patient_id, order.patient_id_issuer) == ("PAT001", "HOSP")
    assert md.patient_name == "Müller^Anna^B", "UTF-8 name survives the MLLP round trip"
    assert (md.patient_birth_date, md.patient_sex) == (date(1970, 1, 2), "F")
    assert md.study_instance_uid == "1.2.826.0.1.3680043.10.543.100"
    assert (md.requested_procedure_id, md.scheduled_procedure_step_id) == ("RP100", "SPS100")
    assert md.requested_procedure_description == "Gastroscopy"
    assert md.referring_physician_name == "Smith^Anne"
    assert order.procedure is not None and order.procedure.value == "EGD"
    assert (order.modality, order.department, order.ordering_service) == ("ES", "ENDO",
                                                                          "GASTRO")
    assert order.scheduled_start == datetime(2026, 12, 3, 10, 15)
    assert [o.placer_order_number for o in store.for_day(date(2026, 12, 3))] == ["PLC100"]
    assert store.for_day(date(2026, 12, 4)) == []
    fields = order.metadata_fields()
    assert fields["accession_number"] == "ACC100"
    assert fields["study_description"] == "Gastroscopy"
    Metadata.model_validate(fields)
    entry = WorklistEntry(**order.worklist_fields())
    assert (entry.scheduled_date, entry.scheduled_time, entry.modality) == ("20261203",
                                                                            "101500", "ES")
    assert entry.metadata_fields() == {k: v for k, v in fields.items()
                                       if k in entry.metadata_fields()}
    assert set(entry.metadata_fields()) == set(fields)


@pytest.mark.integration
def test_omi_o23_reads_ipc_and_tq1(listener: MllpServer, store: OrderStore) -> None:
    ack = send(listener, OMI)
    assert ack.code == "AA", ack.raw
    order = store.find_by_accession("ACC200")
    assert order is not None
    assert order.metadata.study_instance_uid == "1.2.826.0.1.3680043.10.543.200"
    assert (order.metadata.requested_procedure_id,
            order.metadata.scheduled_procedure_step_id) == ("RP200", "SPS200")
    assert order.modality == "XC" and order.department == "SURG"
    assert order.scheduled_start == datetime(2026, 12, 3, 14, 15)


def test_change_status_and_cancel(store: OrderStore) -> None:
    assert handle(ORM, store)[1].code == "AA"
    _, out = handle(msg(ORM, **{"ORC|NW": "ORC|XO", "EGD^Gastroscopy^L": "EGD^Upper GI endoscopy^L",
                                "MSG0001": "MSG0003"}), store)
    assert out.code == "AA", out
    changed = store.get("PLC100")
    assert changed is not None
    assert changed.metadata.requested_procedure_description == "Upper GI endoscopy"
    assert changed.metadata.patient_id == "PAT001" and changed.status is OrderStatus.SCHEDULED
    _, out = handle(msg(ORM, **{"ORC|NW": "ORC|SC", "||SC|": "||IP|"}), store)
    assert out.code == "AA" and store.get("PLC100").status is OrderStatus.IN_PROGRESS  # type: ignore[union-attr]
    _, out = handle(msg(ORM, **{"ORC|NW": "ORC|CA"}), store)
    assert out.code == "AA"
    assert store.get("PLC100").status is OrderStatus.CANCELLED  # type: ignore[union-attr]
    assert store.for_day(date(2026, 12, 3)) == []
    _ack, out = handle(ORM, store)
    assert out.code == "AE" and "cancelled" in out.reason, "a cancelled order is not re-opened"


def test_a08_updates_open_orders_only(store: OrderStore) -> None:
    handle(ORM, store)
    handle(msg(ORM, PLC100="PLC101", ACC100="ACC101", FIL100="FIL101", **{
        "ORC|NW": "ORC|NW"}), store)
    handle(msg(ORM, PLC100="PLC101", **{"ORC|NW": "ORC|CA"}), store)
    a08 = "\r".join(["MSH|^~\\&|HIS|HOSP|VID2DCM|ENDO|20261203100000||ADT^A08|MSG0010|P|2.3.1",
                     "EVN|A08|20261203100000",
                     "PID|1||PAT001^^^HOSP^MR||Müller-Lang^Anna^B||19700102|F"])
    _ack, out = handle(a08, store)
    assert out.code == "AA" and out.orders == ("PLC100",), out
    assert store.get("PLC100").metadata.patient_name == "Müller-Lang^Anna^B"  # type: ignore[union-attr]
    assert store.get("PLC101").metadata.patient_name == "Müller^Anna^B"  # type: ignore[union-attr]


@pytest.mark.integration
def test_a40_merge_moves_open_order_to_surviving_patient(listener: MllpServer,
                                                         store: OrderStore) -> None:
    assert send(listener, ORM).code == "AA"
    a40 = "\r".join(["MSH|^~\\&|HIS|HOSP|VID2DCM|ENDO|20261203110000||ADT^A40^ADT_A39|MSG0020|P|"
                     "2.5.1",
                     "EVN|A40|20261203110000",
                     "PID|1||PAT999^^^HOSP^MR||Müller^Anna^Beate||19700102|F",
                     "MRG|PAT001^^^HOSP^MR"])
    ack = send(listener, a40)
    assert ack.code == "AA" and "1 open order(s) merged" in ack.text, ack.raw
    order = store.find_by_accession("ACC100")
    assert order is not None
    assert order.metadata.patient_id == "PAT999"
    assert order.metadata.patient_name == "Müller^Anna^Beate"
    assert store.open_for_patient("PAT001") == []
    assert [o.placer_order_number for o in store.open_for_patient("PAT999", "HOSP")] == [
        "PLC100"]


@pytest.mark.integration
@pytest.mark.parametrize(("text", "code", "err", "reason"), [
    (msg(ORM, **{"19700102": "1970-01-02"}), "AE", "102", "PID-7"),
    (msg(ORM, **{"ZDS|1.2.826.0.1.3680043.10.543.100": "ZDS|1.2.x"}), "AE", "102",
     "ZDS-1.1"),
    ("\r".join(s for s in ORM.split("\r") if not s.startswith("PID")), "AE", "100", "PID"),
    (msg(ORM, **{"ORC|NW|PLC100^HIS": "ORC|NW|"}), "AE", "101", "ORC-2"),
    (msg(ORM, **{"ORC|NW": "ORC|ZZ"}), "AE", "103", "ORC-1"),
    (msg(ORM, **{"ORC|NW": "ORC|CA", "PLC100": "PLC404"}), "AE", "204", "PLC404"),
    (msg(ORM, **{"ORM^O01": "ORU^R01"}), "AR", "200", "not supported"),
    (msg(ORM, **{"ORM^O01": "ORM^O02"}), "AR", "201", "not supported"),
    (msg(ORM, **{"|2.3.1": "|3.0"}), "AR", "203", "version"),
    ("this is not HL7", "AE", "100", "not an HL7"),
    (msg(ORM, ACC100="ACC100-FAR-TOO-LONG"), "AE", "102", "OBR-18"),
    (msg(ORM, **{"FIL100^RIS||SC": "F" * 70 + "^RIS||SC"}), "AE", "102", "ORC-3.1"),
])
def test_malformed_gets_error_ack_and_nothing_changes(listener: MllpServer, store: OrderStore,
                                                      text: str, code: str, err: str,
                                                      reason: str) -> None:
    send(listener, OMI)
    before = snapshot(store)
    ack = send(listener, text)
    assert ack.code == code, ack.raw
    assert reason in ack.text, ack.raw
    parsed = hl7.parse(ack.raw.strip("\r"))
    err_text = str(parsed.segment("ERR"))
    assert err in err_text and "HL70357" in err_text
    assert snapshot(store) == before


def test_one_bad_order_in_a_message_stores_none(store: OrderStore) -> None:
    """Two ORC groups, the second with a bad UID: the message is all or nothing."""
    second = ["ORC|NW|PLC300^HIS|FIL300^RIS||SC",
              "OBR|1|PLC300^HIS|FIL300^RIS|EGD^Gastroscopy^L||||||||||||||ACC300",
              "ZDS|not-a-uid^HIS^Application^DICOM"]
    _, out = handle(ORM + "\r" + "\r".join(second), store)
    assert out.code == "AE" and store.all() == []
    second[2] = "ZDS|1.2.826.0.1.3680043.10.543.300^HIS^Application^DICOM"
    _, out = handle(ORM + "\r" + "\r".join(second), store)
    assert out.code == "AA" and out.orders == ("PLC100", "PLC300")
    order = store.find_by_accession("ACC300")
    assert order is not None and order.metadata.study_instance_uid.endswith(".300")  # type: ignore[union-attr]


def test_patient_data_never_logged(store: OrderStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    handle(ORM, store)
    handle(msg(ORM, **{"19700102": "bad"}), store)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "MSG0001" in logged
    for secret in ("Müller", "PAT001", "19700102", "Anna"):
        assert secret not in logged


def test_names_swap_prefix_and_suffix() -> None:
    from vid2dcm.orders.hl7_mapping import Kind, convert
    assert convert(Kind.NAME, "Doe^John^Q^Jr^Dr") == "Doe^John^Q^Dr^Jr"
    assert convert(Kind.DOCTOR, "1234^Smith^Anne^^^Prof") == "Smith^Anne^^Prof"
    assert convert(Kind.NAME, "^^") is None


def test_mapping_table_rows_point_at_record_fields() -> None:
    from vid2dcm.orders.order import Order
    for row in HL7_FIELDS:
        record, name = row.target.split(".")
        fields = Metadata.model_fields if record == "metadata" else Order.model_fields
        assert name in fields, row


@pytest.mark.integration
def test_oru_images_available_reaches_the_his(store: OrderStore) -> None:
    handle(ORM, store)
    order = store.find_by_accession("ACC100")
    assert order is not None
    received: list[str] = []
    got = threading.Event()

    def his(text: str) -> str:
        received.append(text)
        got.set()
        return str(hl7.parse(text).create_ack("AA", application="HIS"))

    with MllpServer(his, "127.0.0.1", 0) as stand_in:
        notice = StudyAvailable(order, "1.2.826.0.1.3680043.10.543.100",
                                "https://viewer.example/ohif/viewer?StudyInstanceUIDs="
                                "1.2.826.0.1.3680043.10.543.100&x=1")
        ack = send_oru(notice, *stand_in.address, receiving_application="HIS")
        assert got.wait(5)
    assert ack.accepted, ack.raw
    oru = hl7.parse(received[0])
    assert field_value(oru, "MSH-9", whole=True) == "ORU^R01^ORU_R01"
    assert field_value(oru, "ORC-2") == "PLC100" and field_value(oru, "OBR-18") == "ACC100"
    assert field_value(oru, "OBR-25") == "F"
    obx = [s for s in oru if str(s[0]) == "OBX"]
    assert str(obx[0][3]) == "110180^Study Instance UID^DCM"
    assert str(obx[0][5]) == "1.2.826.0.1.3680043.10.543.100"
    assert str(obx[1][2]) == "RP"
    assert oru.unescape(str(obx[1][5][0][0])).endswith("&x=1")
    assert "Müller^Anna^B" in str(oru.segment("PID")(5))


@pytest.mark.integration
def test_mllp_over_tls(store: OrderStore, tmp_path: Path) -> None:
    ca_key, ca = make_ca(tmp_path, "ca")
    key, cert = make_leaf(tmp_path, "his", ca_key, ca)
    server = MllpServer(lambda t: handle(t, store)[0], "127.0.0.1", 0,
                        ssl_context=server_context(str(cert), str(key)))
    with server:
        ack = send_message(*server.address, ORM, ssl_context=client_context(str(ca)))
        assert ack.code == "AA"
        with pytest.raises(DeliveryError):
            send_message(*server.address, ORM, ssl_context=client_context(None), timeout_s=3)
    assert store.find_by_accession("ACC100") is not None


def test_oru_refuses_a_bad_uid() -> None:
    from vid2dcm.orders.order import Order
    with pytest.raises(ValueError):
        build_oru(StudyAvailable(Order(placer_order_number="P"), "not.a.uid."))


def test_integration_doc_prints_every_mapping_row() -> None:
    from vid2dcm.orders.fhir import FHIR_FIELDS

    doc = (Path(__file__).resolve().parents[2] / "docs" / "integration.md").read_text()
    for row in HL7_FIELDS:
        assert f"| {row.field} | `{row.target}` | {row.kind.value} |" in doc, row
    for source, target in FHIR_FIELDS:
        assert f"| {source} | `{target.split(' ')[0]}`" in doc, source


@pytest.mark.integration
def test_listener_stops_with_an_idle_client_connected(store: OrderStore) -> None:
    import socket
    import time as clock

    server = MllpServer(lambda t: handle(t, store)[0], "127.0.0.1", 0).start()
    idle = socket.create_connection(server.address)
    try:
        began = clock.monotonic()
        server.stop()
        assert clock.monotonic() - began < 3
        assert server._thread is not None and not server._thread.is_alive()
        with pytest.raises(OSError):
            socket.create_connection(server.address, timeout=2).close()
    finally:
        idle.close()


@pytest.mark.integration
def test_client_reports_a_peer_that_answers_garbage() -> None:
    with MllpServer(lambda _t: "not an ack", "127.0.0.1", 0) as peer, \
            pytest.raises(DeliveryError, match="not an HL7 acknowledgement"):
        send_message(*peer.address, ORM, timeout_s=3)


@pytest.mark.integration
def test_concurrent_connections_each_get_their_ack(listener: MllpServer,
                                                   store: OrderStore) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> tuple[str, str]:
        text = msg(ORM, PLC100=f"PLC{i}", ACC100=f"ACC{i}", MSG0001=f"MSG{i}")
        ack = send(listener, text)
        return ack.code, ack.control_id

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(one, range(24)))
    assert answers == [("AA", f"MSG{i}") for i in range(24)]
    assert sorted(o.accession_number for o in store.all()) == sorted(f"ACC{i}"
                                                                     for i in range(24))


@pytest.mark.parametrize("kind", list(RESULT_MESSAGES))
def test_each_result_message_kind_parses_with_its_fields(store: OrderStore, kind: str) -> None:
    """Every row of RESULT_MESSAGES builds a message python-hl7 parses, with the type,
    version, order control, status and the Study Instance UID the row says."""
    handle(ORM, store)
    order = store.find_by_accession("ACC100")
    assert order is not None
    form = RESULT_MESSAGES[kind]
    uid = "1.2.826.0.1.3680043.10.543.100"
    text = build_oru(StudyAvailable(order, uid, "https://viewer.example/s?u=1&x=2"),
                     kind=kind, control_id="C1")
    message = hl7.parse(text)
    assert field_value(message, "MSH-9", whole=True) == form.message_type
    assert field_value(message, "MSH-12") == form.version
    assert field_value(message, "MSH-10") == "C1"
    assert field_value(message, "ORC-1") == form.order_control
    assert field_value(message, "ORC-5") == "CM"
    assert field_value(message, "ORC-2") == "PLC100"
    assert field_value(message, "OBR-18") == "ACC100"
    assert field_value(message, "OBR-25") == form.result_status
    obx = [s for s in message if str(s[0]) == "OBX"]
    assert str(obx[0][2]) == form.uid_value_type
    assert str(obx[0][3]) == "110180^Study Instance UID^DCM" and str(obx[0][5]) == uid
    assert message.unescape(str(obx[1][5][0][0])).endswith("&x=2")
    segments = [str(s[0]) for s in message]
    if form.ipc:
        assert segments == ["MSH", "PID", "ORC", "OBR", "IPC", "OBX", "OBX"]
        assert field_value(message, "IPC-1") == "ACC100"
        assert field_value(message, "IPC-3") == uid
        assert field_value(message, "IPC-4") == "SPS100"
    else:
        assert segments == ["MSH", "PID", "ORC", "OBR", "OBX", "OBX"]
    # what the listener of a HIS would make of it: a well-formed ACK
    assert str(message.create_ack("AA")).startswith("MSH|")


def test_unknown_result_message_kind_is_refused(store: OrderStore) -> None:
    handle(ORM, store)
    order = store.find_by_accession("ACC100")
    assert order is not None
    with pytest.raises(ValueError, match="unknown result message"):
        build_oru(StudyAvailable(order, "1.2.3"), kind="ORU^R30")


def test_settings_offer_exactly_the_result_message_kinds() -> None:
    from typing import get_args

    from vid2dcm.apps.gateway.settings import Hl7Settings

    offered = get_args(Hl7Settings.model_fields["result_message"].annotation)
    assert set(offered) == set(RESULT_MESSAGES)
    assert Hl7Settings().result_message == "ORU^R01"


def test_integration_doc_shows_what_build_oru_writes(store: OrderStore) -> None:
    """docs/integration.md: one row and one sample per result message kind, each sample
    exactly what build_oru writes for the ORM sample (so the doc cannot drift)."""
    from datetime import UTC

    doc = (Path(__file__).resolve().parents[2] / "docs" / "integration.md").read_text()
    handle(ORM, store)
    order = store.find_by_accession("ACC100")
    assert order is not None
    uid = "1.2.826.0.1.3680043.10.543.100"
    notice = StudyAvailable(order, uid, f"https://pacs.example/viewer?StudyInstanceUIDs={uid}",
                            stored_at=datetime(2026, 12, 3, 13, 16, 45, tzinfo=UTC))
    for kind, form in RESULT_MESSAGES.items():
        sample = build_oru(notice, kind=kind, control_id="RES0001").replace("\r", "\n")
        assert f"```\n{sample}\n```" in doc, kind
        assert (f"| `{kind}` | {form.message_type} | {form.version} | {form.order_control} |"
                in doc), kind
