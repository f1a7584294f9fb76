"""`monitor`: the colony's monitor. Watches batches or a live signal with a model, tests input
drift against the model's training data and, when labels arrive, error drift; on drift it runs
the configured action (fine-tune on the recent labelled rows through `train_or_load`, or alert
only) and journals it, so the sidebar lists each drift event as it happens.

Input drift, per feature, on the last `window` rows every `step` rows: the population stability
index (10 reference-quantile bins) and the two-sample Kolmogorov–Smirnov test (its p-value from
scipy's Kolmogorov distribution). A stream is autocorrelated, so the KS p-value uses effective
sample sizes n(1-r)/(1+r) (r = lag-1 autocorrelation); a check is positive when PSI > `psi` and p < `alpha` / features, and drift is
declared after `confirm` positive checks in a row. So a mean shift is declared at most
`window + confirm * step` rows after it starts, once it is large enough to fill the window.
Error drift: Page–Hinkley on the 0/1 error stream (an increase of the error rate).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import execute
from openmind.flow.policy import split_policy
from openmind.flow.resources import Resources
from openmind.flow.router import Candidate, Intent, route
from openmind.intents.present import html_of, live_view
from openmind.vocab import Decision, Pathway, Route

ACTIONS = ("fine_tune", "alert")
PSI_BINS = 10
MAX_FEATURES_TESTED = 64


# --------------------------------------------------------------------------- tests


def _edges(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.clip(counts / len(values), 1e-4, None)


def psi(reference: np.ndarray, current: np.ndarray, bins: int = PSI_BINS,
        _ref: tuple[np.ndarray, np.ndarray] | None = None) -> float:
    """Population stability index of `current` against `reference` (bins at reference quantiles)."""
    edges, r = _ref if _ref is not None else (_edges(reference, bins), None)
    r = _shares(reference, edges) if r is None else r
    c = _shares(current, edges)
    return float(np.sum((c - r) * np.log(c / r)))


def _lag1(x: np.ndarray) -> float:
    if len(x) < 3 or np.std(x) == 0:
        return 0.0
    with np.errstate(invalid="ignore", divide="ignore"):  # one constant half: no correlation, no warning
        return float(np.clip(np.nan_to_num(np.corrcoef(x[:-1], x[1:])[0, 1]), 0.0, 0.99))


def ks_pvalue(reference: np.ndarray, current: np.ndarray,
              _ref: tuple[np.ndarray, float] | None = None) -> tuple[float, float]:
    """(KS statistic, p-value with autocorrelation-adjusted effective sample sizes): the two-sample
    statistic (as scipy.stats.ks_2samp computes it) and scipy's limiting Kolmogorov distribution."""
    from scipy.special import kolmogorov

    ref_sorted, r_ref = _ref if _ref is not None else (np.sort(reference), _lag1(reference))
    cur = np.sort(current)
    both = np.concatenate([ref_sorted, cur])
    d = float(np.max(np.abs(np.searchsorted(ref_sorted, both, side="right") / len(ref_sorted)
                            - np.searchsorted(cur, both, side="right") / len(cur))))
    r_cur = _lag1(current)
    n = len(cur) * (1 - r_cur) / (1 + r_cur)
    m = len(ref_sorted) * (1 - r_ref) / (1 + r_ref)
    en = np.sqrt(n * m / (n + m)) if n + m > 0 else 0.0
    return d, float(kolmogorov(d * en))


@dataclass
class PageHinkley:
    """Page–Hinkley test for an increase of the mean of a stream (here: the 0/1 error stream)."""

    delta: float = 0.05
    threshold: float = 5.0
    min_samples: int = 30
    n: int = 0
    mean: float = 0.0
    cum: float = 0.0
    low: float = 0.0

    def update(self, x: float) -> bool:
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.cum += x - self.mean - self.delta
        self.low = min(self.low, self.cum)
        return self.n >= self.min_samples and self.cum - self.low > self.threshold

    def reset(self) -> None:
        self.n, self.mean, self.cum, self.low = 0, 0.0, 0.0, 0.0


# --------------------------------------------------------------------------- result


@dataclass
class Watch:
    """What `monitor` returns: the events (drift, fine-tune, alert), the final state and model,
    the samples watched and `.route`. `first_drift` is the sample index of the first drift."""

    name: str
    model: Any
    state: str = "watching"
    samples: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)
    values: list[float] = field(default_factory=list, repr=False)
    errors: int = 0
    labelled: int = 0
    queued: int = 0
    route: Route | None = None

    @property
    def first_drift(self) -> int | None:
        return next((e["sample"] for e in self.events if e["kind"].endswith("drift")), None)

    def summary(self) -> dict[str, Any]:
        return {"model": self.name, "state": self.state, "samples": self.samples,
                "labelled": self.labelled, "errors": self.errors, "queued_for_labels": self.queued,
                "first_drift": self.first_drift,
                "events": [{k: e[k] for k in ("kind", "sample", "detail")} for e in self.events]}

    def __repr__(self) -> str:
        kinds = ", ".join(f"{e['kind']}@{e['sample']}" for e in self.events) or "no events"
        return f"Watch({self.name!r}: {self.samples} samples, state {self.state}; {kinds})"

    def _repr_html_(self) -> str | None:
        return html_of("watch", self)  # the face draws the chart (openmind.jupyter.plots)


@dataclass(frozen=True)
class WatchConfig:
    """How `monitor` watches: the drift tests' thresholds, the action on drift, how a signal
    named as the source is read, and whether a live chart is drawn. `monitor` takes these as
    keywords (`openmind.monitor(model, source, window=60, action="alert")`) or as `config=`."""

    action: str = "fine_tune"
    window: int = 40
    step: int = 5
    psi: float = 0.25
    alpha: float = 1e-5
    confirm: int = 2
    retrain_rows: int = 100
    ph_delta: float = 0.05
    ph_threshold: float = 5.0
    confidence: float = 0.8
    batches: int | None = None
    duration: Any = None
    rate: Any = None
    live: bool | None = None
    train_options: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise BadInput(f"unknown action {self.action!r}; valid: {', '.join(ACTIONS)}")
        for what, lo in (("window", 5), ("step", 1), ("confirm", 1), ("retrain_rows", 2)):
            v = getattr(self, what)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise BadInput(f"{what} must be an integer of at least {lo}, got {v!r}")
        for what, kind in (("psi", float), ("alpha", float), ("train_options", lambda o: dict(o or {}))):
            object.__setattr__(self, what, kind(getattr(self, what)))

    @property
    def reference_rows(self) -> int:
        """Rows of the new regime that make the reference after a fine-tune."""
        return max(300, 10 * self.window)

    @classmethod
    def split(cls, options: dict[str, Any]) -> tuple[WatchConfig, dict[str, Any]]:
        """(the watch configuration from `options`, the options left: the policy's keywords)."""
        names = {f.name for f in fields(cls)}
        return (cls(**{k: v for k, v in options.items() if k in names}),
                {k: v for k, v in options.items() if k not in names})


# --------------------------------------------------------------------------- sources


def _batches(source: Any, labels: Any, batches: int | None, duration: Any, rate: Any,
             seed: int | None) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    """(samples or rows, labels or None) batch by batch, from any source the monitor accepts."""
    def with_labels(values: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray | None]:
        if labels is None:
            return values, None
        if callable(labels):
            return values, np.asarray(labels(values))
        lab = np.asarray(labels)
        return values, lab[offset:offset + len(values)]

    def as_values(item: Any) -> np.ndarray:
        return np.asarray(getattr(item, "values", item), dtype=np.float64)

    if isinstance(source, str):
        from openmind.intents.sense import sense_or_simulate

        if labels is not None and not callable(labels):
            raise BadInput("a live signal has no fixed length: give labels as a function of a "
                           "batch's values (labels=lambda values: ...), or none")
        for i in range(batches or 10):
            sig = sense_or_simulate(source, duration or "10s", rate or "1Hz", progress=False,
                                    seed=None if seed is None else seed + i)
            yield with_labels(as_values(sig), 0)
        return
    if hasattr(source, "values") and hasattr(source, "times") or isinstance(source, np.ndarray):
        yield with_labels(as_values(source), 0)
        return
    if callable(source):
        offset = 0
        for _ in range(batches or 10**9):
            item = source()
            if item is None:
                return
            values, y = _split(item, labels, with_labels, as_values, offset)
            offset += len(values)
            yield values, y
        return
    if isinstance(source, Iterable):
        offset = 0
        for i, item in enumerate(source):
            if batches is not None and i >= batches:
                return
            values, y = _split(item, labels, with_labels, as_values, offset)
            offset += len(values)
            yield values, y
        return
    raise BadInput(f"source must be a Signal, an array, a signal name, a callable returning batches "
                   f"or an iterable of batches, got {type(source).__name__}")


def _split(item: Any, labels: Any, with_labels: Callable, as_values: Callable, offset: int):
    if isinstance(item, tuple) and len(item) == 2:
        return as_values(item[0]), np.asarray(item[1])
    return with_labels(as_values(item), offset)


# --------------------------------------------------------------------------- the watcher


class _Watcher:
    """One monitor call's state: the model, the reference, the detectors, the recent rows."""

    def __init__(self, name: str, model: Any, reference: np.ndarray, config: WatchConfig) -> None:
        self.name, self.model, self.reference, self.o = name, model, reference, config
        self.k = int(getattr(model, "n_features_in_", reference.shape[1]))
        self.tail = np.empty(0)  # the last k-1 samples of a 1-D stream (for windowed rows)
        self.rows: deque = deque(maxlen=max(config.window, config.retrain_rows) * 4)
        self.since = 0
        self.positives = 0
        self.ph = PageHinkley(config.ph_delta, config.ph_threshold)
        self.collect: list[tuple[np.ndarray, Any]] | None = None
        self.refill: list[np.ndarray] | None = None  # the new regime's rows after a fine-tune
        self._stats_of: np.ndarray | None = None
        self._stats: list[Any] = []
        self.unsure: list[np.ndarray] = []
        self.w = Watch(name, model)

    def rows_of(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, sample index of each row) from a batch: rows as given, or windows of k samples."""
        if values.ndim == 2:
            if values.shape[1] != self.k:
                raise BadInput(f"rows of {values.shape[1]} features; '{self.name}' takes {self.k}")
            idx = self.w.samples + np.arange(len(values))
            self.w.samples += len(values)
            self.w.values.extend(values[:, 0].tolist())
            return values, idx
        values = values.reshape(-1)
        self.w.values.extend(values.tolist())
        first = self.w.samples
        self.w.samples += len(values)
        joined = np.concatenate([self.tail, values])
        self.tail = joined[len(joined) - (self.k - 1):] if self.k > 1 else np.empty(0)
        if len(joined) < self.k:
            return np.empty((0, self.k)), np.empty(0, dtype=int)
        rows = np.lib.stride_tricks.sliding_window_view(joined, self.k)
        idx = first + np.arange(len(values))[len(values) - len(rows):]
        return np.ascontiguousarray(rows), idx

    def feed(self, values: np.ndarray, y: np.ndarray | None) -> None:
        rows, idx = self.rows_of(values)
        if y is not None and len(y) >= len(values) and values.ndim == 1:
            y = np.asarray(y)[len(values) - len(rows):]
        if not len(rows):
            return
        proba = np.asarray(self.model.predict_proba(rows))
        self.unsure.extend(rows[proba.max(axis=1) < self.o.confidence][:100])
        classes = getattr(self.model, "classes_", None)
        pred = classes[np.argmax(proba, axis=1)] if classes is not None else np.argmax(proba, axis=1)
        for j in range(len(rows)):
            label = None if y is None or j >= len(y) else y[j]
            self.rows.append((rows[j], label))
            if self.refill is not None:
                self.refill.append(rows[j])
                if len(self.refill) >= self.o.reference_rows:
                    self.reference, self.refill = np.asarray(self.refill), None
            if label is not None:
                self.w.labelled += 1
                wrong = bool(pred[j] != label)
                self.w.errors += wrong
                if self.collect is not None:
                    self.collect.append((rows[j], label))
                elif self.w.state == "watching" and self.ph.update(float(wrong)):
                    self.drift("error drift", int(idx[j]), f"Page–Hinkley on the error stream: "
                               f"{self.ph.cum - self.ph.low:.2f} > {self.ph.threshold:g} after "
                               f"{self.ph.n} labelled rows (error rate {self.ph.mean:.3f})")
            self.since += 1
            if self.since >= self.o.step and len(self.rows) >= self.o.window and self.refill is None:
                self.since = 0
                self.check(int(idx[j]))
            if self.collect is not None and len(self.collect) >= self.o.retrain_rows:
                self.fine_tune(int(idx[j]))

    def check(self, sample: int) -> None:
        """Input drift on the last `window` rows: PSI and KS per feature."""
        recent = np.asarray([r for r, _ in list(self.rows)[-self.o.window:]])
        n_feat = min(self.k, MAX_FEATURES_TESTED)
        alpha = self.o.alpha / n_feat
        worst = None
        if self._stats_of is not self.reference:  # per-feature reference summaries, once per reference
            self._stats_of = self.reference
            self._stats = []
            for f in range(n_feat):
                col = self.reference[:, f]
                edges = _edges(col)
                self._stats.append(((edges, _shares(col, edges)), (np.sort(col), _lag1(col))))
        for f in range(n_feat):
            p_ = psi(self.reference[:, f], recent[:, f], _ref=self._stats[f][0])
            d, pv = ks_pvalue(self.reference[:, f], recent[:, f], _ref=self._stats[f][1])
            if worst is None or p_ > worst[1]:
                worst = (f, p_, d, pv)
            if p_ > self.o.psi and pv < alpha:
                worst = (f, p_, d, pv)
                break
        f, p_, d, pv = worst
        positive = p_ > self.o.psi and pv < alpha
        self.w.checks.append({"sample": sample, "feature": f, "psi": round(p_, 4), "ks": round(d, 4),
                              "p": pv, "positive": positive})
        self.positives = self.positives + 1 if positive else 0
        if self.positives >= self.o.confirm and self.w.state == "watching":
            self.drift("input drift", sample, f"feature {f}: PSI {p_:.3f} > {self.o.psi:g}, KS "
                       f"{d:.3f} (p {pv:.2g} < {alpha:.2g}) on the last {self.o.window} rows, "
                       f"{self.positives} checks in a row")

    def event(self, kind: str, sample: int, detail: str, **extra: Any) -> dict[str, Any]:
        ev = {"kind": kind, "sample": sample, "detail": detail, "ts": time.time(), **extra}
        self.w.events.append(ev)
        try:
            from openmind.flow.journal import write

            write({"intent": "monitor", "name": self.name, "ok": True, "pathway": "muscle_memory",
                   "decision": "HARDCODE", "reason": f"{kind} at sample {sample}: {detail}",
                   "duration_ms": 0.0, "summary": {"state": self.w.state, "event": kind,
                                                   "sample": sample, "detail": detail}})
        except Exception:  # noqa: BLE001 - an unwritable journal must not stop the watch
            pass
        return ev

    def drift(self, kind: str, sample: int, detail: str) -> None:
        action = self.o.action
        if action == "fine_tune" and self.w.labelled:  # labels arrive: fine-tune on the next ones
            self.w.state = "collecting"
            self.collect = []
            self.event(kind, sample, detail + f"; collecting {self.o.retrain_rows} labelled rows to fine-tune")
        else:
            self.w.state = "drift"
            why = "alert only" if action == "alert" else "no labels arrive, so alert only"
            self.event(kind, sample, f"{detail}; {why}")

    def fine_tune(self, sample: int) -> None:
        from openmind.intents.train import train_or_load

        rows = self.collect or []
        self.collect = None
        X = np.asarray([r for r, _ in rows])
        y = np.asarray([label for _, label in rows])
        try:
            model = train_or_load(self.name, X, y, progress=False, **self.o.train_options)
        except Exception as exc:  # noqa: BLE001 - the watch goes on with the old model
            self.w.state = "drift"
            self.event("fine-tune failed", sample, f"{type(exc).__name__}: {exc}")
            return
        how = f"{model.route.pathway.value}/{model.route.decision.value}" if getattr(model, "route", None) else "?"
        self.model = self.w.model = model
        # the reference becomes the new regime: the fine-tune rows and those after them, up to
        # `reference_rows` (input tests pause until then: a narrow reference would cry wolf)
        self.refill = list(X)
        self.ph.reset()
        self.positives = 0
        self.w.state = "watching"
        self.event("fine-tuned", sample, f"train_or_load on the {len(X)} labelled rows since the drift "
                   f"({how}); watching with the new version", key=(model.info or {}).get("key"))


def _reference(reference: Any, model: Any, k: int, seed: int | None) -> tuple[np.ndarray, bool]:
    """(reference rows, given?): the caller's training data, else a sample rebuilt from the model's
    standardisation (mean, 1/inv_std), which knows no shape beyond mean and spread."""
    if reference is not None:
        ref = np.asarray(getattr(reference, "values", reference), dtype=np.float64)
        if ref.ndim == 1:
            if k == 1:
                ref = ref.reshape(-1, 1)
            else:
                ref = np.lib.stride_tricks.sliding_window_view(ref, k).copy()
        if ref.ndim != 2 or ref.shape[1] != k or len(ref) < 10:
            raise BadInput(f"reference must be the training rows ({k} features, at least 10 rows), "
                           f"got shape {ref.shape}")
        return ref, True
    mean = np.asarray(getattr(model, "mean", np.zeros(k)), dtype=np.float64)
    inv = np.asarray(getattr(model, "inv_std", np.ones(k)), dtype=np.float64)
    rng = np.random.default_rng(seed)
    return rng.normal(mean, 1.0 / np.where(inv > 0, inv, 1.0), size=(1000, k)), False


def monitor(model: Any, source: Any, *, labels: Any = None, reference: Any = None,
            config: WatchConfig | None = None, resources: Resources | None = None,
            **options: Any) -> Watch:
    """Watch `source` with `model` (a name or a model object) and act on drift.

    source: a Signal (e.g. from sense_or_simulate), an array (samples or rows), a signal name (read
    live, `batches` times `duration` at `rate`), a callable returning the next batch (None ends),
    or an iterable of batches (arrays, Signals or (rows, labels) pairs). `labels`: aligned with the
    stream, or a callable giving the labels of a batch. `reference`: the training data (without it,
    a reference is rebuilt from the model's standardisation: a weaker test, said in the route).
    `options`: the `WatchConfig` fields (over `config`, if given) and the policy's keywords.
    `action`: fine_tune (on `retrain_rows` labelled rows after the drift, through train_or_load
    with `train_options`) or alert. A 1-D stream feeds a k-feature model windows of k samples.
    """
    cfg, policy = WatchConfig.split(options)
    if config is not None:
        cfg = replace(config, **{k: v for k, v in options.items() if k not in policy})
    pol, rest = split_policy(policy)
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for monitor")
    name, obj = _watched(model)
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    intent = Intent.of("monitor", name=name, local_model=obj is not None, exact=reference is not None)
    plan = route(intent, resources=resources, policy=pol)

    def watch(cand: Candidate) -> Watch:
        if obj is None:
            raise PathwayUnavailable(f"no model '{name}' to watch with")
        k = int(getattr(obj, "n_features_in_", 1))
        ref, _given = _reference(reference, obj, k, cfg.seed)
        return _watch(_Watcher(name, obj, ref, cfg), source, labels)

    handlers = {(Pathway.MUSCLE_MEMORY, Decision.HARDCODE): watch,
                (Pathway.MUSCLE_MEMORY, Decision.HYBRID): watch}
    result, _ = execute(plan, handlers, resources=resources, summarize=Watch.summary)
    return result


def _watched(model: Any) -> tuple[str, Any]:
    """(name, model object or None when no local model has that name) of what `monitor` watches with."""
    if isinstance(model, str):
        from openmind.intents.infer import load_local_model, model_known

        local = load_local_model(model) if model.strip() and model_known(model) else None
        return model, (local.model if local is not None else None)
    if hasattr(model, "predict_proba"):
        return str(getattr(model, "name", None) or type(model).__name__), model
    raise BadInput(f"{type(model).__name__} is not a model: pass a model name or a TernaryModel")


def _watch(watcher: _Watcher, source: Any, labels: Any) -> Watch:
    """Feed the source through the watcher batch by batch (the live chart follows), then queue the
    rows the model was unsure of for labels."""
    cfg, chunk = watcher.o, max(watcher.o.step, 1) * 4
    view = live_view("watch", cfg.live)
    for values, y in _batches(source, labels, cfg.batches, cfg.duration, cfg.rate, cfg.seed):
        for start in range(0, len(values), chunk):
            watcher.feed(values[start:start + chunk], None if y is None else y[start:start + chunk])
            view.update(watcher.w)
    view.update(watcher.w, force=True)
    if watcher.unsure:
        from openmind.memory.labels import queue

        try:
            watcher.w.queued = queue(watcher.name, np.asarray(watcher.unsure),
                                     f"monitor: top probability below {cfg.confidence:g}")
        except Exception:  # noqa: BLE001 - the queue is a side benefit of the watch
            pass
    return watcher.w
