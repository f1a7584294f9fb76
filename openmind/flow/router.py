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
# Below these, the GPU loses to the CPU it sits beside: starting CUDA, moving the data and
# launching kernels cost more than the work (measured on an H100 box: a digits MLP trained in
# 1.9 s on its CPU and 8.6 s on the GPU; one predicted row cost 0.02 ms on the CPU, 1.6 ms there).
GPU_MIN_TRAIN_S = 10.0  # estimated CPU seconds of a train
GPU_MIN_INFER_WORK = 200_000_000  # multiply-adds of one prediction (rows x weights)
# Data-parallel training: the share of each extra process the router counts on (gradient
# exchange costs the rest), and what starting the processes and the rendezvous cost.
DDP_EFFICIENCY = 0.8
DDP_START_S = 3.0
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
    joined:       train: the size of the torchrun process group this call runs in (None = none)
    ancestors:    train: names of the models a new network's first weights are sampled from
    uncacheable:  cell pathway: why the cell cannot be kept (a value that cannot be fingerprinted)
    kept_bytes:   cell pathway: the size of the exact hit's kept outputs (est_seconds: its run time)
    restore_s:    cell pathway: how long restoring them is expected to take on this machine
    shed:         train/infer: versions of this name the validator shed, and why (not picked)
    misfit:       deploy: why the model does not fit the device's limits (None = it fits)
    work:         infer: multiply-adds of the prediction (rows x weights; None = unknown)
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
    joined: int | None = None
    ancestors: tuple[str, ...] = ()
    uncacheable: str | None = None
    kept_bytes: int | None = None
    restore_s: float | None = None
    shed: str | None = None
    misfit: str | None = None
    work: int | None = None

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
            "est_seconds": self.est_seconds, "partial": self.partial, "ancestors": list(self.ancestors),
            "uncacheable": self.uncacheable, "kept_bytes": self.kept_bytes,
            "restore_s": self.restore_s,
            "joined": self.joined,
            "shed": self.shed, "misfit": self.misfit, "work": self.work,
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
    rules = {IntentKind.TRAIN: _train, IntentKind.SENSE: _sense, IntentKind.INFER: _infer,
             IntentKind.VALIDATE: _validate, IntentKind.MONITOR: _monitor, IntentKind.DEPLOY: _deploy}
    if intent.shed:  # the validator's verdict: those versions are neither hit, ancestor nor fallback
        excluded.append((Pathway.MUSCLE_MEMORY, f"shed by the validator: {intent.shed}"))
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


def _compute(res: Resources, est_seconds: float | None = None) -> tuple[str, str]:
    """(device, description) of the compute a train would use: the GPU when there is one,
    unless the train is known to be so small that the CPU finishes first."""
    if res.gpu.available and est_seconds is not None and est_seconds < GPU_MIN_TRAIN_S:
        cores = res.host.details.get("cores", "?")
        return "cpu", (f"CPU ({cores} cores): a GPU is here, but ~{est_seconds:.1f}s of CPU work "
                       f"is less than starting CUDA and moving the data costs")
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
    device, where = _compute(res, it.est_seconds)
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

    workers, device, where = _workers(it, res, pol, device, where)
    est = it.est_seconds
    if est is not None and device == "cuda":
        est = est / GPU_SPEEDUP
    if est is not None and workers:
        est = est / workers["speedup"] + DDP_START_S
        workers["est_seconds"] = round(est, 3)
    params: dict[str, Any] = {"device": device, **(workers or {})}
    fits = pol.budget is None or est is None or est <= pol.budget
    train = Candidate(
        Pathway.FULL_TRAIN, Decision.HARDCODE,
        ((f"training '{name}' on {where}" + (f" within the {pol.budget:g}s budget" if pol.budget else ""))
         if fits else
         f"estimated {est:.0f}s exceeds the {pol.budget:g}s budget: training what fits on {where}")
        + (f", initialised from the ancestral priors of {', '.join(it.ancestors)}" if it.ancestors else ""),
        {**params, "fits_budget": fits},
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


def _workers(it: Intent, res: Resources, pol: Policy, device: str,
             where: str) -> tuple[dict[str, Any] | None, str, str]:
    """Data-parallel processes for a full train: (params, device, description), params None for
    one process. A torchrun group this call runs in; else `workers=N`; else one process per GPU
    when the probe sees several."""
    gpus = len(res.gpu.details.get("devices") or []) if res.gpu.available else 0
    cores = res.host.details.get("cores") or 1
    if it.joined and it.joined > 1:
        n, why = it.joined, "the torchrun group this script runs in (RANK/WORLD_SIZE set)"
    elif pol.workers is not None:
        n, why = pol.workers, f"workers={pol.workers} asked for"
    elif gpus > 1:
        n, why = gpus, f"one per GPU: the probe sees {gpus}"
    else:
        return None, device, where
    if n < 2:
        return None, device, where
    if device == "cuda" and n > gpus and not it.joined:
        device, where = "cpu", f"CPU ({cores} cores; {n} processes but only {gpus} GPU(s) for NCCL)"
    backend = "nccl" if device == "cuda" else "gloo"
    share = n if device == "cuda" else min(n, int(cores))
    speed = max(1.0, DDP_EFFICIENCY * share)
    note = "" if device == "cuda" or n <= int(cores) else f"; only {cores} cores, so they share them"
    return ({"workers": n, "backend": backend, "joined": bool(it.joined), "speedup": round(speed, 2)},
            device, f"{where} with {n} data-parallel processes (DDP, {backend}; {why}{note})")


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
        if res.gpu.available and (it.work is None or it.work >= GPU_MIN_INFER_WORK):
            where, params = f"on the CUDA GPU ({res.gpu.reason})", {"device": "cuda"}
        elif res.gpu.available:
            where, params = (f"on the CPU: a GPU is here, but {it.work:,} multiply-adds take less "
                             f"time than a trip to it"), {"device": "cpu"}
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


# --------------------------------------------------------------------------- the colony's checkers


def _validate(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    """Score a model on labelled rows: here when it is local (memory or the object given), else
    through an inference endpoint that serves it."""
    name = it.name or "model"
    out: list[Candidate] = []
    if it.local_model:
        out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.HARDCODE,
                             f"scoring '{name}' on {it.rows} labelled rows with the packed CPU kernel"))
    else:
        excluded.append((Pathway.MUSCLE_MEMORY, f"'{name}' is not in local memory"))
    if res.infer.available and (it.remote_model or not it.local_model):
        out.append(Candidate(Pathway.CLOUD_INFERENCE, Decision.HARDCODE,
                             f"scoring '{name}' as served at {res.infer.details.get('url')}",
                             {"endpoint": res.infer.details.get("url")}))
    elif not res.infer.available:
        excluded.append((Pathway.CLOUD_INFERENCE, f"no inference endpoint: {res.infer.reason}"))
    return out


def _monitor(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    """Watch a stream with a local model: drift tests against its reference data (the data
    itself comes from the sense intent, routed on its own)."""
    name = it.name or "model"
    if not it.local_model:
        excluded.append((Pathway.MUSCLE_MEMORY, f"'{name}' is not in local memory: nothing to watch with"))
        return []
    if it.exact:
        why = f"watching with '{name}': drift tests against its training data"
        return [Candidate(Pathway.MUSCLE_MEMORY, Decision.HARDCODE, why)]
    why = (f"watching with '{name}': no training data given, drift tests against a reference "
           f"rebuilt from the model's standardisation (mean, std)")
    return [Candidate(Pathway.MUSCLE_MEMORY, Decision.HYBRID, why, {"reference": "model"})]


def _deploy(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    """An ESP32 online whose limits fit -> upload; else an OIP server reachable -> publish;
    else a C header kept in muscle memory."""
    name = it.name or "model"
    out: list[Candidate] = []
    if not res.serial.available:
        excluded.append((Pathway.HARDWARE_IN_LOOP, f"no device: {res.serial.reason}"))
    elif it.misfit:
        excluded.append((Pathway.HARDWARE_IN_LOOP, f"device on {res.serial.details.get('port')}: {it.misfit}"))
    else:
        port = res.serial.details.get("port")
        out.append(Candidate(Pathway.HARDWARE_IN_LOOP, Decision.HARDCODE,
                             f"ESP32 on {port} and '{name}' fits its limits: upload", {"port": port}))
    if res.infer.available:
        url = res.infer.details.get("url")
        out.append(Candidate(Pathway.CLOUD_INFERENCE, Decision.HARDCODE,
                             f"inference server at {url}: publish '{name}' to the muscle memory it serves",
                             {"endpoint": url}))
    else:
        excluded.append((Pathway.CLOUD_INFERENCE, f"no inference server: {res.infer.reason}"))
    out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.HYBRID,
                         f"a C header of '{name}' kept in muscle memory (compile it into the firmware)"))
    return out


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
        out = _exact_hit(it, res, pol, excluded,
                         f"exact hit: {what} ran with the same code and inputs")
    device, where = _compute(res)
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
    earlier = bool(it.ancestor) and _memory_on(res)
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
    if pol.fallback == "none" and len(cands) > 1:
        excluded.extend((c.pathway, "fallback=none") for c in cands[1:])
        return cands[:1]
    if pol.fallback == "cached" and len(cands) > 1:
        rest = [c for c in cands[1:] if c.pathway is Pathway.MUSCLE_MEMORY]
        excluded.extend((c.pathway, "fallback=cached") for c in cands[1:] if c not in rest)
        return cands[:1] + rest
    return cands
