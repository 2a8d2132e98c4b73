"""The video IODs vid2dcm writes: which SOP class, which modality."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom import uid as pu


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
        SopChoice.PHOTOGRAPHIC, "Video Photographic Image", pu.VideoPhotographicImageStorage, "XC"
    ),
    SopChoice.ENDOSCOPIC: VideoIOD(
        SopChoice.ENDOSCOPIC, "Video Endoscopic Image", pu.VideoEndoscopicImageStorage, "ES"
    ),
    SopChoice.MICROSCOPIC: VideoIOD(
        SopChoice.MICROSCOPIC, "Video Microscopic Image", pu.VideoMicroscopicImageStorage, "GM"
    ),
    SopChoice.ULTRASOUND: VideoIOD(
        SopChoice.ULTRASOUND, "Ultrasound Multi-frame Image",
        pu.UltrasoundMultiFrameImageStorage, "US", frames_only=True,
    ),
    SopChoice.SC: VideoIOD(
        SopChoice.SC, "Multi-frame True Color Secondary Capture Image",
        pu.MultiFrameTrueColorSecondaryCaptureImageStorage, "OT", frames_only=True,
    ),
}


def iod_for_sop_class(sop_class_uid: str) -> VideoIOD | None:
    for iod in VIDEO_IODS.values():
        if iod.sop_class_uid == sop_class_uid:
            return iod
    return None
