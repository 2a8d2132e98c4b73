"""What de-identification costs per minute of 1080p video on this machine.

Synthesises an endoscopy-like 1920x1080 clip (banner with the identity, a face, AAC audio),
converts it with vid2dcm (copy path), de-identifies it with the defaults plus faces, and prints
the time of each stage scaled to one minute of video, and the per-frame cost of OCR and of the
face detector.

    .venv/bin/python benchmarks/deidentify.py [--seconds 10] [--rate 30] [--every 1.0]
        [--repeat 3] [--faces on|off|both]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from deid_fixtures import endoscopy_frame, load_face, make_clip
from vid2dcm.core.metadata import Metadata
from vid2dcm.deidentify import DeidSettings, ProfileOptions, deidentify
from vid2dcm.deidentify.faces import detect_faces
from vid2dcm.deidentify.pixels import read_text, require_tesseract
from vid2dcm.pipeline import convert


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


def run_once(source: Path, out: Path, faces: bool, every: float) -> tuple[float, dict[str, float],
                                                                         str]:
    started = time.perf_counter()
    report = deidentify([source], out, DeidSettings(
        options=ProfileOptions(clean_recognizable_visual_features=faces),
        secret="benchmark-secret", sample_every_s=every))[0]
    total = time.perf_counter() - started
    note = (f"{report.frames_analysed} frames analysed, {len(report.masks)} masks, "
            f"verification {'passed' if report.verification.passed else 'FAILED'}")
    return total, dict(report.seconds), note


def spread(values: list[float]) -> str:
    """Median and range: the machine is shared, so one figure would hide how much it moves."""
    return (f"{statistics.median(values):.1f} (min {min(values):.1f}, max {max(values):.1f}, "
            f"n={len(values)})")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rate", type=int, default=30)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs of each variant (median and range are printed)")
    parser.add_argument("--faces", choices=("on", "off", "both"), default="on",
                        help="Clean Recognizable Visual Features in the runs; 'both' gives "
                             "the face pass's own cost as the difference")
    args = parser.parse_args()
    ocrs, detectors = [], []
    for _ in range(args.repeat):
        ocr, face = per_frame(1920, 1080)
        ocrs.append(ocr * 1000)
        detectors.append(face * 1000)
    print(f"one 1920x1080 frame, ms: OCR {spread(ocrs)}, face detector {spread(detectors)}")
    variants = {"on": (True,), "off": (False,), "both": (False, True)}[args.faces]
    scale = 60.0 / args.seconds
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
        totals: dict[bool, list[float]] = {v: [] for v in variants}
        stages: dict[tuple[bool, str], list[float]] = {}
        for run in range(args.repeat):
            for faces in variants:
                load = os.getloadavg()[0]
                total, seconds, note = run_once(source, work / f"out-{run}-{faces}", faces,
                                                args.every)
                totals[faces].append(total * scale)
                for stage, value in seconds.items():
                    stages.setdefault((faces, stage), []).append(value * scale)
                print(f"run {run + 1} faces={'on' if faces else 'off'} (load {load:.1f}): "
                      f"{total:.1f} s for {args.seconds} s of 1080p{args.rate}; {note}")
    print("| variant | stage | seconds per minute of 1080p video: median (range) |")
    print("|---|---|---|")
    for faces in variants:
        name = "defaults + faces" if faces else "defaults"
        for (f, stage), values in stages.items():
            if f == faces:
                print(f"| {name} | {stage} | {spread(values)} |")
        print(f"| {name} | **total** | {spread(totals[faces])} |")
    if len(variants) == 2:
        extra = [b - a for a, b in zip(totals[False], totals[True], strict=True)]
        print(f"face pass (faces on - off, same run): {spread(extra)} s per minute")


if __name__ == "__main__":
    main()
