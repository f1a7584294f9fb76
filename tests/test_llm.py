"""The language model over the project's own OpenAI-compatible server on 127.0.0.1: plans, signal
descriptions and zero-shot text, through every failure a real API shows."""

from __future__ import annotations

import json
import logging
import sqlite3
import time

import numpy as np
import pytest

import openmind
from openmind.config import home
from openmind.errors import AllPathwaysFailed
from openmind.flow.journal import flush
from openmind.flow.resources import probe
from openmind.intents import ask
from openmind.pathways.cloud import http, llm
from openmind.pathways.cloud.llm import LLMError
from openmind.vocab import Decision, Pathway
from tests.fake_llm import VALID_PLAN, FakeLLM, closed_port, configured

KEY = "sk-openmind-test-7d3f0b9e2a51"
SITUATION = {"intent": "train", "name": "spectra", "rows": 1200, "shape": [1200, 40],
             "dtypes": ["float32"], "data_kind": "spectra", "labels": [0, 1, 2],
             "resources": {"gpu": False, "cores": 2}}


@pytest.fixture
def fake(monkeypatch):
    with configured(monkeypatch, KEY, OPENMIND_LLM_TIMEOUT="0.5") as f:
        yield f


def chat_calls(fake: FakeLLM) -> list[dict]:
    return fake.calls("/v1/chat/completions")


def decide(**policy):
    return ask.plan_or_heuristic(SITUATION, resources=probe(refresh=True), **policy)


def test_valid_plan_is_used_and_the_prompt_holds_no_data_and_no_key(fake):
    assert probe(refresh=True).api.available  # the key was checked with GET /v1/models
    plan, route = decide()
    assert (route.pathway, route.decision) == (Pathway.CLOUD_INFERENCE, Decision.MODEL)
    assert plan["source"] == "llm" and plan["architecture"]["hidden"] == VALID_PLAN["architecture"]["hidden"]
    call = chat_calls(fake)[0]
    assert call["headers"]["Authorization"] == f"Bearer {KEY}"
    sent = json.dumps(call["body"])
    assert KEY not in sent
    user = json.loads(call["body"]["messages"][1]["content"])
    assert user["shape"] == [1200, 40] and user["labels"] == ["0", "1", "2"]
    assert set(user) <= set(llm.SITUATION_KEYS)


def test_situation_keys_outside_the_allowlist_never_leave(fake):
    ask.plan_training({**SITUATION, "data": [[1.5, 2.5]], "api_key": KEY, "X": "secret rows"})
    sent = chat_calls(fake)[0]["body"]["messages"][1]["content"]
    assert "1.5" not in sent and "secret rows" not in sent and KEY not in sent


@pytest.mark.parametrize("reply, reason", [
    ("I think you should train a big model!", "not valid JSON"),
    (json.dumps({**VALID_PLAN, "epochs": -3}), "violates the schema at epochs"),
    (json.dumps({**VALID_PLAN, "architecture": {"hidden": [10**6]}}), "violates the schema at architecture/hidden/0"),
    (json.dumps({"pathway": "full_train"}), "violates the schema"),
    (json.dumps({**VALID_PLAN, "rm": "-rf"}), "violates the schema"),
])
def test_unusable_plans_fall_back_to_heuristics_with_the_reason_journaled(fake, reply, reason, caplog):
    fake.script("/v1/chat/completions", ("reply", reply))
    assert ask.plan_training(SITUATION) is None
    assert any(reason in r.getMessage() and "heuristics" in r.getMessage() for r in caplog.records)
    fake.script("/v1/chat/completions", ("reply", reply))
    plan, route = decide()
    assert plan["source"] == "heuristic" and (route.pathway, route.decision) == (Pathway.FULL_TRAIN, Decision.MODEL)
    assert reason in route.reason
    rec = openmind.journal(1)[0]
    assert rec["ok"] and rec["attempts"][0]["outcome"] == "failed" and reason in rec["attempts"][0]["error"]


def test_fenced_json_is_accepted(fake):
    fake.script("/v1/chat/completions", ("reply", "```json\n" + json.dumps(VALID_PLAN) + "\n```"))
    assert ask.plan_training(SITUATION)["epochs"] == VALID_PLAN["epochs"]


def test_401_is_one_clear_error(fake, monkeypatch):
    monkeypatch.setenv("OPENMIND_API_KEY", "sk-wrong-key-000000")
    with pytest.raises(LLMError, match="refused the key") as err:  # the probe's GET /v1/models
        ask.request_plan(SITUATION)
    assert "sk-wrong-key-000000" not in str(err.value) and chat_calls(fake) == []
    monkeypatch.setenv("OPENMIND_API_KEY", KEY)
    fake.script("/v1/chat/completions", ("json", 401, {"error": {"message": "key revoked"}}))
    with pytest.raises(LLMError, match="refused the API key") as err:  # revoked after the probe
        ask.request_plan(SITUATION)
    assert len(chat_calls(fake)) == 1  # a refusal is not retried


def test_429_with_retry_after_is_waited_out(fake):
    fake.script("/v1/chat/completions", ("json", 429, {"error": {"message": "rate limited"}}, {"Retry-After": "1"}))
    t0 = time.monotonic()
    assert ask.plan_training(SITUATION) == VALID_PLAN
    assert time.monotonic() - t0 >= 0.9 and len(chat_calls(fake)) == 2


def test_persistent_500_falls_back_after_the_retries(fake):
    fake.script("/v1/chat/completions", *[("json", 500, {"error": {"message": "overloaded"}})] * 3)
    plan, route = decide()
    assert plan["source"] == "heuristic"
    assert "HTTP 500: overloaded (after 3 attempts)" in route.reason
    assert len(chat_calls(fake)) == 3


def test_timeout_falls_back_without_retrying(fake):
    fake.script("/v1/chat/completions", ("hang", 5))
    t0 = time.monotonic()
    plan, route = decide()
    assert time.monotonic() - t0 < 3
    assert plan["source"] == "heuristic" and "no answer within 0.5s" in route.reason


def test_connection_refused_is_a_reason_not_a_crash(monkeypatch):
    http.reset()
    base = f"http://127.0.0.1:{closed_port()}/v1"
    monkeypatch.setenv("OPENMIND_API_BASE", base)
    monkeypatch.setenv("OPENMIND_API_KEY", KEY)
    assert not probe(refresh=True).api.available
    assert ask.plan_training(SITUATION) is None
    plan, route = decide()  # the router offers no language model: heuristics, and says why
    assert plan["source"] == "heuristic" and "no language model is reachable" in route.reason
    with pytest.raises(LLMError, match="no language model: .* unreachable"):
        ask.request_plan(SITUATION)


def test_a_masked_api_is_never_called(fake):
    openmind.assume(api="off")
    assert ask.plan_training(SITUATION) is None
    with pytest.raises(LLMError, match="masked"):
        ask.zero_shot(["a"])
    assert chat_calls(fake) == []


def test_describe_signal_valid_and_invalid(fake):
    fake.script("/v1/chat/completions",
                ("reply", json.dumps({"unit": "ppm", "typical": 420, "variation": 35, "period_s": 86400})),
                ("reply", json.dumps({"unit": "ppm", "typical": 420, "variation": -1})),
                ("reply", json.dumps({"unit": "ppm", "typical": 1, "variation": 1, "minimum": 5, "maximum": 2})))
    desc = ask.describe_signal("co2")
    assert desc["unit"] == "ppm" and desc["level"] == 420 and desc["sigma"] == 35 and desc["period"] == 86400
    from openmind.pathways.pattern import from_description

    pat = from_description("co2", desc)  # what sense simulates from
    assert (pat.level, pat.sigma, pat.unit, pat.source) == (420, 35, "ppm", "llm")
    assert ask.describe_signal("co2") is None
    assert ask.describe_signal("co2") is None
    assert json.loads(chat_calls(fake)[0]["body"]["messages"][1]["content"]) == {"signal": "co2"}


def test_zero_shot_text_through_infer_adaptive(fake):
    texts = ["I love it", "meh", "terrible, broke in a day"]
    fake.script("/v1/chat/completions", ("reply", json.dumps({"labels": [1, 0, -1]})))
    pred = openmind.infer_adaptive("reviews", texts, resources=probe(refresh=True))
    assert (pred.route.pathway, pred.route.decision) == (Pathway.CLOUD_INFERENCE, Decision.MODEL)
    assert pred.values.tolist() == [1, 0, -1]
    sent = json.loads(chat_calls(fake)[0]["body"]["messages"][1]["content"])
    assert sent == {"texts": texts}


def test_zero_shot_rejects_a_wrong_answer(fake):
    fake.script("/v1/chat/completions", ("reply", json.dumps({"labels": [1, 2]})),
                ("reply", json.dumps({"labels": [1]})))
    with pytest.raises(LLMError, match="zero-shot labels violates the schema"):
        ask.zero_shot(["a", "b"])
    with pytest.raises(AllPathwaysFailed, match="zero-shot"):
        openmind.infer_adaptive("reviews", ["a", "b"], resources=probe(refresh=True))


def test_the_key_appears_nowhere(fake, caplog, capsys):
    """Every scenario, then grep logs, journal rows, exceptions and HTML for the key."""
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    fake.script("/v1/chat/completions",
                ("echo_auth", 500), ("echo_auth", 500), ("echo_auth", 500),  # a server echoing the key
                ("reply", "not json " + KEY), ("reply", json.dumps({**VALID_PLAN, "epochs": KEY})),
                ("json", 429, {"error": KEY}, {"Retry-After": "0"}), ("echo_auth", 401),
                ("hang", 5))
    res = probe(refresh=True)
    texts += [str(res), res._repr_html_(), json.dumps(res.to_dict())]
    for _ in range(6):
        http.reset()
        try:
            ask.request_plan(SITUATION)
        except Exception as exc:  # noqa: BLE001 - collecting every message
            texts.append(str(exc) + repr(exc))
        plan, route = ask.plan_or_heuristic(SITUATION, resources=res)
        texts += [str(route), json.dumps(route.to_dict())]
    fake.script("/v1/chat/completions", ("reply", json.dumps({"labels": [1]})))
    pred = openmind.infer_adaptive("reviews", ["fine"], resources=res)
    texts += [pred._repr_html_(), repr(pred), str(pred.route)]
    texts += [r.getMessage() for r in caplog.records]
    out = capsys.readouterr()
    texts += [out.out, out.err]
    flush()  # infer's record is written by the journal's writer thread
    with sqlite3.connect(home() / "openmind.db") as con:
        texts += [row[0] for row in con.execute("SELECT record FROM journal")]
    assert len(texts) > 30
    leaks = [t for t in texts if KEY in t]
    assert not leaks, leaks[:1]
    assert any("***" in t for t in texts)  # the echoed key was seen and scrubbed


def test_unknown_signal_is_simulated_from_the_language_models_description(fake):
    fake.script("/v1/chat/completions",
                ("reply", json.dumps({"unit": "ppm", "typical": 420, "variation": 5, "minimum": 300})))
    sig = openmind.sense_or_simulate("co2", duration="5s", rate="1Hz")
    assert (sig.route.pathway, sig.route.decision) == (Pathway.CLOUD_INFERENCE, Decision.MODEL)
    assert sig.unit == "ppm" and sig.source == "llm" and 380 < float(np.mean(sig.values)) < 460
