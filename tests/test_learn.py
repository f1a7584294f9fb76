"""Learning on the device (docs/protocol-v3.md): the firmware's integer learning rule against its
Python reference, bit for bit - on random heads and inputs (>= 1,000 steps a run) built for the
host and for rv32imc under QEMU, and end to end through the virtual device on a real pty, where
the rows pass the frozen float32 layers first."""

from __future__ import annotations

import shutil
import subprocess
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from vdev_fixtures import BUILD, FIRMWARE, make

from openmind.errors import BadInput
from openmind.pathways.colony.federated import decode_layer
from openmind.pathways.device import DeviceError, Link
from openmind.pathways.learnlink import Learner, Scaling, frac_for, head_for, hidden_of, shift_for
from openmind.pathways.ternary import learn
from openmind.pathways.ternary.packed import PackedModel

RV_TOOLS = [t for t in ("riscv64-unknown-elf-gcc", "qemu-system-riscv32") if shutil.which(t) is None]


def steps_of(text: str) -> int:
    last = text.strip().splitlines()[-1]
    assert last.startswith("done ")
    return int(last.split()[1])


@pytest.mark.parametrize("seed", [1, 9])
def test_c_learning_step_equals_the_python_reference_on_random_steps(seed):
    make(f"build/learn-host-{seed}", LEARN_SEED=str(seed))
    c = subprocess.run([str(BUILD / f"learn-host-{seed}")], capture_output=True, text=True, check=True,
                       timeout=120).stdout
    py = learn.transcript(seed)
    assert steps_of(c) >= 1000 and c.count("\nu ") == 16 and c.count("\nl ") == 8
    assert c == py  # every step's state CRC, every update, the quantiser and float16 checks


@pytest.mark.skipif(bool(RV_TOOLS), reason=f"{', '.join(RV_TOOLS)} not installed: apt-get install "
                    "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc")
def test_learning_step_under_qemu_rv32imc_equals_the_python_reference():
    out = make("learn-rv32-run", LEARN_SEED="3").stdout
    text = out[out.index("learn seed"):]
    assert steps_of(text) >= 1000
    assert text == learn.transcript(3)


@pytest.mark.skipif(bool(RV_TOOLS), reason=f"{', '.join(RV_TOOLS)} not installed")
def test_whole_samples_under_qemu_rv32imc_learn_like_the_reference(tmp_path, digits_model):
    """Frozen float32 layers in soft float, quantiser, steps and update on rv32imc (the bench
    program, 40 digits rows learned twice) give the reference's update and held-out count."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("learn_bench", FIRMWARE.parent / "bench" / "learn_bench.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    model, Xte, yte = digits_model
    packed, X, y = model.packed(), np.asarray(Xte[:40], np.float32), np.asarray(yte[:40])
    last = packed.layers[-1]
    frac = frac_for(last.weights())
    blob = head_for(last.weights(), last.bias, Scaling(frac, shift_for(hidden_of(packed, X), frac), 5), 3, False)
    path = tmp_path / "bench.h"
    path.write_text(bench.header(model.pack(), blob, X, y))
    out = make("learn-bench-rv32", LEARN_BENCH_H=str(path)).stdout
    ref = reference(packed, blob, np.concatenate([X, X]), np.concatenate([y, y]))
    right = sum(ref.forward(learn.quantize(h, ref.shift_q))[0] == t for h, t in zip(hidden_of(packed, X), y, strict=True))
    assert f"update crc {zlib.crc32(ref.update()):08x}" in out
    assert f"correct {right} steps 80" in out


def test_make_learn_check_compares_host_rv32_and_python():
    import sys

    out = make("learn-check", LEARN_SEED="4", PY=sys.executable).stdout
    assert "agree on done 1280 steps" in out


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 30))
def test_float16_of_a_scaled_integer_is_numpys(v, frac):
    bits = int(learn.f16_scaled(v, frac))
    want = np.float16(np.clip(v / 2.0**frac, -65504, 65504))
    assert bits == int(want.view(np.uint16))


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=80), st.integers(0, 200))
def test_a_broken_head_blob_is_refused_with_a_reason(junk, cut):
    good = learn.head_blob(np.zeros((3, 4), np.int64), np.zeros(3, np.int64), frac_w=12, shift_q=4,
                           lr_shift=12, bias_shift=4, seed=1)
    for blob in (junk, good[:cut] if cut < len(good) else good + b"\0", b"OMLX" + good[4:]):
        with pytest.raises(BadInput):
            learn.Head.load(blob)


# --------------------------------------------------------------------------- through the device


def reference(model: PackedModel, blob: bytes, X: np.ndarray, y: np.ndarray,
              previous: learn.Head | None = None) -> learn.Head:
    """What the device does with these rows, in Python: frozen layers, quantise, step."""
    head = learn.Head.load(blob, previous)
    for h, label in zip(hidden_of(model, X), y, strict=True):
        head.step(learn.quantize(h, head.shift_q), int(label))
    return head


@pytest.fixture
def digits_head(digits_model):
    model, Xte, yte = digits_model
    packed = model.packed()
    last = packed.layers[-1]
    h = hidden_of(packed, np.asarray(Xte, np.float32))
    frac = frac_for(last.weights())
    scaling = Scaling(frac, shift_for(h, frac), 6)
    return model, packed, scaling, np.asarray(Xte, np.float32), np.asarray(yte)


def test_device_learns_bit_exactly_like_the_reference(vdev, digits_head):
    model, packed, scaling, X, y = digits_head
    last = packed.layers[-1]
    rng = np.random.default_rng(0)
    y_wrong = (y + rng.integers(1, 10, len(y))) % 10  # labels it has to learn against
    blob = head_for(last.weights(), last.bias, scaling, seed=7, carry=False)
    with Link(vdev.port) as link:
        dev = Learner(link)
        info = dev.hello()
        assert info["proto"] == 3 and dev.info["head_ram"] == learn.HEAD_RAM
        assert dev.info["max_weights"] == learn.MAX_WEIGHTS and dev.info["device_ram"] > dev.info["head_ram"]
        dev.load_model(model.pack())
        assert dev.load_head(blob)["outputs"] == 10
        before = dev.evaluate(X, y)
        trained = dev.train(X[:200], y_wrong[:200])
        after = dev.evaluate(X, y)
        update, counters = dev.update()
        # the next round: a new global head, the residual of this update carried
        blob2 = head_for(last.weights() * 0.5, last.bias, scaling, seed=8, carry=True)
        dev.load_head(blob2)
        dev.train(X[200:], y_wrong[200:])
        update2, _ = dev.update()
    ref = reference(packed, blob, X[:200], y_wrong[:200])
    assert update == ref.update() and counters == {"steps": 200, "correct": ref.correct}
    assert trained["correct"] == ref.correct and trained["steps"] == 200 and trained["bad"] == 0
    ref2 = reference(packed, blob2, X[200:], y_wrong[200:], previous=ref)
    assert update2 == ref2.update()
    q = learn.Head.load(blob)
    ys = [q.forward(learn.quantize(h, q.shift_q))[0] for h in hidden_of(packed, X)]
    assert before["correct"] == int(np.sum(np.array(ys) == y)) > 0.8 * len(y)
    assert after["correct"] < before["correct"]  # it learned the wrong labels
    dw, db = decode_layer(update, (10, last.shape[1]))  # the federation's decoder takes it as is
    assert np.abs(dw).sum() > 0 and np.isfinite(db).all()


def test_learn_errors_are_named_and_the_device_recovers(vdev, digits_head):
    model, packed, scaling, X, y = digits_head
    last = packed.layers[-1]
    blob = head_for(last.weights(), last.bias, scaling, seed=1, carry=False)
    with Link(vdev.port) as link:
        dev = Learner(link)
        dev.hello()
        with pytest.raises(DeviceError, match="nomodel"):
            dev.train(X[:2], y[:2])
        with pytest.raises(DeviceError, match="nomodel"):
            dev.update()
        dev.load_model(model.pack())
        with pytest.raises(DeviceError, match="crc"):
            dev._transfer(f"LEARN LOAD {len(blob)} 00000000", blob)
        small = head_for(last.weights()[:, :5], last.bias, scaling, seed=1, carry=False)
        dev.load_head(small)  # a head the model's last layer does not take
        with pytest.raises(DeviceError, match="nomodel"):
            dev.evaluate(X[:2], y[:2])
        dev.load_head(blob)
        bad = y[:4].copy()
        bad[1] = 99  # a label the model does not have: skipped and counted
        assert dev.train(X[:4], bad)["bad"] == 1
        with pytest.raises(DeviceError, match="args"):
            link.command("LEARN FROB", 2.0)
        assert link.hello(2.0, proto=2)["proto"] == 2 and "learn" not in link.hello(2.0, proto=2)
        ys, _ = link.predict_batch(X[:5])  # protocol 2 still answers
        assert np.array_equal(ys, packed.predict_index(X[:5], exact=True))


def test_device_learns_from_its_own_sensor_stream(vdev):
    """LEARN LIVE: windows of the device's `sine` signal, labelled by the host, never sent."""
    from openmind.pathways.colony.federated import Spec, get_weights, model_of

    spec = Spec(16, [8], np.arange(2), np.zeros(16, np.float32), np.ones(16, np.float32),
                {"seed": 0, "scale": "row", "lr": 0.01}, 1, 1)
    weights = get_weights(spec.net())
    model = model_of(spec, weights, name=None, info={})
    scaling = Scaling(frac_for(weights[-2]), 4, 5)
    with Link(vdev.port) as link:
        dev = Learner(link)
        dev.hello()
        dev.load_model(model.pack())
        dev.load_head(head_for(weights[-2], weights[-1], scaling, seed=3, carry=False))
        got = dev.live("sine", 1, 200)
        update, counters = dev.update()
    assert got["windows"] == 200 and got["steps"] == 200 == counters["steps"]
    dw, db = decode_layer(update, (2, 8))
    assert db[1] > 0 > db[0]  # it learned that the stream is class 1
    assert zlib.crc32(update) and np.abs(dw).sum() > 0


def test_device_and_reference_refuse_the_same_head_blobs(vdev, digits_head):
    """Random damage to a head blob (a flipped byte, a cut, a wrong field): the device takes it
    exactly when the Python reference does, and a refused head leaves the device's head as it was."""
    model, packed, scaling, X, y = digits_head
    last = packed.layers[-1]
    good = head_for(last.weights(), last.bias, scaling, seed=5, carry=False)
    rng = np.random.default_rng(1)
    blobs = []
    for _ in range(40):
        b = bytearray(good)
        k = int(rng.integers(0, 24))  # the header's bytes, where a flip changes a field
        b[k] ^= 1 << int(rng.integers(0, 8))
        blobs.append(bytes(b))
    blobs += [good[:-1], good + b"\0", good[:20] + b"\x00\x80" + good[22:]]  # -32768 is not a weight
    with Link(vdev.port) as link:
        dev = Learner(link)
        dev.hello()
        dev.load_model(model.pack())
        dev.load_head(good)
        for blob in blobs:
            try:
                learn.Head.load(blob)
                ok_py = True
            except BadInput:
                ok_py = False
            try:
                dev.load_head(blob)
                ok_dev = True
            except DeviceError as exc:
                assert exc.code == "args"
                ok_dev = False
            assert ok_dev == ok_py, blob[:24].hex()
            if ok_dev:
                dev.load_head(good)
        assert dev.evaluate(X[:50], y[:50])["correct"] == sum(
            learn.Head.load(good).forward(learn.quantize(h, scaling.shift_q))[0] == t
            for h, t in zip(hidden_of(packed, X[:50]), y[:50], strict=True))


LEARN_KEYS = ("hello", "proto", "learn", "ok", "got", "done", "rows", "correct", "bad", "steps", "u", "b",
              "bytes", "crc", "parts", "error", "msg", "windows")


def test_learner_survives_any_device_answer():
    """Protocol 3's host commands against a device answering arbitrary lines: each returns or
    raises DeviceError, never another exception; an update is only returned when it checks out."""
    import json

    from hostile_device import HostileDevice
    from hypothesis import HealthCheck

    from openmind.pathways import device

    values = st.one_of(st.none(), st.booleans(), st.integers(-5, 2**40), st.text(max_size=8),
                       st.lists(st.integers(0, 3), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))
    answers = st.dictionaries(st.sampled_from(LEARN_KEYS), values, max_size=6).map(lambda o: json.dumps(o).encode())
    ops = {
        "hello": lambda d: d.hello(),
        "head": lambda d: d.load_head(b"\x01" * 150),
        "train": lambda d: d.train(np.ones((3, 2), np.float32), np.array([0, 1, 0])),
        "update": lambda d: d.update(),
        "live": lambda d: d.live("temperature", 1, 2),
    }
    dev = HostileDevice(script=[])
    seen = {"n": 0}

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(st.one_of(answers, st.binary(max_size=40).filter(lambda b: b"\n" not in b)), max_size=5),
           st.sampled_from(sorted(ops)))
    def run(lines, op):
        seen["n"] += 1
        device.unbench()
        dev.script = lines
        try:
            with Link(dev.port) as link:
                got = ops[op](Learner(link, timeout=0.05))
        except DeviceError:
            return
        if op == "update":
            data, counters = got
            assert isinstance(data, bytes) and all(isinstance(v, int) for v in counters.values())

    try:
        run()
    finally:
        dev.close()
    print(f"\nfuzz learner: {seen['n']} inputs, 0 crashes")


def test_firmware_limits_agree_with_the_reference():
    import re

    header = (FIRMWARE / "core" / "om_core.h").read_text()
    defines = dict(re.findall(r"#define (OM_\w+) (\d+)", header))
    assert int(defines["OM_LEARN_MAX_W"]) == learn.MAX_WEIGHTS
    assert int(defines["OM_LEARN_MAX_OUT"]) == learn.MAX_OUTPUTS
    assert int(defines["OM_MAX_WIDTH"]) == learn.MAX_INPUTS
