"""`predict` on a busy machine: another process burns a core while a digits-shaped model predicts.

OpenBLAS splits a small matmul across both cores and waits for both, so with the second core taken
it waits a time slice: openmind holds small work to one BLAS thread (openmind.pathways.threads).
Printed, at batch 1 and 256, the median per call of:
  - openmind `predict` (the default, BLAS path), with the hold (as shipped)
  - the same without the hold (SMALL_WORK = 0: every thread, as before)
  - torch fp32 on one thread, the same weights (the anchor; target >= 1.0x)
Also the same with both cores idle. Run: .venv/bin/python bench/busy_predict_bench.py
"""

from __future__ import annotations

import multiprocessing as mp
import os
import statistics
import time

import numpy as np
from benchlib import machine
from host_predict_bench import ternary_model, torch_twin


def burn(stop) -> None:
    """A CPU-bound neighbour (a browser, another kernel)."""
    x = 0
    while not stop.is_set():
        for _ in range(100_000):
            x += 1


def median_call(fn, calls: int) -> float:
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def measure(model, twin, calls: int) -> dict[tuple[str, int], float]:
    from openmind.pathways import threads

    rng = np.random.default_rng(0)
    out = {}
    for batch in (1, 256):
        X = rng.normal(size=(batch, 64)).astype(np.float32)
        out[("torch 1 thread", batch)] = median_call(lambda X=X: twin(X), calls)
        out[("openmind", batch)] = median_call(lambda X=X: model.predict(X), calls)
        saved, threads.SMALL_WORK = threads.SMALL_WORK, 0.0
        try:
            out[("openmind, no hold", batch)] = median_call(lambda X=X: model.predict(X), calls)
        finally:
            threads.SMALL_WORK = saved
    return out


def show(title: str, res: dict[tuple[str, int], float]) -> None:
    print(title)
    for batch in (1, 256):
        anchor = res[("torch 1 thread", batch)]
        for name in ("torch 1 thread", "openmind", "openmind, no hold"):
            t = res[(name, batch)]
            print(f"  batch {batch:>3}  {name:<18} {t * 1e3:8.3f} ms   {anchor / t:6.2f}x torch")


def main() -> None:
    import torch

    torch.set_num_threads(1)
    print(machine(), f"| numpy BLAS threads: {os.cpu_count()} (openmind holds small work to 1)")
    rng = np.random.default_rng(1)
    model = ternary_model([64, 256, 256, 10], rng, rng.normal(size=64).astype(np.float32),
                          rng.uniform(0.5, 2, 64).astype(np.float32))
    twin = torch_twin(model)
    show("both cores idle (as idle as this machine is):", measure(model, twin, 300))
    stop = mp.Event()
    burner = mp.Process(target=burn, args=(stop,), daemon=True)
    burner.start()
    try:
        show("another process burning a core:", measure(model, twin, 300))
    finally:
        stop.set()
        burner.join(5)


if __name__ == "__main__":
    main()
