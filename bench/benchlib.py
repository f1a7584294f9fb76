"""Timing helpers shared by the benchmarks: short interleaved blocks, so load on a shared machine
hits every contender alike; the figure is the best block's per-call time (as `timeit` advises:
the other blocks measure the machine's other tenants, not the code)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable


def per_call(fns: dict[str, Callable[[], object]], *, blocks: int = 15, block_s: float = 0.05,
             warmup: int = 3, clock: Callable[[], float] = time.perf_counter) -> dict[str, float]:
    """Seconds per call of each fn: blocks of ~block_s each, the contenders interleaved.
    clock=time.thread_time measures CPU time instead (what a loaded machine distorts least)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    reps = {}
    for name, fn in fns.items():  # calls per block from one probe run
        t = time.perf_counter()
        fn()
        reps[name] = max(1, int(block_s / max(time.perf_counter() - t, 1e-7)))
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(blocks):
        for name, fn in fns.items():
            n = reps[name]
            t = clock()
            for _ in range(n):
                fn()
            samples[name].append((clock() - t) / n)
    return {name: min(s) for name, s in samples.items()}


def bench_clock(threads: int) -> tuple[Callable[[], float], str]:
    """The clock for `per_call` and its name: on one thread every contender (numpy's BLAS, torch,
    the native kernels) runs in the calling thread, so its CPU time is the work itself, what the
    other tenants of a shared machine distort least; with more threads, wall time."""
    if threads == 1:
        return time.thread_time, "CPU time of the calling thread"
    return time.perf_counter, "wall time"


def machine() -> str:
    """CPU model, cores and load, for the header of every benchmark."""
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "?")
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{model}, {os.cpu_count()} cores, load {load:.1f}"


def blas_threads(n: int) -> None:
    """n BLAS threads here and in the processes this one starts. The environment alone is not
    enough once numpy is imported (OpenBLAS has sized its pool by then): threadpoolctl resizes it."""
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = str(n)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(n)
    except ImportError:
        pass


def pin_threads(n: int) -> None:
    """The same thread count for torch and numpy's BLAS (the comparison is per thread)."""
    import torch

    torch.set_num_threads(n)
    blas_threads(n)
