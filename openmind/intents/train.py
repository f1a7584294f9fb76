"""`train_or_load`: the train intent end to end (validate, look up muscle memory, route, execute).

A request is everything that changes the weights: name, data fingerprint, the full resolved
config and the trainer version. Each run is stored as a new version of the name (older ones stay
until gc); a run cut short (budget, Ctrl-C, error) is stored as partial.

exact hit (this request, complete, or partial with a budget at least this call's) -> the cached
model (muscle_memory/CACHED); a partial run of this request -> resumed (fine_tune/HYBRID); same
name with new data and a small budget or small data -> fine-tune the cached ancestor
(fine_tune/HYBRID); else a full train on CUDA or CPU (full_train/HARDCODE); when training fails
-> the cached model of that name (muscle_memory/CACHED), marked degraded. Ctrl-C stops the call
after keeping the best weights so far. `fresh=True`: from scratch or a clear failure. Data no rule
knows (not 2-D numeric) gets a MODEL decision: a language model's plan when one is reachable,
else a heuristic plan; either is trained here and journaled as the pathway that ran.
"""

from __future__ import annotations

import time
import uuid
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import Served, execute
from openmind.flow.policy import Policy, split_policy
from openmind.flow.resources import Resources
from openmind.flow.router import Candidate, Intent, route
from openmind.memory.blobs import (
    Entry,
    MemoryWarning,
    entries,
    fingerprint,
    get,
    key_for,
    load,
    partial_reason,
    put,
    versions,
)
from openmind.memory.health import healthy_hits
from openmind.memory.labels import join as join_labels
from openmind.pathways.ternary.packed import (
    U16_MAX,
    TernaryModel,
    as_numeric,
    as_rows,
    check_finite,
)
from openmind.vocab import Decision, Pathway, check_name

# --------------------------------------------------------------------------- input


def prepare(name: Any, data: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y, data_kind) from the caller's arguments, or BadInput saying what is wrong and where."""
    check_name(name, "model name")
    if labels is None:
        if isinstance(data, (tuple, list)) and len(data) == 2:
            data, labels = data
        else:
            raise BadInput("no labels: call train_or_load(name, X, y) or train_or_load(name, (X, y))")
    elif isinstance(labels, str) and hasattr(data, "columns"):  # a DataFrame and a column name
        if labels not in data.columns:
            raise BadInput(f"label column {labels!r} is not in the data; columns: {list(data.columns)}")
        data, labels = data.drop(columns=[labels]), data[labels]
    X = as_rows(data, "X")
    y = as_rows(labels, "labels")
    if y.ndim != 1:
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        else:
            raise BadInput(f"labels must be 1-D (one label per row), got shape {y.shape}")
    if X.ndim == 0:
        raise BadInput(f"X must be an array of rows (e.g. a 2-D numpy array), got a single "
                       f"{type(data).__name__} value {str(data)[:40]!r}")
    if len(X) == 0:
        raise BadInput(f"X has no rows (shape {X.shape}); give at least two rows of two classes")
    if len(X) != len(y):
        raise BadInput(f"X has {len(X)} rows but labels has {len(y)}; they must match row for row")
    kind = "unknown"
    if X.dtype.kind in "biufO":
        try:
            X = as_numeric(X, "X")
        except BadInput:
            if X.dtype.kind != "O":
                raise
        if X.dtype.kind in "biuf":
            check_finite(X.reshape(len(X), -1) if X.ndim > 1 else X.reshape(-1, 1), "X")
            if X.ndim == 1:
                X = X.reshape(-1, 1)
            kind = "tabular" if X.ndim == 2 else "unknown"
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        bad = int(np.flatnonzero(~np.isfinite(y))[0])
        raise BadInput(f"labels have NaN/inf at row {bad}; drop unlabeled rows before training")
    if y.dtype.kind == "O":
        types = {type(v).__name__ for v in y}
        if len(types) > 1:
            raise BadInput(f"labels mix types ({', '.join(sorted(types))}); use one type (all numbers or all strings)")
        if None in set(y.tolist()):
            raise BadInput("labels contain None; drop unlabeled rows before training")
    classes = np.unique(y)
    width = int(np.prod(X.shape[1:])) if X.ndim > 1 else 1
    if width > U16_MAX or len(classes) > U16_MAX:
        raise BadInput(f"{width} features and {len(classes)} classes: the packed model format "
                       f"allows at most {U16_MAX} of each; reduce the features (e.g. PCA) first")
    if len(classes) < 2:
        raise BadInput(f"labels contain one class only ({classes[0]!r}); a classifier needs at "
                       f"least two classes")
    return X, y, kind


# --------------------------------------------------------------------------- muscle memory

@dataclass
class _Version:
    """One stored version of a model: its index entry and arrays (the blob read and checked)."""

    entry: Entry
    arrays: dict[str, np.ndarray]

    @property
    def meta(self) -> dict[str, Any]:
        return self.entry.meta

    def model(self) -> TernaryModel:
        """The stored model; a row that does not hold one is a miss, never BadInput."""
        try:
            return TernaryModel.from_arrays(self.arrays, self.meta)
        except Exception as exc:  # a damaged entry must not stop the executor
            raise PathwayUnavailable(f"the stored '{self.entry.name}' is unreadable "
                                     f"({type(exc).__name__}: {exc})") from None


def answers(meta: dict[str, Any], request: str, budget: float | None) -> bool:
    """An exact hit: the same request, and a complete run or a partial one stopped by a budget
    at least this call's (a call without a budget asks for the whole run)."""
    if meta.get("request") != request:
        return False
    if meta.get("complete"):
        return True
    stored = meta.get("budget_s")
    return (meta.get("stopped") == "budget" and stored is not None and budget is not None
            and budget <= float(stored))


def _usable(entry: Entry) -> bool:
    if entry.meta.get("format") == "openmind-ternary":
        return True
    warnings.warn(f"openmind: muscle memory entry model '{entry.name}' ({entry.key[:12]}) holds no "
                  f"openmind ternary model (meta format {entry.meta.get('format')!r}); treating it "
                  f"as a miss", MemoryWarning, stacklevel=4)
    return False


def lookup(name: str, request: str, budget: float | None
           ) -> tuple[_Version | None, _Version | None, _Version | None]:
    """(exact, partial, ancestor) among the stored versions of `name`, newest first: the version
    answering this request, a run of this request cut short (to resume), the newest readable one."""
    exact = partial = ancestor = None
    for entry in versions("model", name):
        if not _usable(entry):
            continue
        same = entry.meta.get("request") == request
        if ancestor is not None and not same:
            continue  # only this request's versions are still of interest
        arrays = load(entry)
        if arrays is None:
            continue
        found = _Version(entry, arrays)
        ancestor = ancestor or found
        if answers(entry.meta, request, budget):
            exact = exact or found
            break
        if same and partial is None and not entry.meta.get("complete"):
            partial = found
    return exact, partial, ancestor


def _healthy(name: str, exact: _Version | None, ancestor: _Version | None
             ) -> tuple[_Version | None, _Version | None, str | None]:
    """`memory.health.healthy_hits` (the validator's shed versions taken out) on versions."""
    def hit(v: _Version | None) -> Any:
        return None if v is None else (v.arrays, v.entry)

    def version(h: Any) -> _Version | None:
        return None if h is None else _Version(h[1], h[0])

    ex, an, shed = healthy_hits(name, hit(exact), hit(ancestor))
    return version(ex), version(an), shed


# --------------------------------------------------------------------------- the job


class _Training:
    """The handlers of one train_or_load call, sharing its data, config and lookups."""

    def __init__(self, name: str, X: np.ndarray, y: np.ndarray, kind: str, cfg: dict[str, Any],
                 explicit: set[str], key: str, fp: str, pol: Policy, exact: _Version | None,
                 ancestor: _Version | None, progress: bool, partial: _Version | None = None,
                 prior: Any = None) -> None:
        self.name, self.X, self.y, self.kind, self.cfg, self.key, self.fp = name, X, y, kind, cfg, key, fp
        self.explicit, self.pol, self.exact, self.ancestor = explicit, pol, exact, ancestor
        self.partial = partial
        self.progress, self.prior = progress, prior

    # ---- muscle memory
    def cached(self, cand: Candidate) -> Served:
        hit = self.ancestor if cand.params.get("ancestor") else self.exact
        if hit is None:
            raise PathwayUnavailable(f"no cached model named '{self.name}'")
        model = hit.model()
        if self.X.ndim < 2 or int(np.prod(self.X.shape[1:])) != model.n_features_in_:
            raise PathwayUnavailable(f"the cached '{self.name}' takes {model.n_features_in_} "
                                     f"features, this data has {self.X.shape[1:]}")
        entry = hit.entry
        model.info.update(cached=True, key=entry.key, cached_at=entry.created,
                          hits=entry.hits + 1)
        return Served(model, degraded=self._stand_in(hit), note=entry.origin)  # team's memory?

    def _stand_in(self, hit: _Version) -> str | None:
        """Why a stored version does not answer this call (None: it does)."""
        if answers(hit.meta, self.key, self.pol.budget):
            return partial_reason(hit.meta)
        if hit.meta.get("request") == self.key:
            return partial_reason(hit.meta) or "a run of this request cut short"
        other = []
        if hit.meta.get("fingerprint") != self.fp:
            other.append("other data")
        cfg = hit.meta.get("config") or {}
        diff = sorted(k for k in self.cfg if cfg.get(k) != self.cfg[k])
        if diff:
            other.append("another config (" + ", ".join(
                f"{k} {cfg.get(k)!r} not {self.cfg[k]!r}" for k in diff[:3]) + ")")
        if not other:
            other.append("another trainer version")
        why = f"a cached model of '{self.name}' trained on {' and '.join(other)}"
        cut = partial_reason(hit.meta)
        return why + (f", {cut}" if cut else "")

    # ---- training
    def full(self, cand: Candidate) -> Served:
        return self._train(cand, self.X, self.cfg)

    def situation(self) -> dict[str, Any]:
        """What a planner may know: shapes, dtypes, label set, resources; never the data."""
        return {"intent": "train", "name": self.name, "rows": int(len(self.X)),
                "shape": [int(d) for d in self.X.shape], "dtypes": [str(self.X.dtype)],
                "data_kind": self.kind, "labels": np.unique(self.y).tolist()[:100],
                "n_classes": int(len(np.unique(self.y))), "budget_s": self.pol.budget,
                "ancestor": self.ancestor is not None}

    def _planned(self, plan: dict[str, Any]) -> dict[str, Any]:
        """A config from a plan (hidden, epochs, learning_rate, batch_size); options the caller
        gave explicitly win."""
        from openmind.pathways.ternary.fit import resolve_config

        arch = plan.get("architecture") or {}
        planned = {"hidden": arch.get("hidden"), "epochs": plan.get("epochs"),
                   "lr": plan.get("learning_rate"), "batch_size": plan.get("batch_size")}
        base = {k: v for k, v in self.cfg.items()}
        base.update({k: v for k, v in planned.items() if v is not None and k not in self.explicit})
        return resolve_config(base)

    def _numeric_rows(self, who: str) -> np.ndarray:
        if self.X.dtype.kind not in "biuf":
            raise PathwayUnavailable(f"{who} needs numeric data, got {self.X.dtype}: give numbers "
                                     f"(e.g. embeddings or encoded columns)")
        return self.X.reshape(len(self.X), -1)

    def heuristic(self, cand: Candidate) -> Served:
        X = self._numeric_rows("the heuristic plan")
        try:
            from openmind.pathways.cloud.llm import heuristic_plan
        except ImportError:  # pragma: no cover - the cloud module ships with openmind
            cfg = self.cfg
        else:
            cfg = self._planned(heuristic_plan(self.situation()))
        return self._train(cand, X, cfg, note=f"heuristic plan (hidden {cfg['hidden']}, "
                                              f"{cfg['epochs']} epochs) on {X.shape[1]} features")

    def llm(self, cand: Candidate) -> Served:
        """The language model plans, this machine trains: journaled as the pathway that ran
        (full_train, or fine_tune when the plan asks for it and an ancestor fits)."""
        X = self._numeric_rows("training")
        from openmind.intents.ask import plan_training_or_reason

        plan, refused = plan_training_or_reason(self.situation())
        if not plan:
            raise PathwayUnavailable(f"the language model gave no valid training plan: {refused}")
        cfg = self._planned(plan)
        note = (f"language model's plan (hidden {cfg['hidden']}, {cfg['epochs']} epochs): "
                f"{plan.get('reason', '')}").rstrip(": ")
        parent = None
        if str(plan.get("pathway") or "") == Pathway.FINE_TUNE.value and self.ancestor is not None:
            try:
                parent = self._parent(self.ancestor, cfg, X)
            except PathwayUnavailable as exc:
                note += f"; its fine-tune was not possible ({exc}), trained from scratch"
        served = self._train(cand, X, cfg, note=note, parent=parent,
                             parent_key=self.ancestor.entry.key if parent is not None else None)
        served.pathway = Pathway.FINE_TUNE if parent is not None else Pathway.FULL_TRAIN
        return served

    def _parent(self, hit: _Version, cfg: dict[str, Any], X: np.ndarray | None = None) -> TernaryModel:
        """A stored version as the start of a fine-tune, or PathwayUnavailable saying why not."""
        parent = hit.model()
        X = self.X if X is None else X
        if X.ndim != 2 or X.shape[1] != parent.n_features_in_:
            raise PathwayUnavailable(f"the ancestor takes {parent.n_features_in_} features, this "
                                     f"data has {X.shape[1:]}")
        stored = (hit.meta.get("config") or {})
        if list(stored.get("hidden") or []) != list(cfg["hidden"]) or \
                stored.get("scale", cfg["scale"]) != cfg["scale"]:
            raise PathwayUnavailable(f"the cached ancestor has another architecture (hidden "
                                     f"{stored.get('hidden')}, not {cfg['hidden']}); cannot fine-tune it")
        unknown = sorted(set(np.unique(self.y).tolist()) - set(parent.classes_.tolist()), key=str)
        if unknown:
            raise PathwayUnavailable(f"the new data has classes {unknown[:5]} the ancestor does not know")
        return parent

    def fine_tune(self, cand: Candidate) -> Served:
        if cand.params.get("resume"):
            return self.resume(cand)
        if self.ancestor is None:
            raise PathwayUnavailable(f"no cached ancestor named '{self.name}'")
        if self.ancestor.meta.get("fingerprint") == self.fp:
            raise PathwayUnavailable("the cached ancestor was trained on this same data (another "
                                     "config): nothing new to fine-tune on")
        parent = self._parent(self.ancestor, self.cfg)
        return self._train(cand, self.X, self.cfg, parent=parent, parent_key=self.ancestor.entry.key)

    def resume(self, cand: Candidate) -> Served:
        """Go on from a run of this very request that was cut short, for the epochs it lacks."""
        if self.partial is None:
            raise PathwayUnavailable(f"no partial run of '{self.name}' to resume")
        parent = self._parent(self.partial, self.cfg)
        done = int(self.partial.meta.get("epochs_done") or 0)
        left = max(1, int(self.cfg["epochs"]) - done)
        return self._train(cand, self.X, self.cfg, parent=parent,
                           parent_key=self.partial.entry.key, epochs=left, done=done,
                           note=f"resumed after {done} of {self.cfg['epochs']} epochs")

    def _train(self, cand: Candidate, X: np.ndarray, cfg: dict[str, Any], *,
               parent: TernaryModel | None = None, parent_key: str | None = None,
               note: str | None = None, epochs: int | None = None, done: int = 0) -> Served:
        from openmind.pathways.ternary.fit import fit, pick_device, standardization

        device, device_note = pick_device(cand.params.get("device"))
        if parent is not None:
            classes = parent.classes_
            mean, inv_std = parent.mean, parent.inv_std
            y_idx = np.searchsorted(classes, self.y) if _sortable(classes) else \
                np.array([list(classes).index(v) for v in self.y])
        else:
            classes, y_idx = np.unique(self.y, return_inverse=True)
            mean, inv_std = standardization(X)
        y_idx = np.asarray(y_idx, dtype=np.int64).reshape(-1)
        run_cfg = cfg if epochs is None else {**cfg, "epochs": epochs}
        keep = dict(cfg=cfg, classes=classes, mean=mean, inv_std=inv_std, device=device,
                    device_note=device_note, note=note, parent_key=parent_key, done=done, X=X)
        train = fit
        if cand.params.get("workers", 1) > 1:  # data-parallel: N local processes or torchrun ranks
            from openmind.pathways.colony.distributed import trainer

            train = trainer(cand.params)
        try:
            out = train(X, y_idx, len(classes), run_cfg, mean=mean, inv_std=inv_std, device=device,
                        budget=self.pol.budget, init=parent, progress=self.progress,
                        desc=f"{'fine-tune' if parent else 'train'} {self.name}", prior=self.prior)
        except BaseException as exc:
            cut = getattr(exc, "fit_outcome", None)
            if cut is not None and cut.epochs > 0:
                try:  # keep the best weights so far as a partial version, to resume from
                    self._keep(cut, **keep)
                except Exception:  # noqa: BLE001 - keeping is best effort; the cause propagates
                    pass
            raise
        model, meta = self._keep(out, **keep)
        return Served(model, degraded=partial_reason(meta), note=note if done else None)

    def _keep(self, out: Any, *, cfg: dict[str, Any], classes: np.ndarray, mean: np.ndarray,
              inv_std: np.ndarray, device: str, device_note: str | None, note: str | None,
              parent_key: str | None, done: int, X: np.ndarray) -> tuple[TernaryModel, dict]:
        """Export a run and store it as a new version of the name (complete or partial)."""
        from openmind.pathways.ternary.fit import export, linears

        version = uuid.uuid4().hex
        complete = out.stopped in ("epochs", "early_stop")
        info: dict[str, Any] = {
            ("val_accuracy" if out.held_out else "train_accuracy"):
                None if out.val_accuracy is None else round(out.val_accuracy, 4), "epochs": out.epochs, "best_epoch": out.best_epoch,
            "stopped": out.stopped, "train_seconds": round(out.seconds, 3),
            "train_cpu_seconds": round(out.cpu_seconds, 3), "device": device,
            "rows": int(len(X)), "fingerprint": self.fp, "key": version, "request": self.key,
            "cached": False, "val_history": [round(h["val_accuracy"], 4) for h in out.history],
        }
        if out.stopped == "budget":
            info["budget_s"] = self.pol.budget
        if out.inherited:
            info["inherited"] = out.inherited
        if out.extinctions:
            info["extinctions"] = out.extinctions
            info["hidden_final"] = [m.weight.shape[0] for m in linears(out.net)[:-1]]
        if device_note:
            info["device_note"] = device_note
        info.update(out.colony)
        if note:
            info["plan"] = note
        if parent_key is not None:
            info["parent"] = parent_key
        run = dict(fingerprint=self.fp, request=self.key, complete=complete, stopped=out.stopped,
                   epochs=int(cfg["epochs"]), epochs_done=done + int(out.epochs),
                   budget_s=self.pol.budget if out.stopped == "budget" else None)
        if not complete:  # the model itself says so, wherever it goes (infer, save, serve)
            info["partial"] = partial_reason(run)
        model = export(out.net, mean, inv_std, classes, name=self.name, config=cfg, info=info)
        arrays, meta = model.to_arrays()
        meta.update(run)
        entry = put("model", self.name, version, arrays, meta)
        model.info["stored"] = entry is not None
        return model, meta


def request_key(name: str, fp: str, cfg: dict[str, Any], trainer: str) -> str:
    """Everything that changes the weights: the name, the data, the full config, the trainer and
    the stored format's version."""
    from openmind.pathways.ternary.packed import VERSION as FORMAT_VERSION

    return key_for("train", name, fp, cfg, trainer, f"packed-{FORMAT_VERSION}")


def ancestral_prior(limit: int = 16) -> Any:
    """The ancestral prior fitted from the latest `limit` models in muscle memory (any names), or
    None when memory holds none (the network then starts from the default initialisation)."""
    from openmind.pathways.ternary.evolve import fit_prior

    models = []
    for entry in entries("model")[:limit]:
        if entry.meta.get("format") != "openmind-ternary":
            continue  # a kept colony (its members are models of their own names) or a foreign row
        hit = get("model", entry.key)
        if hit is not None:
            models.append(TernaryModel.from_arrays(hit[0], hit[1].meta))
    return fit_prior(models) if models else None


def _sortable(classes: np.ndarray) -> bool:
    return classes.dtype.kind != "O" and bool(np.all(classes[:-1] < classes[1:]))


# --------------------------------------------------------------------------- entry point


def train_or_load(name: str, data: Any, labels: Any = None, *, resources: Resources | None = None,
                  **options: Any) -> TernaryModel:
    """A ternary classifier named `name` for (data, labels), from muscle memory when it can be.

    options: policy (fallback, strategy, budget, fresh, prefer, timeout, workers), training config
    (hidden, epochs, lr, batch_size, seed, scale, weight_decay, patience, val_fraction;
    init="ancestral" to start from the models in memory, growth=True for growth and extinction),
    progress=False to hide the bar, and fit_device=True to pick hidden widths whose packed model
    fits the ESP32 (the limits its HELLO reports, else the firmware's defaults; or a dict of
    limits). `resources` injects a probe snapshot (tests).
    The model's `.route` says which pathway served it and why.
    Under torchrun every rank calls it with the same data: rank 0 decides, stores and journals,
    the others train with it when it trains, and every rank returns the same model.
    """
    from openmind.pathways.colony.distributed import joined

    group = joined()
    if group is None:
        return _train_or_load(name, data, labels, resources=resources, **options)
    if group.rank == 0:
        return group.lead(lambda: _train_or_load(name, data, labels, resources=resources,
                                                 joined=group.world, **options))
    X, _y, _kind = prepare(name, data, labels)
    arrays, meta = group.follow(X)
    return TernaryModel.from_arrays(arrays, meta)


def _train_or_load(name: str, data: Any, labels: Any = None, *, resources: Resources | None = None,
                   joined: int | None = None, **options: Any) -> TernaryModel:
    from openmind.pathways.ternary.fit import (
        RUN_OPTIONS,
        TRAINER_VERSION,
        estimate_seconds,
        resolve_config,
    )

    pol, rest = split_policy(options)
    run = {k: rest.pop(k) for k in list(rest) if k in RUN_OPTIONS}
    fit_device = rest.pop("fit_device", False)
    cfg = resolve_config(rest)
    X, y, kind = prepare(name, data, labels)
    X, y, _labelled = join_labels(name, X, y)  # rows labelled from the queue join the data
    if fit_device:
        if resources is None and not isinstance(fit_device, dict):
            from openmind.flow.resources import probe

            resources = probe()
        cfg, fit_note = fit_to_device(cfg, X, y, fit_device, resources, "hidden" in rest)
    fp = fingerprint(X, y)
    key = request_key(name, fp, cfg, TRAINER_VERSION)
    exact, partial, ancestor = lookup(name, key, pol.budget)
    exact, ancestor, shed = _healthy(name, exact, ancestor)  # the validator's shed versions
    n_features = int(np.prod(X.shape[1:])) if X.ndim > 1 else 1
    # measured throughput (timed once per architecture, remembered): only when training may run
    est = estimate_seconds(len(X), n_features, len(np.unique(y)), cfg) \
        if exact is None or pol.fresh else None
    prior = ancestral_prior() if cfg["init"] == "ancestral" and exact is None else None
    done = partial.meta.get("epochs_done") if partial is not None else None
    intent = Intent.of("train", name=name, rows=int(len(X)), shape=tuple(int(s) for s in X.shape),
                       data_kind=kind, exact=exact is not None, ancestor=ancestor is not None,
                       est_seconds=None if est is None else round(est, 3),
                       ancestors=tuple(prior.ancestors) if prior else (), joined=joined, shed=shed,
                       partial=f"{done} of {cfg['epochs']} epochs" if partial is not None else None)
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    plan = route(intent, resources=resources, policy=pol)
    job = _Training(name, X, y, kind, cfg, set(rest), key, fp, pol, exact, ancestor,
                    bool(run.get("progress", True)), partial, prior)
    handlers = {
        (Pathway.MUSCLE_MEMORY, Decision.CACHED): job.cached,
        (Pathway.FINE_TUNE, Decision.HYBRID): job.fine_tune,
        (Pathway.FULL_TRAIN, Decision.HARDCODE): job.full,
        (Pathway.FULL_TRAIN, Decision.MODEL): job.heuristic,
        (Pathway.CLOUD_INFERENCE, Decision.MODEL): job.llm,
    }
    t0 = time.perf_counter()
    model, _route = execute(plan, handlers, resources=resources,
                            summarize=lambda m: {**m.summary(),
                                                 "seconds": round(time.perf_counter() - t0, 3)})
    if fit_device:
        model.info["fit_device"] = fit_note
    return model


def fit_to_device(cfg: dict[str, Any], X: np.ndarray, y: np.ndarray, fit_device: Any,
                  resources: Resources | None, explicit: bool) -> tuple[dict[str, Any], str]:
    """cfg with `hidden` narrowed so the packed model fits the device: the limits the probed
    device reported, a dict given as fit_device, else the firmware's defaults. Hidden widths the
    caller chose are kept when they fit and refused with what would fit when they do not."""
    from openmind.pathways.device import DEFAULT_LIMITS
    from openmind.pathways.ternary.fit import fit_hidden, fits
    from openmind.pathways.ternary.packed import size_for

    if isinstance(fit_device, dict):
        limits, source = {**DEFAULT_LIMITS, **fit_device}, "the limits given"
    else:
        serial = resources.serial if resources is not None else None
        reported = serial.details.get("limits") if serial is not None and serial.available else None
        limits = {**DEFAULT_LIMITS, **(reported or {})}
        source = (f"the device on {serial.details.get('port')}" if reported
                  else "the firmware's default limits (no device reported its own)")
    n_in, n_out, per_row = int(np.prod(X.shape[1:])), len(np.unique(y)), cfg["scale"] == "row"
    widths = [n_in, *cfg["hidden"], n_out]
    why = fits(widths, per_row, limits)
    if why is None:
        return cfg, f"hidden {cfg['hidden']} fits {source} ({size_for(widths, per_row)} bytes)"
    best = fit_hidden(n_in, n_out, cfg["hidden"], per_row, limits)
    if best is None:
        raise BadInput(f"no model of {n_in} inputs and {n_out} classes fits {source} ({limits}); "
                       f"reduce the features (e.g. PCA) first")
    if explicit:
        raise BadInput(f"hidden {cfg['hidden']} {why} ({source}); hidden {best} fits "
                       f"({size_for([n_in, *best, n_out], per_row)} bytes): pass that, or drop hidden=")
    size = size_for([n_in, *best, n_out], per_row)
    return {**cfg, "hidden": best}, (f"hidden {best} instead of {cfg['hidden']} to fit {source}: "
                                     f"{size} of {limits['model_max']} bytes")
