"""MPPS around a recording, against pynetdicom's MPPS SCP started by the test on 127.0.0.1.

The SCP keeps what it was told, applying N-SET only to attributes the N-CREATE created (the
rule real RIS follow), so a missing attribute in our N-CREATE would show here.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydicom import Dataset
from pynetdicom import AE, evt
from pynetdicom.sop_class import ModalityPerformedProcedureStep  # type: ignore[attr-defined]

from live_senders import free_port
from vid2dcm.core.errors import DeliveryError
from vid2dcm.core.metadata import Metadata
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.transports.mpps import (
    PerformedSeries,
    complete_procedure_step,
    discontinue_procedure_step,
    start_procedure_step,
)

pytestmark = pytest.mark.integration


class MppsScp:
    def __init__(self) -> None:
        self.instances: dict[str, Dataset] = {}
        self.refused_sets: list[str] = []
        ae = AE(ae_title="RIS")
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self.port = free_port()
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_N_CREATE, self.on_create), (evt.EVT_N_SET, self.on_set)])

    def on_create(self, event: evt.Event) -> tuple[int, Dataset | None]:
        req = event.request
        uid = str(req.AffectedSOPInstanceUID)
        if uid in self.instances:
            return 0x0111, None
        ds = event.attribute_list
        if ds.PerformedProcedureStepStatus != "IN PROGRESS":
            return 0x0106, None
        ds.SOPClassUID = ModalityPerformedProcedureStep
        ds.SOPInstanceUID = uid
        self.instances[uid] = ds.copy()
        return 0x0000, ds

    def on_set(self, event: evt.Event) -> tuple[int, Dataset | None]:
        uid = str(event.request.RequestedSOPInstanceUID)
        if uid not in self.instances:
            return 0x0112, None
        stored = self.instances[uid]
        if stored.PerformedProcedureStepStatus != "IN PROGRESS":
            return 0x0110, None
        mods = event.modification_list
        for elem in mods:
            if elem.tag not in stored:
                self.refused_sets.append(elem.keyword)
                return 0x0105, None  # no such attribute: it was not created
        stored.update(mods)
        return 0x0000, stored

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def scp() -> Iterator[MppsScp]:
    server = MppsScp()
    yield server
    server.stop()


META = Metadata(patient_name="Roe^Richard", patient_id="M-9", accession_number="A77",
                requested_procedure_id="RP1", scheduled_procedure_step_id="SPS1")


def dest(scp: MppsScp) -> Destination:
    return Destination(ae_title="RIS", host="127.0.0.1", port=scp.port, retries=0,
                       timeout_s=10)


def test_in_progress_then_completed_with_the_series(scp: MppsScp) -> None:
    step = start_procedure_step(dest(scp), META, study_instance_uid="1.2.3", modality="ES")
    stored = scp.instances[step.sop_instance_uid]
    assert stored.PerformedProcedureStepStatus == "IN PROGRESS"
    assert stored.PatientID == "M-9"
    assert stored.ScheduledStepAttributesSequence[0].AccessionNumber == "A77"
    assert stored.ScheduledStepAttributesSequence[0].StudyInstanceUID == "1.2.3"
    assert stored.PerformedSeriesSequence == []
    series = [PerformedSeries("1.2.3.4", "scope", (("1.2.840.10008.5.1.4.1.1.77.1.1.1",
                                                     "1.2.3.4.5"),)),
              PerformedSeries("1.2.3.6", "room", (("1.2.840.10008.5.1.4.1.1.77.1.1.1",
                                                    "1.2.3.6.7"),))]
    complete_procedure_step(step, series)
    stored = scp.instances[step.sop_instance_uid]
    assert scp.refused_sets == []
    assert stored.PerformedProcedureStepStatus == "COMPLETED"
    assert stored.PerformedProcedureStepEndDate
    assert [s.SeriesInstanceUID for s in stored.PerformedSeriesSequence] == ["1.2.3.4",
                                                                             "1.2.3.6"]
    item = stored.PerformedSeriesSequence[0]
    assert item.ProtocolName and item.ReferencedImageSequence[0].ReferencedSOPInstanceUID == \
        "1.2.3.4.5"
    with pytest.raises(DeliveryError, match="0x0110"):  # a final state is final
        discontinue_procedure_step(step, series)


def test_discontinued_with_a_reason(scp: MppsScp) -> None:
    step = start_procedure_step(dest(scp), META, study_instance_uid="1.2.3", modality="XC")
    discontinue_procedure_step(step, [PerformedSeries("1.2.9", "cam", ())], "equipment")
    stored = scp.instances[step.sop_instance_uid]
    assert stored.PerformedProcedureStepStatus == "DISCONTINUED"
    code = stored.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("110501", "DCM")
    with pytest.raises(DeliveryError, match="at least one"):
        complete_procedure_step(step, [])


def test_unreachable_scp_is_a_delivery_error() -> None:
    with pytest.raises(DeliveryError):
        start_procedure_step(Destination(ae_title="RIS", host="127.0.0.1", port=free_port(),
                                         retries=0, timeout_s=2), META,
                             study_instance_uid="1.2.3", modality="ES")


def test_record_command_reports_the_procedure_step(scp: MppsScp, tmp_path: Path) -> None:
    """IN PROGRESS while recording; COMPLETED with the video series and the stills series,
    each listing exactly the instances written."""
    import signal

    import pydicom
    from test_record import APP, SMALL, wait_recording

    proc = subprocess.Popen(
        [sys.executable, "-c", APP, f"scope={SMALL}", "-o", str(tmp_path / "out"),
         "--duration", "3", "--mpps", f"RIS@127.0.0.1:{scp.port}", "--accession", "A77",
         "--patient-id", "M-9"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_recording(proc)
    # created before the recording started, and still IN PROGRESS while it runs
    assert [str(d.PerformedProcedureStepStatus) for d in list(scp.instances.values())] == [
        "IN PROGRESS"]
    time.sleep(1.5)
    proc.send_signal(signal.SIGUSR1)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    (stored,) = scp.instances.values()
    assert stored.PerformedProcedureStepStatus == "COMPLETED"
    out = tmp_path / "out"
    by_series: dict[str, set[str]] = {}
    for f in [*out.glob("scope-0*.dcm"), *out.glob("scope-still-*.dcm")]:
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        by_series.setdefault(ds.SeriesInstanceUID, set()).add(ds.SOPInstanceUID)
    reported = {str(s.SeriesInstanceUID): {r.ReferencedSOPInstanceUID
                                           for r in s.ReferencedImageSequence}
                for s in stored.PerformedSeriesSequence}
    assert reported == by_series and len(reported) == 2


@pytest.mark.slow
@pytest.mark.needs_dcmtk
def test_record_command_sends_the_result(tmp_path: Path) -> None:
    """--send: every instance of the recording reaches a DCMTK storescp, unchanged."""
    import json

    import pydicom
    from test_record import APP, SMALL

    from dcmtk_peers import running_storescp

    with running_storescp(tmp_path / "scp") as scp:
        proc = subprocess.run(
            [sys.executable, "-c", APP, f"cam={SMALL}", "-o", str(tmp_path / "out"),
             "--duration", "2", "--max-segment", "1", "--send",
             f"{scp.aet}@127.0.0.1:{scp.port}", "--json", "--allow-unidentified"],
            capture_output=True, text=True, timeout=90, check=False)
        assert proc.returncode == 0, proc.stderr
        report = json.loads(proc.stdout)
        received = scp.received()
    made = report["sources"][0]["files"]
    assert len(made) >= 2 and all(d["ok"] for d in report["delivery"])
    sent = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in made}
    got = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID for f in received}
    assert got == sent
