"""What one watched run of a cell (or remembered call) changed, and putting it back on a hit.

After a run: the names it bound (new or rebound), the values it read and changed in place (their
fingerprint after differs from before), the names it deleted, the names that are another name's
object (kept as that alias, not as a copy), the module attributes it set or changed, the
environment variables it set, the files it wrote, the random state it moved; and its trace: what
it read at run time (cellwatch), the key's second half.
On a hit, `apply` puts all of that back, changed values restored into the objects the notebook
holds (cellstate.restore_into).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from openmind.config import home
from openmind.errors import PathwayUnavailable
from openmind.intents import cellstate, cellwatch
from openmind.intents.cellkey import SHELL_NAMES, Fingerprinter

VALUE, VALUE_OF, EFFECTS = "__value__", "__value_of__", "__effects__"
SPECIAL = frozenset({VALUE, VALUE_OF, EFFECTS})


@dataclass(frozen=True)
class ClosedFile:
    """A file object the run left closed (`with open(...) as f`): restored as one, closed."""

    path: str
    mode: str

    def reopen(self) -> Any:
        binary = "b" in self.mode
        target = self.path if os.path.isfile(self.path) else os.devnull
        f = open(target, "rb" if binary else "r")  # noqa: SIM115 - closed at once, as the run left it
        f.close()
        if not binary:
            with contextlib.suppress(AttributeError):
                f.mode = self.mode
        return f


@dataclass
class Before:
    """What openmind knew of the namespace before the body ran."""

    fp: Fingerprinter  # it fingerprinted the reads (and noted the globals functions reach)
    inputs: dict[str, str]  # name read -> fingerprint ('absent': not bound)
    ids: dict[str, int]  # name -> id of its value (ids, not the values: a cell that rebinds a
    # big array must be able to free the old one while it runs)
    named: dict[cellwatch.Dep, str] = field(default_factory=dict)  # files its code names, before
    shapes: dict[str, Any] = field(default_factory=dict)  # name read -> cellstate.identities


@dataclass
class Ran:
    """One run: what to keep, its value, what it read at run time, and why it cannot be kept."""

    values: dict[str, Any]
    value: Any
    names: list[str] = field(default_factory=list)
    trace: dict[cellwatch.Dep, str] = field(default_factory=dict)
    why: str | None = None
    external: list[str] = field(default_factory=list)


def watched(call: Callable[[], Any]) -> tuple[Any, cellwatch.Watch, dict[str, Any]]:
    """Run `call` watched: (its value, what it touched, the random state before it)."""
    rng = cellstate.rng_states()
    with cellwatch.watching(skip=(str(home()),)) as watch, cellstate.seeding(rng, watch.seeded):
        value = call()
    return value, watch, rng


def _ignored(name: str) -> bool:
    return name in SHELL_NAMES or (name.startswith("_") and name.lstrip("_i").isdigit()) or \
        (name.startswith("__") and name.endswith("__"))  # __warningregistry__, __builtins__


def changed(value: Any, before: str, where: str) -> bool:
    """Whether `value`'s fingerprint now differs from `before` (unfingerprintable: changed)."""
    try:
        return Fingerprinter().of(value, where) != before
    except Exception:  # noqa: BLE001 - Uncacheable, or a library's own error: treat as changed
        return True


def settled(work: Callable[[], Ran], value: Any) -> Ran:
    """What a run changed, or (when working that out fails) a run that is not kept: the user's
    cell ran and its result stands whatever openmind's bookkeeping does."""
    try:
        return work()
    except Exception as exc:  # noqa: BLE001
        return Ran({}, value, why=f"openmind could not work out what it changed "
                                  f"({type(exc).__name__}: {exc})"[:300])


def after_cell(namespace: dict[str, Any], before: Before, binds: list[str], defined: set[str],
               value: Any, watch: cellwatch.Watch, rng: dict[str, Any]) -> Ran:
    """What a watched cell run changed in `namespace` and around it."""
    old = before.ids
    bound = [n for n in binds if n in namespace]
    bound += [n for n, v in namespace.items() if old.get(n) != id(v) and n not in bound]
    bound = [n for n in bound if not _ignored(n) and n not in defined]
    reads = dict(before.inputs)
    reads.update({n: fp for g, fp, n in _reached(before.fp) + _reached(watch.fp) if g is namespace})
    mutated = [n for n, fp in reads.items() if n in namespace and old.get(n) == id(namespace[n])
               and n not in bound and not _ignored(n) and changed(namespace[n], fp, repr(n))]
    owners = {i: n for n, i in old.items() if n in namespace and id(namespace[n]) == i and n not in bound}
    # a function's or class's fingerprint follows the globals it reads (checked on their own);
    # a class whose attributes the run set cannot come back (classes are pickled by name)
    code = [n for n in mutated if isinstance(namespace[n], (type, types.FunctionType, types.ModuleType))]
    mutated = [n for n in mutated if n not in code]
    code = [n for n in code if isinstance(namespace[n], type)
            and _attrs_set(before.shapes.get(n), namespace[n])]
    values: dict[str, Any] = {n: namespace[n] for n in mutated}
    aliases: dict[str, str] = {}
    for n in bound:
        v = namespace[n]
        if isinstance(v, io.IOBase) and v.closed and isinstance(getattr(v, "name", None), str):
            values[n] = ClosedFile(os.path.abspath(v.name), str(getattr(v, "mode", "r")))
            continue
        owner = owners.setdefault(id(v), n)
        if owner != n:
            aliases[n] = owner
        else:
            values[n] = v
    same = next((n for n in values if values[n] is value), None)
    if same is not None:
        values[VALUE_OF] = same
    elif value is not None:
        values[VALUE] = value
    ran = after_call(value, watch, rng, before.fp, namespace, before.named)
    if code:
        ran.why = ran.why or f"it sets attributes of the class {code[0]!r} (a class is kept by name)"
    ran.values.update(values)
    same = {n: cellstate.sameness(namespace[n], before.shapes.get(n)) for n in mutated}
    effects = {"mutated": mutated, "aliases": aliases, "same": {n: m for n, m in same.items() if m},
               "deleted": [n for n in old if n not in namespace and not _ignored(n)]}
    effects = {k: v for k, v in effects.items() if v}
    if effects:
        ran.values.setdefault(EFFECTS, {}).update(effects)
    ran.names = bound + [n for n in mutated if n not in bound]
    return ran


def _attrs_set(shape: Any, cls: type) -> bool:
    now = cellstate.identities(cls) or {}
    return shape is None or {k: v[0] for k, v in shape.items()} != {k: v[0] for k, v in now.items()}


def _reached(fp: Fingerprinter) -> list[tuple[dict[str, Any], str, str]]:
    return [(g, digest, name) for (_, name), (g, digest) in fp.reached.items()]


def after_call(value: Any, watch: cellwatch.Watch, rng: dict[str, Any], fp: Fingerprinter,
               namespace: dict[str, Any] | None = None,
               named: dict[cellwatch.Dep, str] | None = None) -> Ran:
    """What a watched run touched outside its namespace: the trace and the side effects."""
    trace = {(d[0], cellstate.portable(d[1])) if d[0] in ("file", "dir") else d: fp_
             for d, fp_ in watch.deps.items()}
    for dep, digest in (named or {}).items():
        path = os.path.abspath(dep[1])
        if path not in watch.written or ("file", path) in watch.deps:  # else written before read
            trace.setdefault(dep, digest)
    why = watch.reasons[0] if watch.reasons else None
    effects: dict[str, Any] = {}
    moved = cellstate.moved(rng)
    for which in [w for w in moved if w not in watch.seeded]:
        trace[("rng", which)] = cellstate.rng_fingerprint(rng[which]) if which in rng else "absent"
    if moved:
        effects["rng"] = moved
    files = {cellstate.portable(p): data for p, data in cellstate.read_written(watch.written).items()}
    if files:
        effects["files"] = files
    if watch.env_written:
        effects["env"] = {k: os.environ.get(k) for k in sorted(watch.env_written)}
    places = set(watch.mod_written)
    reached = _reached(fp) + _reached(watch.fp)
    places |= {(d[1], d[2]) for d, f in watch.deps.items() if d[0] == "attr"
               and hasattr(sys.modules.get(d[1]), d[2])
               and changed(getattr(sys.modules[d[1]], d[2]), f, f"{d[1]}.{d[2]}")}
    for g, digest, name in reached:
        if g is not namespace and name in g and changed(g[name], digest, name):
            module = sys.modules.get(str(g.get("__name__")))
            if module is None or vars(module) is not g:
                why = why or f"it changes {name!r} in globals openmind cannot find again"
            else:
                places.add((module.__name__, name))
    attrs, masks = {}, {}
    for mod, attr in sorted(places):
        if hasattr(sys.modules.get(mod), attr):
            attrs[(mod, attr)] = value_now = getattr(sys.modules[mod], attr)
            masks[(mod, attr)] = cellstate.sameness(value_now, watch.shapes.get(("attr", mod, attr)))
    if attrs:
        effects["attrs"] = attrs
        effects["attr_same"] = {k: m for k, m in masks.items() if m}
    out = {EFFECTS: effects} if effects else {}
    return Ran(out, value, [], trace, why, list(watch.external))


def apply(kept: dict[str, Any], namespace: dict[str, Any] | None) -> list[str]:
    """Put a kept run's effects back; return the names restored. Raises PathwayUnavailable
    (nothing changed yet) when a module it changed is not loaded."""
    effects = kept.get(EFFECTS) or {}
    attrs = effects.get("attrs") or {}
    missing = sorted({mod for mod, _ in attrs if mod not in sys.modules})
    if missing:
        raise PathwayUnavailable(f"the run changed module {missing[0]!r}, which is not loaded now")
    for k, v in (effects.get("env") or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    cellstate.write_back(effects.get("files") or {})
    names = [n for n in kept if n not in SPECIAL]
    if namespace is not None:
        mutated, same = set(effects.get("mutated") or ()), effects.get("same") or {}
        for n in names:
            v = kept[n].reopen() if isinstance(kept[n], ClosedFile) else kept[n]
            namespace[n] = cellstate.restore_into(namespace[n], v, 0, same.get(n)) \
                if n in mutated and n in namespace else v
        for n, owner in (effects.get("aliases") or {}).items():
            namespace[n] = namespace[owner]
            names.append(n)
        for n in effects.get("deleted") or ():
            namespace.pop(n, None)
    attr_same = effects.get("attr_same") or {}
    for (mod, attr), v in attrs.items():
        module = sys.modules[mod]
        setattr(module, attr, cellstate.restore_into(getattr(module, attr, None), v, 0,
                                                     attr_same.get((mod, attr))))
    cellstate.set_rng(effects.get("rng") or {})
    return names


def age_text(seconds: float) -> str:
    """'read 3 min ago' for a hit of a run that read the network."""
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} old"
    return f"{seconds:.0f} s old"


__all__ = ["Before", "EFFECTS", "Ran", "SPECIAL", "VALUE", "VALUE_OF", "after_call", "after_cell",
           "age_text", "apply", "changed", "settled", "watched"]
