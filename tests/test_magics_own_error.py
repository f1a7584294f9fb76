"""The seed's snippet in a fresh kernel: `%load_ext openmind.jupyter` binds `openmind`, and an error
the user's own code raises in a `%%openmind` cell reads as theirs, not as a routing failure
(issue 27). Driven in-process through IPython's `run_cell` (real routing, journal and cards)."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat as nbf
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

import openmind
from openmind.jupyter.card import MIME
from openmind.jupyter.run import run_notebook


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "openmind.jupyter")
    shell.user_ns.setdefault("openmind", openmind)
    yield shell
    shell.user_ns["openmind"] = openmind


def _plain(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def _cell(ip, source: str):
    with capture_output() as cap:
        result = ip.run_cell(source, store_history=True)
    return result, cap, [o.data[MIME] for o in cap.outputs if MIME in o.data]


def test_the_seeds_snippet_runs_on_a_real_kernel_with_openmind_bound_by_load_ext(tmp_path):
    """`%load_ext openmind.jupyter` then `openmind.sense_or_simulate(...)`, with no `import
    openmind`; a name the user already bound as `openmind` is left alone."""
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_code_cell("%load_ext openmind.jupyter"),
                nbf.v4.new_code_cell("%%openmind sense\nsig = openmind.sense_or_simulate("
                                     "'temperature', duration='30s', rate='1Hz', progress=False)\nlen(sig)"),
                nbf.v4.new_code_cell("%who"),
                nbf.v4.new_code_cell("%unload_ext openmind.jupyter\nopenmind = 'mine'\n"
                                     "%load_ext openmind.jupyter\nprint(openmind)")]
    path = tmp_path / "seed.ipynb"
    nbf.write(nb, path)
    result = run_notebook(path, timeout=120)
    assert result.error is None, result.error
    assert result.notebook.cells[1].outputs[-1]["data"]["text/plain"] == "30"
    assert [r["intent"] for c in result.cells for r in c.records] == ["sense"]
    assert "openmind" not in result.notebook.cells[2].outputs[0]["text"]  # hidden from %who: not the user's name
    assert result.notebook.cells[3].outputs[0]["text"] == "mine\n"


def test_an_unbound_openmind_is_the_users_name_error_not_a_train_decision(ip):
    ip.user_ns.pop("openmind", None)
    before = openmind.journal(1000)
    result, cap, cards = _cell(ip, "%%openmind train\nmodel = openmind.train_or_load('digits', X, y)")
    assert isinstance(result.error_in_exec, NameError) and "'openmind'" in str(result.error_in_exec)
    assert cards == [] and openmind.journal(1000) == before  # nothing was routed, nothing journaled
    assert "every pathway failed" not in cap.stdout


def test_an_own_code_error_is_shown_from_the_users_line_without_a_routing_card(ip):
    result, cap, cards = _cell(ip, "%%openmind train\nx = 3\ny = undefined_name + x")
    assert isinstance(result.error_in_exec, NameError)
    out = _plain(cap.stdout)
    assert "----> 2 y = undefined_name + x" in out and out.rstrip().endswith(
        "NameError: name 'undefined_name' is not defined")
    # the traceback is the user's: no frame of openmind's router, executor or cell runner
    assert "openmind/" not in out and "every pathway failed" not in out
    assert cards == []  # no "full_train ... every pathway failed" card above the traceback


def test_an_error_inside_openmind_keeps_its_frames_and_its_card(ip):
    """Not the user's line: a failed route still gets its card and openmind's error as is."""
    result, cap, cards = _cell(ip, "%%openmind sense --source device --timeout 1s\n"
                                   "openmind.sense_or_simulate('temperature', '10s', '1Hz')")
    assert isinstance(result.error_in_exec, openmind.AllPathwaysFailed)
    assert [c["ok"] for c in cards] == [False]


def test_an_own_code_error_after_a_routed_call_keeps_that_calls_card(ip):
    result, _, cards = _cell(ip, "%%openmind sense\n"
                                 "sig = openmind.sense_or_simulate('temperature', '30s', '1Hz')\n"
                                 "1 / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert [(c["intent"], c["ok"]) for c in cards] == [("sense", True)]


@pytest.mark.slow
def test_the_readmes_quickstart_runs_as_written_on_a_real_kernel(tmp_path):
    """README.md's quickstart cells, as printed (no `import openmind` after `%load_ext`)."""
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    cells = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert len(cells) >= 3 and cells[0].startswith("%load_ext openmind.jupyter")
    assert not any(re.search(r"^import openmind\b", c, flags=re.M) for c in cells)
    nb = nbf.v4.new_notebook()
    nb.cells = [nbf.v4.new_code_cell(c) for c in cells]
    nbf.write(nb, tmp_path / "readme.ipynb")
    result = run_notebook(tmp_path / "readme.ipynb", timeout=300)
    assert result.error is None, result.error
    intents = [r["intent"] for r in result.decisions()]
    assert "train" in intents and "infer" in intents
    assert all(r["ok"] for r in result.decisions())
