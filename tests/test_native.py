"""The compiled host kernels (omkernel.c): bit-exact with the firmware's C kernel and the numpy
loop, the numpy fallback without a compiler, and the 2-bit SIMD kernel's integer arithmetic."""

from __future__ import annotations

import ctypes
import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vdev_fixtures import FIRMWARE

from openmind.pathways.ternary import native
from openmind.pathways.ternary.kernel import forward
from openmind.pathways.ternary.packed import Layer, PackedModel

F32 = np.float32


def random_model(rng: np.random.Generator, widths, per_row=True) -> PackedModel:
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        scale = rng.uniform(0.01, 0.5, size=b if per_row else 1).astype(F32)
        layers.append(Layer(rng.integers(-1, 2, size=(b, a)).astype(np.int8), scale,
                            rng.normal(size=b).astype(F32), relu=i < len(widths) - 2))
    return PackedModel(layers, rng.normal(size=widths[0]).astype(F32),
                       rng.uniform(0.5, 2, size=widths[0]).astype(F32))


@pytest.fixture(scope="module")
def firmware_kernel(tmp_path_factory):
    """firmware/core/om_model.c, the device's own kernel, as a host shared library."""
    out = tmp_path_factory.mktemp("fw") / "libom_model.so"
    subprocess.run(["cc", "-std=c99", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
                    f"-I{FIRMWARE / 'core'}", "-o", str(out), str(FIRMWARE / "core" / "om_model.c")],
                   check=True, capture_output=True)
    lib = ctypes.CDLL(str(out))
    lib.om_model_parse.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.om_model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    return lib


def firmware_scores(lib, blob: bytes, X: np.ndarray, n_out: int) -> np.ndarray:
    model_buf = ctypes.create_string_buffer(4096)  # om_model_t is well under 4 KiB
    keep = ctypes.create_string_buffer(blob, len(blob))
    assert lib.om_model_parse(keep, len(blob), model_buf) == 0
    out = np.empty((len(X), n_out), F32)
    for r, x in enumerate(np.ascontiguousarray(X, F32)):
        lib.om_model_predict(model_buf, x.ctypes.data, out[r].ctypes.data)
    return out


def test_compiled_exact_kernel_equals_the_firmware_kernel_on_digits(firmware_kernel):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, *_ = train_test_split(X.astype(F32), y, test_size=0.2, random_state=0, stratify=y)
    rng = np.random.default_rng(7)
    model = random_model(rng, (64, 256, 256, 10))
    model = PackedModel(model.layers, Xtr.mean(0).astype(F32), (1 / (Xtr.std(0) + 1)).astype(F32))
    assert native.lib() is not None, native.reason()  # CI and this machine have a compiler
    fw = firmware_scores(firmware_kernel, model.to_bytes(), Xte, 10)
    got = model.scores(Xte)
    assert got.tobytes() == fw.tobytes()  # all 360 x 10 scores, bit for bit
    assert forward(Xte, model.mean, model.inv_std, model.layers).tobytes() == fw.tobytes()
    assert np.array_equal(model.predict_index(Xte, exact=True), fw.argmax(1))


@settings(max_examples=25, deadline=None)
@given(widths=st.lists(st.integers(1, 70), min_size=2, max_size=4), rows=st.integers(1, 9),
       seed=st.integers(0, 2**16), per_row=st.booleans())
def test_compiled_exact_kernel_equals_the_numpy_loop(widths, rows, seed, per_row):
    rng = np.random.default_rng(seed)
    model = random_model(rng, widths, per_row)
    X = (rng.normal(size=(rows, widths[0])) * rng.uniform(0.1, 100)).astype(F32)
    ref = forward(X, model.mean, model.inv_std, model.layers)
    assert model.scores(X).tobytes() == ref.tobytes()
    np.testing.assert_allclose(model.scores(X, exact=False), ref, rtol=1e-3, atol=1e-3)


def test_without_a_compiler_numpy_gives_the_same_bits(monkeypatch):
    rng = np.random.default_rng(3)
    model = random_model(rng, (20, 40, 5))
    X = rng.normal(size=(11, 20)).astype(F32)
    compiled, compiled_ternary = model.scores(X), model.scores_ternary(X)
    monkeypatch.setenv("OPENMIND_NATIVE", "0")
    native.reset()
    try:
        assert native.lib() is None and "OPENMIND_NATIVE=0" in native.reason()
        assert native.simd_level() == "numpy"
        fresh = PackedModel(model.layers, model.mean, model.inv_std)
        assert fresh.scores(X).tobytes() == compiled.tobytes()
        assert fresh.scores_ternary(X).tobytes() == compiled_ternary.tobytes()
    finally:
        monkeypatch.delenv("OPENMIND_NATIVE")
        native.reset()
    assert native.simd_level() in ("avx512vnni", "avx512", "avx2", "neon", "portable")


def test_a_broken_compiler_is_a_reason_not_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")  # exists on PATH, fails every build
    monkeypatch.setenv("OPENMIND_NATIVE_DIR", str(tmp_path))
    native.reset()
    try:
        assert native.lib() is None and "false failed" in native.reason()
        model = random_model(np.random.default_rng(4), (6, 4, 3))
        X = np.ones((2, 6), F32)
        assert model.scores(X).tobytes() == forward(X, model.mean, model.inv_std, model.layers).tobytes()
    finally:
        native.reset()


@settings(max_examples=30, deadline=None)
@given(out=st.integers(1, 70), inp=st.integers(1, 700), rows=st.integers(1, 13), seed=st.integers(0, 999),
       per_row=st.booleans(), relu=st.booleans(), standardize=st.booleans())
def test_ternary_kernel_is_the_exact_int8_dot_and_numpy_gives_its_bits(out, inp, rows, seed, per_row,
                                                                      relu, standardize):
    """Any shape (padding of outputs to 16 and inputs to 16, row tiles of 1-6, the 4-group GEMV):
    the int32 dot of the int8 activations with the trits is exact, and the numpy fallback (no
    compiler) returns the compiled kernel's float32 bits."""
    handle = native.lib()
    assert handle is not None, native.reason()
    rng = np.random.default_rng(seed)
    trits = rng.integers(-1, 2, size=(out, inp)).astype(np.int8)
    scale = rng.uniform(0.01, 0.5, size=out if per_row else 1).astype(F32)
    h = (rng.normal(size=(rows, inp)) * rng.uniform(0.01, 100)).astype(F32)
    mean, inv = rng.normal(size=inp).astype(F32), rng.uniform(0.5, 2, size=inp).astype(F32)
    std = (mean, inv) if standardize else None
    layer = native.TernaryLayer(trits, scale, rng.normal(size=out).astype(F32), relu, std)
    got = native.ternary_layer(handle, layer, h)
    assert got.tobytes() == native.ternary_layer(None, layer, h).tobytes()
    # the integer dot itself: scale 1, bias 0, no relu leaves dot * step
    plain = native.TernaryLayer(trits, np.ones(1, F32), np.zeros(out, F32), False, std)
    hs = (h - mean) * inv if standardize else h
    q, _, step = native.quantize_rows(hs, inp)
    want = q.astype(np.int64) @ trits.T.astype(np.int64)
    dot = native.ternary_layer(handle, plain, h) / step[:, None]
    np.testing.assert_array_equal(np.rint(dot).astype(np.int64), want)


def test_ternary_numpy_path_is_exact_past_float32_integers():
    """Past 2^24 / 127 inputs a float32 matmul of the int8 dot could round: numpy sums in float64."""
    layer = native.TernaryLayer(np.ones((2, native._EXACT_F32 + 1), np.int8), np.ones(1, F32),
                                np.zeros(2, F32), False)
    assert layer.trits_t().dtype == np.float64
    small = native.TernaryLayer(np.ones((2, 100), np.int8), np.ones(1, F32), np.zeros(2, F32), False)
    assert small.trits_t().dtype == F32


@pytest.mark.parametrize("level", ["", "avx2", "portable"])
def test_ternary_kernel_rows_of_zeros_infs_and_nans_match_numpy(monkeypatch, level):
    """A zero row quantises with step 1; a row an overflowing layer filled with inf or NaN gives
    NaN outputs; the other rows are untouched, on every SIMD path and in numpy alike."""
    monkeypatch.setenv("OPENMIND_SIMD", level)
    native.reset()
    try:
        handle = native.lib()
        assert handle is not None, native.reason()
        rng = np.random.default_rng(9)
        layer = native.TernaryLayer(rng.integers(-1, 2, size=(40, 70)).astype(np.int8),
                                    rng.uniform(0.1, 1, 40).astype(F32), rng.normal(size=40).astype(F32), True)
        h = rng.normal(size=(6, 70)).astype(F32)
        h[1] = 0
        h[2, 5] = np.inf
        h[3, 69] = -np.inf
        h[4, 0] = np.nan
        got, want = native.ternary_layer(handle, layer, h), native.ternary_layer(None, layer, h)
        np.testing.assert_array_equal(got, want)
        assert np.isnan(got[2:5]).all() and np.isfinite(got[[0, 1, 5]]).all()
        assert (got[1] == np.maximum(layer.bias, 0)).all()  # a zero row: relu(bias)
    finally:
        monkeypatch.delenv("OPENMIND_SIMD")
        native.reset()


def test_ternary_kernel_split_across_threads_gives_the_same_bits():
    """A big layer's output groups split between threads (native.set_threads): each thread writes
    its own columns, so the result is the one-thread result bit for bit; a small layer stays on one."""
    handle = native.lib()
    assert handle is not None, native.reason()
    rng = np.random.default_rng(8)
    layer = native.TernaryLayer(rng.integers(-1, 2, size=(200, 300)).astype(np.int8),
                                rng.uniform(0.1, 1, 200).astype(F32), rng.normal(size=200).astype(F32), True)
    h = rng.normal(size=(80, 300)).astype(F32)
    assert 80 * 300 * 200 >= native.SPLIT_MACS
    one = native.ternary_layer(handle, layer, h)
    native.set_threads(3)
    try:
        assert native.ternary_layer(handle, layer, h).tobytes() == one.tobytes()
        assert native.ternary_layer(handle, layer, h[:2]).tobytes() == one[:2].tobytes()
    finally:
        native.set_threads(1)
    with pytest.raises(ValueError, match="threads must be >= 1"):
        native.set_threads(0)


def test_default_predict_is_fast_and_exact_is_the_device():
    rng = np.random.default_rng(5)
    model = random_model(rng, (30, 50, 4))
    X = rng.normal(size=(64, 30)).astype(F32)
    k = model.kernels()
    model.predict(X)
    assert k._folded is not None and model.kernels() is k  # weights folded once, kept on the model
    first = k._folded[0][0]
    model.predict(X)
    assert model.kernels()._folded[0][0] is first
    assert np.array_equal(model.predict(X, exact=True), forward(X, model.mean, model.inv_std,
                                                                model.layers).argmax(1))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), depth=st.integers(1, 4), rows=st.integers(1, 40))
def test_the_folded_fast_path_computes_the_layers_it_folds(seed, depth, rows):
    """Standardisation folded into the first layer, a ReLU layer's bias into the next one: the
    same scores as the layers as written (float32 rounding apart), at any depth and width."""
    rng = np.random.default_rng(seed)
    relus = [i < depth - 1 for i in range(depth)]  # the format: ReLU on all but the scores
    widths = [int(w) for w in rng.integers(1, 40, size=depth + 1)]
    layers = [Layer(rng.integers(-1, 2, size=(b, a)).astype(np.int8),
                    rng.uniform(0.01, 0.5, size=b).astype(F32), rng.normal(size=b).astype(F32), relu=r)
              for a, b, r in zip(widths, widths[1:], relus, strict=False)]
    model = PackedModel(layers, rng.normal(size=widths[0]).astype(F32),
                        rng.uniform(0.5, 2, size=widths[0]).astype(F32))
    X = rng.normal(size=(rows, widths[0])).astype(F32)
    exact = forward(X, model.mean, model.inv_std, layers).astype(np.float64)
    fast = model.scores(X, exact=False)
    assert fast.shape == exact.shape and fast.dtype == F32
    np.testing.assert_allclose(fast, exact, rtol=1e-4, atol=1e-4 * (1 + np.abs(exact).max()))


@pytest.mark.parametrize("level", ["avx512", "avx2", "portable"])
def test_every_simd_path_computes_the_same(monkeypatch, level):
    """This machine may run AVX-512 VNNI; CI may have AVX2 only, an ARM laptop the portable loops.
    Row counts 1-3 and 131: the ternary kernel's GEMV (one row, 4 groups of 16 outputs at a
    time), its remainder tiles and its 4-row tiles."""
    rng = np.random.default_rng(11)
    model = random_model(rng, (300, 70, 5))
    X = rng.normal(size=(131, 300)).astype(F32)
    counts = (1, 2, 3, 131)
    ref_exact, ref_tern = model.scores(X), [model.scores_ternary(X[:n]) for n in counts]
    monkeypatch.setenv("OPENMIND_SIMD", level)
    native.reset()
    try:
        if native.simd_level() != level:
            pytest.skip(f"this CPU has no {level}")
        fresh = PackedModel(model.layers, model.mean, model.inv_std)
        assert fresh.scores(X).tobytes() == ref_exact.tobytes()
        for n, ref in zip(counts, ref_tern, strict=True):
            assert fresh.scores_ternary(X[:n]).tobytes() == ref.tobytes()
    finally:
        monkeypatch.delenv("OPENMIND_SIMD")
        native.reset()
