"""`%openmind?`, option errors with "did you mean", short warnings and BadInput in notebooks
(issue 18): in-process IPython for the help and the usage errors, a real kernel (nbclient) for
what a notebook shows."""

from __future__ import annotations

import os
import re

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st
from IPython.core.error import UsageError
from IPython.core.interactiveshell import InteractiveShell

import openmind
from openmind.flow.policy import OPTIONS
from openmind.jupyter.magics import OpenmindMagics, did_you_mean
from openmind.vocab import Pathway


@pytest.fixture
def ip():
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "openmind.jupyter")
    shell.user_ns["openmind"] = openmind
    return shell


def test_help_names_each_magic_once_with_its_choices_and_the_words():
    doc = OpenmindMagics.openmind.__doc__
    assert "%%%openmind" not in doc and "%%openmind status" not in doc and "::" not in doc
    assert "%%openmind [--fallback" in doc and "%openmind status [--refresh]" in doc
    assert "%openmind log [-n N] [--all]" in doc
    assert "{train,sense,infer" in doc  # every intent the cell magic takes
    assert "{auto,cached,none}" in doc and "{adaptive,local,cloud,cached}" in doc
    prefer = doc[doc.index("--prefer <PATHWAY"):]
    assert all(p.value in prefer for p in Pathway)  # what --prefer takes
    for word in ("muscle_memory", "HARDCODE", "HYBRID", "CACHED", "MODEL"):
        assert re.search(rf"^  {word}\s+\S", doc, re.M), word  # explained, one per line


@pytest.mark.parametrize(("line", "hint"), [
    ("train --fallbak cached", "did you mean '--fallback'?"),
    ("train --fallback cahced", "did you mean 'cached'?"),
    ("train --strategy lokal", "did you mean 'local'?"),
    ("trian", "did you mean 'train'?"),
])
def test_a_near_miss_option_gets_did_you_mean(ip, line, hint):
    with pytest.raises(UsageError) as err:
        ip.run_cell_magic("openmind", line, "x = 1")
    assert hint in str(err.value) and "%openmind?" in str(err.value)


def test_line_commands_suggest_too(ip):
    with pytest.raises(UsageError, match="did you mean 'status'"):
        ip.run_line_magic("openmind", "stauts")
    with pytest.raises(UsageError, match="did you mean '--refresh'"):
        ip.run_line_magic("openmind", "status --refesh")
    assert did_you_mean("zzz", ["status", "log"]) == ""


def _run_notebook(tmp_path, cells: list[str]):
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    env_dir = tmp_path / "nb"
    env_dir.mkdir()
    client = NotebookClient(nb, timeout=60, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(env_dir)}})
    client.execute()
    return nb


def test_notebook_shows_bad_input_as_one_message_and_warnings_without_paths(tmp_path, monkeypatch):
    root = os.path.dirname(os.path.dirname(os.path.abspath(openmind.__file__)))
    monkeypatch.setenv("PYTHONPATH", root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    nb = _run_notebook(tmp_path, [
        "%load_ext openmind.jupyter\nimport openmind",
        "def helper(name):\n    return openmind.sense_or_simulate(name, duration='5s')\n"
        "sig = helper('no spaces allowed!')",
        "%%openmind infer\nsig2 = openmind.sense_or_simulate('temperature', duration='2s', rate='1Hz')",
        "print('still running')",
    ])
    [err] = [o for o in nb.cells[1].outputs if o["output_type"] == "error"]
    assert err["ename"] == "BadInput" and "has characters a name may not hold" in err["evalue"]
    tb = "\n".join(err["traceback"])
    assert len(err["traceback"]) <= 2, tb  # the message and the user's line, not 50 frames
    # the user's own line closest to openmind (inside their helper), not openmind's frames
    assert "from line 2: return openmind.sense_or_simulate(name" in tb
    assert "openmind/intents" not in tb and "site-packages" not in tb
    warned = "".join(o.get("text", "") for o in nb.cells[2].outputs if o.get("name") == "stderr")
    assert "the cell is marked 'infer' but ran sense" in warned
    assert "magics.py" not in warned and "self._report" not in warned and "/" not in warned.split(":")[0]
    assert nb.cells[3].outputs[0]["text"] == "still running\n"


def test_every_policy_option_is_one_definition_read_by_the_policy_the_magic_and_the_cli():
    """Policy's fields, the %%openmind arguments, the %config traits and the CLI's policy options
    all come from OPTIONS: the same names, help, words and defaults."""
    import argparse

    from openmind.flow.policy import Policy, add_arguments
    from openmind.jupyter.options import cell_parser

    assert Policy.names() == tuple(o.name for o in OPTIONS)
    cell = cell_parser.parser._option_string_actions
    traits = OpenmindMagics.class_traits(config=True)
    cli = argparse.ArgumentParser()
    add_arguments(cli, [o.name for o in OPTIONS])
    for opt in OPTIONS:
        assert getattr(Policy(), opt.name) == opt.default
        for action in (cell[f"--{opt.name}"], cli._option_string_actions[f"--{opt.name}"]):
            assert action.help == opt.help and tuple(action.choices or ()) == opt.words
        assert opt.help in traits[opt.name].help
        assert f"--{opt.name}" in OpenmindMagics.openmind.__doc__


@given(st.sampled_from([o for o in OPTIONS if o.kind == "choice"]), st.text(max_size=12), st.data())
def test_a_choice_option_takes_its_words_in_any_case_and_refuses_the_rest(opt, word, data):
    from openmind.errors import BadInput
    from openmind.flow.policy import make_policy

    accepted = data.draw(st.sampled_from(opt.words))
    typed = " " + "".join(c.upper() if data.draw(st.booleans()) else c for c in accepted) + " "
    assert getattr(make_policy(**{opt.name: typed}), opt.name) == accepted
    if word.strip().lower() not in opt.words and word.strip():
        with pytest.raises(BadInput, match=f"unknown {opt.name}"):
            make_policy(**{opt.name: word})
