"""Ternary models and muscle memory, measured against their anchors in one run.

  1. digits test accuracy, ternary vs the same architecture in fp32, 5 seeds (target: ternary
     >= 97% and within 0.5 pt of fp32)
  2. packed bytes vs the fp32 model's bytes (target: <= 1/14)
  3. second identical train_or_load (cache hit) vs the first (training) (target: >= 100x faster)
  4. fingerprint of a 100 MB array vs joblib.hash (target: >= 3x faster)

Run: .venv/bin/python bench/train_bench.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def accuracy(seeds: int) -> tuple[list[float], list[float], object]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from openmind.pathways.ternary.fit import FitJob, fit, resolve_config, standardization
    from openmind.pathways.ternary.net import export, torch_scores

    X, y = load_digits(return_X_y=True)
    tern, full, model = [], [], None
    for seed in range(seeds):
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=seed, stratify=y)
        # the default architecture, trained on the whole training split for the full 60 epochs
        cfg = resolve_config({"seed": seed, "val_fraction": 0.0, "patience": 1000})
        mean, inv_std = standardization(Xtr)
        for quantize, acc in ((True, tern), (False, full)):
            out = fit(Xtr, ytr, FitJob(10, cfg, mean, inv_std, quantize=quantize, progress=False))
            if quantize:
                model = export(out.net, mean, inv_std, np.arange(10), name="digits", config=cfg, info={})
                acc.append(model.score(Xte, yte))  # the packed arithmetic, as the device runs it
            else:
                acc.append(float((torch_scores(out.net, Xte, mean, inv_std).argmax(1) == yte).mean()))
        print(f"  seed {seed}: ternary {tern[-1]:.4f}  fp32 {full[-1]:.4f}", flush=True)
    return tern, full, model


def cache_hit(repeats: int = 5) -> tuple[float, float, float]:
    """(train seconds, first hit seconds, median hit seconds): every repeat is an identical call."""
    from sklearn.datasets import load_digits

    from openmind.intents.train import train_or_load

    X, y = load_digits(return_X_y=True)
    t0 = time.perf_counter()
    first = train_or_load("bench-digits", X, y, progress=False)
    train_s = time.perf_counter() - t0
    hits = []
    for _ in range(repeats):
        t = time.perf_counter()
        again = train_or_load("bench-digits", X, y, progress=False)
        hits.append(time.perf_counter() - t)
        assert again.route.decision.value == "CACHED", again.route
        assert again.pack() == first.pack()
    return train_s, hits[0], statistics.median(hits)


def hashing() -> tuple[float, float]:
    import joblib

    from openmind.memory.blobs import fingerprint

    a = np.random.default_rng(0).random(100 * 10**6 // 8)  # 100 MB of float64

    def best(fn, n: int = 3) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn(a)
            times.append(time.perf_counter() - t)
        return min(times)

    return best(fingerprint), best(joblib.hash)


def sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    os.environ["OPENMIND_HOME"] = tempfile.mkdtemp(prefix="openmind-bench-")
    ok = True

    print(f"1. digits accuracy, {args.seeds} seeds (default architecture, 80/20 stratified split)")
    tern, full, model = accuracy(args.seeds)
    mt, mf = statistics.mean(tern), statistics.mean(full)
    gap = (mf - mt) * 100
    good = mt >= 0.97 and gap <= 0.5
    ok &= good
    print(f"   ternary {mt * 100:.2f} +- {sd(tern) * 100:.2f} %   fp32 {mf * 100:.2f} +- "
          f"{sd(full) * 100:.2f} %   gap {gap:+.2f} pt   [{'ok' if good else 'MISSED'}: "
          f"ternary >= 97%, gap <= 0.5 pt]")

    ratio = model.fp32_nbytes() / model.nbytes
    good = ratio >= 14
    ok &= good
    print(f"2. packed size: {model.nbytes} B vs fp32 {model.fp32_nbytes()} B -> fp32/packed = "
          f"{ratio:.2f}x   [{'ok' if good else 'MISSED'}: >= 14x]")

    train_s, first_s, hit_s = cache_hit()
    good = train_s / hit_s >= 100
    ok &= good
    print(f"3. train_or_load: train {train_s * 1000:.0f} ms, cache hit {hit_s * 1000:.1f} ms "
          f"(median of 5; the first {first_s * 1000:.1f} ms) -> {train_s / hit_s:.0f}x "
          f"(first hit {train_s / first_s:.0f}x)   [{'ok' if good else 'MISSED'}: >= 100x]")

    fp_s, jl_s = hashing()
    good = jl_s / fp_s >= 3
    ok &= good
    print(f"4. fingerprint 100 MB: {fp_s * 1000:.1f} ms vs joblib.hash {jl_s * 1000:.1f} ms -> "
          f"{jl_s / fp_s:.1f}x   [{'ok' if good else 'MISSED'}: >= 3x]")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
