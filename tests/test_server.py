"""The sidebar's server routes, served by a real Jupyter server (pytest-jupyter's jp_fetch).

pytest-jupyter serves under a base_url prefix ("/a%40b/"), so these also check that the routes
work behind a JupyterHub/proxy prefix.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import time

import pytest
from tornado.httpclient import HTTPClientError

import openmind
from openmind.flow.resources import Resource

probe_mod = importlib.import_module("openmind.flow.resources")
pytest_plugins = ["pytest_jupyter.jupyter_server"]

RESOURCE_NAMES = {"host", "gpu", "api", "infer", "serial", "memory"}


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"openmind.jupyter": True}}}


def _decide(signal: str) -> int:
    """A real decision: sense the signal (simulated here), which journals one record."""
    return openmind.sense_or_simulate(signal, duration="2s", rate="1Hz", progress=False).route.journal_id


async def _get(jp_fetch, route: str, **params) -> tuple[int, dict]:
    resp = await jp_fetch("openmind", "api", route, params=params)
    return resp.code, json.loads(resp.body)


async def test_resources_json_shape_and_mask(jp_fetch, monkeypatch):
    monkeypatch.setenv("OPENMIND_ASSUME", "gpu=off")
    code, body = await _get(jp_fetch, "resources", refresh="1")
    assert code == 200
    assert RESOURCE_NAMES <= set(body)
    assert isinstance(body["taken_at"], float)
    for name in RESOURCE_NAMES:
        r = body[name]
        assert isinstance(r["available"], bool), name
        assert isinstance(r["status"], str) and isinstance(r["reason"], str) and r["reason"], name
        assert isinstance(r["details"], dict), name
    assert body["gpu"] == {**body["gpu"], "available": False, "status": "masked"}
    assert "OPENMIND_ASSUME" in body["gpu"]["reason"]
    assert body["host"]["available"] is True


async def test_resources_never_show_the_api_key(jp_fetch, monkeypatch):
    secret = "sk-sidebar-secret-0123456789"
    monkeypatch.setenv("OPENMIND_API_BASE", f"http://127.0.0.1:9/v1?key={secret}")
    monkeypatch.setenv("OPENMIND_API_KEY", secret)
    resp = await jp_fetch("openmind", "api", "resources", params={"refresh": "1"})
    text = resp.body.decode()
    assert json.loads(text)["api"]["available"] is False
    assert secret not in text


async def test_journal_pages_by_id(jp_fetch):
    code, body = await _get(jp_fetch, "journal")
    assert code == 200 and body["records"] == [] and body["last_id"] is None
    assert "HYBRID" in body["glossary"]  # the words' tooltips come with the first page

    ids = [_decide(s) for s in ("temperature", "humidity", "light")]
    code, body = await _get(jp_fetch, "journal")
    assert [r["id"] for r in body["records"]] == ids  # oldest first
    assert body["last_id"] == ids[-1]
    rec = body["records"][0]
    assert rec["intent"] == "sense" and rec["name"] == "temperature" and rec["ok"] is True
    assert rec["pathway"] == "muscle_memory" and rec["decision"] == "HYBRID"
    assert "prior" in rec["reason"]
    assert set(rec["cell"]) == {"cell_id", "execution_count", "notebook"}
    assert isinstance(rec["ts"], float) and rec["duration_ms"] >= 0
    assert rec["attempts"][0]["outcome"] == "ok"

    code, body = await _get(jp_fetch, "journal", after=str(ids[0]))
    assert [r["id"] for r in body["records"]] == ids[1:]

    code, body = await _get(jp_fetch, "journal", after=str(ids[-1]))
    assert body == {"records": [], "last_id": ids[-1], "glossary": None}  # nothing new: keep asking after the same id

    code, body = await _get(jp_fetch, "journal", limit="2")
    assert [r["id"] for r in body["records"]] == ids[1:]  # the latest two, oldest first


@pytest.mark.parametrize(("params", "word"), [
    ({"after": "abc"}, "after"), ({"after": "-1"}, "after"),
    ({"limit": "0"}, "limit"), ({"limit": "100000"}, "limit"),
])
async def test_journal_bad_query_is_400_naming_it(jp_fetch, params, word):
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("openmind", "api", "journal", params=params)
    assert err.value.code == 400
    body = json.loads(err.value.response.body)
    assert word in body["message"] and repr(next(iter(params.values()))) in body["message"]


@pytest.mark.parametrize("route", ["resources", "journal", "memory", "meters"])
@pytest.mark.parametrize("auth", ["", "token wrong-token"])
async def test_routes_refuse_without_token(jp_fetch, route, auth):
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("openmind", "api", route, headers={"Authorization": auth})
    assert err.value.code == 403
    assert b"records" not in (err.value.response.body or b"")


async def test_slow_probe_does_not_block_the_server(jp_fetch, monkeypatch):
    """A probe that takes a second (a silent serial port) runs off the event loop."""

    def slow_serial() -> Resource:
        time.sleep(1.0)
        return Resource.absent("serial", "slow test probe")

    monkeypatch.setitem(probe_mod.PROBES, "serial", slow_serial)
    monkeypatch.setenv("OPENMIND_PROBE_TIMEOUT", "5")
    slow = asyncio.ensure_future(jp_fetch("openmind", "api", "resources", params={"refresh": "1"}))
    await asyncio.sleep(0.1)
    t0 = time.perf_counter()
    await jp_fetch("openmind", "api", "journal")
    fast = time.perf_counter() - t0
    assert not slow.done()
    assert fast < 0.5, f"journal took {fast:.2f}s while a probe was running"
    body = json.loads((await slow).body)
    assert body["serial"]["reason"] == "slow test probe"


async def test_memory_lists_entries_and_evicts_one_by_key(jp_fetch):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    openmind.train_or_load("tiny", X[:100], y[:100], hidden=[4], epochs=2, progress=False)
    code, body = await _get(jp_fetch, "memory")
    [entry] = body["entries"]
    assert entry["kind"] == "model" and entry["name"] == "tiny" and entry["size"] > 0
    assert body["bytes"] == entry["size"] and entry["used"] >= entry["created"]
    with pytest.raises(HTTPClientError) as err:  # a short prefix could evict several
        await jp_fetch("openmind", "api", "memory", entry["key"][:8], method="DELETE")
    assert err.value.code == 400
    resp = await jp_fetch("openmind", "api", "memory", entry["key"], method="DELETE")
    assert json.loads(resp.body)["removed"] == 1
    assert (await _get(jp_fetch, "memory"))[1]["entries"] == []
    assert openmind.probe().memory.reason.startswith("0 models, 0 signal patterns")
    with pytest.raises(HTTPClientError) as err:
        await jp_fetch("openmind", "api", "memory", entry["key"], method="DELETE")
    assert err.value.code == 404


async def test_meters_show_server_and_kernels_against_limits_and_gpu_reason(jp_fetch):
    resp = await jp_fetch("api", "kernels", method="POST", body=json.dumps({"name": "python3"}))
    kid = json.loads(resp.body)["id"]
    try:
        code, body = await _get(jp_fetch, "meters")
        assert code == 200 and body["limits"]["cpu_cores"] >= 1 and body["limits"]["ram_bytes"] > 0
        assert body["server"]["rss_bytes"] > 0 and body["server"]["cpu_percent"] >= 0
        [kernel] = [k for k in body["kernels"] if k["id"] == kid]
        assert kernel["pid"] and kernel["rss_bytes"] > 0 and kernel["reason"] is None
        gpu = body["gpu"]  # this machine has no NVIDIA driver: a reason, never an error
        assert gpu["devices"] or gpu["reason"]
    finally:
        await jp_fetch("api", "kernels", kid, method="DELETE")


async def test_decisions_follow_a_renamed_notebook(jp_fetch, jp_root_dir):
    import nbformat

    from openmind.flow.context import in_cell

    nbformat.write(nbformat.v4.new_notebook(), jp_root_dir / "old.ipynb")
    with in_cell("c1", 1, str(jp_root_dir / "old.ipynb")):
        _decide("temperature")
    rec = (await _get(jp_fetch, "journal"))[1]["records"][0]
    assert rec["cell"]["path"] == "old.ipynb" and rec["cell"]["notebook"] == "old.ipynb"
    await jp_fetch("api", "contents", "old.ipynb", method="PATCH",
                   body=json.dumps({"path": "sub-new.ipynb"}))
    rec = (await _get(jp_fetch, "journal"))[1]["records"][0]
    assert rec["cell"]["path"] == "sub-new.ipynb"  # the record moved with the file
    stored = openmind.journal(1)[0]["cell"]["notebook"]
    assert stored.endswith("sub-new.ipynb")
