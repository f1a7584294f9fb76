"""`openmind serve` on loopback vs local inference of the same model, in the same run.

Starts `openmind serve` as a subprocess over a fresh OPENMIND_HOME holding a digits model, then for
batch 1 and batch 256 measures requests/s, p50 and p99 latency of POST /v2/models/digits/infer
(one keep-alive client, sequential requests, bounded counts) and of local inference of the same
model on the same rows; prints the ratios (served / local). Run: python bench/serve_bench.py
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

import numpy as np

BATCHES = {1: 400, 256: 80}  # batch size -> requests measured (bounded: ~seconds on 2 cores)
WARMUP = 10


def store_model():
    """The digits model in muscle memory; the real TernaryModel once ternary/train are on main."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    import openmind

    openmind.train_or_load("digits", X, y, hidden=64, epochs=15)
    return X


def timed(fn, n: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def stats(samples: list[float], batch: int) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    total = sum(samples)
    return {"rps": len(samples) / total, "rows_s": len(samples) * batch / total,
            "p50": statistics.median(ms), "p99": p99}


def main() -> int:
    os.environ["OPENMIND_HOME"] = tempfile.mkdtemp(prefix="omh-serve-bench-")
    X = store_model()
    from openmind.intents.infer import load_local_model
    from openmind.pathways.cloud.oip import OIPClient
    from openmind.serve import ServeProcess

    model = load_local_model("digits")
    token = "bench-token"
    with ServeProcess(home=os.environ["OPENMIND_HOME"], token=token) as srv:
        client = OIPClient(srv.url, token=token, retries=0)
        print(f"openmind serve at {srv.url}; model 'digits' ({type(model.model).__name__}); "
              f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
        print(f"{'batch':>5} {'path':<7} {'req/s':>9} {'rows/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
        for batch, n in BATCHES.items():
            rows = X[:batch]
            served_labels = client.infer("digits", rows)["label"]
            local_labels = model.predict(rows)[0]
            assert np.array_equal(served_labels, local_labels), "served != local predictions"
            s = stats(timed(lambda rows=rows: client.infer("digits", rows), n), batch)
            loc = stats(timed(lambda rows=rows: model.predict(rows), n), batch)
            for name, r in (("serve", s), ("local", loc)):
                print(f"{batch:>5} {name:<7} {r['rps']:>9.1f} {r['rows_s']:>11.0f} {r['p50']:>8.3f} {r['p99']:>8.3f}")
            print(f"{batch:>5} ratio   serve/local: throughput {s['rps'] / loc['rps']:.4f}x, "
                  f"p50 latency {s['p50'] / loc['p50']:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
