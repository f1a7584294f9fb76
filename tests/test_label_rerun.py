"""Active learning told twice in one store (issue 27: a second colony run lost its story): the
labels an earlier run gave can be forgotten, and predictions answered from memory queue their
unsure rows as computed ones do."""

from __future__ import annotations

import numpy as np
import pytest

import openmind


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))
    return X[idx[:300]], y[idx[:300]], X[idx[300:]], y[idx[300:]]


def _story(Xtr, ytr, Xpool, ypool):
    """The colony notebook's active-learning cells, as a function: (routes, queued, before, after)."""
    openmind.forget_labels("bc")
    first = openmind.train_or_load("bc", Xtr, ytr, hidden=[32], epochs=10, progress=False)
    answered = openmind.infer_adaptive(first, Xpool)
    queued = openmind.label_queue("bc")
    truth = np.array([ypool[np.flatnonzero((Xpool == row).all(axis=1))[0]] for row in queued])
    openmind.label("bc", np.arange(len(queued)), truth)
    tuned = openmind.train_or_load("bc", Xtr, ytr, hidden=[32], epochs=10, progress=False)
    routes = [(r.route.pathway.value, r.route.decision.value) for r in (first, answered, tuned)]
    return (routes, len(queued), float(np.mean(first.predict(queued) == truth)),
            float(np.mean(tuned.predict(queued) == truth)))


def test_a_second_run_tells_the_same_story_from_memory(cancer):
    once = _story(*cancer)
    assert once[0] == [("full_train", "HARDCODE"), ("muscle_memory", "HARDCODE"), ("fine_tune", "HYBRID")]
    assert once[1] > 5 and once[3] > once[2]
    again = _story(*cancer)
    # the same rows queued and the same figures; both trainings are hits (predictions this cheap
    # are computed again, not cached: see the next test for cached ones)
    assert again[1:] == once[1:]
    assert again[0][0] == again[0][2] == ("muscle_memory", "CACHED")


def test_forget_labels_empties_the_queue_and_cached_predictions_queue_again(cancer, monkeypatch):
    from openmind.intents import infer

    monkeypatch.setattr(infer, "CACHE_MIN_WORK", 0)  # keep even these cheap predictions
    Xtr, ytr, Xpool, _ = cancer
    model = openmind.train_or_load("bc", Xtr, ytr, hidden=[8], epochs=2, progress=False)
    openmind.infer_adaptive(model, Xpool)
    pending = len(openmind.label_queue("bc"))
    assert pending > 0
    assert openmind.forget_labels("bc") == pending and len(openmind.label_queue("bc")) == 0
    hit = openmind.infer_adaptive(model, Xpool)
    assert hit.route.decision.value == "CACHED"
    assert len(openmind.label_queue("bc")) == pending  # answered from memory, queued all the same
    openmind.label("bc", np.arange(2), np.array([0, 1]))
    assert openmind.forget_labels("bc") == pending  # the two labelled rows were pending ones
    assert len(openmind.label_queue("bc")) == 0 and openmind.forget_labels("bc") == 0
    again = openmind.train_or_load("bc", Xtr, ytr, hidden=[8], epochs=2, progress=False)
    assert again.route.decision.value == "CACHED" and again.info["rows"] == len(Xtr)
    with pytest.raises(openmind.BadInput):
        openmind.forget_labels("")
