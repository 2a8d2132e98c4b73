"""Plain-data views of the pipeline's records, for --json output and for people."""

from __future__ import annotations

import dataclasses
import enum
from fractions import Fraction
from pathlib import Path
from typing import Any

from vid2dcm.core.media_info import MediaInfo
from vid2dcm.core.syntaxes import uid_name
from vid2dcm.pipeline import ConversionResult
from vid2dcm.planning.plan import Plan


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


def conversion_report(result: ConversionResult) -> dict[str, Any]:
    return {
        "files": to_plain(result.files),
        "study_instance_uid": result.study_instance_uid,
        "series_instance_uid": result.series_instance_uid,
        "action": result.plan.action.value,
        "transfer_syntax": uid_name(result.files[0].transfer_syntax_uid),
        "transcode": None if result.transcode is None else {
            **to_plain(result.transcode),
            "lost_frames": result.transcode.lost_frames,
            "frames_per_second": round(result.transcode.frames_per_second, 2),
        },
        "quality": to_plain(result.quality),
        "warnings": list(result.warnings),
    }


def probe_report(info: MediaInfo, plan: Plan) -> dict[str, Any]:
    media = to_plain(info)
    media["video"].pop("keyframes", None)
    media["video"]["keyframe_count"] = len(info.video.keyframes)
    media["facts"] = to_plain(info.facts)  # each number with where it came from
    return {
        "media": media,
        "plan": {
            "action": plan.action.value,
            "iod": plan.iod.name,
            "sop_class_uid": plan.iod.sop_class_uid,
            "transfer_syntax_uid": plan.transfer_syntax_uid,
            "transfer_syntax": uid_name(plan.transfer_syntax_uid) if plan.transfer_syntax_uid
            else None,
            "container": plan.container.value if plan.container else None,
            "layout": plan.layout.value,
            "instances": len(plan.segments),
            "audio": [{**to_plain(a), "action": a.action} for a in plan.audio],
            "video_target": to_plain(plan.video_target),
            "broken_rules": list(plan.broken_rules),
            "decisions": to_plain(plan.decisions),
            "warnings": list(plan.warnings),
        },
    }
