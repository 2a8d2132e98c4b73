"""`vid2dcm record`: live sources -> one study (one series per source) -> optional delivery.

Registered on the main Typer app with one line (app.command(name="record")(record)). Stops
cleanly on Ctrl-C, SIGTERM, --duration or the disk guard: what was recorded is always
finalised. SIGUSR1 (or a line "s" on stdin with --snapshot-key) takes a still; SIGUSR2 (or a
line "r") starts keeping after --pre-record. Errors go through the CLI's one failure path
(one line, the documented exit code, {"error": ...} under --json); patient data is never
printed.
"""

from __future__ import annotations

import re
import signal
import sys
import threading
import time
from datetime import date
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vid2dcm.apps.cli.codes import Reported
from vid2dcm.apps.cli.identity import require_patient
from vid2dcm.apps.cli.options import (
    AllowUnidentified,
    Config,
    Json,
    Quiet,
    Verbose,
    config_file,
    destination,
)
from vid2dcm.apps.cli.output import UI, emit, err, line, warn
from vid2dcm.core.errors import DeliveryError, OutputError, UsageError, Vid2DcmError
from vid2dcm.core.iods import SopChoice
from vid2dcm.core.metadata import load_metadata

if TYPE_CHECKING:
    from vid2dcm.capture.finalize import FinalizeResult
    from vid2dcm.capture.session import RecordingSession
    from vid2dcm.delivery.destinations import Destination

RAW_FOLDER = "recording"
"""Pieces and manifest while recording (vid2dcm.capture.recover.RAW_FOLDER)."""
SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([KMG]?B|[KMG])$", re.IGNORECASE)


def record(
    sources: Annotated[list[str] | None, typer.Argument(
        help="NAME=URL or URL: rtsp://, rtmp://, srt://, udp://, http(s):// (TS or .m3u8), "
             "/dev/videoN, lavfi:GRAPH; '#latency=S' sets a per-source latency.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Folder for the DICOM files (pieces go to OUT/recording).",
            metavar="FOLDER")
    ] = None,
    sop: Annotated[SopChoice, typer.Option(
        help="Video IOD to write (endoscopic for a scope: Modality ES).")
    ] = SopChoice.PHOTOGRAPHIC,
    metadata: Annotated[Path | None, typer.Option(help="JSON file of patient/study fields.",
        metavar="FILE")
                        ] = None,
    patient_name: Annotated[str | None, typer.Option(help="Family^Given",
        metavar="FAMILY^GIVEN")] = None,
    patient_id: Annotated[str | None, typer.Option(metavar="ID")] = None,
    patient_birth_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD",
        metavar="YYYY-MM-DD")] = None,
    patient_sex: Annotated[str | None, typer.Option(help="M, F or O", metavar="M|F|O")] = None,
    accession: Annotated[str | None, typer.Option(help="Accession Number.",
        metavar="NUMBER")] = None,
    worklist: Annotated[str | None, typer.Option(
        help="Fill patient and order from this worklist (needs --accession).",
            metavar="SCP")] = None,
    duration: Annotated[float | None, typer.Option(
        min=0.1, help="Stop after S seconds of recording.", metavar="SECONDS")] = None,
    max_segment: Annotated[str | None, typer.Option(
        help="Cut into instances at key frames after S seconds or a size (500M, 2G).",
            metavar="SECONDS|SIZE")
    ] = None,
    pre_record: Annotated[float, typer.Option(
        min=0, max=600, help="Keep the last S seconds before the start signal (SIGUSR2, or "
                             "'r' with --snapshot-key).", metavar="SECONDS")] = 0.0,
    snapshot_key: Annotated[bool, typer.Option(
        help="Read stdin: 's' + Enter takes a still, 'r' starts, 'q' stops.")] = False,
    read_timeout: Annotated[float, typer.Option(
        min=0.5, max=120, help="Seconds of silence before a source counts as lost.",
            metavar="SECONDS")] = 5.0,
    min_free: Annotated[str, typer.Option(
        help="Stop cleanly when the disk has less free space than this.", metavar="SIZE")] = "256M",
    send: Annotated[list[str] | None, typer.Option(
        help="Deliver the result: AE@HOST:PORT, a STOW-RS URL or a configured name.",
            metavar="DEST")] = None,
    mpps: Annotated[str | None, typer.Option(
        help="MPPS SCP (AE@HOST:PORT or name): IN PROGRESS at start, COMPLETED at stop.",
            metavar="SCP")
    ] = None,
    recover_dir: Annotated[Path | None, typer.Option(
        "--recover", help="Turn an interrupted recording folder into DICOM and exit.",
            metavar="FOLDER")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    remove_pieces: Annotated[bool, typer.Option(
        help="Delete OUT/recording once the DICOM files are written (and delivered).")
    ] = False,
    allow_unidentified: AllowUnidentified = False,
    as_json: Json = False,
    config: Config = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Record live video straight to DICOM: one study, one series per source."""
    # imported here: the other commands start without PyAV's capture machinery
    from vid2dcm.capture.recorder import RecorderSettings
    from vid2dcm.capture.recover import recover
    from vid2dcm.capture.session import RecordingSession
    from vid2dcm.capture.sources import parse_source

    config_file(config)
    dests = [destination("--send", t, config) for t in send or []]  # a typo fails now
    if recover_dir is not None:
        if sources:
            raise UsageError("--recover takes no sources")
        result = recover(recover_dir, output, overwrite=overwrite)
        _deliver_and_report(result, dests, as_json, allow_unidentified)
        if remove_pieces:
            _remove(result.folder)
        return
    if not sources:
        raise UsageError("record needs at least one source (or --recover DIR)")
    if output is None:
        raise UsageError("record needs -o OUT (a folder)")
    seconds, size = _segment(max_segment)
    settings = RecorderSettings(max_segment_s=seconds, max_segment_bytes=size,
                                pre_record_s=pre_record, read_timeout_s=read_timeout,
                                open_timeout_s=max(5.0, 2 * read_timeout),
                                min_free_bytes=_bytes(min_free, "--min-free"))
    specs = [parse_source(s, read_timeout_s=read_timeout, index=n)
             for n, s in enumerate(sources, 1)]
    base: dict[str, object] = {}
    if worklist:
        from vid2dcm.delivery.transports.worklist import the_order

        if not accession:
            raise UsageError("--worklist needs --accession to pick the order")
        base = the_order(destination("--worklist", worklist, config),
                         accession).metadata_fields()
    meta = load_metadata(metadata, base, patient_name=patient_name, patient_id=patient_id,
                         patient_birth_date=_day(patient_birth_date),
                         patient_sex=patient_sex, accession_number=accession)
    require_patient(meta, output, allowed=allow_unidentified, delivering=bool(dests))
    mpps_dest = destination("--mpps", mpps, config) if mpps else None
    clash = [p for spec in specs for p in output.glob(f"{spec.name}-*.dcm")]
    if clash and not overwrite:  # found now, not after the procedure
        raise OutputError(f"{clash[0]} already exists (use --overwrite or another -o)")
    output.mkdir(parents=True, exist_ok=True)
    session = RecordingSession(specs, output / RAW_FOLDER, meta, settings=settings,
                               sop=sop, armed=pre_record > 0)
    step = None
    if mpps_dest is not None:
        from vid2dcm.delivery.transports.mpps import start_procedure_step

        step = start_procedure_step(mpps_dest, meta, study_instance_uid=session.study_uid,
                                    modality=_modality(sop))
    reason = _run(session, duration, snapshot_key)
    session.stop(reason)
    try:
        result = session.finalize(output, overwrite=overwrite)
    except Vid2DcmError:
        if step is not None:
            _close_step(step, None, "equipment")
        if not any(session.folder.glob("*/piece-*.ts")):
            import shutil  # nothing was recorded: leave no folder behind

            shutil.rmtree(session.folder, ignore_errors=True)
        raise
    if step is not None:
        _close_step(step, result, None if reason in ("duration", "interrupted",
                                                     "stopped") else "equipment")
    if result.stop_reason and result.stop_reason.startswith("disk"):
        warn(result.stop_reason)
    _deliver_and_report(result, dests, as_json, allow_unidentified)
    if remove_pieces:
        _remove(result.folder)


def _remove(folder: Path) -> None:
    """Only a folder finalize() marked as done (manifest finalized) is removed."""
    import shutil

    from vid2dcm.capture.finalize import MANIFEST
    from vid2dcm.capture.pieces import SessionManifest

    manifest = SessionManifest.model_validate_json((folder / MANIFEST).read_text("utf-8"))
    if manifest.finalized:
        shutil.rmtree(folder)


def _run(session: RecordingSession, duration: float | None, keys: bool) -> str:
    """Block until a stop: returns why (duration, interrupted, disk guard...)."""
    stop = threading.Event()
    why: list[str] = []

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        why.append("interrupted")
        stop.set()

    def on_snapshot(_signum: int, _frame: FrameType | None) -> None:
        session.snapshot()

    def on_start(_signum: int, _frame: FrameType | None) -> None:
        session.trigger()
        started.append(time.monotonic())

    started: list[float] = []
    previous = {sig: signal.signal(sig, handler) for sig, handler in (
        (signal.SIGINT, on_stop), (signal.SIGTERM, on_stop),
        (signal.SIGUSR1, on_snapshot), (signal.SIGUSR2, on_start))}
    if keys:
        threading.Thread(target=_keys, args=(session, stop, why, started), daemon=True).start()
    try:
        session.start()
        if not session.armed:
            started.append(time.monotonic())
        _status(f"recording {len(session.recorders)} source(s); Ctrl-C stops")
        last_status = time.monotonic()
        while not stop.wait(0.2):
            reason = session.should_stop()
            if reason:
                return reason
            if duration is not None and started and time.monotonic() - started[0] >= duration:
                return "duration"
            if sys.stderr.isatty() and time.monotonic() - last_status >= 5:
                last_status = time.monotonic()
                _status(_status_line(session))
        return why[0] if why else "stopped"
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _keys(session: RecordingSession, stop: threading.Event, why: list[str],
          started: list[float]) -> None:
    for typed in sys.stdin:
        key = typed.strip().lower()
        if key in ("s", "snap", "snapshot"):
            session.snapshot()
        elif key in ("r", "start"):
            session.trigger()
            started.append(time.monotonic())
        elif key in ("q", "quit", "stop"):
            why.append("stopped")
            stop.set()
            return


def _status(text: str) -> None:
    """Progress on stderr without the "vid2dcm: " prefix: scripts (and the tests) wait for the
    line starting "recording " to know the signal handlers are in place. --quiet hides it."""
    if not UI.quiet:
        err.print(text, markup=False, highlight=False, soft_wrap=True)


def _status_line(session: RecordingSession) -> str:
    parts = []
    for s in session.state.sources:
        parts.append(f"{s.source}: {s.status} {s.duration_s:.0f} s {s.frames} frames "
                     f"{s.bytes // 2**20} MiB reconnects {s.reconnects}")
    return "; ".join(parts)


def _close_step(step: Any, result: FinalizeResult | None, discontinued: str | None) -> None:
    from vid2dcm.delivery.transports.mpps import (
        PerformedSeries,
        complete_procedure_step,
        discontinue_procedure_step,
    )

    series = []
    for s in result.sources if result else ():
        series.append(PerformedSeries(s.series_instance_uid, s.name, tuple(
            (f.sop_class_uid, f.sop_instance_uid) for f in s.files)))
        if s.stills:
            series.append(PerformedSeries(s.stills[0].series_instance_uid, f"{s.name} stills",
                                          tuple((t.sop_class_uid, t.sop_instance_uid)
                                                for t in s.stills)))
    series = [s for s in series if s.instances]
    if discontinued or not series:
        if not series:
            series = [PerformedSeries(step.sop_instance_uid, "nothing recorded", ())]
        discontinue_procedure_step(step, series, discontinued or "equipment")
    else:
        complete_procedure_step(step, series)


def _deliver_and_report(result: FinalizeResult, dests: list[Destination], as_json: bool,
                        allow_unidentified: bool) -> None:
    """Deliver to each --send destination, then print the result (one RecordReport under
    --json, lines otherwise); a failed delivery ends with exit code 6 after the report."""
    from vid2dcm.apps.cli.deliver import deliver_to
    from vid2dcm.apps.cli.identity import require_identified_files
    from vid2dcm.apps.report import record_report

    if dests:  # a recovered recording's metadata was never checked: read the files
        require_identified_files(result.files, allowed=allow_unidentified)
    delivered = [deliver_to(dest, list(result.files), keep_going=True) for dest in dests]
    if as_json:
        emit(record_report(result, delivered))
    else:
        for s in result.sources:
            for f in s.files:
                line(f"{f.path}  {f.frames} frames  {f.size_bytes} bytes  {f.action.value}")
            for t in s.stills:
                line(f"{t.path}  still")
            for skipped in s.skipped:
                warn(f"{s.name}: {skipped}")
        for e in result.sync:
            offset = f"{e.offset_s * 1000:+.1f} ms" if e.offset_s is not None else "n/a"
            line(f"sync {e.source}: {offset} ({e.method})")
    failed = [d for d in delivered if not d.ok]
    if failed:
        why = f": {failed[0].error}" if failed[0].error else " (see the lines above)"
        raise Reported(f"delivery to {failed[0].destination} failed{why}",
                       DeliveryError.exit_code)

def _segment(text: str | None) -> tuple[float | None, int | None]:
    if text is None:
        return None, None
    try:
        seconds = float(text)
    except ValueError:
        return None, _bytes(text, "--max-segment")
    if seconds < 1:
        raise UsageError("--max-segment must be at least 1 second")
    return seconds, None


def _bytes(text: str, option: str) -> int:
    m = SIZE.match(text.strip())
    if m is None:
        try:
            return int(text)
        except ValueError:
            raise UsageError(f"{option}: {text!r} is not a size (e.g. 500M, 2G)") from None
    unit = m.group(2).upper().rstrip("B")
    return int(float(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[unit])


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise UsageError(f"--patient-birth-date must be YYYY-MM-DD, not {text!r}") from None


def _modality(sop: SopChoice) -> str:
    from vid2dcm.core.iods import VIDEO_IODS

    return VIDEO_IODS[sop].modality
