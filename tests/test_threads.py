"""Small work on one BLAS thread (openmind.pathways.threads): held inside, restored after, shared by
nested blocks, and never applied to big work or to work BLAS runs alone anyway."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import ThreadpoolController, threadpool_info

from openmind.pathways import threads


def blas_threads() -> list[int]:
    return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]


@pytest.fixture
def two_threads():
    """BLAS at two threads for the test, set process-wide as the hold sets it (threadpoolctl's
    `threadpool_limits` may set a thread-local count that a hold from another thread cannot see)."""
    libs = ThreadpoolController().select(user_api="blas").lib_controllers
    if not libs:
        pytest.skip("numpy has no BLAS threadpoolctl can drive here")
    saved = [c.get_num_threads() for c in libs]
    for c in libs:
        c.set_num_threads(2)
    threads.reset()
    yield
    for c, n in zip(libs, saved, strict=True):
        c.set_num_threads(n)
    threads.reset()


def test_small_work_holds_one_thread_and_restores(two_threads):
    before = blas_threads()
    with threads.small_work(1e6):
        assert set(blas_threads()) == {1}
        with threads.small_work(2e6):  # nested: still one, and the inner exit restores nothing
            assert set(blas_threads()) == {1}
        assert set(blas_threads()) == {1}
    assert blas_threads() == before


def test_big_work_and_tiny_work_keep_every_thread(two_threads):
    before = blas_threads()
    for macs in (threads.SMALL_WORK, 1e12, threads.BLAS_ALONE / 2):
        with threads.small_work(macs):
            assert blas_threads() == before


def test_predict_is_the_same_under_the_hold(two_threads):
    """The hold changes who computes, not what: predictions equal with and without it."""
    from openmind.pathways.ternary.packed import Layer, TernaryModel

    rng = np.random.default_rng(3)
    layers = [Layer(rng.integers(-1, 2, (256, 64)).astype(np.int8), np.full(256, 0.1, np.float32),
                    np.zeros(256, np.float32), relu=True),
              Layer(rng.integers(-1, 2, (10, 256)).astype(np.int8), np.full(10, 0.1, np.float32),
                    np.zeros(10, np.float32), relu=False)]
    model = TernaryModel(layers, np.zeros(64, np.float32), np.ones(64, np.float32), np.arange(10))
    X = rng.normal(size=(256, 64)).astype(np.float32)
    held = model.predict_proba(X)
    saved, threads.SMALL_WORK = threads.SMALL_WORK, 0.0
    try:
        free = model.predict_proba(X)
    finally:
        threads.SMALL_WORK = saved
    np.testing.assert_allclose(held, free, rtol=1e-5, atol=1e-6)
