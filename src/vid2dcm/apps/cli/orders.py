"""CLI commands for orders in and results out: `hl7-listen`, `orders`, `oru`, `fhir-poll`,
`route` and `kos`. Plain Typer functions, listed in COMMANDS in apps/cli/main.py;
`register(app)` adds them (wrapped in the one failure path) to another Typer app. Errors go
through that path (apps/cli/failure.py: one line, the documented exit code, {"error": ...}
under --json); patient data is shown only where the user asked for a listing.
"""

from __future__ import annotations

import json
import sys
import threading
from datetime import date
from pathlib import Path
from typing import Annotated, Literal

import typer

from vid2dcm.core.errors import InputError, UsageError

DataDir = Annotated[Path, typer.Option("--data",
    metavar="DIR", help="The gateway's data folder (its orders: orders.sqlite, or its "
    "shared database).")]
Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]
ORDERS_FILE = "orders.sqlite"


def _store(data: Path):  # type: ignore[no-untyped-def]
    """The gateway's order store of this data folder (sealed with its key), so the listener
    and the listing see what the gateway sees."""
    from vid2dcm.apps.gateway.integration import order_store
    from vid2dcm.apps.gateway.settings import load_settings

    return order_store(load_settings(data))


def hl7_listen(
    data: DataDir,
    listen: Annotated[str, typer.Option(help="HOST:PORT to accept HL7 v2 over MLLP on.",
        metavar="HOST:PORT")]
    = "127.0.0.1:2575",
    tls_cert: Annotated[Path | None, typer.Option(help="Server certificate (PEM): TLS on.",
        metavar="FILE")]
    = None,
    tls_key: Annotated[Path | None, typer.Option(help="Server key (PEM).", metavar="FILE")] = None,
    tls_client_ca: Annotated[Path | None, typer.Option(
        help="Require client certificates signed by this CA (mutual TLS).", metavar="FILE")] = None,
    application: Annotated[str, typer.Option(help="Our MSH-3 sending application in ACKs.",
        metavar="NAME")]
    = "VID2DCM",
    verbose: Verbose = False,
) -> None:
    """Accept ORM^O01 / OMI^O23 orders and ADT^A08 / ADT^A40 updates until interrupted."""
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
    on: Annotated[str | None, typer.Option("--date", help="today or YYYYMMDD.",
        metavar="DAY")] = None,
    modality: Annotated[str | None, typer.Option(metavar="CODE")] = None,
    accession: Annotated[str | None, typer.Option(metavar="NUMBER")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    verbose: Verbose = False,
) -> None:
    """List the open orders of a day (like a worklist query), or one order by accession."""
    from vid2dcm.core.dates import parse_day

    try:  # every option before the store is opened (or made)
        day = parse_day(on) if on else date.today()
    except ValueError as exc:
        raise UsageError(f"--date must be today or YYYYMMDD, not {on!r}") from exc
    store = _store(data)
    if accession:
        found = store.find_by_accession(accession)
        if found is None:
            raise UsageError(f"no order with accession {accession}")
        listing = [found]
    else:
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
    to: Annotated[str, typer.Option("--to", help="HIS MLLP address HOST:PORT.",
        metavar="HOST:PORT")],
    accession: Annotated[str, typer.Option(help="The order's accession number.", metavar="NUMBER")],
    study_uid: Annotated[str, typer.Option(help="Study Instance UID that was stored.",
        metavar="UID")],
    viewer_url: Annotated[str, typer.Option(help="Link to open the study in a viewer.",
        metavar="URL")] = "",
    tls_ca: Annotated[Path | None, typer.Option(help="CA of the HIS certificate: TLS on.",
        metavar="FILE")]
    = None,
    message: Annotated[str, typer.Option("--message", help="Kind of result message, as "
        "[hl7] result_message: 'ORU^R01' (default, v2.5.1), 'ORU^R01 2.3.1', 'ORM^O01', "
        "'OMI^O23'.", metavar="KIND")] = "ORU^R01",
    verbose: Verbose = False,
) -> None:
    """Tell the HIS the images are available (ORU^R01, or the --message kind, with the Study
    Instance UID)."""
    from vid2dcm.core.errors import DeliveryError
    from vid2dcm.orders.mllp import client_context, parse_address
    from vid2dcm.orders.results import RESULT_MESSAGES, StudyAvailable, send_oru

    if message not in RESULT_MESSAGES:  # before the order store is opened (or made)
        raise UsageError(f"--message must be one of {', '.join(map(repr, RESULT_MESSAGES))} "
                         f"(as [hl7] result_message), not {message!r}")
    order = _store(data).find_by_accession(accession)
    if order is None:
        raise UsageError(f"no order with accession {accession}")
    host, port = parse_address(to)
    try:
        notice = StudyAvailable(order, study_uid, viewer_url)
        ack = send_oru(notice, host, port,
                       ssl_context=client_context(str(tls_ca)) if tls_ca else None,
                       kind=message)
    except ValueError as exc:
        raise UsageError(str(exc)) from exc
    if not ack.accepted:
        raise DeliveryError(f"HIS answered {ack.code}: {ack.text}")
    print(f"HIS acknowledged the {message} ({ack.code})")


def fhir_poll(
    data: DataDir,
    server: Annotated[str, typer.Option(help="FHIR base URL.", metavar="URL")],
    version: Annotated[str, typer.Option(help="R4 or R5.", metavar="R4|R5")] = "R5",
    token: Annotated[str | None, typer.Option(help="Bearer token.",
                                              envvar="VID2DCM_FHIR_TOKEN", metavar="TOKEN")] = None,
    verbose: Verbose = False,
) -> None:
    """Fetch active ServiceRequests once and store them as orders."""
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
                                         "[destinations.NAME] tables.", metavar="FILE")],
    size: Annotated[int, typer.Option(help="Size of what is sent, in bytes.", metavar="BYTES")] = 0,
    data: Annotated[Path | None, typer.Option("--data", help="Data folder (orders).",
        metavar="DIR")] = None,
    accession: Annotated[str | None, typer.Option(help="Route for this order.",
        metavar="NUMBER")] = None,
    modality: Annotated[str, typer.Option(metavar="CODE")] = "",
    verbose: Verbose = False,
) -> None:
    """Explain where a study would be sent, rule by rule."""
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
    out: Annotated[Path, typer.Option("--out", "-o", help="KOS file to write.", metavar="FILE")],
    title: Annotated[str, typer.Option(help="of-interest, manifest, for-teaching, "
                                       "quality-issue.", metavar="TITLE")] = "of-interest",
    description: Annotated[str | None, typer.Option(metavar="TEXT")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite")] = False,
    verbose: Verbose = False,
) -> None:
    """Write a Key Object Selection document referencing the given instances."""
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
    """Add the commands to a Typer app, each in the CLI's one failure path."""
    from vid2dcm.apps.cli.failure import guarded

    app.command("hl7-listen")(guarded(hl7_listen))
    app.command("orders")(guarded(orders))
    app.command("oru")(guarded(oru))
    app.command("fhir-poll")(guarded(fhir_poll))
    app.command("route")(guarded(route_command))
    app.command("kos")(guarded(kos))
