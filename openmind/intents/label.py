"""Active learning: the rows a model abstains on wait in a queue for a label; labelled rows join
the next `train_or_load` of that model, which fine-tunes on them.

A binary ternary model abstains with the trit 0 (`predict_trits`: top probability below the
confidence); a multi-class model abstains the same way (`uncertain`). `infer_adaptive`, `validate`
and `monitor` queue what they abstain on; `label_queue(name)` lists it, `label(name, rows, labels)`
answers it, `forget_labels(name)` empties it. The queue lives in the SQLite index, so it survives restarts.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from openmind.errors import BadInput
from openmind.memory import labels as store

CONFIDENCE = 0.8  # the confidence below which a model abstains (predict_trits' default)


def abstained(model: Any, X: np.ndarray, proba: np.ndarray | None = None,
              confidence: float = CONFIDENCE) -> np.ndarray:
    """A boolean mask of the rows `model` abstains on: trit 0 for a binary model (predict_trits),
    top probability below `confidence` for a multi-class one. `proba` saves a forward pass."""
    classes = getattr(model, "classes_", None)
    if proba is None and classes is not None and len(classes) == 2 and hasattr(model, "predict_trits"):
        return np.asarray(model.predict_trits(X, confidence)) == 0
    if proba is None:
        proba = model.predict_proba(X)
    return np.asarray(proba).max(axis=1) < confidence


def queue_abstentions(name: str, X: np.ndarray, proba: np.ndarray,
                      confidence: float = CONFIDENCE, unsure: np.ndarray | None = None) -> int:
    """Queue the rows of X whose top probability is below `confidence` (same rule as the trit 0),
    or the rows `unsure` marks (a colony's abstentions), least confident first. Never raises: a
    full or read-only store only loses the queue entry."""
    try:
        top = np.asarray(proba).max(axis=1)
        mask = top < confidence if unsure is None else np.asarray(unsure, dtype=bool)
        rows = np.flatnonzero(mask)
        if not len(rows):
            return 0
        order = rows[np.argsort(top[rows], kind="stable")]
        why = f"top probability below {confidence:g}" if unsure is None else "the colony abstained"
        return store.queue(name, np.asarray(X), why, order)
    except Exception:  # noqa: BLE001 - queueing is a side benefit of a prediction, never its cost
        return 0


def label_queue(name: str) -> np.ndarray:
    """The rows `name` abstained on that have no label yet (2-D, oldest first; empty if none)."""
    _check_name(name)
    return store.pending(name)


def label(name: str, rows: Any, labels: Any) -> int:
    """Give labels to rows of `name`: `rows` are the rows themselves (2-D) or indices into
    `label_queue(name)`. The next `train_or_load(name, ...)` fine-tunes on them. Returns how many."""
    _check_name(name)
    y = np.asarray(labels)
    idx = np.asarray(rows)
    if idx.ndim == 1 and idx.dtype.kind in "iu":
        queued = store.pending(name)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(queued)):
            raise BadInput(f"row index out of range: the queue of '{name}' holds {len(queued)} rows "
                           f"(see openmind.label_queue({name!r}))")
        X = queued[idx] if len(idx) else np.empty((0, queued.shape[1] if queued.ndim == 2 else 0))
    else:
        X = idx
    if X.ndim != 2 or X.dtype.kind not in "biuf":
        raise BadInput(f"rows must be a 2-D array of numbers (the rows to label) or indices into "
                       f"label_queue({name!r}); got shape {X.shape}, dtype {X.dtype}")
    if y.ndim != 1 or len(y) != len(X):
        raise BadInput(f"{len(X)} rows but {y.size} labels: give one label per row")
    if y.dtype.kind == "O" or (y.dtype.kind == "f" and not np.isfinite(y).all()):
        raise BadInput("labels must be numbers or strings, one per row, without NaN or None")
    if not np.isfinite(X).all():
        raise BadInput("rows contain NaN or infinity")
    if not len(X):
        return 0
    return store.add(name, X, y)


def forget_labels(name: str) -> int:
    """Forget every queued and labelled row of `name` (a fresh start for its active learning:
    the next `train_or_load(name, ...)` trains on its own data alone). Returns how many rows."""
    _check_name(name)
    return store.forget(name)


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name.strip():
        raise BadInput(f"name must be the model's name (a non-empty string), got {name!r}")
