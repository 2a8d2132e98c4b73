"""What de-identification costs per minute of 1080p video on this machine.

Synthesises an endoscopy-like 1920x1080 clip (banner with the identity, a face, AAC audio),
converts it with vid2dcm (copy path), de-identifies it with the defaults plus faces, and prints
the time of each stage scaled to one minute of video, and the per-frame cost of OCR and of the
face detector.

    .venv/bin/python benchmarks/deidentify.py [--seconds 10] [--rate 30] [--every 1.0]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from deid_fixtures import endoscopy_frame, load_face, make_clip  # noqa: E402

from vid2dcm.core.metadata import Metadata  # noqa: E402
from vid2dcm.deidentify import DeidSettings, ProfileOptions, deidentify  # noqa: E402
from vid2dcm.deidentify.faces import detect_faces  # noqa: E402
from vid2dcm.deidentify.pixels import read_text, require_tesseract  # noqa: E402
from vid2dcm.pipeline import convert  # noqa: E402


def per_frame(width: int, height: int, repeats: int = 5) -> tuple[float, float]:
    frame = endoscopy_frame(width, height, 0, load_face(height))
    require_tesseract()
    started = time.perf_counter()
    for _ in range(repeats):
        read_text(frame, 0.0)
    ocr = (time.perf_counter() - started) / repeats
    detect_faces(frame)
    started = time.perf_counter()
    for _ in range(repeats):
        detect_faces(frame)
    return ocr, (time.perf_counter() - started) / repeats


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--every", type=float, default=1.0)
    args = parser.parse_args()
    ocr, face = per_frame(1920, 1080)
    print(f"one 1920x1080 frame: OCR {ocr * 1000:.0f} ms, face detector {face * 1000:.0f} ms")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        frames = args.seconds * args.rate
        started = time.perf_counter()
        clip = make_clip(work / "clip.mp4", width=1920, height=1080, frames=frames,
                         rate=args.rate)
        print(f"synthesised {frames} frames in {time.perf_counter() - started:.1f} s")
        source = work / "in.dcm"
        convert(clip, source, metadata=Metadata(patient_name="DOE^JANE", patient_id="PID-4711",
                                                patient_birth_date=date(1970, 1, 31)))
        started = time.perf_counter()
        report = deidentify([source], work / "out", DeidSettings(
            options=ProfileOptions(clean_recognizable_visual_features=True),
            secret="benchmark-secret", sample_every_s=args.every))[0]
        total = time.perf_counter() - started
    scale = 60.0 / args.seconds
    print(f"de-identified {args.seconds} s of 1080p{args.rate} in {total:.1f} s "
          f"({report.frames_analysed} frames analysed, {len(report.masks)} masks, "
          f"verification {'passed' if report.verification.passed else 'FAILED'})")
    print("| stage | seconds per minute of 1080p video |")
    print("|---|---|")
    for stage, seconds in report.seconds.items():
        print(f"| {stage} | {seconds * scale:.1f} |")
    print(f"| total | {total * scale:.1f} |")


if __name__ == "__main__":
    main()
