"""The cell pathway: the user's own code (a `%%openmind` cell with no openmind call in it, or a
function under `@openmind.remember`) routed as one unit, the same five steps as every intent.

validate (parse the code) -> key (cellkey: normalised code, the values it reads, the user's
functions it reaches, the options, openmind's version) -> route (`router.plan_cell`) -> execute
(restore an exact hit and replay its outputs; else run the body with `openmind.device()` and
`openmind.budget()` set; with fallback=cached, an earlier run's outputs if it raises) -> return.

`run_cell` needs no shell: the magic passes its own `compile` so the body runs through IPython's
transformations, with top-level `await`.
"""

from __future__ import annotations

import ast
import asyncio
import concurrent.futures
import contextlib
import contextvars
import functools
import inspect
import sys
import time
from collections.abc import Callable, Iterator
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
from openmind.intents.cellkey import (
    SHELL_NAMES,
    Fingerprinter,
    Uncacheable,
    definitions,
    first_line,
    namespace_inputs,
    normalised,
    reads_and_binds,
)
from openmind.memory import cells
from openmind.memory.blobs import entries, key_for
from openmind.vocab import Decision, IntentKind, Pathway, Route

VALUE = "__value__"  # the last expression's value, kept beside the names a cell binds
VALUE_OF = "__value_of__"  # ... or the name whose value it is (`clf` as the last line: kept once)
# The cell's options are part of its key, except those that only steer routing (which pathway,
# in what order, run again): the body cannot see them, and `--strategy cached` must find the entry.
UNKEYED_OPTIONS = ("fresh", "fallback", "strategy", "prefer")

Compile = Callable[[ast.AST, str, str], Any]

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
    uncacheable: str | None = None
    unkept: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    route: Route | None = None

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"names": ", ".join(self.names) or "-", "seconds": round(self.seconds, 4)}
        for k in ("degraded", "error", "uncacheable"):
            if getattr(self, k):
                out[k] = getattr(self, k)
        if self.unkept:
            out["not kept"] = "; ".join(f"{k}: {v}" for k, v in self.unkept.items())
        if self.key:
            out["key"] = self.key[:12]
        return out


# --------------------------------------------------------------------------- running code


def drive(coro: Any) -> Any:
    """Run a coroutine to its end: on this thread's loop-free stack, or, when this thread is
    already inside a running event loop (a Jupyter kernel), on a fresh loop in a helper thread
    (with this context: policy, cell, device)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="openmind-await") as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()


def _compile(tree: ast.AST, filename: str, mode: str) -> Any:
    return compile(tree, filename, mode, flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def run_tree(tree: ast.Module, namespace: dict[str, Any], filename: str = "<cell>",
             compiler: Compile | None = None, *, silent: bool = False) -> Any:
    """Run a parsed cell in `namespace`; return its last expression's value (as a cell shows it:
    none after a trailing `;` when `silent`). Top-level `await` works."""
    comp = compiler or _compile
    body = list(tree.body)
    last = None
    if body and isinstance(body[-1], ast.Expr) and not silent:
        last = ast.Expression(body.pop().value)
    code = comp(ast.Module(body=body, type_ignores=[]), filename, "exec")
    done = eval(code, namespace)  # noqa: S307 - the user's own cell
    if code.co_flags & inspect.CO_COROUTINE:  # top-level await: eval gave the coroutine to run
        drive(done)
    if last is None:
        return None
    code = comp(last, filename, "eval")
    value = eval(code, namespace)  # noqa: S307
    return drive(value) if code.co_flags & inspect.CO_COROUTINE else value


def parse(source: str) -> ast.Module:
    if not isinstance(source, str):
        raise BadInput(f"source must be the cell's code as a string, got {type(source).__name__}")
    try:
        return ast.parse(source)
    except SyntaxError as exc:
        raise BadInput(f"the cell is not valid Python: {exc.msg} (line {exc.lineno}): "
                       f"{(exc.text or '').strip()}") from None


# --------------------------------------------------------------------------- outputs


class _Tee:
    """A stream that writes through and keeps a copy of what passed."""

    def __init__(self, inner: Any, name: str, outputs: list[dict[str, Any]]) -> None:
        self._inner, self._name, self._outputs = inner, name, outputs

    def write(self, text: str) -> int:
        if text:
            last = self._outputs[-1] if self._outputs else None
            if last is not None and last.get("stream") == self._name:
                last["text"] += text
            else:
                self._outputs.append({"stream": self._name, "text": text})
        return self._inner.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _shell() -> Any:
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


@contextlib.contextmanager
def recording() -> Iterator[list[dict[str, Any]]]:
    """Keep what a block prints (stdout, stderr) and displays, while it still shows live."""
    outputs: list[dict[str, Any]] = []
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Tee(sys.stdout, "stdout", outputs), _Tee(sys.stderr, "stderr", outputs)
    pub = getattr(_shell(), "display_pub", None)
    shadowed = vars(pub).get("publish") if pub is not None else None  # an enclosing recording's
    if pub is not None:
        inner = pub.publish

        def publish(data: Any, metadata: Any = None, *args: Any, **kwargs: Any) -> Any:
            outputs.append({"display": data, "metadata": metadata or {}})
            return inner(data, metadata, *args, **kwargs)

        pub.publish = publish
    try:
        yield outputs
    finally:
        sys.stdout, sys.stderr = saved
        if pub is not None:
            if shadowed is not None:
                pub.publish = shadowed
            else:
                del pub.publish


def replay(outputs: list[dict[str, Any]]) -> None:
    """Show recorded outputs again, so a cached cell looks like a run one."""
    pub = getattr(_shell(), "display_pub", None)
    for out in outputs:
        if "stream" in out:
            stream = sys.stderr if out["stream"] == "stderr" else sys.stdout
            stream.write(out["text"])
        elif "display" in out:
            if pub is not None:
                sys.stdout.flush()
                pub.publish(data=out["display"], metadata=out.get("metadata") or {})
            else:
                print(out["display"].get("text/plain", ""))


# --------------------------------------------------------------------------- the machinery


@dataclass
class _Unit:
    """One piece of the user's code to route: how to key it, run it and restore it."""

    code_id: str  # the code alone: entries of the same code on other inputs share it
    label: str  # the first line, for `openmind memory ls --kind cell`
    key: str | None
    uncacheable: str | None
    run: Callable[[], tuple[dict[str, Any], Any]]  # -> (values to keep, value)
    restore: Callable[[cells.Kept], tuple[list[str], Any]]  # -> (names restored, value)


class _CellJob:
    """The handlers of one routed unit."""

    def __init__(self, unit: _Unit, intent: IntentKind, keep: bool) -> None:
        self.unit, self.intent, self.keep = unit, intent, keep
        self.error: BaseException | None = None
        self.interrupted = False

    def cached(self, cand: Candidate) -> CellResult:
        t0 = time.perf_counter()
        if cand.params.get("ancestor"):
            if self.interrupted:
                raise KeyboardInterrupt  # Ctrl-C always stops
            kept = cells.last_good(self.unit.code_id)
            if kept is None:
                raise PathwayUnavailable("no readable earlier run of this code")
        else:
            kept = cells.lookup(self.unit.key) if self.unit.key else None
            if kept is None:
                raise PathwayUnavailable("the kept outputs could not be restored (see the warning)")
        names, value = self.unit.restore(kept)
        replay(kept.outputs)
        if not cand.params.get("ancestor"):
            _measured_restore(kept.entry.size, time.perf_counter() - t0)
        degraded = cand.params.get("degraded")
        error = None if self.error is None else f"{type(self.error).__name__}: {self.error}"
        result = CellResult(value, names, kept.outputs, True, degraded, error, kept.entry.key,
                            None, kept.unkept, time.perf_counter() - t0)
        # the executor puts the reason (and where the memory came from) on the route and journal
        note = kept.entry.origin  # "from the team's memory, published by <key id> at <time>"
        return Served(result, degraded=degraded, note=note) if degraded or note else result

    def run(self, cand: Candidate) -> CellResult:
        calls = _journal.appended()
        t0 = time.perf_counter()
        try:
            with allowing(cand.params.get("device") or "cpu", cand.params.get("budget")), \
                    recording() as outputs:
                values, value = self.unit.run()
        except KeyboardInterrupt:
            self.interrupted = True
            raise
        except Exception as exc:
            self.error = exc
            raise
        seconds = time.perf_counter() - t0
        result = CellResult(value, [n for n in values if n not in (VALUE, VALUE_OF)], outputs, False, None, None,
                            self.unit.key, self.unit.uncacheable, {}, seconds)
        if self.unit.key is not None and self.keep and _journal.appended() == calls:
            entry = cells.store(self.unit.code_id, self.unit.key, values, outputs,
                                {"first_line": self.unit.label, "intent": self.intent.value,
                                 "seconds": round(seconds, 4), "version": VERSION})
            if entry is not None:
                result.unkept = dict(entry.meta.get("unkept") or {})
        return result


def serve(unit: _Unit, intent: IntentKind, pol: Policy, resources: Resources | None) -> CellResult:
    """Route and execute one unit; raise the body's own error when nothing else may answer."""
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    memory = resources.memory.available
    exact = cells.peek(unit.key) if unit.key is not None and memory else None
    earlier = memory and pol.fallback == "cached" and bool(entries(cells.KIND, unit.code_id))
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


def _key(code_id: str, inputs: dict[str, str], pol: Policy) -> str:
    options = {k: v for k, v in pol.to_dict().items() if k not in UNKEYED_OPTIONS}
    return key_for("cell", code_id, inputs, options, VERSION, sys.version_info[:2])


# --------------------------------------------------------------------------- public


def run_cell(source: str, namespace: dict[str, Any], intent: str | IntentKind = "train", *,
             resources: Resources | None = None, compiler: Compile | None = None,
             filename: str = "<cell>", label: str | None = None, **policy: Any) -> CellResult:
    """Run `source` in `namespace` as a routed cell: restore it from muscle memory when the same
    code ran on the same inputs, else run it (and keep what it bound and showed).

    policy: fallback ("cached": an earlier run's outputs if the body raises), strategy, budget,
    fresh. `compiler(tree, filename, mode)` lets a shell compile the body its own way; `label`
    names the cell in memory listings (default: its first line).
    The result's `.route` says what was decided and why; the body's own errors are raised as is.
    """
    kind = IntentKind.parse(intent, "intent")
    if not isinstance(namespace, dict):
        raise BadInput(f"namespace must be a dict (e.g. globals()), got {type(namespace).__name__}")
    pol = make_policy(**policy)
    tree = parse(source)
    code_id = normalised(tree)
    reads, binds = reads_and_binds(tree)
    key = uncacheable = None
    try:
        key = _key(code_id, namespace_inputs(reads, namespace, Fingerprinter()), pol)
    except Uncacheable as exc:
        uncacheable = str(exc)
    silent = source.rstrip().endswith(";")

    def run() -> tuple[dict[str, Any], Any]:
        before = {k: id(v) for k, v in namespace.items()}
        value = run_tree(tree, namespace, filename, compiler, silent=silent)
        values = _bound_values(namespace, binds, before, tree)
        same = next((n for n, v in values.items() if v is value), None)
        if same is not None:
            values[VALUE_OF] = same
        elif value is not None:
            values[VALUE] = value
        return values, value

    def restore(kept: cells.Kept) -> tuple[list[str], Any]:
        defs = definitions(tree)
        if defs.body:
            exec((compiler or _compile)(defs, filename, "exec"), namespace)  # noqa: S102
        names = [n for n in kept.values if n not in (VALUE, VALUE_OF)]
        namespace.update({n: kept.values[n] for n in names})
        if VALUE_OF in kept.values:
            return names, namespace.get(kept.values[VALUE_OF])
        return names, kept.values.get(VALUE)

    unit = _Unit(code_id, label or first_line(source), key, uncacheable, run, restore)
    return serve(unit, kind, pol, resources)


def _bound_values(namespace: dict[str, Any], binds: list[str], before: dict[str, int],
                  tree: ast.Module) -> dict[str, Any]:
    """The names the cell bound (statically, or rebound when it ran) and their values; the
    imports, functions and classes it defines are not kept (a hit re-runs their statements)."""
    defined = set(reads_and_binds(definitions(tree))[1])
    names = [n for n in binds if n in namespace]
    names += [n for n, v in namespace.items() if before.get(n) != id(v) and n not in names]
    out = {}
    for n in names:
        if n in SHELL_NAMES or n in defined or (n.startswith("_") and n.lstrip("_i").isdigit()):
            continue
        out[n] = namespace[n]
    return out


def remember(fn: Callable[..., Any] | None = None, *, intent: str = "train",
             **policy: Any) -> Any:
    """`@openmind.remember`: a function's result kept in muscle memory, keyed on its code (and
    the user's functions it calls, followed), its arguments' contents and openmind's version.

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

        @functools.wraps(func)
        def call(*args: Any, **kwargs: Any) -> Any:
            pol = make_policy(**policy)
            fp = Fingerprinter()
            code_id = fp.code(func, getattr(func, "__qualname__", "the function"))
            key = uncacheable = None
            try:
                inputs = {"args": fp.of(list(args), "the arguments"),
                          "kwargs": fp.of(dict(kwargs), "the keyword arguments")}
                key = _key(code_id, inputs, pol)
            except Uncacheable as exc:
                uncacheable = str(exc)

            def run() -> tuple[dict[str, Any], Any]:
                value = func(*args, **kwargs)
                return {VALUE: value}, value

            def restore(kept: cells.Kept) -> tuple[list[str], Any]:
                return [], kept.values.get(VALUE)

            label = f"@remember {getattr(func, '__module__', '')}.{getattr(func, '__qualname__', '?')}"
            result = serve(_Unit(code_id, label, key, uncacheable, run, restore), kind, pol, None)
            call.last_route = result.route
            attach_route(result.value, result.route)
            return result.value

        call.last_route = None
        return call

    return wrap(fn) if fn is not None else wrap


__all__ = ["CellResult", "EARLIER_RUN", "drive", "recording", "remember", "replay", "run_cell",
           "run_tree"]
