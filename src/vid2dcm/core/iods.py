"""The video IODs vid2dcm writes: which SOP class, which modality."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class SopChoice(StrEnum):
    PHOTOGRAPHIC = "photographic"
    ENDOSCOPIC = "endoscopic"
    MICROSCOPIC = "microscopic"
    ULTRASOUND = "ultrasound"
    SC = "sc"


@dataclass(frozen=True)
class VideoIOD:
    choice: SopChoice
    name: str
    sop_class_uid: str
    modality: str
    frames_only: bool = False
    """Stored frame by frame (JPEG, RLE...): the IOD is for receivers without video support."""


VIDEO_IODS: dict[SopChoice, VideoIOD] = {
    SopChoice.PHOTOGRAPHIC: VideoIOD(
        SopChoice.PHOTOGRAPHIC, "Video Photographic Image", "1.2.840.10008.5.1.4.1.1.77.1.4.1", "XC"
    ),
    SopChoice.ENDOSCOPIC: VideoIOD(
        SopChoice.ENDOSCOPIC, "Video Endoscopic Image", "1.2.840.10008.5.1.4.1.1.77.1.1.1", "ES"
    ),
    SopChoice.MICROSCOPIC: VideoIOD(
        SopChoice.MICROSCOPIC, "Video Microscopic Image", "1.2.840.10008.5.1.4.1.1.77.1.2.1", "GM"
    ),
    SopChoice.ULTRASOUND: VideoIOD(
        SopChoice.ULTRASOUND, "Ultrasound Multi-frame Image",
        "1.2.840.10008.5.1.4.1.1.3.1", "US", frames_only=True,
    ),
    SopChoice.SC: VideoIOD(
        SopChoice.SC, "Multi-frame True Color Secondary Capture Image",
        "1.2.840.10008.5.1.4.1.1.7.4", "OT", frames_only=True,
    ),
}


def iod_for_sop_class(sop_class_uid: str) -> VideoIOD | None:
    for iod in VIDEO_IODS.values():
        if iod.sop_class_uid == sop_class_uid:
            return iod
    return None
