"""The monitor's cost per sample: `openmind.monitor` over a simulated temperature stream against
the anchor, the same model's packed kernel predicting the same samples in one batch, in the same run.

Prints samples/s of each and the ratio (how many times slower watching is than predicting: drift
tests every `step` rows, Page–Hinkley per labelled row, the journal per event).
Usage: python bench/monitor_bench.py [minutes of 1 Hz stream, default 40]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np


def main(minutes: int = 40) -> None:
    os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="openmind-bench-"))
    import openmind

    def stream(seed: int, n_minutes: int) -> np.ndarray:
        s = openmind.sense_or_simulate("temperature", f"{n_minutes}min", "1Hz", source="simulate",
                                       seed=seed, progress=False)
        return s.values + np.random.default_rng(seed).normal(0, 1.0, len(s.values))

    train = stream(1, 20)
    usual = float(np.median(train))
    model = openmind.train_or_load("bench-room", train.reshape(-1, 1), (train > usual).astype(int),
                                   hidden=[32], epochs=10, progress=False)
    v = stream(2, minutes)
    labels = (v > usual).astype(int)
    openmind.monitor(model, v[:200], reference=train, action="alert", live=False)  # imports, caches
    t0 = time.perf_counter()
    for _ in range(5):
        model.predict_proba(v.reshape(-1, 1))
    anchor = (time.perf_counter() - t0) / 5
    print(f"{'what':<34} {'samples':>8} {'seconds':>9} {'samples/s':>11} {'x anchor':>9}")
    print(f"{'anchor: predict_proba, one batch':<34} {len(v):>8} {anchor:>9.4f} {len(v) / anchor:>11.0f} {1.0:>9.1f}")
    for what, kwargs in (("monitor, inputs only", {}), ("monitor, inputs + labels", {"labels": labels})):
        t0 = time.perf_counter()
        w = openmind.monitor(model, v, reference=train, action="alert", live=False, **kwargs)
        took = time.perf_counter() - t0
        print(f"{what:<34} {w.samples:>8} {took:>9.4f} {w.samples / took:>11.0f} {took / anchor:>9.1f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 40)
