"""The command line's rough edges (issue 27), run as a user runs it: real subprocesses on a real
store. `deploy NAME out.h`, a reader that leaves the pipe, `colony serve`'s bind, counts in words."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import openmind
from openmind.cli import build_parser
from openmind.flow.rules import compute
from openmind.jupyter.run import CellDecisions, RunResult, report
from openmind.units import plural


def cli(*args: str, home, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, OPENMIND_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "openmind.cli", *args], env=env, capture_output=True,
                          text=True, timeout=120, **kw)


def _small_model(name: str = "blobs"):
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (60, 4)), rng.normal(3, 1, (60, 4))]).astype(np.float32)
    y = np.repeat([0, 1], 60)
    return openmind.train_or_load(name, X, y, hidden=[8], epochs=3, progress=False)


def test_deploy_takes_a_model_name_from_memory(openmind_home, tmp_path):
    model = _small_model()
    out = cli("deploy", "blobs", str(tmp_path / "blobs.h"), home=openmind_home)
    assert out.returncode == 0, out.stderr
    assert "Deployment(header" in out.stdout and "4->2" in out.stdout
    header = (tmp_path / "blobs.h").read_text()
    assert f"{len(model.pack())}" in header  # the newest version's packed bytes
    missing = cli("deploy", "nothing-by-this-name", str(tmp_path / "x.h"), home=openmind_home)
    assert missing.returncode == 2 and not (tmp_path / "x.h").exists()
    assert "neither a file of packed model bytes nor a model name" in missing.stderr
    assert "Traceback" not in missing.stderr


def test_a_reader_that_leaves_the_pipe_ends_the_command_quietly(openmind_home):
    """`openmind log --json | head -1`: the reader closes its end; the command stops with the
    status a SIGPIPE'd command has, and no BrokenPipeError traceback."""
    res = openmind.Resources.none()
    for _ in range(3):
        openmind.execute(openmind.route(openmind.Intent.of("sense", name="light", prior=True), resources=res),
                         lambda c: 1, resources=res)
    env = dict(os.environ, OPENMIND_HOME=str(openmind_home))
    proc = subprocess.Popen([sys.executable, "-m", "openmind.cli", "log", "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # no reader from the start: the first write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "Traceback" not in err and "BrokenPipe" not in err and "Exception ignored" not in err, err
    shell = subprocess.run(f"{sys.executable} -m openmind.cli log --json | head -1", shell=True, env=env,
                           capture_output=True, text=True, timeout=120)
    assert shell.stdout == "[\n" and "Traceback" not in shell.stderr, shell.stderr


def test_colony_serve_listens_on_loopback_unless_told_otherwise(openmind_home, tmp_path):
    args = build_parser().parse_args(["colony", "serve", "m", "--data", "rows.npz"])
    assert args.listen == "127.0.0.1:8080" and args.insecure is False
    np.savez(tmp_path / "rows.npz", X=np.zeros((4, 2)), y=np.array([0, 1, 0, 1]))
    for listen in ("0.0.0.0:8080", "[::]:8080", ":8080", "192.0.2.7:8080"):
        out = cli("colony", "serve", "m", "--data", str(tmp_path / "rows.npz"), "--listen", listen,
                  home=openmind_home)
        assert out.returncode == 2, (listen, out.stdout, out.stderr)
        assert "refusing to listen" in out.stderr and "--insecure" in out.stderr
    helptext = cli("colony", "serve", "--help", home=openmind_home).stdout
    assert "127.0.0.1:8080" in helptext and "TLS" in helptext and "--insecure" in helptext


def test_one_decision_is_one_decision(openmind_home):
    """The run report and `openmind memory ls` count in words: '1 decision in 1 cell'."""
    res = openmind.Resources.none()
    _, route = openmind.execute(openmind.route(openmind.Intent.of("sense", name="light", prior=True),
                                               resources=res), lambda c: 1, resources=res)
    [rec] = openmind.journal(1)
    out = io.StringIO()
    report(RunResult(None, [CellDecisions(0, 1, [rec])]), "one.ipynb", out)
    assert out.getvalue().splitlines()[0] == "openmind run one.ipynb: 1 decision in 1 cell"
    _small_model()
    listing = cli("memory", "ls", home=openmind_home).stdout.splitlines()
    assert listing[-1].startswith("1 entry, ") and listing[-1].endswith(" bytes")


@given(st.integers(min_value=0, max_value=10**6))
def test_plural_says_one_thing_once_and_many_things_in_the_plural(n):
    text = plural(n, "entry", "entries")
    assert text == (f"{n} entry" if n == 1 else f"{n} entries")
    assert plural(n, "decision").endswith("decision" if n == 1 else "decisions")


def test_a_one_core_machine_is_said_as_one_core():
    """The reason every CPU train prints ('CPU (1 core; no GPU: ...)') in log lines and cards."""
    res = openmind.Resources.none()  # a host of 1 core
    device, where = compute(res)
    assert device == "cpu" and where.startswith("CPU (1 core; no GPU: ")
    route = openmind.route(openmind.Intent.of("train", name="tiny", rows=10), resources=res)
    assert [c.reason for c in route.candidates] == ["training 'tiny' on CPU (1 core; no GPU: not given)"]
