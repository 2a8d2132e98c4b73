"""Transcode benchmark: encode speed and quality per --speed / --quality on this machine.

Input: a synthetic 1080p30 MJPEG clip (moving bar over gradients, deterministic) and a 4K clip for
the HEVC target. Synthetic pictures compress far better than camera video, so sizes and PSNR are
optimistic; speeds are representative of the encoder settings. Results go to stdout as a table.

    .venv/bin/python benchmarks/transcode_presets.py [--seconds 10]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from vid2dcm.pipeline import convert
from vid2dcm.planning.plan import Request
from vid2dcm.planning.video_target import Quality, Speed
from vid2dcm.producing.synth import ClipSpec, synthesize


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        frames = int(args.seconds * 30)
        hd = synthesize(folder / "hd.avi", ClipSpec(
            codec="mjpeg", pix_fmt="yuvj420p", width=1920, height=1080, rate=Fraction(30),
            frames=frames, options={}))
        uhd = synthesize(folder / "uhd.avi", ClipSpec(
            codec="mjpeg", pix_fmt="yuvj420p", width=3840, height=2160, rate=Fraction(30),
            frames=max(10, frames // 10), options={}))
        print(f"{'input':10} {'target':34} {'speed':9} {'quality':9} {'fps':>7} {'x RT':>5} "
              f"{'MB':>7} {'PSNR dB':>8} {'SSIM':>7}")
        cases = [(hd, s, Quality.STANDARD) for s in Speed] + [
            (hd, Speed.BALANCED, q) for q in (Quality.ARCHIVE, Quality.COMPACT)] + [
            (uhd, Speed.BALANCED, Quality.STANDARD)]
        for source, speed, quality in cases:
            out = folder / "out.dcm"
            start = time.perf_counter()
            result = convert(source, out, options=Request(speed=speed, quality=quality,
                                                          measure_quality=True),
                             overwrite=True)
            wall = time.perf_counter() - start
            stats, q = result.transcode, result.quality
            assert stats is not None and q is not None and result.plan.video_target
            fps = stats.frames_per_second
            print(f"{source.stem:10} {result.plan.video_target.describe()[:34]:34} "
                  f"{speed.value:9} {quality.value:9} {fps:7.1f} {fps / 30:5.2f} "
                  f"{result.files[0].bitstream_bytes / 1e6:7.2f} {q.psnr_db:8.2f} "
                  f"{q.ssim:7.4f}  (wall {wall:.1f} s)")


if __name__ == "__main__":
    main()
