"""Evicting muscle memory (`openmind memory rm|gc`) without losing what other processes write.

A writer keeps a blob first and its index row second; a sweep that read the index before the row
went in would take the blob for an orphan. So a sweep never deletes a blob newer than its own
start, and it deletes only under the index's write lock, the lock a writer takes to check its
blob is still there before adding the row (`blobs.index`). Eviction follows the index's last use
(`used`), never a file's time. Nothing raises out of `remove` or `gc` but bad input: a busy or
damaged store is a warning and a count of what was done.
"""

from __future__ import annotations

import json
import sqlite3
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from openmind.config import home
from openmind.errors import BadInput
from openmind.memory import keys
from openmind.memory.blobs import MemoryWarning, _intact, blob_dir
from openmind.memory.store import changed, connect

# How long gc waits for writers' locks (they hold them for one row: milliseconds).
GC_LOCK_TIMEOUT_S = 10.0
# Temporary files of writes that died are removed after this long.
STALE_TEMP_S = 3600.0


def _warn(what: str, exc: BaseException) -> None:
    warnings.warn(f"openmind: muscle memory {what} stopped early ({type(exc).__name__}: {exc}); "
                  f"run it again later", MemoryWarning, stacklevel=3)


def remove(key: str) -> int:
    """Remove entries whose key starts with `key` (at least 6 characters). Returns how many."""
    key = key.strip()
    if len(key) < 6 or any(ch in key for ch in "%_"):
        raise BadInput(f"key prefix {key!r} is too short: give at least 6 characters (see "
                       f"`openmind memory ls`)")
    return _delete_then_sweep(
        "remove", lambda con: con.execute("DELETE FROM memory WHERE key LIKE ?",
                                          (key + "%",)).rowcount)


def _broken(folder: Path, r: sqlite3.Row, verify: bool) -> bool:
    """An index row whose blob is missing, of the wrong size, or (verify) not its hash or not
    signed by a trusted key over this entry, or whose metadata is not a JSON object."""
    blob, size = r["blob"], r["size"]
    if not blob:
        return True
    path = folder / blob
    try:
        meta = json.loads(r["meta"])
        if path.stat().st_size != size or not isinstance(meta, dict):
            return True
    except (OSError, TypeError, ValueError):
        return True
    if not verify:
        return False
    try:
        keys.verify(json.loads(r["sig"] or "null"), r["kind"], r["name"], r["key"], blob, size, meta)
    except (keys.Refused, keys.KeyProblem, ValueError):
        return True  # unsigned (kept before signing), untrusted or moved: a miss forever
    return not _intact(path, blob)


def _evict(con: sqlite3.Connection, max_bytes: int | None, older_than: float | None,
           broken: bool, verify: bool) -> int:
    evicted = 0
    if broken or verify:
        folder = blob_dir()
        for r in con.execute("SELECT key, kind, name, blob, size, meta, sig FROM memory").fetchall():
            if _broken(folder, r, verify):
                con.execute("DELETE FROM memory WHERE key=?", (r["key"],))
                evicted += 1
    if older_than is not None:
        evicted += con.execute("DELETE FROM memory WHERE used < ?",
                               (time.time() - older_than,)).rowcount
    if max_bytes is not None:
        total = 0
        for r in con.execute("SELECT key, size FROM memory ORDER BY used DESC").fetchall():
            total += r["size"]
            if total > max_bytes:
                con.execute("DELETE FROM memory WHERE key=?", (r["key"],))
                evicted += 1
    return evicted


def gc(max_bytes: int | None = None, older_than: float | None = None, *,
       broken: bool = True, verify: bool = False) -> int:
    """Evict least-recently-used entries beyond `max_bytes` or unused for `older_than` seconds,
    (with `broken`) entries whose blob is missing or of the wrong size or whose metadata is
    unreadable, (with `verify`) entries whose blob's content does not match its hash, then delete
    blobs no entry points at. Returns the number of entries evicted."""
    return _delete_then_sweep(
        "gc", lambda con: _evict(con, max_bytes, older_than, broken, verify))


def _delete_then_sweep(what: str, delete: Callable[[sqlite3.Connection], int]) -> int:
    """Index rows out under the write lock, then a sweep of the blobs no row points at that are
    older than this call's start (a writer's newer blob is never judged). Never raises: an
    unwritable store is a warning and 0."""
    start = time.time()
    n = 0
    try:
        with connect(write=True, timeout=GC_LOCK_TIMEOUT_S) as con:
            n = delete(con)
        changed()
    except (OSError, sqlite3.Error) as exc:
        _warn(what, exc)
        return n
    sweep(start)
    return n


def _candidates(folder: Path, start: float) -> list[Path]:
    """Blob files older than the sweep's start (and stale temp files): what a sweep may judge."""
    found = []
    try:
        names = list(folder.iterdir())
    except OSError:
        return found
    for path in names:
        try:
            mtime = path.stat().st_mtime
        except OSError:
            continue  # removed meanwhile
        if path.name.startswith(".tmp-"):
            if mtime < start - STALE_TEMP_S:
                found.append(path)
        elif mtime < start:  # one written (or touched) since the sweep began is not its to judge
            found.append(path)
    return found


def sweep(start: float | None = None, root: Path | None = None) -> int:
    """Delete blob files no index row references, among those older than `start` (default now).
    The deletions happen under the index's write lock, against the rows as they are then.
    Returns how many files went."""
    start = time.time() if start is None else start
    root = root or home()
    folder = blob_dir(root)
    candidates = _candidates(folder, start)
    if not candidates:
        return 0
    gone = 0
    try:
        with connect(root, write=True, timeout=GC_LOCK_TIMEOUT_S) as con:
            live = {r[0] for r in con.execute(
                "SELECT DISTINCT blob FROM memory WHERE blob IS NOT NULL")}
            for path in candidates:
                if path.name in live:
                    continue
                try:
                    path.unlink()
                    gone += 1
                except OSError:
                    pass  # already gone (another sweep), or not ours to delete
    except (OSError, sqlite3.Error) as exc:
        _warn("sweep", exc)
    return gone
