"""`validate`: the colony's validator. Scores a model version on labelled rows, keeps the figures
beside the version in muscle memory, compares them with the previous version of that name and with
the version it was fine-tuned from, and sheds a version that does worse beyond a tolerance: the
train and infer lookups then pass it over (memory/health.py), unless the user pins it.

Figures: accuracy, per-class precision and recall, the confusion matrix, calibration (expected
calibration error over 10 confidence bins) and the abstention rate (the trit 0 of a binary model,
top probability below the confidence for a multi-class one).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import execute
from openmind.flow.policy import split_policy
from openmind.flow.resources import Resources
from openmind.flow.router import Candidate, Intent, route
from openmind.intents.present import html_of
from openmind.memory import health
from openmind.memory.blobs import Entry, entries, fingerprint, get, key_for, latest, put
from openmind.vocab import Decision, Pathway, Route

TOLERANCE = 0.02  # a version may score this much accuracy below its predecessor and stay healthy
CONFIDENCE = 0.8
ECE_BINS = 10


# --------------------------------------------------------------------------- figures


def figures(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: np.ndarray | None,
            confidence: float = CONFIDENCE) -> dict[str, Any]:
    """Accuracy, per-class precision/recall, confusion matrix, ECE and abstention rate."""
    y, pred = np.asarray(y), np.asarray(pred)
    labels = list(classes.tolist()) if classes is not None else []
    for v in np.unique(np.concatenate([y.astype(object), pred.astype(object)])).tolist():
        if v not in labels:
            labels.append(v)
    index = {v: i for i, v in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for t, p in zip(y.tolist(), pred.tolist(), strict=True):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    col, row = cm.sum(axis=0), cm.sum(axis=1)
    out: dict[str, Any] = {
        "rows": int(len(y)), "accuracy": round(float(np.mean(y == pred)), 4) if len(y) else None,
        "labels": [str(v) for v in labels], "confusion": cm.tolist(),
        "precision": {str(v): (round(tp[i] / col[i], 4) if col[i] else None) for i, v in enumerate(labels)},
        "recall": {str(v): (round(tp[i] / row[i], 4) if row[i] else None) for i, v in enumerate(labels)},
        "ece": None, "abstention": None,
    }
    if proba is not None and len(y):
        top = np.asarray(proba).max(axis=1)
        correct = (y == pred).astype(float)
        bins = np.minimum((top * ECE_BINS).astype(int), ECE_BINS - 1)
        ece = sum(abs(correct[bins == b].mean() - top[bins == b].mean()) * np.mean(bins == b)
                  for b in range(ECE_BINS) if np.any(bins == b))
        out["ece"] = round(float(ece), 4)
        unsure = top < confidence  # = the trit 0 of predict_trits for a binary model
        out["abstention"] = round(float(unsure.mean()), 4)
        sure = ~unsure
        out["selective_accuracy"] = round(float(correct[sure].mean()), 4) if sure.any() else None
    return out


# --------------------------------------------------------------------------- result


@dataclass
class Validation:
    """What `validate` returns: the figures, the comparison with earlier versions, the verdict."""

    name: str
    version: str | None
    figures: dict[str, Any]
    comparison: list[dict[str, Any]] = field(default_factory=list)
    healthy: bool | None = None
    verdict: str = ""
    route: Route | None = None

    @property
    def accuracy(self) -> float | None:
        return self.figures.get("accuracy")

    @property
    def confusion(self) -> np.ndarray:
        return np.asarray(self.figures.get("confusion", []))

    def summary(self) -> dict[str, Any]:
        f = self.figures
        out = {"model": self.name, "version": self.version, "rows": f.get("rows"),
               "accuracy": f.get("accuracy"), "ece": f.get("ece"), "abstention": f.get("abstention"),
               "healthy": self.healthy, "verdict": self.verdict}
        if self.comparison:
            out["comparison"] = self.comparison
        return out

    def __repr__(self) -> str:
        return (f"Validation({self.name!r} {self.version or '(not stored)'}: accuracy {self.accuracy}, "
                f"ece {self.figures.get('ece')}, abstention {self.figures.get('abstention')}; {self.verdict})")

    def _repr_html_(self) -> str | None:
        return html_of("validation", self)  # the face draws it (openmind.jupyter.plots)


# --------------------------------------------------------------------------- lookups


def _as_model(arrays: dict[str, np.ndarray], entry: Entry) -> Any:
    from openmind.intents.infer import _model_from

    return _model_from(arrays, entry.meta)


def _stored(model: Any) -> Entry | None:
    """The memory entry of a model object, when it is exactly a stored version."""
    key = (getattr(model, "info", None) or {}).get("key")
    if not key or not callable(getattr(model, "pack", None)):
        return None
    hit = get("model", key)
    if hit is None or "packed" not in hit[0] or hit[0]["packed"].tobytes() != model.pack():
        return None
    return hit[1]


def _baselines(entry: Entry) -> list[tuple[str, Entry, Any]]:
    """(role, entry, model) for the previous healthy version of the name and the fine-tune parent."""
    shed = health.shed_versions(entry.name)
    out: list[tuple[str, Entry, Any]] = []
    for e in entries("model", entry.name):  # newest first
        if e.key == entry.key or e.created > entry.created or (e.key, e.blob) in shed:
            continue
        hit = get("model", e.key)
        if hit is not None:
            out.append(("previous version", hit[1], _as_model(*hit)))
            break
    parent = ((entry.meta.get("info") or {}).get("parent"))
    if parent and not any(e.key == parent for _r, e, _m in out):
        hit = get("model", parent)
        if hit is not None:
            out.append(("fine-tuned from", hit[1], _as_model(*hit)))
    elif parent and out:
        out[0] = ("previous version (its parent)", out[0][1], out[0][2])
    return out


def _rows(X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(X), np.asarray(y)
    if X.ndim == 1:
        X = X.reshape(-1, 1)
    if X.ndim != 2 or X.dtype.kind not in "biuf" or not len(X):
        raise BadInput(f"X must be a non-empty 2-D array of numbers (rows x features), got shape "
                       f"{X.shape}, dtype {X.dtype}")
    if y.ndim != 1 or len(y) != len(X):
        raise BadInput(f"X has {len(X)} rows but y has shape {y.shape}: give one label per row")
    if not np.isfinite(X).all():
        raise BadInput("X contains NaN or infinity; clean or impute it before validating")
    return X, y


# --------------------------------------------------------------------------- entry point


def validate(model: Any, X: Any, y: Any, *, tolerance: float = TOLERANCE,
             confidence: float = CONFIDENCE, resources: Resources | None = None,
             **policy: Any) -> Validation:
    """Score `model` (a name: its newest version; or a model object) on labelled rows (X, y).

    The figures are kept per version in muscle memory. A stored version that scores more than
    `tolerance` accuracy below the previous version of its name, or below the version it was
    fine-tuned from, is shed: `train_or_load` and `infer_adaptive` pass it over from then on,
    unless it is pinned (`openmind.pin`). A later validation that clears it lifts the shedding.
    """
    pol, rest = split_policy(policy)
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for validate; valid: "
                       "tolerance, confidence, resources and the policy options")
    if not 0 <= float(tolerance) <= 1:
        raise BadInput(f"tolerance is an accuracy difference between 0 and 1, got {tolerance!r}")
    Xv, yv = _rows(X, y)
    entry: Entry | None = None
    if isinstance(model, str):
        if not model.strip():
            raise BadInput("model name is empty; pass the name a model was trained under")
        name, obj = model, None
        hit = latest("model", name)  # the newest version, shed or not: it is the one in question
        if hit is not None:
            obj, entry = _as_model(*hit), hit[1]
    elif hasattr(model, "predict_proba"):
        name, obj = str(getattr(model, "name", None) or type(model).__name__), model
        entry = _stored(model)
    else:
        raise BadInput(f"{type(model).__name__} is not a model: pass a model name or a TernaryModel")
    n_in = getattr(obj, "n_features_in_", None)
    if n_in is not None and Xv.shape[1] != n_in:
        raise BadInput(f"model '{name}' takes {n_in} features, X has {Xv.shape[1]}")
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    intent = Intent.of("validate", name=name, rows=int(len(Xv)), shape=tuple(int(s) for s in Xv.shape),
                       local_model=obj is not None)
    plan = route(intent, resources=resources, policy=pol)

    def local(cand: Candidate) -> Validation:
        if obj is None:
            raise PathwayUnavailable(f"'{name}' is not in local memory")
        proba = np.asarray(obj.predict_proba(Xv))
        classes = getattr(obj, "classes_", None)
        pred = classes[np.argmax(proba, axis=1)] if classes is not None else np.argmax(proba, axis=1)
        result = Validation(name, health.version(entry) if entry else None,
                            figures(yv, pred, proba, classes, confidence))
        if entry is None:
            result.verdict = "not a stored version: figures only (nothing to compare or shed)"
            return result
        _judge(result, entry, Xv, yv, float(tolerance))
        put("validation", name, key_for("validation", entry.key, entry.blob, fingerprint(Xv, yv)),
            {"confusion": np.asarray(result.figures["confusion"], dtype=np.int64)},
            {**{k: v for k, v in result.figures.items() if k != "confusion"},
             "model_key": entry.key, "version": result.version, "healthy": result.healthy,
             "verdict": result.verdict, "comparison": result.comparison})
        return result

    def remote(cand: Candidate) -> Validation:
        from openmind.pathways.cloud.oip import OIPClient

        out = OIPClient(timeout=pol.timeout or 10.0).infer(name, Xv)
        if "label" not in out:
            raise PathwayUnavailable(f"the endpoint answered outputs {sorted(out)}, none named 'label'")
        result = Validation(name, None, figures(yv, np.asarray(out["label"]), out.get("probabilities"),
                                                None, confidence))
        result.verdict = "scored as served remotely: not a local version (nothing to compare or shed)"
        return result

    handlers = {(Pathway.MUSCLE_MEMORY, Decision.HARDCODE): local,
                (Pathway.CLOUD_INFERENCE, Decision.HARDCODE): remote}
    result, _ = execute(plan, handlers, resources=resources, summarize=Validation.summary)
    return result


def _judge(result: Validation, entry: Entry, X: np.ndarray, y: np.ndarray, tolerance: float) -> None:
    """Compare with the earlier versions on the same rows; shed, clear or keep the version."""
    acc = result.accuracy or 0.0
    worse = []
    for role, other, model in _baselines(entry):
        if getattr(model, "n_features_in_", X.shape[1]) != X.shape[1]:
            continue
        theirs = float(np.mean(model.predict(X) == y))
        line = {"against": role, "version": health.version(other), "accuracy": round(theirs, 4),
                "delta": round(acc - theirs, 4)}
        result.comparison.append(line)
        if theirs - acc > tolerance:
            worse.append(line)
    current = health.status(entry) or {}
    pinned = current.get("status") == "pinned"
    figures_ = {"accuracy": result.accuracy, "rows": result.figures.get("rows"),
                "comparison": result.comparison, "tolerance": tolerance}
    if worse:
        w = worse[0]
        why = (f"accuracy {acc:.4f} on {len(y)} rows is {w['accuracy'] - acc:.4f} below the "
               f"{w['against']} {w['version']} ({w['accuracy']:.4f}; tolerance {tolerance:g})")
        if pinned:
            result.healthy, result.verdict = True, f"kept because pinned: {why}"
        else:
            health.mark(entry, "shed", why, figures_)
            result.healthy, result.verdict = False, f"shed: {why}"
        return
    result.healthy = True
    best = ", ".join(f"{c['delta']:+.4f} vs the {c['against']}" for c in result.comparison)
    result.verdict = "healthy" + (f" ({best})" if best else " (no earlier version to compare)")
    if not pinned:
        health.mark(entry, "healthy", result.verdict, figures_)


def pin(model: Any, pinned: bool = True) -> str:
    """Pin a version (a name: its newest version; or a stored model object) so the validator's
    shedding never applies to it; `pinned=False` unpins it (it counts as healthy until validated)."""
    if isinstance(model, str):
        hit = latest("model", model)
        entry = hit[1] if hit else None
    else:
        entry = _stored(model)
    if entry is None:
        raise BadInput(f"{model!r} is not a stored model version; train_or_load stores one")
    health.mark(entry, "pinned" if pinned else "healthy",
                "pinned by the user" if pinned else "unpinned by the user")
    return health.version(entry)
