"""The label queue: rows a model abstained on, waiting for a person's label, per model name.

Kept in the memory index ("labels" entries: rows in the blob, labels and status in the meta), so it
survives restarts and a second kernel sees it. Queued rows are "pending" until `add` gives them
labels; labelled rows join every later `train_or_load` of that name (`join`), so the fine-tune
that follows learns them and a retrain with the same data stays an exact hit.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from openmind.config import home
from openmind.memory.blobs import entries, fingerprint, get, key_for, put
from openmind.memory.store import generation, memory_version

# at most this many rows queued by one call (the least confident first)
MAX_ROWS_PER_CALL = 1000


def queue(name: str, X: np.ndarray, why: str, order: np.ndarray | None = None) -> int:
    """Queue rows of `name` for labelling; rows already queued or labelled are not queued twice.
    Returns how many rows are new in the queue."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    if X.ndim != 2 or not len(X):
        return 0
    if order is not None:
        X = X[np.asarray(order)[:MAX_ROWS_PER_CALL]]
    X = X[:MAX_ROWS_PER_CALL]
    known = _known_keys(name)
    keys = row_keys(X)
    new = set(keys) - known
    if not new:  # the usual case: every row already waits for (or has) its label
        return 0
    fresh = []
    for i, k in enumerate(keys):  # first sight of each new row: a row twice in a batch is queued once
        if k in new:
            new.discard(k)
            fresh.append(i)
    rows = X[fresh]
    put("labels", name, key_for("label-queue", name, fingerprint(rows)), {"X": rows},
        {"status": "pending", "why": why, "rows": len(rows), "ts": time.time()})
    known.update(keys[i] for i in fresh)  # our own write: the memo stays, the queue is not re-read
    _KNOWN[(str(home()), name)] = (generation(), time.monotonic(), memory_version(), known)
    return len(rows)


def row_keys(X: np.ndarray) -> list[bytes]:
    """Each row's float64 bytes (X is 2-D): the exact identity a queued row is known by. One copy
    of the block, sliced (a prediction that abstains on every row of a batch checks them all)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    raw, width = X.tobytes(), X.shape[1] * 8
    return [raw[i:i + width] for i in range(0, len(raw), width)] if width else [b""] * len(X)


def _load(status: str, name: str) -> list[tuple[np.ndarray, dict[str, Any]]]:
    out = []
    for e in sorted(entries("labels", name), key=lambda e: e.created):
        if e.meta.get("status") != status:
            continue
        hit = get("labels", e.key)
        if hit is not None and "X" in hit[0]:
            out.append((hit[0]["X"], e.meta))
    return out


# (store, name) -> (this process's write count, when checked, store change count, row keys): a
# prediction that abstains on rows already queued reads no queued row again. Another process's
# change is seen within RECHECK_S; a row queued twice meanwhile is listed once (`pending`).
_KNOWN: dict[tuple[str, str], tuple[int, float, tuple[str, int] | None, set[bytes]]] = {}
RECHECK_S = 1.0


def _known_keys(name: str) -> set[bytes]:
    where, now, gen = str(home()), time.monotonic(), generation()
    hit = _KNOWN.get((where, name))
    if hit is not None and hit[0] == gen and now - hit[1] < RECHECK_S:
        return hit[3]
    version = memory_version()
    if hit is not None and version is not None and hit[2] == version:
        _KNOWN[(where, name)] = (gen, now, version, hit[3])
        return hit[3]
    keys: set[bytes] = set()
    for status in ("pending", "labelled"):
        for X, _meta in _load(status, name):
            keys.update(row_keys(X))
    if len(_KNOWN) >= 16:
        _KNOWN.clear()
    _KNOWN[(where, name)] = (gen, now, version, keys)
    return keys


def pending(name: str) -> np.ndarray:
    """The queued rows of `name` that have no label yet, oldest first (2-D; empty when none)."""
    done = {k for X, _m in _load("labelled", name) for k in row_keys(X)}
    rows, seen = [], set()
    for X, _meta in _load("pending", name):
        for r, k in zip(X, row_keys(X), strict=True):
            if k not in done and k not in seen:
                seen.add(k)
                rows.append(r)
    if not rows:
        return np.empty((0, 0))
    return np.vstack(rows)


def add(name: str, X: np.ndarray, y: np.ndarray) -> int:
    """Keep labels for rows of `name`; they leave the pending queue and join later training."""
    X = np.ascontiguousarray(np.asarray(X, dtype=np.float64))
    put("labels", name, key_for("labelled", name, fingerprint(X, y)), {"X": X},
        {"status": "labelled", "y": np.asarray(y).tolist(), "rows": len(X), "ts": time.time()})
    return len(X)


def labelled(name: str) -> tuple[np.ndarray, np.ndarray] | None:
    """Every labelled row of `name` (X, y), oldest first, or None."""
    parts = _load("labelled", name)
    if not parts:
        return None
    X = np.vstack([p[0] for p in parts])
    y = np.concatenate([np.asarray(p[1].get("y", [])) for p in parts])
    return X, y


def join(name: str, X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(X, y, n): the training data with the labelled rows of `name` appended (those of the same
    width and a label type that mixes with y; n = how many joined)."""
    try:
        found = labelled(name)
    except Exception:  # an unreadable queue must not stop training
        return X, y, 0
    if found is None or X.ndim != 2:
        return X, y, 0
    LX, Ly = found
    if LX.shape[1] != X.shape[1] or len(LX) != len(Ly):
        return X, y, 0
    if (np.asarray(Ly).dtype.kind in "USO") != (y.dtype.kind in "USO"):
        return X, y, 0
    return (np.concatenate([X, LX.astype(X.dtype, copy=False)]),
            np.concatenate([y, np.asarray(Ly).astype(y.dtype, copy=False)]), len(LX))


def forget(name: str) -> int:
    """Remove the whole label queue of `name`, pending and labelled rows; returns how many rows
    went (each once, as `label_queue` and the labelled rows list it). Later training of `name` no longer joins them (its versions stay in memory)."""
    from openmind.memory.blobs import remove

    done = labelled(name)
    rows = len(pending(name)) + (len(done[0]) if done is not None else 0)
    for e in entries("labels", name):
        remove(e.key)
    _KNOWN.pop((str(home()), name), None)
    return rows

