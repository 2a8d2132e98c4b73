"""The job store on SQLite and on a real PostgreSQL (issue 17): the same methods and
semantics on both, Alembic migrations on start (a data folder made by the current release and
one made by an older release both upgrade and keep their rows, two processes starting at once
do not both migrate), worker leases (claim, renew, expiry, the attempt limit), the outbox,
upload paths stored relative to the data folder, and the orders sealed at rest beside the
jobs."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import text

from postgres import Postgres, postgres_server  # noqa: F401 (fixture)
from vid2dcm.apps.cli.service import check_store
from vid2dcm.apps.gateway.integration import order_store
from vid2dcm.apps.gateway.models import DeliveryResult, JobRequest, JobResult
from vid2dcm.apps.gateway.sealing import Sealer
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import (
    HEAD_REVISION,
    REVISIONS,
    Store,
    engine_for,
    schema_revision,
)
from vid2dcm.core.metadata import Metadata
from vid2dcm.orders.order import Order
from vid2dcm.orders.store import OrderStore

DATA = Path(__file__).parent / "data"
KEY = Sealer(b"k" * 32)
UPLOAD = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"


@dataclass(frozen=True)
class Backend:
    name: str
    where: Path | str
    """What Store() takes: the SQLite file or the PostgreSQL URL."""
    data_dir: Path

    def store(self) -> Store:
        return Store(self.where, KEY, data_dir=self.data_dir)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        """Raw rows, as an operator (or an attacker with the file) would read them."""
        url = self.where if isinstance(self.where, str) else f"sqlite:///{self.where}"
        with engine_for(url).connect() as db:
            return [tuple(r) for r in db.execute(text(sql)).all()]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.needs_postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    data = tmp_path / "data"
    data.mkdir()
    if request.param == "sqlite":
        yield Backend("sqlite", data / "jobs.sqlite", data)
    else:
        server: Postgres = request.getfixturevalue("postgres_server")
        yield Backend("postgresql", server.new_database(), data)


def test_revisions_are_the_migrations_shipped() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    import vid2dcm.apps.gateway.store as store_module

    config = Config()
    config.set_main_option("script_location",
                           str(Path(store_module.__file__).with_name("migrations")))
    script = ScriptDirectory.from_config(config)
    assert script.get_current_head() == HEAD_REVISION
    chain = [r.revision for r in script.walk_revisions()][::-1]
    assert tuple(chain) == REVISIONS


def test_a_fresh_store_is_migrated_to_the_head(backend: Backend) -> None:
    store = backend.store()
    assert schema_revision(store._engine) == HEAD_REVISION
    tables = {"uploads", "audit", "jobs", "users", "sessions", "tokens", "outbox", "sign_ons",
              "login_failures", "alembic_version"}
    if backend.name == "sqlite":
        have = {r[0] for r in backend.rows("SELECT name FROM sqlite_master WHERE type='table'")}
    else:
        have = {r[0] for r in backend.rows(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    assert tables <= have
    backend.store()  # opening again is a no-op


def test_patient_fields_are_sealed_and_upload_paths_relative(backend: Backend) -> None:
    store = backend.store()
    inside = backend.data_dir / "uploads" / UPLOAD / "clip.mp4"
    upload_id = store.add_upload("Doe^Jane.mp4", inside, 1234, UPLOAD, owner="nurse")
    outside = store.add_upload("x.mp4", Path("/mnt/other/x.mp4"), 5)
    job_id = store.add_job(JobRequest.model_validate(
        {"upload_id": upload_id, "metadata": {"patient_name": "Doe^Jane",
                                              "patient_id": "PID-4711"}}), owner="nurse")
    raw = backend.rows("SELECT name, path FROM uploads ORDER BY size DESC")
    assert raw[0][1] == f"uploads/{UPLOAD}/clip.mp4"  # relative: other machines agree
    assert raw[1][1] == "/mnt/other/x.mp4"
    dump = json.dumps([*raw, *backend.rows("SELECT request FROM jobs")])
    assert "Doe^Jane" not in dump and "PID-4711" not in dump
    found = store.upload(upload_id)
    assert found is not None and found.path == inside and found.name == "Doe^Jane.mp4"
    assert store.upload(outside).path == Path("/mnt/other/x.mp4")  # type: ignore[union-attr]
    job = store.job(job_id)
    assert job is not None and job.request.metadata.patient_id == "PID-4711"
    # Another machine mounts the shared data folder elsewhere: same upload, its own path.
    elsewhere = Store(backend.where, KEY, data_dir=backend.data_dir.parent / "mnt")
    assert elsewhere.upload(upload_id).path == \
        backend.data_dir.parent / "mnt" / "uploads" / UPLOAD / "clip.mp4"  # type: ignore[union-attr]


def test_claim_takes_a_job_once_and_a_live_lease_is_never_taken(backend: Backend) -> None:
    store = backend.store()
    job_id = store.add_job(JobRequest(upload_id=UPLOAD))
    assert store.claim(job_id, "w1", lease_s=30, recoveries=1)
    assert not store.claim(job_id, "w2", lease_s=30, recoveries=1)  # w1's lease holds
    assert store.renew(job_id, "w1", 30)
    assert not store.renew(job_id, "w2", 30)  # not w2's job
    job = store.job(job_id)
    assert job is not None and (job.status, job.worker, job.attempts) == ("running", "w1", 1)
    assert store.expired_jobs() == []
    store.finish(job_id, JobResult())
    assert not store.renew(job_id, "w1", 30)  # finished: nothing left to hold
    assert not store.claim(job_id, "w2", 30, 1)
    assert store.job(job_id).status == "done"  # type: ignore[union-attr]


def test_an_expired_lease_is_taken_over_once_then_the_job_fails(backend: Backend) -> None:
    store = backend.store()
    job_id = store.add_job(JobRequest(upload_id=UPLOAD))
    assert store.claim(job_id, "dead-1", lease_s=0.2, recoveries=1)
    time.sleep(0.3)  # no heartbeat: the worker is gone
    assert store.expired_jobs() == [job_id]
    assert store.claim(job_id, "w2", lease_s=0.2, recoveries=1)
    job = store.job(job_id)
    assert job is not None and (job.worker, job.attempts, job.recoveries) == ("w2", 2, 1)
    time.sleep(0.3)  # the re-run's worker dies too
    assert not store.claim(job_id, "w3", lease_s=30, recoveries=1)
    job = store.job(job_id)
    assert job is not None and job.status == "failed" and job.failure_kind == "internal"
    assert job.error is not None and "lease expired" in job.error and job.attempts == 2
    # A person retries it: queued again, and the take-over count starts afresh.
    assert store.set_status(job_id, "queued", ("failed",))
    assert store.claim(job_id, "w4", lease_s=30, recoveries=1)
    assert store.job(job_id).recoveries == 0  # type: ignore[union-attr]


def test_outbox_parcels_and_their_age(backend: Backend) -> None:
    store = backend.store()
    job_id = store.add_job(JobRequest(upload_id=UPLOAD))
    assert store.oldest_waiting_parcel() is None
    assert store.claim(job_id, "w", 30, 1)
    before = time.time()
    store.await_delivery(job_id, JobResult(), ("a", "b"))
    store.await_delivery(job_id, JobResult(), ("a", "b"))  # no duplicate parcels
    assert [p.destination for p in store.parcels(job_id)] == ["a", "b"]
    assert sorted(store.due_parcels(time.time())) == [(job_id, "a"), (job_id, "b")]
    oldest = store.oldest_waiting_parcel()
    assert oldest is not None and before - 1 <= oldest <= time.time()
    assert store.take_parcel(job_id, "a", 600)
    assert not store.take_parcel(job_id, "a", 600)  # another worker has it
    receipt = DeliveryResult(destination="a", ok=True, message="stored")
    store.parcel_tried(job_id, "a", "sent", (receipt,), None, time.time())
    store.parcel_tried(job_id, "b", "gave up", (), "refused", time.time())
    assert store.oldest_waiting_parcel() is None
    parcels = {p.destination: p for p in store.parcels(job_id)}
    assert parcels["a"].receipts == (receipt,) and parcels["b"].error == "refused"
    assert store.settle(job_id, JobResult(), "not stored", "delivery")
    assert store.failure_kinds() == {"delivery": 1}
    assert store.counts()["failed"] == 1


def test_accounts_sessions_tokens_on_both(backend: Backend) -> None:
    store = backend.store()
    store.put_user("it", "admin", "h1", "icu")
    store.put_user("it", "reviewer", "h2")  # upsert
    user = store.user("it")
    assert user is not None and (user.role, user.password_hash, user.ward) == ("reviewer", "h2", "")
    store.add_session("d", "it")
    assert store.touch_session("d", 60, 3600) == "it"
    assert store.disable_user("it") and store.touch_session("d", 60, 3600) is None
    token_id = store.add_token("ab" * 32, "scanner", "uploader", ("metrics",), None)
    assert store.token("ab" * 32).scopes == ("metrics",)  # type: ignore[union-attr]
    assert store.revoke_token(token_id) and store.tokens()[0].revoked
    store.login_failed("it", "10.0.0.1")
    assert store.recent_failures("it", "x", 60)[0] == 1
    store.add_sign_on("state", "nonce", "verifier")
    assert store.take_sign_on("state", 60) == ("nonce", "verifier")
    assert store.take_sign_on("state", 60) is None
    store.audit("it", "login", role="admin", client="10.0.0.1")
    assert store.audit_log()[0].action == "login"


def _release_folder(tmp_path: Path, sql: str) -> Path:
    """A data folder whose jobs.sqlite was made by an earlier release (the SQL it ran)."""
    data = tmp_path / "old-data"
    data.mkdir()
    db = sqlite3.connect(data / "jobs.sqlite")
    db.executescript((DATA / sql).read_text().replace("@DATA@", str(data)))
    db.commit()
    db.close()
    return data


@pytest.mark.parametrize("sql", ["store_release_current.sql", "store_release_older.sql"])
def test_a_data_folder_from_an_earlier_release_upgrades_and_keeps_its_rows(
        tmp_path: Path, sql: str) -> None:
    data = _release_folder(tmp_path, sql)
    before = {t: sqlite3.connect(data / "jobs.sqlite").execute(
        f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in ("uploads", "jobs", "audit")}
    check_store(ServiceSettings(data_dir=data))  # the CLI lets it start (no refusal)
    store = Store(data / "jobs.sqlite", KEY)
    assert schema_revision(store._engine) == HEAD_REVISION
    db = sqlite3.connect(data / "jobs.sqlite")
    after = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
             for t in ("uploads", "jobs", "audit")}
    assert after == before
    # The absolute path inside the data folder became relative; the upload still resolves.
    assert db.execute("SELECT path FROM uploads WHERE id=?", (UPLOAD,)).fetchone()[0] == \
        f"uploads/{UPLOAD}/clip.mp4"
    upload = store.upload(UPLOAD)
    assert upload is not None and upload.path == data / "uploads" / UPLOAD / "clip.mp4"
    assert upload.name == "clip.mp4" and upload.owner in ("", "nurse")
    done = store.job("11111111111111111111111111111111")
    assert done is not None and done.status == "done" and done.request.upload_id == UPLOAD
    # What broke before migrations: writing a row with today's columns.
    new = store.add_upload("new.mp4", data / "uploads" / "n" / "new.mp4", 7, problem=None,
                           owner="it")
    assert store.upload(new) is not None
    job_id = store.add_job(JobRequest(upload_id=UPLOAD), owner="it", ward="icu")
    assert store.claim(job_id, "w", 30, 1)
    store.put_user("nurse", "uploader", "h")
    store.audit("it", "retry", job=job_id, role="admin")
    assert len(store.audit_log()) == before["audit"] + 1
    if sql == "store_release_current.sql":
        (export,) = store.exports(job_id="11111111111111111111111111111111")
        assert (export.state, export.destination) == ("sent", "research")
        # A job the old release left running has no lease: a worker may take it over (once).
        assert "22222222222222222222222222222222" in store.expired_jobs()
        assert store.upload("bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb").path == \
            Path("/mnt/elsewhere/elsewhere.mp4")  # type: ignore[union-attr]
    db.close()


OPEN_AT_ONCE = """
import sys, time
from pathlib import Path
from vid2dcm.apps.gateway.store import Store
where, data, start = sys.argv[1], Path(sys.argv[2]), float(sys.argv[3])
while time.time() < start:
    time.sleep(0.001)
Store(Path(where) if not where.startswith("postgresql") else where, data_dir=data)
print("ok")
"""


def _open_at_once(where: Path | str, data: Path, processes: int = 4) -> None:
    start = time.time() + 3.0  # every process is started and waiting by then
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_AT_ONCE, str(where), str(data),
                               str(start)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    for proc, (out, err) in zip(procs, outcomes, strict=True):
        assert proc.returncode == 0 and out.strip() == "ok", err[-2000:]


def test_processes_starting_at_once_migrate_once_on_sqlite(tmp_path: Path) -> None:
    data = _release_folder(tmp_path, "store_release_older.sql")
    _open_at_once(data / "jobs.sqlite", data)
    db = sqlite3.connect(data / "jobs.sqlite")
    assert db.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]
    assert db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 2
    db.close()


@pytest.mark.needs_postgres
def test_processes_starting_at_once_migrate_once_on_postgresql(
        postgres_server: Postgres, tmp_path: Path) -> None:  # noqa: F811
    url = postgres_server.new_database()
    _open_at_once(url, tmp_path)
    backend = Backend("postgresql", url, tmp_path)
    assert backend.rows("SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    backend.store().add_job(JobRequest(upload_id=UPLOAD))
    assert backend.rows("SELECT COUNT(*) FROM jobs") == [(1,)]


def _order(placer: str, accession: str, patient_id: str) -> Order:
    return Order(placer_order_number=placer, modality="ES", metadata=Metadata(
        patient_name="Order^Patient", patient_id=patient_id, accession_number=accession,
        patient_birth_date="19700101"))


def test_orders_are_sealed_at_rest_and_found_by_digest(backend: Backend) -> None:
    """The gateway's orders share the job store's database (PostgreSQL) or stay in
    orders.sqlite (SQLite), sealed with its key either way."""
    settings = ServiceSettings(data_dir=backend.data_dir, database_url=(
        backend.where if isinstance(backend.where, str) else None))
    orders = order_store(settings)
    orders.put(_order("P1", "ACC-77", "PID-0815"), _order("P2", "ACC-78", "PID-0815"))
    if backend.name == "postgresql":
        raw = backend.rows("SELECT * FROM orders")
        assert not (backend.data_dir / "orders.sqlite").exists()
    else:
        with sqlite3.connect(backend.data_dir / "orders.sqlite") as db:
            raw = db.execute("SELECT * FROM orders").fetchall()
    dump = json.dumps(raw)
    assert len(raw) == 2
    for secret in ("Order^Patient", "PID-0815", "ACC-77", "19700101"):
        assert secret not in dump, secret
    assert [o.placer_order_number for o in orders.open_for_patient("PID-0815")] == ["P1", "P2"]
    found = orders.find_by_accession("ACC-77")
    assert found is not None and found.metadata.patient_name == "Order^Patient"
    assert orders.get("P2") is not None and orders.find_by_accession("ACC-99") is None
    assert {o.placer_order_number for o in orders.for_day(date.today())} == {"P1", "P2"}
    # Another process (a worker) opens the same store and sees the same orders.
    assert order_store(settings).find_by_accession("ACC-78") is not None


def test_plain_orders_of_an_earlier_release_are_sealed_on_open(tmp_path: Path) -> None:
    data = tmp_path / "data"
    plain = OrderStore(data / "orders.sqlite")  # what the earlier release wrote
    plain.put(_order("P9", "ACC-9", "PID-9"))
    with sqlite3.connect(data / "orders.sqlite") as db:
        (before,) = db.execute("SELECT updated FROM orders").fetchone()
        assert "PID-9" in json.dumps(db.execute("SELECT * FROM orders").fetchall())
    orders = order_store(ServiceSettings(data_dir=data))
    with sqlite3.connect(data / "orders.sqlite") as db:
        rows = db.execute("SELECT * FROM orders").fetchall()
    assert "PID-9" not in json.dumps(rows) and "ACC-9" not in json.dumps(rows)
    assert rows[0][6] == before  # the order's own update time is kept
    found = orders.find_by_accession("ACC-9")
    assert found is not None and found.patient_id == "PID-9"


def test_database_url_and_lease_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from vid2dcm.apps.gateway.settings import DATABASE_ENV, load_settings

    url = "postgresql+psycopg://vid2dcm:pw@db:5432/vid2dcm"
    monkeypatch.setenv(DATABASE_ENV, url)
    assert load_settings(tmp_path).database_url == url
    (tmp_path / "service.toml").write_text('[service]\ndatabase_url = "sqlite:///x.sqlite"\n')
    assert load_settings(tmp_path).database_url == "sqlite:///x.sqlite"  # the file wins
    with pytest.raises(ValueError, match="database_url"):
        ServiceSettings(data_dir=tmp_path, database_url="mysql://db/x")
    with pytest.raises(ValueError, match="at most half of lease_s"):
        ServiceSettings(data_dir=tmp_path, lease_s=10, heartbeat_s=6)


def test_an_unreachable_or_newer_shared_store_is_refused_in_one_line(
        tmp_path: Path, backend: Backend) -> None:
    from dcmtk_peers import free_port
    from vid2dcm.core.errors import ServiceError

    closed = f"postgresql+psycopg://vid2dcm:s3cret@127.0.0.1:{free_port()}/vid2dcm"
    with pytest.raises(ServiceError, match="does not answer") as refused:
        check_store(ServiceSettings(data_dir=tmp_path, database_url=closed))
    assert "s3cret" not in str(refused.value) and "\n" not in str(refused.value)
    backend.store()
    url = backend.where if isinstance(backend.where, str) else f"sqlite:///{backend.where}"
    with engine_for(url).begin() as db:
        db.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    settings = ServiceSettings(data_dir=backend.data_dir, database_url=(
        url if backend.name == "postgresql" else None))
    with pytest.raises(ServiceError, match="another vid2dcm version"):
        check_store(settings)


def test_notice_parcels_restart_and_come_due_after_the_job(backend: Backend) -> None:
    """Results notices (issue 15) ride the outbox as "kind:target" parcels of finished jobs."""
    store = backend.store()
    job_id = store.add_job(JobRequest(upload_id=UPLOAD))
    assert store.claim(job_id, "w", 30, 1)
    store.add_parcels(job_id, ("hl7:his", "mpps:ris"))
    now = time.time() + 1
    assert store.due_notices(now, ("hl7:", "mpps:")) == []  # the job is still running
    store.finish(job_id, JobResult())
    assert sorted(store.due_notices(now, ("hl7:", "fhir:"))) == [(job_id, "hl7:his")]
    store.parcel_tried(job_id, "hl7:his", "gave up", (), "no HIS", time.time())
    store.add_parcels(job_id, ("hl7:his",))  # a re-run starts it again from nothing
    (parcel,) = [p for p in store.parcels(job_id) if p.destination == "hl7:his"]
    assert (parcel.state, parcel.attempts, parcel.error) == ("waiting", 0, None)
    assert store.due_parcels(now) == []  # notices are not DICOM deliveries


def test_exports_and_their_parcel_change_together(backend: Backend) -> None:
    """De-identified exports (issue 16): prepared once, its parcel in the same outbox."""
    from vid2dcm.apps.gateway.models import ExportResult

    store = backend.store()
    export_id = store.add_export("j" * 32, "basic", "research", "doc")
    assert [e.id for e in store.exports(state="preparing")] == [export_id]
    assert store.export_prepared(export_id, ExportResult.model_validate({}))
    assert not store.export_prepared(export_id, ExportResult.model_validate({}))  # only once
    assert store.due_export_parcels(time.time() + 1) == [export_id]
    assert [p.destination for p in store.parcels(export_id)] == ["research"]
    assert store.export_finished(export_id, None)
    assert not store.export_finished(export_id, "late")
    export = store.export(export_id)
    assert export is not None and export.state == "sent" and export.finished is not None
