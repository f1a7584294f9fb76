"""What a cell asked for: fallback, strategy, budget, freshness, preference, source, timeout.

A `%%openmind` cell sets a policy for its body through a context variable; plain Python does the
same with `with openmind.policy(...)`. Explicit keyword arguments always win over the scope.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from openmind.errors import BadInput
from openmind.units import parse_duration
from openmind.vocab import Pathway

FALLBACKS = ("auto", "cached", "none")
STRATEGIES = ("adaptive", "local", "cloud", "cached")
SOURCES = ("auto", "device", "simulate")


@dataclass(frozen=True)
class Policy:
    """How a cell wants to be routed.

    fallback: auto = every candidate in order; cached = the first, then only muscle memory;
              none = the first candidate only (its failure raises).
    strategy: adaptive = the routing rules; local = never the cloud; cloud = cloud first;
              cached = muscle memory only.
    budget:   seconds of compute the cell may spend (None = no limit).
    fresh:    skip exact muscle-memory hits and compute anew.
    prefer:   pathways to move to the front of the plan when they are candidates.
    source:   sense only: auto, device (hardware only) or simulate (never the device).
    timeout:  seconds a device or network candidate may take before it counts as failed.
    strict:   refuse a degraded result (a cached model of other data, a partial run, a synthetic
              signal): the call raises instead (as fallback="none" does).
    workers:  train: processes for a data-parallel full train (None = one, or one per GPU when
              the probe sees several).
    """

    fallback: str = "auto"
    strategy: str = "adaptive"
    budget: float | None = None
    fresh: bool = False
    prefer: tuple[Pathway, ...] = ()
    source: str = "auto"
    timeout: float | None = None
    strict: bool = False
    workers: int | None = None

    def __post_init__(self) -> None:
        _choice("fallback", self.fallback, FALLBACKS)
        _choice("strategy", self.strategy, STRATEGIES)
        _choice("source", self.source, SOURCES)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # all plain values: no deep copy
        d["prefer"] = [p.value for p in self.prefer]
        return d

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


def _choice(what: str, value: str, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise BadInput(f"unknown {what} {value!r}; valid: {', '.join(valid)}")


def _coerce(key: str, value: Any) -> Any:
    if key in ("fallback", "strategy", "source"):
        return str(value).strip().lower()
    if key in ("budget", "timeout"):
        return parse_duration(value, key)
    if key in ("fresh", "strict"):
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off", ""):
                return False
            raise BadInput(f"{key} must be true or false, got {value!r}")
        return bool(value)
    if key == "prefer":
        if value is None:
            return ()
        items = value.replace(",", " ").split() if isinstance(value, str) else list(value)
        return tuple(Pathway.parse(v, "pathway in prefer") for v in items)
    if key == "workers":
        try:
            n = int(value)
        except (TypeError, ValueError):
            n = 0
        if n < 1 or isinstance(value, bool) or (isinstance(value, float) and value != n):
            raise BadInput(f"workers must be a whole number of processes >= 1, got {value!r}")
        return n
    raise AssertionError(key)


_scope: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "openmind_policy", default=None
)


def scoped() -> Mapping[str, Any]:
    """The policy keywords set by the enclosing `policy(...)` scope or `%%openmind` cell."""
    return _scope.get() or {}


def make_policy(**kwargs: Any) -> Policy:
    """Build a Policy from the active scope plus explicit keywords; unknown keys raise clearly."""
    unknown = sorted(set(kwargs) - set(Policy.names()))
    if unknown:
        raise BadInput(
            f"unknown policy option {', '.join(map(repr, unknown))}; valid: {', '.join(Policy.names())}"
        )
    merged = {**scoped(), **{k: v for k, v in kwargs.items() if v is not None}}
    return Policy(**{k: _coerce(k, v) for k, v in merged.items()})


def split_policy(kwargs: Mapping[str, Any]) -> tuple[Policy, dict[str, Any]]:
    """Separate policy keywords from an API's own options (e.g. train config)."""
    names = set(Policy.names())
    pol = {k: v for k, v in kwargs.items() if k in names}
    rest = {k: v for k, v in kwargs.items() if k not in names}
    return make_policy(**pol), rest


@contextlib.contextmanager
def policy(**kwargs: Any) -> Iterator[Policy]:
    """Run a block with a policy in force: `with openmind.policy(fallback="cached"): ...`.

    Validated on entry, so a bad option fails before any work is done.
    """
    active = make_policy(**kwargs)
    token = _scope.set({**scoped(), **{k: v for k, v in kwargs.items() if v is not None}})
    try:
        yield active
    finally:
        _scope.reset(token)


def with_overrides(base: Policy, **changes: Any) -> Policy:
    return replace(base, **{k: _coerce(k, v) for k, v in changes.items()})
