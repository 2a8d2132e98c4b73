"""deliver: files to a destination, negotiating and falling back instead of failing.

For DIMSE: one negotiation association learns which syntaxes the peer takes for each SOP class;
each file is then sent as it is, as its non-fragmentable twin, re-encoded to a video syntax the
peer accepts, or frame by frame (if the destination allows); every fallback is reported. For
STOW-RS: streamed multipart upload. Nothing is deleted; a failed delivery says what failed."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

from pydicom import dcmread

from vid2dcm.core.errors import DeliveryError, InputError
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.fallback import Alternative, reconvert, transcode_request, twin
from vid2dcm.delivery.negotiation import (
    DeliveryChoice,
    DeliveryKind,
    choose_delivery,
    proposed_syntaxes,
)
from vid2dcm.delivery.receipts import Receipt
from vid2dcm.delivery.transports import dicomweb, dimse
from vid2dcm.delivery.transports.commitment import request_commitment
from vid2dcm.planning.plan import Request


@dataclass(frozen=True)
class _Header:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str


def deliver(files: list[Path], dest: Destination, work: Path | None = None) -> list[Receipt]:
    headers = [_header(p) for p in files]
    with tempfile.TemporaryDirectory(prefix="vid2dcm-send-", dir=work) as tmp:
        headers = _split_oversized(headers, dest, Path(tmp))
        if dest.kind == "stow":
            return dicomweb.stow(dest, [h.path for h in headers])
        receipts = _deliver_dimse(headers, dest, Path(tmp))
        if dest.storage_commitment:
            receipts = _commit(receipts, dest)
        return receipts


def _commit(receipts: list[Receipt], dest: Destination) -> list[Receipt]:
    stored = [(r, _header(r.sent)) for r in receipts if r.ok and r.sent is not None]
    if not stored:
        return receipts
    answers = request_commitment(dest, [(h.sop_class_uid, h.sop_instance_uid) for _, h in stored],
                                 dest.commitment_port, dest.commitment_timeout_s,
                                 listen_host=dest.commitment_listen_host,
                                 listen_ae_title=dest.commitment_ae_title)
    committed = {r.sop_instance_uid: answers.get(h.sop_instance_uid) for r, h in stored}
    return [replace(r, committed=committed.get(r.sop_instance_uid)) if r.ok else r
            for r in receipts]


def _header(path: Path) -> _Header:
    try:
        ds = dcmread(path, stop_before_pixels=True)
        return _Header(path, str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                       str(ds.file_meta.TransferSyntaxUID))
    except Exception as exc:
        raise InputError(f"{path}: not a readable DICOM file ({exc})") from exc


def _split_oversized(headers: list[_Header], dest: Destination, tmp: Path) -> list[_Header]:
    """Re-split instances larger than the destination's cap (copy path, key frames)."""
    if not dest.max_object_bytes:
        return headers
    out: list[_Header] = []
    for h in headers:
        if h.path.stat().st_size <= dest.max_object_bytes:
            out.append(h)
            continue
        alt = reconvert(h.path, tmp / f"split-{h.sop_instance_uid}",
                        Request(max_item_bytes=max(dest.max_object_bytes - (1 << 20), 1 << 20)))
        out.extend(_header(p) for p in alt.paths)
    return out


def _deliver_dimse(headers: list[_Header], dest: Destination, tmp: Path) -> list[Receipt]:
    contexts = sorted({(h.sop_class_uid, ts) for h in headers
                       for ts in _offer(h.transfer_syntax_uid, dest)})
    accepted = dimse.accepted_contexts(dest, contexts)
    receipts: list[Receipt] = []
    pending: list[tuple[_Header, DeliveryChoice, Alternative | None, _Header,
                        dimse.PendingStore]] = []
    for h in headers:
        takes = frozenset(ts for sop, ts in accepted if sop == h.sop_class_uid)
        choice, why = choose_delivery(h.transfer_syntax_uid, takes, dest.lossy_fallback)
        if choice is None:
            receipts.append(Receipt(h.path, None, h.sop_instance_uid, None, "refused", False,
                                    why))
            continue
        alt = _prepare(h, choice, tmp)
        for path in alt.paths if alt else (h.path,):
            sent = _header(path)
            pending.append((h, choice, alt, sent, dimse.PendingStore(
                path, sent.sop_class_uid, sent.transfer_syntax_uid)))
    if pending:
        try:
            dimse.store(dest, [p for *_, p in pending])
        except DeliveryError as exc:
            for *_, item in pending:
                if item.status is None:
                    item.message = str(exc)
        for h, choice, alt, sent, item in pending:
            ok = item.status in (0x0000, 0xB000, 0xB006, 0xB007)
            note = choice.reason + (f"; {alt.note}" if alt else "")
            receipts.append(Receipt(h.path, item.path, sent.sop_instance_uid,
                                    item.transfer_syntax_uid, choice.kind.value, ok,
                                    f"{item.message}; {note}", item.attempts))
    return receipts


def _offer(file_syntax: str, dest: Destination) -> list[str]:
    offered = proposed_syntaxes(file_syntax, dest.lossy_fallback)
    if dest.accepted_syntaxes is not None:
        offered = [ts for ts in offered if ts in dest.accepted_syntaxes]
    return offered


def _prepare(h: _Header, choice: DeliveryChoice, tmp: Path) -> Alternative | None:
    folder = tmp / h.sop_instance_uid / choice.transfer_syntax_uid
    folder.mkdir(parents=True, exist_ok=True)
    if choice.kind is DeliveryKind.AS_IS:
        return None
    if choice.kind is DeliveryKind.TWIN:
        done = twin(h.path, choice.transfer_syntax_uid, folder / h.path.name)
        if done is not None:
            return done
        return reconvert(h.path, folder, Request())
    if choice.kind is DeliveryKind.TRANSCODE:
        alt = reconvert(h.path, folder, transcode_request(choice.transfer_syntax_uid))
    else:
        alt = reconvert(h.path, folder, Request(frames=choice.frames))
    produced = {_header(p).transfer_syntax_uid for p in alt.paths}
    if produced != {choice.transfer_syntax_uid}:
        raise DeliveryError(f"{h.path.name}: re-encoding produced {', '.join(sorted(produced))}"
                            f", not the {choice.transfer_syntax_uid} the peer accepts")
    return alt


