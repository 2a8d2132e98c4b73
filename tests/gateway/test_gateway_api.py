"""The gateway in-process (tests/gateway_app.py): routes, identity rules, people and tokens,
need to know, failure kinds, private files. No server, no port: the API's inner loop."""

from __future__ import annotations

import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway_app import PASSWORD, TOKEN, Gateway, in_process_gateway
from readback import read_back
from vid2dcm.apps.gateway.auth import SESSION_COOKIE, add_user, disable_user
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import Store, open_store
from vid2dcm.core.errors import UsageError


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    with in_process_gateway(tmp_path) as running:
        yield running


def test_open_routes_and_security_headers(gateway: Gateway) -> None:
    client = gateway.client
    assert client.get("/health").json() == {"status": "ok"}
    assert client.get("/ready").json() == {"status": "ready"}
    page = client.get("/")
    assert page.status_code == 200 and "<script>" not in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "strict-transport-security" not in page.headers, "HSTS only under TLS"
    assert client.get("/auth/config").json() == {"sign_on": False}
    assert client.get("/auth/oidc/login").status_code == 404, "sign-on not configured"
    for path in ("/jobs", "/metrics", "/worklist", "/openapi.json", "/auth/me"):
        assert client.get(path).status_code == 401, path
    assert client.get("/docs").status_code == 401, "API docs only after sign-in"
    assert client.get("/docs/assets/swagger-ui-bundle.js").status_code == 401


def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(gateway: Gateway) -> None:
    client = gateway.client
    assert client.post("/auth/login", json={"username": "nurse", "password": "nope"}
                       ).status_code == 401
    answer = client.post("/auth/login", json={"username": "nurse", "password": PASSWORD})
    assert answer.status_code == 200 and answer.json()["role"] == "uploader"
    cookie = answer.headers["set-cookie"]
    assert cookie.startswith(f"{SESSION_COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    assert client.get("/auth/me").json()["name"] == "nurse"
    assert client.get("/openapi.json").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "http" not in docs.text, "assets served locally"
    assert "<script>" not in docs.text
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js"):
        assert client.get(f"/docs/assets/{asset}").status_code == 200
    assert client.get("/docs/assets/index.html").status_code == 404
    value = client.cookies[SESSION_COOKIE]
    assert client.post("/auth/logout").status_code == 200
    client.cookies.set(SESSION_COOKIE, value)  # a copied cookie is dead after sign-out
    assert client.get("/auth/me").status_code == 401
    with sqlite3.connect(gateway.settings.database) as db:
        hashes = [row[0] for row in db.execute("SELECT password_hash FROM users")]
    assert all(h.startswith("$argon2id$") for h in hashes)
    assert PASSWORD not in gateway.settings.database.read_bytes().decode("latin-1")


def test_under_tls_cookies_are_secure_and_hsts_is_sent(tmp_path: Path) -> None:
    with in_process_gateway(tmp_path, tls=True) as gateway:
        answer = gateway.client.post("/auth/login", json={"username": "nurse",
                                                          "password": PASSWORD})
    assert "Secure" in answer.headers["set-cookie"]
    assert answer.headers["strict-transport-security"].startswith("max-age=")


def test_ten_failed_sign_ins_a_minute_are_429_with_retry_after(gateway: Gateway) -> None:
    client = gateway.client
    for _ in range(10):
        assert client.post("/auth/login", json={"username": "nurse", "password": "bad"}
                           ).status_code == 401
    refused = client.post("/auth/login", json={"username": "nurse", "password": PASSWORD})
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    other = client.post("/auth/login", json={"username": "doc", "password": PASSWORD})
    assert other.status_code == 429, "the same client address is limited too"


def test_sessions_expire_when_idle_and_after_the_shift(gateway: Gateway) -> None:
    for column, age in (("seen", 61), ("created", 3601)):
        client = gateway.person("nurse")
        assert client.get("/auth/me").status_code == 200
        with sqlite3.connect(gateway.settings.database) as db:
            db.execute(f"UPDATE sessions SET {column} = ?", (time.time() - age,))
        answer = client.get("/auth/me")
        assert answer.status_code == 401 and "sign in again" in answer.json()["detail"]


def test_a_disabled_user_is_signed_out_at_once(gateway: Gateway) -> None:
    client = gateway.person("nurse2")
    disable_user(gateway.settings, "nurse2")
    assert client.get("/jobs").status_code == 401
    assert client.post("/auth/login", json={"username": "nurse2", "password": PASSWORD}
                       ).status_code == 401
    with pytest.raises(UsageError):
        add_user(gateway.settings, "x", "superuser", PASSWORD)
    with pytest.raises(UsageError):
        add_user(gateway.settings, "shorty", "uploader", "short")


def test_machine_tokens_have_scopes_expiry_and_are_revoked_without_restart(
        gateway: Gateway) -> None:
    admin = gateway.person("it")
    assert gateway.person("nurse").post("/auth/tokens", json={"name": "x"}).status_code == 403
    issued = admin.post("/auth/tokens", json={"name": "scope-1", "role": "uploader",
                                              "scopes": ["upload"], "expires_in_s": 3600})
    assert issued.status_code == 201
    token = issued.json()["token"]
    machine = TestClient(gateway.client.app, headers={"Authorization": f"Bearer {token}"})
    assert machine.put("/uploads/a.mp4", content=b"x").status_code == 201
    assert machine.get("/jobs").status_code == 403, "scope upload only"
    assert token not in gateway.settings.database.read_bytes().decode("latin-1")
    assert admin.delete(f"/auth/tokens/{issued.json()['id']}").status_code == 200
    assert machine.put("/uploads/a.mp4", content=b"x").status_code == 401
    second = admin.post("/auth/tokens", json={"name": "old", "expires_in_s": 60}).json()
    with sqlite3.connect(gateway.settings.database) as db:
        db.execute("UPDATE tokens SET expires = ? WHERE id = ?", (time.time() - 1,
                                                                   second["id"]))
    expired = TestClient(gateway.client.app,
                         headers={"Authorization": f"Bearer {second['token']}"})
    assert expired.get("/jobs").status_code == 401
    assert [t["name"] for t in admin.get("/auth/tokens").json()] == ["scope-1", "old"]
    toml = TestClient(gateway.client.app, headers={"Authorization": f"Bearer {TOKEN}"})
    assert toml.get("/jobs").status_code == 200, "service.toml tokens still work"


def test_identity_is_required_for_a_pacs_and_unknown_patients_are_held(
        gateway: Gateway, tmp_path: Path) -> None:
    nurse = gateway.person("nurse")
    upload = gateway.upload(nurse)
    refused = nurse.post("/jobs", json={"upload_id": upload})
    assert refused.status_code == 422 and "unidentified" in refused.json()["detail"]
    half = nurse.post("/jobs", json={"upload_id": upload, "metadata": {"patient_id": "P1"}})
    assert half.status_code == 422 and "patient_name" in half.json()["detail"]
    both = nurse.post("/jobs", json={"upload_id": upload, "unidentified": True,
                                     "metadata": {"patient_id": "P1", "patient_name": "A^B"}})
    assert both.status_code == 422
    created = nurse.post("/jobs", json={"upload_id": upload, "unidentified": True,
                                        "sop": "endoscopic"})
    assert created.status_code == 201
    job_id = created.json()["id"]
    job = nurse.get(f"/jobs/{job_id}").json()
    assert job["status"] == "held" and job["result"]["deliveries"] == [], job
    held = tmp_path / "held.dcm"
    held.write_bytes(nurse.get(f"/jobs/{job_id}/files/0").content)
    held_ds = read_back(held, tmp_path).dataset
    assert held_ds.PatientID == "" and str(held_ds.PatientName) == ""

    assignment = {"metadata": {"patient_id": "HELD1", "patient_name": "Found^Patient"}}
    assert nurse.post(f"/jobs/{job_id}/assign", json=assignment).status_code == 403
    reviewer = gateway.person("doc")
    assert reviewer.post(f"/jobs/{job_id}/assign", json={"metadata": {"patient_id": "X"}}
                         ).status_code == 422
    assert reviewer.post(f"/jobs/{job_id}/assign", json=assignment).status_code == 200
    job = reviewer.get(f"/jobs/{job_id}").json()
    # assigned, converted again and sent: the PACS here is a closed port, so the job waits
    # in the outbox for the next try
    assert job["status"] == "waiting" and job["failure_kind"] is None, job
    assert job["state_text"].startswith("waiting for PACS (next try at ")
    assert time.time() < job["next_try"] < time.time() + 31
    assert job["request"]["unidentified"] is False and "metadata" not in job["request"]
    assigned = tmp_path / "assigned.dcm"
    assigned.write_bytes(reviewer.get(f"/jobs/{job_id}/files/0").content)
    ds = read_back(assigned, tmp_path).dataset
    assert (ds.PatientID, str(ds.PatientName)) == ("HELD1", "Found^Patient")
    assert ds.SOPInstanceUID != held_ds.SOPInstanceUID
    assert ds.StudyInstanceUID != held_ds.StudyInstanceUID
    assert len(list((gateway.settings.outputs / job_id).iterdir())) == 1
    assert reviewer.post(f"/jobs/{job_id}/assign", json=assignment).status_code == 409


def test_an_uploader_sees_only_their_own_jobs(gateway: Gateway) -> None:
    nurse, other, reviewer = (gateway.person(n) for n in ("nurse", "nurse2", "doc"))
    upload = gateway.upload(nurse)
    assert other.post("/jobs", json={"upload_id": upload, "unidentified": True}
                      ).status_code == 404, "another's upload is not there"
    job_id = nurse.post("/jobs", json={"upload_id": upload, "unidentified": True}
                        ).json()["id"]
    for path in (f"/jobs/{job_id}", f"/jobs/{job_id}/files/0",
                 f"/jobs/{job_id}/files/0/video"):
        assert other.get(path).status_code == 404, path
        assert nurse.get(path).status_code == 200, path
        assert reviewer.get(path).status_code == 200, path
    assert [j["id"] for j in other.get("/jobs").json()] == []
    assert [j["id"] for j in nurse.get("/jobs").json()] == [job_id]
    assert job_id in [j["id"] for j in reviewer.get("/jobs").json()]
    assert reviewer.get("/audit").status_code == 403, "reviewers do not administer"
    admin = gateway.person("it")
    log = admin.get("/audit").json()
    preview = [e for e in log if e["action"] == "preview" and e["job"] == job_id]
    assert {(e["who"], e["role"]) for e in preview} == {("nurse", "uploader"),
                                                        ("doc", "reviewer")}
    assert all(e["client"] == "testclient" for e in preview)


def test_a_pacs_down_past_the_window_fails_the_job_in_plain_words(tmp_path: Path) -> None:
    with in_process_gateway(tmp_path, delivery_window_s=0) as gateway:
        nurse = gateway.person("nurse")
        job_id = nurse.post("/jobs", json={"upload_id": gateway.upload(nurse), "metadata": {
            "patient_id": "W1", "patient_name": "Win^Dow"}}).json()["id"]
        job = nurse.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["failure_kind"]) == ("failed", "delivery"), job
    assert job["state_text"] == "failed: the PACS did not take it; IT has been told in the " \
                                "log, an admin can retry"
    assert job["error"].startswith("not stored in pacs after 1 tries")
    (delivery,) = job["result"]["deliveries"]
    assert delivery["destination"] == "pacs" and not delivery["ok"]


def test_an_uploader_also_sees_their_wards_jobs(gateway: Gateway) -> None:
    for name in ("endo1", "endo2"):
        add_user(gateway.settings, name, "uploader", PASSWORD, ward="endoscopy")
    first, second, elsewhere = (gateway.person(n) for n in ("endo1", "endo2", "nurse"))
    job_id = first.post("/jobs", json={"upload_id": gateway.upload(first),
                                       "unidentified": True}).json()["id"]
    assert second.get(f"/jobs/{job_id}").status_code == 200
    assert [j["id"] for j in second.get("/jobs").json()] == [job_id]
    assert elsewhere.get(f"/jobs/{job_id}").status_code == 404
    assert elsewhere.get("/jobs").json() == []
    with pytest.raises(UsageError):
        add_user(gateway.settings, "x1", "uploader", PASSWORD, ward="no spaces")


def test_failure_kind_comes_from_the_exception_class(gateway: Gateway) -> None:
    nurse = gateway.person("nurse")
    upload = nurse.put("/uploads/noise.mp4", content=b"not a video at all " * 100).json()["id"]
    job_id = nurse.post("/jobs", json={"upload_id": upload, "metadata": {
        "patient_id": "K1", "patient_name": "Kind^Test"}}).json()["id"]
    job = nurse.get(f"/jobs/{job_id}").json()
    assert (job["status"], job["failure_kind"]) == ("failed", "unreadable input"), job
    assert job["state_text"].startswith("failed: the file is not a video")
    assert "/" not in job["state_text"] and "Errno" not in job["state_text"]
    metrics = nurse.get("/metrics").text
    assert 'vid2dcm_failures{reason="unreadable input"} 1' in metrics
    assert "Kind" not in metrics and "K1" not in metrics


def test_typed_requests_and_responses(gateway: Gateway) -> None:
    nurse = gateway.person("nurse")
    answer = nurse.post("/jobs", json={"upload_id": "0" * 32, "unknown": 1})
    assert answer.status_code == 400 and answer.json()["detail"].startswith("unknown:")
    assert nurse.post("/jobs", json={"upload_id": "0" * 32, "issue": 3}).status_code == 400
    schema = nurse.get("/openapi.json").json()
    job = schema["paths"]["/jobs/{job_id}"]["get"]["responses"]["200"]["content"]
    assert job["application/json"]["schema"]["$ref"].endswith("/JobView")
    assert "JobRequest" in schema["components"]["schemas"]


def test_data_folder_and_files_are_private(gateway: Gateway) -> None:
    nurse = gateway.person("nurse")
    upload = gateway.upload(nurse)
    job_id = nurse.post("/jobs", json={"upload_id": upload, "metadata": {
        "patient_id": "PRIV1", "patient_name": "Private^Person"}}).json()["id"]
    data = gateway.settings.data_dir
    for folder in (data, data / "uploads", data / "outputs", data / "tus",
                   data / "outputs" / job_id):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    files = [p for p in data.rglob("*") if p.is_file()]
    assert any(p.suffix == ".dcm" for p in files) and any(p.name == "upload.mp4" for p in files)
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path


def test_no_patient_name_or_id_is_readable_in_any_sqlite_file(gateway: Gateway) -> None:
    nurse = gateway.person("nurse")
    upload = nurse.put("/uploads/Zyxwvu_Qwertyname.mp4", content=gateway.clip.read_bytes())
    job_id = nurse.post("/jobs", json={"upload_id": upload.json()["id"], "metadata": {
        "patient_id": "PIDSECRET9", "patient_name": "Zyxwvu^Qwertyname",
        "patient_birth_date": "1950-01-02"}}).json()["id"]
    assert nurse.get(f"/jobs/{job_id}").json()["request"]["upload_id"] == upload.json()["id"]
    data = gateway.settings.data_dir
    stores = [p for p in data.rglob("*") if ".sqlite" in p.name]
    assert {p.name for p in stores} >= {"jobs.sqlite", "queue.sqlite"}
    for path in stores:
        raw = path.read_bytes()
        for secret in (b"PIDSECRET9", b"Zyxwvu", b"Qwertyname", b"19500102", b"1950-01-02"):
            assert secret not in raw, (path.name, secret)
    names = "/".join(str(p.relative_to(data)) for p in data.rglob("*"))
    assert "Zyxwvu" not in names and "PIDSECRET9" not in names
    key = gateway.settings.key_file
    assert key.stat().st_size == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    from vid2dcm.apps.gateway.sealing import Sealer

    with pytest.raises(UsageError, match="wrong key"):
        Store(gateway.settings.database, Sealer(b"k" * 32)).job(job_id)
    assert Store(gateway.settings.database).set_status(job_id, "cancelled", ("waiting",)), (
        "state changes need no key")


def test_clean_up_removes_only_uploads_whose_jobs_succeeded(tmp_path: Path) -> None:
    from vid2dcm.apps.gateway.jobs import TUS_EXPIRY_S, clean_up
    from vid2dcm.apps.gateway.models import JobRequest, JobResult

    settings = ServiceSettings(data_dir=tmp_path / "data")
    store = open_store(settings)
    ids = {}
    for name, status in (("ok", "done"), ("failing", "failed"), ("waiting", "queued"),
                         ("unused", None)):
        folder = settings.uploads / name
        folder.mkdir()
        (folder / "v.mp4").write_bytes(b"x")
        ids[name] = store.add_upload("v.mp4", folder / "v.mp4", 1)
        if status:
            job = store.add_job(JobRequest(upload_id=ids[name]))
            if status != "queued":
                store.claim(job)
                store.finish(job, JobResult() if status == "done" else None,
                             None if status == "done" else "boom", "internal")
    tus = settings.data_dir / "tus"
    tus.mkdir()
    (tus / ("a" * 32)).write_bytes(b"half an upload")
    (tus / ("a" * 32 + ".info")).write_text("{}")
    assert clean_up(settings) == [], "nothing is removed before the retention time"
    done_id = next(j.id for j in store.jobs() if j.status == "done")
    (settings.outputs / done_id).mkdir()
    (settings.outputs / done_id / "video.dcm").write_bytes(b"x")
    assert clean_up(settings, now=time.time() + settings.upload_retention_s + 1) == [ids["ok"]]
    assert (settings.outputs / done_id).exists(), "outputs are kept longer than uploads"
    assert settings.output_retention_s == TUS_EXPIRY_S
    assert clean_up(settings, now=time.time() + TUS_EXPIRY_S + 1) == [done_id, "a" * 32]
    assert list(tus.iterdir()) == []
    assert not (settings.uploads / "ok").exists()
    assert all((settings.uploads / n / "v.mp4").exists() for n in ("failing", "waiting",
                                                                    "unused"))
