"""Data-parallel training on 2 CPU processes (gloo over loopback): the real train_or_load, real
worker processes, a real torchrun, a real SQLite store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil
import pytest

import openmind
from openmind.errors import AllPathwaysFailed, BadInput
from openmind.flow.policy import make_policy
from openmind.flow.resources import Resource, Resources
from openmind.flow.resources.gpu import gpu_present
from openmind.flow.router import Intent, route
from openmind.memory.blobs import entries

SMALL = {"hidden": 32, "epochs": 12, "progress": False, "seed": 0}
REPO = Path(__file__).resolve().parents[1]


def _home(monkeypatch, tmp_path, name):
    home = tmp_path / name
    monkeypatch.setenv("OPENMIND_HOME", str(home))
    from openmind.flow.resources import invalidate

    invalidate()
    return home


def test_two_processes_match_one_process_accuracy(digits_split, monkeypatch, tmp_path):
    Xtr, Xte, ytr, yte = digits_split
    _home(monkeypatch, tmp_path, "one")
    one = openmind.train_or_load("digits", Xtr, ytr, **SMALL)
    _home(monkeypatch, tmp_path, "two")
    two = openmind.train_or_load("digits", Xtr, ytr, workers=2, **SMALL)
    assert "workers" not in one.info
    assert two.info["workers"] == 2 and two.info["backend"] == "gloo"
    assert "2 data-parallel processes (DDP, gloo; workers=2 asked for)" in two.route.reason
    a1, a2 = one.score(Xte, yte), two.score(Xte, yte)
    assert abs(a1 - a2) <= 0.005, (a1, a2)
    # the same rows form each global batch, so the two runs learn (nearly) the same thing
    assert abs(one.info["val_accuracy"] - two.info["val_accuracy"]) <= 0.02
    # one entry in muscle memory, written by the parent, and one journal row for the call
    assert len(entries("model", "digits")) == 1
    assert len(openmind.journal()) == 1


def test_growth_on_two_processes_matches_one_process(digits_split, monkeypatch, tmp_path):
    """An extinction changes the net's widths mid-run: every rank grows the same way and DDP is
    re-wrapped around the new units, so the run still matches one process."""
    Xtr, Xte, ytr, yte = digits_split
    cfg = {**SMALL, "hidden": 16, "growth": True, "growth_patience": 1}
    _home(monkeypatch, tmp_path, "one")
    one = openmind.train_or_load("g", Xtr, ytr, **cfg)
    _home(monkeypatch, tmp_path, "two")
    two = openmind.train_or_load("g", Xtr, ytr, workers=2, **cfg)
    assert two.info["extinctions"] and two.info["extinctions"] == one.info["extinctions"]
    assert two.info["hidden_final"] == one.info["hidden_final"]
    assert abs(one.score(Xte, yte) - two.score(Xte, yte)) <= 0.005


def test_a_killed_worker_ends_the_run_with_one_clear_error(digits_split):
    Xtr, _Xte, ytr, _yte = digits_split
    me = psutil.Process()
    killed: list[int] = []
    before = {p.pid for p in me.children()}  # other tests' leftovers are not ours to kill

    def kill_one_worker() -> None:
        deadline = time.time() + 60
        while time.time() < deadline and not killed:
            kids = [p for p in me.children() if p.pid not in before]
            if len(kids) >= 2:
                time.sleep(1.0)  # let them meet and start training
                os.kill(kids[-1].pid, signal.SIGKILL)
                killed.append(kids[-1].pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    t0 = time.perf_counter()
    with pytest.raises(AllPathwaysFailed) as info:
        openmind.train_or_load("digits", Xtr, ytr, workers=2, fallback="none",
                               **{**SMALL, "epochs": 400, "patience": 400})
    took = time.perf_counter() - t0
    killer.join(5)
    assert killed, "no worker process was found to kill"
    text = str(info.value)
    assert "worker" in text and "died (killed by signal 9)" in text, text
    assert "the other workers were stopped" in text
    assert took < 60, took
    time.sleep(0.5)
    assert not [p for p in me.children()
                if p.pid not in before and p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    # the journal keeps the failure
    assert openmind.journal()[0]["ok"] is False


def _name(p: psutil.Process) -> list[str]:
    try:
        return [p.name(), *p.cmdline()]
    except psutil.Error:
        return []


TORCHRUN_SCRIPT = textwrap.dedent("""
    import os, json
    import openmind
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    m = openmind.train_or_load("digits", X[:800], y[:800], hidden=16, epochs=4, progress=False)
    rank = int(os.environ["RANK"])
    with open(os.path.join(os.environ["OUT"], f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "acc": m.score(X[800:], y[800:]), "workers": m.info.get("workers")}, f)
""")


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed next to this python")
def test_torchrun_two_ranks_one_memory_entry_one_journal_row(tmp_path, openmind_home):
    script = tmp_path / "train.py"
    script.write_text(TORCHRUN_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo", "OPENMIND_DIST_TIMEOUT": "60", "OUT": str(tmp_path)}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node=2", str(script)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    import json

    lines = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert sorted(r["rank"] for r in lines) == [0, 1]
    assert lines[0]["acc"] == lines[1]["acc"]  # every rank returns rank 0's model
    assert {r["workers"] for r in lines} == {2}
    assert len(entries("model", "digits")) == 1
    rows = openmind.journal()
    assert len(rows) == 1
    assert "torchrun group" in rows[0]["reason"]


# --------------------------------------------------------------------------- routing (pure)


def _resources(gpus: int = 0, cores: int = 2) -> Resources:
    host = Resource.present("host", f"{cores} cores", cores=cores)
    given = {"host": host}
    if gpus:
        given["gpu"] = gpu_present([{"index": i, "name": "H100"} for i in range(gpus)])
    return Resources.none(**given)


def _train_candidate(plan):
    return next(c for c in plan if c.pathway.value == "full_train")


def test_route_says_how_many_processes_and_scales_the_estimate():
    it = Intent.of("train", name="m", rows=10000, est_seconds=100.0, ancestor=False)
    one = _train_candidate(route(it, resources=_resources(), policy=make_policy()))
    two = _train_candidate(route(it, resources=_resources(), policy=make_policy(workers=2)))
    assert "workers" not in one.params
    assert two.params["workers"] == 2 and two.params["backend"] == "gloo"
    assert "with 2 data-parallel processes (DDP, gloo; workers=2 asked for)" in two.reason
    assert two.params["est_seconds"] == pytest.approx(100 / 1.6 + 3.0)
    # 2 processes on 2 cores: a budget of 70 s fits with them, not without
    tight = make_policy(workers=2, budget=70)
    assert route(it, resources=_resources(), policy=tight).first.params.get("fits_budget") is True
    assert route(it, resources=_resources(), policy=make_policy(budget=70)).first.params.get(
        "fits_budget") is False
    many = _train_candidate(route(it, resources=_resources(), policy=make_policy(workers=8)))
    assert "only 2 cores, so they share them" in many.reason


def test_route_one_process_per_gpu_with_nccl_injected_gpus():
    it = Intent.of("train", name="m", rows=10000, est_seconds=100.0, ancestor=False)
    cand = _train_candidate(route(it, resources=_resources(gpus=4), policy=make_policy()))
    assert cand.params["workers"] == 4 and cand.params["backend"] == "nccl"
    assert cand.params["device"] == "cuda" and "one per GPU: the probe sees 4" in cand.reason
    # more processes than GPUs: gloo on the CPU, said so
    cpu = _train_candidate(route(it, resources=_resources(gpus=2), policy=make_policy(workers=3)))
    assert cpu.params["backend"] == "gloo" and cpu.params["device"] == "cpu"
    assert "only 2 GPU(s) for NCCL" in cpu.reason
    # under torchrun the group's size wins
    joined = Intent.of(it, joined=2)
    j = _train_candidate(route(joined, resources=_resources(), policy=make_policy()))
    assert j.params["joined"] is True and "torchrun group" in j.reason


@pytest.mark.parametrize("bad", [0, -1, "two", 1.5, True])
def test_bad_workers_is_a_clear_error(bad):
    with pytest.raises(BadInput, match="workers must be a whole number"):
        make_policy(workers=bad)


@pytest.mark.filterwarnings("ignore::openmind.jupyter.magics.OpenmindCellWarning")
def test_magic_workers_option_trains_on_two_processes(digits_split):
    """`%%openmind train --workers 2` in a real IPython shell: the option is only the policy
    scope, and the plain train_or_load call in the cell trains on 2 processes."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    Xtr, _Xte, ytr, _yte = digits_split
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "openmind.jupyter")
    shell.user_ns.update(openmind=openmind, X=Xtr[:600], y=ytr[:600])
    with capture_output():
        model = shell.run_cell_magic(
            "openmind", "train --workers 2",
            "openmind.train_or_load('m', X, y, hidden=16, epochs=3, progress=False)")
    assert model.info["workers"] == 2 and model.info["start_method"] == "fork"
    assert "workers=2 asked for" in model.route.reason


TORCHRUN_FINE_TUNE = textwrap.dedent("""
    import os, json
    import openmind
    from sklearn.datasets import load_digits
    X, y = load_digits(return_X_y=True)
    cfg = dict(hidden=16, epochs=3, progress=False)
    first = openmind.train_or_load("digits", X[:900], y[:900], **cfg)
    tuned = openmind.train_or_load("digits", X[900:1200], y[900:1200], **cfg)  # small: a fine-tune
    rank = int(os.environ["RANK"])
    with open(os.path.join(os.environ["OUT"], f"rank{rank}.json"), "w") as f:
        json.dump({"rank": rank, "pathway": tuned.route.pathway.value if rank == 0 else None,
                   "acc": tuned.score(X[1200:], y[1200:]), "workers": tuned.info.get("workers")}, f)
""")


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed next to this python")
def test_torchrun_a_fine_tune_trains_on_every_rank(tmp_path, openmind_home):
    """The fine-tune route carries no `workers`: under torchrun it still trains on both ranks
    (the model says 2 workers), and neither rank waits for the other to time out."""
    import json

    script = tmp_path / "tune.py"
    script.write_text(TORCHRUN_FINE_TUNE)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1",
           "GLOO_SOCKET_IFNAME": "lo", "OPENMIND_DIST_TIMEOUT": "30", "OUT": str(tmp_path)}
    torchrun = str(Path(sys.executable).parent / "torchrun")
    proc = subprocess.run([torchrun, "--standalone", "--nproc-per-node=2", str(script)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert lines[0]["pathway"] == "fine_tune"
    assert lines[0]["acc"] == lines[1]["acc"]
    assert {r["workers"] for r in lines} == {2}
