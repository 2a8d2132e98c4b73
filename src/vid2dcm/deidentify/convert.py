"""convert + deidentify in one call: what `convert --deidentify PROFILE` and a gateway export
need. The identified instances exist only in a scratch folder inside the output folder and
are gone when this returns, whatever happens."""

from __future__ import annotations

import tempfile
from pathlib import Path

from vid2dcm.core.errors import UsageError
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify.engine import DeidSettings, deidentify
from vid2dcm.deidentify.profile import ProfileOptions
from vid2dcm.deidentify.report import DeidReport
from vid2dcm.pipeline import ConversionResult, Progress, convert
from vid2dcm.planning.plan import Request

PROFILES: dict[str, ProfileOptions] = {
    "basic": ProfileOptions(),
    "faces": ProfileOptions(clean_recognizable_visual_features=True),
    "research": ProfileOptions(clean_recognizable_visual_features=True,
                               retain_modified_dates=True,
                               retain_patient_characteristics=True),
    "header-only": ProfileOptions(clean_pixel_data=False),
}
"""Named option sets for `--deidentify PROFILE`. 'basic' is the safe default (Basic + Clean
Pixel Data + Clean Descriptors, audio removed); 'header-only' leaves burned-in text alone and
must not be used for pictures with overlays."""


def profile_named(name: str) -> ProfileOptions:
    try:
        return PROFILES[name]
    except KeyError:
        raise UsageError(f"unknown de-identification profile {name!r} "
                         f"(choose from {', '.join(PROFILES)})") from None


def convert_deidentified(source: str | Path, out_dir: str | Path, *,
                         metadata: Metadata | None = None, options: Request | None = None,
                         settings: DeidSettings | None = None,
                         progress: Progress | None = None
                         ) -> tuple[ConversionResult, list[DeidReport]]:
    """Convert a video, then de-identify every instance it made into out_dir. The parts of a
    split recording keep referencing each other: their UIDs map through the same secret."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".vid2dcm-identified-", dir=out) as tmp:
        result = convert(source, Path(tmp), metadata=metadata, options=options,
                         progress=progress)
        reports = deidentify([f.path for f in result.files], out, settings)
    return result, reports
