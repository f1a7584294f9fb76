"""Asking the language model (MODEL decisions), on behalf of every intent.

The language model is a pathway (`openmind.pathways.cloud.llm`: transport and schema checks); this
module is where the intents consult it: only when the probe says one answers (a masked, refused or
unreachable API is never called), and a plan it returns goes back through the router like any
other decision.
"""

from __future__ import annotations

import logging
from typing import Any

from openmind.flow.executor import execute
from openmind.flow.resources import Resources, probe
from openmind.flow.router import Intent, route
from openmind.pathways.cloud import llm
from openmind.pathways.cloud.llm import LLMError, heuristic_plan
from openmind.vocab import Decision, Pathway

log = logging.getLogger("openmind.llm")


def require_api() -> None:
    """LLMError unless the probe found a usable language model (respects OPENMIND_ASSUME api=off;
    the probe checked the key with GET /v1/models and caches the answer)."""
    api = probe().api
    if not api.available:
        raise LLMError(f"no language model: {api.reason}")


def request_plan(situation: dict[str, Any]) -> dict[str, Any]:
    """A validated training plan; raises LLMError with the reason otherwise."""
    require_api()
    return llm.request_plan(situation)


def plan_training(situation: dict[str, Any]) -> dict[str, Any] | None:
    """A validated plan, or None (logged with the reason) so the caller uses its heuristics."""
    return plan_training_or_reason(situation)[0]


def plan_training_or_reason(situation: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(a validated plan, "") or (None, why the language model gave none: unreachable, refused,
    invalid), logged, so the caller can keep the reason in the journal."""
    try:
        return request_plan(situation), ""
    except LLMError as exc:
        log.warning("no language-model plan (%s); falling back to heuristics", exc)
        return None, str(exc)


def request_signal(name: str) -> dict[str, Any]:
    """A validated description of an unknown signal; raises LLMError with the reason otherwise."""
    require_api()
    return llm.request_signal(name)


def describe_signal(name: str) -> dict[str, Any] | None:
    """Unit, typical level and variation of an unknown signal, or None (logged) when unavailable."""
    try:
        return request_signal(name)
    except LLMError as exc:
        log.warning("no language-model description of signal %r (%s)", name, exc)
        return None


def zero_shot(texts: list[str], labels_meaning: dict[int, str] | str | None = None) -> list[int]:
    """One trit in {-1, 0, +1} per text, by the language model; raises LLMError with the reason."""
    require_api()
    return llm.zero_shot(texts, labels_meaning)


class _Plan(dict):
    route = None


def plan_or_heuristic(situation: dict[str, Any], *, resources: Resources | None = None,
                      **policy: Any) -> tuple[dict[str, Any], Any]:
    """The MODEL decision end to end: route a train intent of this situation, ask the language model
    if the router offers it, else (or on any failure) the heuristic plan. Returns (plan, route); the
    journal gets the route with every reason."""
    res = resources if resources is not None else probe()
    shape = situation.get("shape")
    intent = Intent.of("train", name=situation.get("name"), rows=situation.get("rows"),
                       shape=tuple(shape) if shape else None,
                       data_kind=situation.get("data_kind") or "unknown", ancestor=False)
    plan = route(intent, resources=res, **policy)
    handlers = {(Pathway.CLOUD_INFERENCE, Decision.MODEL):
                lambda _c: _Plan(request_plan(situation), source="llm"),
                Pathway.FULL_TRAIN: lambda _c: _Plan(heuristic_plan(situation), source="heuristic")}
    result, rt = execute(plan, handlers, resources=res,
                         summarize=lambda p: {"plan_source": p.get("source"), "epochs": p.get("epochs")})
    return dict(result), rt
