"""STOW-RS: instances uploaded as multipart/related, streamed from disk.

The body length is computed up front (file sizes plus part headers), so the upload is a plain
Content-Length request that any server accepts, and no file is ever read into memory.
"""

from __future__ import annotations

import base64
import http.client
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydicom import dcmread

from vid2dcm.core.errors import DeliveryError
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.receipts import Receipt

CHUNK = 1 << 20


def stow(dest: Destination, paths: list[Path]) -> list[Receipt]:
    """Upload in batches that respect the destination's size cap; one receipt per file."""
    receipts: list[Receipt] = []
    for batch in _batches(paths, dest.max_object_bytes):
        receipts.extend(_stow_batch(dest, batch))
    return receipts


def _batches(paths: list[Path], cap: int | None) -> Iterator[list[Path]]:
    batch: list[Path] = []
    size = 0
    for path in paths:
        length = path.stat().st_size
        if batch and cap and size + length > cap:
            yield batch
            batch, size = [], 0
        batch.append(path)
        size += length
    if batch:
        yield batch


def _stow_batch(dest: Destination, paths: list[Path]) -> list[Receipt]:

    uids = {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID): p for p in paths}
    boundary = uuid.uuid4().hex
    heads = [f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() for _ in paths]
    tail = f"--{boundary}--\r\n".encode()
    length = sum(len(h) + p.stat().st_size + 2 for h, p in zip(heads, paths, strict=True))
    length += len(tail)
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
        "Content-Length": str(length),
        **_auth(dest),
    }
    last = ""
    attempts = 0
    for attempt in range(dest.retries + 1):
        attempts = attempt + 1
        if attempt:
            time.sleep(dest.retry_delay_s * 2 ** (attempt - 1))
        try:
            status, body = _post(dest, headers, _body(heads, paths, tail))
        except (OSError, http.client.HTTPException, ssl.SSLError) as exc:
            last = f"{type(exc).__name__}: {exc}"
            continue
        if status >= 500:
            last = f"HTTP {status}"
            continue
        if status in (401, 403):
            raise DeliveryError(f"STOW-RS to {dest.url} refused: HTTP {status} "
                                "(check the token or credentials)")
        stored, failed = _parse(body)
        receipts = []
        for uid, path in uids.items():
            ok = uid in stored and uid not in failed
            message = "stored" if ok else failed.get(uid, f"HTTP {status}, not in the response")
            receipts.append(Receipt(path, path, uid, None, "stow", ok, message, attempts))
        return receipts
    raise DeliveryError(f"STOW-RS to {dest.url} failed after {attempts} attempt(s): {last}")


def _body(heads: list[bytes], paths: list[Path], tail: bytes) -> Iterator[bytes]:
    for head, path in zip(heads, paths, strict=True):
        yield head
        with path.open("rb") as f:
            while chunk := f.read(CHUNK):
                yield chunk
        yield b"\r\n"
    yield tail


def _post(dest: Destination, headers: dict[str, str], body: Iterator[bytes]
          ) -> tuple[int, bytes]:
    url = urlsplit(dest.url.rstrip("/") + "/studies")
    port = url.port or (443 if url.scheme == "https" else 80)
    conn: http.client.HTTPConnection
    if url.scheme == "https":
        context = ssl.create_default_context(
            cafile=str(dest.tls.ca_file) if dest.tls else None)
        if dest.tls and dest.tls.cert_file:
            context.load_cert_chain(str(dest.tls.cert_file),
                                    str(dest.tls.key_file) if dest.tls.key_file else None)
        conn = http.client.HTTPSConnection(url.hostname or "", port, timeout=dest.timeout_s,
                                           context=context)
    else:
        conn = http.client.HTTPConnection(url.hostname or "", port, timeout=dest.timeout_s)
    try:
        conn.request("POST", url.path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def _auth(dest: Destination) -> dict[str, str]:
    if dest.bearer_token:
        return {"Authorization": f"Bearer {dest.bearer_token}"}
    if dest.username is not None:
        token = base64.b64encode(f"{dest.username}:{dest.password or ''}".encode()).decode()
        return {"Authorization": f"Basic {token}"}
    return {}


def _parse(body: bytes) -> tuple[set[str], dict[str, str]]:
    """Referenced (stored) and failed SOP Instance UIDs of a STOW-RS response."""
    try:
        data: Any = json.loads(body) if body else {}
    except ValueError:
        return set(), {}
    if isinstance(data, list):
        data = data[0] if data else {}
    stored = {_value(item, "00081155") for item in _items(data, "00081199")}
    failed = {_value(item, "00081155"): f"failed (reason {_value(item, '00081197')})"
              for item in _items(data, "00081198")}
    return stored, failed


def _items(data: Any, tag: str) -> list[Any]:
    return list((data.get(tag) or {}).get("Value") or []) if isinstance(data, dict) else []


def _value(item: Any, tag: str) -> str:
    values = (item.get(tag) or {}).get("Value") or [""]
    return str(values[0])
