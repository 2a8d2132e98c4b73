"""A live recording's MPPS N-SET through the outbox (issues 14/15): the RIS is up when the
recording starts (N-CREATE IN PROGRESS) and down when it is stopped. The N-SET decided at stop
(COMPLETED, or DISCONTINUED with the reason given) becomes the notice "mpps:<recording_mpps>"
of the job the recording makes: waiting, with a scheduled retry; once the RIS is back the next
try ends the step, exactly once, whether the job is already done (kept here) or still waiting
for a PACS that is down.

Real peers on 127.0.0.1, free ports: pynetdicom's MPPS SCP as the RIS (stopped and started
again on its port by the test); the "PACS" of the second case is a free port nobody listens on.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from pydicom import Dataset
from pynetdicom import evt
from test_gateway_notices import restart
from test_gateway_recordings import PATIENT, gateway, person, wait_for
from test_record_mpps import MppsScp

from dcmtk_peers import free_port
from vid2dcm.apps.gateway.jobs import deliver_job
from vid2dcm.apps.gateway.outbox import due_jobs
from vid2dcm.apps.gateway.settings import ServiceSettings
from vid2dcm.apps.gateway.store import open_store

pytestmark = [pytest.mark.integration]

RETRY_S = 0.3


class CountingScp(MppsScp):
    """The MPPS SCP, counting every N-SET that reaches it (accepted or not)."""

    def __init__(self) -> None:
        self.sets = 0
        super().__init__()

    def on_set(self, event: evt.Event) -> tuple[int, Dataset | None]:
        self.sets += 1
        return super().on_set(event)


@pytest.mark.parametrize(("discontinued", "destinations"), [
    (None, ()),  # kept here: the job is done before the RIS is back
    ("patient", ("pacs",)),  # the PACS is down too: the job still waits for it
])
def test_recording_n_set_waits_for_the_ris_and_goes_once(
        tmp_path: Path, discontinued: str | None, destinations: tuple[str, ...]) -> None:
    scp = CountingScp()
    scp_up = True
    try:
        with gateway(tmp_path, free_port(), f"RIS@127.0.0.1:{scp.port}",
                     default_destinations=destinations, retry_first_s=RETRY_S,
                     retry_max_s=RETRY_S, delivery_window_s=3600) as client:
            settings: ServiceSettings = client.app.state.settings  # type: ignore[attr-defined]
            store = open_store(settings)
            nurse = person(client, "nurse")
            answer = nurse.post("/recordings", json={"sources": ["scope", "room"],
                                                     "metadata": PATIENT, "sop": "endoscopic"})
            assert answer.status_code == 201, answer.text
            rid = answer.json()["id"]
            (step,) = scp.instances.values()
            assert step.PerformedProcedureStepStatus == "IN PROGRESS"
            wait_for(nurse, rid, lambda s: all(x["frames"] > 10 for x in s["sources"]))

            scp.stop()  # the RIS goes down before the stop
            scp_up = False
            body = {"discontinued": discontinued} if discontinued else None
            stopped = nurse.post(f"/recordings/{rid}/stop", json=body)
            assert stopped.status_code == 200, stopped.text
            state = nurse.get(f"/recordings/{rid}").json()
            final = "discontinued" if discontinued else "completed"
            assert state["mpps"].startswith(f"{final}, not sent yet: ")
            assert state["mpps"].endswith("will be tried again")
            job_id = state["job_id"]
            job = nurse.get(f"/jobs/{job_id}").json()
            assert job["status"] == ("waiting" if destinations else "done"), job
            name = f"mpps:RIS@127.0.0.1:{scp.port}"
            (notice,) = job["notifications"]
            assert (notice["name"], notice["state"], notice["attempts"]) == (name, "waiting", 1)
            assert notice["next_try"] is not None and notice["error"]
            assert scp.sets == 0 and step.PerformedProcedureStepStatus == "IN PROGRESS"
            assert "Doe" not in str(job["notifications"]) and "REC-1" not in str(state)
            # not due before the backoff; the minute sweep finds it after
            assert due_jobs(store, notice["next_try"] - 0.01) == []
            assert due_jobs(store, notice["next_try"] + 0.01) == [job_id]

            restart(scp)  # the RIS is back: the next try ends the step
            scp_up = True
            time.sleep(RETRY_S + 0.05)
            deliver_job(settings, job_id)
            assert scp.sets == 1 and scp.refused_sets == []
            (step,) = scp.instances.values()
            assert step.PerformedProcedureStepStatus == final.upper()
            assert len(step.PerformedSeriesSequence) == 2  # one per source
            if discontinued:
                (reason,) = step.PerformedProcedureStepDiscontinuationReasonCodeSequence
                assert reason.CodingSchemeDesignator == "DCM"
            job = nurse.get(f"/jobs/{job_id}").json()
            (notice,) = job["notifications"]
            assert (notice["state"], notice["attempts"]) == ("sent", 2)
            assert nurse.get(f"/recordings/{rid}").json()["mpps"] == final

            # later tries and sweeps send nothing more
            time.sleep(RETRY_S + 0.05)
            deliver_job(settings, job_id)
            deliver_job(settings, job_id)
            assert scp.sets == 1
            if not destinations:
                assert due_jobs(store, time.time() + 3600) == []
            actions = [e["action"] for e in person(client, "it").get("/audit").json()
                       if e["job"] == job_id and e["who"] == f"worker:{name}"]
            # one try at stop, one after the retry: a job that goes on to wait for its PACS
            # keeps the waiting N-SET as it was (store.await_delivery leaves notices alone)
            assert sorted(actions) == ["MPPS failed", "MPPS sent"]
    finally:
        if scp_up:
            scp.stop()
