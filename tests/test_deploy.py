"""deploy: C header compiled into the firmware, upload over MODEL BEGIN/DATA/END, PREDICT on the
device equal to Python bit for bit (docs/packed-format.md arithmetic)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from vdev_fixtures import BUILD, VDev, make

import openmind
from openmind.errors import BadInput, PathwayUnavailable
from openmind.intents.deploy import c_header, deploy
from openmind.pathways.device import DeviceError, Link
from openmind.pathways.ternary.packed import Layer, PackedModel, describe
from openmind.pathways.ternary.packed import pack as pack_layers

F32 = np.float32


# ----------------------------------------------------------------- the project's own packer and kernel


def pack(mean, inv_std, layers) -> bytes:
    """Packed bytes from numpy arrays via openmind's packer; layers = [(W [out,in], scale, bias, act)]."""
    return pack_layers([Layer(np.asarray(w, np.int8), np.asarray(s, F32), np.asarray(b, F32), bool(a))
                        for w, s, b, a in layers], np.asarray(mean, F32), np.asarray(inv_std, F32))


def reference(blob, x):
    """Class indices and scores from openmind's bit-exact numpy kernel (docs/packed-format.md)."""
    model = PackedModel.from_bytes(blob)
    return model.predict_index(np.asarray(x, F32), exact=True), model.scores(np.asarray(x, F32))


def ternarize(w, rng=None):
    thr = 0.7 * np.abs(w).mean(1, keepdims=True)
    t = np.where(w > thr, 1, np.where(w < -thr, -1, 0)).astype(np.int8)
    scale = np.array([np.abs(w[r][t[r] != 0]).mean() if (t[r] != 0).any() else 1.0 for r in range(len(w))], F32)
    return t, scale


@pytest.fixture(scope="module")
def digits():
    """A small ternary model for sklearn's digits: random ternary features + a ternarized ridge readout."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    mean = Xtr.mean(0).astype(F32)
    inv = (1.0 / (Xtr.std(0) + 1.0)).astype(F32)
    rng = np.random.default_rng(0)
    w1 = rng.choice(np.array([-1, 0, 1], np.int8), size=(128, 64), p=[0.25, 0.5, 0.25])
    s1 = np.array([1 / np.sqrt(32.0)], F32)
    b1 = rng.normal(0, 0.3, 128).astype(F32)
    hidden = np.maximum(((Xtr - mean) * inv) @ w1.T.astype(np.float64) * s1[0] + b1, 0)
    target = np.eye(10)[ytr] * 2 - 1
    A = np.hstack([hidden, np.ones((len(hidden), 1))])
    coef = np.linalg.solve(A.T @ A + 1.0 * np.eye(A.shape[1]), A.T @ target).T
    w2, s2 = ternarize(coef[:, :-1])
    layers = [(w1, s1, b1, 1), (w2, s2, coef[:, -1].astype(F32), 0)]
    blob = pack(mean, inv, layers)
    return {"blob": blob, "X": Xte.astype(F32), "y": yte, "ref": reference(blob, Xte)}


# ----------------------------------------------------------------- tests


def test_packer_and_reference_agree_with_c_on_a_handmade_model():
    """The same 2-2-2 model as firmware/test/test_core.c: scores 4.5 and -3.5."""
    layers = [(np.array([[1, -1], [0, 1]], np.int8), np.array([2, 1], F32), np.array([0.5, -1], F32), 1),
              (np.array([[1, 1], [-1, 0]], np.int8), np.array([3], F32), np.array([0, 1], F32), 0)]
    blob = pack([1, 0], [0.5, 1], layers)
    y, s = reference(blob, np.array([[3, 0.5]]))
    assert y[0] == 0 and s[0].tolist() == [4.5, -3.5]
    assert describe(blob) == {"layers": 2, "inputs": 2, "outputs": 2, "width": 2}


def test_upload_digits_model_device_predicts_exactly_like_python(vdev, digits):
    ref_y, ref_scores = digits["ref"]
    assert (ref_y == digits["y"]).mean() > 0.8  # a real classifier, not noise
    d = deploy(digits["blob"], "esp32", port=vdev.port)
    assert (d.target, d.inputs, d.outputs, d.bytes) == ("device", 64, 10, len(digits["blob"]))
    with Link(vdev.port) as link:
        got = [link.predict(x) for x in digits["X"]]
    dev_y = np.array([g[0] for g in got])
    dev_scores = np.array([g[1] for g in got], F32)
    assert len(dev_y) == len(digits["X"]) == 360
    assert np.array_equal(dev_y, ref_y)
    assert np.array_equal(dev_scores, ref_scores)  # bit for bit, all 3600 scores
    rec = openmind.journal(1)[0]
    assert rec["intent"] == "deploy" and rec["summary"]["crc32"] == f"{zlib.crc32(digits['blob']):08x}"


def test_header_compiles_into_the_firmware_and_predicts_the_same(tmp_path, digits):
    path = tmp_path / "model.h"
    d = deploy(digits["blob"], str(path))
    assert d.target == "header" and path.read_text().count("0x") >= len(digits["blob"])
    make("vdev-model", MODEL_H=str(path))
    dev = VDev(BUILD / "openmind-vdev-model")
    try:
        with Link(dev.port) as link:
            got = [link.predict(x) for x in digits["X"][:60]]
    finally:
        dev.close()
    assert [g[0] for g in got] == digits["ref"][0][:60].tolist()
    assert np.array_equal(np.array([g[1] for g in got], F32), digits["ref"][1][:60])


def test_corrupt_upload_is_refused_and_the_old_model_kept(vdev, digits):
    deploy(digits["blob"], f"serial:{vdev.port}")
    with Link(vdev.port) as link:
        before = link.predict(digits["X"][0])
        blob = bytearray(digits["blob"])
        with pytest.raises(DeviceError, match="crc") as err:
            link.command(f"MODEL BEGIN {len(blob)} {zlib.crc32(bytes(blob)) ^ 1:08x}", 2.0)
            import base64

            for i in range(0, len(blob), 144):
                link.command("MODEL DATA " + base64.b64encode(bytes(blob[i:i + 144])).decode(), 2.0)
            link.command("MODEL END", 2.0)
        assert err.value.code == "crc"
        assert link.predict(digits["X"][0]) == before


def test_invalid_models_and_targets_are_rejected_clearly(tmp_path, digits):
    with pytest.raises(BadInput, match="after the last layer"):
        deploy(digits["blob"] + b"\0", str(tmp_path / "m.h"))
    with pytest.raises(BadInput, match="magic"):
        deploy(b"nope" * 10, str(tmp_path / "m.h"))
    with pytest.raises(BadInput, match="TernaryModel"):
        deploy([1, 2, 3], str(tmp_path / "m.h"))
    with pytest.raises(BadInput, match="unknown deploy target"):
        deploy(digits["blob"], "arduino-uno")
    with pytest.raises(BadInput, match="does not exist"):
        deploy(digits["blob"], str(tmp_path / "missing" / "m.h"))
    assert not list(tmp_path.iterdir())


def test_deploy_to_esp32_without_a_device_says_what_to_do(digits):
    with pytest.raises(PathwayUnavailable, match="OPENMIND_SERIAL_PORT"):
        deploy(digits["blob"], "esp32")


def test_model_with_pack_method_is_accepted(tmp_path, digits):
    class Packed:
        name = "digits"

        def pack(self) -> bytes:
            return digits["blob"]

    d = deploy(Packed(), str(tmp_path / "digits.h"), name="digits_model")
    text = (tmp_path / "digits.h").read_text()
    assert "static const unsigned char digits_model_blob[" in text and d.inputs == 64
    assert c_header(digits["blob"], "digits_model") == text


def test_deployed_ternary_model_matches_python_on_the_digits_test_split(vdev):
    """The project's own TernaryModel (openmind/ternary.py), trained on digits."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import openmind

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    model = openmind.train_or_load("digits", Xtr.astype(F32), ytr, hidden=[64], epochs=25)
    deploy(model, "esp32", port=vdev.port)
    with Link(vdev.port) as link:
        dev_y = np.array([link.predict(x)[0] for x in Xte.astype(F32)])
    assert np.array_equal(dev_y, np.asarray(model.predict(Xte.astype(F32), exact=True)))


def test_cli_deploy_header(tmp_path, digits, capsys):
    from openmind.cli import main

    (tmp_path / "m.bin").write_bytes(digits["blob"])
    assert main(["deploy", str(tmp_path / "m.bin"), str(tmp_path / "m.h")]) == 0
    assert "64->10" in capsys.readouterr().out and (tmp_path / "m.h").exists()
    assert main(["deploy", str(tmp_path / "nope.bin"), str(tmp_path / "m.h")]) == 2
