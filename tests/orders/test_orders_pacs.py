"""Key Object Selection manifests and cross-machine Storage Commitment, against Orthanc.

The KOS references a real video instance and a snapshot (Secondary Capture), is checked by
pydicom, dcmdump and dciodvfy, and stored in Orthanc with them. Storage Commitment is answered
by Orthanc on a new association to a NON-loopback address of this host (the address a PACS on
another machine would call back); the old loopback-only listener is shown to miss that call.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest

from conftest import MakeClip
from dcmtk_peers import free_port
from orthanc import Orthanc, running_orthanc
from readback import dciodvfy_errors, read_back
from vid2dcm.core.errors import InputError
from vid2dcm.core.metadata import Metadata
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.kos import build_kos
from vid2dcm.delivery.send import deliver
from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.producing.synth import ClipSpec

pytestmark = [pytest.mark.integration, pytest.mark.needs_orthanc]

KOS_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"


@dataclass(frozen=True)
class Callback:
    address: str
    lan_port: int
    loop_port: int


@pytest.fixture(scope="module")
def callback() -> Callback:
    """The PACS calls back to 127.0.0.2: an address other than the 127.0.0.1 the listener used
    to bind, while nothing leaves loopback (house rule: no test listens outside loopback)."""
    return Callback("127.0.0.2", free_port(), free_port())


@pytest.fixture(scope="module")
def pacs(tmp_path_factory: pytest.TempPathFactory, callback: Callback) -> Iterator[Orthanc]:
    with running_orthanc(tmp_path_factory.mktemp("pacs"), DicomModalities={
            "vid2dcm": ["VID2DCM", callback.address, callback.lan_port],
            "oldstyle": ["VIDLOOP", callback.address, callback.loop_port]}) as server:
        yield server


def dimse(server: Orthanc, **extra: Any) -> Destination:
    return Destination(ae_title=server.aet, host="127.0.0.1", port=server.dicom_port,
                       retries=0, timeout_s=20, **extra)


def in_orthanc(server: Orthanc, sop_instance_uid: str) -> dict[str, Any]:
    found = server.get_json_post("/tools/lookup", sop_instance_uid)
    ids = [f["ID"] for f in found if f["Type"] == "Instance"]
    assert ids, f"{sop_instance_uid} is not in the PACS"
    tags: dict[str, Any] = server.get(f"/instances/{ids[0]}/simplified-tags")
    return tags


@pytest.fixture(scope="module")
def video(make_clip: MakeClip, tmp_path_factory: pytest.TempPathFactory) -> Path:
    clip = make_clip("kos.mp4", ClipSpec(width=64, height=48, frames=25))
    md = Metadata(patient_id="KOS1", patient_name="Key^Object", accession_number="ACCKOS",
                  requested_procedure_id="RPKOS", requested_procedure_description="EGD",
                  scheduled_procedure_step_id="SPSKOS",
                  study_instance_uid="1.2.826.0.1.3680043.10.543.77")
    out = tmp_path_factory.mktemp("kos") / "video.dcm"
    return convert(clip, out, metadata=md, options=Request()).files[0].path


def snapshot_of(video: Path, out: Path) -> Path:
    """A Secondary Capture still of the same study, as a capture station would save."""
    ref = pydicom.dcmread(video, stop_before_pixels=True)
    pixels = np.zeros((48, 64, 3), dtype=np.uint8)
    pixels[:, :, 0] = np.arange(64, dtype=np.uint8)[None, :] * 4
    image = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref, pixel_array=pixels, photometric_interpretation="RGB",
        bits_allocated=8, coordinate_system="PATIENT", patient_orientation=("L", "P"),
        series_instance_uid=hd.UID(), series_number=2, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="vid2dcm-test")
    image.Laterality = ""  # Type 2C (General Series); dciodvfy asks for it present
    image.save_as(out, enforce_file_format=True)
    return out


def test_kos_references_video_and_snapshot_and_is_stored(pacs: Orthanc, video: Path,
                                                        tmp_path: Path) -> None:
    read_back(video, tmp_path)
    snap = snapshot_of(video, tmp_path / "snap.dcm")
    assert dciodvfy_errors(snap) == []
    kos = build_kos([video, snap], tmp_path / "kos.dcm", title="manifest",
                    description="Key video and still", uid_seed="job-77")
    assert dciodvfy_errors(kos) == []
    dump = subprocess.run(["dcmdump", "+L", str(kos)], capture_output=True, text=True,
                          check=False)
    assert dump.returncode == 0 and "E: " not in dump.stderr, dump.stderr
    ds = pydicom.dcmread(kos)
    assert ds.SOPClassUID == KOS_CLASS and ds.Modality == "KO"
    assert ds.StudyInstanceUID == "1.2.826.0.1.3680043.10.543.77"
    assert (ds.PatientID, ds.AccessionNumber) == ("KOS1", "ACCKOS")
    assert ds.ConceptNameCodeSequence[0].CodeValue == "113030"
    refs = {item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID: item.ValueType
            for item in ds.ContentSequence if item.ValueType in ("IMAGE", "COMPOSITE")}
    video_uid = pydicom.dcmread(video, stop_before_pixels=True).SOPInstanceUID
    snap_uid = pydicom.dcmread(snap, stop_before_pixels=True).SOPInstanceUID
    assert refs == {video_uid: "IMAGE", snap_uid: "IMAGE"}
    evidence = {i.ReferencedSOPInstanceUID
                for s in ds.CurrentRequestedProcedureEvidenceSequence
                for r in s.ReferencedSeriesSequence for i in r.ReferencedSOPSequence}
    assert evidence == {video_uid, snap_uid}
    assert ds.ReferencedRequestSequence[0].RequestedProcedureID == "RPKOS"
    again = build_kos([video, snap], tmp_path / "kos2.dcm", title="manifest", uid_seed="job-77")
    assert pydicom.dcmread(again).SOPInstanceUID == ds.SOPInstanceUID, "repeatable UIDs"

    receipts = deliver([video, snap, kos], dimse(pacs))
    assert all(r.ok for r in receipts), [r.message for r in receipts]
    tags = in_orthanc(pacs, str(ds.SOPInstanceUID))
    assert tags["Modality"] == "KO" and tags["StudyInstanceUID"] == ds.StudyInstanceUID
    study = pacs.get_json_post("/tools/lookup", str(ds.StudyInstanceUID))
    study_id = next(f["ID"] for f in study if f["Type"] == "Study")
    assert len(pacs.get(f"/studies/{study_id}/instances")) == 3


def test_kos_refuses_mixed_studies(video: Path, tmp_path: Path, make_clip: MakeClip) -> None:
    other = convert(make_clip("kos.mp4", ClipSpec(width=64, height=48, frames=25)),
                    tmp_path / "other.dcm", metadata=Metadata(patient_id="KOS1"),
                    options=Request()).files[0].path
    with pytest.raises(InputError, match="2 studies"):
        build_kos([video, other], tmp_path / "k.dcm")
    assert not (tmp_path / "k.dcm").exists()


def test_commitment_answered_on_the_configured_listen_address(pacs: Orthanc, video: Path,
                                                       callback: Callback) -> None:
    """Orthanc calls back to callback.address, which a 127.0.0.1-only listener never hears."""
    dest = dimse(pacs, storage_commitment=True, commitment_port=callback.lan_port,
                 commitment_listen_host=callback.address, commitment_timeout_s=20)
    receipts = deliver([video], dest)
    assert receipts[0].ok and receipts[0].committed is True, receipts[0]


def test_loopback_only_listener_misses_a_remote_callback(pacs: Orthanc, video: Path,
                                                         callback: Callback) -> None:
    """The old behaviour, kept as the default: bound to 127.0.0.1, a PACS calling another
    address is refused, so commitment stays unknown (None), never a false yes."""
    dest = dimse(pacs, calling_ae_title="VIDLOOP", storage_commitment=True,
                 commitment_port=callback.loop_port, commitment_timeout_s=4)
    receipts = deliver([video], dest)
    assert receipts[0].ok and receipts[0].committed is None, receipts[0]


def test_commitment_listener_checks_its_ae_title(pacs: Orthanc, video: Path,
                                                 callback: Callback) -> None:
    """Orthanc calls back to AE VID2DCM; a listener titled otherwise refuses the association,
    so the answer is unknown rather than taken from a call meant for someone else."""
    dest = dimse(pacs, storage_commitment=True, commitment_port=callback.lan_port,
                 commitment_listen_host=callback.address, commitment_ae_title="NOTME",
                 commitment_timeout_s=4)
    receipts = deliver([video], dest)
    assert receipts[0].ok and receipts[0].committed is None, receipts[0]


def test_hl7_order_to_stored_study_to_oru(pacs: Orthanc, make_clip: MakeClip,
                                          tmp_path: Path) -> None:
    """ORM in -> a recording bound to the order -> stored in Orthanc with the order's identity
    -> ORU 'images available' received by the HIS stand-in."""
    import hl7
    from test_orders_hl7 import ORM

    from vid2dcm.orders.hl7_mapping import field_value
    from vid2dcm.orders.inbox import handle
    from vid2dcm.orders.mllp import MllpServer, send_message
    from vid2dcm.orders.results import StudyAvailable, send_oru
    from vid2dcm.orders.store import OrderStore

    store = OrderStore(tmp_path / "orders.sqlite")
    with MllpServer(lambda t: handle(t, store)[0], "127.0.0.1", 0) as listener:
        assert send_message(*listener.address, ORM).code == "AA"
    order = store.find_by_accession("ACC100")
    assert order is not None
    clip = make_clip("kos.mp4", ClipSpec(width=64, height=48, frames=25))
    metadata = Metadata.model_validate(order.metadata_fields())
    path = convert(clip, tmp_path / "bound.dcm", metadata=metadata,
                   options=Request()).files[0].path
    back = read_back(path, tmp_path)
    assert (back.dataset.PatientID, back.dataset.AccessionNumber) == ("PAT001", "ACC100")
    assert str(back.dataset.PatientName) == "Müller^Anna^B"
    assert back.dataset.StudyInstanceUID == "1.2.826.0.1.3680043.10.543.100"
    request = back.dataset.RequestAttributesSequence[0]
    assert (request.RequestedProcedureID, request.ScheduledProcedureStepID) == ("RP100",
                                                                                "SPS100")
    receipts = deliver([path], dimse(pacs))
    assert receipts[0].ok, receipts[0].message
    tags = in_orthanc(pacs, str(back.dataset.SOPInstanceUID))
    assert (tags["AccessionNumber"], tags["PatientID"]) == ("ACC100", "PAT001")

    got: list[str] = []
    with MllpServer(lambda t: got.append(t) or str(hl7.parse(t).create_ack("AA")),
                    "127.0.0.1", 0) as his:
        ack = send_oru(StudyAvailable(order, str(tags["StudyInstanceUID"]),
                                      f"{pacs.url}/app/explorer.html"), *his.address)
    assert ack.accepted and len(got) == 1
    oru = hl7.parse(got[0])
    assert field_value(oru, "OBX-5") == "1.2.826.0.1.3680043.10.543.100"
    assert field_value(oru, "OBR-18") == "ACC100"
