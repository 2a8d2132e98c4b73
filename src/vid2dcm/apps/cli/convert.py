"""convert (one file or a folder, optionally delivered) and sample. Every option is checked
before the first byte is read: destinations, the --config file, the metadata file and the
overrides, the size box; only then does the (possibly long) work start."""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from vid2dcm.apps.cli.codes import Reported
from vid2dcm.apps.cli.deliver import deliver_to
from vid2dcm.apps.cli.options import (
    AllowUnidentified,
    Config,
    Container,
    FrameRate,
    Frames,
    Json,
    MaxSize,
    NoAudio,
    QualityOpt,
    Quiet,
    Sop,
    SpeedOpt,
    StreamOpt,
    Transcode,
    Verbose,
    build_metadata,
    build_request,
    config_file,
    destination,
    frame_rate,
)
from vid2dcm.apps.cli.output import UI, ProgressReport, emit, line, problem, warn
from vid2dcm.apps.report import (
    DeliveryReport,
    ErrorDetail,
    ErrorReport,
    conversion_report,
)
from vid2dcm.core.errors import DeliveryError, UsageError
from vid2dcm.core.iods import SopChoice, iod_for_sop_class
from vid2dcm.core.syntaxes import uid_name
from vid2dcm.planning.plan import TranscodePolicy
from vid2dcm.planning.video_target import Quality, Speed

if TYPE_CHECKING:
    from vid2dcm.core.metadata import Metadata
    from vid2dcm.delivery.destinations import Destination
    from vid2dcm.pipeline import ConversionResult
    from vid2dcm.planning.plan import Request


def convert(
    input: Annotated[Path, typer.Argument(
        metavar="INPUT",
        help="Video file to convert, or a folder: every video in it, several at a time.")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="PATH",
        help="OUT.dcm, or a folder for one .dcm per instance (default: beside the input).")
    ] = None,
    jobs: Annotated[int | None, typer.Option(
        min=1, metavar="N",
        help="Parallel conversions for a folder (default: one per CPU); for one file, "
             "processes that transcode a long video in chunks (default 1: a single pass).")
    ] = None,
    sop: Sop = SopChoice.PHOTOGRAPHIC,
    metadata: Annotated[Path | None, typer.Option(
        metavar="FILE", help="JSON file of patient/study fields (docs/cli.md).")] = None,
    patient_name: Annotated[str | None, typer.Option(metavar="FAMILY^GIVEN")] = None,
    patient_id: Annotated[str | None, typer.Option(metavar="ID")] = None,
    accession: Annotated[str | None, typer.Option(metavar="NUMBER",
                                                  help="Accession Number.")] = None,
    study_uid: Annotated[str | None, typer.Option(metavar="UID",
                                                  help="Join an existing study.")] = None,
    uid_root: Annotated[str | None, typer.Option(
        metavar="ROOT", help="Root for new UIDs (default 2.25).")] = None,
    transcode: Transcode = TranscodePolicy.AUTO,
    container: Container = None,
    no_audio: NoAudio = False,
    fragmentable: Annotated[bool, typer.Option(
        help="One instance with a Fragmentable transfer syntax instead of splitting.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing output files.")] = False,
    quality: QualityOpt = Quality.STANDARD,
    speed: SpeedOpt = Speed.BALANCED,
    max_size: MaxSize = None,
    stream_index: StreamOpt = None,
    rate: FrameRate = None,
    measure_quality: Annotated[bool, typer.Option(
        help="Report PSNR/SSIM of a transcoded video against the source.")] = False,
    frames: Frames = None,
    as_json: Json = False,
    worklist: Annotated[str | None, typer.Option(
        metavar="SCP", help="Fill patient and order from this worklist (needs --accession).")
    ] = None,
    send: Annotated[list[str] | None, typer.Option(
        metavar="DEST",
        help="Deliver the result: AE@HOST:PORT, a STOW-RS URL or a configured name "
             "(repeatable).")] = None,
    stow: Annotated[str | None, typer.Option(metavar="URL",
                                             help="Deliver by STOW-RS to this URL.")] = None,
    deidentify: Annotated[str | None, typer.Option(
        metavar="PROFILE",
        help="De-identify what is written (PS3.15 Annex E): basic, faces, research or "
             "header-only; -o must be a folder. Site secret from $VID2DCM_DEID_SECRET.")
    ] = None,
    allow_unidentified: AllowUnidentified = False,
    config: Config = None,
    max_item_bytes: Annotated[int, typer.Option(hidden=True)] = 2**32 - 2,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Write DICOM video instance(s); prints one line per file written."""
    # Every option first: nothing is read or written until all of them are good.
    config_file(config)
    dests = [destination("--send", t, config) for t in send or []]
    if stow:
        if not stow.startswith(("http://", "https://")):
            raise UsageError(f"--stow: {stow!r} is not an http(s) URL, e.g. "
                             "https://pacs/dicom-web")
        dests.append(destination("--stow", stow, config))
    wl_source = destination("--worklist", worklist, config) if worklist else None
    if wl_source is not None and not accession:
        raise UsageError("--worklist needs --accession to pick the order, e.g. --accession A123")
    overrides: dict[str, str | None] = {
        "patient_name": patient_name, "patient_id": patient_id,
        "accession_number": accession, "study_instance_uid": study_uid, "uid_root": uid_root}
    meta = build_metadata(metadata, None, **overrides)
    request = build_request(sop=sop, container=container, no_audio=no_audio,
                            transcode=transcode, max_size=max_size, fragmentable=fragmentable,
                            max_item_bytes=max_item_bytes, quality=quality, speed=speed,
                            measure_quality=measure_quality, frames=frames, stream=stream_index,
                            frame_rate=frame_rate(rate))
    if wl_source is not None and accession:
        from vid2dcm.delivery.transports.worklist import the_order

        meta = build_metadata(metadata, the_order(wl_source, accession).metadata_fields(),
                              **overrides)
    if deidentify is not None:
        _convert_deidentified(input, output, meta, request, deidentify, dests,
                              allow_unidentified, quiet=quiet, as_json=as_json)
        return
    from vid2dcm.apps.cli.identity import require_patient

    require_patient(meta, input, allowed=allow_unidentified, delivering=bool(dests))
    if input.is_dir():
        _convert_folder(input, output or input, meta, request, overwrite, jobs, dests)
        return
    from vid2dcm.pipeline import convert as convert_video  # the engine, only when it runs

    progress = ProgressReport(quiet=quiet)
    try:
        if jobs is not None and jobs > 1:
            request = replace(request, jobs=jobs)
        result = convert_video(input, output, metadata=meta, options=request,
                               overwrite=overwrite, progress=progress)
    finally:
        progress.close()
    for w in result.warnings:
        warn(w)
    _print_result(result)
    delivered = [deliver_to(dest, [f.path for f in result.files], keep_going=True)
                 for dest in dests]
    if as_json:
        emit(conversion_report(result, delivered))
    _raise_if_undelivered(delivered)


def _convert_deidentified(input: Path, output: Path | None, meta: Metadata, request: Request,
                          profile: str, dests: list[Destination], allow_unidentified: bool,
                          *, quiet: bool, as_json: bool) -> None:
    """convert --deidentify PROFILE: the identified instances exist only in a scratch folder
    inside the output folder (deidentify.convert.convert_deidentified); what is written and
    delivered are the de-identified files. Their Patient ID is the pseudonym, checked like
    any other before delivery."""
    import os

    from vid2dcm.apps.cli.identity import require_identified_files
    from vid2dcm.apps.report import deidentify_report
    from vid2dcm.deidentify.convert import PROFILES, convert_deidentified, profile_named
    from vid2dcm.deidentify.engine import DeidSettings
    from vid2dcm.deidentify.pseudonyms import SECRET_ENV

    if profile not in PROFILES:
        raise UsageError(f"--deidentify: {profile!r} is not a profile; choose "
                         f"{', '.join(PROFILES)}, e.g. --deidentify basic")
    if input.is_dir():
        raise UsageError("--deidentify converts one file at a time, not a folder, e.g. "
                         "vid2dcm convert clip.mp4 --deidentify basic -o out/")
    if output is None or output.suffix.lower() == ".dcm":
        raise UsageError("--deidentify needs -o FOLDER (the de-identified files and their "
                         "reports go there), e.g. -o deidentified/")
    if not input.is_file():
        from vid2dcm.core.errors import InputError

        raise InputError(f"{input}: no such file")
    settings = DeidSettings(options=profile_named(profile), secret=os.environ.get(SECRET_ENV))
    existed = output.exists()
    progress = ProgressReport(quiet=quiet)
    try:
        result, reports = convert_deidentified(input, output, metadata=meta, options=request,
                                               settings=settings, progress=progress)
    except BaseException:
        if not existed:  # leave no folder behind
            import shutil

            shutil.rmtree(output, ignore_errors=True)
        raise
    finally:
        progress.close()
    for w in result.warnings:
        warn(w)
    files = [output / r.output for r in reports]
    for path, r in zip(files, reports, strict=True):
        check = r.verification
        line(f"{path}  {r.kind}  {r.frames_out} frames  {len(r.masks)} masks  "
             f"verification {'passed' if check.passed and check.ran else 'not run'}")
        if as_json:
            emit(deidentify_report(input, path, r))
    if dests:
        require_identified_files(files, allowed=allow_unidentified)
    delivered = [deliver_to(dest, files, keep_going=True) for dest in dests]
    if as_json:
        for d in delivered:
            emit(d)
    _raise_if_undelivered(delivered)


def _print_result(result: ConversionResult) -> None:
    if result.transcode is not None:
        t = result.transcode
        line(f"transcoded {t.frames_out} frames at {t.frames_per_second:.1f} fps"
             + (f", {t.lost_frames} lost to damage" if t.lost_frames else ""))
    if result.quality is not None:
        q = result.quality
        line(f"quality: PSNR {q.psnr_db:.2f} dB, SSIM {q.ssim:.4f} ({q.sampling})")
    for f in result.files:
        iod = iod_for_sop_class(f.sop_class_uid)
        line(f"{f.path}  {iod.name if iod else f.sop_class_uid}  "
             f"{uid_name(f.transfer_syntax_uid)}  {f.frames} frames  "
             f"{f.columns}x{f.rows}  {f.size_bytes} bytes  {f.action.value}")


def _raise_if_undelivered(delivered: list[DeliveryReport]) -> None:
    failed = [d for d in delivered if not d.ok]
    if failed:
        why = f": {failed[0].error}" if failed[0].error else " (see the lines above)"
        raise Reported(f"delivery to {failed[0].destination} failed{why}"
                       + (f"; {len(failed) - 1} more destination(s) failed too"
                          if len(failed) > 1 else ""), DeliveryError.exit_code)


def _convert_folder(folder: Path, out_dir: Path, meta: Metadata, request: Request,
                    overwrite: bool, jobs: int | None, dests: list[Destination]) -> None:
    """One line per written file, one error line per failed input (one JSON object per input
    with --json); ends with the first failure's exit code."""
    from vid2dcm.apps.batch import convert_folder
    from vid2dcm.apps.cli.codes import BY_CODE

    first_failure, failures, total = 0, 0, 0
    delivered_all: list[DeliveryReport] = []
    for item in convert_folder(folder, out_dir, meta, request, overwrite, jobs):
        total += 1
        if item.result is None:
            problem(f"{item.source.name}: {item.error}")
            first_failure = first_failure or item.exit_code
            failures += 1
            if UI.json:
                kind = BY_CODE.get(item.exit_code, BY_CODE[1]).kind
                emit(ErrorReport(source=str(item.source), error=ErrorDetail(
                    code=item.exit_code, kind=kind, message=f"{item.source.name}: "
                                                            f"{item.error}")))
            continue
        for w in item.result.warnings:
            warn(f"{item.source.name}: {w}")
        for f in item.result.files:
            line(f"{f.path}  {uid_name(f.transfer_syntax_uid)}  {f.frames} frames  "
                 f"{f.size_bytes} bytes  {f.action.value}")
        delivered = [deliver_to(d, [f.path for f in item.result.files], keep_going=True)
                     for d in dests]
        delivered_all += delivered
        if UI.json:
            emit(conversion_report(item.result, delivered))
    if first_failure:
        raise Reported(f"{failures} of {total} inputs failed (see the lines above); the "
                       "first failure's exit code follows", first_failure)
    _raise_if_undelivered(delivered_all)


def sample(
    output: Annotated[Path, typer.Argument(
        metavar="OUTPUT", help="Where to write the clip (.mp4, .ts, .mkv...).")],
    seconds: Annotated[float, typer.Option(min=0.1, max=600, metavar="SECONDS",
                                                 help="Length of the clip.")] = 4.0,
    verbose: Verbose = False,
) -> None:
    """Synthesise a short H.264 High + AAC clip, e.g. to try a PACS."""
    from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize

    count = max(1, round(seconds * 25))
    synthesize(output, ClipSpec(width=640, height=360, rate=Fraction(25), frames=count,
                                audio=AudioSpec(),
                                options={"preset": "superfast", "profile": "high"}))
    line(f"{output}  {count} frames")
