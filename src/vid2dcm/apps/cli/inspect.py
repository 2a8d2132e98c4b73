"""Commands that look without changing anything (probe, info, validate) and extract, which
streams the embedded video back out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from vid2dcm.apps.cli.codes import Reported
from vid2dcm.apps.cli.options import (
    Container,
    FrameRate,
    Json,
    MaxSize,
    NoAudio,
    Quiet,
    Sop,
    StreamOpt,
    Transcode,
    Verbose,
    build_request,
    frame_rate,
)
from vid2dcm.apps.cli.output import emit, line, styled
from vid2dcm.apps.report import info_report, probe_report, validate_report
from vid2dcm.core.iods import SopChoice
from vid2dcm.planning.plan import TranscodePolicy, plan_conversion

DicomFile = Annotated[Path, typer.Argument(help="DICOM video file.", metavar="FILE")]


def probe(
    input: Annotated[Path, typer.Argument(help="Video file to inspect.", metavar="INPUT")],
    as_json: Json = False,
    sop: Sop = SopChoice.PHOTOGRAPHIC,
    container: Container = None,
    no_audio: NoAudio = False,
    transcode: Transcode = TranscodePolicy.AUTO,
    max_size: MaxSize = None,
    stream_index: StreamOpt = None,
    rate: FrameRate = None,
    quiet: Quiet = False,
    verbose: Verbose = False,
) -> None:
    """Media facts and the plan: copy or transcode, which transfer syntax and IOD, and why."""
    request = build_request(sop=sop, container=container, no_audio=no_audio,
                            transcode=transcode, max_size=max_size, stream=stream_index,
                            frame_rate=frame_rate(rate))
    from vid2dcm.probing.probe import probe as probe_media

    info = probe_media(input, request.stream, request.frame_rate)
    plan = plan_conversion(info, request)
    if as_json:
        emit(probe_report(info, plan))
        return
    v = info.video
    styled(f"[bold]{input}[/]  {info.container}, {info.size_bytes} bytes, "
           f"{info.duration_s:.3f} s")
    line(f"  video #{v.index}: {v.codec} {v.profile or ''} level {v.level}, "
         f"{v.width}x{v.height} {v.pix_fmt} ({v.chroma}, {v.bit_depth}-bit), "
         f"{'interlaced' if v.interlaced else 'progressive'}, "
         f"{float(v.timing.rate):.3f} fps{' (variable)' if v.timing.variable else ''}, "
         f"{v.timing.frame_count} frames ({v.timing.count_source})")
    for stream in info.audio:
        line(f"  audio #{stream.index}: {stream.codec} {stream.sample_rate} Hz, "
             f"{stream.channels} ch")
    action = plan.action.value
    if not plan.storable:
        action += " (forbidden by --transcode never: conversion stops with exit code 4)"
    styled(f"[bold]plan[/]: {action}")
    for d in plan.decisions:
        line(f"  {d.topic}: {d.choice} ({d.reason})")
    for a in plan.audio:
        line(f"  audio #{a.stream_index}: {a.action} ({a.reason})")
    for w in plan.warnings:
        line(f"  warning: {w}")


def info(
    file: DicomFile,
    as_json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Technical summary of a DICOM video file (patient attributes are not shown)."""
    from vid2dcm.reading.reader import open_video_object

    report = info_report(file, open_video_object(file))
    if as_json:
        emit(report)
        return
    rows = [
        ("SOP class", report.sop_class),
        ("Transfer syntax", f"{report.transfer_syntax} ({report.transfer_syntax_uid})"),
        ("Modality", report.modality),
        ("Size", f"{report.columns}x{report.rows}"),
        ("Number of Frames", report.number_of_frames),
        ("Frame Time", f"{report.frame_time_ms} ms"),
        ("Cine Rate", report.cine_rate),
        ("Effective Duration", f"{report.effective_duration_s} s"),
        ("Audio channels", report.audio_channels),
        ("Fragments", report.fragments),
        ("Bitstream bytes", report.bitstream_bytes),
        ("Instance Number", report.instance_number),
        ("Series Instance UID", report.series_instance_uid),
        ("SOP Instance UID", report.sop_instance_uid),
    ]
    for name, value in rows:
        line(f"{name:20} {value}")


def extract(
    file: DicomFile,
    output: Annotated[Path, typer.Option("--output", "-o", metavar="FILE",
                                         help="Where to write the video.")],
    overwrite: Annotated[bool, typer.Option(help="Replace an existing file.")] = False,
    verbose: Verbose = False,
) -> None:
    """Stream the embedded video back out (pad byte removed)."""
    from vid2dcm.reading.reader import extract_bitstream

    written = extract_bitstream(file, output, overwrite=overwrite)
    line(f"{output}  {written} bytes")


def validate(
    file: DicomFile,
    no_dciodvfy: Annotated[bool, typer.Option("--no-dciodvfy",
                                               help="Own checks only.")] = False,
    as_json: Json = False,
    verbose: Verbose = False,
) -> None:
    """Own checks (header vs bitstream) plus dciodvfy when installed; exit 1 on any error."""
    from vid2dcm.validation.validate import Severity
    from vid2dcm.validation.validate import validate as validate_file

    report = validate_file(file, use_dciodvfy=not no_dciodvfy)
    if as_json:
        emit(validate_report(report))
    for f in report.findings:
        style = {Severity.ERROR: "red", Severity.WARNING: "yellow"}.get(f.severity, "dim")
        styled(f"[{style}]{f.severity.value}[/] \\[{f.source}] {_escape(f.message)}")
    verdict = "valid" if report.ok else f"INVALID ({len(report.errors)} errors)"
    line(f"{file}: {verdict}; dciodvfy {report.dciodvfy}")
    if not report.ok:
        count = len(report.errors)
        raise Reported(f"{file}: {count} error{'' if count == 1 else 's'} (listed above)")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
