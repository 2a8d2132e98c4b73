"""Debian rsyslog as an audit record repository on loopback: UDP and TCP inputs on free
ports (or, with `tls`, one RFC 5425 TLS input through rsyslog-gnutls), every message written
raw to one file. Started and stopped by PID."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from dcmtk_peers import free_port, stop, wait_listening


@dataclass(frozen=True)
class Rsyslog:
    udp: int
    tcp: int
    log: Path

    def lines(self) -> list[str]:
        return self.log.read_text(encoding="utf-8").splitlines() if self.log.exists() else []


@contextmanager
def running_rsyslog(folder: Path, tls: tuple[Path, Path, Path] | None = None
                    ) -> Iterator[Rsyslog]:
    """tls: (CA certificate, server certificate, server key)."""
    work = folder / "work"
    work.mkdir(parents=True)
    udp, tcp = free_port(), free_port()
    log = folder / "audit.log"
    config = folder / "rsyslog.conf"
    inputs = f"""
global(workDirectory="{work}")
module(load="imudp")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="{udp}")
input(type="imtcp" address="127.0.0.1" port="{tcp}")"""
    if tls:
        inputs = f"""
global(workDirectory="{work}" DefaultNetstreamDriver="gtls"
       DefaultNetstreamDriverCAFile="{tls[0]}" DefaultNetstreamDriverCertFile="{tls[1]}"
       DefaultNetstreamDriverKeyFile="{tls[2]}")
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1"
       StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="{tcp}")"""
    config.write_text(inputs + f"""
template(name="raw" type="string"
         string="%syslogfacility-text% %syslogseverity-text% %app-name% %msgid% %msg%\\n")
action(type="omfile" file="{log}" template="raw")
""")
    proc = subprocess.Popen(["/usr/sbin/rsyslogd", "-n", "-f", str(config), "-i",
                             str(folder / "rsyslog.pid")], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_listening(tcp, proc)
        yield Rsyslog(udp, tcp, log)
    finally:
        stop(proc)
