"""`openmind run --resume / -p / --replay` on a real kernel (nbclient): a run that failed picks up
where it failed, restoring what it got through; a parameter re-runs exactly the cells that read it."""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf
import pytest

from openmind.cli import main

SLOW = "time.sleep(3)\nx = sum(range(10**6)) * scale\nprint('slow', x)"


def notebook(tmp_path: Path) -> Path:
    """parameters (scale), imports, a slow cell (>= 3 s), a cell that fails until input.txt is a
    number, and one that reads only the parameter."""
    nb = nbf.v4.new_notebook()
    params = nbf.v4.new_code_cell("scale = 2\nshift = 1")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbf.v4.new_markdown_cell("a slow cell, then one that reads a file"),
                nbf.v4.new_code_cell("import time, pathlib\nprint('hello')"),
                nbf.v4.new_code_cell(SLOW),
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
        parts = line.split()
        if line.startswith("  cell") and len(parts) >= 5 and parts[-1] == "s":
            out[int(parts[1])] = (parts[3], float(parts[4]))
    return out


@pytest.mark.slow
def test_resume_restores_what_the_failed_run_got_through_and_runs_from_the_failure(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = notebook(tmp_path)
    (tmp_path / "input.txt").write_text("oops")
    assert main(["run", str(path), "--timeout", "2m"]) == 1
    first = capsys.readouterr().out
    cells = cell_lines(first)
    assert cells[4][0] == "ran" and cells[4][1] >= 3.0, first
    assert cells[5][0] == "failed", first
    assert 6 not in cells, "the run stopped at the failing cell"

    (tmp_path / "input.txt").write_text("5")
    out = tmp_path / "executed.ipynb"
    assert main(["run", str(path), "--resume", "-o", str(out), "--timeout", "2m"]) == 0
    second = capsys.readouterr().out
    assert "which failed at cell 5" in second, second
    cells2 = cell_lines(second)
    assert cells2[4][0] == "restored", second
    assert cells2[4][1] < 0.05 * cells[4][1], (cells[4], cells2[4])
    assert cells2[5][0] == "ran" and cells2[6][0] == "ran", second
    executed = nbf.read(out, as_version=4)
    slow = executed.cells[3]
    assert slow.source == SLOW, "the executed notebook keeps the cell as written"
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
