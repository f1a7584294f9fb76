"""The colony notebook on a real kernel (nbclient): drift within the stated bound, a fine-tune,
the validator preferring the new version on post-shift data, and a worse version shed."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat as nbf
import pytest

from openmind.jupyter.run import run_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "colony.ipynb"
BOUND = 50  # window + confirm * step, the monitor's defaults (40 + 2 * 5)


def text(cell) -> str:
    return "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")


def html(cell) -> str:
    return "".join(o.get("data", {}).get("text/html", "") for o in cell.get("outputs", []))


@pytest.mark.slow
def test_the_colony_notebook_detects_fine_tunes_validates_and_sheds(tmp_path):
    out = tmp_path / "colony.ipynb"
    result = run_notebook(NOTEBOOK, timeout=300, output=out)
    assert result.ok, result.error
    cells = [c for c in nbf.read(out, as_version=4).cells if c.cell_type == "code"]
    everything = "\n".join(text(c) for c in cells)
    print(everything)
    delay = int(re.search(r"drift detected (-?\d+) samples after the shift", everything).group(1))
    assert 0 <= delay <= BOUND
    routes = {(r["intent"], r["pathway"], r["decision"]) for r in result.decisions()}
    assert ("train", "fine_tune", "HYBRID") in routes  # the monitor's fine-tune
    assert ("monitor", "muscle_memory", "HARDCODE") in routes
    old, new = map(float, re.search(r"first version ([\d.]+), fine-tuned version ([\d.]+)", everything).groups())
    assert new > old + 0.1
    assert "healthy: False | shed:" in everything
    assert "fine-tuned from the worse version: False" in everything
    assert "infer used the shed version: False" in everything
    train_after = next(c for c in cells if "nxt = openmind.train_or_load" in c.source)
    assert "shed by the validator" in html(train_after)
    monitor_cell = next(c for c in cells if "openmind.monitor(" in c.source)
    assert "<svg" in html(monitor_cell) and "openmind-card" in html(monitor_cell)
    assert ("deploy", "muscle_memory", "HYBRID") in routes
    before, after = map(float, re.search(r"abstained rows: before ([\d.]+), after ([\d.]+)", everything).groups())
    assert after > before
    # a second run in the same store keeps the active-learning story, its trainings from memory
    again = run_notebook(NOTEBOOK, timeout=300, output=tmp_path / "again.ipynb")
    assert again.ok, again.error
    second = "\n".join(text(c) for c in nbf.read(tmp_path / "again.ipynb", as_version=4).cells
                       if c.cell_type == "code")
    story = re.compile(r"queued (\d+) abstained rows.*?abstained rows: before ([\d.]+), after ([\d.]+)", re.S)
    assert story.search(second).groups() == story.search(everything).groups()
    bc = [(r["pathway"], r["decision"]) for r in again.decisions() if r["name"] == "bc" and r["intent"] == "train"]
    assert bc == [("muscle_memory", "CACHED")] * 2
    assert "healthy: False | shed:" in second and "infer used the shed version: False" in second
