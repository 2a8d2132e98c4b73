"""DIMSE with pynetdicom: echo, negotiation, streamed C-STORE, worklist C-FIND.

Associations are retried with exponential backoff; a C-STORE is sent straight from the file
(pynetdicom's chunked mode), so a multi-gigabyte instance never sits in memory.
"""

from __future__ import annotations

import queue
import socket
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from pydicom import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    ModalityWorklistInformationFind,
    Verification,
)

from vid2dcm.core.errors import DeliveryError
from vid2dcm.delivery.destinations import Destination

MAX_CONTEXTS = 128
T = TypeVar("T")


def _application(dest: Destination) -> AE:
    ae = AE(ae_title=dest.calling_ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = dest.timeout_s
    ae.connection_timeout = min(dest.timeout_s, 15)
    ae.maximum_pdu_size = 0
    return ae


def tls_context(dest: Destination) -> tuple[ssl.SSLContext, str] | None:
    if dest.tls is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(dest.tls.ca_file))
    if dest.tls.cert_file:
        context.load_cert_chain(str(dest.tls.cert_file),
                                str(dest.tls.key_file) if dest.tls.key_file else None)
    return context, dest.tls.server_hostname or dest.host


def with_association(dest: Destination, contexts: Sequence[tuple[str, str]],
                     work: Callable[[Association], T], what: str) -> T:
    """Open an association offering contexts and run work on it; retry with backoff when the
    peer is unreachable, rejects, or aborts."""
    if len(contexts) > MAX_CONTEXTS:
        raise DeliveryError(f"{len(contexts)} presentation contexts needed, more than "
                            f"{MAX_CONTEXTS}; send fewer kinds of objects at once")
    last = "no attempt"
    for attempt in range(dest.retries + 1):
        if attempt:
            time.sleep(dest.retry_delay_s * 2 ** (attempt - 1))
        ae = _application(dest)
        for abstract, transfer in contexts:
            ae.add_requested_context(abstract, transfer)
        try:
            assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title,
                                 tls_args=tls_context(dest))
        except (OSError, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if not assoc.is_established:
            if assoc.rejected_contexts and not assoc.accepted_contexts:
                raise NoContextAccepted(f"{dest.describe()} accepted none of the "
                                        f"{len(contexts)} proposed presentation contexts")
            last = ("association rejected" if assoc.is_rejected else
                    "peer unreachable or association aborted")
            tls_problem = _tls_diagnosis(dest)
            if tls_problem:
                raise DeliveryError(f"{what} with {dest.describe()} failed: {tls_problem}")
            continue
        try:
            return work(assoc)
        except _Retry as exc:
            last = str(exc)
        finally:
            if assoc.is_established:
                assoc.release()
    raise DeliveryError(f"{what} with {dest.describe()} failed after {dest.retries + 1} "
                        f"attempt(s): {last}")


def _tls_diagnosis(dest: Destination) -> str | None:
    """pynetdicom swallows TLS errors; a bare handshake says what went wrong (untrusted or
    mismatched certificate), which retrying would not fix."""
    args = tls_context(dest)
    if args is None:
        return None
    context, hostname = args
    try:
        with socket.create_connection((dest.host, dest.port), timeout=dest.timeout_s) as raw, \
                context.wrap_socket(raw, server_hostname=hostname):
            return None
    except ssl.SSLError as exc:
        detail = getattr(exc, "verify_message", None) or exc.reason or str(exc)
        return f"TLS handshake failed: {detail} (check ca_file and the peer's certificate)"
    except OSError:
        return None


class NoContextAccepted(DeliveryError):
    """The peer answered but refused every proposed SOP class / transfer syntax pair."""


class _Retry(Exception):
    """Raised inside work when the association broke and the rest should be tried again."""


@dataclass(frozen=True)
class EchoResult:
    status: int
    seconds: float


def echo(dest: Destination) -> EchoResult:
    started = time.monotonic()

    def ping(assoc: Association) -> int:
        status = assoc.send_c_echo()
        if not status:
            raise _Retry("no C-ECHO response")
        return int(status.Status)

    code = with_association(dest, [(Verification, "1.2.840.10008.1.2")], ping, "C-ECHO")
    return EchoResult(code, time.monotonic() - started)


def accepted_contexts(dest: Destination, contexts: Sequence[tuple[str, str]]
                      ) -> frozenset[tuple[str, str]]:
    """Which (SOP class, transfer syntax) pairs the peer accepts, from one association."""
    def read(assoc: Association) -> frozenset[tuple[str, str]]:
        return frozenset((str(cx.abstract_syntax), str(cx.transfer_syntax[0]))
                         for cx in assoc.accepted_contexts)

    try:
        return with_association(dest, contexts, read, "negotiation")
    except NoContextAccepted:
        return frozenset()


@dataclass
class PendingStore:
    path: Path
    sop_class_uid: str
    transfer_syntax_uid: str
    status: int | None = None
    attempts: int = 0
    message: str = ""


STATUS_MESSAGES = {0xA700: "out of resources", 0xA900: "data set does not match SOP class",
                   0xC000: "cannot understand", 0x0122: "SOP class not supported"}


def store(dest: Destination, items: list[PendingStore]) -> None:
    """C-STORE every item (statuses filled in place); association trouble is retried for the
    items not yet stored, so nothing is sent twice."""
    contexts = sorted({(i.sop_class_uid, i.transfer_syntax_uid) for i in items})
    previous = _config.STORE_SEND_CHUNKED_DATASET
    _config.STORE_SEND_CHUNKED_DATASET = True

    def send(assoc: Association) -> None:
        _apply_backpressure(assoc)
        for item in items:
            if item.status is not None and item.status in (0x0000, 0xB000, 0xB007, 0xB006):
                continue
            item.attempts += 1
            status = assoc.send_c_store(item.path)
            if not status or "Status" not in status:
                raise _Retry(f"no C-STORE response for {item.path.name}")
            item.status = int(status.Status)
            if item.status in (0x0000, 0xB000, 0xB007, 0xB006):
                item.message = "stored" if item.status == 0 else f"stored with warning " \
                    f"0x{item.status:04X}"
            else:
                item.message = (f"refused with status 0x{item.status:04X} "
                                f"({_status_text(item.status)})")

    try:
        with_association(dest, contexts, send, "C-STORE")
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous


PDU_BACKLOG = 64


def _apply_backpressure(assoc: Association) -> None:
    """pynetdicom queues outgoing P-DATA without limit, so reading a large file outruns the
    socket and the whole instance ends up in memory (measured: 395 MB to send 1 GB). A bounded
    queue makes the reader wait for the sender."""
    dul = assoc.dul
    if dul.to_provider_queue.empty():
        dul.to_provider_queue = queue.Queue(maxsize=PDU_BACKLOG)


def _status_text(status: int) -> str:
    return STATUS_MESSAGES.get(status & 0xFF00, STATUS_MESSAGES.get(status, "failure"))


def find_worklist(dest: Destination, query: Dataset) -> list[Dataset]:
    """Modality Worklist C-FIND: every pending match, as returned."""
    def find(assoc: Association) -> list[Dataset]:
        found: list[Dataset] = []
        for status, identifier in assoc.send_c_find(query, ModalityWorklistInformationFind):
            if not status:
                raise _Retry("no C-FIND response")
            if status.Status in (0xFF00, 0xFF01) and identifier is not None:
                found.append(identifier)
            elif status.Status not in (0x0000, 0xFF00, 0xFF01):
                raise DeliveryError(f"worklist query refused with status "
                                    f"0x{int(status.Status):04X}")
        return found

    return with_association(dest, [(ModalityWorklistInformationFind, "1.2.840.10008.1.2.1"),
                                    (ModalityWorklistInformationFind, "1.2.840.10008.1.2")],
                            find, "worklist query")


