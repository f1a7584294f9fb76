"""The oracle of the cell pathway's differential tests: a hit must leave exactly what a fresh
re-run leaves (the names and what they share, the printed output, the files, the random state,
the environment, the user's modules), and a change must miss.

A pattern is the notebook's earlier cells (`setup`, run afresh each time as a Run All does, in a
real `__main__` module so classes defined in cells pickle as in a kernel), the remembered cell,
and a change made between two Run Alls. The second Run All goes through `openmind.run_cell`;
then the world is put back as it was before it, and the oracle runs the same setup and the
plain cell; the two must agree.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openmind
from openmind.intents.cellkey import SHELL_NAMES, Fingerprinter, Uncacheable
from openmind.intents.cellstate import rng_fingerprint, rng_states, set_rng

ENV_PREFIX = "OMTEST_"
MODULES = "mods"  # the user's own modules and packages live here (on sys.path)


@dataclass
class Pattern:
    name: str
    setup: str  # the notebook's earlier cells
    cell: str  # the remembered cell
    change: str = ""  # code run between the two Run Alls (files, modules, environment)
    setup2: str | None = None  # the earlier cells of the second Run All (default: setup)
    expect: str = "hit"  # "hit", "miss", "uncacheable" or "any" (only the oracle must hold)
    probe: str = ""  # an expression both namespaces must give the same value for (sharing, ...)
    files: dict[str, str] | None = None  # files there before the first run
    modules: dict[str, str] | None = None  # the user's modules (path under mods/ -> source)
    restart: bool = True  # each Run All in a new kernel (the user's modules imported afresh)


def _fp(value: Any) -> str:
    if isinstance(value, types.ModuleType):
        return f"module {value.__name__}"
    try:
        return Fingerprinter().of(value, "v")
    except Uncacheable:
        return f"unfingerprintable {type(value).__name__}"


def _skip(name: str) -> bool:
    return name.startswith("__") or name in SHELL_NAMES


def state(ns: dict[str, Any], out: str, root: Path) -> dict[str, Any]:
    """Everything a hit must reproduce, as comparable values."""
    names = {n: _fp(v) for n, v in ns.items() if not _skip(n)}
    groups: dict[int, list[str]] = {}
    for n, v in ns.items():
        if not _skip(n) and not isinstance(v, (types.ModuleType, int, float, str, bool, type(None))):
            groups.setdefault(id(v), []).append(n)
    shared = sorted(sorted(g) for g in groups.values() if len(g) > 1)
    files = {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else b"<dir>")
             for p in sorted(root.rglob("*")) if MODULES not in p.parts}
    rng = {k: rng_fingerprint(v) for k, v in rng_states().items()}
    env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
    mods = {f"{m}.{k}": _fp(v) for m, mod in sorted(_user_modules(root).items())
            for k, v in vars(mod).items() if not k.startswith("__")}
    return {"names": names, "shared": shared, "stdout": out, "files": files, "rng": rng,
            "env": env, "modules": mods}


def _user_modules(root: Path) -> dict[str, types.ModuleType]:
    where = str(root / MODULES)
    return {n: m for n, m in list(sys.modules.items())
            if (getattr(m, "__file__", None) or "").startswith(where)}


class World:
    """The files under `root`, the environment, the random state and the user's modules' values
    as they were: put back before the oracle's run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = {p: (p.read_bytes() if p.is_file() else None) for p in root.rglob("*")}
        self.env = {k: v for k, v in os.environ.items() if k.startswith(ENV_PREFIX)}
        self.rng = rng_states()
        self.mods = {}
        for name, mod in _user_modules(root).items():
            keep = {id(v): v for v in vars(mod).values()
                    if isinstance(v, (types.ModuleType, types.FunctionType, type))}
            self.mods[name] = (mod, copy.deepcopy(dict(vars(mod)), keep))

    def restore(self) -> None:
        for p in sorted(self.root.rglob("*"), reverse=True):
            if p not in self.files:
                p.unlink() if p.is_file() else p.rmdir()
        for p, data in self.files.items():
            if data is None:
                p.mkdir(parents=True, exist_ok=True)
            elif not p.is_file() or p.read_bytes() != data:
                p.write_bytes(data)
        for k in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            del os.environ[k]
        os.environ.update(self.env)
        set_rng(self.rng)
        for mod, values in self.mods.values():
            vars(mod).clear()
            vars(mod).update(values)


def fresh(setup: str, monkeypatch: Any) -> dict[str, Any]:
    """A new kernel's `__main__` with the earlier cells run in it."""
    main = types.ModuleType("__main__")
    monkeypatch.setitem(sys.modules, "__main__", main)
    exec(compile(setup, "<setup>", "exec"), vars(main))  # noqa: S102 - the test's own code
    return vars(main)


def routed(cell: str, ns: dict[str, Any], **kw: Any) -> tuple[Any, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        result = openmind.run_cell(cell, ns, **kw)
    return result, out.getvalue()


def plain(cell: str, ns: dict[str, Any]) -> str:
    from openmind.intents.cellio import parse, run_tree

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        run_tree(parse(cell), ns)
    return out.getvalue()


def forget_modules(p: Pattern) -> None:
    tops = {rel.split("/")[0].removesuffix(".py") for rel in p.modules or {}}
    for name in [n for n in sys.modules if n.split(".")[0] in tops]:
        del sys.modules[name]


def prepare(p: Pattern, root: Path, monkeypatch: Any) -> None:
    import importlib

    monkeypatch.chdir(root)
    monkeypatch.syspath_prepend(str(root / MODULES))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)  # an edit within a second is seen
    forget_modules(p)
    for rel, text in (p.files or {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    for rel, text in (p.modules or {}).items():
        path = root / MODULES / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    importlib.invalidate_caches()
    for k in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(k)


def _diff(got: Any, want: Any) -> Any:
    if got == want:
        return None
    if isinstance(got, dict) and isinstance(want, dict):
        return {k: (got.get(k), want.get(k)) for k in set(got) | set(want) if got.get(k) != want.get(k)}
    return (got, want)


def check(p: Pattern, root: Path, monkeypatch: Any, **kw: Any) -> Any:
    """Run the pattern; assert the oracle and the expectation. Returns the second result."""
    prepare(p, root, monkeypatch)
    first, _ = routed(p.cell, fresh(p.setup, monkeypatch), **kw)
    assert not first.cached, f"{p.name}: the first run cannot be a hit"
    if p.change:
        exec(compile(p.change, "<change>", "exec"), {"__name__": "change"})  # noqa: S102
    setup = p.setup2 if p.setup2 is not None else p.setup
    if p.restart:
        forget_modules(p)
    world = World(root)
    ns = fresh(setup, monkeypatch)
    second, out = routed(p.cell, ns, **kw)
    got = state(ns, out, root)
    probe = eval(p.probe, ns) if p.probe else None  # noqa: S307
    world.restore()
    if p.restart:
        forget_modules(p)
    oracle_ns = fresh(setup, monkeypatch)
    want = state(oracle_ns, plain(p.cell, oracle_ns), root)
    for part in want:
        diff = _diff(got[part], want[part])
        assert not diff, f"{p.name}: {part} differs from a re-run ({'hit' if second.cached else 'miss'}): {diff}"
    if p.probe:
        assert probe == eval(p.probe, oracle_ns), f"{p.name}: {p.probe!r} differs from a re-run"  # noqa: S307
    how = "hit" if second.cached else ("uncacheable" if second.uncacheable else "miss")
    if p.expect != "any":
        assert how == p.expect, f"{p.name}: expected a {p.expect}, got a {how} ({second.uncacheable or second.route.reason})"
    world.restore()
    forget_modules(p)
    return second
