"""The house rule: imports run one way (faces -> intents -> flow -> pathways -> memory -> ground),
checked by import-linter's layers contract in pyproject.toml; and the twins that must agree do."""

from __future__ import annotations

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
    assert "1 kept, 0 broken" in out.stdout


def test_an_upward_import_breaks_the_contract(tmp_path):
    """The contract can fail: the store (memory) importing the card (a face) is refused."""
    shutil.copytree(ROOT / "openmind", tmp_path / "openmind",
                    ignore=shutil.ignore_patterns("__pycache__", "labextension"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    store = tmp_path / "openmind" / "memory" / "store.py"
    store.write_text(store.read_text() + "\nfrom openmind.jupyter.card import card_for  # upward\n")
    out = lint(tmp_path)
    assert out.returncode == 1
    assert "openmind.memory.store -> openmind.jupyter.card" in out.stdout
