"""The cell pathway against its anchors, in one run: a cell that reads 100 MB of numpy input.

  1. a hit (fingerprint the input + look up + restore + replay) vs re-running the cell
  2. the same hit vs joblib.Memory's hit on the same function and input (the anchor users know)
  3. the parts of a hit: fingerprinting the 100 MB input, and the rest (lookup, verify, restore)
  4. the same, for a cell that also binds a 100 MB intermediate (kept, so a hit restores it)

Each figure is the median of --repeat runs. Run: .venv/bin/python bench/cell_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time

import numpy as np

CELL = """
# the user's own analysis: standardise, find the top components, summarise
centered = (signal - signal.mean(axis=0)) / signal.std(axis=0)
cov = centered.T @ centered / len(centered)
eigvals, eigvecs = np.linalg.eigh(cov)
components = eigvecs[:, -8:]
scores = np.abs(centered[:1000] @ components)
summary = {"explained": float(eigvals[-8:].sum() / eigvals.sum()), "rows": len(centered)}
print("explained variance", round(summary["explained"], 4))
del centered
"""
# the same analysis keeping its 100 MB intermediate as a variable
CELL_BIG = CELL.replace("del centered", "")


def analyse(signal: np.ndarray) -> dict:
    """The cell's body as a function, for joblib.Memory and @openmind.remember."""
    ns = {"np": np, "signal": signal}
    exec(CELL, ns)  # noqa: S102 - the benchmark's own code
    return {"components": ns["components"], "scores": ns["scores"], "summary": ns["summary"]}


def timed(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def cell_hit(openmind, cell: str, signal: np.ndarray, repeat: int, **policy) -> tuple[float, str]:
    openmind.run_cell(cell, {"np": np, "signal": signal}, **policy)  # the run that keeps it
    seconds, result = timed(lambda: openmind.run_cell(cell, {"np": np, "signal": signal}, **policy), repeat)
    return seconds, f"{result.route.pathway.value}/{result.route.decision.value}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=float, default=100.0, help="input size in MB (default 100)")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="openmind-cell-bench-")
    os.environ["OPENMIND_HOME"] = home
    import joblib

    import openmind
    from openmind.intents.cellkey import Fingerprinter

    rows = int(args.mb * 1e6 / (64 * 8))
    signal = np.random.default_rng(0).normal(size=(rows, 64))
    print(f"input: {signal.nbytes / 1e6:.0f} MB float64 ({rows} x 64); median of {args.repeat}; "
          f"OPENMIND_HOME={home}", flush=True)

    rerun, _ = timed(lambda: exec(CELL, {"np": np, "signal": signal}), args.repeat)  # noqa: S102
    hit, how = cell_hit(openmind, CELL, signal, args.repeat)
    assert how == "muscle_memory/CACHED", how
    fingerprint, _ = timed(lambda: Fingerprinter().of(signal, "signal"), args.repeat)

    remember = openmind.remember(analyse)
    remember(signal)
    remember_hit, _ = timed(lambda: remember(signal), args.repeat)
    assert remember.last_route.decision.value == "CACHED"

    memory = joblib.Memory(os.path.join(home, "joblib"), verbose=0)
    cached = memory.cache(analyse)
    cached(signal)
    joblib_hit, _ = timed(lambda: cached(signal), args.repeat)

    rerun_big, _ = timed(lambda: exec(CELL_BIG, {"np": np, "signal": signal}), args.repeat)  # noqa: S102
    routed_big, how_big = cell_hit(openmind, CELL_BIG, signal, args.repeat)
    forced_big, how_forced = cell_hit(openmind, CELL_BIG, signal, args.repeat, strategy="cached")

    print(f"re-running the cell          {rerun * 1000:9.1f} ms   (the anchor)")
    print(f"openmind.run_cell hit        {hit * 1000:9.1f} ms   {rerun / hit:7.1f}x faster than re-running")
    print(f"  of which fingerprinting    {fingerprint * 1000:9.1f} ms   (xxh3 over {signal.nbytes / 1e6:.0f} MB)")
    print(f"  lookup+verify+restore      {(hit - fingerprint) * 1000:9.1f} ms")
    print(f"@openmind.remember hit       {remember_hit * 1000:9.1f} ms   {rerun / remember_hit:7.1f}x faster than re-running")
    print(f"joblib.Memory hit            {joblib_hit * 1000:9.1f} ms   {rerun / joblib_hit:7.1f}x faster than re-running")
    print(f"ratio joblib.Memory hit / openmind hit: {joblib_hit / hit:.1f}x "
          f"(remember: {joblib_hit / remember_hit:.1f}x)")
    print(f"cell keeping a 100 MB intermediate: re-run {rerun_big * 1000:.1f} ms; restoring it "
          f"(strategy=cached, {how_forced}) {forced_big * 1000:.1f} ms ({rerun_big / forced_big:.1f}x); "
          f"routed ({how_big}) {routed_big * 1000:.1f} ms ({rerun_big / routed_big:.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
