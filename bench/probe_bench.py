"""Warm and cold probe times on this machine (goals: warm < 1 ms, cold < 300 ms).

cold  = the first probe in a fresh process (imports of the probe's own libraries included,
        `import openmind` excluded), median of several processes;
refresh = probe(refresh=True) in a warm process (every resource re-probed);
warm  = probe() served from the TTL cache.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, time, openmind
t = time.perf_counter(); openmind.probe(); cold = time.perf_counter() - t
print(json.dumps({"cold": cold}))
"""


def main(runs: int = 7) -> None:
    env = dict(os.environ, OPENMIND_HOME=tempfile.mkdtemp(prefix="omh-bench-"))
    colds = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                             check=True)
        colds.append(json.loads(out.stdout)["cold"])
    os.environ.update(env)
    import openmind

    openmind.probe()
    refresh = []
    for _ in range(runs):
        t = time.perf_counter()
        openmind.probe(refresh=True)
        refresh.append(time.perf_counter() - t)
    n = 10_000
    t = time.perf_counter()
    for _ in range(n):
        openmind.probe()
    warm = (time.perf_counter() - t) / n
    cold = statistics.median(colds)
    print(f"probe cold    {cold * 1e3:8.2f} ms  (median of {runs} fresh processes; goal < 300 ms: "
          f"{cold / 0.300:.2f}x of goal)")
    print(f"probe refresh {statistics.median(refresh) * 1e3:8.2f} ms  (median, warm process)")
    print(f"probe warm    {warm * 1e6:8.2f} us  (mean of {n}; goal < 1 ms: {warm / 1e-3:.4f}x of goal)")
    print(openmind.probe())


if __name__ == "__main__":
    main()
