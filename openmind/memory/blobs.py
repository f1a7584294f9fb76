"""Muscle memory: a content-addressed store of models, predictions and signal patterns.

The SQLite index (store.py) maps a key to a safetensors blob named by the hash of its bytes, so
identical content is stored once. Writes are atomic (temp file + fsync + rename, then the index
row); a blob that is missing or corrupt is a miss with a warning, never a crash; an unwritable
store warns and the caller keeps its freshly computed result. Every entry is signed with this
machine's Ed25519 key over the whole entry (keys.py) and checked when its payload is read; the
team tier (team.py) reads through a shared store where OPENMIND_REMOTE names one.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openmind.config import home, private_dir
from openmind.memory import keys
from openmind.memory.store import changed, connect

KINDS = ("model", "predictions", "pattern", "cell",
         # issue 16: validation figures, health flags (shed/pinned), the label queue, C headers
         "validation", "health", "labels", "header",
         # issue 11: the samples a device capture had read when Ctrl-C stopped it
         "capture",
         # issue 30: a notebook run's manifest (what each cell decided), for --resume and --replay
         "run",
         # issue 31: the last good copy of an ingested source (its bytes)
         "ingest")


@dataclass(frozen=True)
class Entry:
    key: str
    kind: str
    name: str
    blob: str | None
    size: int
    meta: dict[str, Any]
    created: float
    used: float
    hits: int
    sig: dict[str, Any] | None = None  # the signature record {by, at, sig} (keys.py)

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "kind": self.kind, "name": self.name, "blob": self.blob,
                "size": self.size, "meta": self.meta, "created": self.created,
                "used": self.used, "hits": self.hits, "signed_by": self.signer}

    @property
    def signer(self) -> str | None:
        """The id of the key that signed the entry (checked only when its payload is read)."""
        try:
            import base64

            return keys.key_id(base64.b64decode(str((self.sig or {})["by"])))
        except (KeyError, ValueError, TypeError):
            return None

    @property
    def origin(self) -> str | None:
        """'from the team's memory, published by <key id> at <time>' for an entry that came from
        the team tier; None for one kept here."""
        if not self.sig or not self.sig.get("team"):
            return None
        at = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(self.sig.get("at") or 0)))
        return f"from the team's memory, published by {self.signer} at {at}"


class MemoryWarning(UserWarning):
    """Muscle memory could not serve or keep something; the caller goes on without it."""


def blob_dir(root: Path | None = None) -> Path:
    return (root or home()) / "blobs"


def _private_blobs(root: Path) -> Path:
    folder = blob_dir(root)
    if folder not in _private:
        private_dir(folder)
        _private.add(folder)
    return folder


_private: set[Path] = set()


def key_for(*parts: Any) -> str:
    """A stable key from JSON-able parts (names, fingerprints, configs)."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _hasher():
    """xxh3-128 (many GB/s) when xxhash is installed, else blake2b; the name is part of the digest
    so the two never mix keys."""
    try:
        import xxhash

        return "x", xxhash.xxh3_128()
    except ImportError:  # pragma: no cover - xxhash is a dependency
        return "b", hashlib.blake2b(digest_size=16)


# Hash big buffers in slices of this many bytes, so a non-contiguous array is copied piecewise.
_SLICE = 64 * 2**20


def fingerprint(*arrays: Any) -> str:
    """A content fingerprint of arrays: raw bytes + dtype + shape (not strides: same data, same key).

    Fast (xxh3, no copy for contiguous arrays) because it runs on every `train_or_load` call.
    """
    tag, h = _hasher()
    for a in arrays:
        if a is None:
            h.update(b"none;")
            continue
        arr = np.asarray(a)
        if arr.dtype.hasobject:
            h.update(b"obj;" + json.dumps(arr.tolist(), default=str).encode())
            continue
        h.update(f"{arr.dtype.str}{arr.shape};".encode())
        if arr.flags.c_contiguous:
            h.update(memoryview(arr.reshape(-1)).cast("B"))
        else:
            flat = arr.reshape(arr.shape[0], -1) if arr.ndim > 1 else arr
            rows = max(1, _SLICE // max(1, flat[:1].nbytes))
            for start in range(0, flat.shape[0], rows):
                h.update(memoryview(np.ascontiguousarray(flat[start:start + rows])).cast("B"))
    return tag + h.hexdigest()


def atomic_write(target: Path, data: bytes) -> None:
    """Write `data` to `target` so a crash leaves either the old file or the new one, never half."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _row(r: sqlite3.Row) -> Entry | None:
    """The entry of an index row, or None (with a warning) when its meta is not a JSON object:
    a damaged row is a miss, never a crash (`gc` removes it)."""
    try:
        meta = json.loads(r["meta"])
        if not isinstance(meta, dict):
            raise ValueError(f"a {type(meta).__name__}, not an object")
    except (TypeError, ValueError) as exc:
        warnings.warn(f"openmind: muscle memory entry {r['kind']} '{r['name']}' has unreadable "
                      f"metadata ({exc}); treating it as a miss (`openmind memory gc` removes it)",
                      MemoryWarning, stacklevel=4)
        return None
    try:
        sig = json.loads(r["sig"]) if "sig" in r.keys() and r["sig"] else None
    except ValueError:
        sig = None  # a damaged record verifies as unsigned: a miss with a warning
    return Entry(r["key"], r["kind"], r["name"], r["blob"], r["size"], meta,
                 r["created"], r["used"], r["hits"], sig if isinstance(sig, dict) else None)


def _rows(rows: list[sqlite3.Row]) -> list[Entry]:
    return [e for e in map(_row, rows) if e is not None]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        from openmind.errors import BadInput

        raise BadInput(f"unknown memory kind {kind!r}; valid: {', '.join(KINDS)}")


def _intact(path: Path, name: str) -> bool:
    """True when the file's content hashes to its name (a same-size corrupt blob is not intact)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() + ".safetensors" == name
    except OSError:
        return False


def _write_blob(data: bytes, root: Path, name: str | None = None) -> str:
    """Keep `data` as a blob named by its hash. A blob already there is touched, so a sweep that
    started before this write never takes it for an old orphan (see `evict.sweep`)."""
    name = name or hashlib.sha256(data).hexdigest() + ".safetensors"
    target = _private_blobs(root) / name
    try:
        if target.stat().st_size == len(data) and _intact(target, name):
            os.utime(target)
            return name
    except OSError:
        pass  # absent, or swept this instant: write it
    atomic_write(target, data)
    return name


_UPSERT = ("INSERT INTO memory (key, kind, name, blob, size, meta, created, used, hits, sig) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ON CONFLICT(key) DO UPDATE SET "
           "kind=excluded.kind, name=excluded.name, blob=excluded.blob, size=excluded.size, "
           "meta=excluded.meta, used=excluded.used, sig=excluded.sig")


def index(entry: Entry, data: bytes, root: Path) -> None:
    """Write the blob, then its index row. The row goes in under the write lock that sweeps take
    too, after checking the blob is still there (and writing it again if a sweep that began
    before the blob landed took it): a concurrent gc never leaves a row without its blob."""
    _write_blob(data, root, entry.blob)
    with connect(root, write=True) as con:
        if not (blob_dir(root) / str(entry.blob)).is_file():
            _write_blob(data, root, entry.blob)
        con.execute(_UPSERT, (entry.key, entry.kind, entry.name, entry.blob, entry.size,
                              json.dumps(entry.meta, default=str), entry.created, entry.used,
                              json.dumps(entry.sig)))
    changed()


def put(kind: str, name: str, key: str, arrays: dict[str, np.ndarray],
        meta: dict[str, Any] | None = None) -> Entry | None:
    """Store arrays (+ JSON meta) under `key`, signed with this machine's key (and published to
    the team's memory where this machine publishes). Returns None, with a warning, if the store
    can't be written or the key can't sign."""
    _check_kind(kind)
    from safetensors.numpy import save

    tensors = {k: np.ascontiguousarray(arrays[k]) for k in sorted(arrays)}
    meta = json.loads(json.dumps(dict(meta or {}), default=str))  # as a reader will see it
    try:
        root = home()
        # one metadata key: safetensors writes a metadata map in no fixed order, and a blob is
        # named by its bytes, so two keys would give the same content two names
        data = save(tensors, metadata={"openmind": json.dumps({"kind": kind, "name": name},
                                                              sort_keys=True)})
        blob = hashlib.sha256(data).hexdigest() + ".safetensors"
        sig = keys.sign(kind, name, key, blob, len(data), meta)
        now = time.time()
        entry = Entry(key, kind, name, blob, len(data), meta, now, now, 0, sig)
        index(entry, data, root)
    except (OSError, sqlite3.Error, keys.KeyProblem) as exc:
        warnings.warn(f"openmind: muscle memory could not keep {kind} '{name}' ({exc}); "
                      f"the result is still returned. Check that OPENMIND_HOME is writable.",
                      MemoryWarning, stacklevel=2)
        return None
    from openmind.memory import team

    team.publish(entry, data)
    return entry


def _load(entry: Entry, root: Path) -> dict[str, np.ndarray] | None:
    from safetensors.numpy import load

    path = blob_dir(root) / (entry.blob or "")
    try:
        data = path.read_bytes()
        if hashlib.sha256(data).hexdigest() + ".safetensors" != entry.blob:
            raise ValueError("content does not match its hash (truncated or corrupted)")
        keys.verify(entry.sig, entry.kind, entry.name, entry.key, entry.blob, entry.size,
                    entry.meta)
        return load(data)
    except (keys.Refused, keys.KeyProblem) as exc:
        warnings.warn(f"openmind: muscle memory entry {entry.kind} '{entry.name[:60]}' "
                      f"({entry.key[:12]}) refused, nothing was restored: {exc}; treating it as "
                      f"a miss", MemoryWarning, stacklevel=3)
        return None
    except Exception as exc:
        warnings.warn(f"openmind: muscle memory entry {entry.kind} '{entry.name}' is unreadable "
                      f"({type(exc).__name__}: {exc}); treating it as a miss", MemoryWarning,
                      stacklevel=3)
        return None


def _lookup(sql: str, args: tuple) -> tuple[dict[str, np.ndarray], Entry] | None:
    try:
        root = home()
        with connect(root) as con:
            rows = con.execute(sql, args).fetchall()
    except (OSError, sqlite3.Error) as exc:
        warnings.warn(f"openmind: muscle memory is unreadable ({exc}); treating it as a miss",
                      MemoryWarning, stacklevel=3)
        return None
    for entry in _rows(rows):
        arrays = _load(entry, root)
        if arrays is not None:
            _touch(entry.key, root)
            return arrays, entry
    return None


# A hit counts its use only if the write lock is free within this many seconds: another process
# training into the store must not make cache hits wait.
TOUCH_TIMEOUT_S = 0.05


def _touch(key: str, root: Path) -> None:
    try:
        with connect(root, write=True, timeout=TOUCH_TIMEOUT_S) as con:
            con.execute("UPDATE memory SET used=?, hits=hits+1 WHERE key=?", (time.time(), key))
    except sqlite3.Error:
        pass  # read-only or busy store: serving the hit matters more than counting it


def get(kind: str, key: str) -> tuple[dict[str, np.ndarray], Entry] | None:
    """The arrays and entry stored under `key`, or None on a miss (or an unreadable blob)."""
    _check_kind(kind)
    sql = "SELECT * FROM memory WHERE kind=? AND key=?"
    found = _lookup(sql, (kind, key))
    if found is None:
        from openmind.memory import team

        if team.pull(kind, key):  # read through the team's memory, kept here from then on
            found = _lookup(sql, (kind, key))
    return found


def latest(kind: str, name: str) -> tuple[dict[str, np.ndarray], Entry] | None:
    """The most recently stored readable entry of that kind and name."""
    _check_kind(kind)
    return _lookup("SELECT * FROM memory WHERE kind=? AND name=? ORDER BY created DESC, rowid DESC",
                   (kind, name))


# How a stored run was cut short, by its meta's `stopped`.
_CUT = {"budget": "stopped by the budget", "interrupted": "interrupted (Ctrl-C)",
        "error": "stopped by an error"}


def partial_reason(meta: dict[str, Any]) -> str | None:
    """'partial: stopped by the budget after 3 of 60 epochs' for a stored run cut short (meta
    `complete` false), else None."""
    if meta.get("complete", True):
        return None
    how = _CUT.get(str(meta.get("stopped")), "cut short")
    return f"partial: {how} after {meta.get('epochs_done')} of {meta.get('epochs')} epochs"


def load(entry: Entry) -> dict[str, np.ndarray] | None:
    """The arrays of an entry listed by `entries`/`versions`, or None (with a warning) when its
    blob is missing or corrupt; a hit counts its use."""
    root = home()
    arrays = _load(entry, root)
    if arrays is not None:
        _touch(entry.key, root)
    return arrays


def versions(kind: str, name: str) -> list[Entry]:
    """Every readable index entry of that kind and name, newest first (no blob is read); an
    unreadable store is an empty list with a warning. Versions the team published are
    fetched first (read-through)."""
    _check_kind(kind)
    from openmind.memory import team

    team.pull_name(kind, name)
    try:
        with connect() as con:
            rows = con.execute("SELECT * FROM memory WHERE kind=? AND name=? "
                               "ORDER BY created DESC, rowid DESC", (kind, name)).fetchall()
    except (OSError, sqlite3.Error) as exc:
        warnings.warn(f"openmind: muscle memory is unreadable ({exc}); treating it as a miss",
                      MemoryWarning, stacklevel=2)
        return []
    return _rows(rows)


def entries(kind: str | None = None, name: str | None = None) -> list[Entry]:
    sql, args = "SELECT * FROM memory", []
    where = []
    if kind is not None:
        _check_kind(kind)
        where.append("kind=?")
        args.append(kind)
    if name is not None:
        where.append("name=?")
        args.append(name)
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY created DESC"
    with connect() as con:
        return _rows(con.execute(sql, args).fetchall())


def find(prefix: str) -> list[Entry]:
    """Entries whose key starts with `prefix` (for `openmind memory show/rm`)."""
    with connect() as con:
        rows = con.execute("SELECT * FROM memory WHERE key LIKE ? ORDER BY created DESC",
                           (prefix.strip().replace("%", "").replace("_", "") + "%",)).fetchall()
    return _rows(rows)


def remove(key: str) -> int:
    """Remove entries whose key starts with `key` (at least 6 characters); see `evict.remove`."""
    from openmind.memory.evict import remove as _remove

    return _remove(key)


def gc(max_bytes: int | None = None, older_than: float | None = None, *,
       broken: bool = True, verify: bool = False) -> int:
    """Evict entries and orphan blobs; see `evict.gc` (safe beside writers in other processes)."""
    from openmind.memory.evict import gc as _gc

    return _gc(max_bytes, older_than, broken=broken, verify=verify)
