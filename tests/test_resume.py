"""`openmind run --resume / -p / --replay` on a real kernel (nbclient): a run that failed picks up
where it failed, restoring what it got through; a parameter re-runs exactly the cells that read it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import nbformat as nbf
import pytest

from openmind.cli import main

SLOW = "time.sleep({s})\nx = sum(range(10**6)) * scale\nprint('slow', x)"


def notebook(tmp_path: Path, slow: float = 3) -> Path:
    """parameters (scale), imports, a slow cell (>= 3 s), a cell that fails until input.txt is a
    number, and one that reads only the parameter."""
    nb = nbf.v4.new_notebook()
    params = nbf.v4.new_code_cell("scale = 2\nshift = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbf.v4.new_markdown_cell("a slow cell, then one that reads a file"),
                nbf.v4.new_code_cell("import time, pathlib\nprint('hello')"),
                nbf.v4.new_code_cell(SLOW.format(s=slow)),
                nbf.v4.new_code_cell("y = int(pathlib.Path('input.txt').read_text()) + x\n"
                                     "print('y', y)"),
                nbf.v4.new_code_cell("z = shift * 10\nprint('z', z)")]
    path = tmp_path / "resume.ipynb"
    nbf.write(nb, path)
    return path


def cell_lines(text: str) -> dict[int, tuple[str, float]]:
    """{cell number: (restored|ran|failed, seconds)} from `openmind run`'s per-cell lines."""
    out = {}
    for line in text.splitlines():
        m = re.match(r"^  cell (\d+) .*?\b(restored|ran|failed)\s+([\d.]+) s\b", line)
        if m:
            out[int(m.group(1))] = (m.group(2), float(m.group(3)))
    return out


@pytest.mark.slow
def test_resume_restores_what_the_failed_run_got_through_and_runs_from_the_failure(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = notebook(tmp_path, slow=8)  # 5 % of it leaves a restore room on a loaded machine
    (tmp_path / "input.txt").write_text("oops")
    assert main(["run", str(path), "--timeout", "2m"]) == 1
    first = capsys.readouterr().out
    cells = cell_lines(first)
    assert cells[4][0] == "ran" and cells[4][1] >= 8.0, first
    assert cells[5][0] == "failed", first
    assert 6 not in cells, "the run stopped at the failing cell"

    (tmp_path / "input.txt").write_text("5")
    out = tmp_path / "executed.ipynb"
    assert main(["run", str(path), "--resume", "-o", str(out), "--timeout", "2m"]) == 0
    second = capsys.readouterr().out
    assert "which failed at cell 5" in second, second
    cells2 = cell_lines(second)
    assert cells2[4][0] == "restored", second
    executed = nbf.read(out, as_version=4)
    slow = executed.cells[3]
    # openmind's own time restoring it (the journal's), under 5 % of the first run's
    took = sum(d["duration_ms"] for d in slow.metadata["openmind"]["decisions"]) / 1000
    assert took < 0.05 * cells[4][1], (cells[4], cells2[4], took)
    assert cells2[5][0] == "ran" and cells2[6][0] == "ran", second
    assert slow.source == SLOW.format(s=8), "the executed notebook keeps the cell as written"
    assert slow.metadata["openmind"]["state"] == "restored"
    assert [d["decision"] for d in slow.metadata["openmind"]["decisions"]] == ["CACHED"]
    assert "slow 999999000000" in "".join(o.get("text", "") for o in slow.outputs)
    assert "y 999999000005" in "".join(o.get("text", "") for o in executed.cells[4].outputs)


@pytest.mark.slow
def test_a_parameter_reruns_exactly_the_cells_that_read_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = notebook(tmp_path)
    (tmp_path / "input.txt").write_text("5")
    assert main(["run", str(path), "--timeout", "2m"]) == 0
    capsys.readouterr()
    # the injected cell lands after the parameters cell: notebook cells shift by one from there
    assert main(["run", str(path), "--resume", "-p", "shift", "4", "--timeout", "2m"]) == 0
    text = capsys.readouterr().out
    cells = cell_lines(text)
    assert cells[1][0] == "restored" and cells[2][0] == "ran", text  # parameters; the injected cell
    assert cells[4][0] == "restored" and cells[5][0] == "restored", text  # import; slow (scale)
    assert cells[6][0] == "restored", text  # reads x only
    assert cells[7][0] == "ran", text       # reads shift
    assert main(["run", str(path), "--resume", "-p", "scale", "3", "--timeout", "2m"]) == 0
    cells = cell_lines(capsys.readouterr().out)
    assert [cells[n][0] for n in (5, 6, 7)] == ["ran", "ran", "restored"]


def test_bad_options_are_clear(tmp_path, capsys):
    path = notebook(tmp_path)
    assert main(["run", str(path), "--replay", "nosuchrun"]) == 2
    assert "no recorded run 'nosuchrun'" in capsys.readouterr().err
    assert main(["run", str(path), "--no-memory", "--resume"]) == 2
    assert main(["run", str(path), "-p", "1bad", "2"]) == 2
    assert "is not a Python name" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_restores_what_a_run_on_another_machine_computed(tmp_path):
    """A run recorded under one OPENMIND_HOME (machine A, publishing to a shared directory) is
    replayed under another (B, which trusts A's key): what A computed comes back, and the cell B
    changed is run there, saying why it could not be replayed."""
    from team_fixtures import Machine

    shared = tmp_path / "shared"
    shared.mkdir()
    team = {"OPENMIND_REMOTE": shared.as_uri()}
    a = Machine(tmp_path / "a", {**team, "OPENMIND_REMOTE_WRITE": "1"})
    b = Machine(tmp_path / "b", dict(team))

    def cli(machine: Machine, *args: str, cwd: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "openmind.cli", *args], cwd=cwd,
                              env=machine.environ(), capture_output=True, text=True, timeout=600)

    cells = ["import time\nimport numpy as np",
             "time.sleep(3)\nw = np.arange(12.0) * 2\nprint('trained', w.sum())",
             "print('last', w.mean())"]
    for where, last in (("a", cells[2]), ("b", "print('edited', w.max())")):
        (tmp_path / where).mkdir(exist_ok=True)
        nb = nbf.v4.new_notebook()
        nb.cells = [nbf.v4.new_code_cell(c) for c in (*cells[:2], last)]
        nbf.write(nb, tmp_path / where / "shared.ipynb")
    recorded = cli(a, "run", "shared.ipynb", cwd=tmp_path / "a")
    assert recorded.returncode == 0, recorded.stdout + recorded.stderr
    run = recorded.stdout.split("(run ", 1)[1].split(")", 1)[0]
    b.trust(cli(a, "key", cwd=tmp_path / "a").stdout.strip())
    replayed = cli(b, "run", "shared.ipynb", "--replay", run, "-o", "out.ipynb",
                   cwd=tmp_path / "b")
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    lines = cell_lines(replayed.stdout)
    assert lines[2][0] == "restored" and lines[2][1] < 1.0, replayed.stdout  # A's 3 s cell
    assert lines[3][0] == "ran", replayed.stdout
    assert "not in this machine's memory" in replayed.stdout, replayed.stdout
    executed = nbf.read(tmp_path / "b" / "out.ipynb", as_version=4)
    assert "trained 132.0" in "".join(o.get("text", "") for o in executed.cells[1].outputs)
    assert executed.cells[2].metadata["openmind"]["note"].startswith("what the recorded run")
