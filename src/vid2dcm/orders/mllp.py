"""HL7 v2 over MLLP: a listener (orders in) and a client (results out), TLS optional.

The framing (start block 0x0B, end block 0x1C 0x0D; HL7 v2.5.1 Appendix C / IHE ITI TF-2x
Appendix C) is python-hl7's `hl7.mllp` asyncio streams; nothing here writes a frame byte. The
listener runs its event loop in a thread so that synchronous callers (the gateway, the CLI,
tests) can start and stop it; each message is handed to a plain function (text -> ACK text) in a
worker thread, so a slow SQLite write never stalls other connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import hl7
import hl7.exceptions
from hl7.mllp import open_hl7_connection, start_hl7_server

from vid2dcm.core.errors import DeliveryError, UsageError
from vid2dcm.orders.hl7_mapping import field_value

log = logging.getLogger(__name__)

MessageHandler = Callable[[str], str]
"""Message text (segments separated by CR) -> ACK text."""


def parse_address(text: str, default_port: int = 2575) -> tuple[str, int]:
    """HOST:PORT (or HOST) as in `[hl7] listen = "127.0.0.1:2575"`."""
    host, _, port = text.rpartition(":") if ":" in text else (text, "", str(default_port))
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"HL7 address {text!r}: port must be a number") from None
    if not host or not 0 <= number <= 65535:
        raise UsageError(f"HL7 address {text!r} must be HOST:PORT")
    return host.strip("[]"), number


class MllpServer:
    """An MLLP listener on (host, port); port 0 picks a free one (see `address`)."""

    def __init__(self, handler: MessageHandler, host: str = "127.0.0.1", port: int = 2575,
                 ssl_context: ssl.SSLContext | None = None, encoding: str = "utf-8") -> None:
        self.handler = handler
        self.host, self.port = host, port
        self.ssl_context = ssl_context
        self.encoding = encoding
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._writers: set[Any] = set()
        self.address: tuple[str, int] = (host, port)

    def start(self) -> MllpServer:
        self._thread = threading.Thread(target=self._run, name="vid2dcm-mllp", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._error is not None:
            raise UsageError(f"cannot listen for HL7 on {self.host}:{self.port}: "
                             f"{self._error}") from self._error
        return self

    def stop(self) -> None:
        loop, server = self._loop, self._server
        if loop is not None and server is not None:
            async def close() -> None:
                server.close()
                await server.wait_closed()
            with contextlib.suppress(TimeoutError, RuntimeError):
                asyncio.run_coroutine_threadsafe(close(), loop).result(5)
            loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> MllpServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            self._server = loop.run_until_complete(start_hl7_server(
                self._client, self.host, self.port, ssl=self.ssl_context,
                encoding=self.encoding, encoding_errors="replace"))
            sock = self._server.sockets[0].getsockname()
            self.address = (str(sock[0]), int(sock[1]))
        except OSError as exc:
            self._error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        finally:
            loop.close()

    async def _client(self, reader: Any, writer: Any) -> None:
        loop = asyncio.get_running_loop()
        self._writers.add(writer)
        try:
            while not writer.is_closing():
                try:
                    block = await reader.readblock()
                except asyncio.IncompleteReadError:
                    break
                text = _decode(block, self.encoding)
                ack = await loop.run_in_executor(None, self.handler, text)
                writer.writeblock(ack.encode(self.encoding, "replace"))
                await writer.drain()
        except (ConnectionError, ValueError, hl7.mllp.InvalidBlockError, ssl.SSLError) as exc:
            log.warning("MLLP connection dropped: %s", type(exc).__name__)
        finally:
            self._writers.discard(writer)
            writer.close()


def _decode(block: bytes, encoding: str) -> str:
    try:
        return block.decode(encoding)
    except UnicodeDecodeError:
        return block.decode("latin-1")  # HL7's default 8859/1 (MSH-18 empty)


@dataclass(frozen=True)
class Ack:
    """The peer's answer: MSA-1 code, MSA-2 control id, MSA-3 text, the whole ACK text."""

    code: str
    control_id: str
    text: str
    raw: str

    @property
    def accepted(self) -> bool:
        return self.code in ("AA", "CA")


def send_message(host: str, port: int, message: str, *, ssl_context: ssl.SSLContext | None
                 = None, server_hostname: str | None = None, timeout_s: float = 10.0,
                 encoding: str = "utf-8") -> Ack:
    """Send one message over MLLP and wait for its ACK; DeliveryError when unreachable or no
    answer in time. Blocking (runs its own short event loop)."""
    try:
        return asyncio.run(asyncio.wait_for(_send(host, port, message, ssl_context,
                                                  server_hostname, encoding), timeout_s))
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        raise DeliveryError(f"HL7 peer {host}:{port}: no acknowledgement "
                            f"({type(exc).__name__}: {exc})") from exc
    except (ValueError, hl7.mllp.InvalidBlockError, hl7.exceptions.HL7Exception) as exc:
        raise DeliveryError(f"HL7 peer {host}:{port}: the answer is not an HL7 "
                            f"acknowledgement ({type(exc).__name__})") from exc


async def _send(host: str, port: int, message: str, ssl_context: ssl.SSLContext | None,
                server_hostname: str | None, encoding: str) -> Ack:
    extra: dict[str, Any] = {}
    if ssl_context is not None:
        extra = {"ssl": ssl_context, "server_hostname": server_hostname or host}
    reader, writer = await open_hl7_connection(host, port, encoding=encoding, **extra)
    try:
        writer.writeblock(message.encode(encoding, "replace"))
        await writer.drain()
        block = await reader.readblock()
    finally:
        writer.close()
    text = _decode(block, encoding)
    parsed = hl7.parse(text.replace("\n", "\r").strip("\r"))
    return Ack(field_value(parsed, "MSA-1"), field_value(parsed, "MSA-2"),
               field_value(parsed, "MSA-3"), text)


def client_context(ca_file: str | None = None, cert_file: str | None = None,
                   key_file: str | None = None) -> ssl.SSLContext:
    """TLS for the MLLP client: verify the peer against ca_file; present a client cert if
    given (mutual TLS, as IHE ATNA asks of nodes)."""
    context = ssl.create_default_context(cafile=ca_file)
    if cert_file:
        context.load_cert_chain(cert_file, key_file)
    return context


def server_context(cert_file: str, key_file: str, client_ca_file: str | None = None
                   ) -> ssl.SSLContext:
    """TLS for the listener; with client_ca_file, clients must present a certificate."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=client_ca_file)
    context.load_cert_chain(cert_file, key_file)
    if client_ca_file:
        context.verify_mode = ssl.CERT_REQUIRED
    return context
