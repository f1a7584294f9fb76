"""The CLI as a user runs it: a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openmind


def run(*args: str, home) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENMIND_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "openmind.cli", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_status_table_and_json(openmind_home):
    table = run("status", home=openmind_home)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["host", "gpu", "api", "infer", "serial", "memory"]
    assert "no CUDA GPU" in table.stdout
    data = json.loads(run("status", "--json", home=openmind_home).stdout)
    assert set(data) >= {"host", "gpu", "api", "infer", "serial", "memory"}
    assert data["gpu"]["available"] is False and data["gpu"]["reason"]


def test_log_shows_recorded_decisions(openmind_home):
    assert "empty" in run("log", home=openmind_home).stdout
    res = openmind.Resources.none()
    for _ in range(3):
        openmind.execute(openmind.route(openmind.Intent.of("sense", name="light", prior=True), resources=res),
                         lambda c: 1, resources=res)
    out = run("log", "-n", "2", home=openmind_home)
    assert out.returncode == 0
    rows = out.stdout.strip().splitlines()
    assert len(rows) == 2 and all("muscle_memory/HYBRID" in r and "sense light" in r for r in rows)
    data = json.loads(run("log", "--json", "-n", "5", home=openmind_home).stdout)
    assert len(data) == 3 and data[0]["id"] > data[-1]["id"]
