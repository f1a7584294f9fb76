"""A hypothesis property test over random sequences of train_or_load / infer_adaptive calls
(data subsets, configs, fresh, tiny budgets, strategy, real Ctrl-C) on a real store:

- the returned model predicts exactly as the stored version its route names;
- cached predictions equal that model's own;
- `route.degraded` is set exactly when the model is not the one the call asked for (another
  request's version, or a run cut short).
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
import time

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from openmind.errors import AllPathwaysFailed
from openmind.flow.journal import journal
from openmind.intents.infer import infer_adaptive, load_local_model
from openmind.intents.train import request_key, train_or_load
from openmind.memory.blobs import fingerprint, get
from openmind.pathways.ternary.fit import TRAINER_VERSION, resolve_config
from openmind.pathways.ternary.packed import TernaryModel
from openmind.vocab import Pathway

NAME = "prop"
CONFIGS = [{"hidden": [8], "epochs": 8}, {"hidden": [8], "epochs": 8, "lr": 0.01},
           {"hidden": [12], "epochs": 8}, {"hidden": [8], "epochs": 400, "patience": 400}]


def _subsets():
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(X))
    return [(X[perm[:100]], y[perm[:100]]), (X[perm[50:150]], y[perm[50:150]])]


SUBSETS = _subsets()

train_op = st.tuples(st.just("train"), st.integers(0, 1), st.integers(0, len(CONFIGS) - 1),
                     st.booleans(), st.sampled_from([None, None, 0.003]),
                     st.sampled_from([None, None, "cached"]), st.booleans())
infer_op = st.tuples(st.just("infer"), st.integers(0, 1), st.booleans())


class _CtrlC:
    """A real SIGINT sent while the main thread is inside fit(); one landing elsewhere (the run
    ended first) is ignored, so an interrupt hits training or nothing."""

    def __init__(self) -> None:
        self.main = threading.main_thread().ident
        self.stop = threading.Event()
        self.hit = False

    @staticmethod
    def _in_fit(frame) -> bool:
        while frame is not None:
            if frame.f_code.co_name == "_fit" and frame.f_code.co_filename.endswith("fit.py"):
                return True
            frame = frame.f_back
        return False

    def _handler(self, signum, frame) -> None:
        if self._in_fit(frame):
            self.hit = True
            raise KeyboardInterrupt

    def _watch(self) -> None:
        entered = None
        while not self.stop.is_set():
            if self._in_fit(sys._current_frames().get(self.main)):
                entered = entered or time.monotonic()
                if time.monotonic() - entered > 0.002:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.0005)

    def __enter__(self) -> _CtrlC:
        self.old = signal.signal(signal.SIGINT, self._handler)
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        time.sleep(0.01)  # a signal already sent is handled by our handler
        signal.signal(signal.SIGINT, self.old)


def _stored(key: str) -> tuple[TernaryModel, dict]:
    arrays, entry = get("model", key)
    return TernaryModel.from_arrays(arrays, entry.meta), entry.meta


def _check_train(op) -> None:
    _, s, c, fresh, budget, strategy, interrupt = op
    X, y = SUBSETS[s]
    cfg = CONFIGS[c]
    options = {**cfg, "progress": False, "fresh": fresh}
    if budget is not None:
        options["budget"] = budget
    if strategy is not None:
        options["strategy"] = strategy
    try:
        if interrupt:
            with _CtrlC() as ctrl_c:
                try:
                    model = train_or_load(NAME, X, y, **options)
                except KeyboardInterrupt:
                    assert ctrl_c.hit
                    rec = journal(1)[0]
                    assert rec["interrupted"] and not rec["ok"]
                    return
        else:
            model = train_or_load(NAME, X, y, **options)
    except AllPathwaysFailed:
        assert strategy == "cached"  # muscle memory only, and nothing of that name answers
        return
    route = model.route
    if fresh:
        assert route.pathway == Pathway.FULL_TRAIN and "parent" not in model.info
    stored, meta = _stored(route.summary["key"])
    # the model predicts exactly as the version its route names
    assert np.array_equal(model.predict(X), stored.predict(X))
    assert model.pack() == stored.pack()
    asked = request_key(NAME, fingerprint(X, y), resolve_config(dict(cfg)), TRAINER_VERSION)
    the_one = meta.get("request") == asked and bool(meta.get("complete"))
    # degraded exactly when it is not the model asked for
    assert (route.degraded is None) == the_one, (route, meta.get("stopped"))
    if route.pathway == Pathway.MUSCLE_MEMORY and route.degraded is None:
        assert not fresh


def _check_infer(op) -> None:
    _, s, by_object = op
    X, _ = SUBSETS[s]
    local = load_local_model(NAME)
    if local is None:
        return
    if by_object:
        pred = infer_adaptive(local.model, X)
    else:
        pred = infer_adaptive(NAME, X)
    # cached or computed, the predictions are that model's own
    assert np.array_equal(np.asarray(pred.values), local.model.predict(X))
    assert (pred.route.degraded is None) == bool((local.meta or {}).get("complete", True))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(train_op, infer_op), min_size=1, max_size=6))
def test_random_sequences_keep_exact_exact_and_fallbacks_marked(monkeypatch, ops):
    from openmind.flow.resources import invalidate

    monkeypatch.setattr("openmind.intents.infer.CACHE_MIN_WORK", 0)  # tiny models: cache anyway

    old = os.environ.get("OPENMIND_HOME")
    with tempfile.TemporaryDirectory() as home:
        os.environ["OPENMIND_HOME"] = home
        invalidate()
        try:
            for op in ops:
                (_check_train if op[0] == "train" else _check_infer)(op)
        finally:
            if old is None:
                os.environ.pop("OPENMIND_HOME", None)
            else:
                os.environ["OPENMIND_HOME"] = old
            invalidate()
