"""What a remembered cell really touched while it ran, followed at run time.

One audit hook (`sys.addaudithook`, PEP 578: it cannot be removed, so it is installed once and
returns at once unless a remembered cell is running) sees the files the run opens (for reading:
an input keyed by content; for writing: an output kept and written back on a hit), the folders it
lists, the sockets it connects (the entry is external: a hit says how old it is) and what openmind
cannot follow (processes started, files deleted or renamed that the run did not make): those make
the cell uncacheable, with the reason in plain words.

While a cell runs, the user's own modules and `os.environ` are watched by swapping their class for
a subclass that records reads (the value when first read) and writes; the swap is undone after.
Random state (numpy's global generator, `random`, torch's) is read before and after: a run that
moved it depended on it (an input) and its state after is an output.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from openmind.intents.cellkey import Fingerprinter, Uncacheable, is_users, library_roots
from openmind.intents.cellstate import (
    dir_fingerprint,
    file_fingerprint,
    identities,
    portable,
    tree_fingerprint,
)

Dep = tuple[str, ...]  # ("file", path) ("dir", path) ("tree", path) ("env", NAME) ("attr", module, name) ("rng", which)

_READ_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_SKIP_PREFIXES = ("/proc/", "/sys/", "/dev/")


@dataclass
class Watch:
    """What one run touched. `deps` are inputs with their fingerprint when first touched."""

    deps: dict[Dep, str] = field(default_factory=dict)
    written: dict[str, str] = field(default_factory=dict)  # path -> "file" | "dir", in order
    mod_written: set[tuple[str, str]] = field(default_factory=set)
    env_written: set[str] = field(default_factory=set)
    external: list[str] = field(default_factory=list)
    seeded: set[str] = field(default_factory=set)  # generators seeded before they were drawn from
    fp: Fingerprinter = field(default_factory=Fingerprinter)  # notes the globals functions reach
    shapes: dict[Dep, Any] = field(default_factory=dict)  # module attributes' children when read
    rmtree_made: bool = False  # the last tree the run removed was one it made
    gone: set[str] = field(default_factory=set)  # what it made and removed again
    # threads that were running before the cell (the kernel's own: history, heartbeat): what they
    # touch is not the cell's; threads the cell starts are followed
    others: frozenset[threading.Thread] = frozenset()  # the objects, not their reusable idents
    reasons: list[str] = field(default_factory=list)
    skip: tuple[str, ...] = ()
    busy: bool = False  # the watch is fingerprinting: what that touches is openmind's, not the cell's

    def why(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)


_active: Watch | None = None
_lock = threading.Lock()
_hooked = False


# --------------------------------------------------------------------------- files


def _path(raw: Any) -> str | None:
    if isinstance(raw, int) or raw is None:
        return None
    try:
        path = os.path.abspath(os.fsdecode(raw))
    except (TypeError, ValueError):
        return None
    return path


def _ignored(watch: Watch, path: str) -> bool:
    return (path.startswith(_SKIP_PREFIXES) or path.endswith(".pyc") or "__pycache__" in path
            or path.startswith(watch.skip))


def _opened(watch: Watch, args: tuple) -> None:
    path = _path(args[0])
    if path is None or _ignored(watch, path) or path in watch.gone:
        return
    mode, flags = args[1], args[2] if len(args) > 2 else 0
    writes = any(c in mode for c in "wxa+") if isinstance(mode, str) else bool(flags & _READ_FLAGS)
    truncates = (isinstance(mode, str) and any(c in mode for c in "wx")) or \
        (not isinstance(mode, str) and bool(flags & os.O_TRUNC))
    if path not in watch.written and not truncates and ("file", path) not in watch.deps:
        watch.deps[("file", path)] = file_fingerprint(path)
    if writes:
        watch.written.setdefault(path, "file")


def _removed(watch: Watch, args: tuple, what: str, tree: bool = False) -> None:
    if len(args) > 1 and isinstance(args[1], int) and args[1] >= 0 and not tree:
        # relative to a folder descriptor: shutil.rmtree at work inside the tree it was given
        if not watch.rmtree_made:
            watch.why(f"it {what} files openmind cannot name (openmind cannot put them back)")
        return
    path = _path(args[0])
    if path is None or _ignored(watch, path) or path in watch.gone:
        return
    if tree:
        watch.rmtree_made = path in watch.written
    made = [p for p in watch.written if p == path or p.startswith(path + os.sep)]
    if made and path in watch.written:
        for p in made:
            del watch.written[p]
        watch.gone.update(made)
        return
    watch.why(f"it {what} {path}, which it did not make (openmind cannot put that back)")


def _renamed(watch: Watch, args: tuple) -> None:
    src, dst = _path(args[0]), _path(args[1])
    if src is None or dst is None or _ignored(watch, src):
        return
    if src in watch.written:
        watch.written[dst] = watch.written.pop(src)
        for p in [p for p in watch.written if p.startswith(src + os.sep)]:
            watch.written[dst + p[len(src):]] = watch.written.pop(p)
        return
    watch.why(f"it renames {src}, which it did not make (openmind cannot put that back)")


def _listed(watch: Watch, args: tuple) -> None:
    path = _path(args[0] if args and args[0] is not None else ".")
    if path is not None and ("dir", path) not in watch.deps and not _ignored(watch, path) \
            and path not in watch.written and path not in watch.gone:
        watch.deps[("dir", path)] = dir_fingerprint(path)


def _importing() -> bool:
    """Whether the import system is at work (scanning sys.path, reading a module's source, looking
    up an installed distribution's version): the modules a run imports are keyed by their files
    once imported (`_imported`), libraries by name and version, not by that."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib") or name.endswith(_METADATA):
            return True
        frame = frame.f_back
    return False


def _hook(event: str, args: tuple) -> None:
    watch = _active
    if watch is None or watch.busy:
        return
    handler = _EVENTS.get(event)
    if handler is not None and threading.current_thread() not in watch.others:
        watch.busy = True
        try:
            if event not in _READS or not _importing():
                handler(watch, args)
        except Exception as exc:  # noqa: BLE001 - following a run must never break it
            watch.why(f"openmind could not follow its {event} ({type(exc).__name__}: {exc})"[:300])
        finally:
            watch.busy = False


def _imported(watch: Watch, before: set[str]) -> None:
    """The user's modules the run imported: inputs by the content of their files."""
    for name in set(sys.modules) - before:
        path = getattr(sys.modules.get(name), "__file__", None)
        if isinstance(path, str) and os.path.isabs(path) and is_users(name) \
                and is_users(name.split(".")[0]) and not _ignored(watch, path):
            watch.deps.setdefault(("file", path), file_fingerprint(path))


_READS = {"open", "os.listdir", "os.scandir"}
_METADATA = (os.path.join("importlib", "metadata", "__init__.py"),
             os.path.join("importlib", "metadata", "_functools.py"))
_EVENTS = {
    "open": _opened,
    "os.listdir": _listed,
    "os.scandir": _listed,
    "os.mkdir": lambda w, a: (p := _path(a[0])) and not _ignored(w, p) and w.written.setdefault(p, "dir"),
    "os.remove": lambda w, a: _removed(w, a, "deletes"),
    "os.rmdir": lambda w, a: _removed(w, a, "deletes"),
    "shutil.rmtree": lambda w, a: _removed(w, a, "deletes", tree=True),
    "os.rename": _renamed,
    "os.truncate": lambda w, a: _removed(w, a, "truncates"),
    "os.link": lambda w, a: w.why("it makes links between files"),
    "os.symlink": lambda w, a: w.why("it makes links between files"),
    "socket.connect": lambda w, a: w.external.append(str(a[1])[:80]),
    "socket.sendto": lambda w, a: w.external.append(str(a[1])[:80]),
    "subprocess.Popen": lambda w, a: w.why(f"it starts a process ({os.path.basename(str(a[0]))}): "
                                          f"openmind cannot follow what that reads"),
    "os.system": lambda w, a: w.why("it runs a shell command: openmind cannot follow what that reads"),
    "os.posix_spawn": lambda w, a: w.why("it starts a process: openmind cannot follow what that reads"),
    "sqlite3.connect": lambda w, a: str(a[0]) != ":memory:" and w.why(
        "it opens a SQLite database: openmind cannot follow what it reads and writes there"),
}


# --------------------------------------------------------------------------- modules and env


def _first_read(watch: Watch, dep: Dep, value: Any, where: str) -> None:
    if dep in watch.deps:
        return
    watch.busy = True
    try:
        watch.deps[dep] = watch.fp.of(value, where)
        watch.shapes[dep] = identities(value)
    except Uncacheable as exc:
        watch.deps[dep] = "?"
        watch.why(str(exc))
    except Exception as exc:  # noqa: BLE001 - reading a module attribute must never fail for this
        watch.deps[dep] = "?"
        watch.why(f"{where} could not be fingerprinted ({type(exc).__name__}: {exc})"[:300])
    finally:
        watch.busy = False


class _WatchedModule(types.ModuleType):
    """A user module while a remembered cell runs: attribute reads and writes are recorded."""

    def __getattribute__(self, name: str) -> Any:
        value = super().__getattribute__(name)
        watch = _active
        if watch is not None and not watch.busy and not name.startswith("__"):
            modname = super().__getattribute__("__name__")
            _first_read(watch, ("attr", modname, name), value, f"{modname}.{name}")
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        watch = _active
        if watch is not None and not watch.busy:
            modname = super().__getattribute__("__name__")
            with contextlib.suppress(AttributeError):
                _first_read(watch, ("attr", modname, name), super().__getattribute__(name),
                            f"{modname}.{name}")
            watch.mod_written.add((modname, name))
        super().__setattr__(name, value)

    def __delattr__(self, name: str) -> None:
        watch = _active
        if watch is not None and not watch.busy:
            watch.why(f"it deletes {super().__getattribute__('__name__')}.{name}")
        super().__delattr__(name)


class _WatchedEnviron(os._Environ):  # type: ignore[name-defined,misc]
    """os.environ while a remembered cell runs: the variables read and set are recorded."""

    def __getitem__(self, key: str) -> str:
        watch = _active
        try:
            value = super().__getitem__(key)
        except KeyError:
            if watch is not None and not watch.busy:
                watch.deps.setdefault(("env", str(key)), "unset")
            raise
        if watch is not None and not watch.busy:
            watch.deps.setdefault(("env", str(key)), "=" + value)
        return value

    def __setitem__(self, key: str, value: str) -> None:
        if _active is not None and not _active.busy:
            self.get(key)  # the value before is an input (a hit sets it again)
            _active.env_written.add(str(key))
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        if _active is not None and not _active.busy:
            self.get(key)
            _active.env_written.add(str(key))
        super().__delitem__(key)


_module_class: dict[type, type] = {types.ModuleType: _WatchedModule}
_users_memo: dict[tuple[str, str | None], bool] = {}


def _users_modules() -> list[types.ModuleType]:
    out = []
    for name, mod in list(sys.modules.items()):
        if name == "__main__" or not isinstance(mod, types.ModuleType):
            continue
        key = (name, getattr(mod, "__file__", None))
        if not isinstance(key[1], str) or not os.path.isabs(key[1]):
            continue
        users = _users_memo.get(key)
        if users is None:  # a module of a library's package (torch.ops) is the library's
            users = _users_memo[key] = is_users(name) and is_users(name.split(".")[0])
        if users:
            out.append(mod)
    return out


def _watched_class(cls: type) -> type | None:
    if cls not in _module_class:
        try:
            _module_class[cls] = type(f"Watched{cls.__name__}", (_WatchedModule, cls), {})
        except TypeError:
            return None
    return _module_class[cls]


@contextlib.contextmanager
def _swapped(watch: Watch) -> Iterator[None]:
    """The user's modules and os.environ watched; a module whose class cannot be swapped (a
    custom module type) counts by its file's content instead."""
    swapped: list[tuple[Any, type]] = []
    try:
        for mod in _users_modules():
            cls = type(mod)
            if issubclass(cls, _WatchedModule):
                continue
            watched = _watched_class(cls)
            try:
                if watched is None:
                    raise TypeError("no watched class")
                mod.__class__ = watched
                swapped.append((mod, cls))
            except TypeError:
                watch.deps.setdefault(("file", mod.__file__), file_fingerprint(mod.__file__))
        if type(os.environ) is os._Environ:
            os.environ.__class__ = _WatchedEnviron
            swapped.append((os.environ, os._Environ))
        yield
    finally:
        for obj, cls in reversed(swapped):
            obj.__class__ = cls


@contextlib.contextmanager
def watching(skip: tuple[str, ...] = ()) -> Iterator[Watch]:
    """Record what the block touches. Nested (a remembered call inside a remembered cell), the
    inner block gets its own record, which then joins the outer one."""
    global _active, _hooked
    if not _hooked:
        with _lock:
            if not _hooked:
                sys.addaudithook(_hook)
                _hooked = True
    parent = _active
    me = threading.current_thread()
    watch = Watch(skip=tuple(p.rstrip(os.sep) + os.sep for p in skip) + library_roots_sep(),
                  others=frozenset(t for t in threading.enumerate() if t is not me))
    loaded = set(sys.modules)
    with contextlib.nullcontext() if parent is not None else _swapped(watch):
        _active = watch
        try:
            yield watch
        finally:
            _active = parent
            _imported(watch, loaded)
            if parent is not None:
                _join(parent, watch)


def _join(outer: Watch, inner: Watch) -> None:
    for dep, fp in inner.deps.items():
        outer.deps.setdefault(dep, fp)
    for path, kind in inner.written.items():
        outer.written.setdefault(path, kind)
    outer.mod_written |= inner.mod_written
    outer.env_written |= inner.env_written
    outer.external += inner.external
    outer.seeded |= inner.seeded
    for reason in inner.reasons:
        outer.why(reason)


def library_roots_sep() -> tuple[str, ...]:
    return tuple(r.rstrip(os.sep) + os.sep for r in library_roots())


def active() -> Watch | None:
    return _active


# --------------------------------------------------------------------------- fingerprints now


def current(dep: Dep, fp: Fingerprinter) -> str:
    """The fingerprint a dependency has now (to check a recorded run against the present)."""
    kind = dep[0]
    if kind == "file":
        return file_fingerprint(os.path.abspath(dep[1]))
    if kind == "dir":
        return dir_fingerprint(os.path.abspath(dep[1]))
    if kind == "tree":
        return tree_fingerprint(os.path.abspath(dep[1]))
    if kind == "env":
        value = os.environ.get(dep[1])
        return "unset" if value is None else "=" + value
    if kind == "attr":
        mod = sys.modules.get(dep[1])
        if mod is None or not hasattr(mod, dep[2]):
            return "absent"
        try:
            return fp.of(getattr(mod, dep[2]), f"{dep[1]}.{dep[2]}")
        except Uncacheable:
            return "?"
    if kind == "rng":
        from openmind.intents.cellstate import rng_fingerprint, rng_states

        state = rng_states().get(dep[1])
        return "absent" if state is None else rng_fingerprint(state)
    return "?"


__all__ = ["Dep", "Watch", "active", "current", "portable", "watching"]
