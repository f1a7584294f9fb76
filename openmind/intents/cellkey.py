"""The key of a cell or a remembered function: what its result depends on, fingerprinted.

- its code, normalised through the AST (comments, blank lines and formatting do not count);
- the values it reads from the namespace (names used before the cell binds them for sure: a name
  bound only in an `if` or a `try` is also a read): arrays by their bytes (xxh3, as
  memory/blobs.py), tensors, DataFrames by their content, containers item by item, other objects
  through joblib's pickling hash (tensors inside by value, optimisers by their state_dict);
- the user's own functions and classes it reaches (defined in the notebook or in local modules),
  by their bytecode, followed transitively through the globals, closures and defaults they use,
  so editing a helper in another cell changes the key; library code counts by name and version;
  a user's module counts by what a run reads from it (cellwatch follows that at run time);
- the options and openmind's version (the caller adds those);
- what the run read at run time (files, module attributes, environment, random state: cellwatch),
  the `CellKey`'s trace.

A value that cannot be fingerprinted raises Uncacheable with the reason; code that reads names
through eval/exec/globals() is reported by `dynamic_reads` (uncacheable unless inputs are declared).
"""

from __future__ import annotations

import ast
import builtins
import functools
import hashlib
import os
import sys
import sysconfig
import types
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from openmind.memory.blobs import fingerprint as array_fingerprint
from openmind.memory.blobs import key_for

# Names IPython keeps in the user namespace for its own bookkeeping: never a cell's input.
SHELL_NAMES = frozenset({"In", "Out", "_", "__", "___", "_i", "_ii", "_iii", "_ih", "_oh", "_dh",
                         "exit", "quit", "get_ipython", "__builtins__", "__name__", "__doc__"})
_MAX_DEPTH = 12
_MAX_ITEMS = 256  # longer containers are hashed whole


class Uncacheable(Exception):
    """A value the key depends on cannot be fingerprinted; the message says which and why."""


# --------------------------------------------------------------------------- code


def normalised(tree: ast.AST) -> str:
    """A digest of the code's AST: comments, blank lines and formatting do not count."""
    dumped = ast.dump(tree, annotate_fields=False, include_attributes=False)
    return hashlib.sha256(dumped.encode()).hexdigest()[:32]


def _bound_by(node: ast.stmt) -> set[str]:
    """Names a top-level statement binds in the namespace."""
    names: set[str] = set()
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        names.add(node.name)
    elif isinstance(node, (ast.Import, ast.ImportFrom)):
        for alias in node.names:
            if alias.name != "*":
                names.add((alias.asname or alias.name).split(".")[0])
    for sub in ast.walk(node):
        if isinstance(sub, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)) and sub is not node:
            continue
        if isinstance(sub, ast.Name) and isinstance(sub.ctx, (ast.Store, ast.Del)):
            names.add(sub.id)
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    return names


# Top-level statements that bind their names whenever the cell goes past them; a name bound only
# inside an `if`, a loop, a `try` or a `with` may still be the notebook's when read later.
_SURE = (ast.Assign, ast.AnnAssign, ast.AugAssign, ast.Import, ast.ImportFrom, ast.FunctionDef,
         ast.AsyncFunctionDef, ast.ClassDef, ast.Expr, ast.Delete)


def reads_and_binds(tree: ast.Module) -> tuple[list[str], list[str]]:
    """(names the code reads before binding them for sure, names it may bind at top level), in
    order. A name bound only conditionally (`if "df" not in globals(): df = ...`) is also a read."""
    bound: set[str] = set()
    reads: list[str] = []
    binds: list[str] = []
    for stmt in tree.body:
        for sub in ast.walk(stmt):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id not in bound \
                    and sub.id not in reads:
                reads.append(sub.id)
        for name in _bound_by(stmt):
            if isinstance(stmt, _SURE):
                bound.add(name)
            elif name not in bound and name not in reads:
                reads.append(name)  # the value before the cell is what stays if the branch is not taken
            if name not in binds:
                binds.append(name)
    return reads, binds


# Calls through which a cell reads names the AST does not show.
_DYNAMIC = {"eval", "exec", "globals", "locals", "vars"}
# IPython line magics (as `get_ipython().run_line_magic(name, line)`) whose line is Python code
# (its reads are the cell's), and those that reach into the namespace by themselves.
_CODE_MAGICS = {"time", "timeit", "prun"}
_NAMESPACE_MAGICS = {"run", "store", "who", "whos", "who_ls", "reset", "xdel", "recall", "rerun",
                     "macro", "pinfo", "pinfo2", "psearch", "load"}


def _explicit(name: str, call: ast.Call) -> bool:
    """`vars(x)`, `eval(code, ns)`, `exec(code, ns)`: the names come from a value given, not from
    the namespace the code runs in."""
    given = len(call.args) + len(call.keywords)
    return (name == "vars" and given >= 1) or (name in ("eval", "exec") and given >= 2)


def dynamic_reads(tree: ast.AST) -> tuple[str | None, list[str]]:
    """(why the code reads names the AST cannot show, or None; the reads of code given to
    `%time`-like magics). `vars(x)` with an argument is an attribute read, not a namespace one."""
    extra: list[str] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in _DYNAMIC and not _explicit(func.id, node):
            return f"it calls {func.id}(), which reads names openmind cannot follow", extra
        if isinstance(func, ast.Attribute) and func.attr in ("run_line_magic", "run_cell_magic") \
                and node.args and isinstance(node.args[0], ast.Constant):
            magic = str(node.args[0].value)
            if magic in _NAMESPACE_MAGICS:
                return f"the %{magic} magic reads names openmind cannot follow", extra
            if magic in _CODE_MAGICS and len(node.args) > 1 and isinstance(node.args[-1], ast.Constant):
                try:
                    extra += reads_and_binds(ast.parse(str(node.args[-1].value)))[0]
                except SyntaxError:
                    return f"the %{magic} magic's code could not be read", extra
    return None, extra


def definitions(tree: ast.Module) -> ast.Module:
    """The top-level imports, functions and classes of the code: re-run on a hit, never pickled."""
    keep = [s for s in tree.body if isinstance(s, (ast.Import, ast.ImportFrom, ast.FunctionDef,
                                                    ast.AsyncFunctionDef, ast.ClassDef))]
    return ast.Module(body=keep, type_ignores=[])


# --------------------------------------------------------------------------- whose code is it


@functools.lru_cache(maxsize=1)
def library_roots() -> tuple[str, ...]:
    """Where installed code lives (the standard library, site-packages): not the user's."""
    paths = sysconfig.get_paths()
    roots = {paths.get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    roots |= {p for p in sys.path if p and ("site-packages" in p or "dist-packages" in p)}
    return tuple(sorted(os.path.realpath(r) for r in roots if r))


def _module_file(module: types.ModuleType | None) -> str | None:
    return getattr(module, "__file__", None) if module is not None else None


def is_users(module_name: str | None) -> bool:
    """True for the notebook (`__main__`, no module) and local modules outside the library roots."""
    if not module_name or module_name == "__main__":
        return True
    if module_name == "builtins" or module_name.split(".")[0] == "openmind":
        return False
    module = sys.modules.get(module_name)
    path = _module_file(module)
    if module is None or path is None:
        return module is None  # a function whose module is gone: treat it as the user's
    real = os.path.realpath(path)
    return not any(real.startswith(root + os.sep) for root in library_roots())


def _version(module_name: str | None) -> str:
    top = (module_name or "").split(".")[0]
    mod = sys.modules.get(top)
    return str(getattr(mod, "__version__", "")) if mod is not None else ""


def _library(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None) or type(obj).__qualname__
    return f"lib:{module}.{name}@{_version(module)}"


# --------------------------------------------------------------------------- fingerprints


class Fingerprinter:
    """Fingerprints values and code, following the user's functions transitively (cycle-safe)."""

    def __init__(self) -> None:
        self._code: dict[int, str] = {}  # id(function or class) -> fingerprint (also marks "in progress")
        # the globals the user's functions read, (their globals dict, name) -> fingerprint, so a
        # run can tell which it changed; and the functions that read names dynamically
        self.reached: dict[tuple[int, str], tuple[dict[str, Any], str]] = {}
        self.dynamic: list[str] = []

    def of(self, value: Any, where: str, depth: int = 0) -> str:
        if depth > _MAX_DEPTH:
            raise Uncacheable(f"{where} is nested more than {_MAX_DEPTH} levels deep")
        if value is None or isinstance(value, (bool, int, float, complex, str, bytes)):
            return f"{type(value).__name__}:{value!r}" if not isinstance(value, (str, bytes)) or \
                len(value) < 4096 else f"{type(value).__name__}:{hashlib.sha256(value if isinstance(value, bytes) else value.encode()).hexdigest()}"
        if isinstance(value, types.ModuleType):
            return self._module(value)
        if isinstance(value, (types.FunctionType, types.MethodType, type, functools.partial,
                              types.BuiltinFunctionType, staticmethod, classmethod, property)):
            return self.code(value, where, depth)
        array = self._array(value)
        if array is not None:
            return array
        if isinstance(value, (list, tuple, set, frozenset, dict)) and len(value) > _MAX_ITEMS:
            return self._other(value, where)  # one pass of joblib.hash, not one string per item
        if isinstance(value, (list, tuple)):
            inner = ",".join(self.of(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
            return f"{type(value).__name__}[{inner}]"
        if isinstance(value, (set, frozenset)):
            inner = ",".join(sorted(self.of(v, f"an item of {where}", depth + 1) for v in value))
            return f"{type(value).__name__}{{{inner}}}"
        if type(value) is dict or (isinstance(value, dict) and type(value).__module__ == "collections"):
            items = sorted((self.of(k, f"a key of {where}", depth + 1),
                            self.of(v, f"{where}[{k!r}]", depth + 1)) for k, v in value.items())
            return f"{type(value).__name__}{{{items}}}"
        return self._other(value, where)

    # ---- data
    def _array(self, value: Any) -> str | None:
        import numpy as np

        if isinstance(value, np.ndarray):
            if value.dtype.hasobject:
                return None  # joblib.hash walks object arrays
            return "nd:" + array_fingerprint(value)
        if isinstance(value, np.generic):
            return f"np:{value.dtype.str}:{value!r}"
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(value, torch.Tensor):
            t = value.detach().cpu()
            if t.dtype == torch.bfloat16:
                t = t.view(torch.int16)
            return f"tensor:{value.dtype}:{value.requires_grad}:" + array_fingerprint(t.numpy())
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(value, (pd.DataFrame, pd.Series, pd.Index)):
            try:
                rows = pd.util.hash_pandas_object(value, index=not isinstance(value, pd.Index)).to_numpy()
            except TypeError as exc:  # unhashable cells (lists in a column): joblib instead
                del exc
                return None
            shape = getattr(value, "dtypes", getattr(value, "dtype", None))
            names = list(value.columns) if isinstance(value, pd.DataFrame) else [value.name]
            return f"pd:{type(value).__name__}:{names!r}:{shape!r}:" + array_fingerprint(rows)
        return None

    def _other(self, value: Any, where: str) -> str:
        try:
            digest = _content_hash(value)
        except Exception as exc:  # noqa: BLE001 - any failure means "cannot fingerprint"
            raise Uncacheable(f"{where} ({type(value).__name__}) cannot be fingerprinted: "
                              f"{type(exc).__name__}: {exc}"[:300]) from None
        if digest is None:
            raise Uncacheable(f"{where} ({type(value).__name__}) cannot be fingerprinted")
        cls = type(value)
        kind = self.code(cls, f"the class of {where}", 0) if is_users(cls.__module__) else _library(cls)
        return f"obj:{kind}:{digest}"

    def _module(self, module: types.ModuleType) -> str:
        """A user's module counts by what the run reads from it (each attribute, followed at run
        time by cellwatch), not by its file; a library's by its version."""
        if is_users(module.__name__):
            return f"mod:{module.__name__}"
        return f"mod:{module.__name__}@{_version(module.__name__)}"

    # ---- code
    def code(self, obj: Any, where: str, depth: int = 0) -> str:
        """A function, method or class: the user's by bytecode (followed), a library's by name."""
        if isinstance(obj, functools.partial):
            return (f"partial({self.code(obj.func, where, depth)},{self.of(obj.args, where, depth + 1)},"
                    f"{self.of(dict(obj.keywords), where, depth + 1)})")
        if isinstance(obj, types.MethodType):
            return f"method({self.code(obj.__func__, where, depth)})"
        if isinstance(obj, (staticmethod, classmethod)):
            return f"{type(obj).__name__}({self.code(obj.__func__, where, depth)})"
        if isinstance(obj, property):
            return "property(" + ",".join(self.code(f, where, depth) for f in (obj.fget, obj.fset, obj.fdel)
                                          if f is not None) + ")"
        if not is_users(getattr(obj, "__module__", None)) or isinstance(obj, types.BuiltinFunctionType):
            return _library(obj)
        key = id(obj)
        if key in self._code:
            return self._code[key] or f"cycle:{getattr(obj, '__qualname__', '?')}"
        self._code[key] = ""  # in progress: a recursive helper refers to itself by name
        if isinstance(obj, type):
            digest = self._class(obj, where, depth)
        else:
            digest = self._function(obj, where, depth)
        self._code[key] = digest
        return digest

    def _function(self, fn: types.FunctionType, where: str, depth: int) -> str:
        h = hashlib.sha256()
        h.update(getattr(fn, "__qualname__", "").encode())
        names: list[str] = []
        _code_digest(fn.__code__, h, names)
        for i, default in enumerate(fn.__defaults__ or ()):
            h.update(self.of(default, f"default {i} of {fn.__qualname__}", depth + 1).encode())
        for k, v in sorted((fn.__kwdefaults__ or {}).items()):
            h.update(k.encode() + self.of(v, f"default {k} of {fn.__qualname__}", depth + 1).encode())
        for cellname, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
            try:
                content = cell.cell_contents
            except ValueError:  # empty cell
                content = None
            h.update(cellname.encode() + self.of(content, f"{cellname!r} in {fn.__qualname__}'s closure",
                                                 depth + 1).encode())
        g = fn.__globals__
        for name in sorted(set(names)):
            if name in g and name not in SHELL_NAMES:
                digest = self.of(g[name], f"{name!r} (used by {fn.__qualname__})", depth + 1)
                self.reached[(id(g), name)] = (g, digest)
                h.update(name.encode() + b"=" + digest.encode())
            elif name in _DYNAMIC and fn.__qualname__ not in self.dynamic and _reads_dynamically(fn.__code__):
                self.dynamic.append(fn.__qualname__)
        return "fn:" + h.hexdigest()[:32]

    def _class(self, cls: type, where: str, depth: int) -> str:
        h = hashlib.sha256(cls.__qualname__.encode())
        for base in cls.__bases__:
            if base is not object:
                h.update(self.code(base, f"a base of {cls.__qualname__}", depth + 1).encode())
        for name, attr in sorted(vars(cls).items()):
            if name in ("__dict__", "__weakref__", "__module__", "__qualname__", "__firstlineno__",
                        "__static_attributes__", "__slotnames__"):  # pickling adds __slotnames__
                continue
            h.update(name.encode() + b"=" + self.of(attr, f"{cls.__qualname__}.{name}", depth + 1).encode())
        return "cls:" + h.hexdigest()[:32]


@functools.lru_cache(maxsize=256)
def _reads_dynamically(code: types.CodeType) -> bool:
    """A function that names eval/exec/globals/vars: does its source read names dynamically?
    (Without its source, assume it does.)"""
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(code)))
    except (OSError, TypeError, SyntaxError):
        return True
    return dynamic_reads(tree)[0] is not None


@functools.lru_cache(maxsize=1)
def _hasher_class() -> type:
    """joblib's pickling hasher, with tensors (and parameters) hashed by their values: pickling
    a tensor writes its storage with a key that differs each time, so two equal models would
    never have the same fingerprint."""
    from joblib.hashing import NumpyHasher

    class Hasher(NumpyHasher):
        def save(self, obj: Any) -> None:
            torch = sys.modules.get("torch")
            if torch is not None and isinstance(obj, torch.optim.Optimizer):
                # its state is keyed by the parameter tensors (hashed by id when sorted): by
                # position instead, as state_dict() gives it
                obj = ("optimizer", type(obj).__qualname__, obj.state_dict())
            elif torch is not None and isinstance(obj, torch.Tensor):
                t = obj.detach().cpu()
                if t.dtype == torch.bfloat16:
                    t = t.view(torch.int16)
                obj = ("tensor", str(obj.dtype), type(obj).__name__, bool(obj.requires_grad),
                       t.contiguous().numpy())
            NumpyHasher.save(self, obj)

    return Hasher


def _content_hash(value: Any) -> str:
    return _hasher_class()(hash_name="md5").hash(value)


def _code_digest(code: types.CodeType, h: Any, names: list[str]) -> None:
    """Bytecode, constants and names; not line numbers (moving a helper does not change it)."""
    h.update(code.co_code)
    h.update(repr(code.co_names).encode() + repr(code.co_varnames).encode())
    names.extend(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            _code_digest(const, h, names)
        else:
            h.update(repr(const).encode())


def namespace_inputs(reads: list[str], namespace: Mapping[str, Any],
                     fp: Fingerprinter) -> dict[str, str]:
    """name -> fingerprint of each value the code reads from the namespace ('absent' when the
    name is not there and is not a builtin). Raises Uncacheable."""
    out: dict[str, str] = {}
    for name in reads:
        if name in SHELL_NAMES or (name.startswith("_i") and name[2:].isdigit()) or \
                (name.startswith("_") and name[1:].isdigit()):
            continue
        if name in namespace:
            out[name] = fp.of(namespace[name], repr(name))
        elif not hasattr(builtins, name):
            out[name] = "absent"
    return out


@dataclass(frozen=True)
class CellKey:
    """The key of one run of a cell (or remembered call): its code, the namespace values it read
    (fingerprinted before it ran), the context (options, openmind's and Python's versions) and its
    trace: what it read at run time (files, folders, module attributes, environment variables,
    random state), each with its fingerprint when first read. A later run is an exact hit when
    every one of those reads the same now."""

    code_id: str
    inputs: tuple[tuple[str, str], ...]
    context: str
    trace: tuple[tuple[tuple[str, ...], str], ...] = ()

    def digest(self) -> str:
        return key_for("cell", self.code_id, [list(i) for i in self.inputs], self.context,
                       [[list(dep), fp] for dep, fp in self.trace])

    def traced(self, trace: Mapping[tuple[str, ...], str]) -> CellKey:
        return replace(self, trace=tuple(sorted(trace.items())))

    def trace_json(self) -> list[list[Any]]:
        return [[list(dep), fp] for dep, fp in self.trace]


def first_line(source: str) -> str:
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            return line.strip()[:120]
    return "(empty cell)"


__all__ = ["CellKey", "Fingerprinter", "SHELL_NAMES", "Uncacheable", "definitions", "dynamic_reads",
           "first_line", "is_users", "library_roots", "namespace_inputs", "normalised",
           "reads_and_binds"]
