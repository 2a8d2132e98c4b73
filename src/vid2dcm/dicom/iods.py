"""The video IODs vid2dcm writes: which SOP class, which modality."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from pydicom import uid as pu


class SopChoice(StrEnum):
    PHOTOGRAPHIC = "photographic"
    ENDOSCOPIC = "endoscopic"
    MICROSCOPIC = "microscopic"


@dataclass(frozen=True)
class VideoIOD:
    choice: SopChoice
    name: str
    sop_class_uid: str
    modality: str


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
}


def iod_for_sop_class(sop_class_uid: str) -> VideoIOD | None:
    for iod in VIDEO_IODS.values():
        if iod.sop_class_uid == sop_class_uid:
            return iod
    return None
