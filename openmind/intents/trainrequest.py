"""A training request and its parts: the caller's (data, labels) checked into rows and labels
(`prepare`, shared by train and federate), hidden widths narrowed so the packed model fits a
device (`fit_to_device`), the request's key, and what muscle memory holds for it (`lookup`)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.policy import Policy
from openmind.flow.resources import Resources
from openmind.memory.blobs import Entry, MemoryWarning, entries, get, key_for, load, versions
from openmind.memory.health import healthy_hits
from openmind.pathways.ternary.checks import as_numeric, as_rows, check_finite
from openmind.pathways.ternary.packed import U16_MAX, TernaryModel
from openmind.vocab import check_name


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


def fit_to_device(cfg: dict[str, Any], X: np.ndarray, y: np.ndarray, fit_device: Any,
                  resources: Resources | None, explicit: bool) -> tuple[dict[str, Any], str]:
    """cfg with `hidden` narrowed so the packed model fits the device: the limits the probed
    device reported, a dict given as fit_device, else the firmware's defaults. Hidden widths the
    caller chose are kept when they fit and refused with what would fit when they do not."""
    from openmind.pathways.device import DEFAULT_LIMITS
    from openmind.pathways.ternary.estimate import fit_hidden, fits
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


@dataclass
class TrainRequest:
    """One train_or_load call's request, built once and read by every handler: the data, the
    resolved config (`explicit`: the options the caller gave, which a plan never overrides), the
    request key and data fingerprint, the policy, and whether to show a progress bar."""

    name: str
    X: np.ndarray
    y: np.ndarray
    kind: str
    cfg: dict[str, Any]
    explicit: set[str]
    key: str
    fp: str
    policy: Policy
    progress: bool = True


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


# --------------------------------------------------------------------------- muscle memory

@dataclass
class Version:
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


def usable(entry: Entry) -> bool:
    if entry.meta.get("format") == "openmind-ternary":
        return True
    warnings.warn(f"openmind: muscle memory entry model '{entry.name}' ({entry.key[:12]}) holds no "
                  f"openmind ternary model (meta format {entry.meta.get('format')!r}); treating it "
                  f"as a miss", MemoryWarning, stacklevel=4)
    return False


def lookup(name: str, request: str, budget: float | None
           ) -> tuple[Version | None, Version | None, Version | None]:
    """(exact, partial, ancestor) among the stored versions of `name`, newest first: the version
    answering this request, a run of this request cut short (to resume), the newest readable one."""
    exact = partial = ancestor = None
    for entry in versions("model", name):
        if not usable(entry):
            continue
        same = entry.meta.get("request") == request
        if ancestor is not None and not same:
            continue  # only this request's versions are still of interest
        arrays = load(entry)
        if arrays is None:
            continue
        found = Version(entry, arrays)
        ancestor = ancestor or found
        if answers(entry.meta, request, budget):
            exact = exact or found
            break
        if same and partial is None and not entry.meta.get("complete"):
            partial = found
    return exact, partial, ancestor


def healthy(name: str, exact: Version | None, ancestor: Version | None
             ) -> tuple[Version | None, Version | None, str | None]:
    """`memory.health.healthy_hits` (the validator's shed versions taken out) on versions."""
    def hit(v: Version | None) -> Any:
        return None if v is None else (v.arrays, v.entry)

    def version(h: Any) -> Version | None:
        return None if h is None else Version(h[1], h[0])

    ex, an, shed = healthy_hits(name, hit(exact), hit(ancestor))
    return version(ex), version(an), shed
