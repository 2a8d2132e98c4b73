"""The vid2dcm command line: a thin layer over the library (probe, convert, info, extract,
validate, sample). Errors are one line with a stable exit code; -v shows the traceback."""

from __future__ import annotations

import json
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from vid2dcm.apps.report import conversion_report, probe_report, to_plain
from vid2dcm.core.errors import DeliveryError, OutputError, UsageError, Vid2DcmError
from vid2dcm.core.frame_syntaxes import FrameEncoding
from vid2dcm.core.iods import SopChoice, iod_for_sop_class
from vid2dcm.core.metadata import Metadata, load_metadata
from vid2dcm.core.syntaxes import uid_name
from vid2dcm.core.version import __version__
from vid2dcm.delivery.destinations import Destination, parse_destination
from vid2dcm.pipeline import convert as convert_video
from vid2dcm.planning.plan import ContainerChoice, Request, TranscodePolicy, plan_conversion
from vid2dcm.planning.video_target import Quality, Speed
from vid2dcm.probing.probe import probe as probe_media
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.validation.validate import Severity
from vid2dcm.validation.validate import validate as validate_file

if TYPE_CHECKING:
    from vid2dcm.delivery.receipts import Receipt

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Turn video into conformant DICOM, copying the bitstream when DICOM "
                  "accepts it.")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show tracebacks on errors.")]


def main() -> int:
    """Entry point: option errors are one line too, not Click's usage panel."""
    try:
        code = app(standalone_mode=False)
    except typer.TyperException as exc:
        err.print(f"vid2dcm: error: {exc.format_message()}", markup=False, highlight=False)
        return int(exc.exit_code)
    except typer.Abort:
        err.print("vid2dcm: error: interrupted", markup=False, highlight=False)
        return 130
    return code if isinstance(code, int) else 0


@contextmanager
def _errors(verbose: bool) -> Iterator[None]:
    """Every failure becomes one line on stderr and its documented exit code."""
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
    except Exception as exc:  # anything unforeseen: still one line, never a traceback by default
        _fail(f"internal error: {type(exc).__name__}: {exc}", 1, verbose)


def _fail(message: str, code: int, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exc()
    err.print(f"vid2dcm: error: {message}", markup=False, highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _LazyProgress:
    """A progress bar that appears only once an operation has run for a second."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.bar: Progress | None = None
        self.task: Any = None

    def __call__(self, stage: str, fraction: float | None = None) -> None:
        if self.bar is None:
            if time.monotonic() - self.started < 1.0 or not err.is_terminal:
                return
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(),
                                TimeElapsedColumn(), console=err, transient=True)
            self.bar.start()
            self.task = self.bar.add_task(stage, total=1.0)
        self.bar.update(self.task, description=stage,
                        completed=fraction if fraction is not None else 0)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command()
def probe(
    input: Annotated[Path, typer.Argument(help="Video file to inspect.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    sop: Annotated[SopChoice, typer.Option(help="Target IOD.")] = SopChoice.PHOTOGRAPHIC,
    container: Annotated[ContainerChoice | None, typer.Option(help="mp4 or ts.")] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio")] = False,
    transcode: Annotated[TranscodePolicy, typer.Option()] = TranscodePolicy.AUTO,
    max_size: Annotated[str | None, typer.Option(help="WxH box for transcoded pictures.")
                        ] = None,
    verbose: Verbose = False,
) -> None:
    """Media facts and the plan: copy or transcode, which transfer syntax and IOD, and why."""
    with _errors(verbose):
        info = probe_media(input)
        plan = plan_conversion(info, Request(sop=sop, container=container, audio=not no_audio,
                                             transcode=transcode, max_size=_box(max_size)))
        report = probe_report(info, plan)
        if as_json:
            out.print_json(json.dumps(report))
            return
        v = info.video
        out.print(f"[bold]{input}[/]  {info.container}, {info.size_bytes} bytes, "
                  f"{info.duration_s:.3f} s")
        out.print(f"  video #{v.index}: {v.codec} {v.profile or ''} level {v.level}, "
                  f"{v.width}x{v.height} {v.pix_fmt} ({v.chroma}, {v.bit_depth}-bit), "
                  f"{'interlaced' if v.interlaced else 'progressive'}, "
                  f"{float(v.timing.rate):.3f} fps{' (variable)' if v.timing.variable else ''}, "
                  f"{v.timing.frame_count} frames ({v.timing.count_source})", markup=False)
        for stream in info.audio:
            out.print(f"  audio #{stream.index}: {stream.codec} {stream.sample_rate} Hz, "
                      f"{stream.channels} ch")
        action = plan.action.value
        if not plan.storable:
            action += " (forbidden by --transcode never: conversion stops with exit code 4)"
        out.print(f"[bold]plan[/]: {action}")
        for d in plan.decisions:
            out.print(f"  {d.topic}: {d.choice} ({d.reason})", markup=False, highlight=False)
        for a in plan.audio:
            out.print(f"  audio #{a.stream_index}: {a.action} ({a.reason})", markup=False,
                      highlight=False)
        for w in plan.warnings:
            out.print(f"  [yellow]warning[/]: {w}", highlight=False)


@app.command()
def convert(
    input: Annotated[Path, typer.Argument(
        help="Video file to convert, or a folder: every video in it, several at a time.")],
    output: Annotated[Path | None, typer.Option("--output", "-o",
                      help="OUT.dcm, or a folder for one .dcm per instance.")] = None,
    jobs: Annotated[int | None, typer.Option(
        min=1, help="Parallel conversions for a folder (default: one per CPU).")] = None,
    sop: Annotated[SopChoice, typer.Option(help="Video IOD to write.")] = SopChoice.PHOTOGRAPHIC,
    metadata: Annotated[Path | None, typer.Option(help="JSON file of patient/study fields.")
                        ] = None,
    patient_name: Annotated[str | None, typer.Option(help="Family^Given")] = None,
    patient_id: Annotated[str | None, typer.Option()] = None,
    accession: Annotated[str | None, typer.Option(help="Accession Number.")] = None,
    study_uid: Annotated[str | None, typer.Option(help="Join an existing study.")] = None,
    uid_root: Annotated[str | None, typer.Option(help="Root for new UIDs (default 2.25).")
                        ] = None,
    transcode: Annotated[TranscodePolicy, typer.Option()] = TranscodePolicy.AUTO,
    container: Annotated[ContainerChoice | None, typer.Option(
        help="Container inside Pixel Data for H.264/HEVC: mp4 (default) or ts.")] = None,
    no_audio: Annotated[bool, typer.Option("--no-audio", help="Drop all audio.")] = False,
    fragmentable: Annotated[bool, typer.Option(
        help="One instance with a Fragmentable transfer syntax instead of splitting.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    quality: Annotated[Quality, typer.Option(
        help="Transcode quality: archive (CRF 16), standard (20), compact (26).")
    ] = Quality.STANDARD,
    speed: Annotated[Speed, typer.Option(
        help="Transcode speed: fast (x264 superfast), balanced (veryfast), slow (medium).")
    ] = Speed.BALANCED,
    max_size: Annotated[str | None, typer.Option(
        help="WxH box transcoded pictures must fit, e.g. 1920x1080.")] = None,
    measure_quality: Annotated[bool, typer.Option(
        help="Report PSNR/SSIM of a transcoded video against the source.")] = False,
    frames: Annotated[FrameEncoding | None, typer.Option(
        help="Store frame by frame: jpeg, jpeg-ls, j2k, rle or raw (default jpeg for "
             "--sop ultrasound and sc).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    worklist: Annotated[str | None, typer.Option(
        help="Fill patient and order from this worklist (needs --accession).")] = None,
    send: Annotated[list[str] | None, typer.Option(
        help="Deliver the result: AE@HOST:PORT, a STOW-RS URL or a configured name.")] = None,
    stow: Annotated[str | None, typer.Option(help="Deliver by STOW-RS to this URL.")] = None,
    config: Config = None,
    max_item_bytes: Annotated[int, typer.Option(hidden=True)] = 2**32 - 2,
    verbose: Verbose = False,
) -> None:
    """Write DICOM video instance(s); prints one line per file written."""
    with _errors(verbose):
        base: dict[str, object] = {}
        if worklist:
            from vid2dcm.delivery.transports.worklist import the_order

            if not accession:
                raise UsageError("--worklist needs --accession to pick the order")
            base = the_order(parse_destination(worklist, config), accession).metadata_fields()
        meta = load_metadata(metadata, base, patient_name=patient_name, patient_id=patient_id,
                             accession_number=accession, study_instance_uid=study_uid,
                             uid_root=uid_root)
        request = Request(sop=sop, transcode=transcode, container=container,
                          audio=not no_audio, fragmentable=fragmentable,
                          max_item_bytes=max_item_bytes, quality=quality, speed=speed,
                          max_size=_box(max_size), measure_quality=measure_quality,
                          frames=frames)
        if input.is_dir():
            code = _convert_folder(input, output or input, meta, request, overwrite, jobs)
            if code:
                raise typer.Exit(code)
            return
        progress = _LazyProgress()
        try:
            result = convert_video(input, output, metadata=meta, options=request,
                                   overwrite=overwrite, progress=progress)
        finally:
            progress.close()
        for w in result.warnings:
            err.print(f"vid2dcm: warning: {w}", markup=False, highlight=False)
        if as_json:
            out.print_json(json.dumps(conversion_report(result)))
            return
        if result.transcode is not None:
            t = result.transcode
            out.print(f"transcoded {t.frames_out} frames at {t.frames_per_second:.1f} fps"
                      + (f", {t.lost_frames} lost to damage" if t.lost_frames else ""),
                      markup=False, highlight=False)
        if result.quality is not None:
            q = result.quality
            out.print(f"quality: PSNR {q.psnr_db:.2f} dB, SSIM {q.ssim:.4f} ({q.sampling})",
                      markup=False, highlight=False)
        for f in result.files:
            iod = iod_for_sop_class(f.sop_class_uid)
            out.print(f"{f.path}  {iod.name if iod else f.sop_class_uid}  "
                      f"{uid_name(f.transfer_syntax_uid)}  {f.frames} frames  "
                      f"{f.columns}x{f.rows}  {f.size_bytes} bytes  {f.action.value}",
                      markup=False, highlight=False, soft_wrap=True)
        targets = [*(send or []), *([stow] if stow else [])]
        failed = False
        if targets:
            from vid2dcm.delivery.send import deliver
        for target in targets:
            dest = parse_destination(target, config)
            failed |= _report_receipts(deliver([f.path for f in result.files], dest), dest)
    if targets and failed:
        raise typer.Exit(DeliveryError.exit_code)


def _convert_folder(folder: Path, out_dir: Path, meta: Metadata, request: Request,
                    overwrite: bool, jobs: int | None) -> int:
    """One line per written file, one error line per failed input; the first failure's exit
    code (0 when all succeeded)."""
    from vid2dcm.apps.batch import convert_folder

    first_failure = 0
    for item in convert_folder(folder, out_dir, meta, request, overwrite, jobs):
        if item.result is None:
            err.print(f"vid2dcm: error: {item.source.name}: {item.error}", markup=False,
                      highlight=False, soft_wrap=True)
            first_failure = first_failure or item.exit_code
            continue
        for f in item.result.files:
            out.print(f"{f.path}  {uid_name(f.transfer_syntax_uid)}  {f.frames} frames  "
                      f"{f.size_bytes} bytes  {f.action.value}", markup=False, highlight=False,
                      soft_wrap=True)
    return first_failure


Config = Annotated[Path | None, typer.Option(
    "--config", help="TOML file with [destinations.NAME] tables.")]


@app.command()
def echo(
    destination: Annotated[str, typer.Argument(help="AE@HOST:PORT or a configured name.")],
    calling_aet: Annotated[str, typer.Option(help="Our AE title.")] = "VID2DCM",
    config: Config = None,
    verbose: Verbose = False,
) -> None:
    """C-ECHO a DICOM peer."""
    with _errors(verbose):
        from vid2dcm.delivery.transports.dimse import echo as dimse_echo

        dest = parse_destination(destination, config, calling_ae_title=calling_aet)
        result = dimse_echo(dest)
        out.print(f"{dest.describe()}: C-ECHO status 0x{result.status:04X} in "
                  f"{result.seconds * 1000:.0f} ms", markup=False, highlight=False)


@app.command(name="send")
def send_files(
    files: Annotated[list[Path], typer.Argument(help="DICOM files to deliver.")],
    to: Annotated[str, typer.Option("--to", help="AE@HOST:PORT, STOW-RS URL or name.")],
    calling_aet: Annotated[str | None, typer.Option(help="Our AE title.")] = None,
    no_lossy_fallback: Annotated[bool, typer.Option(
        "--no-lossy-fallback", help="Never send a refused video frame by frame.")] = False,
    retries: Annotated[int | None, typer.Option(min=0, max=20)] = None,
    config: Config = None,
    verbose: Verbose = False,
) -> None:
    """Deliver DICOM files, negotiating what the peer accepts and falling back if needed."""
    with _errors(verbose):
        overrides: dict[str, object] = {}
        if calling_aet:
            overrides["calling_ae_title"] = calling_aet
        if no_lossy_fallback:
            overrides["lossy_fallback"] = False
        if retries is not None:
            overrides["retries"] = retries
        from vid2dcm.delivery.send import deliver

        dest = parse_destination(to, config)
        dest = dest.model_copy(update=overrides)
        failed = _report_receipts(deliver(files, dest), dest)
    if failed:
        raise typer.Exit(DeliveryError.exit_code)


def _report_receipts(receipts: list[Receipt], dest: Destination) -> bool:
    """One line per delivered object; True when anything failed."""
    for r in receipts:
        verdict = "stored" if r.ok else "FAILED"
        if r.ok and r.committed is not None:
            verdict += ", committed" if r.committed else ", commitment REFUSED"
        syntax = f" as {uid_name(r.transfer_syntax_uid)}" if r.transfer_syntax_uid else ""
        target = err if not r.ok else out
        target.print(f"{r.source} -> {dest.describe()}: {verdict}{syntax} ({r.kind}; "
                     f"{r.message})", markup=False, highlight=False, soft_wrap=True)
    return any(not r.ok or r.committed is False for r in receipts)


@app.command(name="worklist")
def worklist_command(
    source: Annotated[str, typer.Option("--from", help="Worklist SCP: AE@HOST:PORT or name.")],
    on: Annotated[str | None, typer.Option("--date", help="today or YYYYMMDD.")] = None,
    modality: Annotated[str | None, typer.Option(help="e.g. ES, XC, GM.")] = None,
    accession: Annotated[str | None, typer.Option()] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
    config: Config = None,
    verbose: Verbose = False,
) -> None:
    """List scheduled procedures from a Modality Worklist."""
    with _errors(verbose):
        from vid2dcm.core.dates import parse_day

        day = None
        if on:
            try:
                day = parse_day(on)
            except ValueError as exc:
                raise UsageError(f"--date must be today or YYYYMMDD, not {on!r}") from exc
        from vid2dcm.delivery.transports.worklist import query as worklist_query

        entries = worklist_query(parse_destination(source, config), day, modality, accession)
        if as_json:
            out.print_json(json.dumps([to_plain(e) for e in entries]))
            return
        for e in entries:
            out.print(f"{e.accession_number:16} {e.scheduled_date} {e.scheduled_time[:4]:4} "
                      f"{e.modality:3} {e.patient_id:12} {e.patient_name:24} "
                      f"{e.requested_procedure_description}", markup=False, highlight=False)
        out.print(f"{len(entries)} entr{'y' if len(entries) == 1 else 'ies'}", markup=False)


@app.command()
def info(
    file: Annotated[Path, typer.Argument(help="DICOM video file.")],
    verbose: Verbose = False,
) -> None:
    """Technical summary of a DICOM video file (patient attributes are not shown)."""
    with _errors(verbose):
        video = open_video_object(file)
        ds = video.dataset
        iod = iod_for_sop_class(str(ds.get("SOPClassUID", "")))
        rows = [
            ("SOP class", iod.name if iod else str(ds.get("SOPClassUID"))),
            ("Transfer syntax", f"{uid_name(video.transfer_syntax_uid)} "
                                f"({video.transfer_syntax_uid})"),
            ("Modality", ds.get("Modality")),
            ("Size", f"{ds.get('Columns')}x{ds.get('Rows')}"),
            ("Number of Frames", ds.get("NumberOfFrames")),
            ("Frame Time", f"{ds.get('FrameTime')} ms"),
            ("Cine Rate", ds.get("CineRate")),
            ("Effective Duration", f"{ds.get('EffectiveDuration')} s"),
            ("Audio channels", len(ds.get("MultiplexedAudioChannelsDescriptionCodeSequence", []))),
            ("Fragments", len(video.layout.fragments) if video.layout else 0),
            ("Bitstream bytes", video.bitstream_length),
            ("Instance Number", ds.get("InstanceNumber")),
            ("Series Instance UID", ds.get("SeriesInstanceUID")),
            ("SOP Instance UID", ds.get("SOPInstanceUID")),
        ]
        for name, value in rows:
            out.print(f"{name:20} {value}", markup=False, highlight=False)


@app.command()
def extract(
    file: Annotated[Path, typer.Argument(help="DICOM video file.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the video.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    verbose: Verbose = False,
) -> None:
    """Stream the embedded video back out (pad byte removed)."""
    with _errors(verbose):
        written = extract_bitstream(file, output, overwrite=overwrite)
        out.print(f"{output}  {written} bytes", markup=False, highlight=False)


@app.command()
def validate(
    file: Annotated[Path, typer.Argument(help="DICOM video file.")],
    no_dciodvfy: Annotated[bool, typer.Option("--no-dciodvfy")] = False,
    verbose: Verbose = False,
) -> None:
    """Own checks (header vs bitstream) plus dciodvfy when installed; exit 1 on any error."""
    with _errors(verbose):
        report = validate_file(file, use_dciodvfy=not no_dciodvfy)
        for f in report.findings:
            style = {Severity.ERROR: "red", Severity.WARNING: "yellow"}.get(f.severity, "dim")
            out.print(f"[{style}]{f.severity.value}[/] [{f.source}] {f.message}",
                      highlight=False)
        verdict = "valid" if report.ok else f"INVALID ({len(report.errors)} errors)"
        out.print(f"{file}: {verdict}; dciodvfy {report.dciodvfy}", markup=False,
                  highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def sample(
    output: Annotated[Path, typer.Argument(help="Where to write the clip (.mp4, .ts, .mkv...).")],
    seconds: Annotated[float, typer.Option(min=0.1, max=600)] = 4.0,
    verbose: Verbose = False,
) -> None:
    """Synthesise a short H.264 High + AAC clip, e.g. to try a PACS."""
    from fractions import Fraction

    from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

    with _errors(verbose):
        frames = max(1, round(seconds * 25))
        synthesize(output, ClipSpec(width=640, height=360, rate=Fraction(25), frames=frames,
                                    audio=AudioSpec(),
                                    options={"preset": "superfast", "profile": "high"}))
        out.print(f"{output}  {frames} frames", markup=False, highlight=False)


def _box(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) >= 16 for p in parts):
        raise UsageError(f"--max-size must look like 1920x1080, not {text!r}")
    return int(parts[0]), int(parts[1])


@app.command(name="watch")
def watch_folder(
    folder: Annotated[Path, typer.Argument(help="Folder recorders drop videos into.")],
    to: Annotated[list[str] | None, typer.Option(
        "--to", help="Deliver each result: AE@HOST:PORT, STOW URL or configured name.")] = None,
    sop: Annotated[SopChoice, typer.Option(help="Video IOD to write.")] = SopChoice.PHOTOGRAPHIC,
    metadata: Annotated[Path | None, typer.Option(help="JSON file of patient/study fields.")
                        ] = None,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 2.0,
    settle: Annotated[float, typer.Option(
        min=0, help="Seconds a file must stay unchanged before it is taken.")] = 5.0,
    once: Annotated[bool, typer.Option(help="Handle what is there, then stop.")] = False,
    config: Config = None,
    verbose: Verbose = False,
) -> None:
    """Convert (and deliver) every file dropped into FOLDER once it stops growing; inputs move
    to done/ or failed/ (with a .reason.txt)."""
    from vid2dcm.apps.watch import watch

    with _errors(verbose):
        if not folder.is_dir():
            raise UsageError(f"{folder} is not a folder")
        dests = [parse_destination(t, config) for t in to or []]

        def report(event: Any) -> None:
            target = out if event.ok else err
            target.print(f"{event.source.name}: {'done' if event.ok else 'FAILED'} "
                         f"({event.message})", markup=False, highlight=False, soft_wrap=True)

        watch(folder, load_metadata(metadata), Request(sop=sop), dests, interval, once, settle,
              report)


DataDir = Annotated[Path, typer.Option("--data", help="Gateway data folder (uploads, outputs, "
                                       "jobs); its service.toml holds the settings.")]


@app.command()
def serve(
    data: DataDir,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8080).")] = None,
    ssl_certfile: Annotated[Path | None, typer.Option(help="Serve HTTPS with this cert.")
                            ] = None,
    ssl_keyfile: Annotated[Path | None, typer.Option(help="Private key for --ssl-certfile.")
                           ] = None,
    verbose: Verbose = False,
) -> None:
    """Run the gateway's REST API (jobs run in `vid2dcm worker`)."""
    with _errors(verbose):
        import uvicorn

        from vid2dcm.apps.gateway.api import create_app
        from vid2dcm.apps.gateway.settings import load_settings

        settings = load_settings(data, tls=True if ssl_certfile else None)
        uvicorn.run(create_app(settings), host=host or settings.host,
                    port=port or settings.port, log_level="warning", access_log=False,
                    ssl_certfile=str(ssl_certfile) if ssl_certfile else None,
                    ssl_keyfile=str(ssl_keyfile) if ssl_keyfile else None)


@app.command()
def worker(
    data: DataDir,
    workers: Annotated[int, typer.Option(min=1, help="Jobs run at the same time.")] = 1,
    verbose: Verbose = False,
) -> None:
    """Run conversion jobs from the queue (SQLite in the data folder, or VID2DCM_QUEUE_URL)."""
    with _errors(verbose):
        from vid2dcm.apps.gateway.queue import make_queue
        from vid2dcm.apps.gateway.settings import load_settings

        make_queue(load_settings(data)).run_worker(workers)


@app.command()
def gateway(
    data: Annotated[Path, typer.Option("--data", help="Data folder (created if missing).")
                    ] = Path("data"),
    port: Annotated[int | None, typer.Option(help="HTTP port (default 8080).")] = None,
    verbose: Verbose = False,
) -> None:
    """Server and worker together on embedded defaults (SQLite queue): what `make run` starts.
    A first run writes data/service.toml, an admin token (data/admin-token.txt) and an admin
    account for the page (data/admin-password.txt)."""
    import subprocess

    with _errors(verbose):
        from vid2dcm.apps.gateway.bootstrap import embedded_defaults
        from vid2dcm.apps.gateway.settings import load_settings

        shown, password = embedded_defaults(data)
        settings = load_settings(data)
        bind_port = port or settings.port
        out.print(f"vid2dcm gateway: http://{settings.host}:{bind_port}/  token: {shown}",
                  markup=False, highlight=False)
        out.print(f"sign in on the page as admin, password: {password}", markup=False,
                  highlight=False)
        out.print("Ctrl-C stops it.", markup=False)
        worker_proc = subprocess.Popen([sys.executable, "-m", "vid2dcm", "worker", "--data",
                                        str(data)])
        try:
            serve(data, None, bind_port, None, None, verbose)
        finally:
            worker_proc.terminate()
            worker_proc.wait(timeout=30)


@app.command()
def token(
    role: Annotated[str, typer.Option(help="uploader, reviewer or admin")] = "uploader",
    name: Annotated[str, typer.Option(help="Who the token is for.")] = "",
) -> None:
    """Make a new API token; prints it once, and the line to add to service.toml."""
    import secrets

    from vid2dcm.apps.gateway.settings import hash_token

    if role not in ("uploader", "reviewer", "admin"):
        raise typer.Exit(2)
    value = secrets.token_urlsafe(32)
    out.print(f"token: {value}", markup=False)
    out.print(f'tokens = [{{ sha256 = "{hash_token(value)}", role = "{role}", name = "{name}" }}]',
              markup=False, highlight=False)


users = typer.Typer(help="Gateway accounts (people who sign in on the staff page).")
app.add_typer(users, name="user")


@users.command("add")
def user_add(
    name: str,
    data: DataDir,
    role: Annotated[str, typer.Option(help="uploader, reviewer or admin")] = "uploader",
    ward: Annotated[str, typer.Option(help="An uploader also sees this ward's jobs.")] = "",
    password_stdin: Annotated[bool, typer.Option("--password-stdin",
                                                 help="Read the password from stdin.")] = False,
) -> None:
    """Create or reset an account (argon2 hash in the data folder's job store)."""
    with _errors(False):
        from vid2dcm.apps.gateway.auth import add_user
        from vid2dcm.apps.gateway.settings import load_settings

        password = (sys.stdin.readline().rstrip("\n") if password_stdin
                    else typer.prompt("Password", hide_input=True, confirmation_prompt=True))
        add_user(load_settings(data), name, role, password, ward)
        out.print(f"user {name} ({role}) saved", markup=False)


@users.command("disable")
def user_disable(name: str, data: DataDir) -> None:
    """Disable an account; its sessions end at once."""
    with _errors(False):
        from vid2dcm.apps.gateway.auth import disable_user
        from vid2dcm.apps.gateway.settings import load_settings

        disable_user(load_settings(data), name)
        out.print(f"user {name} disabled", markup=False)


def _version(value: bool) -> None:
    if value:
        out.print(f"vid2dcm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True)] = False,
) -> None:
    pass


if __name__ == "__main__":
    sys.exit(main())

