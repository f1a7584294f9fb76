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


# --- the house's size rules (issue 24) and its map (docs/architecture.md) kept true -------------

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
MAX_POSITIONAL = 8


def _modules() -> list[Path]:
    return sorted(p for p in (ROOT / "openmind").rglob("*.py") if "labextension" not in p.parts)


def test_no_module_over_500_lines():
    big = {str(p.relative_to(ROOT)): n for p in _modules()
           if (n := p.read_text().count("\n")) > MAX_MODULE_LINES}
    assert not big, f"split these by responsibility: {big}"


def _functions():
    import ast

    for p in _modules():
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                yield p.relative_to(ROOT), node


def test_no_function_over_80_lines():
    long = [f"{p}:{f.lineno} {f.name} ({f.end_lineno - f.lineno + 1})" for p, f in _functions()
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_no_public_function_takes_more_than_8_positional_parameters():
    """Beyond 8, keyword-only (`*`) or a small named dataclass (a request, a key, a config)."""
    wide = []
    for p, f in _functions():
        names = [a.arg for a in f.args.posonlyargs + f.args.args if a.arg not in ("self", "cls")]
        if not f.name.startswith("_") and len(names) > MAX_POSITIONAL:
            wide.append(f"{p}:{f.lineno} {f.name}({', '.join(names)})")
    assert not wide, wide


def test_the_architecture_map_names_only_modules_that_exist():
    """Every module or folder docs/architecture.md names (`flow/policy.py`, `serve/`, `intents/ask`)
    is in the tree, so the map cannot drift from the code."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"(?<![\w.])(?:openmind/)?((?:jupyter|intents|flow|pathways|memory|serve)"
                           r"(?:/[A-Za-z_]+)*(?:\.py|/)?)", doc))
    named |= {f"{m}.py" for m in re.findall(r"`((?:cli|vocab|errors|units|config))\.py`", doc)}
    assert len(named) > 20, named
    missing = []
    for name in sorted(named):
        base = ROOT / "openmind" / name.rstrip("/")
        if not (base.exists() or base.with_suffix(".py").exists()):
            missing.append(name)
    assert not missing, f"docs/architecture.md names modules that do not exist: {missing}"
