"""train_or_load end to end: full train, cache hit, fine-tune, budget, interrupt, bad input, routing."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from openmind.errors import BadInput
from openmind.flow.journal import journal
from openmind.flow.resources import Resource, Resources, gpu_present
from openmind.intents.train import train_or_load
from openmind.vocab import Decision, Pathway

SMALL = {"hidden": [32], "epochs": 8, "progress": False}


def _blobs(n: int = 400, seed: int = 0, shift: float = 4.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    X = rng.normal(size=(n, 5)) + shift * np.eye(3, 5)[y]
    return X, y


def test_digits_full_train_then_exact_cache_hit(digits_split):
    Xtr, Xte, ytr, yte = digits_split
    cfg = {"hidden": [128], "epochs": 40, "progress": False}  # the default 2x256 is benchmarked
    model = train_or_load("digits", Xtr, ytr, **cfg)
    assert (model.route.pathway, model.route.decision) == (Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert model.score(Xte, yte) >= 0.95
    assert model.info["val_accuracy"] > 0.9 and model.info["stored"] is True
    again = train_or_load("digits", Xtr, ytr, **cfg)
    assert (again.route.pathway, again.route.decision) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)
    assert again.info["cached"] is True
    assert np.array_equal(again.predict(Xte), model.predict(Xte))
    assert again.pack() == model.pack()
    rec = journal(2)
    assert [r["decision"] for r in rec] == ["CACHED", "HARDCODE"]
    assert rec[1]["summary"]["packed_bytes"] == len(model.pack())
    # fresh=True skips the hit; a changed config is another key
    fresh = train_or_load("digits", Xtr[:300], ytr[:300], fresh=True, **SMALL)
    assert fresh.route.pathway != Pathway.MUSCLE_MEMORY


def test_fine_tune_reaches_scratch_accuracy_in_fewer_epochs(digits_split):
    Xtr, _, ytr, _ = digits_split
    cfg = {"hidden": [64], "epochs": 30, "patience": 30, "progress": False}
    half = len(Xtr) // 2
    train_or_load("digits", Xtr[:half], ytr[:half], **cfg)
    tuned = train_or_load("digits", Xtr[half:], ytr[half:], **cfg)
    assert (tuned.route.pathway, tuned.route.decision) == (Pathway.FINE_TUNE, Decision.HYBRID)
    assert tuned.info["parent"]
    scratch = train_or_load("other-name", Xtr[half:], ytr[half:], **cfg)
    assert scratch.route.pathway == Pathway.FULL_TRAIN
    target = max(scratch.info["val_history"])

    def epochs_to(history: list[float], level: float) -> int:
        return next((i + 1 for i, a in enumerate(history) if a >= level), len(history) + 1)

    # same seed and data: both hold out the same validation rows
    assert epochs_to(tuned.info["val_history"], target) < epochs_to(scratch.info["val_history"], target)


def test_budget_stops_training_and_says_so():
    X, y = _blobs(3000)
    t0 = time.perf_counter()
    model = train_or_load("budgeted", X, y, budget=0.5, hidden=[128], epochs=5000, patience=5000,
                          progress=False)
    assert time.perf_counter() - t0 < 15
    assert model.info["stopped"] == "budget" and model.info["budget_s"] == 0.5
    assert model.route.summary["stopped"] == "budget"


@pytest.mark.parametrize("option", [{"fallback": "none"}, {"strict": True}])
def test_fallback_none_with_a_short_budget_trains_what_fits(option):
    """One rule for refusing degraded results: an older model of that name (another width, so it
    cannot be fine-tuned) stands by, the budget cuts the train short; fallback=none and strict
    both train what fits (the call's own budget: accepted, and said) before the old model."""
    X, y = _blobs(3000, seed=1)
    train_or_load("short", X[:200], y[:200], hidden=[8], epochs=2, progress=False)
    model = train_or_load("short", X, y, budget=0.3, hidden=[128], epochs=5000, patience=5000,
                          progress=False, **option)
    assert (model.route.pathway, model.route.decision) == (Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert model.info["stopped"] == "budget" and model.info["cached"] is False
    assert model.route.degraded.startswith("partial: stopped by the budget")
    assert [a["pathway"] for a in journal(1)[0]["attempts"]] == ["fine_tune", "full_train"]
    # the old model alone (muscle memory only) is a stand-in: refused under either option
    with pytest.raises(Exception, match="refuses a degraded result"):
        train_or_load("short", X[:300], y[:300], hidden=[128], epochs=5, progress=False,
                      strategy="cached", **option)


def _interrupt_when_training(timeout: float = 60.0, after: float = 0.0) -> threading.Thread:
    """Send a real SIGINT (Ctrl-C) to this process once the main thread has been inside fit()
    for `after` seconds."""
    main = threading.main_thread().ident

    def watch() -> None:
        deadline = time.monotonic() + timeout
        entered = None
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(main)
            while frame is not None:
                if frame.f_code.co_name == "_fit" and frame.f_code.co_filename.endswith("fit.py"):
                    entered = entered or time.monotonic()
                    if time.monotonic() - entered >= after:
                        os.kill(os.getpid(), signal.SIGINT)
                        return
                    break
                frame = frame.f_back
            time.sleep(0.01)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_ctrl_c_stops_the_call_keeps_a_partial_version_and_the_next_call_resumes_it():
    from openmind.memory.blobs import versions

    X, y = _blobs(300)
    train_or_load("robot", X, y, **SMALL)
    X2, y2 = _blobs(300, seed=1)
    cfg = {"hidden": [32], "epochs": 300, "patience": 300, "progress": False}
    watcher = _interrupt_when_training(after=0.4)
    with pytest.raises(KeyboardInterrupt):  # before: the cached model came back, green
        train_or_load("robot", X2, y2, **cfg)
    watcher.join(5)
    rec = journal(1)[0]
    assert rec["ok"] is False and rec["interrupted"] is True
    assert rec["attempts"][-1]["outcome"] == "interrupted"
    cut = versions("model", "robot")[0]
    assert cut.meta["complete"] is False and cut.meta["stopped"] == "interrupted"
    done = cut.meta["epochs_done"]
    assert 0 < done < 300
    resumed = train_or_load("robot", X2, y2, **cfg)
    assert (resumed.route.pathway, resumed.route.decision) == (Pathway.FINE_TUNE, Decision.HYBRID)
    assert f"resumed after {done} of 300 epochs" in resumed.route.reason
    assert resumed.route.degraded is None and resumed.info["parent"] == cut.key
    again = train_or_load("robot", X2, y2, **cfg)
    assert again.route.pathway == Pathway.MUSCLE_MEMORY and again.route.degraded is None
    assert again.pack() == resumed.pack()
    assert len(versions("model", "robot")) == 3  # first, the partial, the resumed one


def test_routing_with_injected_gpu_trains_on_cpu_and_says_why(monkeypatch):
    from openmind.flow import rules
    from openmind.pathways.ternary.fit import pick_device

    res = Resources.none(gpu=gpu_present([{"index": 0, "name": "Injected A100",
                                           "memory_total": 2**34, "memory_free": 2**34}]))
    X, y = _blobs(200)
    small = train_or_load("gpu-model", X, y, resources=res, **SMALL)
    assert small.route.pathway == Pathway.FULL_TRAIN
    assert "a GPU is here" in small.route.reason and small.info["device"] == "cpu"  # too small for it
    monkeypatch.setattr(rules, "GPU_MIN_TRAIN_S", 0.0)  # as if the train were big enough
    model = train_or_load("gpu-model", X, y, resources=res, fresh=True, **SMALL)
    assert "CUDA GPU" in model.route.reason  # routed to the GPU; this machine has no CUDA
    assert model.info["device"] == "cpu" and "CUDA" in model.info["device_note"]
    assert pick_device("cuda", cuda_available=True) == ("cuda", None)
    assert pick_device("cuda", cuda_available=False)[0] == "cpu"
    assert pick_device("cpu", cuda_available=True) == ("cpu", None)


def _images(n: int = 200):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=n)
    return rng.normal(size=(n, 4, 4)) + 2 * y[:, None, None], y


def test_unknown_data_shape_gets_a_heuristic_plan():
    X, y = _images()
    # the router is told an API is there (injected); the planner finds no usable one and says so
    res = Resources.none(api=Resource.present("api", "injected key", "valid"))
    model = train_or_load("images", X, y, resources=res, lr=0.01, progress=False)
    assert (model.route.pathway, model.route.decision) == (Pathway.FULL_TRAIN, Decision.MODEL)
    first = model.route.attempts[0]
    assert first.pathway == Pathway.CLOUD_INFERENCE and first.outcome == "failed"
    assert "heuristic plan" in model.info["plan"] and model.config["lr"] == 0.01  # explicit wins
    assert model.n_features_in_ == 16 and model.score(X, y) > 0.8  # predicts on 3-D input too


def test_unknown_data_shape_trains_on_the_language_models_plan(monkeypatch):
    from tests.fake_llm import VALID_PLAN, configured

    key = "sk-openmind-train-test-0c1d2e"
    with configured(monkeypatch, key) as fake:
        X, y = _images()
        model = train_or_load("images", X, y, progress=False)
        sent = json.dumps(fake.calls("/v1/chat/completions")[0]["body"])
    # planned by the language model, trained here: journaled as the pathway that ran
    assert (model.route.pathway, model.route.decision) == (Pathway.FULL_TRAIN, Decision.MODEL)
    assert journal(1)[0]["pathway"] == "full_train"
    assert model.route.attempts[0].pathway == Pathway.FULL_TRAIN
    assert model.config["hidden"] == VALID_PLAN["architecture"]["hidden"]
    assert model.config["epochs"] == VALID_PLAN["epochs"]
    assert "language model's plan" in model.info["plan"]
    assert "[200, 4, 4]" in sent and str(X[0, 0, 0])[:8] not in sent  # the shape, never the data
    assert key not in json.dumps(journal(1)[0])


def test_a_refused_plan_keeps_its_reason_and_a_fine_tune_plan_is_honoured(monkeypatch):
    from tests.fake_llm import VALID_PLAN, configured

    key = "sk-openmind-train-test-77aa11"
    X, y = _images()
    with configured(monkeypatch, key) as fake:
        fake.script("/v1/chat/completions", ("reply", json.dumps({"pathway": "teleport"})))
        model = train_or_load("images", X, y, progress=False)
        failed = model.route.attempts[0]
        assert failed.outcome == "failed" and "no valid training plan:" in failed.error
        assert len(failed.error) > len("PathwayUnavailable: the language model gave no valid training plan: ")
        assert (model.route.pathway, model.route.decision) == (Pathway.FULL_TRAIN, Decision.MODEL)
        # a valid fine-tune plan on new data of the same shape: the ancestor is fine-tuned
        plan = {**VALID_PLAN, "pathway": "fine_tune",
                "architecture": {"hidden": model.config["hidden"], "activation": "relu"},
                "epochs": 5}
        fake.script("/v1/chat/completions", ("reply", json.dumps(plan)))
        X2, y2 = X[::-1].copy(), y[::-1].copy()
        tuned = train_or_load("images", X2, y2, progress=False, fresh=False)
    assert (tuned.route.pathway, tuned.route.decision) == (Pathway.FINE_TUNE, Decision.MODEL)
    assert tuned.info["parent"] == model.info["key"]
    assert journal(1)[0]["pathway"] == "fine_tune"


def test_string_and_trit_labels_round_trip():
    X, y = _blobs(300)
    names = np.array(["cat", "dog", "eel"])[y]
    model = train_or_load("animals", X, names, **SMALL)
    assert model.classes_.tolist() == ["cat", "dog", "eel"]
    assert set(model.predict(X)) <= {"cat", "dog", "eel"} and model.score(X, names) > 0.8
    trits = y - 1
    tri = train_or_load("trits", (X, trits), **SMALL)
    assert set(np.unique(tri.predict(X)).tolist()) <= {-1, 0, 1}
    cached = train_or_load("trits", (X, trits), **SMALL)
    assert cached.route.decision == Decision.CACHED and cached.classes_.dtype == tri.classes_.dtype


@pytest.mark.parametrize("args, kwargs, message", [
    ((np.ones((10, 3)), np.arange(9)), {}, "X has 10 rows but labels has 9"),
    ((np.ones((10, 3)), np.zeros(10)), {}, "one class only"),
    ((np.ones((10, 3)),), {}, "no labels"),
    ((np.ones((10, 3)), np.arange(10) % 2), {"hiden": [3]}, "unknown training option 'hiden'"),
    ((np.ones((10, 3)), np.arange(10) % 2), {"hidden": [0]}, "hidden widths"),
    ((np.ones((10, 3)), np.arange(10) % 2), {"budget": "soon"}, "cannot read budget"),
    ((np.ones((4, 70000), np.float32), np.arange(4) % 2), {}, "at most 65535"),
    (("bad",), {"labels": np.arange(3)}, "X must be an array of rows"),
])
def test_bad_input_is_named(args, kwargs, message):
    with pytest.raises(BadInput, match=message):
        train_or_load("bad", *args, **kwargs)


def test_nan_in_x_names_row_and_column():
    X, y = _blobs(50)
    X[7, 3] = np.nan
    with pytest.raises(BadInput, match=r"NaN at row 7, column 3"):
        train_or_load("bad", X, y)
    assert journal(5) == []  # rejected before any pathway ran


def test_wrong_feature_count_at_predict_time():
    X, y = _blobs(200)
    model = train_or_load("five", X, y, **SMALL)
    with pytest.raises(BadInput, match=r"X for model 'five' has 4 features per row .* trained on 5"):
        model.predict(X[:, :4])
