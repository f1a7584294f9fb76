"""The house rule: imports run one way (faces -> intents -> flow -> pathways -> memory -> ground),
checked by import-linter's layers contract in pyproject.toml; and the twins that must agree do."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
        "sys.exit(lint_imports_command())"]


def lint(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(LINT, cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_import_contract_is_kept():
    out = lint(ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert re.search(r"\b[2-9]\d* kept, 0 broken", out.stdout), out.stdout
    assert "the router imports no pathway" in out.stdout


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the package with `line` appended to `module` (a path under openmind/)."""
    shutil.copytree(ROOT / "openmind", tmp_path / "openmind",
                    ignore=shutil.ignore_patterns("__pycache__", "labextension"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "openmind" / module
    target.write_text(target.read_text() + "\n" + line + "\n")
    return tmp_path


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: the store (memory) importing the card (a face) is refused."""
    out = lint(_copy_with(tmp_path, "memory/store.py",
                          "from openmind.jupyter.card import card_for  # upward"))
    assert out.returncode == 1
    assert "openmind.memory.store -> openmind.jupyter.card" in out.stdout


def test_a_router_import_of_a_pathway_breaks_its_contract(tmp_path):
    """The router imports no pathway, not even lazily inside a function (flow -> pathways is
    downward, so only this contract refuses it)."""
    out = lint(_copy_with(tmp_path, "flow/router.py",
                          "def _priors():\n    from openmind.pathways.pattern import PRIOR_SIGNALS\n\n"
                          "    return PRIOR_SIGNALS"))
    assert out.returncode == 1
    assert "the router imports no pathway" in out.stdout and "1 broken" in out.stdout
    assert "openmind.flow.router -> openmind.pathways.pattern" in out.stdout
