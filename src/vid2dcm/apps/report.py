"""What the command line reports, as typed records: the --json shapes (pydantic models,
documented in docs/cli.md and checked against it by tests/apps/test_cli_json.py) and the
builders that fill them from the pipeline's records. Patient attributes never appear in any
of them."""

from __future__ import annotations

import dataclasses
import enum
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from vid2dcm.core.iods import iod_for_sop_class
from vid2dcm.core.syntaxes import uid_name
from vid2dcm.core.worklist import WorklistEntry

if TYPE_CHECKING:
    from vid2dcm.capture.finalize import FinalizeResult
    from vid2dcm.core.media_info import MediaInfo
    from vid2dcm.deidentify.report import DeidReport
    from vid2dcm.delivery.receipts import Receipt
    from vid2dcm.pipeline import ConversionResult
    from vid2dcm.planning.plan import Plan
    from vid2dcm.reading.reader import VideoObject
    from vid2dcm.validation.validate import Report


def to_plain(value: Any) -> Any:
    """dataclasses, enums, Fractions and Paths turned into JSON-ready values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}" if value.denominator != 1 else str(
            value.numerator)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(to_plain(v) for v in value)
    return value


class _Shape(BaseModel):
    """The field docstrings below document the shapes for readers of this file and docs/cli.md;
    they are not turned into schema descriptions (use_attribute_docstrings), which made
    pydantic parse this module's source on every command line start (~0.1 s, issue 17)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- errors -------------------------------------------------------------------------------------

class ErrorDetail(_Shape):
    code: int
    """The process exit code (docs/cli.md, "Exit codes")."""
    kind: str
    """Its name: usage, input, not-storable, output, delivery, service, unidentified, failed,
    interrupted."""
    message: str
    """The same line as on stderr, without the "vid2dcm: error: " prefix."""


class ErrorReport(_Shape):
    """What --json prints instead of a result when a command fails."""

    error: ErrorDetail
    source: str | None = None
    """The input it concerns, for one failed file of a folder."""


# --- delivery -----------------------------------------------------------------------------------

class ReceiptReport(_Shape):
    """What happened to one file at one destination."""

    source: str
    """The file given to send (or written by convert)."""
    sent: str | None
    """What went on the wire when it was not the file itself (twin, re-encode, frames)."""
    sop_instance_uid: str | None
    """SOP Instance UID the peer stored."""
    transfer_syntax_uid: str | None
    """Transfer syntax it was stored with."""
    transfer_syntax: str | None
    """Its name."""
    kind: str
    """How it went: as-is, twin, transcoded, frames, ... (the fallback step taken)."""
    ok: bool
    """Stored."""
    committed: bool | None
    """Storage Commitment answer (None: not asked or no answer)."""
    message: str
    """The peer's status or the reason for a failure."""
    attempts: int
    """Associations tried (retries included)."""


class DeliveryReport(_Shape):
    """Every file of one command at one destination; ok when all were stored (and committed,
    where the destination asks for Storage Commitment)."""

    destination: str
    """AE@HOST:PORT or the STOW-RS URL."""
    ok: bool
    """Every file stored (and committed where asked)."""
    receipts: list[ReceiptReport]
    """One per file."""
    error: str | None = None
    """Why nothing was delivered (peer unreachable, TLS, HTTP auth), when no receipt came."""


def receipt_report(receipt: Receipt) -> ReceiptReport:
    syntax = receipt.transfer_syntax_uid
    return ReceiptReport(
        source=str(receipt.source), sent=str(receipt.sent) if receipt.sent else None,
        sop_instance_uid=receipt.sop_instance_uid, transfer_syntax_uid=syntax,
        transfer_syntax=uid_name(syntax) if syntax else None, kind=receipt.kind, ok=receipt.ok,
        committed=receipt.committed, message=receipt.message, attempts=receipt.attempts)


def delivery_report(destination: str, receipts: list[Receipt]) -> DeliveryReport:
    return DeliveryReport(
        destination=destination, receipts=[receipt_report(r) for r in receipts],
        ok=bool(receipts) and all(r.ok and r.committed is not False for r in receipts))


class EchoReport(_Shape):
    destination: str
    """AE@HOST:PORT."""
    status: int
    """C-ECHO response status (0 = success)."""
    milliseconds: float


# --- conversion ---------------------------------------------------------------------------------

class WrittenFileReport(_Shape):
    path: str
    """The .dcm written."""
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    frames: int
    """Number of Frames."""
    rows: int
    columns: int
    size_bytes: int
    """File size."""
    bitstream_bytes: int
    """Length of the embedded video stream (or frame data)."""
    action: Literal["copy", "transcode", "frames"]
    """copy: bitstream copied bit for bit; transcode: re-encoded; frames: frame by frame."""
    study_instance_uid: str
    series_instance_uid: str


class ConvertReport(_Shape):
    """One converted input (convert --json; a folder prints one line per input)."""

    source: str
    """The input video."""
    files: list[WrittenFileReport]
    """One per instance (several when a long stream was split)."""
    study_instance_uid: str
    series_instance_uid: str
    action: str
    """copy, transcode or frames."""
    transfer_syntax: str
    """Name of the transfer syntax written."""
    transcode: dict[str, Any] | None
    """Encoder statistics (frames in/out, lost_frames, frames_per_second...) when re-encoded."""
    quality: dict[str, Any] | None
    """PSNR/SSIM against the source, with --measure-quality."""
    warnings: list[str]
    """Also printed on stderr (unless --quiet)."""
    delivery: list[DeliveryReport] = []
    """One entry per --send/--stow destination; empty when nothing was sent."""


def conversion_report(result: ConversionResult,
                      delivery: list[DeliveryReport] | None = None) -> ConvertReport:
    return ConvertReport(
        source=str(result.source.path),
        files=[WrittenFileReport.model_validate(to_plain(f)) for f in result.files],
        study_instance_uid=result.study_instance_uid,
        series_instance_uid=result.series_instance_uid,
        action=result.plan.action.value,
        transfer_syntax=uid_name(result.files[0].transfer_syntax_uid),
        transcode=None if result.transcode is None else {
            **to_plain(result.transcode),
            "lost_frames": result.transcode.lost_frames,
            "frames_per_second": round(result.transcode.frames_per_second, 2),
        },
        quality=to_plain(result.quality),
        warnings=list(result.warnings),
        delivery=delivery or [],
    )


# --- probe --------------------------------------------------------------------------------------

class PlanReport(_Shape):
    action: str
    """copy, transcode or frames."""
    iod: str
    """The IOD name, e.g. Video Endoscopic Image."""
    sop_class_uid: str
    transfer_syntax_uid: str | None
    transfer_syntax: str | None
    container: str | None
    """mp4 or ts inside Pixel Data (video syntaxes)."""
    layout: str
    """single, split or fragmentable."""
    instances: int
    """How many instances will be written."""
    audio: list[dict[str, Any]]
    video_target: dict[str, Any] | None
    """Encoder, profile, level and size when transcoding."""
    broken_rules: list[str]
    """Why the bitstream cannot be copied (empty when it can)."""
    decisions: list[dict[str, Any]]
    """Every decision with its reason: topic, choice, reason."""
    warnings: list[str]


class ProbeReport(_Shape):
    media: dict[str, Any]
    """Container, size, duration, the video stream (codec, profile, level, timing...), audio."""
    plan: PlanReport


def probe_report(info: MediaInfo, plan: Plan) -> ProbeReport:
    media = to_plain(info)
    media["video"].pop("keyframes", None)
    media["video"]["keyframe_count"] = len(info.video.keyframes)
    media["facts"] = to_plain(info.facts)  # each number with where it came from (issue 10)
    return ProbeReport(media=media, plan=PlanReport(
        action=plan.action.value,
        iod=plan.iod.name,
        sop_class_uid=plan.iod.sop_class_uid,
        transfer_syntax_uid=plan.transfer_syntax_uid,
        transfer_syntax=uid_name(plan.transfer_syntax_uid) if plan.transfer_syntax_uid
        else None,
        container=plan.container.value if plan.container else None,
        layout=plan.layout.value,
        instances=len(plan.segments),
        audio=[{**to_plain(a), "action": a.action} for a in plan.audio],
        video_target=to_plain(plan.video_target),
        broken_rules=list(plan.broken_rules),
        decisions=to_plain(plan.decisions),
        warnings=list(plan.warnings),
    ))


# --- reading ------------------------------------------------------------------------------------

class InfoReport(_Shape):
    """Technical facts of a DICOM video file; no patient attributes."""

    path: str
    """The file described."""
    sop_class: str
    sop_class_uid: str
    transfer_syntax: str
    transfer_syntax_uid: str
    modality: str | None
    columns: int | None
    rows: int | None
    number_of_frames: int | None
    """Number of Frames (0028,0008)."""
    frame_time_ms: float | None
    cine_rate: int | None
    effective_duration_s: float | None
    audio_channels: int
    fragments: int
    """Pixel Data fragments."""
    bitstream_bytes: int | None
    """Length of the embedded stream (pad byte excluded)."""
    instance_number: int | None
    series_instance_uid: str | None
    sop_instance_uid: str | None


def _number(value: Any, kind: type[int] | type[float]) -> Any:
    try:
        return None if value is None or value == "" else kind(value)
    except (TypeError, ValueError):
        return None


def info_report(path: Path, video: VideoObject) -> InfoReport:
    ds = video.dataset
    sop_class_uid = str(ds.get("SOPClassUID", ""))
    iod = iod_for_sop_class(sop_class_uid)
    return InfoReport(
        path=str(path), sop_class=iod.name if iod else sop_class_uid,
        sop_class_uid=sop_class_uid, transfer_syntax=uid_name(video.transfer_syntax_uid),
        transfer_syntax_uid=video.transfer_syntax_uid,
        modality=ds.get("Modality"), columns=_number(ds.get("Columns"), int),
        rows=_number(ds.get("Rows"), int),
        number_of_frames=_number(ds.get("NumberOfFrames"), int),
        frame_time_ms=_number(ds.get("FrameTime"), float),
        cine_rate=_number(ds.get("CineRate"), int),
        effective_duration_s=_number(ds.get("EffectiveDuration"), float),
        audio_channels=len(ds.get("MultiplexedAudioChannelsDescriptionCodeSequence", [])),
        fragments=len(video.layout.fragments) if video.layout else 0,
        bitstream_bytes=video.bitstream_length,
        instance_number=_number(ds.get("InstanceNumber"), int),
        series_instance_uid=_text(ds.get("SeriesInstanceUID")),
        sop_instance_uid=_text(ds.get("SOPInstanceUID")))


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


class FindingReport(_Shape):
    severity: Literal["error", "warning", "note"]
    """error fails the file; warning and note do not."""
    source: str
    """own (vid2dcm's header-vs-bitstream checks) or dciodvfy."""
    message: str


class ValidateReport(_Shape):
    path: str
    ok: bool
    """No finding of severity error."""
    dciodvfy: str
    """passed, failed, passed on twin, not installed or not run."""
    findings: list[FindingReport]


def validate_report(report: Report) -> ValidateReport:
    return ValidateReport(path=str(report.path), ok=report.ok, dciodvfy=report.dciodvfy,
                          findings=[FindingReport(severity=f.severity.value, source=f.source,
                                                  message=f.message) for f in report.findings])


WorklistEntryReport = WorklistEntry
"""One scheduled procedure (worklist --json prints a JSON array of these). The only output that
carries patient attributes, because choosing the patient is its purpose."""


def worklist_report(entry: WorklistEntry) -> WorklistEntryReport:
    return entry


# --- installation -------------------------------------------------------------------------------

class CheckReport(_Shape):
    name: str
    """What was checked, e.g. encoder libx264, data folder, destination pacs."""
    status: Literal["ok", "warning", "failed"]
    """warning: an optional part is missing; failed: something needed does not work."""
    detail: str
    """What was found."""
    fix: str
    """What to do about it (empty when status is ok)."""


class DoctorReport(_Shape):
    ok: bool
    """False when any check failed (warnings do not count)."""
    checks: list[CheckReport]


# --- live recording -----------------------------------------------------------------------------

class RecordedSourceReport(_Shape):
    """One source of a recording: one series."""

    name: str
    """The source's name (NAME= on the command line, else source1, source2...)."""
    series_instance_uid: str
    pieces: int
    """Recorded pieces (segments between reconnections or cuts)."""
    frames: int
    """Frames in the written instances."""
    files: list[str]
    """The .dcm video instances written."""
    stills: list[str]
    """The snapshot instances (SIGUSR1 or 's')."""
    skipped: list[str]
    """Pieces that could not be used, with the reason."""


class SyncReport(_Shape):
    """How one source lines up with the others."""

    source: str
    method: str
    """How the offset was found (e.g. wall clock, RTCP sender reports)."""
    first_frame: str | None
    """ISO time of the first frame, when known."""
    offset_s: float | None
    """Seconds from the first source (None when unknown)."""
    drift_ms_per_min: float | None


class RecordReport(_Shape):
    """One recording (record --json, also record --recover --json)."""

    study_instance_uid: str
    stop_reason: str | None
    """duration, interrupted, stopped, a lost source or the disk guard."""
    sources: list[RecordedSourceReport]
    sync: list[SyncReport]
    delivery: list[DeliveryReport] = []
    """One entry per --send destination; empty when nothing was sent."""


def record_report(result: FinalizeResult,
                  delivery: list[DeliveryReport] | None = None) -> RecordReport:
    return RecordReport(
        study_instance_uid=result.study_instance_uid, stop_reason=result.stop_reason,
        sources=[RecordedSourceReport(
            name=s.name, series_instance_uid=s.series_instance_uid, pieces=s.pieces,
            frames=s.frames, files=[str(f.path) for f in s.files],
            stills=[str(t.path) for t in s.stills], skipped=list(s.skipped))
            for s in result.sources],
        sync=[SyncReport(source=e.source, method=e.method,
                         first_frame=e.first_frame.isoformat() if e.first_frame else None,
                         offset_s=e.offset_s, drift_ms_per_min=e.drift_ms_per_min)
              for e in result.sync],
        delivery=delivery or [])


# --- de-identification --------------------------------------------------------------------------

class DeidentifyReport(_Shape):
    """One de-identified input (deidentify --json prints one per input). The full report,
    every attribute touched and every mask, is the JSON file written beside the output."""

    source: str
    """The identified input."""
    output: str
    """The de-identified file written."""
    kind: str
    """video or frames."""
    profile: list[str]
    """De-identification Method Code Sequence meanings written into the output."""
    pseudonym: str
    """The new Patient ID (a pseudonym; --lookup maps it back with the site secret)."""
    pixels: str
    """re-encoded with masks, copied (nothing to mask) or not cleaned."""
    audio: str
    """What happened to the audio (removed, kept, muted...)."""
    frames_in: int
    frames_out: int
    masks: int
    """Regions masked (device table, OCR, faces, --mask)."""
    attributes_changed: int
    """Header attributes removed, emptied, replaced or cleaned."""
    verified: bool
    """The OCR (and face) check ran on the output and found no identifier."""
    verification: str
    """passed, not run, or what was still found (the kind, never the value)."""
    warnings: list[str]


def deidentify_report(source: Path, output: Path, report: DeidReport) -> DeidentifyReport:
    check, header = report.verification, report.header
    if not check.ran:
        verdict = "not run" + (f" ({check.note})" if check.note else "")
    elif check.passed:
        verdict = "passed"
    else:
        found = list(check.identifiers_readable) + (
            [f"{check.faces_found} faces"] if check.faces_found else [])
        verdict = "failed: " + ", ".join(found or ["see the report"])
    return DeidentifyReport(
        source=str(source), output=str(output), kind=report.kind,
        profile=list(report.profile), pseudonym=report.pseudonym, pixels=report.pixels,
        audio=report.audio,
        frames_in=report.frames_in, frames_out=report.frames_out, masks=len(report.masks),
        attributes_changed=header.removed + header.emptied + header.replaced + header.cleaned,
        verified=check.ran and check.passed, verification=verdict,
        warnings=list(report.warnings))


JSON_SHAPES: dict[str, type[BaseModel]] = {
    "ErrorReport": ErrorReport, "ErrorDetail": ErrorDetail, "ConvertReport": ConvertReport,
    "WrittenFileReport": WrittenFileReport, "DeliveryReport": DeliveryReport,
    "ReceiptReport": ReceiptReport, "EchoReport": EchoReport, "ProbeReport": ProbeReport,
    "PlanReport": PlanReport, "InfoReport": InfoReport, "ValidateReport": ValidateReport,
    "FindingReport": FindingReport, "WorklistEntryReport": WorklistEntryReport,
    "DoctorReport": DoctorReport, "CheckReport": CheckReport, "RecordReport": RecordReport,
    "RecordedSourceReport": RecordedSourceReport, "SyncReport": SyncReport,
    "DeidentifyReport": DeidentifyReport,
}
"""Every --json shape by name: docs/cli.md documents each, and a test holds the two together."""
