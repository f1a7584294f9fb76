"""Putting a cell's effects back on a hit, exactly as a re-run would leave them.

- values the cell changed in place (an estimator it fitted, a list it appended to, a model its
  optimiser stepped) are restored *into* the objects the notebook holds, so every other name
  that shares them (the optimiser's parameters, a dict holding the model) sees the change too;
- files it wrote are written back (folders it made are made);
- random state (numpy's global generator, `random`, torch's) is set to what the run left.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import sys
from collections.abc import Iterator
from typing import Any

from openmind.memory.blobs import fingerprint

# --------------------------------------------------------------------------- random state


def rng_states() -> dict[str, Any]:
    """The global random states that are loaded now: numpy's legacy generator, `random`, torch's
    CPU generator and (once CUDA is initialised) its GPUs'."""
    out: dict[str, Any] = {"random": random.getstate()}
    np = sys.modules.get("numpy")
    if np is not None:
        out["numpy"] = np.random.get_state()
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.get_rng_state()
        with contextlib.suppress(Exception):
            if torch.cuda.is_initialized():
                out["cuda"] = torch.cuda.get_rng_state_all()
    return out


def rng_fingerprint(state: Any) -> str:
    """A digest of one generator's state (numpy's keys array by its bytes, others by value)."""
    np = sys.modules.get("numpy")
    h = hashlib.sha256()

    def add(part: Any) -> None:
        if np is not None and isinstance(part, np.ndarray):
            h.update(fingerprint(part).encode())
        elif hasattr(part, "numpy") and hasattr(part, "dtype"):  # a torch tensor
            h.update(fingerprint(part.cpu().numpy()).encode())
        elif isinstance(part, (tuple, list)):
            for p in part:
                add(p)
        else:
            h.update(repr(part).encode())

    add(state)
    return h.hexdigest()[:32]


def moved(before: dict[str, Any]) -> dict[str, Any]:
    """The generators whose state differs from `before`: which -> state now."""
    now = rng_states()
    return {k: v for k, v in now.items()
            if k not in before or rng_fingerprint(before[k]) != rng_fingerprint(v)}


def set_rng(states: dict[str, Any]) -> None:
    """Set global generators to kept states (those whose library is loaded)."""
    for which, state in states.items():
        if which == "random":
            random.setstate(state)
        elif which == "numpy":
            import numpy as np

            np.random.set_state(state)
        elif which in ("torch", "cuda"):
            import torch

            if which == "torch":
                torch.set_rng_state(state)
            elif torch.cuda.is_available():
                torch.cuda.set_rng_state_all(state)


# Where a run seeds a generator: a run that seeds one before drawing from it does not depend on
# the state before (a training cell that starts with `torch.manual_seed(0)` is a hit in any kernel).
_SEEDERS = (("numpy", "numpy.random", "seed"), ("random", "random", "seed"),
            ("torch", "torch", "manual_seed"), ("torch", "torch.random", "manual_seed"))


@contextlib.contextmanager
def seeding(before: dict[str, Any], seeded: set[str]) -> Iterator[None]:
    """While the block runs, note in `seeded` each generator it seeds before drawing from it."""
    patched: list[tuple[Any, str, Any]] = []
    for which, modname, attr in _SEEDERS:
        mod = sys.modules.get(modname)
        orig = getattr(mod, attr, None) if mod is not None and which in before else None
        if orig is None or getattr(orig, "_openmind_seed", False):
            continue

        def seed(*args: Any, _orig: Any = orig, _which: str = which, **kwargs: Any) -> Any:
            if _which not in seeded and \
                    rng_fingerprint(rng_states()[_which]) == rng_fingerprint(before[_which]):
                seeded.add(_which)
            return _orig(*args, **kwargs)

        seed._openmind_seed = True  # type: ignore[attr-defined]
        setattr(mod, attr, seed)
        patched.append((mod, attr, orig))
    try:
        yield
    finally:
        for mod, attr, orig in reversed(patched):
            setattr(mod, attr, orig)


# --------------------------------------------------------------------------- values in place


def _children(value: Any) -> list[tuple[Any, Any]] | None:
    """What restore_into walks into: a list's items, a dict's values, a Python object's attributes."""
    if isinstance(value, list):
        return list(enumerate(value))
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, type):  # its attributes, to tell whether a run set any
        return [(k, v) for k, v in vars(value).items() if not k.startswith("__")]
    if hasattr(value, "__dict__") and _python_state(type(value)):
        return list(vars(value).items())
    return None


def identities(value: Any, depth: int = 0, budget: list[int] | None = None) -> Any:
    """Before a run: the ids of what a value holds, by position (None: nothing to walk, or too
    big), so that afterwards a child the run replaced is told from one it changed in place."""
    budget = budget if budget is not None else [10_000]
    kids = _children(value) if depth <= 12 else None
    if kids is None or len(kids) > budget[0]:
        return None
    budget[0] -= len(kids)
    return {k: (id(v), identities(v, depth + 1, budget)) for k, v in kids}


def sameness(value: Any, before: Any) -> Any:
    """After a run: for each child, (still the object it was, the same for its children)."""
    kids = _children(value) if before is not None else None
    if kids is None:
        return None
    out = {}
    for k, v in kids:
        was = before.get(k)
        same = was is not None and was[0] == id(v)
        out[k] = (same, sameness(v, was[1]) if same else None)
    return out


def _into(old: Any, new: Any, mask: Any, key: Any, depth: int) -> Any:
    """One child: restored into the old one when the run changed that object in place (or when
    openmind does not know), else the kept one, as the run replaced it."""
    if mask is None:
        return restore_into(old, new, depth + 1)
    was = mask.get(key)
    return restore_into(old, new, depth + 1, was[1]) if was and was[0] else new


def restore_into(old: Any, new: Any, depth: int = 0, mask: Any = None) -> Any:
    """Make `old` equal to `new` in place where the type allows; return what the name should be
    bound to (`old`, updated, or `new` where no in-place restore exists). `mask` (from
    `sameness`) says which children the run changed in place and which it replaced."""
    if type(old) is not type(new) or depth > 12 or old is new:
        return new
    np = sys.modules.get("numpy")
    torch = sys.modules.get("torch")
    if np is not None and isinstance(old, np.ndarray):
        if old.shape == new.shape and old.dtype == new.dtype and old.flags.writeable:
            old[...] = new
            return old
        return new
    if torch is not None:
        done = _torch_into(torch, old, new, depth)
        if done is not None:
            return done
    if np is not None and isinstance(old, np.random.Generator):
        old.bit_generator.state = new.bit_generator.state
        return old
    if isinstance(old, random.Random):
        old.setstate(new.getstate())
        return old
    if isinstance(old, list):
        merged = [_into(a, b, mask, i, depth) for i, (a, b) in enumerate(zip(old, new, strict=False))]
        old[:] = merged + list(new[len(merged):])
        return old
    if isinstance(old, dict):
        merged = {k: _into(old[k], v, mask, k, depth) if k in old else v for k, v in new.items()}
        old.clear()
        old.update(merged)
        return old
    if isinstance(old, (set, bytearray)):
        if isinstance(old, set):
            old.clear()
            old.update(new)
        else:
            old[:] = new
        return old
    if hasattr(old, "__dict__") and hasattr(new, "__dict__") and not isinstance(old, type):
        return _attrs_into(old, new, depth, mask)
    return new


def _slots(cls: type) -> list[str]:
    raw = cls.__dict__.get("__slots__", ())
    return [raw] if isinstance(raw, str) else list(raw)


def _python_state(cls: type) -> bool:
    """True when all of an instance's state is in its __dict__ and slots: no class in its line
    adds C fields (a Cython class, pandas' BlockManager) that `vars` cannot see."""
    mro = [c for c in cls.__mro__ if c is not object]
    pointers = sum(len(_slots(c)) for c in mro)
    pointers += int(cls.__dictoffset__ != 0) + int(cls.__weakrefoffset__ != 0)
    return cls.__basicsize__ <= object.__basicsize__ + pointers * 8


def _attrs_into(old: Any, new: Any, depth: int, mask: Any = None) -> Any:
    """An object's attributes, each restored into the one it had (pandas, sklearn, user classes).
    Only for classes whose state is all attributes: a C type keeps state `vars` cannot see."""
    if not _python_state(type(old)):
        return new
    for cls in type(old).__mro__:
        for slot in _slots(cls):
            if slot not in ("__dict__", "__weakref__") and hasattr(new, slot):
                setattr(old, slot, getattr(new, slot))
    try:
        mine, theirs = vars(old), vars(new)
    except TypeError:
        return old
    merged = {k: _into(mine[k], v, mask, k, depth) if k in mine else v for k, v in theirs.items()}
    for k in [k for k in mine if k not in theirs]:
        del mine[k]
    mine.update(merged)
    return old


def _torch_into(torch: Any, old: Any, new: Any, depth: int) -> Any:
    if isinstance(old, torch.Tensor):
        if old.shape == new.shape and old.dtype == new.dtype:
            with torch.no_grad():
                old.copy_(new.to(old.device))
            if new.grad is None:
                old.grad = None
            elif old.grad is not None and old.grad.shape == new.grad.shape:
                old.grad.copy_(new.grad.to(old.grad.device))
            else:
                old.grad = new.grad.to(old.device)
            return old
        return new
    if isinstance(old, torch.optim.Optimizer):
        old.load_state_dict(new.state_dict())  # by parameter position: the notebook's tensors stay
        return old
    return None


# --------------------------------------------------------------------------- files


_file_memo: dict[str, tuple[tuple[int, ...], str]] = {}


def file_fingerprint(path: str) -> str:
    """The content of a file (xxh3), 'absent', or a folder's sorted listing. A memo keyed on the
    inode, size, mtime and ctime saves re-reading an unchanged file (ctime cannot be set back)."""
    try:
        st = os.stat(path)
    except OSError:
        return "absent"
    if os.path.isdir(path):
        return dir_fingerprint(path)
    stamp = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    memo = _file_memo.get(path)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    from openmind.memory.blobs import _hasher

    tag, h = _hasher()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(16 << 20):
                h.update(chunk)
    except OSError as exc:
        return f"unreadable:{type(exc).__name__}"
    digest = f"{st.st_size}:{tag}{h.hexdigest()}"
    _file_memo[path] = (stamp, digest)
    return digest


def dir_fingerprint(path: str) -> str:
    try:
        names = sorted(os.listdir(path))
    except OSError:
        return "absent"
    return "dir:" + hashlib.sha256("\0".join(names).encode()).hexdigest()[:32]


def portable(path: str) -> str:
    """A path under the working folder as relative to it (`data/x.csv`: the same notebook on
    another machine, or moved, reads the same files; a key carries no home folder), else as is."""
    here = os.getcwd().rstrip(os.sep) + os.sep
    return path[len(here):] if path.startswith(here) else path


def named_files(names: list[str]) -> dict[tuple[str, str], str]:
    """(("file" | "tree", path) -> content fingerprint) for each string naming an existing file
    or folder (a folder: each file in it by content): what a reader openmind's audit hook cannot
    see (C++ readers such as pyarrow's or HDF5's) reads by the names a cell gives it."""
    out: dict[tuple[str, str], str] = {}
    for name in names:
        if not name or len(name) > 4096 or "\0" in name or "\n" in name:
            continue
        try:
            path = os.path.abspath(name)
            if os.path.isfile(path):
                out[("file", portable(path))] = file_fingerprint(path)
            elif os.path.isdir(path):
                out[("tree", portable(path))] = tree_fingerprint(path)
        except (OSError, ValueError):
            continue
    return out


def tree_fingerprint(root: str, limit: int = 10_000) -> str:
    """Every file under a folder, by relative path and content (at most `limit` files)."""
    h = hashlib.sha256()
    count = 0
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            h.update(os.path.relpath(path, root).encode() + b"\0" + file_fingerprint(path).encode())
            count += 1
            if count >= limit:
                return "tree:many:" + h.hexdigest()[:32]
    return "tree:" + h.hexdigest()[:32]


def read_written(written: dict[str, str]) -> dict[str, bytes | None]:
    """The files (bytes) and folders (None) a run left, in the order it made them."""
    out: dict[str, bytes | None] = {}
    for path, kind in written.items():
        if kind == "dir" or os.path.isdir(path):
            out[path] = None
        elif os.path.isfile(path):
            with open(path, "rb") as f:
                out[path] = f.read()
    return out


def write_back(files: dict[str, bytes | None]) -> None:
    """Put the files a run wrote back, byte for byte (folders first), as a re-run writes them."""
    from pathlib import Path

    for path, data in files.items():
        if data is None:
            os.makedirs(path, exist_ok=True)
    for path, data in files.items():
        if data is not None:
            target = Path(path)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                if target.read_bytes() == data:
                    continue
            except OSError:
                pass
            target.write_bytes(data)


__all__ = ["dir_fingerprint", "file_fingerprint", "identities", "moved", "sameness", "named_files", "portable", "tree_fingerprint", "read_written", "restore_into", "rng_fingerprint", "rng_states", "seeding",
           "set_rng", "write_back"]
