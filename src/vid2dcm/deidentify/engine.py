"""deidentify: one DICOM video or frame object in, one de-identified object out, or nothing.

Order of work, all in a scratch folder beside the output: extract the pictures (the embedded
bitstream, or the decoded frames as lossless FFV1), analyse sampled frames (device mask table,
OCR, faces), re-encode through the filter graph with the masks drawn in (producing.transcode or
producing.frames; without masks the video packets are copied), write the instance with the
profile applied to the original header, read the written file back and verify it (OCR and face
detector on its frames), and only then move it into place with its JSON report.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

from pydicom import Dataset
from pydicom.uid import UID

from vid2dcm.core.errors import InputError, OutputError, UsageError
from vid2dcm.core.frame_syntaxes import FrameSyntax, frame_syntax_by_uid
from vid2dcm.core.media_info import MediaInfo
from vid2dcm.core.syntaxes import VideoTransferSyntax, by_uid
from vid2dcm.deidentify.faces import detect_faces
from vid2dcm.deidentify.pixels import (
    DeviceMask,
    device_boxes,
    hold,
    load_device_masks,
    read_text,
    require_tesseract,
    sample_frames,
)
from vid2dcm.deidentify.profile import (
    HeaderCleaner,
    HeaderResult,
    Identifiers,
    ProfileOptions,
    collect_identifiers,
)
from vid2dcm.deidentify.pseudonyms import Pseudonymizer, write_lookup
from vid2dcm.deidentify.report import (
    DeidReport,
    HeaderSummary,
    MaskRecord,
    Verification,
)
from vid2dcm.deidentify.verify import verify_media
from vid2dcm.planning.plan import AudioDecision, OutputContainer
from vid2dcm.planning.video_target import choose_video_target
from vid2dcm.probing.probe import probe
from vid2dcm.producing.filters import MaskBox
from vid2dcm.producing.frames import encode_frames
from vid2dcm.producing.transcode import transcode
from vid2dcm.reading.reader import extract_bitstream, open_video_object
from vid2dcm.writing.encapsulation import (
    MAX_ITEM,
    item_offsets,
    write_frame_items,
    write_native_pixel_data,
    write_pixel_data,
)
from vid2dcm.writing.writer import write_instance

PIXEL_TAGS = {0x7FE00010, 0x7FE00001, 0x7FE00002, 0x7FE00003}
"""Pixel Data and its offset tables / total length: rewritten, never copied."""

AUDIO_ATTRIBUTES = ("MultiplexedAudioChannelsDescriptionCodeSequence",)


@dataclass(frozen=True)
class DeidSettings:
    options: ProfileOptions = field(default_factory=ProfileOptions)
    secret: str | None = None
    """Site secret for consistent pseudonyms ($VID2DCM_DEID_SECRET when None)."""
    sample_every_s: float = 1.0
    """OCR / face sampling interval; scene changes are sampled as well."""
    mask_settings: Path | None = None
    """Device mask table (JSON) replacing the bundled one."""
    masks: tuple[MaskBox, ...] = ()
    """Boxes the caller wants filled whatever OCR says (times in the object's seconds)."""
    verify: bool = True
    lookup: Path | None = None
    """Encrypted pseudonym -> identity lookup to add this patient to."""
    mute: tuple[tuple[float, float], ...] = ()
    """Audio intervals (seconds from the start) silenced when the audio is kept."""

    def __post_init__(self) -> None:
        if self.mute and self.options.remove_audio:
            raise UsageError("muting intervals needs the audio kept (--keep-audio)")
        if any(end <= start for start, end in self.mute):
            raise UsageError("a mute interval must end after it starts")


@dataclass(frozen=True)
class _Analysis:
    masks: tuple[MaskBox, ...]
    records: tuple[MaskRecord, ...]
    text_lines: tuple[str, ...]
    faces: int
    frames: int
    origin: float


def deidentify(inputs: list[Path], out_dir: Path, settings: DeidSettings | None = None,
               overwrite: bool = False) -> list[DeidReport]:
    """De-identify each input into out_dir (created if missing); stops at the first failure,
    keeping the outputs already complete."""
    settings = settings or DeidSettings()
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is not a folder")
    out_dir.mkdir(parents=True, exist_ok=True)
    pseudonyms = Pseudonymizer.from_environment(settings.secret)
    return [deidentify_file(path, out_dir, settings, pseudonyms, overwrite) for path in inputs]


def deidentify_file(path: Path, out_dir: Path, settings: DeidSettings,
                    pseudonyms: Pseudonymizer, overwrite: bool = False) -> DeidReport:
    timings: dict[str, float] = {}
    started = time.monotonic()
    options = settings.options
    video = open_video_object(path)
    syntax = by_uid(video.transfer_syntax_uid)
    frame_syntax = frame_syntax_by_uid(video.transfer_syntax_uid)
    if syntax is None and frame_syntax is None:
        raise InputError(f"{path}: transfer syntax {video.transfer_syntax_uid} holds neither a "
                         "video bitstream nor frames vid2dcm can re-encode")
    if int(video.dataset.get("SamplesPerPixel", 3)) != 3:
        raise InputError(f"{path}: only colour (3-sample) pictures can be de-identified")
    if options.clean_pixel_data:
        require_tesseract()
    table = load_device_masks(settings.mask_settings)
    original = _header_copy(video.dataset)
    identifiers = collect_identifiers(original)
    old_uid = str(original.get("SOPInstanceUID", ""))
    if not old_uid:
        raise InputError(f"{path}: has no SOP Instance UID")
    new_uid = old_uid if options.retain_uids else pseudonyms.uid(old_uid)
    target_path = out_dir / f"{new_uid}.dcm"
    if target_path.exists() and not overwrite:
        raise OutputError(f"{target_path} already exists (use --overwrite to replace it)")
    with tempfile.TemporaryDirectory(prefix=".vid2dcm-deid-", dir=out_dir) as tmp:
        work = Path(tmp)
        media = work / ("source.mkv" if frame_syntax else "source.video")
        extract_bitstream(path, media, overwrite=True)
        info = probe(media)
        timings["extract"] = time.monotonic() - started
        mark = time.monotonic()
        analysis = _analyse(info, original, table, settings)
        timings["analyse"] = time.monotonic() - mark
        mark = time.monotonic()
        ds = original
        cleaner = HeaderCleaner(options, pseudonyms, identifiers)
        header = cleaner.apply(ds)
        for keyword, value in verified_flags(settings).items():
            setattr(ds, keyword, value)
        assert str(ds.SOPInstanceUID) == new_uid
        staged = work / target_path.name
        if frame_syntax is not None:
            frames_out, pixels = _frames(info, frame_syntax, ds, analysis.masks, work, staged)
            audio = "none (frame object)"
        else:
            assert syntax is not None
            frames_out, pixels, audio = _video(info, syntax, ds, analysis.masks, settings,
                                               work, staged)
        timings["encode"] = time.monotonic() - mark
        frames_in = info.video.timing.frame_count
        if frames_out != frames_in:
            raise OutputError(f"the de-identified pictures hold {frames_out} frames, the source "
                              f"{frames_in}")
        mark = time.monotonic()
        verification = _verify(staged, work, settings, identifiers, analysis, info)
        timings["verify"] = time.monotonic() - mark
        if not verification.passed:
            raise OutputError(f"{path}: verification failed: "
                              f"{', '.join(verification.identifiers_readable) or ''}"
                              f"{' faces still detected' if verification.faces_found else ''}"
                              " (nothing written; add mask boxes or review by hand)")
        staged.replace(target_path)
    report = DeidReport(
        output=target_path.name, sop_class_uid=str(ds.SOPClassUID),
        kind="frames" if frame_syntax else "video",
        profile=tuple(str(item.CodeMeaning) for item in ds.DeidentificationMethodCodeSequence),
        pseudonym=header.pseudonym, header=_summary(header), audio=audio, pixels=pixels,
        frames_in=frames_in, frames_out=frames_out,
        duration_s=round(info.video.timing.duration_s, 3), masks=analysis.records,
        text_lines_found=len(analysis.text_lines), faces_found=analysis.faces,
        frames_analysed=analysis.frames, verification=verification,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "")),
        recognizable_visual_features=str(ds.get("RecognizableVisualFeatures", "")),
        seconds={k: round(v, 3) for k, v in timings.items()},
    )
    report.write(out_dir / f"{target_path.stem}.deid.json")
    if settings.lookup is not None:
        write_lookup(settings.lookup, pseudonyms, {header.pseudonym: header.originals})
    return report


def _header_copy(source: Dataset) -> Dataset:
    """The header without Pixel Data (deferred values are read from the file here)."""
    ds = Dataset()
    for elem in source:
        if int(elem.tag) not in PIXEL_TAGS:
            ds.add(elem)
    ds.file_meta = source.file_meta
    return ds


def _analyse(info: MediaInfo, ds: Dataset, table: tuple[DeviceMask, ...],
             settings: DeidSettings) -> _Analysis:
    options = settings.options
    v = info.video
    end = v.timing.duration_s + 3600.0
    fixed: list[tuple[str, MaskBox]] = []
    if options.clean_pixel_data:
        fixed += [("device table", b) for b in device_boxes(
            table, str(ds.get("Manufacturer", "")), str(ds.get("ManufacturerModelName", "")),
            v.width, v.height, end)]
    fixed += [("manual", b) for b in settings.masks]
    text_boxes: list[tuple[int, int, int, int, float]] = []
    face_boxes: list[tuple[int, int, int, int, float]] = []
    lines: list[str] = []
    times: list[float] = []
    origin: float | None = None
    if options.clean_pixel_data or options.clean_recognizable_visual_features:
        for sample in sample_frames(info.path, settings.sample_every_s, v.has_timestamps,
                                    float(v.timing.rate)):
            origin = sample.time_s if origin is None else origin
            times.append(sample.time_s)
            if options.clean_pixel_data:
                for line in read_text(sample.rgb, sample.time_s):
                    text_boxes.append((line.x, line.y, line.width, line.height, line.time_s))
                    lines.append(line.text)
            if options.clean_recognizable_visual_features:
                for face in detect_faces(sample.rgb):
                    face_boxes.append((face.x, face.y, face.width, face.height, sample.time_s))
    origin = origin or 0.0
    fixed = [(source, replace(box, start_s=box.start_s + origin, end_s=box.end_s + origin)
              if source == "manual" else box) for source, box in fixed]
    found = [("ocr", b) for b in hold(text_boxes, times, "fill", 0.5)]
    found += [("face", b) for b in hold(face_boxes, times, "blur", 0.2)]
    everything = fixed + found
    duration = v.timing.duration_s
    return _Analysis(tuple(b for _, b in everything),
                     tuple(MaskRecord.of(s, b, origin, duration) for s, b in everything),
                     tuple(lines), len(face_boxes), len(times), origin)


def _video(info: MediaInfo, syntax: VideoTransferSyntax, ds: Dataset,
           masks: tuple[MaskBox, ...], settings: DeidSettings, work: Path, staged: Path
           ) -> tuple[int, str, str]:
    audio_in = info.audio
    keep_audio = bool(audio_in) and not settings.options.remove_audio
    mute: tuple[tuple[float, float], ...] = ()
    if keep_audio and settings.mute:
        origin = _video_start(info.path)
        mute = tuple((start + origin, end + origin) for start, end in settings.mute)
        codec = "mp3" if not masks and syntax.codec == "mpeg2video" else "aac"
        decisions = tuple(AudioDecision(a.index, False, "intervals muted", codec)
                          for a in audio_in)
    else:
        decisions = tuple(AudioDecision(a.index, True, "kept on request") for a in audio_in
                          ) if keep_audio else ()
    if masks:
        target = choose_video_target(info.video)
        container = OutputContainer.MPEG_TS
        encoded = work / "masked.ts"
        transcode(info, target, decisions, container, encoded, masks=masks, mute=mute)
        new_syntax = target.syntax
        pixels = "re-encoded with masks"
    else:
        container = _container_of(info)
        encoded = work / f"copied.{container.extension}"
        transcode(info, None, decisions, container, encoded, mute=mute)
        new_syntax = syntax
        pixels = "copied (nothing to mask)"
    result = probe(encoded)
    ds.file_meta.TransferSyntaxUID = UID(new_syntax.uid)
    ds.NumberOfFrames = result.video.timing.frame_count
    if masks:
        ds.LossyImageCompression = "01"
        methods = [str(m) for m in _list(ds.get("LossyImageCompressionMethod"))]
        ds.LossyImageCompressionMethod = [*methods, new_syntax.lossy_method] if (
            methods and methods[-1] != new_syntax.lossy_method) else (
            methods or [new_syntax.lossy_method])
        if "LossyImageCompressionRatio" in ds:
            del ds.LossyImageCompressionRatio  # the ratio of the source's encoding, now stale
    if not keep_audio:
        for keyword in AUDIO_ATTRIBUTES:
            if keyword in ds:
                delattr(ds, keyword)
    audio = ("removed" if not keep_audio else f"kept, {len(mute)} intervals muted" if mute
             else "kept") if audio_in else "none in source"
    write_instance(staged, ds, partial(write_pixel_data, source=encoded, max_item=MAX_ITEM))
    return result.video.timing.frame_count, pixels, audio


def _frames(info: MediaInfo, syntax: FrameSyntax, ds: Dataset, masks: tuple[MaskBox, ...],
            work: Path, staged: Path) -> tuple[int, str]:
    target = choose_video_target(info.video)
    encoded = encode_frames(info, target, syntax, "archive", work / "frames.bin", masks=masks)
    ds.NumberOfFrames = encoded.frame_count
    ds.Rows, ds.Columns = encoded.height, encoded.width
    if not syntax.encapsulated:
        write_instance(staged, ds, partial(write_native_pixel_data, source=encoded.path))
    else:
        offsets = item_offsets(encoded.lengths)
        if offsets[-1] >= 2**32:
            raise OutputError("the de-identified frames need an Extended Offset Table; not "
                              "supported by deidentify yet")

        def pixel_data(out: BinaryIO) -> object:
            return write_frame_items(out, encoded.path, encoded.lengths, offsets)

        write_instance(staged, ds, pixel_data)
    return encoded.frame_count, "re-encoded with masks" if masks else "re-encoded (no masks)"


def _verify(staged: Path, work: Path, settings: DeidSettings, identifiers: Identifiers,
            analysis: _Analysis, info: MediaInfo) -> Verification:
    options = settings.options
    if not settings.verify or not (options.clean_pixel_data or
                                   options.clean_recognizable_visual_features):
        return Verification(False, True, 0, note="not verified (pixel cleaning off)")
    readback = work / "readback.media"
    extract_bitstream(staged, readback, overwrite=True)
    kinds: dict[str, tuple[str, ...]] = {"patient identifier": identifiers.tokens}
    result = verify_media(readback, settings.sample_every_s, kinds,
                          analysis.text_lines if options.clean_pixel_data else (),
                          options.clean_pixel_data, options.clean_recognizable_visual_features,
                          float(info.video.timing.rate))
    return result


def verified_flags(settings: DeidSettings) -> dict[str, str]:
    """Burned In Annotation / Recognizable Visual Features NO (E.3.1, E.3.2). Written into
    the staged file, which only becomes the output if the verification passes; without
    verification the flags are left as the source had them."""
    options = settings.options
    if not settings.verify:
        return {}
    flags: dict[str, str] = {}
    if options.clean_pixel_data:
        flags["BurnedInAnnotation"] = "NO"
    if options.clean_recognizable_visual_features:
        flags["RecognizableVisualFeatures"] = "NO"
    return flags


def _video_start(path: Path) -> float:
    """Seconds of the first video frame on the container clock (TS starts near 1.4 s)."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if stream.start_time is None or stream.time_base is None:
            return 0.0
        return float(stream.start_time * stream.time_base)


def _container_of(info: MediaInfo) -> OutputContainer:
    """Copying keeps the container kind the object had (raw streams go into TS)."""
    name = info.container
    if "mpegts" in name:
        return OutputContainer.MPEG_TS
    if "mp4" in name or "mov" in name:
        return OutputContainer.MP4
    if name.startswith("mpeg") or name == "vob":
        return OutputContainer.MPEG_PS
    return OutputContainer.MPEG_TS


def _list(value: object) -> list[object]:
    if value is None or value == "":
        return []
    if isinstance(value, (str, int, float)):
        return [value]
    return [*value] if isinstance(value, (list, tuple)) or hasattr(value, "__iter__") else [
        value]


def _summary(header: HeaderResult) -> HeaderSummary:
    counts: dict[str, int] = {}
    for change in header.changes:
        counts[change.action] = counts.get(change.action, 0) + 1
    return HeaderSummary(
        removed=counts.get("remove", 0), emptied=counts.get("empty", 0),
        replaced=counts.get("dummy", 0), cleaned=counts.get("clean", 0),
        new_uids=counts.get("new_uid", 0), kept=counts.get("keep", 0),
        pseudonyms=counts.get("pseudonym", 0),
        private_removed=header.private_removed, private_kept=header.private_kept,
        attributes=tuple(f"{c.keyword}: {c.action}" for c in header.changes))

