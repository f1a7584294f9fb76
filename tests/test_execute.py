"""The executor: fall through with reasons, one clear error when all fail, never lose a result."""

from __future__ import annotations

import os
import stat

import pytest

import openmind
from openmind import BadInput, Decision, Intent, Pathway, Resource, Resources
from openmind.errors import AllPathwaysFailed


def _plan():
    res = Resources.none(memory=Resource.present("memory", "ready", models={"m": 1}, signals={}))
    return openmind.route(Intent.of("train", name="m", rows=100, ancestor=True), resources=res), res


class Box:
    pass


def test_falls_through_to_next_candidate_and_keeps_the_reason():
    plan, res = _plan()
    assert [c.pathway for c in plan] == [Pathway.FINE_TUNE, Pathway.FULL_TRAIN, Pathway.MUSCLE_MEMORY]
    calls = []

    def handlers(c):
        calls.append(c.pathway)
        if c.pathway is Pathway.FINE_TUNE:
            raise RuntimeError("feature count changed")
        return Box()

    result, route = openmind.execute(plan, handlers, resources=res)
    assert calls == [Pathway.FINE_TUNE, Pathway.FULL_TRAIN]
    assert route.pathway is Pathway.FULL_TRAIN and route.decision is Decision.HARDCODE
    assert [a.outcome for a in route.attempts] == ["failed", "ok"]
    assert "feature count changed" in route.attempts[0].error
    assert "feature count changed" in route.reason
    assert result.route is route
    rec = openmind.journal(1)[0]
    assert rec["ok"] and [a["outcome"] for a in rec["attempts"]] == ["failed", "ok"]


def test_mapping_handlers_by_pathway_and_decision():
    plan, res = _plan()
    result, route = openmind.execute(plan, {
        (Pathway.FINE_TUNE, Decision.HYBRID): lambda c: (_ for _ in ()).throw(ValueError("no")),
        Pathway.FULL_TRAIN: lambda c: "trained",
    }, resources=res)
    assert result == "trained" and route.pathway is Pathway.FULL_TRAIN


def test_all_fail_raises_one_error_listing_every_attempt():
    plan, res = _plan()

    def fail(c):
        raise RuntimeError(f"{c.pathway.value} broke")

    with pytest.raises(openmind.AllPathwaysFailed) as info:
        openmind.execute(plan, fail, resources=res)
    text = str(info.value)
    for p in ("fine_tune broke", "full_train broke", "muscle_memory broke"):
        assert p in text
    assert len(info.value.attempts) == 3
    rec = openmind.journal(1)[0]
    assert rec["ok"] is False and len(rec["attempts"]) == 3


def test_empty_plan_error_says_why_no_pathway_was_possible():
    plan = openmind.route(Intent.of("sense", name="soil_ph"), resources=Resources.none())
    with pytest.raises(openmind.AllPathwaysFailed) as info:
        openmind.execute(plan, lambda c: 1)
    assert "soil_ph" in str(info.value) and "no language model" in str(info.value)


def test_bad_input_is_raised_at_once_not_fallen_through():
    plan, res = _plan()
    calls = []

    def handler(c):
        calls.append(c)
        raise BadInput("X has 3 rows but y has 4 labels")

    with pytest.raises(BadInput, match="3 rows"):
        openmind.execute(plan, handler, resources=res)
    assert len(calls) == 1


def test_keyboard_interrupt_stops_the_call_and_is_journaled_interrupted():
    plan, res = _plan()
    calls = []

    def handler(c):
        calls.append(c)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C is not a failure to fall through
        openmind.execute(plan, handler, resources=res)
    assert len(calls) == 1
    rec = openmind.journal(1)[0]
    assert rec["interrupted"] is True and rec["ok"] is False
    assert [a["outcome"] for a in rec["attempts"]] == ["interrupted"]


def test_a_degraded_result_says_so_and_strict_refuses_it():
    from openmind.flow.executor import Served

    plan, res = _plan()
    result, route = openmind.execute(plan, lambda c: Served(Box(), degraded="a stand-in"),
                                     resources=res)
    assert route.degraded == "a stand-in" and result.route is route
    assert openmind.journal(1)[0]["degraded"] == "a stand-in"
    assert "[degraded: a stand-in]" in str(route)
    strict = openmind.route(plan.intent, resources=res, strict=True)
    with pytest.raises(AllPathwaysFailed, match="strict=True refuses a degraded result"):
        openmind.execute(strict, lambda c: Served(Box(), degraded="a stand-in"), resources=res)


def test_unwritable_journal_warns_and_still_returns(openmind_home, monkeypatch):
    plan, res = _plan()
    (openmind_home / "openmind.db").unlink(missing_ok=True)
    # a directory where the database file should be: no process, root or not, can open it
    (openmind_home / "openmind.db").mkdir(parents=True)
    os.chmod(openmind_home, stat.S_IRUSR | stat.S_IXUSR | stat.S_IWUSR)
    with pytest.warns(RuntimeWarning, match="could not write the journal"):
        result, route = openmind.execute(plan, lambda c: Box(), resources=res)
    assert isinstance(result, Box) and route.journal_id is None
