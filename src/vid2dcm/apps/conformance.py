"""The DICOM Conformance Statement (PS3.2), generated from the code's own registries.

Every table is read from the registries the converter and the delivery code use: SOP classes
(core/iods), video and frame transfer syntaxes (core/syntaxes, core/frame_syntaxes), what is
proposed on an association (delivery/negotiation), the worklist keys (delivery/transports/
worklist) and the attributes of each created IOD (a header actually built by writing/writer,
with each Metadata field's source from core/metadata's one table). tests/
test_conformance_statement.py checks that docs/conformance-statement.md equals render(), so
the statement cannot drift from the code:

    python -m vid2dcm.apps.conformance > docs/conformance-statement.md
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date, datetime, time
from fractions import Fraction

from pydicom import Dataset
from pydicom.datadict import dictionary_description, dictionary_VR, keyword_for_tag
from pydicom.tag import Tag
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID
from pynetdicom.sop_class import (  # type: ignore[attr-defined]
    KeyObjectSelectionDocumentStorage,
    ModalityPerformedProcedureStep,
    ModalityWorklistInformationFind,
    StorageCommitmentPushModel,
    Verification,
)

from vid2dcm.core.frame_syntaxes import FRAME_SYNTAXES
from vid2dcm.core.iods import VIDEO_IODS, SopChoice, VideoIOD
from vid2dcm.core.media_info import AudioStreamInfo, FrameTiming
from vid2dcm.core.metadata import METADATA_ATTRIBUTES, CodedConcept, Metadata, Place
from vid2dcm.core.syntaxes import VIDEO_TRANSFER_SYNTAXES, uid_name
from vid2dcm.core.version import __version__
from vid2dcm.delivery.destinations import Destination
from vid2dcm.delivery.kos import TITLES as KOS_TITLES
from vid2dcm.delivery.negotiation import FRAME_FALLBACKS, VIDEO_TARGETS, proposed_syntaxes
from vid2dcm.delivery.transports.mpps import (
    DISCONTINUED_REASONS,
    PerformedSeries,
    final_dataset,
    in_progress_dataset,
)
from vid2dcm.delivery.transports.worklist import RETURN_KEYS, STEP_KEYS
from vid2dcm.orders.fhir import DICOM_UID_SYSTEM, FHIR_FIELDS
from vid2dcm.orders.fhir import STATUS as FHIR_STATUS
from vid2dcm.orders.hl7_mapping import HL7_FIELDS
from vid2dcm.orders.inbox import FAILED_EVENT, ORDER_CONTROL_STATUS, SUPPORTED, AckCode, ErrorCode
from vid2dcm.orders.results import RESULT_MESSAGES, STUDY_UID_CODE, VIEWER_CODE
from vid2dcm.writing.writer import (
    InstanceIdentity,
    PixelDescription,
    Provenance,
    VideoInstance,
    build_dataset,
)

MODULES: dict[SopChoice, tuple[tuple[str, str], ...]] = {
    choice: (
        ("Patient", "C.7.1.1"), ("General Study", "C.7.2.1"), ("General Series", "C.7.3.1"),
        ("General Equipment", "C.7.5.1"), ("General Acquisition", "C.7.10.1"),
        ("General Image", "C.7.6.1"), ("Image Pixel", "C.7.6.3"), ("Multi-frame", "C.7.6.6"),
        ("Cine", "C.7.6.5"),
        *((("SC Equipment", "C.8.6.1"), ("SC Multi-frame Image", "C.8.6.3"))
          if choice is SopChoice.SC else
          (("US Image", "C.8.5.6"),)
          if choice is SopChoice.ULTRASOUND else
          (("Acquisition Context", "C.7.6.14"), ("VL Image", "C.8.12.1"))),
        ("SOP Common", "C.12.1"),
    )
    for choice in SopChoice
}
"""The modules vid2dcm writes per IOD (PS3.3 sections), in the order writer.build_dataset
writes them."""

FIXED = "fixed by vid2dcm"
FROM_STREAM = "measured from the bitstream or frames"
FROM_RUN = "generated for this conversion"
SOURCES: dict[str, str] = {
    "SOPClassUID": "the IOD chosen (--sop)", "Modality": "the IOD chosen (--sop)",
    "StudyID": "Metadata study_id, else the accession number, else 8 digits derived from "
               "the Study Instance UID",
    "StudyInstanceUID": "Metadata study_instance_uid, else generated",
    "SeriesInstanceUID": "Metadata series_instance_uid, else generated",
    "SOPInstanceUID": FROM_RUN, "InstanceNumber": "part number of a split recording",
    "InstanceCreationDate": FROM_RUN, "InstanceCreationTime": FROM_RUN,
    "TimezoneOffsetFromUTC": FROM_RUN, "ContentDate": "recording start, else conversion time",
    "ContentTime": "recording start, else conversion time",
    "StudyDate": "Metadata study_date, else recording start or conversion time",
    "StudyTime": "Metadata study_time, else recording start or conversion time",
    "AcquisitionDateTime": "Metadata acquisition_datetime, else the container's creation time",
    "ImageType": "ORIGINAL\\PRIMARY; DERIVED when geometry or scan changed",
    "DerivationDescription": "what was re-encoded, when it was",
    "LossyImageCompressionMethod": "the transfer syntax's codec",
    "LossyImageCompressionRatio": FROM_STREAM, "NumberOfFrames": FROM_STREAM,
    "Rows": FROM_STREAM, "Columns": FROM_STREAM, "FrameTime": FROM_STREAM,
    "FrameTimeVector": FROM_STREAM, "FrameIncrementPointer": FROM_STREAM,
    "CineRate": FROM_STREAM, "RecommendedDisplayFrameRate": FROM_STREAM,
    "EffectiveDuration": FROM_STREAM, "StopTrim": FROM_STREAM,
    "PhotometricInterpretation": "the transfer syntax (PS3.5 8.2)",
    "MultiplexedAudioChannelsDescriptionCodeSequence": "audio streams kept in the bitstream",
    "ReferencedImageSequence": "the previous part of a split recording (Temporal Predecessor)",
    "EncapsulatedPixelDataValueTotalLength": "bitstream length, only when it spans several "
                                             "fragments",
    "SoftwareVersions": FIXED, "SpecificCharacterSet": "ISO_IR 192 when any text is not ASCII",
    "PixelAspectRatio": "MPEG-2 MP@ML with non-square pixels",
    "RequestAttributesSequence": "the worklist order (Metadata request fields)",
    "Laterality": "Metadata image_laterality when R or L, else empty",
    "BurnedInAnnotation": "Metadata burned_in_annotation; SC: YES unless told NO",
}
for _m in METADATA_ATTRIBUTES:
    if _m.place is Place.TOP:
        SOURCES.setdefault(_m.keyword, f"Metadata {_m.field}")


def _sample_instance(iod: VideoIOD, variable: bool) -> VideoInstance:
    """A fully populated instance: every optional attribute the writer can fill is filled
    (Frame Time for a constant rate, Frame Time Vector for a variable one)."""
    timing = FrameTiming(frame_count=3, rate=Fraction(25), duration_s=0.12, variable=variable,
                         frame_time_ms=40.0, frame_deltas_ms=(40.0, 40.0),
                         count_source="sample")
    meta = Metadata(
        patient_name="Doe^Jane", patient_id="P", patient_birth_date=date(2000, 1, 1),
        patient_sex="F", accession_number="A", study_description="S", study_date=date(2024, 1, 1),
        study_time=time(8), referring_physician_name="R", series_description="S",
        operators_name="O", manufacturer="M", manufacturer_model_name="M", institution_name="I",
        acquisition_datetime=datetime(2024, 1, 1, 8), burned_in_annotation="NO",
        requested_procedure_id="R", requested_procedure_description="R",
        scheduled_procedure_step_id="S", scheduled_procedure_step_description="S",
        anatomic_region=CodedConcept(value="1", meaning="x"), image_laterality="R",
    )
    audio = (AudioStreamInfo(1, "aac", "LC", 48000, 2, None),)
    pixels = PixelDescription(rows=2, columns=2, photometric="YBR_PARTIAL_420", timing=timing,
                              stored_bytes=1, lossy_method="ISO_14496_10", audio=audio,
                              pixel_aspect_ratio=(4, 3), bitstream_length=2, fragments=2)
    ident = InstanceIdentity("1.2", "1.2.3", "1.2.3.4", 2, predecessor_sop_instance_uid="1.2.3.5")
    return VideoInstance(iod, "1.2.840.10008.1.2.4.102", pixels, ident, datetime(2024, 1, 1),
                         datetime(2024, 1, 1), meta, Provenance(derived=True, description="d"))


def attributes_written(iod: VideoIOD) -> list[str]:
    """Top-level keywords of a header the writer builds for this IOD, in tag order."""
    tags: set[int] = set()
    for variable in (False, True):
        ds: Dataset = build_dataset(_sample_instance(iod, variable))
        tags |= {e.tag for e in ds if e.keyword}
    return [keyword_for_tag(t) for t in sorted(tags)]


def _keywords(ds: Dataset) -> list[str]:
    """Top-level keywords, a sequence's item keywords in brackets after it."""
    out = []
    for elem in ds:
        if elem.VR == "SQ" and len(elem.value):
            out.append(f"{elem.keyword} [{', '.join(_keywords(elem.value[0]))}]")
        else:
            out.append(elem.keyword)
    return out


def mpps_attributes() -> tuple[list[str], list[str]]:
    """What the MPPS SCU sends: the N-CREATE attributes and the N-SET modification list, read
    from the datasets delivery/transports/mpps.py builds."""
    when = datetime(2026, 1, 1, 8, 0)
    create = in_progress_dataset(Metadata(), "1.2.3", study_instance_uid="1.2.3",
                                 modality="XC", station_ae_title="VID2DCM",
                                 description="Video recording", started=when)
    final = final_dataset("DISCONTINUED", [PerformedSeries("1.2.3.4", "video",
                                                           (("1.2.5", "1.2.6"),))],
                          "equipment", when)
    return _keywords(create), _keywords(final)


COMMITMENT_SETTINGS = {
    "commitment_port": "port we listen on for an N-EVENT-REPORT on a new association (none: "
                       "the storage association only)",
    "commitment_listen_host": "address that listener binds: one the PACS can reach",
    "commitment_ae_title": "our AE title on that association (default: calling_ae_title)",
    "commitment_timeout_s": "how long to wait for the N-EVENT-REPORT",
}
"""The destination settings (delivery/destinations.Destination) of the commitment listener."""

ACK_MEANINGS = {AckCode.AA: "accepted: the order store changed as the message says",
                AckCode.AE: "content error (missing segment or field, bad value, unknown "
                            "order): nothing changed; MSA-3 and ERR name the field, never the "
                            "value",
                AckCode.AR: "rejected (message type, event, version or processing id not "
                            "taken): nothing read beyond MSH"}


def _row(*cells: str) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render() -> str:
    out: list[str] = []
    add = out.append
    add("# DICOM Conformance Statement: vid2dcm")
    add("")
    add("<!-- Generated by `python -m vid2dcm.apps.conformance` from the code's registries; "
        "tests/apps/test_conformance_statement.py fails when this file and the code differ. "
        "Do not edit by hand. -->")
    add("")
    add(f"Product: vid2dcm {__version__}. Structure after PS3.2 (Conformance), Annex A.")
    add("")
    add("## 1. Overview")
    add("")
    add("vid2dcm turns ordinary video files into DICOM video objects, copying the compressed "
        "bitstream whenever a video transfer syntax admits it and re-encoding only when it "
        "must, or stores the pictures frame by frame for IODs and receivers without video. "
        "It writes PS3.10 files, sends them by C-STORE or STOW-RS, asks for Storage "
        "Commitment, and queries a Modality Worklist for the order a recording belongs to.")
    add("")
    add(_row("Network service", "User of service (SCU)", "Provider of service (SCP)"))
    add(_row("---", "---", "---"))
    for name in (*[iod.name + " Storage" for iod in VIDEO_IODS.values()],
                 UID(KeyObjectSelectionDocumentStorage).name,
                 "Verification", "Storage Commitment Push Model",
                 "Modality Worklist Information Model - FIND",
                 "Modality Performed Procedure Step"):
        add(_row(name, "Yes", "No"))
    add(_row("STOW-RS (PS3.18 10.5)", "Yes (origin server: no)", "No"))
    add("")
    add("## 2. Implementation model")
    add("")
    fields = Destination.model_fields
    add(f"One application entity (default AE title `{fields['calling_ae_title'].default}`, "
        "configurable per destination as `calling_ae_title`) serves every network function. "
        "It is started by a user or the gateway's worker (`vid2dcm send`, `convert --send`, "
        "`echo`, `worklist`, the HTTP gateway); it never listens except, while a Storage "
        "Commitment request is open, for the N-EVENT-REPORT on the address and port the "
        "destination names "
        f"(`commitment_listen_host`, default {fields['commitment_listen_host'].default}, and "
        "`commitment_port`). The HL7 v2 and FHIR order and result interfaces are not DICOM "
        "services; section 8 describes them.")
    add("")
    add(f"- Implementation Class UID: `{PYDICOM_IMPLEMENTATION_UID}` (pydicom's); "
        f"Implementation Version Name: `VID2DCM_{__version__}`.")
    add("")
    add("## 3. AE specifications")
    add("")
    add("### 3.1 SOP classes")
    add("")
    add(_row("SOP class", "UID", "Modality", "Pixel Data", "Role"))
    add(_row("---", "---", "---", "---", "---"))
    for iod in VIDEO_IODS.values():
        kind = "frame by frame" if iod.frames_only else "video bitstream, or frame by frame"
        add(_row(f"{iod.name} Storage", f"`{iod.sop_class_uid}`", iod.modality, kind, "SCU"))
    add(_row(UID(KeyObjectSelectionDocumentStorage).name,
             f"`{KeyObjectSelectionDocumentStorage}`", "KO", "none (references)", "SCU"))
    for sop in (Verification, StorageCommitmentPushModel, ModalityWorklistInformationFind,
                ModalityPerformedProcedureStep):
        add(_row(UID(sop).name, f"`{sop}`", "", "", "SCU"))
    add("")
    add("### 3.2 Transfer syntaxes written and proposed")
    add("")
    add("Video (PS3.5 8.2.5-8.2.11); the bitstream is copied when it qualifies, else "
        "re-encoded to the first syntax vid2dcm encodes that fits:")
    add("")
    add(_row("Transfer syntax", "UID", "Codec / profiles / max level", "Containers",
             "Several fragments", "vid2dcm encodes it"))
    add(_row("---", "---", "---", "---", "---", "---"))
    for s in VIDEO_TRANSFER_SYNTAXES:
        codec = f"{s.codec} / {', '.join(sorted(s.profiles))} / {s.max_level}"
        add(_row(s.name, f"`{s.uid}`", codec, ", ".join(sorted(s.containers)),
                 "yes" if s.multi_fragment else "no",
                 f"yes ({s.encoder} level {s.encoder_level})" if s.encoder else "no"))
        if s.fragmentable_uid and s.fragmentable_name:
            add(_row(s.fragmentable_name, f"`{s.fragmentable_uid}`", codec,
                     ", ".join(sorted(s.containers)), "yes", "copy only"))
    add("")
    add("Frame by frame (one fragment per frame; no audio, no temporal compression):")
    add("")
    add(_row("Encoding", "Transfer syntax", "UID", "Photometric Interpretation",
             "Lossy method"))
    add(_row("---", "---", "---", "---", "---"))
    for f in FRAME_SYNTAXES.values():
        add(_row(f.encoding.value, f.name, f"`{f.uid}`", f.photometric,
                 f.lossy_method or "lossless"))
    add("")
    add("### 3.3 Association policies")
    add("")
    add("- One presentation context per (SOP class, transfer syntax): the peer's answer "
        "then says exactly which syntaxes it takes; at most 128 contexts.")
    example = VIDEO_TRANSFER_SYNTAXES[2]
    offered = proposed_syntaxes(str(example.fragmentable_uid or example.uid), True)
    add(f"- Proposed for a file, best first: its own syntax, for a Fragmentable file its "
        f"non-fragmentable twin, every syntax vid2dcm can encode "
        f"({', '.join(uid_name(u) for u in VIDEO_TARGETS)}), then, when the destination "
        f"allows lossy fallback, frame by frame "
        f"({', '.join(uid_name(u) for u, _ in FRAME_FALLBACKS)}). Example, "
        f"{uid_name(offered[0])}: " + ", ".join(f"`{u}`" for u in offered) + ".")
    add("- Fallback when the peer refuses the file's syntax: the non-fragmentable twin (same "
        "SOP Instance UID, fragments joined), else a re-encode to an accepted video syntax "
        "(new SOP Instance UID, Source Image Sequence naming the original), else frame by "
        "frame. Every fallback is reported per file.")
    add("- C-STORE is sent from the file in chunks; associations are retried with "
        "exponential backoff (destination `retries`, `retry_delay_s`, `timeout_s`). "
        "Maximum PDU size received: unlimited (0).")
    add("- Storage Commitment: N-ACTION on the storage association; the N-EVENT-REPORT is "
        "accepted on that association or on a new one to `commitment_port`.")
    add("- Modality Worklist C-FIND return keys: "
        + ", ".join(f"`{k}`" for k in RETURN_KEYS) + "; Scheduled Procedure Step keys: "
        + ", ".join(f"`{k}`" for k in STEP_KEYS) + ".")
    add("- STOW-RS: one multipart/related request per batch, Content-Length computed up "
        "front, files streamed from disk.")
    add("")
    add("### 3.4 Storage Commitment SCU")
    add("")
    add("Storage Commitment Push Model (PS3.4 J) per destination with `storage_commitment = "
        "true`: N-ACTION Request Storage Commitment on the storage association, listing every "
        "instance stored there; the answer (N-EVENT-REPORT) is taken on that association "
        "when the peer sends it there, else on a new association the peer opens to us:")
    add("")
    add(_row("Destination setting", "Default", "Meaning"))
    add(_row("---", "---", "---"))
    for name, meaning in COMMITMENT_SETTINGS.items():
        add(_row(f"`{name}`", str(fields[name].default), meaning))
    add("")
    add("A PACS on another machine needs `commitment_listen_host` set to an address it can "
        "reach and `commitment_ae_title` to the AE title it knows us by; instances it "
        "reports as failed are reported per file as not committed.")
    add("")
    add("### 3.5 Modality Performed Procedure Step SCU")
    add("")
    add("Sent for every gateway job or recording bound to an order (`mpps_destination`) and by "
        "`vid2dcm record --mpps`: N-CREATE with PPS Status IN PROGRESS before the recording or "
        "conversion starts, N-SET COMPLETED with the Performed Series Sequence once the study "
        "is stored (or kept), or DISCONTINUED with a reason when it fails. Every attribute set "
        "later is created empty at N-CREATE (PS3.4 F.7.2.2.1). A failed N-SET is retried by "
        "the gateway's outbox with the delivery backoff until the retry window ends; an "
        "N-CREATE that never reached the SCP is sent by that retry first.")
    add("")
    create, final = mpps_attributes()
    add("- N-CREATE attributes: " + ", ".join(create) + ".")
    add("- N-SET attributes: " + ", ".join(final) + ".")
    add("- Discontinuation reasons (CID 9300, DCM): " + ", ".join(
        f"{code} {meaning}" for code, meaning in DISCONTINUED_REASONS.values()) + ".")
    add("- SR/KOS instances are not listed as images performed; a step that made nothing "
        "carries one Performed Series item with no images.")
    add("")
    add("## 4. Character sets")
    add("")
    add("Default repertoire (ASCII) unless a text value is not ASCII; then Specific "
        "Character Set (0008,0005) is `ISO_IR 192` (UTF-8).")
    add("")
    add("## 5. Security")
    add("")
    add("- DIMSE over TLS (PS3.15 B.9 style: TLS 1.2+, server certificate checked against "
        "a CA file; optional client certificate) when the destination has `tls` settings.")
    add("- STOW-RS over HTTPS with the same settings; bearer token or basic authentication.")
    add("- Patient attributes are never logged; `info` and the gateway API do not echo them.")
    add("")
    add("## 6. Created IODs")
    add("")
    for iod in VIDEO_IODS.values():
        add(f"### {iod.name} (`{iod.sop_class_uid}`, Modality {iod.modality})")
        add("")
        add("Modules: " + ", ".join(f"{n} (PS3.3 {sec})" for n, sec in MODULES[iod.choice])
            + ".")
        add("")
        add(_row("Attribute", "Tag", "VR", "Source of the value"))
        add(_row("---", "---", "---", "---"))
        for keyword in attributes_written(iod):
            tag = Tag(keyword)
            add(_row(dictionary_description(tag), f"({tag.group:04X},{tag.element:04X})",
                     dictionary_VR(tag), SOURCES.get(keyword, FIXED)))
        add("")
    add(f"### Key Object Selection Document (`{KeyObjectSelectionDocumentStorage}`, "
        "Modality KO)")
    add("")
    add("Built with highdicom (PS3.3 A.35.4, TID 2010) by `vid2dcm kos`: references the "
        "video instances of one study, inherits their patient and study, its own series; "
        "Explicit VR Little Endian. Document titles (CID 7010): "
        + ", ".join(f"{c.meaning} ({c.value}, {c.scheme_designator})"
                    for c in KOS_TITLES.values()) + ".")
    add("")
    add("## 7. Metadata fields and the attributes they fill")
    add("")
    add(_row("Metadata field", "Attribute", "VR", "Module", "Where"))
    add(_row("---", "---", "---", "---", "---"))
    for m in METADATA_ATTRIBUTES:
        add(_row(f"`{m.field}`", m.keyword, m.vr, m.module,
                 "Request Attributes Sequence item" if m.place is Place.REQUEST else "top level"))
    add("")
    _interfaces(add)
    return "\n".join(out)


def _interfaces(add: Callable[[str], None]) -> None:
    """Section 8: the HL7 v2 and FHIR interfaces of the gateway (orders in, results out),
    from the tables orders/ reads and writes with."""
    add("## 8. HL7 v2 and FHIR interfaces")
    add("")
    add("Not DICOM services; listed here so one document says what the gateway exchanges. "
        "Details, sample messages and flows: docs/integration.md.")
    add("")
    add("### 8.1 HL7 v2 orders in (MLLP listener, `[hl7] listen`, TLS optional)")
    add("")
    add("Messages taken: " + ", ".join(f"{k}^{e}" for k, e in sorted(SUPPORTED))
        + ". Order controls (ORC-1): " + ", ".join(
            f"{c} ({'keeps or reads the status' if st is None else st.value})"
            for c, st in ORDER_CONTROL_STATUS.items()) + ". Original-mode acknowledgements:")
    add("")
    add(_row("ACK code", "Meaning", "Audit event"))
    add(_row("---", "---", "---"))
    for code in AckCode:
        add(_row(code.value, ACK_MEANINGS[code],
                 FAILED_EVENT.get(code, "order received / changed / cancelled / merged")))
    add("")
    add("ERR condition codes (HL7 table 0357): " + ", ".join(
        f"{e.value} {e.name.lower().replace('_', ' ')}" for e in ErrorCode) + ".")
    add("")
    add(_row("HL7 field", "Record field", "Kind"))
    add(_row("---", "---", "---"))
    for f in HL7_FIELDS:
        add(_row(f.field, f"`{f.target}`", f.kind.value))
    add("")
    add("### 8.2 HL7 v2 results out (MLLP client, `[hl7] his`, `[hl7] result_message`)")
    add("")
    add(f"Sent once every instance of a bound job is stored; OBX carries the Study Instance "
        f"UID ({'^'.join(STUDY_UID_CODE)}) and the viewer link ({'^'.join(VIEWER_CODE)}, "
        "type RP). Retried through the outbox while the HIS cannot be reached; an AE/AR "
        "answer is not retried.")
    add("")
    add(_row("`result_message`", "MSH-9", "MSH-12", "ORC-1", "OBR-25", "Study UID OBX-2",
             "IPC", "Use"))
    add(_row("---", "---", "---", "---", "---", "---", "---", "---"))
    for name, m in RESULT_MESSAGES.items():
        add(_row(f"`{name}`", m.message_type, m.version, m.order_control,
                 m.result_status or "(empty)", m.uid_value_type, "yes" if m.ipc else "no",
                 m.use))
    add("")
    add("### 8.3 FHIR (R4 through the R4B models, R5)")
    add("")
    add("In: `POST /fhir/ServiceRequest` and polling `[fhir] server` for ServiceRequests "
        "(with their Patient, contained or included) create orders. Status: " + ", ".join(
            f"{k} -> {v.value}" for k, v in FHIR_STATUS.items()) + ".")
    add("")
    add(_row("FHIR element", "Record field"))
    add(_row("---", "---"))
    for source, target in FHIR_FIELDS:
        add(_row(source, f"`{target}`"))
    add("")
    add(f"Out: an ImagingStudy per stored study, created or updated by a conditional PUT on "
        f"its identifier (`{DICOM_UID_SYSTEM}`, `urn:oid:<Study Instance UID>`), `basedOn` "
        "the ServiceRequest, series and instances with their SOP classes, a WADO-RS Endpoint "
        "when `[fhir] wado_rs_url` is set; validated with fhir.resources before it is sent; "
        "retried through the outbox while the server is unreachable or answers 408, 429 "
        "or 5xx.")
    add("")


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
