"""convert: the library's front door. probe -> plan -> produce -> write, all or nothing."""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, cast

from vid2dcm.core.errors import NotStorableError, OutputError, UsageError, Vid2DcmError
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.core.metadata import Metadata
from vid2dcm.core.syntaxes import lossy_method_for
from vid2dcm.core.uids import UidSource
from vid2dcm.core.version import __version__
from vid2dcm.planning.chunks import chunk_transcode
from vid2dcm.planning.plan import (
    Action,
    Layout,
    OutputContainer,
    Plan,
    Request,
    Segment,
    TranscodePolicy,
    estimated_container_bytes,
    plan_conversion,
)
from vid2dcm.probing.probe import probe, segment_video_bytes
from vid2dcm.producing.chunks import transcode_in_chunks
from vid2dcm.producing.copy import copy_packets
from vid2dcm.producing.frames import encode_frames
from vid2dcm.producing.quality import QualityReport, measure_quality
from vid2dcm.producing.transcode import TranscodeStats, transcode
from vid2dcm.writing.encapsulation import (
    StreamedPixelData,
    fragment_lengths,
    item_offsets,
    write_frame_items,
    write_native_pixel_data,
    write_pixel_data,
)
from vid2dcm.writing.writer import (
    InstanceIdentity,
    PixelDescription,
    Provenance,
    VideoInstance,
    build_dataset,
    describe_bitstream,
    streamed_instance,
    write_instance,
)

if TYPE_CHECKING:
    from pydicom import Dataset

Progress = Callable[[str, float | None], None]
"""Called with a stage name and, where known, the fraction of it done."""


@dataclass(frozen=True)
class WrittenFile:
    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    frames: int
    rows: int
    columns: int
    size_bytes: int
    bitstream_bytes: int
    action: Action
    study_instance_uid: str
    series_instance_uid: str


@dataclass(frozen=True)
class ConversionResult:
    source: MediaInfo
    plan: Plan
    files: tuple[WrittenFile, ...]
    study_instance_uid: str
    series_instance_uid: str
    warnings: tuple[str, ...] = field(default=())
    transcode: TranscodeStats | None = None
    """Encoder statistics when anything was re-encoded."""
    quality: QualityReport | None = None
    """PSNR/SSIM of the transcoded video against the source, when asked for."""

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)


def convert(source: str | Path, out: str | Path | None = None, *,
            metadata: Metadata | None = None, options: Request | None = None,
            overwrite: bool = False, progress: Progress | None = None,
            first_instance: int = 1, predecessor: str | None = None,
            encoded_chunks: Sequence[Path] | None = None) -> ConversionResult:
    """Convert one video file into one or more DICOM video instances.

    out may be a .dcm path or an existing folder; by default the .dcm lands beside the input.
    On any failure nothing is left behind and the input is untouched. first_instance and
    predecessor continue a series made of several inputs (a live recording's pieces): the
    instances are numbered on, and the first refers to the previous piece's instance.
    encoded_chunks: the chunk files of the chosen video stream, already encoded by
    producing.chunks.encode_chunk elsewhere (gateway workers), to be joined instead of encoded.
    """
    source = Path(source)
    metadata = metadata or Metadata()
    options = options or Request()
    say: Progress = progress or _quiet
    say("probing", None)
    info = probe(source, options.stream, options.frame_rate)
    first = _convert_stream(source, info, out, metadata, options, overwrite, say,
                            first_instance, predecessor, encoded_chunks)
    if options.stream is not None:
        return first
    others = [i for i in info.video_stream_indexes if i != info.video.index]
    return _more_streams(first, source, others, metadata, options, overwrite, say)


def _more_streams(first: ConversionResult, source: Path, others: list[int],
                  metadata: Metadata, options: Request, overwrite: bool, say: Progress
                  ) -> ConversionResult:
    """Every further video stream (a room camera beside the scope) becomes its own instance in
    its own series of the same study, named <output>_stream<N>.dcm. A stream that cannot be
    converted is named in a warning; the others are kept."""
    files = list(first.files)
    warnings = list(first.warnings)
    base = first.files[0].path
    for index in others:
        target = base.with_name(f"{base.stem}_stream{index}{base.suffix or '.dcm'}")
        seed = f"{metadata.uid_seed}/stream{index}" if metadata.uid_seed else None
        stream_meta = metadata.model_copy(update={
            "study_instance_uid": first.study_instance_uid, "series_instance_uid": None,
            "series_number": metadata.series_number + len({f.series_instance_uid
                                                           for f in files}),
            "uid_seed": seed})
        try:
            info = probe(source, index, options.frame_rate)
            more = _convert_stream(source, info, target, stream_meta,
                                   replace(options, stream=index), overwrite, say)
        except Vid2DcmError as exc:
            warnings.append(f"video stream #{index} not converted: {exc}")
            continue
        files += more.files
        warnings += [f"stream #{index}: {w}" for w in more.warnings
                     if w not in warnings and not w.startswith("video stream #")]
    return replace(first, files=tuple(files), warnings=tuple(warnings))


def _convert_stream(source: Path, info: MediaInfo, out: str | Path | None, metadata: Metadata,
                    options: Request, overwrite: bool, say: Progress, first_instance: int = 1,
                    predecessor: str | None = None,
                    encoded_chunks: Sequence[Path] | None = None) -> ConversionResult:
    """probe -> plan -> produce -> write for the one video stream info describes."""
    plan = plan_conversion(info, options)
    if not plan.storable:
        raise _not_storable(plan, options)
    base = output_base(source, out, overwrite)
    written: list[WrittenFile] = []
    try:
        with tempfile.TemporaryDirectory(prefix=".vid2dcm-", dir=base.parent) as tmp:
            work = Path(tmp)
            stats = quality = None
            wrapped, wrap_plan = info, plan
            if plan.frame_syntax is not None:
                stats, frame_file = _frames(info, plan, options, metadata, base, work, say,
                                            first_instance, predecessor)
                written.append(frame_file)
            elif plan.needs_transcode:
                stats, wrapped, wrap_plan = _transcode(info, plan, options, work, say,
                                                       encoded_chunks)
                if options.measure_quality and plan.video_target is not None:
                    say("measuring quality", None)
                    quality = measure_quality(info, plan.video_target, wrapped.path)
            if plan.frame_syntax is None:
                targets = numbered_paths(source, base, len(wrap_plan.segments), overwrite)
                written = _wrap(info, wrapped, wrap_plan, plan, targets, metadata, options,
                                work, say, written, first_instance, predecessor)
    except BaseException:
        for f in written:
            f.path.unlink(missing_ok=True)
        raise
    warnings = list(plan.warnings)
    if options.jobs > 1 and plan.video_target is not None and encoded_chunks is None:
        chunking = chunk_transcode(info.video, plan.video_target, options.jobs,
                                   options.min_chunk_s)
        if not chunking.parallel:  # asked for parallel encoding, got one pass: say why
            warnings.append(f"--jobs {options.jobs}: transcoded in a single pass "
                            f"({chunking.reason.removeprefix('a single pass: ')})")
    if stats is not None and stats.lost_frames:
        warnings.append(f"{stats.lost_frames} of {stats.packets_in} frames could not be decoded "
                        "(damaged input) and are missing from the output")
    if plan.video_target is None and plan.frame_syntax is None:
        stats = None  # only audio was re-encoded: the video was copied, not transcoded
    return ConversionResult(info, plan, tuple(written), written[0].study_instance_uid,
                            written[0].series_instance_uid, tuple(warnings), stats, quality)


def _transcode(info: MediaInfo, plan: Plan, options: Request, work: Path, say: Progress,
               encoded_chunks: Sequence[Path] | None = None
               ) -> tuple[TranscodeStats, MediaInfo, Plan]:
    """Encode what must be encoded, then plan the result like any other input: it must now
    qualify for the target syntax, and splitting works on the encoded stream. A long
    transcode with options.jobs > 1 is encoded in chunks by that many processes and joined
    (producing/chunks.py); encoded_chunks are chunks that gateway workers already encoded."""
    assert plan.container is not None
    encoded = work / f"encoded.{plan.container.extension}"
    stage = "transcoding" if plan.video_target else "re-encoding audio"
    say(stage, 0.0)
    chunking = (chunk_transcode(info.video, plan.video_target, max(options.jobs, 1),
                                options.min_chunk_s)
                if plan.video_target is not None else None)
    if chunking is not None and plan.video_target is not None and (
            chunking.parallel or encoded_chunks is not None):
        stats = transcode_in_chunks(info, plan.video_target, plan.audio, plan.container,
                                    encoded, chunking, options.jobs, work,
                                    lambda done: say(stage, done), encoded_chunks)
    else:
        stats = transcode(info, plan.video_target, plan.audio, plan.container, encoded,
                          lambda done: say(stage, done))
    wrapped = probe(encoded)
    wrap_plan = plan_conversion(wrapped, replace(options, transcode=TranscodePolicy.NEVER))
    wanted = plan.transfer_syntax
    got = wrap_plan.transfer_syntax
    if not wrap_plan.storable or got is None or wanted is None or got.codec != wanted.codec:
        rules = "; ".join(wrap_plan.broken_rules) or (
            f"{got.name if got else '?'} instead of {wanted.name if wanted else '?'}")
        raise OutputError(f"the encoder's output does not qualify for DICOM: {rules}")
    # The encoded stream is labelled with the syntax it qualifies for, which may be a narrower
    # one than the target (a High@4.1 encode at a BD size and rate is BD-compatible, .103):
    # every such label is legal for the stream, so a good encode is never failed.
    return stats, wrapped, wrap_plan


def _wrap(source: MediaInfo, info: MediaInfo, plan: Plan, original: Plan, targets: list[Path],
          metadata: Metadata, options: Request, work: Path, say: Progress,
          written: list[WrittenFile], first_instance: int = 1,
          predecessor: str | None = None) -> list[WrittenFile]:
    """Copy packets into one container per instance and write each instance around it."""
    assert plan.container is not None and plan.transfer_syntax is not None
    assert plan.transfer_syntax_uid is not None
    uids = UidSource(metadata.uid_root, metadata.uid_seed)
    study_uid = metadata.study_instance_uid or uids.new("study")
    series_uid = metadata.series_instance_uid or uids.new("series")
    recorded_at = metadata.acquisition_datetime or source.creation_time
    provenance = describe_provenance(source, original)
    if _one_pass(info, plan):
        series = _Series(uids, study_uid, series_uid, recorded_at, provenance, original.action)
        try:
            return _wrap_in_place(info, plan, targets, metadata, options, say, written, series,
                                  first_instance, predecessor)
        except (OutputError, ValueError):
            pass  # e.g. the index outgrew its reserved room: take the spool route below
    say("copying packets", 0.0)
    pieces = copy_packets(info, plan.copied_audio, plan.container, plan.segments, work,
                          lambda done: say("copying packets", done))
    previous: str | None = predecessor
    for number, (piece, target) in enumerate(zip(pieces, targets, strict=True),
                                             first_instance):
        say(f"writing {target.name}", (number - first_instance) / len(pieces))
        assert piece.path is not None
        bitstream = probe(piece.path)
        _check_piece(bitstream, piece.segment.end_frame - piece.segment.first_frame,
                     plan, options)
        identity = InstanceIdentity(study_uid, series_uid, uids.new(f"instance-{number}"),
                                    number, previous)
        instance = VideoInstance(
            iod=plan.iod, transfer_syntax_uid=plan.transfer_syntax_uid,
            pixels=describe_bitstream(bitstream, plan.transfer_syntax,
                                      max_item=options.max_item_bytes), identity=identity,
            acquired_at=_part_start(recorded_at, info, piece.segment) if recorded_at else None,
            converted_at=datetime.now(), metadata=metadata, provenance=provenance,
        )
        size = write_instance(target, build_dataset(instance), partial(
            write_pixel_data, source=piece.path, max_item=options.max_item_bytes))
        written.append(WrittenFile(
            target, plan.iod.sop_class_uid, identity.sop_instance_uid,
            plan.transfer_syntax_uid, bitstream.video.timing.frame_count,
            bitstream.video.height, bitstream.video.width, size, bitstream.size_bytes,
            original.action, study_uid, series_uid))
        previous = identity.sop_instance_uid
    return written


def _frames(info: MediaInfo, plan: Plan, options: Request, metadata: Metadata, base: Path,
            work: Path, say: Progress, first_instance: int = 1,
            predecessor: str | None = None) -> tuple[TranscodeStats, WrittenFile]:
    """Decode, encode every picture on its own, and write one instance around the frames."""
    syntax, target = plan.frame_syntax, plan.video_target
    assert syntax is not None and target is not None and plan.transfer_syntax_uid is not None
    say("encoding frames", 0.0)
    encoded = encode_frames(info, target, syntax, options.quality.value, work / "frames.bin",
                            lambda done: say("encoding frames", done))
    uids = UidSource(metadata.uid_root, metadata.uid_seed)
    study_uid = metadata.study_instance_uid or uids.new("study")
    series_uid = metadata.series_instance_uid or uids.new("series")
    identity = InstanceIdentity(study_uid, series_uid, uids.new(f"instance-{first_instance}"),
                                first_instance, predecessor)
    pixels = PixelDescription(
        rows=encoded.height, columns=encoded.width, photometric=syntax.photometric,
        timing=encoded.timing, stored_bytes=encoded.size_bytes,
        lossy_method=syntax.lossy_method or source_lossy_method(info.video.codec))
    recorded_at = metadata.acquisition_datetime or info.creation_time
    ds = build_dataset(VideoInstance(
        iod=plan.iod, transfer_syntax_uid=plan.transfer_syntax_uid, pixels=pixels,
        identity=identity, acquired_at=recorded_at, converted_at=datetime.now(),
        metadata=metadata, provenance=describe_provenance(info, plan)))
    pixel_data: Callable[[BinaryIO], object]
    if not syntax.encapsulated:
        pixel_data = partial(write_native_pixel_data, source=encoded.path)
    else:
        offsets = item_offsets(encoded.lengths)
        if offsets[-1] < 2**32:
            pixel_data = partial(write_frame_items, source=encoded.path,
                                 frame_lengths=encoded.lengths, basic_offsets=offsets)
        else:
            ds.ExtendedOffsetTable = b"".join(struct.pack("<Q", o) for o in offsets)
            ds.ExtendedOffsetTableLengths = b"".join(
                struct.pack("<Q", n + n % 2) for n in encoded.lengths)
            pixel_data = partial(write_frame_items, source=encoded.path,
                                 frame_lengths=encoded.lengths, basic_offsets=None)
    say(f"writing {base.name}", None)
    size = write_instance(base, ds, pixel_data)
    stats = TranscodeStats(encoded.packets_in, encoded.frame_count, encoded.damaged_packets,
                           encoded.seconds)
    return stats, WrittenFile(base, plan.iod.sop_class_uid, identity.sop_instance_uid,
                              plan.transfer_syntax_uid, encoded.frame_count, encoded.height,
                              encoded.width, size, encoded.size_bytes, plan.action, study_uid,
                              series_uid)


def source_lossy_method(codec: str) -> str | None:
    """Lossless frame encodings still hold pictures once compressed lossily by the camera."""
    return lossy_method_for(codec) or ("ISO_10918_1" if codec == "mjpeg" else None)


def _one_pass(info: MediaInfo, plan: Plan) -> bool:
    """Whether every header can be written from the source's index before its container
    exists, so the bitstream is streamed once, straight into the DICOM files (no spool).

    Constant-rate streams with timestamps are exact (CleanClock stamps the copy on the
    stream's own grid). Variable-rate ones keep their timestamps: an MP4 muxer's time scale
    is the source's time base denominator times a power of two, so every interval survives
    exactly and the Frame Time Vector measured on the source is the copy's. Their nominal
    rate (Cine Rate) is the demuxer's average over the sample table, the same for an MP4/MOV
    source and its MP4 copy, but not for Matroska or TS sources (FFmpeg estimates it there
    differently); a transport stream's 90 kHz clock could round the intervals, and a split
    part would need its own vector. Those take the spool route and are measured after
    writing, as are raw streams, which have no timestamps until the muxer makes them."""
    v = info.video
    if not v.has_timestamps:
        return False
    if not v.timing.variable:
        return True
    return (info.container.startswith("mov") and plan.container is OutputContainer.MP4
            and plan.layout is not Layout.SPLIT)


@dataclass(frozen=True)
class _Series:
    uids: UidSource
    study_uid: str
    series_uid: str
    recorded_at: datetime | None
    provenance: Provenance
    action: Action


class _InstanceSinks:
    """PartSinks that write each part's header and open its Pixel Data for the muxer; a
    part is complete, durable and named when its container is (writer.streamed_instance)."""

    def __init__(self, headers: list[Dataset], targets: list[Path], max_item: int,
                 fragments: int) -> None:
        self.stack = ExitStack()
        self.headers = headers
        self.targets = targets
        self.max_item = max_item
        self.fragments = fragments
        self.open_parts: dict[int, tuple[ExitStack, StreamedPixelData]] = {}
        self.lengths: dict[int, int] = {}

    def open(self, number: int) -> BinaryIO:
        part = ExitStack()
        self.stack.push(part)
        pixels = part.enter_context(streamed_instance(
            self.targets[number], self.headers[number], self.max_item, self.fragments))
        self.open_parts[number] = (part, pixels)
        return cast(BinaryIO, pixels.window)

    def close(self, number: int) -> None:
        part, pixels = self.open_parts.pop(number)
        part.close()
        self.lengths[number] = pixels.length


def _wrap_in_place(info: MediaInfo, plan: Plan, targets: list[Path], metadata: Metadata,
                   options: Request, say: Progress, written: list[WrittenFile],
                   series: _Series, first_instance: int, predecessor: str | None
                   ) -> list[WrittenFile]:
    """The one-pass route: every header from the source's index, then one demux pass that
    muxes each part's container straight into its DICOM file's Pixel Data."""
    assert plan.container is not None and plan.transfer_syntax is not None
    assert plan.transfer_syntax_uid is not None
    segments = plan.segments
    frames = [s.end_frame - s.first_frame for s in segments]
    if len(segments) == 1:
        stored = [info.video.packet_bytes]
    else:
        stored = segment_video_bytes(info, [(s.first_frame, s.end_frame) for s in segments])
    fragments = 1
    if plan.layout is Layout.FRAGMENTS:
        payload = info.total_packet_bytes if plan.copied_audio else info.video.packet_bytes
        expected = estimated_container_bytes(payload, frames[0], plan.container)
        fragments = len(fragment_lengths(expected, options.max_item_bytes))
    whole = describe_bitstream(info, plan.transfer_syntax, plan.copied_audio)
    headers: list[Dataset] = []
    identities: list[InstanceIdentity] = []
    previous = predecessor
    for number, (segment, count, size) in enumerate(zip(segments, frames, stored, strict=True),
                                                    first_instance):
        identity = InstanceIdentity(series.study_uid, series.series_uid,
                                    series.uids.new(f"instance-{number}"), number, previous)
        timing = info.video.timing if len(segments) == 1 else replace(
            info.video.timing, frame_count=count, duration_s=float(count / info.video.timing.rate))
        pixels = replace(whole, timing=timing, stored_bytes=size, bitstream_length=None,
                         fragments=fragments)
        at = series.recorded_at
        if at is not None and len(segments) > 1:
            at = _part_start(at, info, segment)
        headers.append(build_dataset(VideoInstance(
            iod=plan.iod, transfer_syntax_uid=plan.transfer_syntax_uid, pixels=pixels,
            identity=identity, acquired_at=at, converted_at=datetime.now(),
            metadata=metadata, provenance=series.provenance)))
        identities.append(identity)
        previous = identity.sop_instance_uid
    max_item = options.max_item_bytes
    label = targets[0].name if len(targets) == 1 else f"{len(targets)} instances"
    say(f"writing {label}", 0.0)
    sinks = _InstanceSinks(headers, targets, max_item, fragments)
    try:
        with sinks.stack:  # on failure the part being written is removed ...
            copy_packets(info, plan.copied_audio, plan.container, segments, None,
                         lambda part: say(f"writing {label}", part), parts=sinks)
    except BaseException:
        for n in sinks.lengths:  # ... and so are the finished ones
            targets[n].unlink(missing_ok=True)
        raise
    for n, (target, identity) in enumerate(zip(targets, identities, strict=True)):
        written.append(WrittenFile(
            target, plan.iod.sop_class_uid, identity.sop_instance_uid,
            plan.transfer_syntax_uid, frames[n], info.video.height, info.video.width,
            target.stat().st_size, sinks.lengths[n], series.action, series.study_uid,
            series.series_uid))
    return written


def describe_provenance(source: MediaInfo, plan: Plan) -> Provenance:
    """What was done to the pictures, for Image Type and Derivation Description."""
    target = plan.video_target
    if target is None:
        return Provenance(derived=False, description=None)
    v = source.video
    if plan.frame_syntax is not None:
        text = (f"Decoded by vid2dcm {__version__} from {v.codec} {v.profile or ''} "
                f"{v.width}x{v.height} {v.pix_fmt} and stored frame by frame as "
                f"{plan.frame_syntax.name}")
    else:
        text = (f"Transcoded by vid2dcm {__version__} from {v.codec} {v.profile or ''} "
                f"{v.width}x{v.height} {v.pix_fmt} to {target.describe()}; because: "
                + "; ".join(plan.broken_rules))
    if target.steps:
        text += "; pictures: " + "; ".join(target.steps)
    return Provenance(derived=target.changes_geometry, description=text[:1024])


def _quiet(_stage: str, _done: float | None) -> None:
    pass


def _not_storable(plan: Plan, options: Request) -> NotStorableError:
    rules = "; ".join(plan.broken_rules)
    if options.transcode is TranscodePolicy.NEVER:
        hint = "not storable without transcoding (--transcode never)"
    else:
        hint = "transcoding is not available in this version of vid2dcm"
    return NotStorableError(f"cannot copy this video into DICOM: {rules} ({hint})",
                            plan.broken_rules)


def output_base(source: Path, out: str | Path | None, overwrite: bool) -> Path:
    """Where the (first) instance goes: OUT.dcm, or DIR/<input>.dcm, or beside the input."""
    if out is None:
        base = source.with_suffix(".dcm")
    else:
        out = Path(out)
        base = out / (source.stem + ".dcm") if out.is_dir() or str(out).endswith("/") else out
    if not base.parent.is_dir():
        raise OutputError(f"output folder {base.parent} does not exist")
    if base.resolve() == source.resolve():
        raise UsageError(f"output {base} would overwrite the input")
    if base.exists() and not overwrite:
        raise OutputError(f"{base} already exists (use --overwrite to replace it)")
    return base


def numbered_paths(source: Path, base: Path, count: int, overwrite: bool) -> list[Path]:
    """One path per instance: base itself, or base_001.dcm, base_002.dcm... for a split."""
    if count == 1:
        return [base]
    paths = [base.with_name(f"{base.stem}_{n:03d}{base.suffix or '.dcm'}")
             for n in range(1, count + 1)]
    for p in paths:
        if p.resolve() == source.resolve():
            raise UsageError(f"output {p} would overwrite the input")
        if p.exists() and not overwrite:
            raise OutputError(f"{p} already exists (use --overwrite to replace it)")
    return paths


def _check_piece(bitstream: MediaInfo, expected_frames: int, plan: Plan,
                 options: Request) -> None:
    """The written container must hold exactly the frames planned, within one item if needed."""
    got = bitstream.video.timing.frame_count
    if got != expected_frames:
        raise OutputError(f"the rewritten container holds {got} frames, expected "
                          f"{expected_frames}")
    if plan.layout is not Layout.FRAGMENTS and bitstream.size_bytes > options.max_item_bytes:
        raise OutputError(f"a key-frame interval is larger than one fragment "
                          f"({bitstream.size_bytes} > {options.max_item_bytes} bytes); "
                          "use --fragmentable")


def _part_start(start: datetime, info: MediaInfo, segment: Segment) -> datetime:
    """Content Time of a split part: the recording start plus where the part begins."""
    keyframes = info.video.keyframes
    origin = keyframes[0].pts_s if keyframes else None
    for kf in keyframes:
        if kf.frame_index == segment.first_frame and kf.pts_s is not None and origin is not None:
            return start + timedelta(seconds=kf.pts_s - origin)
    return start
