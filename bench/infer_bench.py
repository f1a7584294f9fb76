"""`infer_adaptive` local-path overhead over the bare model, same run (target < 0.3 ms at batch 1).

A digits-shaped ternary model (64-256-256-10) in a fresh OPENMIND_HOME; measures the bare
`model.predict`, `infer_adaptive(model, X, strategy="local")` (a model object) and
`infer_adaptive("digits", X, strategy="local")` (by name, from muscle memory), plus the parts an
adaptive call adds: the probe (cached), one journal record written at once (what train and sense
do) and one deferred (what infer does: written in batches, one transaction per 64 records). Wall clock, and CPU time of the calling
thread (on a shared, loaded machine the wall clock mostly measures waiting for a core).

Run: python bench/infer_bench.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
from benchlib import machine, per_call, pin_threads


def main() -> int:
    os.environ["OPENMIND_HOME"] = tempfile.mkdtemp(prefix="omh-infer-bench-")
    pin_threads(1)
    from host_predict_bench import ternary_model

    import openmind
    from openmind.flow.journal import append
    from openmind.flow.resources import probe
    from openmind.memory.blobs import entries

    rng = np.random.default_rng(0)
    model = ternary_model((64, 256, 256, 10), rng, np.zeros(64, np.float32), np.ones(64, np.float32))
    model.name = "digits"
    from openmind.memory.blobs import put

    arrays, meta = model.to_arrays()
    put("model", "digits", "bench-digits", arrays, meta)
    record = openmind.infer_adaptive(model, rng.normal(size=(1, 64)), strategy="local").route.record
    entry = {k: v for k, v in record.items() if k not in ("id", "cell", "session", "ts")}
    print(f"{machine()}; OPENMIND_HOME on {os.environ['OPENMIND_HOME']}")
    print(f"{'clock':<5} {'batch':>5} {'bare ms':>9} {'adaptive(obj) ms':>17} {'overhead':>9} "
          f"{'adaptive(name) ms':>18} {'overhead':>9} {'probe ms':>9} {'journal ms':>11} {'deferred ms':>12}")
    for clock_name, clock in (("wall", time.perf_counter), ("cpu", time.thread_time)):
        for batch in (1, 256):
            X = rng.normal(size=(batch, 64)).astype(np.float32)
            t = per_call({
                "bare": lambda X=X: model.predict(X),
                "obj": lambda X=X: openmind.infer_adaptive(model, X, strategy="local"),
                "name": lambda X=X: openmind.infer_adaptive("digits", X, strategy="local"),
                "probe": probe,
                "journal": lambda: append(dict(entry)),
                "deferred": lambda: append(dict(entry), defer=True),
            }, clock=clock)
            print(f"{clock_name:<5} {batch:>5} {t['bare'] * 1e3:>9.4f} {t['obj'] * 1e3:>17.4f} "
                  f"{(t['obj'] - t['bare']) * 1e3:>9.4f} {t['name'] * 1e3:>18.4f} "
                  f"{(t['name'] - t['bare']) * 1e3:>9.4f} {t['probe'] * 1e3:>9.4f} {t['journal'] * 1e3:>11.4f} "
                  f"{t['deferred'] * 1e3:>12.4f}")
            if batch == 1:
                worst = max(t["obj"], t["name"]) - t["bare"]
                print(f"{'':<5} {'':>5} overhead at batch 1: {worst * 1e3:.3f} ms (target < 0.3 ms: "
                      f"{'met' if worst < 0.3e-3 else 'MISSED'})")
    print(f"predictions stored in muscle memory: {len(entries('predictions'))} "
          "(cheap local predictions are computed, not cached)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
