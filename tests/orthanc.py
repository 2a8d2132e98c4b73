"""A real PACS for the tests: Debian's Orthanc on loopback, started and stopped by PID.

Orthanc 1.10 cannot bind to one address, so it gets unusual free ports, remote access off, and
every request goes to 127.0.0.1. Its storage lives in a temporary folder.
"""

from __future__ import annotations

import base64
import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from dcmtk_peers import free_port, stop


@dataclass(frozen=True)
class Orthanc:
    aet: str
    dicom_port: int
    http_port: int
    scheme: str = "http"
    user: tuple[str, str] | None = None
    ca_file: Path | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.http_port}"

    def _open(self, request: urllib.request.Request) -> Any:
        if self.user:
            token = base64.b64encode(":".join(self.user).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        context = ssl.create_default_context(cafile=str(self.ca_file)) if self.ca_file else None
        return urllib.request.urlopen(request, timeout=30, context=context)

    def get_json_post(self, path: str, body: str) -> Any:
        request = urllib.request.Request(self.url + path, data=body.encode(), method="POST")
        with self._open(request) as r:
            return json.loads(r.read())

    def get(self, path: str) -> Any:
        with self._open(urllib.request.Request(self.url + path)) as r:
            body = r.read()
            return json.loads(body) if r.headers.get_content_type() == "application/json" else body


DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


@contextmanager
def running_orthanc(folder: Path, user: tuple[str, str] | None = None,
                    tls: tuple[Path, Path] | None = None, **extra: Any) -> Iterator[Orthanc]:
    """Orthanc with a temporary config; extra keys are merged in (e.g. AcceptedTransferSyntaxes,
    Plugins=[DICOMWEB_PLUGIN])."""
    exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
    if not Path(exe).exists():
        pytest.fail("Orthanc is not installed: run scripts/install-system-deps")
    server = Orthanc("VID2DCMTEST", free_port(), free_port(),
                     "https" if tls else "http", user, tls[1] if tls else None)
    if user:
        extra = {"AuthenticationEnabled": True, "RegisteredUsers": {user[0]: user[1]}, **extra}
    if tls:
        extra = {"SslEnabled": True, "SslCertificate": str(tls[0]), **extra}
    config = {
        "Name": "vid2dcm-test",
        "StorageDirectory": str(folder / "storage"),
        "IndexDirectory": str(folder / "index"),
        "DicomAet": server.aet,
        "DicomPort": server.dicom_port,
        "HttpPort": server.http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": True,
        "StorageCompression": False,
        "Plugins": [],
        **extra,
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("wb")
    proc = subprocess.Popen([exe, str(folder / "orthanc.json")], stdout=log, stderr=log,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                server.get("/system")
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("Orthanc did not start: " + (folder / "orthanc.log")
                                       .read_text(errors="replace")) from exc
                time.sleep(0.2)
        yield server
    finally:
        stop(proc)
        log.close()
