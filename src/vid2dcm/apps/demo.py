"""`make run`: synthesise a sample clip, convert it, validate the result, say how to look at it."""

from __future__ import annotations

import shutil
import sys
from fractions import Fraction
from pathlib import Path

from vid2dcm.core.metadata import Metadata
from vid2dcm.core.syntaxes import uid_name
from vid2dcm.pipeline import convert
from vid2dcm.producing.synth import AudioSpec, ClipSpec, synthesize
from vid2dcm.validation.validate import validate


def run(folder: Path) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    clip = synthesize(folder / "sample.mp4", ClipSpec(
        width=640, height=360, rate=Fraction(25), frames=100, audio=AudioSpec(),
        options={"preset": "superfast", "profile": "high"}))
    print(f"synthesised {clip} (4 s, H.264 High 640x360 25 fps + AAC 48 kHz)")
    target = folder / "sample.dcm"
    target.unlink(missing_ok=True)
    result = convert(clip, target, metadata=Metadata(
        patient_name="Sample^Demo", patient_id="DEMO-0001", study_description="vid2dcm sample"))
    for f in result.files:
        print(f"wrote {f.path}: {uid_name(f.transfer_syntax_uid)}, {f.frames} frames, "
              f"{f.columns}x{f.rows}, {f.size_bytes} bytes, {f.action.value}")
    report = validate(target)
    print(f"validation: {'valid' if report.ok else 'INVALID'}; dciodvfy {report.dciodvfy}")
    for finding in report.findings:
        print(f"  {finding.severity.value} [{finding.source}] {finding.message}")
    print("\ninspect it with:")
    print(f"  .venv/bin/vid2dcm info {target}")
    print(f"  .venv/bin/vid2dcm extract {target} -o {folder / 'roundtrip.mp4'}")
    if shutil.which("dcmdump"):
        print(f"  dcmdump {target}")
    if shutil.which("dciodvfy"):
        print(f"  dciodvfy {target}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(run(Path(sys.argv[1] if len(sys.argv) > 1 else "sample")))
