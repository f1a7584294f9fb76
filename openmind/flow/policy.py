"""What a cell asked for: one definition of every policy option, and the scope that sets them.

`OPTIONS` is the single source: each `Option` names its type, default, the words it accepts and
its help text. `Policy`'s fields, the coercion of keywords and strings, the `%%openmind` magic's
arguments and config traits, `%openmind?`, the CLI's policy options and the card's defaults are
all read from it.

A `%%openmind` cell sets a policy for its body through a context variable; plain Python does the
same with `with openmind.policy(...)`. Explicit keyword arguments always win over the scope.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields, make_dataclass, replace
from typing import Any

from openmind.errors import BadInput
from openmind.units import parse_duration
from openmind.vocab import Pathway


def _word(name: str, value: Any) -> str:
    return str(value).strip().lower()


def _duration(name: str, value: Any) -> float | None:
    return parse_duration(value, name)


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, str):
        low = value.strip().lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off", ""):
            return False
        raise BadInput(f"{name} must be true or false, got {value!r}")
    try:
        if value is None or value in (0, 1):  # True, False, 0, 1 (numpy's too)
            return bool(value)
    except (TypeError, ValueError):  # an array: neither
        pass
    raise BadInput(f"{name} must be true or false, got {value!r}")


def _pathways(name: str, value: Any) -> tuple[Pathway, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, Pathway)):
        items = value.replace(",", " ").split() if isinstance(value, str) else [value]
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise BadInput(f"{name} takes pathway names (e.g. 'full_train,fine_tune'), got {value!r}")
    return tuple(Pathway.parse(v, f"pathway in {name}") for v in items)


def _count(name: str, value: Any) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n < 1 or isinstance(value, bool) or (isinstance(value, float) and value != n):
        raise BadInput(f"{name} must be a whole number of processes >= 1, got {value!r}")
    return n


# kind -> how a keyword or a typed string becomes the field's value
_PARSERS: dict[str, Callable[[str, Any], Any]] = {
    "choice": _word, "duration": _duration, "flag": _flag, "pathways": _pathways, "count": _count}


@dataclass(frozen=True)
class Option:
    """One policy option: its name, type, default, accepted words and help, read by every face.

    kind: choice (one of `words`), duration ("30s", "5m", seconds), flag (true/false),
          pathways (comma- or space-separated pathway names), count (a whole number >= 1).
    """

    name: str
    kind: str
    type: str
    default: Any
    help: str
    words: tuple[str, ...] = ()
    metavar: str | None = None

    def coerce(self, value: Any) -> Any:
        """A keyword's or a typed string's value as the field holds it (BadInput if it cannot be)."""
        return _PARSERS[self.kind](self.name, value)

    def check(self, value: Any) -> None:
        """Refuse a word the option does not accept (choices only; the others are coerced)."""
        if self.words and value not in self.words:
            raise BadInput(f"unknown {self.name} {value!r}; valid: {', '.join(self.words)}")

    def argument(self, default: Any = None) -> tuple[tuple[str, ...], dict[str, Any]]:
        """(flags, keywords) for argparse's `add_argument` (the magic's and the CLI's parsers).

        `default` None leaves the option unset, so the scope or the policy default applies."""
        kw: dict[str, Any] = {"help": self.help, "default": default}
        if self.kind == "choice":
            kw["choices"] = self.words
        elif self.kind == "flag":
            kw["action"] = "store_true"
        elif self.kind == "count":
            kw["type"] = int
        if self.metavar:
            kw["metavar"] = self.metavar
        dashed = self.name.replace("_", "-")  # --max-age as well as --max_age
        return (f"--{self.name}",) + ((f"--{dashed}",) if dashed != self.name else ()), \
            {**kw, "dest": self.name}


OPTIONS: tuple[Option, ...] = (
    Option("fallback", "choice", "str", "auto",
           "auto: every pathway in order; cached: the first, then only muscle memory; "
           "none: every pathway in order, refusing a degraded result (as strict does)",
           words=("auto", "cached", "none")),
    Option("strategy", "choice", "str", "adaptive",
           "adaptive (the routing rules), local (never the cloud), cloud (cloud first), "
           "cached (muscle memory only)", words=("adaptive", "local", "cloud", "cached")),
    Option("budget", "duration", "float | None", None,
           "compute the cell may spend, e.g. 30s, 5m (unset: no limit)", metavar="DURATION"),
    Option("fresh", "flag", "bool", False, "skip exact muscle-memory hits and compute anew"),
    Option("prefer", "pathways", "tuple[Pathway, ...]", (),
           "pathways to try first when they are candidates: " + ", ".join(p.value for p in Pathway),
           metavar="PATHWAY[,PATHWAY]"),
    Option("source", "choice", "str", "auto",
           "sense: auto, device (hardware only) or simulate (never the device)",
           words=("auto", "device", "simulate")),
    Option("timeout", "duration", "float | None", None,
           "how long a device or network pathway may take before it counts as failed; a "
           "device capture longer than this is cut (what it read kept, the result degraded)",
           metavar="DURATION"),
    Option("strict", "flag", "bool", False,
           "refuse a degraded result (a cached model of other data, a partial run, a synthetic "
           "signal) after trying every pathway that answers as asked; as fallback=none does"),
    Option("workers", "count", "int | None", None,
           "train: data-parallel processes (DDP; gloo on CPU, NCCL on GPUs; unset: one, or one "
           "per GPU when the probe sees several)", metavar="N"),
    Option("max_age", "duration", "float | None", None,
           "ingest: the oldest last good copy served when the source is unreachable, e.g. 1h, 7d "
           "(unset: any age)", metavar="DURATION"),
)
OPTION: Mapping[str, Option] = {o.name: o for o in OPTIONS}


class _PolicyMethods:
    """What every Policy does; its fields come from OPTIONS (see `Policy` below)."""

    def __post_init__(self) -> None:
        for opt in OPTIONS:
            opt.check(getattr(self, opt.name))

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}  # all plain values: no deep copy
        d["prefer"] = [p.value for p in self.prefer]  # type: ignore[attr-defined]
        return d

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(o.name for o in OPTIONS)


Policy = make_dataclass(
    "Policy", [(o.name, o.type, field(default=o.default)) for o in OPTIONS],
    bases=(_PolicyMethods,), frozen=True)
Policy.__module__ = __name__  # pickles (a DDP worker's policy) find it here
Policy.__doc__ = "How a cell wants to be routed (one field per policy option).\n\n" + "\n".join(
    f"{o.name}: {o.help}" for o in OPTIONS)


def defaults() -> dict[str, Any]:
    """Every option's default as the journal stores a policy (`Policy.to_dict()`)."""
    return Policy().to_dict()


def add_arguments(parser: Any, names: Iterable[str], **defaults: Any) -> None:
    """Add the named policy options to an argparse parser (a CLI command that takes them);
    `defaults` overrides an option's command-line default (unset otherwise)."""
    for name in names:
        flags, kw = OPTION[name].argument(defaults.get(name))
        parser.add_argument(*flags, **kw)


def _coerce(key: str, value: Any) -> Any:
    return OPTION[key].coerce(value)


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
