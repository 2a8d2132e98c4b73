"""DIMSE with pynetdicom: echo, negotiation, streamed C-STORE, worklist C-FIND.

Associations are retried with exponential backoff; a C-STORE is sent straight from the file
(pynetdicom's chunked mode), so a multi-gigabyte instance never sits in memory.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import socket
import ssl
import struct
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from io import BufferedReader
from pathlib import Path
from typing import TypeVar

from pydicom import Dataset
from pynetdicom import AE, _config
from pynetdicom.association import Association
from pynetdicom.dimse_messages import C_STORE_RQ
from pynetdicom.dimse_primitives import C_STORE
from pynetdicom.dsutils import encode, split_dataset
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
        message_ids = itertools.count(1)
        for item in items:
            if item.status is not None and item.status in (0x0000, 0xB000, 0xB007, 0xB006):
                continue
            item.attempts += 1
            status = _send_c_store(assoc, item.path, next(message_ids))
            if status is None:
                raise _Retry(f"no C-STORE response for {item.path.name}")
            item.status = status
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


def _send_c_store(assoc: Association, path: Path, message_id: int) -> int | None:
    """One C-STORE; the status, or None when no (valid) response came.

    On a plain TCP association the request is written straight to the socket (`_stream_store`);
    over TLS it goes through pynetdicom's DUL thread, whose per-PDU cost is the price of not
    sharing an SSL object between two threads."""
    if isinstance(assoc.dul.socket.socket if assoc.dul.socket else None, ssl.SSLSocket):
        status = assoc.send_c_store(path, msg_id=message_id)
        return int(status.Status) if status and "Status" in status else None
    return _stream_store(assoc, path, message_id)


BLOCK_BYTES = 4 << 20
"""How much of the file is read, framed and handed to the socket at once."""
LARGEST_PDU = 1 << 20
"""PDU length used when the peer allows more (or declares no maximum: 0 in its
A-ASSOCIATE-AC); smaller PDUs are always allowed, and this bounds the buffer."""


def _stream_store(assoc: Association, path: Path, message_id: int) -> int | None:
    """C-STORE-RQ written to the socket by this thread, in the peer's maximum PDU length.

    Why: a peer such as storescp or Orthanc accepts PDUs of at most 16 KiB (PS3.8 9.3.4 lets
    the receiver fix the limit), so 1 GB is 61,000 P-DATA-TF PDUs. pynetdicom passes each
    through a queue, its DUL thread, the state machine and an event, which costs more than the
    bytes (measured: 2.15x storescu for 1 GB). Here each block of the file is framed into
    PDUs (12 header bytes per PDU: PDU type 04H and length, then one PDV item: length,
    presentation context ID, message control header; PS3.8 9.3.5 and E.2) and handed to the
    kernel in one gather-write, so the cost per PDU is two list entries. Memory stays at one
    block. The DUL thread keeps reading the socket, so the C-STORE-RSP (and an A-ABORT) arrive
    as usual; while an association is established in the data transfer state (Sta6), sending
    P-DATA changes no state (action DT-1), so nothing is bypassed but the queue. The command
    set is the one pynetdicom builds (PS3.7 9.3.1.1), so both paths send identical bytes."""
    file_meta, offset = split_dataset(path)
    sop_class = str(file_meta.MediaStorageSOPClassUID)
    syntax = str(file_meta.TransferSyntaxUID)
    context = next((cx for cx in assoc.accepted_contexts
                    if cx.abstract_syntax == sop_class and cx.transfer_syntax[0] == syntax),
                   None)
    if context is None or context.context_id is None:
        raise DeliveryError(f"no accepted presentation context for {path.name} "
                            f"({sop_class}, {syntax})")
    request = C_STORE()
    request.MessageID = message_id
    request.AffectedSOPClassUID = sop_class
    request.AffectedSOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
    request.Priority = 0x0002
    request._dataset_path = (path, offset)
    message = C_STORE_RQ()
    message.primitive_to_message(request)
    command = encode(message.command_set, True, True)
    assert isinstance(command, bytes)

    limit = min(assoc.acceptor.maximum_length or LARGEST_PDU, LARGEST_PDU)
    sock = assoc.dul.socket.socket if assoc.dul.socket else None
    if sock is None:
        return None
    # Pause the association's reactor (as pynetdicom's own send_c_store does) so that it
    # does not take the response meant for us off the DIMSE queue.
    assoc._reactor_checkpoint.clear()
    while not assoc._is_paused and assoc.is_established:
        time.sleep(0.0001)
    try:
        sock.settimeout(assoc.network_timeout)
        try:
            _write_fragments(sock, context.context_id, limit, [(command, 0x01, 0x03)])
            with open(path, "rb") as data:
                data.seek(offset)
                _write_file(sock, context.context_id, limit, data,
                            path.stat().st_size - offset)
        except OSError as exc:
            assoc.abort()
            raise _Retry(f"connection lost while sending {path.name}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(None)
        _cx, response = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    if response is None:
        assoc._handle_no_response()
        return None
    status = getattr(response, "Status", None)
    return int(status) if status is not None else None


def _pdu_header(context_id: int, control: int, length: int) -> bytes:
    """P-DATA-TF PDU header with one PDV item of `length` data bytes (PS3.8 9.3.5)."""
    return struct.pack(">BBLLBB", 0x04, 0x00, length + 6, length + 2, context_id, control)


def _write_fragments(sock: socket.socket, context_id: int, limit: int,
                     parts: list[tuple[bytes, int, int]]) -> None:
    """Small messages (the command set): (bytes, control of a fragment, control of the last)."""
    chunk = limit - 6
    out = bytearray()
    for payload, middle, last in parts:
        for start in range(0, max(len(payload), 1), chunk):
            piece = payload[start:start + chunk]
            control = last if start + chunk >= len(payload) else middle
            out += _pdu_header(context_id, control, len(piece)) + piece
    sock.sendall(out)


def _write_file(sock: socket.socket, context_id: int, limit: int, data: BufferedReader,
                length: int) -> None:
    """The data set, framed into PDUs of at most `limit` bytes: control 00H for every
    fragment but the last, 02H for the last (PS3.8 E.2).

    Every full PDU has the same 12 header bytes, so a block is sent as one gather-write
    (sendmsg) of header, slice, header, slice...: no copy of the data and one system call per
    block instead of one Python round per PDU."""
    chunk = limit - 6
    per_block = max(1, min(BLOCK_BYTES // chunk, IOV_PAIRS))
    staging = bytearray(per_block * chunk)
    view = memoryview(staging)
    full = _pdu_header(context_id, 0x00, chunk)
    left = length
    while left > 0:
        want = min(left, len(staging))
        got = data.readinto(view[:want])
        if not got:
            raise DeliveryError(f"{data.name} ended {left} bytes early")
        left -= got
        parts: list[bytes | memoryview] = []
        for start in range(0, got, chunk):
            piece = min(chunk, got - start)
            last = left == 0 and start + piece == got
            parts.append(full if piece == chunk and not last else
                         _pdu_header(context_id, 0x02 if last else 0x00, piece))
            parts.append(view[start:start + piece])
        _send_all(sock, parts)


IOV_PAIRS = 500
"""Header+slice pairs per sendmsg call: Linux takes at most 1024 buffers (IOV_MAX)."""


def _send_all(sock: socket.socket, parts: list[bytes | memoryview]) -> None:
    """sendmsg until every buffer is out (a socket with a timeout may take part of them)."""
    while parts:
        sent = sock.sendmsg(parts)
        done = 0
        while done < len(parts) and sent >= len(parts[done]):
            sent -= len(parts[done])
            done += 1
        parts = parts[done:]
        if parts and sent:
            parts[0] = memoryview(parts[0])[sent:]


PDU_BACKLOG = 64


def _apply_backpressure(assoc: Association) -> None:
    """pynetdicom queues outgoing P-DATA without limit, so reading a large file outruns the
    socket and the whole instance ends up in memory (measured: 395 MB to send 1 GB). A bounded
    queue makes the reader wait for the sender (the TLS path still goes through that queue)."""
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


