"""Small work on one BLAS thread, so a busy second core cannot stall it.

OpenBLAS splits even a small matmul across all its threads and then waits for every one of them.
When another process holds a core (a browser beside the notebook, a second kernel), that wait
lasts the other process's time slice: a 256-row digits predict went from 0.55 ms to 32 ms here.
Below `SMALL_WORK` multiply-adds the work is held to one thread (threadpoolctl finds the BLAS
libraries this process loaded); big work keeps every core. `bench/busy_predict_bench.py` measures
it with a CPU burner on the other core.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

# multiply-adds below which one thread wins even on an idle machine (bench/busy_predict_bench.py:
# at 4e7, a 4096x4096 GEMV at batch 2, two threads are only just ahead when both cores are free)
SMALL_WORK = 4e7
# below this OpenBLAS runs one thread by itself (its SMP threshold, 65536 x 4 multiply-adds for a
# GEMM), so the hold, a few microseconds, is not paid where it cannot help
BLAS_ALONE = 2.6e5

_lock = threading.Lock()
_libs: list[Any] | None = None
_saved: list[int] = []  # their thread counts when found
_depth = threading.local()


def _blas() -> list[Any]:
    global _libs
    if _libs is not None:
        return _libs
    with _lock:  # found once, never while a hold has the threads at one
        if _libs is not None:
            return _libs
        try:
            from threadpoolctl import ThreadpoolController

            found = [c for c in ThreadpoolController().select(user_api="blas").lib_controllers
                     if c.get_num_threads() > 1]
            _saved[:] = [c.get_num_threads() for c in found]
        except Exception:  # no threadpoolctl, or a BLAS it cannot drive: leave threads alone
            found = []
        _libs = found
    return _libs


class _Hold:
    """One BLAS thread for the block, per calling thread (OpenBLAS keeps the count of a thread that
    set it; a nested block leaves it to the outermost)."""

    def __enter__(self) -> None:
        depth = getattr(_depth, "n", 0)
        if depth == 0:
            for c in _libs or ():
                c.set_num_threads(1)
        _depth.n = depth + 1

    def __exit__(self, *exc: object) -> None:
        _depth.n -= 1
        if _depth.n == 0:
            for c, n in zip(_libs or (), _saved, strict=False):
                c.set_num_threads(n)


_HOLD = _Hold()
_FREE = contextlib.nullcontext()


def small_work(macs: float) -> contextlib.AbstractContextManager[None]:
    """`with small_work(multiply_adds):` holds BLAS to one thread for the block when it is small
    work (and BLAS would split it); otherwise it changes nothing. Work is run in the thread that
    holds it, so the hold is per thread: concurrent predictions each hold their own."""
    if BLAS_ALONE <= macs < SMALL_WORK and _blas():
        return _HOLD
    return _FREE


def reset() -> None:
    """Forget the BLAS libraries found (tests, or after loading another BLAS)."""
    global _libs
    with _lock:
        _libs = None
