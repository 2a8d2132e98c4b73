"""nginx terminating TLS in front of a local HTTP server, as hospitals put one before a PACS.

(Orthanc 1.10's own HTTPS server exits on the first request on Debian 12, so the test PACS speaks
HTTPS through the proxy.) Started on a free port and stopped by PID."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dcmtk_peers import free_port, stop, wait_listening

CONFIG = """
daemon off;
worker_processes 1;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 64; }}
http {{
  access_log off;
  client_body_temp_path {folder}/body;
  proxy_temp_path {folder}/proxy;
  fastcgi_temp_path {folder}/fastcgi;
  uwsgi_temp_path {folder}/uwsgi;
  scgi_temp_path {folder}/scgi;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    client_max_body_size 0;
    proxy_request_buffering off;
    location / {{
      {bearer_check}
      proxy_pass http://127.0.0.1:{upstream};
    }}
  }}
}}
"""


@contextmanager
def https_proxy(folder: Path, upstream_port: int, cert: Path, key: Path,
                bearer: str | None = None) -> Iterator[int]:
    """bearer: require this token, as an OAuth-fronted DICOMweb service would."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = folder / "nginx.conf"
    check = (f'if ($http_authorization != "Bearer {bearer}") {{ return 401; }}'
             if bearer else "")
    conf.write_text(CONFIG.format(folder=folder, port=port, cert=cert, key=key,
                                  upstream=upstream_port, bearer_check=check))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(folder)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        wait_listening(port, proc)
        yield port
    finally:
        stop(proc)
