"""The in-process gateway's job, outbox, people and need-to-know tests again, with the job
store on a real PostgreSQL (VID2DCM_DATABASE_URL's path, issue 17): the same routes and the
same answers as on SQLite. The tests that read the SQLite file itself stay in
test_gateway_api.py; here the database's own rows are checked for patient data instead."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from test_gateway_api import (  # noqa: F401 (collected here with the PostgreSQL gateway)
    test_a_disabled_user_is_signed_out_at_once,
    test_an_uploader_also_sees_their_wards_jobs,
    test_an_uploader_sees_only_their_own_jobs,
    test_failure_kind_comes_from_the_exception_class,
    test_identity_is_required_for_a_pacs_and_unknown_patients_are_held,
)

from gateway_app import Gateway, in_process_gateway
from postgres import Postgres, postgres_server  # noqa: F401 (fixture)
from vid2dcm.apps.gateway.store import engine_for

pytestmark = pytest.mark.needs_postgres


@pytest.fixture
def gateway(tmp_path: Path, postgres_server: Postgres) -> Iterator[Gateway]:  # noqa: F811
    with in_process_gateway(tmp_path, database_url=postgres_server.new_database()) as running:
        assert not (running.settings.data_dir / "jobs.sqlite-wal").exists()
        yield running


def test_jobs_live_in_postgresql_without_readable_patient_data(gateway: Gateway) -> None:
    nurse = gateway.person("nurse")
    upload = gateway.upload(nurse)
    created = nurse.post("/jobs", json={"upload_id": upload, "metadata": {
        "patient_id": "PG-4711", "patient_name": "Postgres^Patient"}})
    assert created.status_code == 201, created.text
    assert nurse.get(f"/jobs/{created.json()['id']}").json()["status"] == "waiting"
    url = gateway.settings.database_url
    assert url is not None
    with engine_for(url).connect() as db:
        rows = {table: [list(r) for r in db.execute(text(f"SELECT * FROM {table}")).all()]
                for table in ("jobs", "uploads", "audit", "outbox")}
        stored = db.execute(text("SELECT path FROM uploads")).scalar()
    assert [len(rows["jobs"]), len(rows["outbox"])] == [1, 1]
    dump = json.dumps(rows, default=str)
    assert "PG-4711" not in dump and "Postgres" not in dump and "clip.mp4" not in dump
    assert stored is not None and not stored.startswith("/")  # relative to the data folder
    metrics = nurse.get("/metrics").text
    (age,) = [float(line.split()[1]) for line in metrics.splitlines()
              if line.startswith("vid2dcm_outbox_oldest_seconds ")]
    assert 0 <= age < 60
