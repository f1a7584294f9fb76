"""Serial stream throughput: the firmware's host build on a pty, read through `Link.capture`.

For each rate, prints samples received per second, the ratio to the requested rate (the anchor,
set by the device's clock in the same run), lost samples, and host CPU per sample (the headroom).
Usage: python bench/stream_bench.py [seconds per rate, default 3]
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from vdev_fixtures import BUILD, VDev, make  # noqa: E402

from openmind.pathways.device import Link  # noqa: E402


def main(seconds: float = 3.0) -> None:
    make("all")
    dev = VDev(BUILD / "openmind-vdev")
    try:
        with Link(dev.port) as link:
            link.hello(2.0)
            print(f"{'rate Hz':>8} {'samples':>8} {'got/s':>9} {'ratio':>6} {'lost':>5} {'cpu us/sample':>14}")
            for rate in (100, 1000, 2000, 5000):
                count = int(rate * seconds)
                t0, c0 = time.perf_counter(), time.process_time()
                cap = link.capture("sine", rate, count, timeout=3.0)
                wall, cpu = time.perf_counter() - t0, time.process_time() - c0
                got = cap.received / wall
                print(f"{rate:>8} {cap.received:>8} {got:>9.1f} {got / rate:>6.3f} {cap.lost:>5} "
                      f"{1e6 * cpu / max(1, cap.received):>14.1f}"
                      + (f"  ({cap.error})" if cap.error else ""))
    finally:
        dev.close()


if __name__ == "__main__":
    try:
        main(float(sys.argv[1]) if len(sys.argv) > 1 else 3.0)
    except subprocess.CalledProcessError as exc:
        sys.exit(f"build failed: {exc}")
