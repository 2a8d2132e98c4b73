"""DCMTK peers for delivery tests: storescp (optionally with TLS), started and stopped by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class StoreSCP:
    aet: str
    port: int
    folder: Path

    def received(self) -> list[Path]:
        return sorted(p for p in self.folder.iterdir() if p.is_file())


def start_storescp(folder: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(["storescp", "-aet", "STORESCP", "+xa", "-od", str(folder),
                             *extra, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextmanager
def running_storescp(folder: Path, *extra: str) -> Iterator[StoreSCP]:
    port = free_port()
    proc = start_storescp(folder, port, *extra)
    try:
        wait_listening(port, proc)
        yield StoreSCP("STORESCP", port, folder)
    finally:
        stop(proc)


WORKLIST_DUMP = """(0008,0005) CS [ISO_IR 100]
(0008,0050) SH [{accession}]
(0008,0090) PN [Ref^Doctor]
(0010,0010) PN [{patient_name}]
(0010,0020) LO [{patient_id}]
(0010,0030) DA [19700101]
(0010,0040) CS [F]
(0020,000d) UI [{study_uid}]
(0032,1060) LO [{procedure}]
(0040,1001) SH [RP-{accession}]
(0040,0100) SQ (Sequence with undefined length #=1)
  (fffe,e000) na (Item with undefined length #=6)
    (0008,0060) CS [{modality}]
    (0040,0001) AE [{aet}]
    (0040,0002) DA [{day}]
    (0040,0003) TM [100000]
    (0040,0007) LO [{procedure} step]
    (0040,0009) SH [SPS-{accession}]
  (fffe,e00d) na (ItemDelimitationItem)
(fffe,e0dd) na (SequenceDelimitationItem)
"""


@contextmanager
def running_worklist(folder: Path, entries: list[dict[str, str]],
                     aet: str = "WORKLIST") -> Iterator[tuple[str, int]]:
    """DCMTK wlmscpfs serving one .wl file per entry (written with dump2dcm)."""
    directory = folder / aet
    directory.mkdir(parents=True)
    (directory / "lockfile").touch()
    for n, entry in enumerate(entries):
        dump = folder / f"{n}.dump"
        dump.write_text(WORKLIST_DUMP.format(aet=aet, **entry))
        subprocess.run(["dump2dcm", "+te", str(dump), str(directory / f"{n}.wl")], check=True,
                       capture_output=True)
    port = free_port()
    proc = subprocess.Popen(["wlmscpfs", "-dfp", str(folder), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_listening(port, proc)
        yield aet, port
    finally:
        stop(proc)
