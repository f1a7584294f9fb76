"""probe() on this machine and against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import time

import pytest
from httpfake import closed_port, models_api, serve

import openmind
from openmind.flow.resources import Resources

KEY = "sk-test-5ecret-do-not-leak-7f3a9c"


def test_probe_on_this_machine_is_fast_and_says_why(openmind_home):
    start = time.perf_counter()
    res = openmind.probe(refresh=True)
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"cold probe took {elapsed:.3f}s"
    assert isinstance(res, Resources)
    assert res.host.available and res.host.details["cores"] >= 1
    assert res.host.details["ram_total"] > 0
    for name in ("gpu", "api", "infer", "serial"):
        r = getattr(res, name)
        assert not r.available, f"{name} unexpectedly present on the CI machine: {r}"
        assert len(r.reason) > 10, f"{name} absent without a reason"
    assert "OPENMIND_API_BASE" in res.api.reason
    assert res.memory.available and res.memory.details["models"] == {}


def test_warm_probe_is_cached_and_refresh_reprobes():
    first = openmind.probe()
    assert openmind.probe() is first
    again = openmind.probe(refresh=True)
    assert again is not first and again.host.probed_at >= first.host.probed_at


def test_api_probe_valid_invalid_unreachable(monkeypatch):
    with serve(models_api(KEY)) as base:
        monkeypatch.setenv("OPENMIND_API_BASE", base)
        monkeypatch.setenv("OPENMIND_API_KEY", KEY)
        api = openmind.probe(refresh=True).api
        assert api.available and api.status == "valid", api
        assert api.details["models"] == ["tiny-1", "tiny-2"]

        monkeypatch.setenv("OPENMIND_API_KEY", "sk-wrong-key-123456")
        api = openmind.probe().api  # env changed: re-probed without refresh
        assert not api.available and api.status == "invalid" and "401" in api.reason

        monkeypatch.setenv("OPENMIND_API_BASE", base + "/v1")  # both base styles work
        monkeypatch.setenv("OPENMIND_API_KEY", KEY)
        assert openmind.probe().api.status == "valid"

    monkeypatch.setenv("OPENMIND_API_BASE", f"http://127.0.0.1:{closed_port()}")
    api = openmind.probe(refresh=True).api
    assert not api.available and api.status == "unreachable" and "unreachable" in api.reason


def test_api_probe_timeout_is_unreachable_within_its_own_timeout(monkeypatch):
    monkeypatch.setenv("OPENMIND_PROBE_TIMEOUT", "0.3")
    with serve(models_api(KEY, hang=2.0)) as base:
        monkeypatch.setenv("OPENMIND_API_BASE", base)
        monkeypatch.setenv("OPENMIND_API_KEY", KEY)
        start = time.perf_counter()
        res = openmind.probe(refresh=True)
        elapsed = time.perf_counter() - start
    assert res.api.status in ("unreachable", "timeout") and not res.api.available
    assert elapsed < 1.5, f"a hanging API held the probe for {elapsed:.2f}s"
    assert res.host.available  # the other probes were not held up


def test_api_without_models_route_is_unknown_not_invalid(monkeypatch):
    with serve(lambda h: (404, {"error": "no such route"})) as base:
        monkeypatch.setenv("OPENMIND_API_BASE", base)
        monkeypatch.setenv("OPENMIND_API_KEY", KEY)
        api = openmind.probe(refresh=True).api
    assert api.status == "unknown" and api.available


def test_infer_endpoint_ready_and_refused(monkeypatch):
    with serve(lambda h: (200, {}) if h.path == "/v2/health/ready" else (404, {})) as url:
        monkeypatch.setenv("OPENMIND_INFER_URL", url)
        assert openmind.probe(refresh=True).infer.status == "ready"
    monkeypatch.setenv("OPENMIND_INFER_URL", f"http://127.0.0.1:{closed_port()}")
    assert openmind.probe(refresh=True).infer.status == "unreachable"


def test_assume_masks_resources_and_reset_restores(monkeypatch):
    with serve(models_api(KEY)) as base:
        monkeypatch.setenv("OPENMIND_API_BASE", base)
        monkeypatch.setenv("OPENMIND_API_KEY", KEY)
        assert openmind.probe().api.available
        openmind.assume(api="off")
        masked = openmind.probe().api
        assert not masked.available and masked.status == "masked" and "api=off" in masked.reason
        openmind.assume("reset")
        assert openmind.probe().api.available
        monkeypatch.setenv("OPENMIND_ASSUME", "api=off,gpu=off")
        assert openmind.probe().api.status == "masked"


def test_key_never_in_status_json_journal_or_errors(monkeypatch, openmind_home):
    with serve(models_api(KEY)) as base:
        env = dict(os.environ, OPENMIND_API_BASE=base, OPENMIND_API_KEY=KEY)
        out = subprocess.run([sys.executable, "-m", "openmind.cli", "status", "--json"], env=env,
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["api"]["status"] == "valid"
        assert KEY not in out.stdout and KEY not in out.stderr

        monkeypatch.setenv("OPENMIND_API_BASE", base)
        monkeypatch.setenv("OPENMIND_API_KEY", KEY)
        res = openmind.probe(refresh=True)
        plan = openmind.route(openmind.Intent.of("sense", name="temperature", prior=True), resources=res)

        def leaky(candidate):
            raise RuntimeError(f"upstream said: bad token {KEY}")

        with pytest.raises(openmind.AllPathwaysFailed) as info:
            openmind.execute(plan, leaky, resources=res)
        assert KEY not in str(info.value)
        assert "***" in str(info.value)
        assert KEY not in repr(res) and KEY not in res._repr_html_() and KEY not in str(res)
    db = (openmind_home / "openmind.db").read_bytes()
    wal = openmind_home / "openmind.db-wal"
    blob = db + (wal.read_bytes() if wal.exists() else b"")
    assert KEY.encode() not in blob
    rows = openmind.journal(5)
    assert rows and KEY not in json.dumps(rows)


def test_a_failing_probe_is_absent_with_reason_not_an_exception(monkeypatch):
    probe_module = importlib.import_module("openmind.flow.resources")

    def broken():
        raise OSError("sensor bus on fire")

    monkeypatch.setitem(probe_module.PROBES, "gpu", broken)
    res = openmind.probe(refresh=True)
    assert not res.gpu.available and res.gpu.status == "error"
    assert "sensor bus on fire" in res.gpu.reason


def test_cgroup_memory_limit_is_honoured(monkeypatch):
    probe_module = importlib.import_module("openmind.flow.resources.host")

    monkeypatch.setattr(probe_module, "_cgroup_memory_limit", lambda: 2 << 30)
    monkeypatch.setattr(probe_module, "_cgroup_memory_usage", lambda: 1 << 30)
    host = probe_module.probe_host()
    assert host.details["ram_total"] == 2 << 30
    assert host.details["ram_available"] <= 1 << 30
    assert "cgroup" in host.reason
