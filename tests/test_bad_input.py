"""Bad input gets an error naming the bad value and the valid ones."""

from __future__ import annotations

import subprocess
import sys

import pytest

import openmind
from openmind import BadInput, Resources
from openmind.units import parse_duration, parse_rate


def test_unknown_intent_names_it_and_the_valid_ones():
    with pytest.raises(BadInput) as info:
        openmind.route("teach", resources=Resources.none())
    msg = str(info.value)
    assert "'teach'" in msg and "train" in msg and "sense" in msg and "infer" in msg


def test_unknown_pathway_in_prefer():
    with pytest.raises(BadInput) as info:
        openmind.route("train", resources=Resources.none(), prefer="gpu_train")
    msg = str(info.value)
    assert "'gpu_train'" in msg and "full_train" in msg and "hardware_in_loop" in msg


@pytest.mark.parametrize("spec,bad", [
    ("gpu", "'gpu'"),
    ("gpu=maybe", "'maybe'"),
    ("tpu=off", "'tpu'"),
    ("gpu=off,,api", "'api'"),
])
def test_malformed_assume(monkeypatch, spec, bad):
    monkeypatch.setenv("OPENMIND_ASSUME", spec)
    with pytest.raises(BadInput) as info:
        openmind.probe(refresh=True)
    msg = str(info.value)
    assert bad in msg and "OPENMIND_ASSUME" in msg
    assert "gpu" in msg and ("off" in msg or "serial" in msg)


def test_malformed_assume_on_the_cli_is_a_clear_message_not_a_traceback(tmp_path):
    env = {"OPENMIND_ASSUME": "gpu:off", "OPENMIND_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "openmind.cli", "status"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert "gpu:off" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.parametrize("kw,bad", [
    ({"fallback": "maybe"}, "'maybe'"),
    ({"strategy": "fast"}, "'fast'"),
    ({"source": "wifi"}, "'wifi'"),
    ({"budget": "ten minutes"}, "'ten minutes'"),
    ({"budget": -3}, "-3"),
    ({"fresh": "sometimes"}, "'sometimes'"),
])
def test_bad_policy_values(kw, bad):
    with pytest.raises(BadInput) as info:
        openmind.route("train", resources=Resources.none(), **kw)
    assert bad in str(info.value)


def test_unknown_policy_option_lists_valid_ones():
    with pytest.raises(BadInput) as info:
        openmind.route("train", resources=Resources.none(), fallbak="cached")
    assert "'fallbak'" in str(info.value) and "fallback" in str(info.value)


def test_journal_limit_must_be_positive():
    with pytest.raises(BadInput, match="positive"):
        openmind.journal(0)


@pytest.mark.parametrize("text,seconds", [
    ("1h", 3600), ("90s", 90), ("500ms", 0.5), ("1h30m", 5400), ("2 min", 120), (1.5, 1.5), ("7", 7),
])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["1 fortnight", "h", "-5s", "5x", "1h 30", "0s", "nan"])
def test_nonsense_durations(text):
    with pytest.raises(BadInput):
        parse_duration(text)


@pytest.mark.parametrize("text,hz", [("1Hz", 1), ("2kHz", 2000), ("10/s", 10), ("30/min", 0.5), (50, 50)])
def test_rates(text, hz):
    assert parse_rate(text) == pytest.approx(hz)


@pytest.mark.parametrize("text", ["fast", "0Hz", "-1Hz", "10 per second", "Hz"])
def test_nonsense_rates(text):
    with pytest.raises(BadInput):
        parse_rate(text)


# --------------------------------------------------------------------------- numbers the model can hold


def test_data_beyond_float32_is_refused_where_the_model_computes():
    """X * 1e39 is finite in float64 and infinite in the float32 the model computes in: train,
    infer and predict refuse it with a BadInput naming the cell, instead of a majority-class
    model with a non-finite mean under a normal route."""
    import numpy as np
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    X, y = X[:300], y[:300]
    with pytest.raises(BadInput, match=r"beyond float32's range.*rescale"):
        openmind.train_or_load("huge", X * 1e39 + 1e39, y, epochs=1, progress=False)
    model = openmind.train_or_load("fine", X, y, hidden=[16], epochs=2, progress=False)
    with pytest.raises(BadInput, match=r"at row 0, column 0.*beyond float32"):
        openmind.infer_adaptive("fine", X[:5] * 1e39 + 1e39)
    with pytest.raises(BadInput, match="beyond float32"):
        model.predict(X[:5] * 1e39 + 1e39)
    assert np.isfinite(model.info["val_accuracy"])  # float32's own range stays fine
    model.predict(X[:5] * 1e30)


@pytest.mark.parametrize("option, said", [
    ({"seed": "x"}, "seed must be an integer"), ({"seed": 1.5}, "seed must be an integer"),
    ({"seed": -1}, "seed must be an integer >= 0"), ({"seed": True}, "seed must be an integer"),
    ({"epochs": True}, "epochs must be an integer"), ({"lr": "fast"}, "lr must be a number"),
    ({"lr": float("inf")}, "lr must be a finite number"), ({"weight_decay": -1}, "weight_decay"),
    ({"batch_size": "64"}, "batch_size must be an integer"), ({"hidden": "wide"}, "hidden must be"),
    ({"hidden": [1.5]}, "list of whole widths"), ({"prefer": 3}, "prefer takes pathway names"),
    ({"fresh": "maybe"}, "fresh must be true or false"), ({"strict": [1]}, "strict must be true"),
    ({"fit_device": "x"}, "fit_device takes"), ({"progress": "no"}, "progress takes"),
])
def test_every_option_of_the_wrong_type_is_a_bad_input(option, said):
    import numpy as np

    X, y = np.random.default_rng(0).normal(size=(40, 3)), np.arange(40) % 2
    with pytest.raises(BadInput, match=said):
        openmind.train_or_load("typed", X, y, **{"progress": False, **option})
