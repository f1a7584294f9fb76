"""The metabolic router: (intent, resources, policy) -> Plan. A pure function: no I/O, no clock.

Every rule of DESIGN.md "Routing rules" lives here and in `openmind.flow.rules` (the per-intent
rules this module applies the policy to), nowhere else; whether a degraded result is refused is
decided here too (`refusal`). Facts that need I/O (is there an exact hit in muscle memory? how
many rows? has the signal a built-in prior?) are gathered by the caller into `Intent`. The router
imports no pathway (an import contract in pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openmind.errors import BadInput
from openmind.flow.intent import Candidate, Intent
from openmind.flow.policy import Policy, make_policy
from openmind.flow.resources import Resources
from openmind.flow.rules import (
    GPU_MIN_INFER_WORK,
    GPU_MIN_TRAIN_S,
    RULES,
    compute,
    exact_hit,
    memory_on,
)
from openmind.vocab import Decision, Pathway


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

    @property
    def refuses_degraded(self) -> str | None:
        """Why a degraded result is refused under this plan (the executor then counts it as a
        failure and tries the next candidate), or None when it is an answer: `refusal`."""
        return refusal(self.intent, self.policy)

    def refuses(self, *, within_terms: bool = False) -> str | None:
        """`refuses_degraded` for one result: one cut short only by the call's own terms (its
        budget) is what the call asked for, never refused."""
        return refusal(self.intent, self.policy, within_terms=within_terms)

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


def refusal(intent: Intent, pol: Policy, *, within_terms: bool = False) -> str | None:
    """The router's one rule on degraded results: strict=True and fallback="none" both refuse
    them (the option that does, as the executor's message names it); None accepts them. Both
    still try every candidate in order, so a pathway that answers as asked (training what fits
    the budget) runs before a stand-in is refused. `within_terms`: the result is cut short only
    by the call's own budget, which is what the call asked for (the most that fits): accepted."""
    if within_terms:
        return None
    if pol.strict:
        return "strict=True"
    if pol.fallback == "none":
        return "fallback=none"
    return None


def plan(intent: Intent, res: Resources, pol: Policy) -> Plan:
    """The pure core of `route`."""
    excluded: list[tuple[Pathway, str]] = []
    if intent.shed:  # the validator's verdict: those versions are neither hit, ancestor nor fallback
        excluded.append((Pathway.MUSCLE_MEMORY, f"shed by the validator: {intent.shed}"))
    cands = RULES[intent.kind](intent, res, pol, excluded)
    cands = _apply_strategy(cands, pol, excluded)
    cands = _apply_prefer(cands, pol)
    cands = _apply_fallback(cands, pol, excluded)
    return Plan(intent, pol, tuple(cands), tuple(excluded))


# --------------------------------------------------------------------------- the cell pathway

# The pathway a cell's own code takes when it runs: the user's code computed here, on the CPU or
# GPU the route allows, whatever word its magic says (`sense` touches no hardware by itself).
CELL_PATHWAY = Pathway.FULL_TRAIN
EARLIER_RUN = "outputs of an earlier run on other inputs"
# How fast kept outputs come back (read, verify, copy), in bytes a second, on a modest machine,
# when the caller has not measured it: a cell that ran quicker than its outputs restore runs again.
RESTORE_BYTES_PER_S = 200e6


def plan_cell(it: Intent, res: Resources, pol: Policy) -> Plan:
    """A `%%openmind` cell with no openmind call in it (DESIGN.md "the cell pathway").

    it.exact: this code ran on these inputs and its outputs are kept; it.ancestor: the same code
    ran on other inputs. Exact hit -> muscle_memory/CACHED; else the body runs (full_train for
    train, the intent's own pathway otherwise) on the device the route allows; with
    fallback=cached, the earlier run's outputs if the body raises (degraded)."""
    excluded: list[tuple[Pathway, str]] = []
    what = "this cell"
    out: list[Candidate] = []
    restore_s = it.restore_s if it.restore_s is not None else (it.kept_bytes or 0) / RESTORE_BYTES_PER_S
    if it.uncacheable:
        excluded.append((Pathway.MUSCLE_MEMORY, f"not cacheable: {it.uncacheable}"))
    elif it.exact and not pol.fresh and pol.strategy != "cached" and it.est_seconds is not None \
            and restore_s > it.est_seconds:
        excluded.append((Pathway.MUSCLE_MEMORY,
                         f"running {what} again ({it.est_seconds:.2f} s last time) is quicker than "
                         f"restoring its {it.kept_bytes / 1e6:.0f} MB of outputs (~{restore_s:.2f} s)"))
    else:
        out = exact_hit(it, res, pol, excluded,
                         f"exact hit: {what} ran with the same code and inputs")
    device, where = compute(res)
    if device == "cuda":  # several GPUs: the one with the most free memory, as "cuda:N"
        gpus = [g for g in res.gpu.details.get("devices", []) if isinstance(g, dict)]
        if len(gpus) > 1:
            best = max(gpus, key=lambda g: g.get("memory_free") or 0)
            device = f"cuda:{best.get('index', 0)}"
            where += f", {device} has the most free memory"
    run = CELL_PATHWAY
    budget = f" within the {pol.budget:g}s budget" if pol.budget else ""
    out.append(Candidate(run, Decision.HARDCODE, f"running {what} on {where}{budget}",
                         {"device": device, "budget": pol.budget}))
    earlier = bool(it.ancestor) and memory_on(res)
    if earlier and pol.fallback == "cached":
        out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.CACHED,
                             f"{EARLIER_RUN} of the same code (the cell raised)",
                             {"ancestor": True, "degraded": EARLIER_RUN}))
    elif earlier:
        excluded.append((Pathway.MUSCLE_MEMORY,
                         f"{EARLIER_RUN} come back only with fallback=cached"))
    out = _apply_strategy(out, pol, excluded)
    return Plan(it, pol, tuple(out), tuple(excluded))


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
    if pol.fallback == "cached" and len(cands) > 1:
        rest = [c for c in cands[1:] if c.pathway is Pathway.MUSCLE_MEMORY]
        excluded.extend((c.pathway, "fallback=cached") for c in cands[1:] if c not in rest)
        return cands[:1] + rest
    return cands


__all__ = ["EARLIER_RUN", "GPU_MIN_INFER_WORK", "GPU_MIN_TRAIN_S", "Candidate", "Intent", "Plan",
           "plan", "plan_cell", "refusal", "route"]
