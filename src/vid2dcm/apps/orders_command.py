"""CLI commands for orders in and results out: `hl7-listen`, `orders`, `oru`, `fhir-poll`,
`route` and `kos`. Plain Typer functions; `register(app)` adds them to the main app (the lead
wires it in apps/cli.py). Errors are one line on stderr with the library's exit codes, as in
the rest of the CLI; patient data is shown only where the user asked for a listing.
"""

from __future__ import annotations

import json
import sys
import threading
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Annotated, Literal, NoReturn

import typer

from vid2dcm.core.errors import InputError, OutputError, UsageError, Vid2DcmError

DataDir = Annotated[Path, typer.Option("--data", help="Data folder (orders.sqlite lives here).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
ORDERS_FILE = "orders.sqlite"


@contextmanager
def _errors(verbose: bool) -> Iterator[None]:
    try:
        yield
    except typer.Exit:
        raise
    except Vid2DcmError as exc:
        _fail(str(exc), exc.exit_code, verbose)
    except KeyboardInterrupt:
        _fail("interrupted", 130, verbose)
    except OSError as exc:
        _fail(f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": "), OutputError.exit_code,
              verbose)
    except Exception as exc:
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1, verbose)


def _fail(message: str, code: int, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc()
    print(f"vid2dcm: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def _store(data: Path):  # type: ignore[no-untyped-def]
    from vid2dcm.orders.store import OrderStore

    return OrderStore(data / ORDERS_FILE)


def hl7_listen(
    data: DataDir,
    listen: Annotated[str, typer.Option(help="HOST:PORT to accept HL7 v2 over MLLP on.")]
    = "127.0.0.1:2575",
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM): TLS on.")]
    = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server key (PEM).")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="Require client certificates signed by this CA (mutual TLS).")] = None,
    application: Annotated[str, typer.Option(help="Our MSH-3 sending application in ACKs.")]
    = "VID2DCM",
    verbose: Verbose = False,
) -> None:
    """Accept ORM^O01 / OMI^O23 orders and ADT^A08 / ADT^A40 updates until interrupted."""
    with _errors(verbose):
        from vid2dcm.orders.inbox import handle
        from vid2dcm.orders.mllp import MllpServer, parse_address, server_context

        host, port = parse_address(listen)
        if (tls_cert is None) != (tls_key is None):
            raise UsageError("--tls-cert and --tls-key go together")
        context = server_context(str(tls_cert), str(tls_key),
                                 str(tls_client_ca) if tls_client_ca else None) \
            if tls_cert and tls_key else None
        store = _store(data)
        server = MllpServer(lambda text: handle(text, store, application=application)[0],
                            host, port, ssl_context=context)
        with server:
            bound = server.address
            print(f"listening for HL7 on {bound[0]}:{bound[1]}"
                  f"{' (TLS)' if context else ''}; orders in {data / ORDERS_FILE}", flush=True)
            threading.Event().wait()


def orders(
    data: DataDir,
    on: Annotated[str | None, typer.Option("--date", help="today or YYYYMMDD.")] = None,
    modality: Annotated[str | None, typer.Option()] = None,
    accession: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    verbose: Verbose = False,
) -> None:
    """List the open orders of a day (like a worklist query), or one order by accession."""
    with _errors(verbose):
        from vid2dcm.core.dates import parse_day

        store = _store(data)
        if accession:
            found = store.find_by_accession(accession)
            if found is None:
                raise UsageError(f"no order with accession {accession}")
            listing = [found]
        else:
            try:
                day = parse_day(on) if on else date.today()
            except ValueError as exc:
                raise UsageError(f"--date must be today or YYYYMMDD, not {on!r}") from exc
            listing = store.for_day(day, modality)
        if as_json:
            print(json.dumps([o.model_dump(mode="json") for o in listing], indent=2))
            return
        for o in listing:
            when = o.scheduled_start.strftime("%Y-%m-%d %H:%M") if o.scheduled_start else "-"
            print(f"{o.accession_number:16} {when:16} {o.modality:3} {o.status.value:11} "
                  f"{o.patient_id:12} {o.metadata.patient_name:24} "
                  f"{o.metadata.requested_procedure_description}")
        print(f"{len(listing)} order{'' if len(listing) == 1 else 's'}")


def oru(
    data: DataDir,
    to: Annotated[str, typer.Option("--to", help="HIS MLLP address HOST:PORT.")],
    accession: Annotated[str, typer.Option(help="The order's accession number.")],
    study_uid: Annotated[str, typer.Option(help="Study Instance UID that was stored.")],
    viewer_url: Annotated[str, typer.Option(help="Link to open the study in a viewer.")] = "",
    tls_ca: Annotated[Path | None, typer.Option(help="CA of the HIS certificate: TLS on.")]
    = None,
    verbose: Verbose = False,
) -> None:
    """Tell the HIS the images are available (ORU^R01 with the Study Instance UID)."""
    with _errors(verbose):
        from vid2dcm.core.errors import DeliveryError
        from vid2dcm.orders.mllp import client_context, parse_address
        from vid2dcm.orders.results import StudyAvailable, send_oru

        order = _store(data).find_by_accession(accession)
        if order is None:
            raise UsageError(f"no order with accession {accession}")
        host, port = parse_address(to)
        try:
            notice = StudyAvailable(order, study_uid, viewer_url)
            ack = send_oru(notice, host, port,
                           ssl_context=client_context(str(tls_ca)) if tls_ca else None)
        except ValueError as exc:
            raise UsageError(str(exc)) from exc
        if not ack.accepted:
            raise DeliveryError(f"HIS answered {ack.code}: {ack.text}")
        print(f"HIS acknowledged ({ack.code})")


def fhir_poll(
    data: DataDir,
    server: Annotated[str, typer.Option(help="FHIR base URL.")],
    version: Annotated[str, typer.Option(help="R4 or R5.")] = "R5",
    token: Annotated[str | None, typer.Option(help="Bearer token.",
                                              envvar="VID2DCM_FHIR_TOKEN")] = None,
    verbose: Verbose = False,
) -> None:
    """Fetch active ServiceRequests once and store them as orders."""
    with _errors(verbose):
        from vid2dcm.orders.fhir import FhirServer, poll_service_requests

        if version not in ("R4", "R5"):
            raise UsageError("--version must be R4 or R5")
        fhir_version: Literal["R4", "R5"] = "R4" if version == "R4" else "R5"
        result = poll_service_requests(FhirServer(server, fhir_version, token))
        _store(data).put_all(result.orders)
        for line in result.refused:
            print(f"refused {line}", file=sys.stderr)
        count = len(result.orders)
        print(f"{count} order{'' if count == 1 else 's'} stored")


def route_command(
    config: Annotated[Path, typer.Option("--config", help="Settings with [routing] and "
                                         "[destinations.NAME] tables.")],
    size: Annotated[int, typer.Option(help="Size of what is sent, in bytes.")] = 0,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder (orders).")] = None,
    accession: Annotated[str | None, typer.Option(help="Route for this order.")] = None,
    modality: Annotated[str, typer.Option()] = "",
    verbose: Verbose = False,
) -> None:
    """Explain where a study would be sent, rule by rule."""
    with _errors(verbose):
        from vid2dcm.delivery.destinations import load_destinations
        from vid2dcm.orders.routing import Facts, load_routing_file, route

        table = load_routing_file(config, load_destinations(config).keys())
        order = None
        if accession:
            if data is None:
                raise UsageError("--accession needs --data")
            order = _store(data).find_by_accession(accession)
            if order is None:
                raise UsageError(f"no order with accession {accession}")
        for line in route(table, Facts.of(order, size, modality)).explain():
            print(line)


def kos(
    files: Annotated[list[Path], typer.Argument(help="DICOM instances of one study.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="KOS file to write.")],
    title: Annotated[str, typer.Option(help="of-interest, manifest, for-teaching, "
                                       "quality-issue.")] = "of-interest",
    description: Annotated[str | None, typer.Option()] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    verbose: Verbose = False,
) -> None:
    """Write a Key Object Selection document referencing the given instances."""
    with _errors(verbose):
        from vid2dcm.delivery.kos import TITLES, build_kos

        if title not in TITLES:
            raise UsageError(f"--title must be one of {', '.join(TITLES)}")
        if out.exists() and not overwrite:
            raise UsageError(f"{out} exists (use --overwrite)")
        for f in files:
            if not f.is_file():
                raise InputError(f"{f} does not exist")
        build_kos(files, out, title=title, description=description)  # type: ignore[arg-type]
        print(f"wrote {out} ({len(files)} reference{'' if len(files) == 1 else 's'})")


def register(app: typer.Typer) -> None:
    """Add the commands to the vid2dcm Typer app."""
    app.command("hl7-listen")(hl7_listen)
    app.command("orders")(orders)
    app.command("oru")(oru)
    app.command("fhir-poll")(fhir_poll)
    app.command("route")(route_command)
    app.command("kos")(kos)
