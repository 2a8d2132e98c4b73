"""convert: the library's front door. probe -> plan -> produce -> write, all or nothing."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from vid2dcm.dicom.uids import new_uid
from vid2dcm.dicom.writer import InstanceIdentity, VideoInstance, build_dataset, write_instance
from vid2dcm.errors import NotStorableError, OutputError, UsageError
from vid2dcm.media.copy import copy_packets
from vid2dcm.media.info import MediaInfo
from vid2dcm.media.probe import probe
from vid2dcm.metadata import Metadata
from vid2dcm.planning import (
    Action,
    Layout,
    Plan,
    Request,
    Segment,
    TranscodePolicy,
    plan_conversion,
)

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


@dataclass(frozen=True)
class ConversionResult:
    source: MediaInfo
    plan: Plan
    files: tuple[WrittenFile, ...]
    study_instance_uid: str
    series_instance_uid: str
    warnings: tuple[str, ...] = field(default=())

    @property
    def frames(self) -> int:
        return sum(f.frames for f in self.files)


def convert(source: str | Path, out: str | Path | None = None, *,
            metadata: Metadata | None = None, options: Request | None = None,
            overwrite: bool = False, progress: Progress | None = None) -> ConversionResult:
    """Convert one video file into one or more DICOM video instances.

    out may be a .dcm path or an existing folder; by default the .dcm lands beside the input.
    On any failure nothing is left behind and the input is untouched.
    """
    source = Path(source)
    metadata = metadata or Metadata()
    options = options or Request()
    say: Progress = progress or _quiet
    say("probing", None)
    info = probe(source)
    plan = plan_conversion(info, options)
    if plan.action is Action.TRANSCODE or plan.transfer_syntax is None:
        raise _not_storable(plan, options)
    targets = output_paths(source, out, len(plan.segments), overwrite)
    study_uid = metadata.study_instance_uid or new_uid(metadata.uid_root)
    series_uid = metadata.series_instance_uid or new_uid(metadata.uid_root)
    recorded_at = metadata.acquisition_datetime or info.creation_time
    assert plan.container is not None and plan.transfer_syntax_uid is not None
    written: list[WrittenFile] = []
    try:
        with tempfile.TemporaryDirectory(prefix=".vid2dcm-", dir=targets[0].parent) as work:
            say("copying packets", 0.0)
            pieces = copy_packets(info, plan.copied_audio, plan.container, plan.segments,
                                  Path(work), lambda done: say("copying packets", done))
            previous: str | None = None
            for number, (piece, target) in enumerate(zip(pieces, targets, strict=True), 1):
                say(f"writing {target.name}", (number - 1) / len(pieces))
                bitstream = probe(piece.path)
                _check_piece(bitstream, piece.segment.end_frame - piece.segment.first_frame,
                             plan, options)
                identity = InstanceIdentity(study_uid, series_uid, new_uid(metadata.uid_root),
                                            number, previous)
                instance = VideoInstance(
                    iod=plan.iod, syntax=plan.transfer_syntax,
                    transfer_syntax_uid=plan.transfer_syntax_uid, bitstream=bitstream,
                    audio=tuple(a for a in info.audio if a.index in plan.copied_audio),
                    identity=identity,
                    acquired_at=_part_start(recorded_at, info, piece.segment)
                    if recorded_at else None,
                    converted_at=datetime.now(),
                    metadata=metadata,
                )
                size = write_instance(target, build_dataset(instance), piece.path,
                                      options.max_item_bytes)
                written.append(WrittenFile(
                    target, plan.iod.sop_class_uid, identity.sop_instance_uid,
                    plan.transfer_syntax_uid, bitstream.video.timing.frame_count,
                    bitstream.video.height, bitstream.video.width, size, bitstream.size_bytes,
                    plan.action))
                previous = identity.sop_instance_uid
    except BaseException:
        for f in written:
            f.path.unlink(missing_ok=True)
        raise
    return ConversionResult(info, plan, tuple(written), study_uid, series_uid, plan.warnings)


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


def output_paths(source: Path, out: str | Path | None, count: int,
                 overwrite: bool) -> list[Path]:
    """Where each instance goes: OUT.dcm, OUT_001.dcm... or DIR/<input>[_NNN].dcm."""
    if out is None:
        base = source.with_suffix(".dcm")
    else:
        out = Path(out)
        base = out / (source.stem + ".dcm") if out.is_dir() or str(out).endswith("/") else out
    if not base.parent.is_dir():
        raise OutputError(f"output folder {base.parent} does not exist")
    if count == 1:
        paths = [base]
    else:
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
