"""The ternary model and its packed "chord shape": format, bit-exact kernel, numpy-only loading."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from openmind.errors import BadInput
from openmind.pathways.ternary.packed import Layer, PackedModel, TernaryModel, pack, unpack


def _random_model(rng: np.random.Generator, widths=(7, 5, 3), per_row=(True, False),
                  classes=None) -> TernaryModel:
    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        scale = rng.uniform(0.1, 2, size=b if per_row[i % len(per_row)] else 1).astype(np.float32)
        layers.append(Layer(rng.integers(-1, 2, size=(b, a)).astype(np.int8), scale,
                            rng.normal(size=b).astype(np.float32), relu=i < len(widths) - 2))
    mean = rng.normal(size=widths[0]).astype(np.float32)
    inv_std = rng.uniform(0.5, 2, size=widths[0]).astype(np.float32)
    return TernaryModel(layers, mean, inv_std,
                        np.arange(widths[-1]) if classes is None else classes, name="rand")


def _reference_scores(model: PackedModel, X: np.ndarray) -> np.ndarray:
    """docs/packed-format.md arithmetic, literally: float32 scalars, one operation at a time."""
    f32 = np.float32
    out = []
    for row in X.astype(np.float32):
        h = [f32(f32(row[i] - model.mean[i]) * model.inv_std[i]) for i in range(len(row))]
        for layer in model.layers:
            y = []
            for o in range(layer.shape[0]):
                acc = f32(0.0)
                for i in range(layer.shape[1]):
                    t = layer.trits[o, i]
                    if t == 1:
                        acc = f32(acc + h[i])
                    elif t == -1:
                        acc = f32(acc - h[i])
                s = layer.scale[o] if layer.scale_mode else layer.scale[0]
                v = f32(f32(acc * s) + layer.bias[o])
                if layer.relu:
                    v = f32(0.0) if v < 0 else v
                y.append(v)
            h = y
        out.append(h)
    return np.array(out, dtype=np.float32)


def test_kernel_is_bit_exact_with_the_format_reference():
    rng = np.random.default_rng(1)
    model = _random_model(rng, widths=(9, 6, 5, 4), per_row=(True, False, True))
    X = rng.normal(scale=3, size=(40, 9)).astype(np.float32)
    X[:5] = model.mean  # rows that standardise to exact zeros (signed-zero paths)
    X[5, :3] = 1e30
    ref = _reference_scores(model, X)
    got = model.scores(X)
    assert got.dtype == np.float32
    assert got.tobytes() == ref.tobytes()


def test_pack_bit_layout_matches_the_doc():
    layer = Layer(np.array([[-1, 0, 1, 0, 1]], dtype=np.int8), np.array([0.5], np.float32),
                  np.array([0.25], np.float32), relu=False)
    mean = np.zeros(5, np.float32)
    inv = np.ones(5, np.float32)
    b = pack([layer], mean, inv)
    assert b[:12] == b"OMT1" + struct.pack("<HHHH", 1, 1, 5, 1)
    pos = 12 + 40
    assert b[pos:pos + 8] == struct.pack("<HHBBH", 5, 1, 0, 0, 0)
    # codes -1,0,+1,0 -> 00,01,10,01 (first weight in bits 0-1); then +1 and three 0-trit pads
    assert b[pos + 8:pos + 10] == bytes([0b01_10_01_00, 0b01_01_01_10])
    assert b[pos + 10:] == struct.pack("<ff", 0.5, 0.25)
    assert len(b) == PackedModel.from_bytes(b).nbytes


def test_unpack_rejects_malformed_bytes():
    rng = np.random.default_rng(2)
    good = _random_model(rng).pack()
    with pytest.raises(BadInput, match="magic"):
        unpack(b"XXXX" + good[4:])
    with pytest.raises(BadInput, match="truncated"):
        unpack(good[:-3])
    with pytest.raises(BadInput, match="trailing"):
        unpack(good + b"\0")
    bad = bytearray(good)
    bad[12 + 8 * 7 + 8] = 0xFF  # first trit byte of layer 0 -> code 11
    with pytest.raises(BadInput, match="invalid trit code 11"):
        unpack(bytes(bad))


def test_packed_roundtrip_predicts_identically(digits_model):
    model, Xte, yte = digits_model
    packed = PackedModel.from_bytes(model.pack(), classes=model.classes_)
    assert packed.scores(Xte).tobytes() == model.scores(Xte).tobytes()
    assert np.array_equal(packed.predict(Xte), model.predict(Xte))
    assert np.array_equal(PackedModel.from_bytes(model.pack()).predict(Xte),
                          np.searchsorted(model.classes_, model.predict(Xte)))
    assert model.score(Xte, yte) > 0.9


def test_torch_forward_agrees_with_packed_kernel(digits_model, digits_net):
    from openmind.pathways.ternary.net import torch_scores

    model, Xte, _ = digits_model
    ts = torch_scores(digits_net, Xte, model.mean, model.inv_std)
    assert np.array_equal(ts.argmax(axis=1), model.predict_index(Xte))
    np.testing.assert_allclose(ts, model.scores(Xte), rtol=1e-4, atol=1e-4)
    # the BLAS path is close but not claimed bit-exact
    np.testing.assert_allclose(model.scores_fast(Xte), model.scores(Xte), rtol=1e-4, atol=1e-4)


def test_packed_loads_and_predicts_without_torch(tmp_path, digits_model):
    model, Xte, _ = digits_model
    (tmp_path / "m.omt").write_bytes(model.pack())
    np.save(tmp_path / "x.npy", Xte)
    code = textwrap.dedent(f"""
        import json, sys
        import numpy as np
        from openmind.pathways.ternary.packed import PackedModel
        m = PackedModel.from_bytes(open({str(tmp_path / 'm.omt')!r}, 'rb').read())
        idx = m.predict(np.load({str(tmp_path / 'x.npy')!r}))
        print(json.dumps({{"torch": "torch" in sys.modules, "pred": idx.tolist()}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         check=True)
    result = json.loads(out.stdout)
    assert result["torch"] is False
    assert result["pred"] == model.predict_index(Xte).tolist()


def test_packed_size_is_a_fourteenth_of_fp32_for_the_default_architecture():
    from openmind.pathways.ternary.fit import DEFAULTS

    rng = np.random.default_rng(3)
    model = _random_model(rng, widths=(64, *DEFAULTS["hidden"], 10), per_row=(False,))
    assert model.nbytes == len(model.pack())
    assert model.fp32_nbytes() / model.nbytes >= 14


def test_save_load_roundtrip_keeps_string_labels(tmp_path):
    rng = np.random.default_rng(4)
    model = _random_model(rng, classes=np.array(["no", "maybe", "yes"]))
    X = rng.normal(size=(20, 7))
    path = model.save(tmp_path / "m.safetensors")
    back = TernaryModel.load(path)
    assert back.classes_.tolist() == ["no", "maybe", "yes"]
    assert np.array_equal(back.predict(X), model.predict(X))
    assert back.predict(X).dtype.kind == "U"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(BadInput, match="cannot read model file"):
        TernaryModel.load(path)


def test_predict_names_wrong_feature_count_and_nan(digits_model):
    model, Xte, _ = digits_model
    with pytest.raises(BadInput, match=r"63 features per row.*trained on 64"):
        model.predict(Xte[:, :63])
    bad = Xte[:4].copy()
    bad[2, 17] = np.nan
    with pytest.raises(BadInput, match="NaN at row 2, column 17"):
        model.predict(bad)


def test_binary_model_abstains_on_uncertain_rows():
    from openmind.intents.train import train_or_load

    rng = np.random.default_rng(5)
    X = np.concatenate([rng.normal(-1, 1, size=(300, 2)), rng.normal(1, 1, size=(300, 2))])
    y = np.array([-1] * 300 + [1] * 300)
    model = train_or_load("binary", X, y, hidden=[16], epochs=15, progress=False)
    grid = np.linspace(-3, 3, 41)
    probe = np.stack([grid, grid], axis=1)
    trits = model.predict_trits(probe, confidence=0.9)
    assert set(np.unique(trits)) == {-1, 0, 1}
    conf = model.predict_proba(probe).max(axis=1)
    assert np.all((trits == 0) == (conf < 0.9))
    sure = trits != 0
    assert np.array_equal(trits[sure], model.predict(probe)[sure])  # labels are -1/+1 here
    assert np.array_equal(model.uncertain(probe, 0.9), np.flatnonzero(trits == 0))
    assert trits[0] == -1 and trits[-1] == 1 and trits[20] == 0
