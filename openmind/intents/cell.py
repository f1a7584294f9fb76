"""The cell pathway: the user's own code (a `%%openmind` cell with no openmind call in it, or a
function under `@openmind.remember`) routed as one unit, the same five steps as every intent.

validate (parse the code) -> key (cellkey: normalised code, the values it reads, the user's
functions it reaches, the options, openmind's version; plus what earlier runs of the same code
read at run time: files, module attributes, environment variables, random state) -> route
(`router.plan_cell`) -> execute (restore an exact hit: names, values changed in place, files,
random state, and replay its outputs; else run the body, watched, with `openmind.device()` and
`openmind.budget()` set; with fallback=cached, an earlier run's outputs if it raises) -> return.

The principle: a hit leaves the namespace, the printed output and the files exactly as a re-run
would. What openmind cannot follow makes the cell uncacheable, and the route says why.

`run_cell` needs no shell: the magic passes its own `compile` so the body runs through IPython's
transformations, with top-level `await`.
"""

from __future__ import annotations

import ast
import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openmind.config import VERSION
from openmind.errors import AllPathwaysFailed, BadInput, PathwayUnavailable
from openmind.flow import journal as _journal
from openmind.flow.allowance import allowing
from openmind.flow.executor import Served, attach_route, execute
from openmind.flow.policy import Policy, make_policy, split_policy
from openmind.flow.resources import Resources
from openmind.flow.router import EARLIER_RUN, Candidate, Intent, plan_cell
from openmind.intents import celleffects as fx
from openmind.intents import cellstate
from openmind.intents.cellio import Compile, drive, parse, recording, replay, run_tree
from openmind.intents.cellkey import (
    CellKey,
    Fingerprinter,
    Uncacheable,
    definitions,
    dynamic_reads,
    first_line,
    namespace_inputs,
    normalised,
    reads_and_binds,
)
from openmind.memory import cells
from openmind.memory.blobs import Entry, key_for, versions
from openmind.vocab import Decision, IntentKind, Pathway, Route

VALUE = fx.VALUE  # the last expression's value, kept beside the names a cell binds
VALUE_OF = fx.VALUE_OF  # ... or the name whose value it is (`clf` as the last line: kept once)
# The cell's options are part of its key, except those that only steer routing (which pathway,
# in what order, run again): the body cannot see them, and `--strategy cached` must find the entry.
UNKEYED_OPTIONS = ("fresh", "fallback", "strategy", "prefer")
MAX_TRACES = 8  # distinct run-time read sets of one code checked at lookup

# Bytes a second that restoring large kept outputs took in this process (None: not measured yet);
# the router compares the expected restore time with the cell's own run time.
_restore_rate: float | None = None
_MEASURE_FROM = 8_000_000  # bytes: smaller entries are dominated by fixed costs


def _measured_restore(size: int, seconds: float) -> None:
    global _restore_rate
    if size >= _MEASURE_FROM and seconds > 0:
        rate = size / seconds
        _restore_rate = rate if _restore_rate is None else 0.5 * (_restore_rate + rate)


@dataclass
class CellResult:
    """What a routed cell (or remembered call) gave: its value, the names it bound, its outputs."""

    value: Any = None
    names: list[str] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    cached: bool = False
    degraded: str | None = None
    error: str | None = None  # the body's error when an earlier run's outputs came back
    key: str | None = None
    uncacheable: str | None = None  # why this cell cannot be restored, in plain words
    unkept: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    route: Route | None = None
    age: float | None = None  # a hit of a run that read the network: how old it is, seconds
    made: float | None = None  # restored: when the kept run was made, and how long it ran then
    ran_seconds: float | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": ", ".join(self.names) or "-", "seconds": round(self.seconds, 4)}
        if self.cached:
            out.update(made_at=self.made, original_seconds=self.ran_seconds)
        for k in ("degraded", "error", "uncacheable"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        if self.unkept:
            out["not kept"] = "; ".join(f"{k}: {v}" for k, v in self.unkept.items())
        if self.age is not None:
            out["age"] = fx.age_text(self.age)
        if self.key:
            out["key"] = self.key[:12]
        return out


# --------------------------------------------------------------------------- the machinery


@dataclass
class _Unit:
    """One piece of the user's code to route: how to key it, run it and restore it."""

    code_id: str  # the code alone: entries of the same code on other inputs share it
    label: str  # the first line, for `openmind memory ls --kind cell`
    key: CellKey | None  # None: uncacheable (the reason beside it)
    uncacheable: str | None
    run: Callable[[bool], fx.Ran]  # track: watch the run and gather what to keep
    restore: Callable[[cells.Kept], tuple[list[str], Any]]  # -> (names restored, value)
    define: Callable[[], None]  # before unpickling: the cell's imports, functions and classes
    max_age: float | None = None  # seconds: older entries of runs that read the network miss
    exact: Entry | None = None  # the entry that matches now (serve's lookup)
    stale: str | None = None  # why a matching entry was not restored (max_age)


class _CellJob:
    """The handlers of one routed unit."""

    def __init__(self, unit: _Unit, intent: IntentKind, keep: bool) -> None:
        self.unit, self.intent, self.keep = unit, intent, keep
        self.error: BaseException | None = None
        self.interrupted = False

    def cached(self, cand: Candidate) -> CellResult | Served:
        t0 = time.perf_counter()
        if cand.params.get("ancestor") and self.interrupted:
            raise KeyboardInterrupt  # Ctrl-C always stops
        self.unit.define()  # a kept instance of a class the cell defines unpickles as that class
        if cand.params.get("ancestor"):
            kept = cells.last_good(self.unit.code_id)
            if kept is None:
                raise PathwayUnavailable("no readable earlier run of this code")
        else:
            kept = cells.lookup(self.unit.exact.key) if self.unit.exact is not None else None
            if kept is None:
                self.unit.exact = None  # the run that follows keeps a readable entry again
                raise PathwayUnavailable("the kept outputs could not be restored (see the warning)")
        names, value = self.unit.restore(kept)
        error = None if self.error is None else f"{type(self.error).__name__}: {self.error}"
        replay(kept.outputs, {"made": kept.entry.created, "error": error})
        if not cand.params.get("ancestor"):
            _measured_restore(kept.entry.size, time.perf_counter() - t0)
        degraded = cand.params.get("degraded")
        result = CellResult(value, names, kept.outputs, True, degraded, error, kept.entry.key,
                            None, kept.unkept, time.perf_counter() - t0, made=kept.entry.created,
                            ran_seconds=kept.entry.meta.get("seconds"))
        # the executor puts the reason on the route and in the journal row it writes: where the
        # memory came from ("from the team's memory, published by <key id> at <time>"), and the
        # age of a run that read the network
        notes = [kept.entry.origin] if kept.entry.origin else []
        if kept.entry.meta.get("external"):
            result.age = max(0.0, time.time() - float(kept.entry.meta["external"]))
            notes.append(f"it read the network when it ran: the outputs are "
                         f"{fx.age_text(result.age)}")
        note = "; ".join(notes) or None
        return Served(result, degraded=degraded, note=note) if degraded or note else result

    def run(self, cand: Candidate) -> CellResult | Served:
        calls = _journal.appended()
        t0 = time.perf_counter()
        # an exact entry exists when the router chose to run again (quicker than restoring):
        # nothing is watched, fingerprinted again or stored, so it costs what the plain cell does
        track = self.unit.key is not None and self.keep and self.unit.exact is None
        try:
            with allowing(cand.params.get("device") or "cpu", cand.params.get("budget")), \
                    recording() as outputs:
                ran = self.unit.run(track)
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        except Exception as exc:
            self.error = exc
            raise
        seconds = time.perf_counter() - t0
        result = CellResult(ran.value, ran.names, outputs, False, None, None, None,
                            self.unit.uncacheable, {}, seconds)
        if track and _journal.appended() == calls:
            self._keep(ran, outputs, result)
        # found while it ran (the plan already says why when it was known before)
        found = result.uncacheable and result.uncacheable != self.unit.uncacheable
        note = f"not cacheable: {result.uncacheable}" if found else self.unit.stale
        return Served(result, pathway=Pathway.FULL_TRAIN, note=note)

    def _keep(self, ran: fx.Ran, outputs: list[dict[str, Any]], result: CellResult) -> None:
        if ran.why:
            result.uncacheable = ran.why
            return
        key = self.unit.key.traced(ran.trace)
        meta = {"first_line": self.unit.label, "intent": self.intent.value,
                "seconds": round(result.seconds, 4), "version": VERSION, "trace": key.trace_json()}
        if ran.external:
            meta.update(external=time.time(), network=ran.external[:5])
        entry, unkept = cells.keep(self.unit.code_id, key.digest(), ran.values, outputs, meta)
        if unkept:
            result.uncacheable = "; ".join(f"{n!r} cannot be kept: {why}" for n, why in unkept.items())
        elif entry is not None:
            result.key = entry.key


def _match(unit: _Unit) -> tuple[Entry | None, bool]:
    """(the entry whose run read exactly what is there now, or None; whether this code ran
    before). Each distinct set of run-time reads among the code's entries is checked."""
    rows = versions(cells.KIND, unit.code_id)
    by_key = {e.key: e for e in rows}
    seen: set[tuple[tuple[str, ...], ...]] = set()
    fp = Fingerprinter()
    now = time.time()
    for row in rows:
        deps = tuple(tuple(dep) for dep, _ in row.meta.get("trace") or ())
        if deps in seen:
            continue
        seen.add(deps)
        if len(seen) > MAX_TRACES:
            break
        from openmind.intents.cellwatch import current

        entry = by_key.get(unit.key.traced({d: current(d, fp) for d in deps}).digest())
        if entry is None:
            continue
        born = entry.meta.get("external")
        if born and unit.max_age is not None and now - float(born) > unit.max_age:
            unit.stale = (f"its kept outputs read the network and are {fx.age_text(now - float(born))}, "
                          f"older than max_age ({unit.max_age:g} s)")
            continue
        return entry, True
    return None, bool(rows)


def serve(unit: _Unit, intent: IntentKind, pol: Policy, resources: Resources | None) -> CellResult:
    """Route and execute one unit; raise the body's own error when nothing else may answer."""
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    memory = resources.memory.available
    ran_before = False
    if memory and unit.key is not None:
        unit.exact, ran_before = _match(unit)
    elif memory:
        ran_before = bool(versions(cells.KIND, unit.code_id))
    exact = unit.exact
    earlier = memory and pol.fallback == "cached" and ran_before
    it = Intent.of(intent, name=unit.label, exact=exact is not None, ancestor=earlier,
                   uncacheable=unit.uncacheable, kept_bytes=exact.size if exact else None,
                   est_seconds=exact.meta.get("seconds") if exact else None,
                   restore_s=exact.size / _restore_rate if exact and _restore_rate else None)
    plan = plan_cell(it, resources, pol)
    job = _CellJob(unit, intent, keep=memory)
    handlers = {(Pathway.MUSCLE_MEMORY, Decision.CACHED): job.cached}
    for cand in plan:
        if cand.decision is Decision.HARDCODE:
            handlers[(cand.pathway, cand.decision)] = job.run
    try:
        result, route = execute(plan, handlers, resources=resources, summarize=CellResult.summary)
    except AllPathwaysFailed:
        if job.error is not None:
            raise job.error from None
        raise
    result.route = route
    return result


def _context(pol: Policy) -> str:
    options = {k: v for k, v in pol.to_dict().items() if k not in UNKEYED_OPTIONS}
    return key_for(options, VERSION, sys.version_info[:2])


def _dynamic_reason(fp: Fingerprinter) -> str | None:
    if not fp.dynamic:
        return None
    return (f"{fp.dynamic[0]} reads names through eval/exec/globals(), which openmind cannot "
            f"follow (declare the inputs to cache it)")


# --------------------------------------------------------------------------- public


def run_cell(source: str, namespace: dict[str, Any], intent: str | IntentKind = "train", *,
             resources: Resources | None = None, compiler: Compile | None = None,
             filename: str = "<cell>", label: str | None = None, inputs: list[str] | None = None,
             max_age: float | None = None, **policy: Any) -> CellResult:
    """Run `source` in `namespace` as a routed cell: restore it from muscle memory when the same
    code ran on the same inputs, else run it (and keep what it bound, changed and showed).

    policy: fallback ("cached": an earlier run's outputs if the body raises), strategy, budget,
    fresh. `compiler(tree, filename, mode)` lets a shell compile the body its own way; `label`
    names the cell in memory listings (default: its first line). `inputs`: the names a cell that
    uses eval/exec/globals() reads (then it can be cached). `max_age`: seconds after which the
    kept outputs of a run that read the network are not restored.
    The result's `.route` says what was decided and why; the body's own errors are raised as is.
    """
    kind = IntentKind.parse(intent, "intent")
    if not isinstance(namespace, dict):
        raise BadInput(f"namespace must be a dict (e.g. globals()), got {type(namespace).__name__}")
    if inputs is not None and (isinstance(inputs, str) or not all(isinstance(n, str) for n in inputs)):
        raise BadInput("inputs must be a list of the names the cell reads, e.g. ['df', 'model']")
    pol = make_policy(**policy)
    tree = parse(source)
    reads, binds = reads_and_binds(tree)
    why, extra = dynamic_reads(tree)
    if inputs is not None:
        why, extra = None, extra + list(inputs)
    reads += [n for n in extra if n not in reads]
    fp = Fingerprinter()
    found: dict[str, str] = {}
    try:
        found = namespace_inputs(reads, namespace, fp)
    except Uncacheable as exc:
        why = why or str(exc)
    why = why or (None if inputs is not None else _dynamic_reason(fp))
    named = cellstate.named_files(_strings(tree, [namespace[n] for n in reads if n in namespace]))
    code_id = normalised(tree)
    key = None if why else CellKey(code_id, tuple(sorted(found.items())), _context(pol))
    silent = source.rstrip().endswith(";")
    before = fx.Before(fp, found, {}, named)

    def run(track: bool) -> fx.Ran:
        body = functools.partial(run_tree, tree, namespace, filename, compiler, silent=silent)
        if not track:
            value = body()
            return fx.Ran({}, value, [n for n in binds if n in namespace])
        before.ids = {k: id(v) for k, v in namespace.items()}  # only for a run that keeps
        before.shapes = {n: cellstate.identities(namespace[n]) for n in found if n in namespace}
        value, watch, rng = fx.watched(body)
        defined = set(reads_and_binds(definitions(tree))[1])
        return fx.settled(lambda: fx.after_cell(namespace, before, binds, defined, value, watch, rng), value)

    def define() -> None:
        defs = definitions(tree)
        if defs.body:
            exec((compiler or _compile)(defs, filename, "exec"), namespace)  # noqa: S102

    def restore(kept: cells.Kept) -> tuple[list[str], Any]:
        names = fx.apply(kept.values, namespace)
        if VALUE_OF in kept.values:
            return names, namespace.get(kept.values[VALUE_OF])
        return names, kept.values.get(VALUE)

    unit = _Unit(code_id, label or first_line(source), key, why, run, restore, define, max_age)
    return serve(unit, kind, pol, resources)


def _strings(tree: ast.AST | None, values: list[Any]) -> list[str]:
    """The strings a cell's code spells and the str or path values it reads: the names it may
    give a file reader."""
    out = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)] \
        if tree is not None else []
    for value in values:
        if isinstance(value, (str, os.PathLike)):
            out.append(os.fspath(value) if not isinstance(value, bytes) else "")
    return list(dict.fromkeys(s for s in out if isinstance(s, str)))


def _compile(tree: ast.AST, filename: str, mode: str) -> Any:
    return compile(tree, filename, mode, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def remember(fn: Callable[..., Any] | None = None, *, intent: str = "train",
             max_age: float | None = None, **policy: Any) -> Any:
    """`@openmind.remember`: a function's result kept in muscle memory, keyed on its code (and
    the user's functions it calls, followed), its arguments' contents, what it read while it ran
    (files, module attributes, environment, random state) and openmind's version.

    `@openmind.remember(fallback="cached")` returns the last result of the same code on other
    arguments if a call raises (marked degraded). The wrapper's `last_route` says what happened.
    """
    kind = IntentKind.parse(intent, "intent")
    pol_kwargs, rest = split_policy(policy)
    del pol_kwargs
    if rest:
        raise BadInput(f"unknown remember option {', '.join(map(repr, rest))}")

    def wrap(func: Callable[..., Any]) -> Callable[..., Any]:
        if not callable(func):
            raise BadInput(f"remember decorates a function, got {type(func).__name__}")
        label = f"@remember {getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '?')}"

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            unit = _remembered(func, args, kwargs, make_policy(**policy), label, max_age)
            result = serve(unit, kind, make_policy(**policy), None)
            call.last_route = result.route
            attach_route(result.value, result.route)
            return result.value

        call.last_route = None
        return call

    return wrap(fn) if fn is not None else wrap


def _remembered(func: Callable[..., Any], args: tuple, kwargs: dict[str, Any], pol: Policy,
                label: str, max_age: float | None) -> _Unit:
    """One call of a remembered function as a unit: keyed, watched, restored."""
    fp = Fingerprinter()
    code_id = fp.code(func, getattr(func, "__qualname__", "the function"))
    why = None
    inputs: dict[str, str] = {}
    try:
        inputs = {"args": fp.of(list(args), "the arguments"),
                  "kwargs": fp.of(dict(kwargs), "the keyword arguments")}
    except Uncacheable as exc:
        why = str(exc)
    why = why or _dynamic_reason(fp)
    key = None if why else CellKey(code_id, tuple(sorted(inputs.items())), _context(pol))
    named = cellstate.named_files(_strings(None, [*args, *kwargs.values()]))

    def run(track: bool) -> fx.Ran:
        if not track:
            value = func(*args, **kwargs)
            return fx.Ran({VALUE: value}, value)
        value, watch, rng = fx.watched(lambda: func(*args, **kwargs))
        ran = fx.settled(lambda: fx.after_call(value, watch, rng, fp, named=named), value)
        ran.values[VALUE] = value
        if fx.changed(list(args), inputs["args"], "the arguments") or \
                fx.changed(dict(kwargs), inputs["kwargs"], "the keyword arguments"):
            ran.why = ran.why or "it changes its arguments in place"
        return ran

    def restore(kept: cells.Kept) -> tuple[list[str], Any]:
        fx.apply(kept.values, None)
        return [], kept.values.get(VALUE)

    return _Unit(code_id, label, key, why, run, restore, lambda: None, max_age)


__all__ = ["CellResult", "EARLIER_RUN", "drive", "recording", "remember", "replay", "run_cell",
           "run_tree"]
