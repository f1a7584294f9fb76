"""Notebooks executed on a real ipykernel (nbclient), through `openmind run`'s own runner."""

from __future__ import annotations

from pathlib import Path

import nbformat as nbf
import pytest

from openmind.cli import main
from openmind.jupyter.card import MIME
from openmind.jupyter.run import quickstart_path, run_notebook

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

SENSE_CELL = """%%openmind sense --budget 30s
sig = openmind.sense_or_simulate("temperature", duration="5s", rate="1Hz", progress=False)"""


def cards(cell) -> list[dict]:
    return [o["data"][MIME] for o in cell.get("outputs", [])
            if o.get("output_type") == "display_data" and MIME in o.get("data", {})]


def make(tmp_path: Path, *sources: str) -> Path:
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_code_cell("%load_ext openmind.jupyter\nimport openmind\n"
                                     "from openmind.flow.router import Intent")]
    nb.cells += [nbf.v4.new_code_cell(s) for s in sources]
    path = tmp_path / "probe-run.ipynb"
    nbf.write(nb, path)
    return path


def test_run_prints_one_line_per_decision_and_fails_on_a_cell_error(tmp_path, capsys):
    path = make(tmp_path, SENSE_CELL, "x = 1", SENSE_CELL.replace("30s", "1m") + "\n1 / 0",
                "print('never runs')")
    out = tmp_path / "executed.ipynb"
    status = main(["run", str(path), "-o", str(out), "--timeout", "60s", "--no-memory"])
    text = capsys.readouterr().out
    assert status == 1
    lines = [ln for ln in text.splitlines() if ln.startswith("  cell")]
    assert len(lines) == 2, text
    assert lines[0].split()[:4] == ["cell", "2", "[2]", "sense"]
    assert "muscle_memory/HYBRID" in lines[0] and "built-in prior" in lines[0]
    assert lines[1].split()[:3] == ["cell", "4", "[4]"]
    assert "cell 4 raised ZeroDivisionError" in text
    executed = nbf.read(out, as_version=4)
    [card] = cards(executed.cells[1])
    assert (card["pathway"], card["decision"], card["execution_count"]) == ("muscle_memory", "HYBRID", 2)
    html = next(o["data"]["text/html"] for o in executed.cells[1].outputs if MIME in o.get("data", {}))
    assert "openmind-card" in html and "var(--jp-" in html
    assert cards(executed.cells[3]), "the failing cell still shows its decision"
    assert not executed.cells[4].get("outputs")  # the run stopped at the error


def test_run_rejects_a_missing_or_broken_notebook(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.ipynb")]) == 2
    assert "no notebook at" in capsys.readouterr().err
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert main(["run", str(bad)]) == 2
    assert "not a readable notebook" in capsys.readouterr().err


def test_the_quickstart_is_what_demo_runs():
    assert quickstart_path() == NOTEBOOKS / "quickstart.ipynb"
    nb = nbf.read(quickstart_path(), as_version=4)
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    for word in ("%%openmind train", "%%openmind sense", "%%openmind infer", "train_or_load",
                 "sense_or_simulate", "infer_adaptive"):
        assert word in code
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit without outputs"


def _routes(result) -> dict[str, list[tuple[str, str]]]:
    out: dict[str, list[tuple[str, str]]] = {}
    for r in result.decisions():
        out.setdefault(r["intent"], []).append((r["pathway"], r["decision"]))
    return out


@pytest.mark.slow
def test_quickstart_runs_twice_and_the_second_train_is_a_cached_hit(tmp_path):
    first = run_notebook(quickstart_path(), timeout=300, output=tmp_path / "first.ipynb")
    assert first.ok, first.error
    routes = _routes(first)
    assert routes["train"] == [("full_train", "HARDCODE")]
    assert routes["sense"] == [("muscle_memory", "HYBRID")]
    assert routes["infer"] == [("muscle_memory", "HARDCODE")]
    executed = nbf.read(tmp_path / "first.ipynb", as_version=4)
    shown = [c for cell in executed.cells if cell.cell_type == "code" for c in cards(cell)]
    assert [(c["intent"], c["pathway"]) for c in shown] == [
        ("train", "full_train"), ("sense", "muscle_memory"), ("infer", "muscle_memory")]
    assert "synthetic" in next(c["reason"] for c in shown if c["intent"] == "sense")

    second = run_notebook(quickstart_path(), timeout=300)
    assert second.ok, second.error
    routes = _routes(second)
    assert routes["train"] == [("muscle_memory", "CACHED")]
    assert routes["infer"][0] in (("muscle_memory", "CACHED"), ("muscle_memory", "HARDCODE"))


@pytest.mark.slow
def test_ebb_and_flow_on_a_bare_laptop_reads_the_virtual_device(tmp_path, vdev_binary):
    """No board: the notebook starts the firmware's virtual device and says so; its two real
    captures go over hardware_in_loop and the simulation-to-reality distance shrinks."""
    out = tmp_path / "ebb.ipynb"
    result = run_notebook(NOTEBOOKS / "ebb_and_flow.ipynb", timeout=300, output=out)
    assert result.ok, result.error
    routes = _routes(result)
    assert routes["sense"] == [("muscle_memory", "HYBRID"), ("hardware_in_loop", "HARDCODE"),
                               ("muscle_memory", "HYBRID"), ("hardware_in_loop", "HARDCODE")]
    assert routes["train"][0] == ("full_train", "HARDCODE")
    assert len(routes["train"]) == 2
    text = "".join(o.get("text", "") for c in nbf.read(out, as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "the firmware's virtual device runs on /dev/" in text
    assert "(shrinks)" in text


def test_a_kernel_that_dies_is_reported_with_its_last_words(tmp_path):
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_code_cell("import os, sys\nprint('goodbye', file=sys.__stderr__, flush=True)\n"
                                     "os._exit(3)")]
    path = tmp_path / "dies.ipynb"
    nbf.write(nb, str(path))
    result = run_notebook(path, timeout=60)
    assert result.error is not None and "the kernel died" in result.error
    assert "goodbye" in result.error


@pytest.mark.slow
def test_ingest_notebook_ingests_trains_validates_and_monitors(tmp_path):
    """notebooks/ingest.ipynb: HTTP fetched, then a 304 served from memory, a SQLite query, a
    train, a validation, a drift alert, and the last good copy once the server is down."""
    out = tmp_path / "ingest.ipynb"
    result = run_notebook(NOTEBOOKS / "ingest.ipynb", timeout=300, output=out)
    assert result.ok, result.error
    routes = _routes(result)
    assert routes["ingest"] == [("full_train", "HARDCODE"), ("muscle_memory", "CACHED"),
                                ("full_train", "HARDCODE"), ("muscle_memory", "CACHED")]
    assert routes["train"] == [("full_train", "HARDCODE")]
    assert routes["validate"][0][1] == "HARDCODE" and "monitor" in routes
    degraded = [r["degraded"] for r in result.decisions() if r["intent"] == "ingest"]
    assert degraded[:3] == [None, None, None] and "old" in degraded[3]
    text = "".join(o.get("text", "") for c in nbf.read(out, as_version=4).cells
                   if c.cell_type == "code" for o in c.outputs)
    assert "304 Not Modified" in text and "first drift at reading" in text
    assert "ingest 'readings' (2 versions)" not in text and "ingest 'readings'" in text
