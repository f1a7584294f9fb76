"""Protocol 2 (docs/protocol-v2.md) against the firmware's host build on a real pty: HELLO
negotiation and limits, PREDICTB batches bit-exact with openmind's packed kernel, training that
fits the device, and deploy saying what fits."""

from __future__ import annotations

import time

import numpy as np
import pytest
from vdev_fixtures import VDev

import openmind
from openmind.errors import BadInput
from openmind.intents.deploy import deploy
from openmind.pathways.device import DEFAULT_LIMITS, DeviceError, Link, PortBusy, hello_on
from openmind.pathways.ternary.packed import PackedModel, size_for

F32 = np.float32


def test_hello_negotiates_v2_with_limits_and_keeps_the_v1_answer(vdev, vdev16k):
    info = hello_on(vdev.port)
    assert info["proto"] == 2 and info["fw"] == "0.3.0"
    assert info["limits"] == {"model_max": 32768, "max_width": 256, "max_layers": 8, "line_max": 256,
                              "b64_max": 192, "out_max": 1536}
    assert hello_on(vdev16k.port)["limits"]["model_max"] == DEFAULT_LIMITS["model_max"] == 16384
    with Link(vdev.port) as link:  # a v1 host: exactly the pinned v1 answer
        raw = link.hello(1.0, proto=1)
        assert link.proto == 1 and raw["proto"] == 1 and "limits" not in raw
        assert link.limits == DEFAULT_LIMITS


def test_a_port_is_held_by_one_reader_only(vdev):
    with Link(vdev.port):
        with pytest.raises(PortBusy, match="in use by another openmind reader"):
            Link(vdev.port)
    with Link(vdev.port) as link:  # released on close
        assert link.hello(1.0)["proto"] == 2


@pytest.fixture(scope="module")
def digits_default(digits_split):
    """train_or_load's default architecture (hidden [256, 256]) on digits; few epochs so the test
    stays short (the architecture, not the accuracy, is what the device must hold)."""
    Xtr, Xte, ytr, yte = digits_split
    return openmind.train_or_load("digits-v2", Xtr.astype(F32), ytr, epochs=8, progress=False), Xte, yte


def test_default_trained_digits_deploys_and_predictb_is_bit_exact_on_the_test_split(vdev, digits_default):
    model, Xte, yte = digits_default
    X = np.asarray(Xte, F32)
    blob = model.pack()
    assert model.config["hidden"] == [256, 256] and len(blob) == 23768  # over the ESP32's 16 KB
    d = deploy(model, "esp32", port=vdev.port)
    assert (d.bytes, d.inputs, d.outputs) == (23768, 64, 10)
    ref = PackedModel.from_bytes(blob)
    ref_y, ref_s = ref.predict_index(X, exact=True), ref.scores(X)
    assert (ref_y == yte).mean() > 0.8
    with Link(vdev.port) as link:
        link.hello(2.0)
        ys, scores = link.predict_batch(X)  # all 360 rows, 64 float32 features each
        one = [link.predict(x) for x in X[:40]]  # single rows go through PREDICTB too
    assert ys.shape == (360,) and np.array_equal(ys, ref_y)
    assert scores.dtype == F32 and scores.view(np.uint32).tolist() == ref_s.astype(F32).view(np.uint32).tolist()
    assert [o[0] for o in one] == ref_y[:40].tolist()
    assert np.array_equal(np.array([o[1] for o in one], F32).view(np.uint32), ref_s[:40].view(np.uint32))


def test_default_model_on_a_16k_device_is_refused_saying_what_fits(vdev16k, digits_default):
    model, _, _ = digits_default
    with pytest.raises(BadInput, match=r"23768 bytes, over the device's 16384.*fit_device=True\): hidden \[203, 203\]"):
        deploy(model, "esp32", port=vdev16k.port)


def test_fit_device_trains_what_the_probed_device_holds(vdev16k, digits_split, monkeypatch):
    Xtr, Xte, ytr, _ = digits_split
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", vdev16k.port)
    model = openmind.train_or_load("digits-fit", Xtr.astype(F32), ytr, fit_device=True, epochs=3, progress=False)
    assert model.config["hidden"] == [203, 203]
    assert "hidden [203, 203] instead of [256, 256]" in model.info["fit_device"]
    assert f"device on {vdev16k.port}" in model.info["fit_device"]
    blob = model.pack()
    assert len(blob) == size_for([64, 203, 203, 10]) <= 16384
    deploy(model, "esp32", port=vdev16k.port)
    X = np.asarray(Xte, F32)
    with Link(vdev16k.port) as link:
        link.hello(2.0)
        ys, scores = link.predict_batch(X)
    ref = PackedModel.from_bytes(blob)
    assert np.array_equal(ys, ref.predict_index(X, exact=True)) and np.array_equal(scores.view(np.uint32), ref.scores(X).view(np.uint32))


def test_fit_device_refuses_explicit_widths_that_do_not_fit_and_says_what_does(digits_split):
    Xtr, _, ytr, _ = digits_split
    with pytest.raises(BadInput, match=r"hidden \[512\].*hidden \[\d+\] fits"):
        openmind.train_or_load("d", Xtr, ytr, hidden=[512], fit_device=True, progress=False)
    with pytest.raises(BadInput, match="reduce the features"):
        openmind.train_or_load("d", np.tile(Xtr, 5), ytr, fit_device={"max_width": 256}, progress=False)


def test_predictb_refuses_bad_rows_and_stays_usable(vdev, digits_default):

    model, Xte, _ = digits_default
    deploy(model, "esp32", port=vdev.port)
    with Link(vdev.port) as link:
        link.hello(2.0)
        with pytest.raises(DeviceError, match="non-finite"):
            link.predict_batch(np.full((1, 64), np.nan, F32))
        with pytest.raises(DeviceError, match="2-D"):
            link.predict_batch(np.zeros(64, F32))
        # a row of the wrong width: the device answers fewer rows than sent
        with pytest.raises(DeviceError):
            link.predict_batch(np.zeros((3, 63), F32))
        assert link.predict(np.asarray(Xte[0], F32))[0] == int(model.packed().predict_index(np.asarray(Xte[:1], F32), exact=True)[0])


@pytest.fixture(scope="module")
def v1_vdev_binary(tmp_path_factory):
    """The firmware as it was in protocol 1 (the last commit whose om_core.h says OM_PROTO 1),
    built from git: a real v1 device for the host's fallback."""
    import subprocess

    from vdev_fixtures import ROOT

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=60).stdout

    try:
        commits = git("log", "--format=%H", "--", "firmware/core/om_core.h").split()
        old = next(c for c in commits if "#define OM_PROTO 1\n" in git("show", f"{c}:firmware/core/om_core.h"))
    except (subprocess.SubprocessError, OSError, StopIteration) as exc:
        pytest.skip(f"no git history with the protocol-1 firmware to build a v1 device from ({exc!r})")
    dest = tmp_path_factory.mktemp("fw-v1")
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", old, "firmware"], capture_output=True,
                             check=True, timeout=60).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True, timeout=60)
    subprocess.run(["make", "-s", "-C", str(dest / "firmware"), "all"], check=True, capture_output=True, timeout=240)
    return dest / "firmware" / "build" / "openmind-vdev"


def test_a_v1_device_is_spoken_to_in_v1(v1_vdev_binary, digits_model):
    model, Xte, _ = digits_model
    dev = VDev(v1_vdev_binary)
    try:
        info = hello_on(dev.port)
        assert info["proto"] == 1 and info["fw"] == "0.1.0" and info["limits"] == DEFAULT_LIMITS
        deploy(model, "esp32", port=dev.port)
        X = np.asarray(Xte[:50], F32)
        with Link(dev.port) as link:
            link.hello(2.0)
            assert link.proto == 1
            ys, scores = link.predict_batch(X)  # one v1 PREDICT text line a row
            with pytest.raises(DeviceError, match="PREDICTB"):
                link.command("PREDICTB BEGIN 1", 2.0)  # the v1 device does not know it
    finally:
        dev.close()
    ref = model.packed()
    assert np.array_equal(ys, ref.predict_index(X, exact=True)) and np.array_equal(scores.view(np.uint32), ref.scores(X).view(np.uint32))


def test_a_stale_error_before_hello_does_not_downgrade_or_shift_answers(vdev):
    with Link(vdev.port) as link:
        link.send("HELLO 0")  # its "args" error is still unread when the handshake starts
        time.sleep(0.2)
        assert link.hello(2.0)["proto"] == 2 and link.proto == 2
        assert link.command("STOP", 2.0) == {"ok": True, "sent": 0}  # the next answer is STOP's
        assert link.read_json(0.3) is None


def _small_model(seed: int) -> bytes:
    """A 20-12-5 ternary model (relu, per-row scales) from openmind's own packer."""
    from openmind.pathways.ternary.packed import Layer, pack

    rng = np.random.default_rng(seed)
    layers = [Layer(rng.integers(-1, 2, (12, 20)).astype(np.int8), rng.uniform(0.1, 2, 12).astype(F32),
                    rng.normal(0, 1, 12).astype(F32), True),
              Layer(rng.integers(-1, 2, (5, 12)).astype(np.int8), rng.uniform(0.1, 2, 1).astype(F32),
                    rng.normal(0, 1, 5).astype(F32), False)]
    return pack(layers, rng.normal(0, 3, 20).astype(F32), rng.uniform(0.01, 5, 20).astype(F32))


def test_predictb_is_bit_exact_for_any_finite_float32_rows(vdev):
    """Property: whatever float32 values (subnormals, -0.0, large magnitudes) and however many
    rows, the device's PREDICTB answers are numpy's packed kernel, bit for bit."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    blob = _small_model(1)
    deploy(blob, "esp32", port=vdev.port)
    ref = PackedModel.from_bytes(blob)
    link = Link(vdev.port)
    link.hello(2.0)
    rows = st.integers(1, 9).flatmap(lambda n: arrays(
        F32, (n, 20), elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=True)))

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
    @given(rows)
    def check(X: np.ndarray) -> None:
        ys, scores = link.predict_batch(X)
        assert np.array_equal(ys, ref.predict_index(X, exact=True))
        assert np.array_equal(scores.view(np.uint32), ref.scores(X).astype(F32).view(np.uint32))

    try:
        check()
    finally:
        link.close()
