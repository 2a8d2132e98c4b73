"""Storage Commitment (push model): ask the peer to take responsibility for what was sent.

The N-EVENT-REPORT with the answer may come back on the same association or on a new one the
peer opens to us (PS3.4 J.3.3: the SCP chooses; Orthanc, dcm4chee and most PACS open a new one
to the AE they know us by). Both are listened for, up to a timeout. For the new association we
listen on a configurable address (a PACS on another machine must reach it: bind the host's LAN
address, or 0.0.0.0) under a configurable AE title, and refuse calls addressed to another
AE title. Without a listen port only the same association is used. The result is per instance:
committed, failed, or unknown (no answer in time)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from pydicom import Dataset
from pydicom.uid import generate_uid
from pynetdicom import AE, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import StorageCommitmentPushModel  # type: ignore[attr-defined]

from vid2dcm.core.errors import DeliveryError
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.transports.dimse import with_association

INSTANCE_UID = "1.2.840.10008.1.20.1.1"
"""Well-known SOP Instance of the Storage Commitment Push Model."""


def request_commitment(dest: Destination, instances: Sequence[tuple[str, str]],
                       listen_port: int | None = None, timeout_s: float = 30.0, *,
                       listen_host: str = "127.0.0.1", listen_ae_title: str | None = None
                       ) -> dict[str, bool | None]:
    """instances: (SOP Class UID, SOP Instance UID). Returns uid -> True/False/None.

    listen_host/listen_port/listen_ae_title: where the peer's N-EVENT-REPORT association is
    accepted (the AE title defaults to our calling AE title, which is how PACS usually know
    us)."""
    results: dict[str, bool | None] = {uid: None for _, uid in instances}
    transaction = str(generate_uid())
    answered = threading.Event()

    def on_report(event: Any) -> tuple[int, Dataset | None]:
        info = event.event_information
        if str(info.get("TransactionUID", "")) != transaction:
            return 0x0000, None
        for item in info.get("ReferencedSOPSequence", []):
            results[str(item.ReferencedSOPInstanceUID)] = True
        for item in info.get("FailedSOPSequence", []):
            results[str(item.ReferencedSOPInstanceUID)] = False
        answered.set()
        return 0x0000, None

    handlers: list[Any] = [(evt.EVT_N_EVENT_REPORT, on_report)]
    server = None
    if listen_port is not None:
        listener = AE(ae_title=listen_ae_title or dest.calling_ae_title)
        listener.require_called_aet = True
        listener.add_supported_context(StorageCommitmentPushModel, scu_role=True, scp_role=True)
        try:
            server = listener.start_server((listen_host, listen_port), block=False,
                                           evt_handlers=handlers)
        except OSError as exc:
            raise DeliveryError(f"cannot listen for storage commitment on {listen_host}:"
                                f"{listen_port}: {exc.strerror or exc}") from None
    request = Dataset()
    request.TransactionUID = transaction
    items = []
    for sop_class, sop_instance in instances:
        item = Dataset()
        item.ReferencedSOPClassUID = sop_class
        item.ReferencedSOPInstanceUID = sop_instance
        items.append(item)
    request.ReferencedSOPSequence = items

    def ask(assoc: Association) -> None:
        assoc.bind(evt.EVT_N_EVENT_REPORT, on_report)
        status, _reply = assoc.send_n_action(request, 1, StorageCommitmentPushModel,
                                             INSTANCE_UID)
        if not status or status.Status != 0x0000:
            code = f"0x{int(status.Status):04X}" if status else "no response"
            for uid in results:
                results[uid] = False
            raise _Refused(f"storage commitment request refused ({code})")
        answered.wait(timeout_s)

    try:
        with_association(dest, [(StorageCommitmentPushModel, "1.2.840.10008.1.2.1"),
                                (StorageCommitmentPushModel, "1.2.840.10008.1.2")],
                         ask, "storage commitment")
    except _Refused:
        pass
    finally:
        if server is not None:
            server.shutdown()
    return results


class _Refused(Exception):
    pass
