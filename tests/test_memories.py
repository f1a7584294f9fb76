"""Memory cells (issue 31): openmind.memories / recall / forget on a real store, and the same
listing behind `openmind memory ls|rm` and the sidebar's memory route (a real Jupyter server)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import openmind
from openmind.cli import main as cli
from openmind.errors import BadInput
from openmind.memory.blobs import entries
from openmind.pathways import pattern

pytest_plugins = ["pytest_jupyter.jupyter_server"]
SMALL = {"hidden": [8], "epochs": 3, "progress": False}


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"openmind.jupyter": True}}}


def _data(seed: int, n: int = 120):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    return rng.normal(size=(n, 4)) + 3 * y[:, None], y


@pytest.fixture
def remembered(tmp_path):
    """One of each: a model with two versions, a cell, a signal pattern, an ingested table."""
    a = openmind.train_or_load("clf", *_data(0), **SMALL)
    b = openmind.train_or_load("clf", *_data(1), **SMALL)
    ns = {"np": np}
    openmind.run_cell("weights = np.arange(5.0)\nlabel = 'seen'", ns)
    t = np.arange(0, 600.0, 1.0)
    pattern.save(pattern.fit("room_temp", t, 20 + np.sin(t / 60), "C"))
    (tmp_path / "d.csv").write_text("a,b\n1,2\n3,4\n")
    df = openmind.ingest(str(tmp_path / "d.csv"), name="table")
    return {"a": a, "b": b, "df": df}


def test_memories_lists_each_kind_with_what_it_holds(remembered):
    found = {(m.kind, m.name): m for m in openmind.memories()}
    assert len(found[("model", "clf")].versions) == 2
    cell = next(m for (k, _), m in found.items() if k == "cell")
    assert cell.name == "weights = np.arange(5.0)" and cell.detail["binds"] == ["label", "weights"]
    assert found[("signal", "room_temp")].detail["unit"] == "C"
    table = found[("ingest", "table")]
    assert table.detail["rows"] == 2 and table.detail["source"].endswith("d.csv")
    assert {m.kind for m in openmind.memories("model")} == {"model"}
    assert [m.name for m in openmind.memories("ingest")] == ["table"]
    with pytest.raises(BadInput, match="unknown memory kind 'models'"):
        openmind.memories("models")


def test_recall_brings_each_back_as_it_was(remembered):
    X, _ = _data(2)
    newest, first = openmind.recall("clf"), openmind.recall("clf", version=1)
    assert np.array_equal(newest.predict(X), remembered["b"].predict(X))
    assert np.array_equal(first.predict(X), remembered["a"].predict(X))
    assert np.array_equal(openmind.recall("clf", version=-1).predict(X), newest.predict(X))
    assert np.array_equal(openmind.recall("weights"), np.arange(5.0))  # a name a cell bound
    assert openmind.recall("label") == "seen"
    assert openmind.recall("room_temp").unit == "C"
    assert openmind.recall("table").equals(remembered["df"])
    with pytest.raises(BadInput, match="nothing named 'nope' is remembered"):
        openmind.recall("nope")
    with pytest.raises(BadInput, match="has no version 3"):
        openmind.recall("clf", version=3)


def test_forget_removes_every_version_and_says_how_many(remembered):
    before = len(entries())
    assert openmind.forget("clf") >= 2
    assert not [m for m in openmind.memories() if m.name == "clf"]
    with pytest.raises(BadInput):
        openmind.recall("clf")
    assert openmind.forget("weights") == 1  # the cell that bound it
    assert openmind.forget("weights") == 0  # forgetting what is not there: nothing, no error
    assert len(entries()) < before and openmind.recall("table") is not None


def test_cli_lists_and_forgets_by_name(remembered, capsys):
    assert cli(["memory", "ls"]) == 0
    out = capsys.readouterr().out
    assert "clf" in out and "binds label, weights" in out and "table" in out and "room_temp" in out
    assert cli(["memory", "ls", "--kind", "ingest", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in listed] == ["table"] and listed[0]["detail"]["rows"] == 2
    assert cli(["memory", "rm", "table"]) == 0
    assert "forgot 'table'" in capsys.readouterr().out
    assert openmind.memories("ingest") == []


async def test_sidebar_memory_route_lists_what_memories_lists(remembered, jp_fetch):
    resp = await jp_fetch("openmind", "api", "memory")
    body = json.loads(resp.body)
    shown = {(e["kind"], e["name"]) for e in body["entries"]}
    assert shown == {(m.kind, m.name) for m in openmind.memories()}
    clf = [e for e in body["entries"] if e["name"] == "clf"]
    assert sorted(e["version"] for e in clf) == [1, 2] and len(body["entries"]) == len(entries())
