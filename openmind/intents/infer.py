"""The `infer` intent: predictions from the cache, a local model, an OIP endpoint or the language model.

`infer_adaptive` looks the facts up (cached predictions? model in local memory? served remotely?),
lets the router order the pathways and the executor try them; every failure falls through to the
next pathway with its reason in the journal. `load_local_model` is the one place that knows how a
stored model becomes something with `predict_proba`.
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openmind.config import public_url
from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import Served, execute
from openmind.flow.policy import split_policy
from openmind.flow.resources import Resources, probe
from openmind.flow.router import Candidate, Intent, route
from openmind.intents.present import html_of
from openmind.memory import blobs as memory
from openmind.memory.blobs import entries, fingerprint, get, key_for, put
from openmind.memory.health import shed_versions
from openmind.memory.store import memory_version
from openmind.vocab import Decision, Pathway, Route, check_name

# default meaning of the trits for zero-shot text classification
SENTIMENT = {-1: "negative", 0: "neutral", 1: "positive"}


# --------------------------------------------------------------------------- models


@dataclass
class LocalModel:
    """A model ready for inference here: the object, its name, and a key naming it (the stored
    version's key; a model object's own content key). `content` names the weights themselves
    (the blob's hash): predictions are cached under it, so a retrained model never gets another
    version's predictions."""

    name: str
    key: str
    model: Any
    meta: dict[str, Any] = field(default_factory=dict)
    content: str | None = None
    _gpu: Any = field(default=None, repr=False, compare=False)  # the weights on the GPU, once

    @property
    def classes(self) -> np.ndarray:
        classes = getattr(self.model, "classes_", None)
        if classes is None:
            classes = self.meta.get("classes")
        return np.asarray(classes) if classes is not None else None

    @functools.cached_property
    def colony(self) -> Any:
        """The Colony when this model is one (it predicts by vote and abstains), else None
        (worked out once: every request asks)."""
        from openmind.pathways.ternary.vote import Colony

        return self.model if isinstance(self.model, Colony) else None

    @property
    def n_inputs(self) -> int | None:
        n = getattr(self.model, "n_features_in_", None) or getattr(self.model, "n_inputs", None)
        return int(n) if n else self.meta.get("n_inputs")

    def work(self, rows: int) -> int | None:
        """Multiply-adds a prediction of `rows` rows costs (None: unknown, e.g. sklearn): what
        decides whether a prediction is worth caching or worth a worker thread."""
        per_row = self._work_per_row
        return None if per_row is None else rows * per_row

    @functools.cached_property
    def _work_per_row(self) -> int | None:
        members = getattr(self.colony, "members", None) or [self.model]  # a colony: every member
        layers = [a for m in members for a in (getattr(m, "layers", None) or ())]
        if not layers:
            return None
        return sum(int(a.trits.size) if hasattr(a, "trits") else 1 for a in layers)

    def check(self, X: np.ndarray) -> None:
        """Bad input shapes are the caller's mistake: say what the model expects."""
        n = self.n_inputs
        if X.ndim != 2 or (n is not None and X.shape[1] != n):
            raise BadInput(f"model '{self.name}' expects rows of {n} features, got data of shape "
                           f"{tuple(X.shape)}; pass a 2-D array (rows x {n})")

    def predict_proba(self, X: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, str]:
        """(probabilities, device actually used). A CUDA request without usable CUDA runs on CPU."""
        if device == "cuda":
            try:
                return self._proba_cuda(X), "cuda"
            except Exception as exc:  # noqa: BLE001 - any CUDA trouble means: use the CPU path
                self.meta["_cuda_fallback"] = f"CUDA not usable ({type(exc).__name__}: {exc})"
        return np.asarray(self.model.predict_proba(X), dtype=np.float32), "cpu"

    def _proba_cuda(self, X: np.ndarray) -> np.ndarray:
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device")
        fn = getattr(self.model, "predict_proba_torch", None)
        if fn is not None:
            return np.asarray(fn(X, device="cuda"), dtype=np.float32)
        layers = getattr(self.model, "layers", None)
        if layers is None:
            raise RuntimeError("model has no GPU path")

        def t(a: np.ndarray):
            return torch.as_tensor(np.asarray(a, np.float32), device="cuda")

        if self._gpu is None:  # the weights go to the GPU once per loaded model, not per call
            self._gpu = (t(self.model.mean), t(self.model.inv_std),
                         [(t(la.trits).T.contiguous(), t(la.scale), t(la.bias), la.relu) for la in layers])
        mean, inv_std, weights = self._gpu
        with torch.inference_mode():
            h = (t(X) - mean) * inv_std
            for w, scale, bias, relu in weights:  # trits [out, in], scale (1 or out), bias (out)
                h = (h @ w) * scale + bias
                if relu:
                    h = torch.relu(h)
            return torch.softmax(h, dim=1).cpu().numpy()

    def answer(self, X: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, str, np.ndarray | None]:
        """(labels, probabilities, device used, abstained): what infer_adaptive and `openmind
        serve` answer. A colony's labels are its vote (on the CPU) and `abstained` marks the rows
        it is unsure of; a plain model's `abstained` is None."""
        if self.colony is not None:
            vote = self.colony.vote(X)
            return (vote.labels, np.asarray(vote.probabilities, dtype=np.float32), "cpu (colony vote)",
                    vote.abstained)
        proba, used = self.predict_proba(X, device)
        classes = self.classes
        idx = np.argmax(proba, axis=1)
        return (classes[idx] if classes is not None else idx), proba, used, None

    def predict(self, X: np.ndarray, device: str = "cpu") -> tuple[np.ndarray, np.ndarray, str]:
        """(labels, probabilities, device used); a colony's labels are its vote (on the CPU)."""
        labels, proba, used, _abstained = self.answer(X, device)
        return labels, proba, used


def _model_from(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """Stored arrays + meta -> a model object. The one place that knows stored model formats."""
    if meta.get("format") == "openmind-ternary":  # what train_or_load stores
        from openmind.pathways.ternary.packed import TernaryModel

        return TernaryModel.from_arrays(arrays, meta)
    if meta.get("format") == "openmind-colony":  # what Colony.keep stores
        from openmind.pathways.ternary.vote import Colony

        return Colony.from_arrays(arrays, meta)
    if "packed" in arrays:  # bare packed bytes (docs/packed-format.md) + an optional class list
        classes = meta.get("classes") if isinstance(meta.get("classes"), list) else None
        from openmind.pathways.ternary.packed import PackedModel

        return PackedModel.from_bytes(arrays["packed"].tobytes(), classes=classes)
    raise PathwayUnavailable(f"the stored model has a format this version cannot load "
                             f"({meta.get('format', 'unknown')!r})")


_LOADED: dict[tuple[str, int, str], LocalModel] = {}  # (store, change count, name) -> model
_LOADED_KEEP = 8


def load_local_model(name: str) -> LocalModel | None:
    """The newest healthy complete model named `name` in muscle memory (else the newest healthy
    partial one), ready for inference; None if there is none. A version the validator shed is
    never served. Its `key` names its content (the blob's hash), so predictions cached for it are
    never served for another version. A stored row that holds no loadable model is skipped with a
    warning. A model already loaded in this process is reused while it is still the newest of its
    name and nothing memory holds changed (one indexed read, no blob read or unpacking)."""
    version = memory_version()  # nothing memory holds changed: the same model answers
    memo = (*version, name) if version is not None else None
    if memo is not None and memo in _LOADED:
        return _LOADED[memo]
    found = memory.versions("model", name)
    if not found:
        return None
    shed = shed_versions(name)
    passed = [f"version {shed[(e.key, e.blob)].get('version')}: {shed[(e.key, e.blob)].get('reason')}"
              for e in found if (e.key, e.blob) in shed]
    ordered = sorted(found, key=lambda e: memory.partial_reason(e.meta) is not None)
    for entry in ordered:  # stable: newest first within complete, then partial
        if (entry.key, entry.blob) in shed:
            continue
        arrays = memory.load(entry)
        if arrays is None:
            continue
        try:
            model = _model_from(arrays, entry.meta)
        except Exception as exc:  # a damaged row is a miss, never the caller's error
            warnings.warn(f"openmind: muscle memory entry model '{name}' ({entry.key[:12]}) "
                          f"holds no loadable model ({type(exc).__name__}: {exc}); skipped",
                          memory.MemoryWarning, stacklevel=2)
            continue
        local = LocalModel(name, entry.key, model,
                           {**entry.meta, "shed": "; ".join(passed) or None}, entry.blob)
        if memo is not None:
            while len(_LOADED) >= _LOADED_KEEP:
                _LOADED.pop(next(iter(_LOADED)))
            _LOADED[memo] = local
        return local
    return None


def _wrap(model: Any) -> LocalModel:
    """A model object given directly: name from `.name`, key from its packed bytes if it packs."""
    if not hasattr(model, "predict_proba"):
        raise BadInput(f"{type(model).__name__} is not a model: pass a model name (str) or an object "
                       "with predict_proba (e.g. a TernaryModel)")
    name = getattr(model, "name", None) or type(model).__name__
    return LocalModel(str(name), _content_key(model), model)


def _content_key(model: Any) -> str:
    """The key of a model's packed bytes, computed once per model object (packing and hashing cost
    more than a prediction); recomputed when its layers are replaced."""
    pack = getattr(model, "pack", None)
    if not callable(pack):
        return ""
    layers = tuple(id(a) for a in getattr(model, "layers", ()))
    memo = getattr(model, "__dict__", {}).get("_om_content_key")
    if memo is not None and memo[0] == layers:
        return memo[1]
    key = key_for("packed", fingerprint(np.frombuffer(pack(), np.uint8)))
    if hasattr(model, "__dict__"):
        model.__dict__["_om_content_key"] = (layers, key)
    return key


# Predictions are kept in muscle memory only where computing them costs more than storing them: a
# local CPU prediction of a few rows takes microseconds, a store write and read milliseconds.
CACHE_MIN_WORK = 50_000_000  # rows x weights of a local model below which nothing is cached


def _worth_caching(local: LocalModel | None, rows: int) -> bool:
    """True when a cached answer could beat computing: no local model, or a big batch."""
    if local is None:
        return True
    work = local.work(rows)
    return work is None or work >= CACHE_MIN_WORK  # unknown cost: sklearn and friends may be slow


def model_known(name: str) -> bool:
    """True when muscle memory holds a model of that name (an index lookup, no blob read)."""
    return bool(entries("model", name))


def _queue_unsure(local: Any, name: str, X: np.ndarray, proba: np.ndarray,
                  unsure: np.ndarray | None) -> None:
    """The rows a model is unsure of wait for a label (openmind.label_queue), whether the answer
    was computed or came from memory: a colony's in each member's queue (their next train
    learns), a model's in its own."""
    from openmind.intents.label import queue_abstentions

    colony = getattr(local, "colony", None)
    if unsure is not None and colony is not None:
        for member in {m.name for m in colony.members if m.name}:
            queue_abstentions(member, X, proba, unsure=unsure)
    elif unsure is None:
        queue_abstentions(name, X, proba)


# --------------------------------------------------------------------------- predictions


@dataclass
class Predictions:
    """What `infer_adaptive` returns: `values` (one label per row), optional `probabilities`, and
    `.route` (pathway, decision, reason); `source` says where they came from. From a colony,
    `values` are its vote and `abstained` marks the rows it is unsure of (else None)."""

    values: np.ndarray
    probabilities: np.ndarray | None = None
    model: str | None = None
    source: str = ""
    route: Route | None = None
    abstained: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def __array__(self, dtype=None, copy=None):
        return np.asarray(self.values, dtype=dtype)

    def __repr__(self) -> str:
        how = f"{self.route.pathway.value}/{self.route.decision.value}" if self.route else self.source
        return f"Predictions({len(self)} values from {self.model!r} via {how})"

    def _repr_html_(self) -> str | None:
        return html_of("predictions", self)  # the face draws it (openmind.jupyter.plots)


def _as_data(data: Any) -> tuple[np.ndarray, str]:
    """(array, data_kind): text (a list/array of strings) or tabular (2-D numbers)."""
    if isinstance(data, str):
        raise BadInput("data is a single string; pass a list of texts, e.g. ['good', 'bad']")
    from openmind.pathways.ternary.checks import as_rows

    arr = as_rows(data, "data")
    if arr.dtype.kind in ("U", "S") or (arr.dtype == object and arr.size and all(isinstance(x, str) for x in arr.reshape(-1))):
        if arr.ndim != 1:
            raise BadInput(f"text data must be a flat list of strings, got shape {arr.shape}")
        return arr.astype(str), "text"
    if arr.dtype.kind not in "biuf":
        raise BadInput(f"data must be numbers (rows x features) or a list of texts; got dtype {arr.dtype}")
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise BadInput(f"data must be a non-empty 2-D array (rows x features), got shape {arr.shape}")
    from openmind.pathways.ternary.checks import check_finite

    check_finite(arr, "data")  # NaN, infinity, or beyond float32 where the model computes
    return arr, "tabular"


def infer_adaptive(model: Any, data: Any, strategy: str | None = None, *,
                   labels: dict[int, str] | None = None, resources: Resources | None = None,
                   **policy: Any) -> Predictions:
    """Predict with whatever this machine has: cached predictions, the model in local memory (GPU
    if present, else the packed CPU path), an Open Inference Protocol endpoint, or zero-shot text
    classification by the language model. `strategy`: adaptive | local | cloud | cached; left
    out, the cell's scope (`with openmind.policy(...)`, `%%openmind infer --strategy ...`) decides,
    else adaptive: an argument the caller passed > the scope > the default.

    `model` is a model name (str) or a model object; `labels` gives the meaning of the trits
    -1/0/+1 for zero-shot text classification (default: negative/neutral/positive).
    """
    pol, rest = split_policy({**policy, "strategy": strategy})
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for infer_adaptive; "
                       "valid: strategy, labels, resources and the policy options "
                       "(fallback, budget, fresh, prefer, timeout)")
    X, kind = _as_data(data)
    if isinstance(model, str):
        name, local = check_name(model, "model name"), None
    else:
        local = _wrap(model)
        name = local.name
    res = resources if resources is not None else probe()
    if local is None and res.memory.available:
        local = load_local_model(name)
    if local is not None and kind == "tabular":
        local.check(X)

    worth = _worth_caching(local, int(X.shape[0]))
    # predictions are cached by the model's content + the data: a retrained model never gets
    # another version's predictions
    content = (local.content or local.key) if local is not None else None
    cache_key = (key_for("predictions", content, fingerprint(X))
                 if content and worth else None)
    stand_in = (memory.partial_reason(local.meta) or (getattr(local.model, "info", None) or {}).get("partial")
                if local is not None else None)
    cached = get("predictions", cache_key) if cache_key and res.memory.available and not pol.fresh else None
    remote = False
    if local is None and res.infer.available:
        from openmind.pathways.cloud.oip import OIPClient

        try:
            remote = OIPClient(timeout=pol.timeout or 5.0, retries=0).model_ready(name)
        except Exception:  # a dead endpoint is a routing fact, not an error
            remote = False
    intent = Intent.of("infer", name=name, rows=int(X.shape[0]),
                       shape=tuple(int(d) for d in X.shape), data_kind=kind,
                       exact=cached is not None, local_model=local is not None, remote_model=remote,
                       shed=local.meta.get("shed") if local is not None else None,
                       work=local.work(int(X.shape[0])) if local is not None else None)
    plan = route(intent, resources=res, policy=pol)

    job = _Inference(name, X, kind, local, cached, cache_key, stand_in, res.memory.available,
                     pol.timeout, labels)
    handlers = {
        (Pathway.MUSCLE_MEMORY, Decision.CACHED): job.from_cache,
        (Pathway.MUSCLE_MEMORY, Decision.HARDCODE): job.local_model,
        (Pathway.CLOUD_INFERENCE, Decision.HARDCODE): job.cloud,
        (Pathway.CLOUD_INFERENCE, Decision.MODEL): job.zero_shot,
    }
    result, _route = execute(plan, handlers, resources=res, summarize=_summary, defer_journal=True)
    return result


@dataclass
class _Inference:
    """The handlers of one infer_adaptive call, sharing its data and what memory holds; each takes
    the route's candidate and returns Predictions (in a `Served` when they stand in)."""

    name: str
    X: np.ndarray
    kind: str
    local: LocalModel | None
    cached: Any
    cache_key: str | None
    stand_in: str | None
    memory: bool
    timeout: float | None
    labels: dict[int, str] | None

    def _served(self, out: Predictions) -> Predictions | Served:
        return Served(out, degraded=f"the model is {self.stand_in}") if self.stand_in else out

    def from_cache(self, cand: Candidate) -> Predictions | Served:
        if self.cached is None:
            raise PathwayUnavailable("cached predictions vanished")
        arrays, _entry = self.cached
        out = Predictions(arrays["values"], arrays.get("probabilities"), self.name,
                          "muscle memory", abstained=arrays.get("abstained"))
        if out.probabilities is not None:  # answered from memory, the unsure rows still wait
            _queue_unsure(self.local, self.name, self.X, out.probabilities, out.abstained)
        return self._served(out)

    def local_model(self, cand: Candidate) -> Predictions | Served:
        local, name, X = self.local, self.name, self.X
        if local is None:
            raise PathwayUnavailable(f"'{name}' could not be loaded from local memory")
        if self.kind != "tabular":
            raise PathwayUnavailable(f"'{name}' takes numbers, the data is text")
        values, proba, used, unsure = local.answer(X, cand.params.get("device", "cpu"))
        _queue_unsure(local, name, X, proba, unsure)
        note = local.meta.pop("_cuda_fallback", None)
        src = f"local {used}" + (f" ({note})" if note else "")
        if self.cache_key and self.memory:
            kept = {"values": np.asarray(values), "probabilities": proba}
            if unsure is not None:
                kept["abstained"] = unsure
            put("predictions", name, self.cache_key, kept,
                {"model_key": local.key, "rows": int(X.shape[0])})
        return self._served(Predictions(np.asarray(values), proba, name, src, abstained=unsure))

    def cloud(self, cand: Candidate) -> Predictions:
        from openmind.pathways.cloud.oip import OIPClient

        client = OIPClient(timeout=self.timeout or 10.0)
        out = client.infer(self.name, self.X if self.kind == "tabular" else self.X.astype(object))
        values = out.get("label")
        if values is None:
            if len(out) != 1:
                raise PathwayUnavailable(f"the endpoint answered outputs {sorted(out)}, none named 'label'")
            values = next(iter(out.values()))
        return Predictions(values, out.get("probabilities"), self.name,
                           f"cloud {public_url(client.url)}", abstained=out.get("abstained"))

    def zero_shot(self, cand: Candidate) -> Predictions:
        from openmind.intents.ask import zero_shot

        trits = zero_shot([str(t) for t in self.X.tolist()], self.labels or SENTIMENT)
        return Predictions(np.asarray(trits, dtype=np.int8), None, self.name,
                           "language model (zero-shot)")


def _summary(p: Predictions) -> dict[str, Any]:
    values = np.asarray(p.values)
    return {"rows": int(len(values)), "source": p.source,
            "classes_seen": int(len(np.unique(values))) if values.size else 0}
