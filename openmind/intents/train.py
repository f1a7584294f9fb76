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
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import Served, execute
from openmind.flow.policy import split_policy
from openmind.flow.resources import Resources
from openmind.flow.router import Candidate, Intent, route
from openmind.intents.trainrequest import (
    TrainRequest,
    Version,
    ancestral_prior,
    answers,
    fit_to_device,
    healthy,
    lookup,
    prepare,
    request_key,
)
from openmind.memory.blobs import fingerprint, partial_reason, put
from openmind.memory.labels import join as join_labels
from openmind.pathways.ternary.packed import TernaryModel
from openmind.vocab import Decision, Pathway

if TYPE_CHECKING:
    from openmind.pathways.ternary.fit import FitJob

# --------------------------------------------------------------------------- the job


@dataclass
class _Run:
    """One training run's start, as `_keep` stores it: the fit job, the request's config (its full
    epochs, not the ones left to run), the class labels, the rows, and where it came from."""

    job: FitJob
    cfg: dict[str, Any]
    classes: np.ndarray
    X: np.ndarray
    device_note: str | None = None
    note: str | None = None
    parent_key: str | None = None
    done: int = 0
    y_idx: np.ndarray | None = None  # the labels as class indices


class _Training:
    """The handlers of one train_or_load call, sharing its request and memory's lookups; each
    takes the route's candidate and returns a `Served` model."""

    def __init__(self, req: TrainRequest, exact: Version | None, ancestor: Version | None,
                 partial: Version | None = None, prior: Any = None) -> None:
        self.req, self.exact, self.ancestor, self.partial, self.prior = (
            req, exact, ancestor, partial, prior)

    # ---- muscle memory
    def cached(self, cand: Candidate) -> Served:
        hit = self.ancestor if cand.params.get("ancestor") else self.exact
        if hit is None:
            raise PathwayUnavailable(f"no cached model named '{self.req.name}'")
        model = hit.model()
        if self.req.X.ndim < 2 or int(np.prod(self.req.X.shape[1:])) != model.n_features_in_:
            raise PathwayUnavailable(f"the cached '{self.req.name}' takes {model.n_features_in_} "
                                     f"features, this data has {self.req.X.shape[1:]}")
        entry = hit.entry
        model.info.update(cached=True, key=entry.key, cached_at=entry.created,
                          hits=entry.hits + 1)
        return Served(model, degraded=self._stand_in(hit), note=entry.origin,  # team's memory?
                      within_terms=answers(hit.meta, self.req.key, self.req.policy.budget))

    def _stand_in(self, hit: Version) -> str | None:
        """Why a stored version does not answer this call (None: it does)."""
        if answers(hit.meta, self.req.key, self.req.policy.budget):
            return partial_reason(hit.meta)
        if hit.meta.get("request") == self.req.key:
            return partial_reason(hit.meta) or "a run of this request cut short"
        other = []
        if hit.meta.get("fingerprint") != self.req.fp:
            other.append("other data")
        cfg = hit.meta.get("config") or {}
        diff = sorted(k for k in self.req.cfg if cfg.get(k) != self.req.cfg[k])
        if diff:
            other.append("another config (" + ", ".join(
                f"{k} {cfg.get(k)!r} not {self.req.cfg[k]!r}" for k in diff[:3]) + ")")
        if not other:
            other.append("another trainer version")
        why = f"a cached model of '{self.req.name}' trained on {' and '.join(other)}"
        cut = partial_reason(hit.meta)
        return why + (f", {cut}" if cut else "")

    # ---- training
    def full(self, cand: Candidate) -> Served:
        return self._train(cand, self.req.X, self.req.cfg)

    def situation(self) -> dict[str, Any]:
        """What a planner may know: shapes, dtypes, label set, resources; never the data."""
        return {"intent": "train", "name": self.req.name, "rows": int(len(self.req.X)),
                "shape": [int(d) for d in self.req.X.shape], "dtypes": [str(self.req.X.dtype)],
                "data_kind": self.req.kind, "labels": np.unique(self.req.y).tolist()[:100],
                "n_classes": int(len(np.unique(self.req.y))), "budget_s": self.req.policy.budget,
                "ancestor": self.ancestor is not None}

    def _planned(self, plan: dict[str, Any]) -> dict[str, Any]:
        """A config from a plan (hidden, epochs, learning_rate, batch_size); options the caller
        gave explicitly win."""
        from openmind.pathways.ternary.fit import resolve_config

        arch = plan.get("architecture") or {}
        planned = {"hidden": arch.get("hidden"), "epochs": plan.get("epochs"),
                   "lr": plan.get("learning_rate"), "batch_size": plan.get("batch_size")}
        base = {k: v for k, v in self.req.cfg.items()}
        base.update({k: v for k, v in planned.items() if v is not None and k not in self.req.explicit})
        return resolve_config(base)

    def _numeric_rows(self, who: str) -> np.ndarray:
        if self.req.X.dtype.kind not in "biuf":
            raise PathwayUnavailable(f"{who} needs numeric data, got {self.req.X.dtype}: give numbers "
                                     f"(e.g. embeddings or encoded columns)")
        return self.req.X.reshape(len(self.req.X), -1)

    def heuristic(self, cand: Candidate) -> Served:
        X = self._numeric_rows("the heuristic plan")
        try:
            from openmind.pathways.cloud.llm import heuristic_plan
        except ImportError:  # pragma: no cover - the cloud module ships with openmind
            cfg = self.req.cfg
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

    def _parent(self, hit: Version, cfg: dict[str, Any], X: np.ndarray | None = None) -> TernaryModel:
        """A stored version as the start of a fine-tune, or PathwayUnavailable saying why not."""
        parent = hit.model()
        X = self.req.X if X is None else X
        if X.ndim != 2 or X.shape[1] != parent.n_features_in_:
            raise PathwayUnavailable(f"the ancestor takes {parent.n_features_in_} features, this "
                                     f"data has {X.shape[1:]}")
        stored = (hit.meta.get("config") or {})
        if list(stored.get("hidden") or []) != list(cfg["hidden"]) or \
                stored.get("scale", cfg["scale"]) != cfg["scale"]:
            raise PathwayUnavailable(f"the cached ancestor has another architecture (hidden "
                                     f"{stored.get('hidden')}, not {cfg['hidden']}); cannot fine-tune it")
        unknown = sorted(set(np.unique(self.req.y).tolist()) - set(parent.classes_.tolist()), key=str)
        if unknown:
            raise PathwayUnavailable(f"the new data has classes {unknown[:5]} the ancestor does not know")
        return parent

    def fine_tune(self, cand: Candidate) -> Served:
        if cand.params.get("resume"):
            return self.resume(cand)
        if self.ancestor is None:
            raise PathwayUnavailable(f"no cached ancestor named '{self.req.name}'")
        if self.ancestor.meta.get("fingerprint") == self.req.fp:
            raise PathwayUnavailable("the cached ancestor was trained on this same data (another "
                                     "config): nothing new to fine-tune on")
        parent = self._parent(self.ancestor, self.req.cfg)
        return self._train(cand, self.req.X, self.req.cfg, parent=parent, parent_key=self.ancestor.entry.key)

    def resume(self, cand: Candidate) -> Served:
        """Go on from a run of this very request that was cut short, for the epochs it lacks."""
        if self.partial is None:
            raise PathwayUnavailable(f"no partial run of '{self.req.name}' to resume")
        parent = self._parent(self.partial, self.req.cfg)
        done = int(self.partial.meta.get("epochs_done") or 0)
        left = max(1, int(self.req.cfg["epochs"]) - done)
        return self._train(cand, self.req.X, self.req.cfg, parent=parent,
                           parent_key=self.partial.entry.key, epochs=left, done=done,
                           note=f"resumed after {done} of {self.req.cfg['epochs']} epochs")

    def _train(self, cand: Candidate, X: np.ndarray, cfg: dict[str, Any], *,
               parent: TernaryModel | None = None, parent_key: str | None = None,
               note: str | None = None, epochs: int | None = None, done: int = 0) -> Served:
        from openmind.pathways.ternary.progress import reporter

        desc = f"{'fine-tune' if parent else 'train'} {self.req.name}"
        # the bar shows now, before torch loads (seconds, the first time in a session)
        bar = reporter(_progress_view(self.req.progress), desc,
                       int(cfg["epochs"] if epochs is None else epochs), self.req.policy.budget)
        run = None
        try:
            from openmind.pathways.ternary.fit import fit

            job, run = self._job(cand, X, cfg, bar, desc, parent=parent, epochs=epochs,
                                 note=note, parent_key=parent_key, done=done)
            train = fit
            from openmind.pathways.colony.distributed import joined, trainer

            # data-parallel: N local processes, or the torchrun group this call leads; under
            # torchrun every route that trains (full, fine-tune, resume, planned) trains on all
            # ranks, so none waits on rank 0 training alone
            if cand.params.get("workers", 1) > 1 or joined() is not None:
                train = trainer({**cand.params, "joined": joined() is not None})
            out = train(X, run.y_idx, job)
        except BaseException as exc:
            bar.end("interrupted" if isinstance(exc, KeyboardInterrupt) else "error")  # unless fit did
            cut = getattr(exc, "fit_outcome", None)
            if run is not None and cut is not None and cut.epochs > 0:
                try:  # keep the best weights so far as a partial version, to resume from
                    self._keep(cut, run)
                except Exception:  # noqa: BLE001 - keeping is best effort; the cause propagates
                    pass
            raise
        bar.end(out.stopped)
        model, meta = self._keep(out, run)
        # stopped by this call's budget: the most that fits, what the call asked for
        return Served(model, degraded=partial_reason(meta), note=note if done else None,
                      within_terms=meta.get("stopped") == "budget")

    def _job(self, cand: Candidate, X: np.ndarray, cfg: dict[str, Any], bar: Any, desc: str, *,
             parent: TernaryModel | None, epochs: int | None, note: str | None,
             parent_key: str | None, done: int) -> tuple[FitJob, _Run]:
        """The fit job (device, classes, standardisation from the parent or the data) and its run."""
        from openmind.pathways.ternary.fit import FitJob, pick_device, standardization

        device, device_note = pick_device(cand.params.get("device"))
        if parent is not None:
            classes = parent.classes_
            mean, inv_std = parent.mean, parent.inv_std
            y_idx = np.searchsorted(classes, self.req.y) if _sortable(classes) else \
                np.array([list(classes).index(v) for v in self.req.y])
        else:
            classes, y_idx = np.unique(self.req.y, return_inverse=True)
            mean, inv_std = standardization(X)
        job = FitJob(len(classes), cfg if epochs is None else {**cfg, "epochs": epochs}, mean,
                     inv_std, device=device, budget=self.req.policy.budget, init=parent,
                     progress=bar, prior=self.prior, desc=desc)
        run = _Run(job, cfg, classes, X, device_note=device_note, note=note, parent_key=parent_key,
                   done=done, y_idx=np.asarray(y_idx, dtype=np.int64).reshape(-1))
        return job, run

    def _keep(self, out: Any, run: _Run) -> tuple[TernaryModel, dict]:
        """Export a run and store it as a new version of the name (complete or partial)."""
        from openmind.pathways.ternary.net import export

        version = uuid.uuid4().hex
        complete = out.stopped in ("epochs", "early_stop")
        stored = dict(fingerprint=self.req.fp, request=self.req.key, complete=complete,
                      stopped=out.stopped, epochs=int(run.cfg["epochs"]),
                      epochs_done=run.done + int(out.epochs),
                      budget_s=self.req.policy.budget if out.stopped == "budget" else None)
        info = self._info(out, run, version)
        if not complete:  # the model itself says so, wherever it goes (infer, save, serve)
            info["partial"] = partial_reason(stored)
        model = export(out.net, run.job.mean, run.job.inv_std, run.classes, name=self.req.name,
                       config=run.cfg, info=info)
        arrays, meta = model.to_arrays()
        meta.update(stored)
        entry = put("model", self.req.name, version, arrays, meta)
        model.info["stored"] = entry is not None
        return model, meta

    def _info(self, out: Any, run: _Run, version: str) -> dict[str, Any]:
        """The model's info: how the run went (accuracy, epochs, why it stopped, time, device)
        and where it came from (request, plan, parent, inherited weights, extinctions)."""
        from openmind.pathways.ternary.net import linears

        info: dict[str, Any] = {
            ("val_accuracy" if out.held_out else "train_accuracy"):
                None if out.val_accuracy is None else round(out.val_accuracy, 4),
            "epochs": out.epochs, "best_epoch": out.best_epoch,
            "stopped": out.stopped, "train_seconds": round(out.seconds, 3),
            "train_cpu_seconds": round(out.cpu_seconds, 3), "device": run.job.device,
            "rows": int(len(run.X)), "fingerprint": self.req.fp, "key": version,
            "request": self.req.key, "cached": False,
            "val_history": [round(h["val_accuracy"], 4) for h in out.history],
        }
        if out.stopped == "budget":
            info["budget_s"] = self.req.policy.budget
        if out.inherited:
            info["inherited"] = out.inherited
        if out.extinctions:
            info["extinctions"] = out.extinctions
            info["hidden_final"] = [m.weight.shape[0] for m in linears(out.net)[:-1]]
        if run.device_note:
            info["device_note"] = run.device_note
        info.update(out.colony)
        if run.note:
            info["plan"] = run.note
        if run.parent_key is not None:
            info["parent"] = run.parent_key
        return info


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
    from openmind.pathways.ternary.estimate import estimate_seconds
    from openmind.pathways.ternary.fit import RUN_OPTIONS, TRAINER_VERSION, resolve_config

    pol, rest = split_policy(options)
    run = {k: rest.pop(k) for k in list(rest) if k in RUN_OPTIONS}
    fit_device = rest.pop("fit_device", False)
    for what, value, ok, takes in (("fit_device", fit_device, (bool, dict), "True, False or a dict of limits"),
                                   ("progress", run.get("progress", True), bool, "True or False")):
        if not isinstance(value, ok):
            raise BadInput(f"{what} takes {takes}, got {value!r}")
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
    exact, ancestor, shed = healthy(name, exact, ancestor)  # the validator's shed versions
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
    req = TrainRequest(name, X, y, kind, cfg, set(rest), key, fp, pol,
                       progress=bool(run.get("progress", True)))
    job = _Training(req, exact, ancestor, partial, prior)
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


def _progress_view(wanted: bool) -> Any:
    """The epochs' bar: the notebook face's (ends in the card's state and colour), else tqdm in
    a terminal (True), or none."""
    if not wanted:
        return False
    from openmind.intents.present import live_view

    return live_view("epochs", None, otherwise=True)
