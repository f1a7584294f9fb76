"""The metabolic router: (intent, resources, policy) -> Plan. A pure function: no I/O, no clock.

Every rule of DESIGN.md "Routing rules" lives here and nowhere else. Facts that need I/O (is
there an exact hit in muscle memory? how many rows?) are gathered by the caller into `Intent`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from openmind.errors import BadInput
from openmind.flow.policy import Policy, make_policy
from openmind.flow.resources import Resources
from openmind.vocab import Decision, IntentKind, Pathway

# A budget at or below this many seconds is "small": fine-tune an ancestor rather than retrain.
SMALL_BUDGET_S = 60.0
# Data at or below this many rows is "small".
SMALL_DATA_ROWS = 5000
# Rough speed-up of a CUDA GPU over this CPU when judging whether a train fits the budget.
GPU_SPEEDUP = 10.0
# Data kinds the train rules know; anything else is a MODEL decision.
KNOWN_DATA = ("tabular",)


@dataclass(frozen=True)
class Intent:
    """What a cell wants, plus the facts about it the caller looked up (the router does no I/O).

    name:         model name (train, infer) or signal name (sense)
    rows, shape:  the data's size; data_kind: tabular | text | image | unknown
    exact:        train: a model with the same name, data fingerprint and config is cached;
                  infer: predictions for this model and data are cached
    ancestor:     train: a model of this name is cached (other data). None = ask resources.memory
    local_model:  infer: the model can be loaded from local memory. None = ask resources.memory
    remote_model: infer: an inference endpoint is known to serve the model
    pattern:      sense: a fitted pattern of the signal is cached. None = ask resources.memory
    prior:        sense: the signal has a built-in prior (`Intent.of` fills it from the pattern
                  pathway's table when not given)
    est_seconds:  train: estimated CPU seconds of a full train (None = unknown, assume it fits)
    partial:      train: a run of this very request was cut short; how far it got ("1 of 60
                  epochs"), so it is resumed rather than restarted
    """

    kind: IntentKind
    name: str | None = None
    rows: int | None = None
    shape: tuple[int, ...] | None = None
    data_kind: str = "tabular"
    exact: bool = False
    ancestor: bool | None = None
    local_model: bool | None = None
    remote_model: bool = False
    pattern: bool | None = None
    prior: bool = False
    est_seconds: float | None = None
    partial: str | None = None

    @classmethod
    def of(cls, value: Intent | str, **facts: Any) -> Intent:
        if isinstance(value, Intent):
            return replace(value, **facts) if facts else value
        kind = IntentKind.parse(value, "intent")
        if kind is IntentKind.SENSE and "prior" not in facts:
            from openmind.pathways.pattern import PRIOR_SIGNALS

            facts["prior"] = facts.get("name") in PRIOR_SIGNALS
        return cls(kind, **facts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value, "name": self.name, "rows": self.rows,
            "shape": list(self.shape) if self.shape else None, "data_kind": self.data_kind,
            "exact": self.exact, "ancestor": self.ancestor, "local_model": self.local_model,
            "remote_model": self.remote_model, "pattern": self.pattern, "prior": self.prior,
            "est_seconds": self.est_seconds, "partial": self.partial,
        }


@dataclass(frozen=True)
class Candidate:
    """One way to satisfy the intent; `params` tell the executor's handler how (e.g. device)."""

    pathway: Pathway
    decision: Decision
    reason: str
    params: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"pathway": self.pathway.value, "decision": self.decision.value,
                "reason": self.reason, "params": self.params}


@dataclass(frozen=True)
class Plan:
    """Ordered candidates, plus the pathways left out and why (shown in the card)."""

    intent: Intent
    policy: Policy
    candidates: tuple[Candidate, ...]
    excluded: tuple[tuple[Pathway, str], ...] = ()

    def __iter__(self):
        return iter(self.candidates)

    def __len__(self) -> int:
        return len(self.candidates)

    @property
    def first(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent.to_dict(),
            "policy": self.policy.to_dict(),
            "candidates": [c.to_dict() for c in self.candidates],
            "excluded": [{"pathway": p.value, "reason": r} for p, r in self.excluded],
        }

    def __str__(self) -> str:
        lines = [f"plan for {self.intent.kind.value}" + (f" {self.intent.name!r}" if self.intent.name else "")]
        for i, c in enumerate(self.candidates, 1):
            lines.append(f"  {i}. {c.pathway.value}/{c.decision.value}: {c.reason}")
        for p, r in self.excluded:
            lines.append(f"  -  {p.value}: {r}")
        return "\n".join(lines)


def route(intent: Intent | str, *, resources: Resources | None = None,
          policy: Policy | None = None, **policy_kwargs: Any) -> Plan:
    """Route an intent. Pure when `resources` is given; otherwise it uses `probe()` (cached).

    Policy comes from `policy=` or keywords (fallback, strategy, budget, fresh, prefer, source,
    timeout) merged over the active `openmind.policy(...)` scope.
    """
    it = Intent.of(intent)
    pol = policy if policy is not None else make_policy(**policy_kwargs)
    if policy is not None and policy_kwargs:
        raise BadInput("give either policy= or policy keywords, not both")
    if resources is None:
        from openmind.flow.resources import probe

        resources = probe()
    return plan(it, resources, pol)


def plan(intent: Intent, res: Resources, pol: Policy) -> Plan:
    """The pure core of `route`."""
    excluded: list[tuple[Pathway, str]] = []
    rules = {IntentKind.TRAIN: _train, IntentKind.SENSE: _sense, IntentKind.INFER: _infer}
    cands = rules[intent.kind](intent, res, pol, excluded)
    cands = _apply_strategy(cands, pol, excluded)
    cands = _apply_prefer(cands, pol)
    cands = _apply_fallback(cands, pol, excluded)
    return Plan(intent, pol, tuple(cands), tuple(excluded))


# --------------------------------------------------------------------------- facts


def _memory_on(res: Resources) -> bool:
    return res.memory.available


def _has_model(intent: Intent, res: Resources, fact: bool | None) -> bool:
    if not _memory_on(res):
        return False
    if fact is not None:
        return fact
    return bool(intent.name) and res.memory.details.get("models", {}).get(intent.name, 0) > 0


def _compute(res: Resources) -> tuple[str, str]:
    """(device, description) of the compute a train would use."""
    if res.gpu.available:
        return "cuda", f"CUDA GPU ({res.gpu.reason})"
    cores = res.host.details.get("cores", "?")
    return "cpu", f"CPU ({cores} cores; no GPU: {res.gpu.reason})"


def _llm(res: Resources) -> bool:
    return res.api.available


def _exact_hit(it: Intent, res: Resources, pol: Policy, excluded: list, why: str) -> list[Candidate]:
    """The CACHED candidate for an exact muscle-memory hit, unless fresh or memory is off."""
    if not _memory_on(res):
        excluded.append((Pathway.MUSCLE_MEMORY, f"memory unavailable: {res.memory.reason}"))
        return []
    if it.exact and pol.fresh:
        excluded.append((Pathway.MUSCLE_MEMORY, "exact hit skipped: fresh=True"))
        return []
    if it.exact:
        return [Candidate(Pathway.MUSCLE_MEMORY, Decision.CACHED, why)]
    return []


# --------------------------------------------------------------------------- train


def _train(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    name = it.name or "model"
    out = _exact_hit(it, res, pol, excluded,
                     f"exact hit: '{name}' was trained on this data with this config")

    ancestor = _has_model(it, res, it.ancestor)
    device, where = _compute(res)
    if pol.fresh and ancestor:
        # fresh: from scratch or a clear failure; never a fine-tune, never another model
        excluded.append((Pathway.FINE_TUNE, "fresh=True: training from scratch, no fine-tune"))
        excluded.append((Pathway.MUSCLE_MEMORY, "fresh=True: no cached model stands in"))
        ancestor = False
    elif it.partial and _memory_on(res) and it.data_kind in KNOWN_DATA:
        out.append(Candidate(Pathway.FINE_TUNE, Decision.HYBRID,
                             f"a run of '{name}' on this data with this config stopped after "
                             f"{it.partial}: resuming it on {where}",
                             {"device": device, "resume": True}))

    if it.data_kind not in KNOWN_DATA:
        shape = f"{it.data_kind} data" + (f" of shape {tuple(it.shape)}" if it.shape else "")
        if _llm(res):
            out.append(Candidate(Pathway.CLOUD_INFERENCE, Decision.MODEL,
                                 f"{shape} is new to the rules: asking the language model for a plan",
                                 {"planner": "llm"}))
            heur = f"{shape}: heuristic plan if the language model's plan fails, on {where}"
        else:
            excluded.append((Pathway.CLOUD_INFERENCE, f"no language model to plan: {res.api.reason}"))
            heur = f"{shape} is new to the rules and no language model is reachable: heuristic plan on {where}"
        out.append(Candidate(Pathway.FULL_TRAIN, Decision.MODEL, heur,
                             {"planner": "heuristic", "device": device}))
        if ancestor:
            out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.CACHED,
                                 f"the cached model named '{name}' (trained on other data or config)",
                                 {"ancestor": True}))
        return out

    small_budget = pol.budget is not None and pol.budget <= SMALL_BUDGET_S
    small_data = it.rows is not None and it.rows <= SMALL_DATA_ROWS
    if it.partial and not pol.fresh:
        pass  # the resume above is the fine-tune
    elif ancestor and (small_budget or small_data):
        why = (f"budget {pol.budget:g}s is small" if small_budget else f"data is small ({it.rows} rows)")
        out.append(Candidate(Pathway.FINE_TUNE, Decision.HYBRID,
                             f"cached ancestor '{name}' + new data, {why}: fine-tune on {where}",
                             {"device": device}))
    elif ancestor:
        excluded.append((Pathway.FINE_TUNE, f"data ({it.rows} rows) and budget are large enough to train afresh"))

    est = it.est_seconds
    if est is not None and device == "cuda":
        est = est / GPU_SPEEDUP
    fits = pol.budget is None or est is None or est <= pol.budget
    train = Candidate(
        Pathway.FULL_TRAIN, Decision.HARDCODE,
        (f"training '{name}' on {where}" + (f" within the {pol.budget:g}s budget" if pol.budget else ""))
        if fits else
        f"estimated {est:.0f}s exceeds the {pol.budget:g}s budget: training what fits on {where}",
        {"device": device, "fits_budget": fits},
    )
    fallback = Candidate(Pathway.MUSCLE_MEMORY, Decision.CACHED,
                         f"the cached model named '{name}' (trained on other data or config)",
                         {"ancestor": True})
    if fits:
        out.append(train)
        if ancestor:
            out.append(fallback)
    else:
        if ancestor:
            out.append(fallback)
        out.append(train)
    return out


# --------------------------------------------------------------------------- sense


def _sense(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    out: list[Candidate] = []
    signal = it.name or ""
    if pol.source == "simulate":
        excluded.append((Pathway.HARDWARE_IN_LOOP, "source=simulate"))
    elif not res.serial.available:
        excluded.append((Pathway.HARDWARE_IN_LOOP, f"no device: {res.serial.reason}"))
    else:
        offered = {s.get("name"): s for s in res.serial.details.get("signals", []) if isinstance(s, dict)}
        if signal in offered:
            port = res.serial.details.get("port")
            rate = offered[signal].get("max_rate_hz")
            out.append(Candidate(Pathway.HARDWARE_IN_LOOP, Decision.HARDCODE,
                                 f"ESP32 on {port} offers '{signal}'" + (f" (max {rate} Hz)" if rate else ""),
                                 {"port": port, "max_rate_hz": rate}))
        else:
            excluded.append((Pathway.HARDWARE_IN_LOOP,
                             f"device on {res.serial.details.get('port')} offers {sorted(k for k in offered if k)}, not '{signal}'"))
    if pol.source == "device":
        if not out:
            excluded.append((Pathway.MUSCLE_MEMORY, "source=device: simulation not allowed"))
        return out

    memory = _memory_on(res)
    pattern = memory and (it.pattern if it.pattern is not None
                          else res.memory.details.get("signals", {}).get(signal, 0) > 0)
    if pattern:
        out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.HYBRID,
                             f"simulating '{signal}' from its pattern fitted on real captures",
                             {"source": "pattern"}))
    elif not memory:
        excluded.append((Pathway.MUSCLE_MEMORY, f"memory unavailable: {res.memory.reason}"))
    if it.prior:
        out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.HYBRID,
                             f"simulating '{signal}' from the built-in prior (synthetic: no real capture yet)"
                             if not pattern else f"built-in prior for '{signal}' (synthetic)",
                             {"source": "prior", "synthetic": True}))
    if not out and not pattern and not it.prior:
        if _llm(res):
            out.append(Candidate(Pathway.CLOUD_INFERENCE, Decision.MODEL,
                                 f"'{signal}' is unknown and has no prior: asking the language model to describe it",
                                 {"planner": "llm"}))
        else:
            excluded.append((Pathway.CLOUD_INFERENCE,
                             f"'{signal}' is unknown, has no prior, and no language model is reachable: {res.api.reason}"))
    return out


# --------------------------------------------------------------------------- infer


def _infer(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    name = it.name or "model"
    out = _exact_hit(it, res, pol, excluded,
                     f"exact hit: predictions of '{name}' on this data are cached")
    local = _has_model(it, res, it.local_model)
    if local:
        if res.gpu.available:
            where, params = f"on the CUDA GPU ({res.gpu.reason})", {"device": "cuda"}
        else:
            where, params = "on the CPU with the packed ternary kernel", {"device": "cpu"}
        out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.HARDCODE,
                             f"'{name}' is in local memory: inference {where}", params))
    else:
        excluded.append((Pathway.MUSCLE_MEMORY, f"'{name}' is not in local memory"))
    cloud: list[Candidate] = []
    if res.infer.available:
        why = (f"'{name}' is served at {res.infer.details.get('url')}" if it.remote_model or not local
               else f"the endpoint {res.infer.details.get('url')} may serve '{name}'")
        cloud.append(Candidate(Pathway.CLOUD_INFERENCE, Decision.HARDCODE, why,
                               {"endpoint": res.infer.details.get("url")}))
    else:
        excluded.append((Pathway.CLOUD_INFERENCE, f"no inference endpoint: {res.infer.reason}"))
    if it.data_kind == "text" and not local:
        if _llm(res):
            cloud.append(Candidate(Pathway.CLOUD_INFERENCE, Decision.MODEL,
                                   "text and no trained model: zero-shot classification by the language model",
                                   {"planner": "llm", "zero_shot": True}))
        else:
            excluded.append((Pathway.CLOUD_INFERENCE, f"no language model for zero-shot: {res.api.reason}"))
    if pol.strategy == "cloud":
        head = [c for c in out if c.decision is Decision.CACHED]
        return head + cloud + [c for c in out if c not in head]
    return out + cloud


# --------------------------------------------------------------------------- policy


def _apply_strategy(cands: list[Candidate], pol: Policy, excluded: list) -> list[Candidate]:
    if pol.strategy == "local":
        drop = [c for c in cands if c.pathway is Pathway.CLOUD_INFERENCE]
        excluded.extend((c.pathway, "strategy=local") for c in drop)
        return [c for c in cands if c not in drop]
    if pol.strategy == "cached":
        drop = [c for c in cands if c.pathway is not Pathway.MUSCLE_MEMORY or c.decision is not Decision.CACHED]
        excluded.extend((c.pathway, "strategy=cached") for c in drop)
        return [c for c in cands if c not in drop]
    if pol.strategy == "cloud":
        cloud = [c for c in cands if c.pathway is Pathway.CLOUD_INFERENCE]
        if not cloud:
            excluded.append((Pathway.CLOUD_INFERENCE, "strategy=cloud but no cloud pathway is available"))
        head = [c for c in cands if c.decision is Decision.CACHED and c.pathway is Pathway.MUSCLE_MEMORY
                and not c.params.get("ancestor")]
        return head + cloud + [c for c in cands if c not in head and c not in cloud]
    return cands


def _apply_prefer(cands: list[Candidate], pol: Policy) -> list[Candidate]:
    if not pol.prefer:
        return cands
    rank = {p: i for i, p in enumerate(pol.prefer)}
    # stable: preferred pathways first in the order given, the rest keep their order
    return sorted(cands, key=lambda c: rank.get(c.pathway, len(rank)))


def _apply_fallback(cands: list[Candidate], pol: Policy, excluded: list) -> list[Candidate]:
    if pol.fallback == "none" and len(cands) > 1:
        excluded.extend((c.pathway, "fallback=none") for c in cands[1:])
        return cands[:1]
    if pol.fallback == "cached" and len(cands) > 1:
        rest = [c for c in cands[1:] if c.pathway is Pathway.MUSCLE_MEMORY]
        excluded.extend((c.pathway, "fallback=cached") for c in cands[1:] if c not in rest)
        return cands[:1] + rest
    return cands
