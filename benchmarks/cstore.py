"""C-STORE of one large instance: `vid2dcm send` against DCMTK `storescu`, side by side.

Both send the same file to the same DCMTK `storescp` (which writes it to disk), alternating
reference and vid2dcm for --reps rounds, each as its own process (so vid2dcm pays its Python
start-up, as a user would). Reported: medians, min-max, the ratio of medians, and vid2dcm's
peak RSS (VmHWM). `--pdu` sets storescp's maximum PDU length (DCMTK's default is 16384, as
is Orthanc's): the sender may not exceed it (PS3.8 9.3.4), so it fixes the number of PDUs.

    nice .venv/bin/python benchmarks/cstore.py [--gigabytes 1.0] [--reps 3] [--pdu 16384]
        [--instance existing.dcm] [--baseline-src /path/to/other/checkout/src]

--baseline-src adds a fourth contender in the same rounds: `vid2dcm send` run from another
source tree (PYTHONPATH), e.g. the main branch, for before/after figures on a busy machine.

The instance is generated in a temporary folder (removed afterwards) unless --instance names
one. No timed assertions anywhere: this prints numbers, the tests check behaviour.
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from run import Timing, gigabyte_input, run, vid2dcm


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"storescp did not listen on {port}")


TRANSFER = """
import sys, time
from pathlib import Path
from vid2dcm.delivery.destinations import parse_destination
from vid2dcm.delivery.send import deliver
dest = parse_destination(sys.argv[2])
start, cpu = time.perf_counter(), time.process_time()
receipts = deliver([Path(sys.argv[1])], dest)
assert all(r.ok for r in receipts), receipts
print(f"SECONDS={time.perf_counter() - start} CPU={time.process_time() - cpu}")
"""

TRANSFER_CPU: list[float] = []
"""CPU seconds of deliver() alone (all threads of the process), imports excluded."""


def transfer(instance: Path, port: int, timing: Timing) -> None:
    """vid2dcm's delivery without the process start: imports first, then the clock."""
    proc = subprocess.run([sys.executable, "-c", TRANSFER, str(instance),
                           f"BENCH@127.0.0.1:{port}"], capture_output=True, text=True,
                          check=True)
    timing.seconds.append(float(proc.stdout.split("SECONDS=")[1].split()[0]))
    TRANSFER_CPU.append(float(proc.stdout.split("CPU=")[1]))


CPU: dict[str, list[float]] = {}
"""CPU seconds (user + system) of each contender's process per round: on a shared machine
wall time depends on the neighbours, CPU time much less."""


def run_from(source: Path, cmd: list[str], timing: Timing) -> None:
    """cmd with another checkout's package first on the path."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": str(source)})
    timing.seconds.append(time.perf_counter() - start)
    if proc.returncode != 0:
        raise SystemExit(f"baseline failed: {proc.stderr.strip()[-400:]}")
    for line in proc.stderr.splitlines():
        if line.startswith("PEAK_KB="):
            timing.peak_mb.append(int(line.split("=")[1]) / 1024)


def measure(instance: Path, folder: Path, reps: int, pdu: int, baseline: Path | None
            ) -> tuple[Timing, Timing, Timing, Timing]:
    received = folder / "received"
    received.mkdir(exist_ok=True)
    port = free_port()
    server = subprocess.Popen(["storescp", "-aet", "BENCH", "+xa", "--max-pdu", str(pdu),
                               "-od", str(received), str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    reference = ["storescu", "-xn", "-R", "-aec", "BENCH", "127.0.0.1", str(port),
                 str(instance)]
    ours = vid2dcm("send", str(instance), "--to", f"BENCH@127.0.0.1:{port}",
                   "--allow-unidentified")
    ref, mine, moved, before = Timing(), Timing(), Timing(), Timing()
    steps: list[tuple[str, Callable[[], None]]] = [
        ("storescu", lambda: run(reference, ref)), ("vid2dcm send", lambda: run(ours, mine)),
        ("deliver()", lambda: transfer(instance, port, moved))]
    if baseline is not None:
        steps.append(("baseline", lambda: run_from(baseline, ours, before)))
    try:
        wait_listening(port)
        for _ in range(reps):
            for what, step in steps:
                used = resource.getrusage(resource.RUSAGE_CHILDREN)
                step()
                now = resource.getrusage(resource.RUSAGE_CHILDREN)
                CPU.setdefault(what, []).append(now.ru_utime + now.ru_stime - used.ru_utime
                                                - used.ru_stime)
                stored = list(received.iterdir())
                if len(stored) != 1 or stored[0].stat().st_size < instance.stat().st_size // 2:
                    raise SystemExit(f"{what}: storescp did not receive the instance")
                stored[0].unlink()
    finally:
        server.terminate()
        server.wait(timeout=10)
    return ref, mine, moved, before


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--gigabytes", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pdu", type=int, default=16384)
    parser.add_argument("--instance", type=Path)
    parser.add_argument("--baseline-src", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vid2dcm-cstore-") as tmp:
        folder = Path(tmp)
        instance = args.instance
        if instance is None:
            big = gigabyte_input(folder, args.gigabytes)
            instance = folder / "sent.dcm"
            subprocess.run([sys.executable, "-m", "vid2dcm.apps.cli", "convert", str(big),
                            "-o", str(instance)], check=True, capture_output=True)
            big.unlink()
        start = Timing()
        for _ in range(args.reps):
            run(vid2dcm("--version"), start)
        ref, mine, moved, before = measure(instance, folder, args.reps, args.pdu,
                                           args.baseline_src)
    size = instance.stat().st_size / 1e9 if instance.exists() else args.gigabytes
    peak = f"{max(mine.peak_mb):.0f} MB" if mine.peak_mb else "-"
    print(f"C-STORE of a {size:.1f} GB instance, max PDU {args.pdu}, {args.reps} rounds")
    print(f"  storescu -xn  {ref.median:.2f} s ({ref.span()})")
    print(f"  vid2dcm send  {mine.median:.2f} s ({mine.span()})  peak RSS {peak}")
    print(f"  ratio         {mine.median / ref.median:.2f}x")
    print(f"  deliver()     {moved.median:.2f} s ({moved.span()}), ratio "
          f"{moved.median / ref.median:.2f}x: the transfer alone, imports done")
    if before.seconds:
        peak_before = f"{max(before.peak_mb):.0f} MB" if before.peak_mb else "-"
        print(f"  baseline send {before.median:.2f} s ({before.span()})  peak RSS {peak_before}"
              f", ratio {before.median / ref.median:.2f}x ({args.baseline_src})")
    cpu = {what: statistics.median(times) for what, times in CPU.items()}
    print("  CPU seconds (user+system, median): " + ", ".join(
        f"{what} {seconds:.2f}" for what, seconds in cpu.items()))
    moved_cpu = statistics.median(TRANSFER_CPU)
    print(f"  deliver() alone: {moved_cpu:.2f} CPU s, {moved_cpu / cpu['storescu']:.2f}x "
          "storescu's whole process")
    print(f"  CPU ratio     {cpu['vid2dcm send'] / cpu['storescu']:.2f}x"
          + (f" (baseline {cpu['baseline'] / cpu['storescu']:.2f}x)" if "baseline" in cpu else ""))
    print(f"  (of which Python start-up, `vid2dcm --version`: {start.median:.2f} s)")


if __name__ == "__main__":
    main()
