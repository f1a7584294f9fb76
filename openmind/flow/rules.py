"""The router's per-intent rules: (intent, resources, policy) -> candidates, in order.

Each rule reads only its arguments (no I/O, no clock) and notes every pathway it leaves out, and
why, in `excluded`. `openmind.flow.router` applies the policy's strategy, preference and fallback
to what a rule proposes.
"""

from __future__ import annotations

from typing import Any

from openmind.flow.intent import Candidate, Intent
from openmind.flow.policy import Policy
from openmind.flow.resources import Resources
from openmind.units import human_duration, plural
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


# --------------------------------------------------------------------------- facts


def memory_on(res: Resources) -> bool:
    return res.memory.available


def _has_model(intent: Intent, res: Resources, fact: bool | None) -> bool:
    if not memory_on(res):
        return False
    if fact is not None:
        return fact
    return bool(intent.name) and res.memory.details.get("models", {}).get(intent.name, 0) > 0


def compute(res: Resources, est_seconds: float | None = None) -> tuple[str, str]:
    """(device, description) of the compute a train would use: the GPU when there is one,
    unless the train is known to be so small that the CPU finishes first."""
    cores = res.host.details.get("cores")
    cpu = f"CPU ({plural(cores, 'core') if isinstance(cores, int) else '? cores'}"
    if res.gpu.available and est_seconds is not None and est_seconds < GPU_MIN_TRAIN_S:
        return "cpu", (f"{cpu}): a GPU is here, but ~{est_seconds:.1f}s of CPU work "
                       f"is less than starting CUDA and moving the data costs")
    if res.gpu.available:
        return "cuda", f"CUDA GPU ({res.gpu.reason})"
    return "cpu", f"{cpu}; no GPU: {res.gpu.reason})"


def _llm(res: Resources) -> bool:
    return res.api.available


def exact_hit(it: Intent, res: Resources, pol: Policy, excluded: list, why: str) -> list[Candidate]:
    """The CACHED candidate for an exact muscle-memory hit, unless fresh or memory is off."""
    if not memory_on(res):
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
    out = exact_hit(it, res, pol, excluded,
                     f"exact hit: '{name}' was trained on this data with this config")

    ancestor = _has_model(it, res, it.ancestor)
    device, where = compute(res, it.est_seconds)
    if pol.fresh and ancestor:
        # fresh: from scratch or a clear failure; never a fine-tune, never another model
        excluded.append((Pathway.FINE_TUNE, "fresh=True: training from scratch, no fine-tune"))
        excluded.append((Pathway.MUSCLE_MEMORY, "fresh=True: no cached model stands in"))
        ancestor = False
    elif it.partial and memory_on(res) and it.data_kind in KNOWN_DATA:
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
    # training (all of it, or what fits the budget) answers as asked: it comes before a model of
    # that name trained on other data, whatever the estimate
    out.append(train)
    if ancestor:
        out.append(fallback)
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

    memory = memory_on(res)
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
    out = exact_hit(it, res, pol, excluded,
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


# --------------------------------------------------------------------------- ingest


def _ingest(it: Intent, res: Resources, pol: Policy, excluded: list) -> list[Candidate]:
    """Fetch the source (conditionally when a copy is in memory: an unchanged answer serves the
    copy, CACHED); else the last good copy, degraded with its age, unless older than max_age.

    Fetching is `full_train`/HARDCODE: the read and parse run on this machine's compute, the
    pathway the cell pathway journals for a cell that reads the same file itself."""
    what = it.name or "the source"
    copy = bool(it.ancestor) and memory_on(res) and not pol.fresh  # fresh: download anew
    how = "a conditional request" if it.data_kind == "url" else "its content hash"
    out = [Candidate(Pathway.FULL_TRAIN, Decision.HARDCODE,
                     f"fetching {what}" + (f" (by {how}: the copy in memory serves if unchanged)"
                                           if copy else ""),
                     {"conditional": copy})]
    age = f"{human_duration(it.age_s)} old" if it.age_s is not None else "of unknown age"
    if not memory_on(res):
        excluded.append((Pathway.MUSCLE_MEMORY, f"memory unavailable: {res.memory.reason}"))
    elif not it.ancestor:
        excluded.append((Pathway.MUSCLE_MEMORY, f"no copy of {what} in memory yet"))
    elif pol.max_age is not None and it.age_s is not None and it.age_s > pol.max_age:
        excluded.append((Pathway.MUSCLE_MEMORY, f"the last good copy of {what} is {age}, older "
                                                f"than max_age={human_duration(pol.max_age)}"))
    else:
        out.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.CACHED,
                             f"the last good copy of {what} in memory ({age})",
                             {"ancestor": True, "age_s": it.age_s}))
    return out


# intent kind -> its rule (the cell pathway has its own planner: router.plan_cell)
RULES = {IntentKind.TRAIN: _train, IntentKind.SENSE: _sense, IntentKind.INFER: _infer,
         IntentKind.VALIDATE: _validate, IntentKind.MONITOR: _monitor, IntentKind.DEPLOY: _deploy,
         IntentKind.INGEST: _ingest}
