"""Long-running commands: serve, worker, gateway (both at once), watch, and token.

Everything a service needs is checked before it says it is up: the data folder (default below,
printed at start) must be writable, its service.toml valid, its job store readable by this
version, and the port free. Each failure is one line: exit 2 for a bad settings file, exit 7
when the service cannot start."""

from __future__ import annotations

import errno
import os
import socket
import sqlite3
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError

from vid2dcm.apps.cli.codes import Reported
from vid2dcm.apps.cli.options import (
    AllowUnidentified,
    Config,
    Quiet,
    Sop,
    Verbose,
    build_metadata,
    config_file,
    destination,
)
from vid2dcm.apps.cli.output import err, line, note
from vid2dcm.core.errors import ServiceError, UsageError
from vid2dcm.core.iods import SopChoice

if TYPE_CHECKING:
    from vid2dcm.apps.gateway.settings import ServiceSettings

DATA_ENV = "VID2DCM_DATA"


def default_data_dir() -> Path:
    """$VID2DCM_DATA, else the per-user data folder: $XDG_DATA_HOME/vid2dcm, by default
    ~/.local/share/vid2dcm. serve, worker and gateway agree on it, so the two halves of a
    gateway started without --data find each other."""
    if os.environ.get(DATA_ENV):
        return Path(os.environ[DATA_ENV])
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "vid2dcm"


DataDir = Annotated[Path | None, typer.Option(
    "--data", metavar="FOLDER",
    help="Gateway data folder (uploads, outputs, jobs; its service.toml holds the settings). "
         "Default: $VID2DCM_DATA, else ~/.local/share/vid2dcm.")]
Port = Annotated[int | None, typer.Option(min=1, max=65535, metavar="PORT",
                                          help="HTTP port (default: service.toml, else 8080).")]


# --- checks before a service starts -------------------------------------------------------------

def data_folder(data: Path | None) -> Path:
    return (data or default_data_dir()).expanduser()


def prepare_data(data: Path | None) -> Path:
    """The data folder, created if missing and proven writable (exit 7 otherwise)."""
    folder = data_folder(data)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".vid2dcm-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ServiceError(f"data folder {folder} is not writable ({reason}): fix its "
                           "permissions or pass --data FOLDER") from exc
    return folder


def settings_for(folder: Path, **overrides: object) -> ServiceSettings:
    """service.toml read now: a typo is one line naming the key (exit 2), never a traceback."""
    from vid2dcm.apps.gateway.settings import ServiceSettings, load_settings

    config = folder / "service.toml"
    try:
        return load_settings(folder, **overrides)
    except (ValidationError, UsageError) as raised:
        exc = raised if isinstance(raised, ValidationError) else raised.__cause__
        if not isinstance(exc, ValidationError):
            raise
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            import difflib

            close = difflib.get_close_matches(str(first["loc"][-1]),
                                              ServiceSettings.model_fields, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise UsageError(f"{config}: [service] {where}: unknown key{hint}") from raised
        value = first.get("input")
        shown = f" (got {value!r})" if isinstance(value, str | int | float) and \
            "sha256" not in where else ""
        where = f" {where}:" if where else ":"
        message = str(first["msg"]).removeprefix("Value error, ")
        raise UsageError(f"{config}: [service]{where} {message}{shown}") from raised
    except TypeError as exc:  # [service] is not a table
        raise UsageError(f"{config}: [service] must be a table of settings") from exc


def check_store(settings: ServiceSettings) -> None:
    """The job store must be one this version can use: a damaged SQLite file, or one made by
    a newer version (a schema revision this one does not know), is refused with the fix,
    instead of failing on the first request. A store made by an earlier version is fine: it
    is migrated when first opened (store.migrate)."""
    path = settings.database
    url = getattr(settings, "database_url", None)
    if url:
        _check_database(settings, str(url))
        return
    if not path.exists():
        return
    try:
        from vid2dcm.apps.gateway import store as store_module

        have = sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)
        try:
            tables = {r[0] for r in have.execute(
                "SELECT name FROM sqlite_master WHERE type='table'")}
            row = have.execute("SELECT version_num FROM alembic_version").fetchone() \
                if "alembic_version" in tables else None
        finally:
            have.close()
    except sqlite3.DatabaseError as exc:
        raise ServiceError(f"data folder {settings.data_dir}: {path.name} cannot be read "
                           f"({exc}): move it aside to start afresh, or see "
                           "docs/troubleshooting.md") from exc
    known: tuple[str, ...] = tuple(getattr(store_module, "REVISIONS", ("",)))
    if row is not None and row[0] not in known:
        raise ServiceError(
            f"data folder {settings.data_dir}: {path.name} was made by another vid2dcm "
            f"version (schema revision {row[0]}, newer than this one's {known[-1]}): "
            f"install that version again, or move {path.name} aside to start afresh (its "
            "job list is forgotten); see docs/troubleshooting.md")


def _check_database(settings: ServiceSettings, url: str) -> None:
    """A shared job store (database_url, or VID2DCM_DATABASE_URL) must answer now, not on
    the first job, and not be at a revision this version does not know. Its password is never
    shown."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from vid2dcm.apps.gateway import store as store_module

    shown = make_url(url).render_as_string(hide_password=True)
    try:
        revision = store_module.schema_revision(store_module.engine_for(url))
    except SQLAlchemyError as exc:
        reason = type(getattr(exc, "orig", None) or exc).__name__
        raise ServiceError(f"job store {shown} (VID2DCM_DATABASE_URL or database_url) does "
                           f"not answer ({reason}): start the database, or check the URL") \
            from exc
    if revision is not None and revision not in store_module.REVISIONS:
        raise ServiceError(
            f"job store {shown} was made by another vid2dcm version (schema revision "
            f"{revision}, newer than this one's {store_module.HEAD_REVISION}): install that "
            "version again; see docs/troubleshooting.md")


def check_queue(settings: ServiceSettings) -> None:
    """A shared queue (queue_url in service.toml, or VID2DCM_QUEUE_URL) must answer now, not
    on the first job."""
    from vid2dcm.apps.gateway.settings import QUEUE_ENV

    url = str(getattr(settings, "queue_url", None) or os.environ.get(QUEUE_ENV, ""))
    if not url.startswith("redis://"):
        return
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise ServiceError(f"queue {url} ({QUEUE_ENV} or queue_url) does not answer ({exc}): "
                           f"start Redis, or unset {QUEUE_ENV} / queue_url to use the SQLite "
                           "queue in the data folder") from exc


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def bind(host: str, port: int) -> socket.socket:
    """A bound socket, made here so that 'port in use' is found before anything is printed or
    started, and handed to uvicorn, which listens on it once the app is built (so a client
    that sees the port open finds the gateway ready, and no other program can take it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))  # uvicorn listens on it once the app is ready
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            other = free_port(host if family == socket.AF_INET else "127.0.0.1")
            raise ServiceError(f"port {port} on {host} is in use (another gateway or "
                               f"program): pass --port {other}, or make run PORT={other}"
                               ) from exc
        raise ServiceError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): choose "
                           "another --port (above 1023 without privileges) or host") from exc
    sock.set_inheritable(True)
    return sock


def _run_server(settings: ServiceSettings, sock: socket.socket,
                ssl_certfile: Path | None, ssl_keyfile: Path | None) -> None:
    import uvicorn

    from vid2dcm.apps.gateway.api import create_app

    try:
        app = create_app(settings)  # makes its own queue: make_queue(settings)
    except sqlite3.DatabaseError as exc:
        raise ServiceError(f"data folder {settings.data_dir}: job store cannot be used "
                           f"({exc}): see docs/troubleshooting.md") from exc
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                            ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)
    uvicorn.Server(config).run(sockets=[sock])


def _announce(folder: Path) -> None:
    note(f"data folder {folder} (settings: {folder / 'service.toml'})")


# --- commands -----------------------------------------------------------------------------------

def serve(
    data: DataDir = None,
    host: Annotated[str | None, typer.Option(
        metavar="ADDRESS", help="Bind address (default 127.0.0.1).")] = None,
    port: Port = None,
    ssl_certfile: Annotated[Path | None, typer.Option(metavar="FILE",
                                                      help="Serve HTTPS with this cert.")
                            ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(metavar="FILE",
                                                     help="Private key for --ssl-certfile.")
                           ] = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run the gateway's REST API (jobs run in `vid2dcm worker`)."""
    for option, path in (("--ssl-certfile", ssl_certfile), ("--ssl-keyfile", ssl_keyfile)):
        if path is not None and not path.is_file():
            raise UsageError(f"{option}: {path} does not exist, e.g. {option} /etc/vid2dcm/"
                             f"{'cert.pem' if 'cert' in option else 'key.pem'}")
    if (ssl_certfile is None) != (ssl_keyfile is None):
        raise UsageError("--ssl-certfile and --ssl-keyfile go together: pass both or neither")
    folder = data_folder(data)
    settings = settings_for(folder, tls=True if ssl_certfile else None)
    check_store(settings)
    check_queue(settings)
    bind_host, bind_port = host or settings.host, port or settings.port
    sock = bind(bind_host, bind_port)
    try:
        prepare_data(folder)
    except ServiceError:
        sock.close()
        raise
    _announce(folder)
    scheme = "https" if ssl_certfile else "http"
    note(f"serving on {scheme}://{bind_host}:{bind_port}/")
    _run_server(settings, sock, ssl_certfile, ssl_keyfile)


def worker(
    data: DataDir = None,
    workers: Annotated[int, typer.Option(
        min=1, metavar="N", help="Jobs run at the same time.")] = 1,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Run conversion jobs from the queue (SQLite in the data folder, or VID2DCM_QUEUE_URL)."""
    folder = data_folder(data)
    settings = settings_for(folder)
    check_store(settings)
    check_queue(settings)
    prepare_data(folder)
    _announce(folder)
    from vid2dcm.apps.gateway.queue import make_queue

    make_queue(settings).run_worker(workers)


SERVICE_HEADER = """\
# vid2dcm gateway settings (docs/cli.md). Add tokens with:  vid2dcm token --name WHO >> {path}
[service]
"""
SERVICE_TEMPLATE = SERVICE_HEADER + """
[[service.tokens]]
sha256 = "{digest}"
role = "admin"
name = "make run"
"""


def token_table(digest: str, role: str, name: str) -> str:
    """One token as TOML that appends to any service.toml whose tokens are tables."""
    import json

    return (f'[[service.tokens]]\nsha256 = "{digest}"\nrole = "{role}"\n'
            f"name = {json.dumps(name)}\n")


def gateway(
    data: DataDir = None,
    port: Port = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Server and worker together on embedded defaults (SQLite queue): what `make run` starts.
    A first run writes DATA/service.toml, an admin token (DATA/admin-token.txt) and an admin
    account for the page (DATA/admin-password.txt). Without --port, a taken port is replaced
    by a free one (said on stderr)."""
    import subprocess

    folder = data_folder(data)
    config = folder / "service.toml"
    fresh = not config.exists()
    settings = settings_for(folder)  # the defaults, when there is no service.toml yet
    check_store(settings)
    check_queue(settings)
    host, wanted = settings.host, port or settings.port
    try:
        sock = bind(host, wanted)
    except ServiceError:
        if port is not None:
            raise
        sock = bind(host, 0)
        note(f"port {wanted} is in use; using {sock.getsockname()[1]} instead "
             "(choose one with --port, or make run PORT=...)")
    try:
        prepare_data(folder)
    except ServiceError:
        sock.close()
        raise
    from vid2dcm.apps.gateway.bootstrap import embedded_defaults

    shown, password = embedded_defaults(folder)
    if fresh:
        tokens_as_tables(config)
    settings = settings_for(folder)
    bound = int(sock.getsockname()[1])
    _announce(folder)
    line(f"vid2dcm gateway: http://{host}:{bound}/  token: {shown}")
    line(f"sign in on the page as admin, password: {password}")
    line("Ctrl-C stops it.")
    sys.stdout.flush()
    worker_proc = subprocess.Popen([sys.executable, "-m", "vid2dcm", "worker", "--data",
                                    str(folder), "--quiet"])
    try:
        _run_server(settings, sock, None, None)
    finally:
        worker_proc.terminate()
        worker_proc.wait(timeout=30)


def tokens_as_tables(config: Path) -> None:
    """Rewrite a service.toml that holds nothing but an inline token list (what a first start
    writes) with one [[service.tokens]] table per token, so that what `vid2dcm token` prints
    can be appended to it as it is. Any other file is left as it is."""
    import tomllib

    data = tomllib.loads(config.read_text(encoding="utf-8"))
    service = data.get("service", {})
    if set(data) != {"service"} or set(service) != {"tokens"}:
        return
    text = SERVICE_HEADER.format(path=config)
    for entry in service["tokens"]:
        text += "\n" + token_table(entry["sha256"], entry.get("role", "uploader"),
                                   entry.get("name", ""))
    config.write_text(text)


class Role(StrEnum):
    UPLOADER = "uploader"
    REVIEWER = "reviewer"
    ADMIN = "admin"


def token(
    role: Annotated[Role, typer.Option(
        help="uploader (creates jobs, sees its own), reviewer (sees all, assigns held jobs) "
             "or admin.")] = Role.UPLOADER,
    name: Annotated[str, typer.Option(
        metavar="WHO", help="Who the token is for (shown in the audit log).")] = "",
) -> None:
    """Make a new API token. The token itself goes to stderr, once; stdout is exactly the TOML
    to add to service.toml (only its SHA-256 is kept), so this works:
    vid2dcm token --name alice >> DATA/service.toml"""
    import secrets

    from vid2dcm.apps.gateway.settings import hash_token

    if any(ord(c) < 32 for c in name):
        raise UsageError(f"--name: {name!r} holds control characters, e.g. --name alice")
    value = secrets.token_urlsafe(32)
    err.print(f"vid2dcm: new {role.value} token{f' for {name}' if name else ''} "
              "(shown only now; service.toml keeps its SHA-256):", markup=False,
              highlight=False)
    err.print(value, markup=False, highlight=False)
    line("")
    line(token_table(hash_token(value), role.value, name).rstrip("\n"))


def user_add(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    data: DataDir = None,
    role: Annotated[str, typer.Option(metavar="ROLE",
                                      help="uploader, reviewer or admin.")] = "uploader",
    ward: Annotated[str, typer.Option(metavar="WARD",
                                      help="An uploader also sees this ward's jobs.")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="Read the password from stdin.")] = False,
    verbose: Verbose = False,
) -> None:
    """Create or reset an account (argon2 hash in the data folder's job store)."""
    from vid2dcm.apps.gateway.auth import add_user

    folder = data_folder(data)
    settings = settings_for(folder)
    password = (sys.stdin.readline().rstrip("\n") if password_stdin
                else typer.prompt("Password", hide_input=True, confirmation_prompt=True))
    add_user(settings, name, role, password, ward)  # checks the role and the password
    line(f"user {name} ({role}) saved")


def user_disable(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Account name.")],
    data: DataDir = None,
    verbose: Verbose = False,
) -> None:
    """Disable an account; its sessions end at once."""
    from vid2dcm.apps.gateway.auth import disable_user

    disable_user(settings_for(data_folder(data)), name)
    line(f"user {name} disabled")


def watch(
    folder: Annotated[Path, typer.Argument(metavar="FOLDER",
                                           help="Folder recorders drop videos into.")],
    to: Annotated[list[str] | None, typer.Option(
        "--to", metavar="DEST",
        help="Deliver each result: AE@HOST:PORT, STOW URL or configured name.")] = None,
    sop: Sop = SopChoice.PHOTOGRAPHIC,
    metadata: Annotated[Path | None, typer.Option(metavar="FILE",
                                                  help="JSON file of patient/study fields.")
                        ] = None,
    interval: Annotated[float, typer.Option(
        min=0.1, metavar="SECONDS", help="Seconds between looks.")] = 2.0,
    settle: Annotated[float, typer.Option(
        min=0, metavar="SECONDS", help="Seconds a file must stay unchanged before it is taken.")
    ] = 5.0,
    once: Annotated[bool, typer.Option(
        "--once", help="Handle what is there, then stop (exit code of the first failure).")
    ] = False,
    allow_unidentified: AllowUnidentified = False,
    config: Config = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Convert (and deliver) every file dropped into FOLDER once it stops growing; inputs move
    to done/ or failed/ (with a .reason.txt)."""
    from vid2dcm.apps.watch import WatchEvent
    from vid2dcm.apps.watch import watch as watch_loop
    from vid2dcm.planning.plan import Request

    if not folder.is_dir():
        raise UsageError(f"FOLDER: {folder} is not a folder, e.g. vid2dcm watch /srv/drop")
    config_file(config)
    dests = [destination("--to", t, config) for t in to or []]
    meta = build_metadata(metadata)
    from vid2dcm.apps.cli.identity import require_patient

    require_patient(meta, folder, allowed=allow_unidentified, delivering=bool(dests))
    failures: list[WatchEvent] = []

    def report(event: Any) -> None:
        if event.ok:
            line(f"{event.source.name}: done ({event.message})")
        else:
            failures.append(event)
            err.print(f"{event.source.name}: FAILED ({event.message})", markup=False,
                      highlight=False, soft_wrap=True)

    watch_loop(folder, meta, Request(sop=sop), dests, interval, once, settle, report)
    if failures:
        first = failures[0]
        raise Reported(f"{len(failures)} of the files failed (first: {first.source.name}); "
                       f"the reasons are beside them in {first.source.parent}",
                       first.exit_code or 1)
