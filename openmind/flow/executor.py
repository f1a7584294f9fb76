"""The executor: run a plan's candidates in order until one works, journal every attempt.

A failure is a reason, not an error, while another candidate remains. BadInput is the caller's
mistake and is raised at once (every pathway would fail the same way). Ctrl-C is not a failure:
it is journaled "interrupted" and propagates (the handler kept what was done). A handler whose
result is not what the call asked for says so by returning `Served(value, degraded=reason)`; the
route carries the reason. Whether such a result is refused is the router's decision
(`Plan.refuses_degraded`, e.g. under `strict=True`); the executor only carries it out.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from openmind.config import redact
from openmind.errors import AllPathwaysFailed, BadInput
from openmind.flow.resources import Resources
from openmind.flow.router import Candidate, Plan
from openmind.vocab import Attempt, Decision, Pathway, Route

Handler = Callable[[Candidate], Any]


@dataclass
class Served:
    """A handler's result with what the route must know beyond the candidate it ran.

    degraded: why the value is not what the call asked for (None: it is).
    pathway:  the pathway that really ran, when it differs from the candidate's (a language
              model's plan trained here is `full_train`, not `cloud_inference`).
    decision: the decision that really held, when the answer changed it (an ingest's
              conditional request answered "unchanged": the copy in memory, CACHED).
    note:     appended to the route's reason (e.g. "resumed after 1 of 60 epochs").
    within_terms: the value is degraded only by the call's own terms (a run stopped by the budget
              the call set): the route still says so, and strict/fallback=none accept it.
    """

    value: Any
    degraded: str | None = None
    pathway: Pathway | None = None
    note: str | None = None
    decision: Decision | None = None
    within_terms: bool = False  # degraded only by the call's own budget: what it asked for


class _Refused(Exception):
    pass


Handlers = Handler | Mapping[Any, Handler]


def _pick(handlers: Handlers, cand: Candidate) -> Handler | None:
    if callable(handlers) and not isinstance(handlers, Mapping):
        return handlers
    return handlers.get((cand.pathway, cand.decision)) or handlers.get(cand.pathway)


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return redact(f"{type(exc).__name__}: {text}" if not isinstance(exc, BadInput) else text)


def execute(
    plan: Plan,
    handlers: Handlers,
    *,
    resources: Resources | None = None,
    summarize: Callable[[Any], dict[str, Any]] | None = None,
    record: bool = True,
    defer_journal: bool = False,
) -> tuple[Any, Route]:
    """Run `plan` and return (result, route). `handlers` is one callable taking the candidate, or
    a mapping from Pathway or (Pathway, Decision) to callables. The result also gets `.route`.
    `defer_journal`: the record joins the journal's buffer, written with others in one
    transaction (calls that take microseconds: a synchronous commit would cost more than the
    call); `route.journal_id` is set once it is written, and every journal reader in this process
    writes the buffer first.

    Raises AllPathwaysFailed (listing every attempt) only when every candidate failed.
    """
    intent = plan.intent.kind.value
    attempts: list[Attempt] = []
    run = _Run(plan, resources, record, defer_journal)
    for cand in plan.candidates:
        handler = _pick(handlers, cand)
        t0 = time.perf_counter()
        if handler is None:
            attempts.append(Attempt(cand.pathway, cand.decision, cand.reason, "failed",
                                    "no handler for this pathway", 0.0))
            continue
        try:
            result = handler(cand)
            served = result if isinstance(result, Served) else Served(result)
            refused = plan.refuses(within_terms=served.within_terms) if served.degraded else None
            if refused:
                raise _Refused(f"would be degraded ({served.degraded}); {refused} refuses a "
                               f"degraded result")
        except BadInput as exc:
            attempts.append(_failed(cand, "failed", exc, t0))
            run.finish(attempts, error=str(exc))
            raise
        except KeyboardInterrupt as exc:
            # Ctrl-C stops the call: the handler kept what was done; journal it and propagate
            attempts.append(_failed(cand, "interrupted", exc, t0))
            run.finish(attempts, error="interrupted (Ctrl-C)" + (f": {exc}" if str(exc) else ""))
            raise
        except _Refused as exc:
            attempts.append(Attempt(cand.pathway, cand.decision, cand.reason, "failed", str(exc),
                                    (time.perf_counter() - t0) * 1000))
            continue
        except Exception as exc:
            attempts.append(_failed(cand, "failed", exc, t0))
            continue
        result = served.value
        attempts.append(Attempt(served.pathway or cand.pathway, served.decision or cand.decision,
                                cand.reason, "ok", None, (time.perf_counter() - t0) * 1000))
        summary = {}
        if summarize is not None:
            try:
                summary = summarize(result) or {}
            except Exception as exc:  # a summary must never cost the user the result
                summary = {"summary_error": _error_text(exc)}
        route = run.finish(attempts, cand, summary=summary, served=served)
        attach_route(result, route)
        return result, route
    error = AllPathwaysFailed(intent if not plan.intent.name else f"{intent} '{plan.intent.name}'", attempts)
    if plan.excluded:
        lines = [str(error), "  why no other pathway was tried:" if plan.candidates
                 else "  why no pathway was possible:"]
        lines += [f"   - {p.value}: {r}" for p, r in plan.excluded]
        error.args = (redact("\n".join(lines)),)
    run.finish(attempts, error=str(error))
    raise error


def _failed(cand: Candidate, outcome: str, exc: BaseException, t0: float) -> Attempt:
    return Attempt(cand.pathway, cand.decision, cand.reason, outcome, _error_text(exc),
                   (time.perf_counter() - t0) * 1000)


@dataclass
class _Run:
    """One `execute` call: what every journal record of it shares."""

    plan: Plan
    resources: Resources | None
    record: bool
    defer: bool
    start: float = field(default_factory=time.perf_counter)

    def finish(self, attempts: list[Attempt], chosen: Candidate | None = None, *,
               summary: dict[str, Any] | None = None, error: str | None = None,
               served: Served | None = None) -> Route | None:
        """Journal the outcome; return the Route when `chosen` succeeded."""
        route = None
        duration = (time.perf_counter() - self.start) * 1000
        if chosen is not None:
            route = _route(self.plan, attempts, chosen, served or Served(None), duration, summary)
        if self.record:
            _journal(self, attempts, route, duration, summary, error)
        return route


def _route(plan: Plan, attempts: list[Attempt], chosen: Candidate, served: Served,
           duration: float, summary: dict[str, Any] | None) -> Route:
    reason = chosen.reason + (f"; {served.note}" if served.note else "")
    tried = [a for a in attempts if a.outcome != "ok"]
    if tried:
        reason += " (after " + "; ".join(f"{a.pathway.value} {a.outcome}: {a.error}" for a in tried) + ")"
    return Route(served.pathway or chosen.pathway, served.decision or chosen.decision, redact(reason),
                 plan.intent.kind.value, attempts, duration, None, summary or {},
                 redact(served.degraded) if served.degraded else None)


def _journal(run: _Run, attempts: list[Attempt], route: Route | None, duration: float,
             summary: dict[str, Any] | None, error: str | None) -> None:
    plan, resources, defer = run.plan, run.resources, run.defer
    entry = {
        "intent": plan.intent.kind.value,
        "name": plan.intent.name,
        "ok": route is not None,
        "pathway": route.pathway.value if route else None,
        "decision": route.decision.value if route else None,
        "reason": route.reason if route else error,
        "degraded": route.degraded if route else None,
        "interrupted": bool(attempts) and attempts[-1].outcome == "interrupted",
        "duration_ms": round(duration, 3),
        "policy": plan.policy.to_dict(),
        "plan": plan.to_dict(),
        "attempts": [a.to_dict() for a in attempts],
        "summary": summary or {},
        "resources": resources.to_dict() if resources is not None else None,
        "error": error,
    }
    try:
        from openmind.flow.journal import append

        def written(rid: int, route: Route | None = route) -> None:
            if route is not None:
                route.journal_id = rid

        stored = append(entry, defer=defer, on_written=written)
    except Exception as exc:  # an unwritable home must not cost the user the result
        warnings.warn(f"openmind: could not write the journal ({_error_text(exc)})",
                      RuntimeWarning, stacklevel=4)  # the caller of execute
    else:
        if route is not None:
            route.record = stored
            if stored.get("id") is not None:  # written already (never overwrite with None)
                route.journal_id = stored["id"]


def attach_route(result: Any, route: Route) -> None:
    try:
        result.route = route
    except (AttributeError, TypeError):
        pass  # immutable results (tuples, ints) still get the route as the second return value
