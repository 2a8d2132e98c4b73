"""Commands that talk to DICOM peers: echo, send, worklist; and the delivery step convert
reuses (one line per receipt, a DeliveryReport for --json)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vid2dcm.apps.cli.codes import Reported
from vid2dcm.apps.cli.options import (
    AllowUnidentified,
    CallingAet,
    Config,
    Json,
    Quiet,
    Verbose,
    check_ae_title,
    config_file,
    destination,
)
from vid2dcm.apps.cli.output import emit, err, line
from vid2dcm.apps.report import DeliveryReport, EchoReport, delivery_report, worklist_report
from vid2dcm.core.errors import DeliveryError, UsageError
from vid2dcm.core.syntaxes import uid_name
from vid2dcm.delivery.destinations import Destination


def deliver_to(dest: Destination, files: list[Path], *, keep_going: bool = False
               ) -> DeliveryReport:
    """Send files to one destination; a line per receipt (failures on stderr). keep_going:
    a destination that cannot be reached at all becomes a failed report (convert still
    reports what it wrote) instead of ending the command."""
    from vid2dcm.delivery.send import deliver

    try:
        receipts = deliver(files, dest)
    except DeliveryError as exc:
        if not keep_going:
            raise
        return DeliveryReport(destination=dest.describe(), ok=False, receipts=[],
                              error=str(exc))
    for r in receipts:
        verdict = "stored" if r.ok else "FAILED"
        if r.ok and r.committed is not None:
            verdict += ", committed" if r.committed else ", commitment REFUSED"
        syntax = f" as {uid_name(r.transfer_syntax_uid)}" if r.transfer_syntax_uid else ""
        text = f"{r.source} -> {dest.describe()}: {verdict}{syntax} ({r.kind}; {r.message})"
        if r.ok and r.committed is not False:
            line(text)
        else:
            err.print(text, markup=False, highlight=False, soft_wrap=True)
    return delivery_report(dest.describe(), receipts)


def echo(
    destination_: Annotated[str, typer.Argument(metavar="DEST",
                                                help="AE@HOST:PORT or a configured name.")],
    calling_aet: CallingAet = None,
    as_json: Json = False,
    config: Config = None,
    verbose: Verbose = False,
) -> None:
    """C-ECHO a DICOM peer."""
    from vid2dcm.delivery.transports.dimse import echo as dimse_echo

    config_file(config)
    overrides = {"calling_ae_title": check_ae_title("--calling-aet", calling_aet)} \
        if calling_aet is not None else {}
    dest = destination("DEST", destination_, config, **overrides)
    if dest.kind != "dimse":
        raise UsageError(f"DEST: {destination_!r} is a STOW-RS URL; C-ECHO needs "
                         "AE@HOST:PORT, e.g. PACS@10.0.0.5:104")
    result = dimse_echo(dest)
    if as_json:
        emit(EchoReport(destination=dest.describe(), status=result.status,
                        milliseconds=round(result.seconds * 1000, 1)))
        return
    line(f"{dest.describe()}: C-ECHO status 0x{result.status:04X} in "
         f"{result.seconds * 1000:.0f} ms")


def send(
    files: Annotated[list[Path], typer.Argument(metavar="FILE...",
                                                help="DICOM files to deliver.")],
    to: Annotated[str, typer.Option("--to", metavar="DEST",
                                    help="AE@HOST:PORT, STOW-RS URL or configured name.")],
    calling_aet: CallingAet = None,
    no_lossy_fallback: Annotated[bool, typer.Option(
        "--no-lossy-fallback", help="Never send a refused video frame by frame.")] = False,
    retries: Annotated[int | None, typer.Option(
        min=0, max=20, metavar="N", help="Association retries (default 3).")] = None,
    allow_unidentified: AllowUnidentified = False,
    as_json: Json = False,
    config: Config = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Deliver DICOM files, negotiating what the peer accepts and falling back if needed."""
    config_file(config)
    overrides: dict[str, object] = {}
    if calling_aet is not None:
        overrides["calling_ae_title"] = check_ae_title("--calling-aet", calling_aet)
    if no_lossy_fallback:
        overrides["lossy_fallback"] = False
    if retries is not None:
        overrides["retries"] = retries
    dest = destination("--to", to, config, **overrides)
    missing = [f for f in files if not f.is_file()]
    if missing:
        from vid2dcm.core.errors import InputError

        raise InputError(f"{missing[0]}: no such file")
    from vid2dcm.apps.cli.identity import require_identified_files

    require_identified_files(files, allowed=allow_unidentified)
    report = deliver_to(dest, files)
    if as_json:
        emit(report)
    if not report.ok:
        bad = sum(not r.ok or r.committed is False for r in report.receipts)
        raise Reported(f"{bad} of {len(report.receipts)} files not delivered to "
                       f"{report.destination}", DeliveryError.exit_code)


def worklist(
    source: Annotated[str, typer.Option("--from", metavar="SCP",
                                        help="Worklist SCP: AE@HOST:PORT or name.")],
    on: Annotated[str | None, typer.Option("--date", metavar="DAY",
                                           help="today or YYYYMMDD.")] = None,
    modality: Annotated[str | None, typer.Option(metavar="CODE", help="e.g. ES, XC, GM.")] = None,
    accession: Annotated[str | None, typer.Option(metavar="NUMBER")] = None,
    as_json: Json = False,
    config: Config = None,
    verbose: Verbose = False,
) -> None:
    """List scheduled procedures from a Modality Worklist (--json: an array of entries)."""
    from vid2dcm.core.dates import parse_day

    config_file(config)
    day = None
    if on:
        try:
            day = parse_day(on)
        except ValueError as exc:
            raise UsageError(f"--date: {on!r} is not a day; use today or YYYYMMDD, e.g. "
                             "20240131") from exc
    scp = destination("--from", source, config)
    from vid2dcm.delivery.transports.worklist import query as worklist_query

    entries = worklist_query(scp, day, modality, accession)
    if as_json:
        emit([worklist_report(e).model_dump() for e in entries])
        return
    for e in entries:
        line(f"{e.accession_number:16} {e.scheduled_date} {e.scheduled_time[:4]:4} "
             f"{e.modality:3} {e.patient_id:12} {e.patient_name:24} "
             f"{e.requested_procedure_description}")
    line(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}")
