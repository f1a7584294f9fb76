"""`validate`: the colony's validator. Scores a model version on labelled rows, keeps the figures
beside the version in muscle memory, compares them with the previous version of that name and with
the version it was fine-tuned from, and sheds a version only on evidence: worse by more than a
tolerance AND worse with stated confidence (a one-sided exact sign test, McNemar's, on the rows
where the two disagree, at a level the user sets) on at least `min_rows` rows; otherwise it says
"not enough evidence" and keeps both. The train and infer lookups pass a shed version over
(memory/health.py) unless the user pins it; it stays loadable by name and version (`load_version`).

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
LEVEL = 0.05  # shed only when "no worse" is this unlikely (one-sided exact test on paired rows)
MIN_ROWS = 100  # fewer rows than this never shed nor clear a version (a few rows can be chosen)
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


@dataclass(frozen=True)
class Evidence:
    """When a worse score is evidence: the accuracy `tolerance`, the test's `level` and the
    fewest rows (`min_rows`) that may shed or clear a version."""

    tolerance: float = TOLERANCE
    level: float = LEVEL
    min_rows: int = MIN_ROWS

    @classmethod
    def of(cls, tolerance: Any, level: Any, min_rows: Any) -> Evidence:
        """Checked options (a BadInput says which is wrong and what it takes)."""
        def number(what: str, v: Any, lo: float, hi: float) -> float:
            try:
                f = float(v)
            except (TypeError, ValueError):
                f = float("nan")
            if isinstance(v, bool) or not lo <= f <= hi:
                raise BadInput(f"{what} takes a number from {lo:g} to {hi:g}, got {v!r}")
            return f

        rows = number("min_rows", min_rows, 1, float("inf"))
        if rows != int(rows):
            raise BadInput(f"min_rows takes a whole number of rows, got {min_rows!r}")
        return cls(number("tolerance", tolerance, 0, 1), number("level", level, 1e-12, 0.5), int(rows))


def worse_p(mine: np.ndarray, theirs: np.ndarray) -> float:
    """The one-sided p-value that `mine` is no worse than `theirs` (per-row correct, paired): the
    exact sign test on the rows where they disagree (McNemar's exact test)."""
    from scipy.stats import binomtest

    losses = int(np.sum(theirs & ~mine))
    wins = int(np.sum(mine & ~theirs))
    if losses + wins == 0:
        return 1.0
    return float(binomtest(losses, losses + wins, 0.5, alternative="greater").pvalue)


def validate(model: Any, X: Any, y: Any, *, tolerance: float = TOLERANCE,
             confidence: float = CONFIDENCE, level: float = LEVEL, min_rows: int = MIN_ROWS,
             resources: Resources | None = None, **policy: Any) -> Validation:
    """Score `model` (a name: its newest version; or a model object) on labelled rows (X, y).

    The figures are kept per version in muscle memory. A stored version is shed when, on at least
    `min_rows` rows, it scores more than `tolerance` accuracy below the previous version of its
    name or the version it was fine-tuned from AND the paired rows show it worse at significance
    `level` (one-sided exact sign test); fewer rows or a weaker signal: "not enough evidence",
    both kept. `train_or_load` and `infer_adaptive` pass a shed version over from then on,
    unless it is pinned (`openmind.pin`); `load_version` still loads it. A later validation that
    clears it (with as many rows) lifts the shedding.
    """
    pol, rest = split_policy(policy)
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for validate; valid: "
                       "tolerance, confidence, level, min_rows, resources and the policy options")
    rule = Evidence.of(tolerance, level, min_rows)
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
        _judge(result, entry, Xv, yv, np.asarray(yv == pred), rule)
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


def _judge(result: Validation, entry: Entry, X: np.ndarray, labels: np.ndarray,
           right: np.ndarray, rule: Evidence) -> None:
    """Compare with the earlier versions on the same rows (`right`: this version correct per
    row); shed on evidence, clear, or keep both for want of it."""
    acc = result.accuracy or 0.0
    worse: list[dict[str, Any]] = []
    unsure: list[dict[str, Any]] = []
    rows = len(right)
    for role, other, model in _baselines(entry):
        if getattr(model, "n_features_in_", X.shape[1]) != X.shape[1]:
            continue
        theirs_right = np.asarray(model.predict(X) == labels)
        theirs = float(np.mean(theirs_right))
        line = {"against": role, "version": health.version(other), "accuracy": round(theirs, 4),
                "delta": round(acc - theirs, 4), "losses": int(np.sum(theirs_right & ~right)),
                "wins": int(np.sum(right & ~theirs_right)),
                "p_worse": round(worse_p(right, theirs_right), 6)}
        result.comparison.append(line)
        if theirs - acc > rule.tolerance:
            (worse if rows >= rule.min_rows and line["p_worse"] < rule.level else unsure).append(line)
    current = health.status(entry) or {}
    pinned = current.get("status") == "pinned"
    figures_ = {"accuracy": result.accuracy, "rows": rows, "comparison": result.comparison,
                "tolerance": rule.tolerance, "level": rule.level, "min_rows": rule.min_rows}
    if worse:
        w = worse[0]
        why = (f"accuracy {acc:.4f} on {rows} rows is {w['accuracy'] - acc:.4f} below the "
               f"{w['against']} {w['version']} ({w['accuracy']:.4f}; tolerance {rule.tolerance:g}), "
               f"worse with p={w['p_worse']:.2g} < level {rule.level:g} ({w['losses']} rows lost, "
               f"{w['wins']} won)")
        if pinned:
            result.healthy, result.verdict = True, f"kept because pinned: {why}"
        else:
            health.mark(entry, "shed", why, figures_)
            result.healthy, result.verdict = False, f"shed: {why}"
        return
    best = ", ".join(f"{c['delta']:+.4f} vs the {c['against']}" for c in result.comparison)
    if result.comparison and (unsure or rows < rule.min_rows):
        result.healthy = current.get("status") != "shed"
        why = (f"{rows} rows, fewer than the {rule.min_rows} that may shed or clear a version"
               if rows < rule.min_rows else
               f"worse by more than {rule.tolerance:g} but p={unsure[0]['p_worse']:.2g} is not "
               f"below level {rule.level:g}")
        result.verdict = f"not enough evidence ({best}): {why}; both versions kept"
        return
    result.healthy = True
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


def load_version(name: str, version: str) -> Any:
    """One stored version of `name`, shed or not: `version` is the label the validator and the
    cards show (e.g. '1a2b3c4d·5e6f70'), or its memory key or a prefix of it (6+ characters).
    Shedding only keeps a version out of the automatic lookups; it is never lost."""
    want = str(version).strip()
    if len(want) < 6:
        raise BadInput(f"version {version!r} is too short: give the label a validation shows "
                       f"(e.g. '1a2b3c4d·5e6f70') or 6+ characters of the key")
    key, _, blob = want.partition("·")
    found = [e for e in entries("model", name)
             if e.key.startswith(key) and (e.blob or "").startswith(blob)]
    if not found:
        raise BadInput(f"no stored version {want!r} of '{name}'")
    hit = get("model", found[0].key)
    if hit is None or (found[0].blob and hit[1].blob != found[0].blob):
        raise BadInput(f"version {want!r} of '{name}' was replaced by a retrain under the same key")
    return _as_model(*hit)
