"""The magics, driven in-process through IPython's `run_cell_magic` / `run_cell` (real routing,
real executor, real SQLite journal)."""

from __future__ import annotations

import importlib
import importlib.util
import re
import warnings

import numpy as np
import pytest
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import openmind
from openmind.jupyter.card import MIME, DecisionCard, card_for
from openmind.jupyter.magics import OpenmindCellWarning

SENSE = """
sig = openmind.sense_or_simulate("temperature", duration="60s", rate="1Hz", progress=False)
route = sig.route
"""


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "openmind.jupyter")
    shell.user_ns["openmind"] = openmind
    magics = shell._openmind_magics[0]
    saved = {n: getattr(magics, n) for n in magics.trait_names() if magics.trait_metadata(n, "config")}
    yield shell
    for n, v in saved.items():
        setattr(magics, n, v)


def cards(cap) -> list[dict]:
    return [o.data[MIME] for o in cap.outputs if MIME in o.data]


def run(ip, line: str, body: str):
    with capture_output() as cap:
        value = ip.run_cell_magic("openmind", line, body)
    return value, cap


@pytest.mark.filterwarnings("ignore::openmind.jupyter.magics.OpenmindCellWarning")
def test_every_option_reaches_the_policy_scope_and_leaves_with_the_cell(ip):
    body = "from openmind.flow.policy import make_policy\npol = make_policy()\npol"
    pol, _ = run(ip, "train --fallback cached --strategy local --budget 90s --timeout 2s "
                     "--source simulate --prefer fine_tune,full_train --fresh", body)
    assert pol.fallback == "cached" and pol.strategy == "local" and pol.source == "simulate"
    assert pol.budget == 90.0 and pol.timeout == 2.0 and pol.fresh is True
    assert [p.value for p in pol.prefer] == ["fine_tune", "full_train"]
    from openmind.flow.policy import make_policy

    assert make_policy().fallback == "auto"  # the scope ended with the cell


def test_cell_shows_one_card_per_decision_with_route_attempts_and_excluded(ip):
    value, cap = run(ip, "sense --model thermo", SENSE + "route.pathway.value")
    assert value == "muscle_memory"  # the last expression is the cell's value
    [card] = cards(cap)
    assert (card["intent"], card["pathway"], card["decision"]) == ("sense", "muscle_memory", "HYBRID")
    assert card["label"] == "thermo" and "built-in prior" in card["reason"]
    html = cap.outputs[0].data["text/html"]
    text = cap.outputs[0].data["text/plain"]
    assert "openmind-card" in html and "muscle_memory/HYBRID" in html and "samples" in html
    assert "hardware_in_loop" in text and "no device" in text  # the pathway not taken, and why
    # one headline: intent, name, route, reason, how long; then the figures that matter
    head, figs = text.splitlines()[:2]
    # the real signal comes from the built-in prior: degraded, and the headline says so once
    assert re.search(r"sense 'temperature' · muscle_memory/HYBRID DEGRADED · .*built-in prior.* · [\d.]+ ms", head)
    assert head.count("DEGRADED") == 1
    assert figs.strip().startswith("samples 60")


def test_fallback_option_changes_the_plan_and_a_failed_route_still_gets_a_card(ip):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    openmind.train_or_load("digits", X[:500], y[:500], epochs=1, progress=False)  # an ancestor
    ip.user_ns.update(X=X, y=y)
    # muscle memory only: the ancestor (other data) is a degraded stand-in, and --fallback none
    # refuses it (as strict does) rather than answer with it
    body = "openmind.train_or_load('digits', X[500:], y[500:], epochs=200, progress=False)\n"
    with pytest.raises(openmind.AllPathwaysFailed), capture_output() as cap:
        ip.run_cell_magic("openmind", "train --fallback none --strategy cached", body)
    [card] = cards(cap)
    assert card["ok"] is False
    text = cap.outputs[0].data["text/plain"]
    assert "FAILED" in text and "would be degraded" in text and "fallback=none" in text
    rec = openmind.journal(1)[0]
    assert [a["pathway"] for a in rec["attempts"]] == ["muscle_memory"]


def test_user_errors_are_raised_as_usual(ip):
    with pytest.raises(ZeroDivisionError):
        run(ip, "infer", "x = 1\n1 / 0")
    result = ip.run_cell("%%openmind infer\nraise KeyError('mine')")
    assert isinstance(result.error_in_exec, KeyError)


def test_unknown_or_bad_options_give_a_usage_error_naming_them(ip):
    with pytest.raises(UsageError, match="--bogus"):
        run(ip, "train --bogus 3", "pass")
    with pytest.raises(UsageError, match="fallback.*'sometimes'"):
        run(ip, "train --fallback sometimes", "pass")
    with pytest.raises(UsageError, match="soon"):
        run(ip, "train --budget soon", "pass")
    with pytest.raises(UsageError, match="intent 'learn'"):
        run(ip, "learn", "pass")
    with pytest.raises(UsageError, match="cell magic"):
        ip.run_line_magic("openmind", "train")
    with pytest.raises(UsageError, match="'frobnicate'"):
        ip.run_line_magic("openmind", "frobnicate")


def test_cell_id_and_execution_count_go_into_the_journal(ip):
    result = ip.run_cell("%%openmind sense\n" + SENSE, store_history=True, cell_id="cell-abc")
    assert result.success, result.error_in_exec
    rec = openmind.journal(1)[0]
    assert rec["cell"]["cell_id"] == "cell-abc"
    assert rec["cell"]["execution_count"] == result.execution_count
    # outside a cell the hook has reset the context
    from openmind.flow.context import current_cell

    assert current_cell().cell_id is None


def test_a_body_with_no_openmind_call_is_routed_as_a_cell_and_another_intent_warns(ip):
    with warnings.catch_warnings():
        warnings.simplefilter("error", OpenmindCellWarning)
        value, cap = run(ip, "train", "41 + 1")
    [card] = cards(cap)  # the cell pathway: the cell itself is the routed unit
    assert value == 42 and (card["pathway"], card["decision"]) == ("full_train", "HARDCODE")
    with pytest.warns(OpenmindCellWarning, match="marked 'train' but ran sense"):
        _, cap = run(ip, "train", SENSE)
    assert "marked 'train'" in cap.outputs[0].data["text/plain"]


@pytest.mark.filterwarnings("ignore::openmind.jupyter.magics.OpenmindCellWarning")
def test_config_traits_set_defaults_and_reject_bad_values(ip, caplog):
    ip.run_line_magic("config", "OpenmindMagics.fallback = 'none'")
    pol, _ = run(ip, "train", "from openmind.flow.policy import make_policy\nmake_policy()")
    assert pol.fallback == "none"
    pol, _ = run(ip, "train --fallback auto", "from openmind.flow.policy import make_policy\nmake_policy()")
    assert pol.fallback == "auto"  # the cell's option wins over the configured default
    caplog.clear()  # %config logs a rejected value and keeps the old one
    ip.run_line_magic("config", "OpenmindMagics.strategy = 'fast'")
    assert "unknown strategy 'fast'" in caplog.text
    assert ip._openmind_magics[0].strategy is None
    ip.run_line_magic("config", "OpenmindMagics.show_card = False")
    _, cap = run(ip, "sense --fallback auto", SENSE)  # a prior-simulated signal is degraded
    assert not cards(cap)
    assert openmind.journal(1)[0]["intent"] == "sense"  # still journalled


def test_status_log_and_assume_line_magics(ip):
    status = ip.run_line_magic("openmind", "status")
    assert "openmind-resources" in status._repr_html_() and "gpu" in repr(status)
    for _ in range(3):
        run(ip, "sense", SENSE)
    log = ip.run_line_magic("openmind", "log -n 2")
    assert len(log.records) == 2 and log._repr_html_().count("<tr") == 3  # header + 2
    assert "sense temperature" in repr(log)
    with pytest.raises(UsageError, match="-n must be a positive"):
        ip.run_line_magic("openmind", "log -n 0")
    shown = ip.run_line_magic("openmind", "assume gpu=off serial=off")
    assert "gpu" in repr(shown) and "serial" in repr(shown)
    assert openmind.probe().gpu.status == "masked"
    with pytest.raises(UsageError, match="'warp'"):
        ip.run_line_magic("openmind", "assume warp=off")
    assert "assuming nothing" in repr(ip.run_line_magic("openmind", "assume reset"))
    assert openmind.probe().gpu.status != "masked"


LLM_KEY = "sk-test-secret-0123456789"


@pytest.fixture
def llm(monkeypatch):
    """A real OpenAI-compatible server on 127.0.0.1 that answers a valid training plan."""
    from tests.fake_llm import configured

    with configured(monkeypatch, LLM_KEY) as fake:
        yield fake


def _estimate_as(seconds: float, X, y, **options) -> None:
    """Make this machine's measured throughput say a train of (X, y, options) takes `seconds` of
    CPU (the correction factor real runs keep), so the real train_or_load routes a long train."""
    import numpy as np

    from openmind.memory.throughput import recall, remember
    from openmind.pathways.ternary.estimate import arch_key, estimate_seconds
    from openmind.pathways.ternary.fit import resolve_config

    cfg, k = resolve_config(options), len(np.unique(y))
    est = estimate_seconds(len(X), X.shape[1], k, cfg)
    arch = arch_key(X.shape[1], cfg, k)
    remember(arch, factor=float(recall(arch).get("factor", 1.0)) * seconds / est)


def test_assume_changes_the_next_cells_route_and_the_card_says_why_injected_gpu(ip, monkeypatch, llm):
    from sklearn.datasets import load_digits

    probe_mod = importlib.import_module("openmind.flow.resources")
    monkeypatch.setitem(probe_mod.PROBES, "gpu", lambda: probe_mod.gpu_present([{"name": "Injected GPU"}]))
    probe_mod.invalidate()
    X, y = load_digits(return_X_y=True)
    rng = np.random.default_rng(0)
    X, y = np.tile(X, (7, 1)) + rng.normal(0, 0.5, size=(7 * len(X), 64)), np.tile(y, 7)  # not small data
    images = rng.normal(size=(400, 4, 4))
    labels = rng.integers(0, 2, size=400)
    images += 2 * labels[:, None, None]
    openmind.train_or_load("digits", X[:1000], y[:1000], epochs=1, progress=False)  # the ancestor
    ip.user_ns.update(X=X, y=y, images=images, labels=labels)
    # one epoch: a run too short to correct the planted estimate
    train = "m = openmind.train_or_load('digits', X[{0}:{1}], y[{0}:{1}], epochs=1, progress=False)\n"
    plan = "p = openmind.train_or_load('photos', images[{0}:{1}], labels[{0}:{1}], progress=False)\n"
    _estimate_as(300, X[1000:6500], y[1000:6500], epochs=1)  # 300 s on the CPU, 30 s on the GPU
    _, cap = run(ip, "train --budget 90s", train.format(1000, 6500) + plan.format(0, 200))
    before = cards(cap)
    assert [(c["pathway"], c["decision"]) for c in before] == [
        ("full_train", "HARDCODE"), ("full_train", "MODEL")]
    assert "CUDA GPU (Injected GPU)" in before[0]["reason"]
    assert ip.user_ns["p"].config["hidden"] == [32]  # the language model's plan (fake_llm.VALID_PLAN)

    ip.run_line_magic("openmind", "assume gpu=off api=off")
    _estimate_as(300, X[6500:12000], y[6500:12000], epochs=1)
    _, cap = run(ip, "train --budget 90s", train.format(6500, 12000) + plan.format(200, 400))
    after = cards(cap)
    # no GPU: 300 s on the CPU exceeds the 90 s budget, so it trains what fits on the CPU (before
    # the cached ancestor of other data, which stands by)
    assert (after[0]["pathway"], after[0]["decision"]) == ("full_train", "HARDCODE")
    assert "exceeds the 90s budget: training what fits on CPU" in after[0]["reason"]
    # no language model: the heuristic plan
    assert (after[1]["pathway"], after[1]["decision"]) == ("full_train", "MODEL")
    assert "no language model is reachable" in after[1]["reason"]
    for out in cap.outputs:
        text, html = out.data["text/plain"], out.data["text/html"]
        assert "assumed absent: gpu" in text and "assumed absent: api" in text
        assert "masked by openmind.assume()" in text  # the reason text of the route itself
        assert re.search(r"assumed absent: <b title='[^']*OPENMIND_ASSUME|assumed absent: <b title='[^']*assume", html)
        assert re.search(r"<b title='[^']*'>gpu</b>", html)
        assert "sk-test-secret" not in text + html


def test_route_renders_as_a_card_for_plain_python_users(ip):
    route = openmind.sense_or_simulate("humidity", duration="10s", rate="1Hz", progress=False).route
    html = ip.display_formatter.format(route)[0]["text/html"]  # registered by openmind.jupyter
    assert "openmind-card" in html and "humidity" in html
    assert "hardware_in_loop" in html  # excluded pathways come from the journal record it carries
    assert isinstance(card_for(route), DecisionCard)
    assert "muscle_memory/HYBRID" in ip.display_formatter.format(route)[0]["text/plain"]


def test_card_html_uses_theme_variables_and_escapes_text():
    rec = {"intent": "train", "name": "<script>x</script>", "ok": False, "pathway": None,
           "decision": None, "error": "boom <b>", "attempts": [
               {"pathway": "full_train", "decision": "HARDCODE", "outcome": "failed",
                "error": "RuntimeError: <img src=x>", "duration_ms": 3.2}]}
    html = DecisionCard(rec)._repr_html_()
    assert "<script>" not in html and "<img" not in html and "&lt;script&gt;" in html
    colors = re.findall(r"(?:color|background|border|border-left|border-bottom):([^;']+)", html)
    assert colors and all("var(--jp-" in c for c in colors), colors


def test_the_magic_writes_no_journal_record_of_its_own(ip):
    n = len(openmind.journal(1000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", OpenmindCellWarning)
        run(ip, "sense", SENSE)
    assert len(openmind.journal(1000)) == n + 1


def test_a_plain_cells_decision_is_not_shown_on_the_next_magic_cell(ip):
    run(ip, "sense", SENSE)  # the magic has now seen the journal up to here
    plain = ip.run_cell(SENSE.replace("temperature", "light"), store_history=True)
    assert plain.success
    with capture_output() as cap:
        result = ip.run_cell("%%openmind sense\n" + SENSE, store_history=True)
    assert result.success
    assert [c["name"] for c in cards(cap)] == ["temperature"]
    assert [r["name"] for r in openmind.journal(2)] == ["temperature", "light"]




def test_real_sense_call_in_a_cell_gets_its_card(ip):
    value, cap = run(ip, "sense", 'sig = openmind.sense_or_simulate("temperature", "2min", "1Hz")\nlen(sig)')
    assert value == 120
    [card] = cards(cap)
    assert (card["pathway"], card["decision"]) == ("muscle_memory", "HYBRID")
    assert "synthetic" in card["reason"]
    assert "samples" in cap.outputs[0].data["text/plain"]  # the result summary


def test_cell_source_option_reaches_sense_or_simulate(ip):
    with pytest.raises(openmind.AllPathwaysFailed):  # --source device, and no device here
        run(ip, "sense --source device --timeout 1s",
            'openmind.sense_or_simulate("temperature", "10s", "1Hz")')


def test_a_workers_cell_shows_its_workers_on_the_card(ip):
    """Every policy option the cell changed is on its card (the card's defaults once lacked
    `workers`, so `--workers 4` never showed)."""
    _, cap = run(ip, "sense --workers 4 --budget 90s", SENSE)
    assert openmind.journal(1)[0]["policy"]["workers"] == 4
    text = cap.outputs[0].data["text/plain"]
    assert "policy: budget=90.0, workers=4" in text
    assert "workers=4" in cap.outputs[0].data["text/html"]
    _, cap = run(ip, "sense", SENSE)
    assert "policy:" not in cap.outputs[0].data["text/plain"]  # defaults are not shown
