"""One case per routing rule of DESIGN.md, through the public `openmind.route` (pure: resources given)."""

from __future__ import annotations

import pytest

import openmind
from openmind import Decision, Intent, Pathway, Resource, Resources
from openmind.flow.resources import gpu_present

P, D = Pathway, Decision


def res(gpu=False, api=False, infer=False, serial=None, models=None, signals=None, memory=True):
    given = {
        "host": Resource.present("host", "2 cores", cores=2),
        "memory": Resource.present("memory", "ready", models=models or {}, signals=signals or {})
        if memory else Resource.absent("memory", "masked", "masked"),
    }
    if gpu:
        # injected: no GPU on this machine; routing only looks at the probe result
        given["gpu"] = gpu_present([{"index": 0, "name": "Injected A100", "memory_total": 80 << 30,
                                     "memory_free": 79 << 30}])
    if api:
        given["api"] = Resource.present("api", "http://127.0.0.1:9/v1 accepted the key", "valid")
    if infer:
        given["infer"] = Resource.present("infer", "ready", "ready", url="http://127.0.0.1:9")
    if serial is not None:
        given["serial"] = Resource.present("serial", "ESP32", "online", port="/dev/ttyUSB0",
                                           signals=[{"name": s, "max_rate_hz": 50} for s in serial])
    return Resources.none(**given)


def steps(plan):
    return [(c.pathway, c.decision) for c in plan]


CASES = [
    # --- train
    ("train: exact hit -> muscle_memory/CACHED",
     Intent.of("train", name="digits", rows=1797, exact=True, ancestor=True), res(models={"digits": 1}), {},
     [(P.MUSCLE_MEMORY, D.CACHED), (P.FINE_TUNE, D.HYBRID), (P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: exact hit but fresh -> from scratch only (no fine-tune, no stand-in)",
     Intent.of("train", name="digits", rows=300, exact=True, ancestor=True), res(models={"digits": 1}), {"fresh": True},
     [(P.FULL_TRAIN, D.HARDCODE)]),
    ("train: a partial run of this request -> resumed first",
     Intent.of("train", name="digits", rows=100_000, ancestor=True, partial="1 of 60 epochs"),
     res(models={"digits": 1}), {},
     [(P.FINE_TUNE, D.HYBRID), (P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: ancestor + small data -> fine_tune/HYBRID",
     Intent.of("train", name="digits", rows=300, ancestor=True), res(models={"digits": 1}), {},
     [(P.FINE_TUNE, D.HYBRID), (P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: ancestor + small budget -> fine_tune/HYBRID",
     Intent.of("train", name="digits", rows=100_000, ancestor=True), res(models={"digits": 1}), {"budget": "20s"},
     [(P.FINE_TUNE, D.HYBRID), (P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: ancestor known from resources.memory when the intent does not say",
     Intent.of("train", name="digits", rows=300), res(models={"digits": 2}), {},
     [(P.FINE_TUNE, D.HYBRID), (P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: nothing cached -> full_train/HARDCODE on CPU",
     Intent.of("train", name="digits", rows=1797), res(), {},
     [(P.FULL_TRAIN, D.HARDCODE)]),
    ("train: budget too small for the estimate -> train what fits, then the cached model of that name",
     Intent.of("train", name="digits", rows=100_000, ancestor=True, est_seconds=600), res(models={"digits": 1}),
     {"budget": "5m"},
     [(P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: fallback=none and a budget under the estimate still trains what fits first (as strict)",
     Intent.of("train", name="digits", rows=100_000, ancestor=True, est_seconds=600), res(models={"digits": 1}),
     {"budget": "5m", "fallback": "none"},
     [(P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("train: unknown data shape, LLM reachable -> MODEL via the language model, heuristics next",
     Intent.of("train", name="x", rows=10, shape=(10, 3, 32, 32), data_kind="image"), res(api=True), {},
     [(P.CLOUD_INFERENCE, D.MODEL), (P.FULL_TRAIN, D.MODEL)]),
    ("train: unknown data shape, no LLM -> MODEL by heuristics",
     Intent.of("train", name="x", rows=10, data_kind="unknown"), res(), {},
     [(P.FULL_TRAIN, D.MODEL)]),
    # --- sense
    ("sense: device online offering the signal -> hardware_in_loop/HARDCODE",
     Intent.of("sense", name="temperature", prior=True), res(serial=["temperature"]), {},
     [(P.HARDWARE_IN_LOOP, D.HARDCODE), (P.MUSCLE_MEMORY, D.HYBRID)]),
    ("sense: fitted pattern in memory -> muscle_memory/HYBRID before the prior",
     Intent.of("sense", name="temperature", prior=True), res(signals={"temperature": 1}), {},
     [(P.MUSCLE_MEMORY, D.HYBRID), (P.MUSCLE_MEMORY, D.HYBRID)]),
    ("sense: device offers other signals -> built-in prior, synthetic",
     Intent.of("sense", name="humidity", prior=True), res(serial=["temperature"]), {},
     [(P.MUSCLE_MEMORY, D.HYBRID)]),
    ("sense: unknown signal, no prior, LLM reachable -> MODEL",
     Intent.of("sense", name="soil_ph"), res(api=True), {},
     [(P.CLOUD_INFERENCE, D.MODEL)]),
    ("sense: unknown signal and nothing to go on -> no candidate",
     Intent.of("sense", name="soil_ph"), res(), {},
     []),
    ("sense: source=device and no device -> no candidate",
     Intent.of("sense", name="temperature", prior=True), res(), {"source": "device"},
     []),
    ("sense: source=simulate skips an online device",
     Intent.of("sense", name="temperature", prior=True), res(serial=["temperature"]), {"source": "simulate"},
     [(P.MUSCLE_MEMORY, D.HYBRID)]),
    # --- infer
    ("infer: exact cached predictions -> muscle_memory/CACHED",
     Intent.of("infer", name="digits", exact=True, local_model=True), res(), {},
     [(P.MUSCLE_MEMORY, D.CACHED), (P.MUSCLE_MEMORY, D.HARDCODE)]),
    ("infer: model in local memory -> local inference HARDCODE",
     Intent.of("infer", name="digits", local_model=True), res(infer=True), {},
     [(P.MUSCLE_MEMORY, D.HARDCODE), (P.CLOUD_INFERENCE, D.HARDCODE)]),
    ("infer: model only remote -> cloud_inference",
     Intent.of("infer", name="digits", local_model=False, remote_model=True), res(infer=True), {},
     [(P.CLOUD_INFERENCE, D.HARDCODE)]),
    ("infer: strategy=cloud puts the cloud before local",
     Intent.of("infer", name="digits", local_model=True), res(infer=True), {"strategy": "cloud"},
     [(P.CLOUD_INFERENCE, D.HARDCODE), (P.MUSCLE_MEMORY, D.HARDCODE)]),
    ("infer: strategy=local never uses the cloud",
     Intent.of("infer", name="digits", local_model=True), res(infer=True), {"strategy": "local"},
     [(P.MUSCLE_MEMORY, D.HARDCODE)]),
    ("infer: strategy=cached uses cached predictions only",
     Intent.of("infer", name="digits", exact=True, local_model=True), res(infer=True), {"strategy": "cached"},
     [(P.MUSCLE_MEMORY, D.CACHED)]),
    ("infer: text and no model, LLM reachable -> zero-shot MODEL",
     Intent.of("infer", name="sentiment", data_kind="text", local_model=False), res(api=True), {},
     [(P.CLOUD_INFERENCE, D.MODEL)]),
    # --- policy
    ("policy: prefer moves a pathway to the front",
     Intent.of("train", name="digits", rows=300, ancestor=True), res(models={"digits": 1}),
     {"prefer": "full_train"},
     [(P.FULL_TRAIN, D.HARDCODE), (P.FINE_TUNE, D.HYBRID), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("policy: fallback=none tries every candidate in order (refusing degraded results, as strict)",
     Intent.of("train", name="digits", rows=300, ancestor=True), res(models={"digits": 1}), {"fallback": "none"},
     [(P.FINE_TUNE, D.HYBRID), (P.FULL_TRAIN, D.HARDCODE), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("policy: fallback=cached keeps the first, then only muscle memory",
     Intent.of("train", name="digits", rows=300, ancestor=True), res(models={"digits": 1}), {"fallback": "cached"},
     [(P.FINE_TUNE, D.HYBRID), (P.MUSCLE_MEMORY, D.CACHED)]),
    ("policy: masked memory ignores cached hits",
     Intent.of("train", name="digits", rows=300, exact=True, ancestor=True), res(memory=False), {},
     [(P.FULL_TRAIN, D.HARDCODE)]),
]


@pytest.mark.parametrize("title,intent,resources,policy,expected", CASES, ids=[c[0] for c in CASES])
def test_routing_rule(title, intent, resources, policy, expected):
    plan = openmind.route(intent, resources=resources, **policy)
    assert steps(plan) == expected, f"{title}\n{plan}"
    for cand in plan:
        assert cand.reason  # every candidate says why


def test_train_uses_cuda_when_injected_gpu_present():
    """Mock: no GPU here, so a GPU probe result is injected; the plan must target CUDA."""
    plan = openmind.route(Intent.of("train", name="d", rows=10), resources=res(gpu=True))
    assert plan.first.params["device"] == "cuda"
    assert "CUDA" in plan.first.reason and "Injected A100" in plan.first.reason


def test_train_without_gpu_says_why_cpu():
    plan = openmind.route(Intent.of("train", name="d", rows=10), resources=res())
    assert plan.first.params["device"] == "cpu"
    assert "no GPU" in plan.first.reason


def test_infer_on_injected_gpu_uses_cuda_else_packed_cpu():
    """Mock: GPU injected as a probe result."""
    with_gpu = openmind.route(Intent.of("infer", name="m", local_model=True), resources=res(gpu=True))
    without = openmind.route(Intent.of("infer", name="m", local_model=True), resources=res())
    assert with_gpu.first.params["device"] == "cuda"
    assert without.first.params["device"] == "cpu" and "packed ternary" in without.first.reason


def test_small_work_stays_on_the_cpu_beside_an_injected_gpu():
    """Mock GPU: a prediction or a train too small to repay the trip to the GPU runs on the CPU,
    and the reason says the GPU was seen; big or unknown work goes to the GPU."""
    from openmind.flow.router import GPU_MIN_INFER_WORK, GPU_MIN_TRAIN_S

    def infer(work):
        return openmind.route(Intent.of("infer", name="m", local_model=True, work=work), resources=res(gpu=True)).first

    small, big, unknown = infer(64 * 84_000), infer(GPU_MIN_INFER_WORK), infer(None)
    assert small.params["device"] == "cpu" and "a GPU is here" in small.reason
    assert big.params["device"] == "cuda" and unknown.params["device"] == "cuda"

    def train(est):
        return openmind.route(Intent.of("train", name="d", rows=1797, est_seconds=est), resources=res(gpu=True)).first

    assert train(1.9).params["device"] == "cpu" and "a GPU is here" in train(1.9).reason
    assert train(GPU_MIN_TRAIN_S).params["device"] == "cuda" and train(None).params["device"] == "cuda"
    no_gpu = openmind.route(Intent.of("train", name="d", rows=1797, est_seconds=1.9), resources=res()).first
    assert no_gpu.params["device"] == "cpu" and "no GPU" in no_gpu.reason


def test_gpu_speedup_lets_a_train_fit_the_budget_injected_gpu():
    """Mock GPU: an estimate over budget on CPU fits when the (injected) GPU divides it."""
    it = Intent.of("train", name="d", rows=100_000, ancestor=True, est_seconds=600)
    cpu = openmind.route(it, resources=res(models={"d": 1}), budget=120)
    gpu = openmind.route(it, resources=res(gpu=True, models={"d": 1}), budget=120)
    assert steps(cpu)[0] == steps(gpu)[0] == (P.FULL_TRAIN, D.HARDCODE)
    assert "training what fits" in cpu.first.reason and not cpu.first.params["fits_budget"]
    assert "within the 120s budget" in gpu.first.reason and gpu.first.params["fits_budget"]


def test_excluded_pathways_carry_reasons():
    plan = openmind.route(Intent.of("sense", name="temperature", prior=True), resources=res())
    excluded = dict((p, r) for p, r in plan.excluded)
    assert P.HARDWARE_IN_LOOP in excluded and "no device" in excluded[P.HARDWARE_IN_LOOP]


def test_route_is_pure_same_input_same_plan():
    it = Intent.of("train", name="digits", rows=300, ancestor=True)
    r = res(models={"digits": 1})
    assert openmind.route(it, resources=r).to_dict() == openmind.route(it, resources=r).to_dict()


def test_route_obeys_policy_scope():
    it = Intent.of("train", name="digits", rows=300, ancestor=True)
    with openmind.policy(fallback="cached"):
        assert len(openmind.route(it, resources=res(models={"digits": 1}))) == 2
    assert len(openmind.route(it, resources=res(models={"digits": 1}))) == 3


@pytest.mark.parametrize("option", [{"fallback": "none"}, {"strict": True}])
def test_fallback_none_and_strict_are_one_rule(option):
    """Both refuse a degraded result, neither drops a candidate, and neither refuses a result cut
    only by the call's own budget (the most that fits: what was asked)."""
    from openmind.flow.router import refusal

    it = Intent.of("train", name="digits", rows=300, ancestor=True)
    plan = openmind.route(it, resources=res(models={"digits": 1}), **option)
    auto = openmind.route(it, resources=res(models={"digits": 1}))
    assert steps(plan) == steps(auto)
    assert plan.refuses_degraded == next(f"{k}={v}" if k == "fallback" else "strict=True"
                                         for k, v in option.items())
    assert plan.refuses(within_terms=True) is None
    assert refusal(it, auto.policy) is None
