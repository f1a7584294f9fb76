"""The journal: one SQLite row per executed plan, readable by the CLI, the sidebar and `journal()`.

Rows are written with every configured secret redacted; resources are stored as their
(redacted) `to_dict`, never raw environment values.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from openmind.config import home, redact
from openmind.flow.context import cell_dict, session_id
from openmind.memory.store import connect

_appended = 0


def appended() -> int:
    """How many records this process has written: a cell that wrote none made no openmind call."""
    return _appended


def write(entry: dict[str, Any]) -> int:
    """Append one record and return its id. `entry` holds intent, pathway, decision, ok, ..."""
    return int(append(entry)["id"])


def append(entry: dict[str, Any], *, defer: bool = False,
           on_written: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Append one record and return it as stored (redacted, with its cell, session, time and id),
    so the caller can show it without reading it back.

    `defer=True` keeps the record in this process's buffer, written with others in one
    transaction (a commit costs more than a small prediction): when the buffer holds
    `BATCH` records, when its oldest is `DELAY_S` old, before any synchronous record, and before
    every reader in this process (`journal`, `count`, `last_id`, a card, the end of a notebook
    cell, exit). The returned dict gets its "id" then, and `on_written(id)` is called."""
    entry = redact(entry)
    cell = entry.get("cell") or cell_dict()
    entry["cell"] = cell
    entry.setdefault("session", session_id())
    entry.setdefault("ts", time.time())
    global _appended
    _appended += 1
    if defer:
        _BUFFER.add(home(), entry, on_written)
        return entry
    _BUFFER.flush()  # ids follow the order of the calls
    with connect(write=True) as con:
        entry["id"] = _insert(con, entry)
    return entry


def _insert(con: Any, entry: dict[str, Any]) -> int:
    cell = entry["cell"]
    cur = con.execute(
        "INSERT INTO journal (ts, session, notebook, cell_id, execution_count, intent, name, "
        "pathway, decision, reason, ok, duration_ms, record) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            entry["ts"], entry["session"], cell.get("notebook"), cell.get("cell_id"),
            cell.get("execution_count"), entry.get("intent", "?"), entry.get("name"),
            entry.get("pathway"), entry.get("decision"), entry.get("reason"),
            1 if entry.get("ok") else 0, entry.get("duration_ms"), _dumps(entry),
        ),
    )
    return int(cur.lastrowid)


# The resources snapshot is half of a record's text and the same for every call within the probe's
# TTL: its JSON is kept, keyed by the identity of its parts (kept alive with it, so no id is reused).
_RES_MARK = f"openmind-resources-{uuid.uuid4().hex}"
_res_json: tuple[tuple, tuple, str] | None = None


def _dumps(entry: dict[str, Any]) -> str:
    global _res_json
    res = entry.get("resources")
    if not isinstance(res, dict) or not res:
        return json.dumps(entry, default=_json_default, sort_keys=True)
    parts = tuple(res.values())
    key = tuple((k, v if isinstance(v, (int, float, str)) else id(v)) for k, v in res.items())
    memo = _res_json
    if memo is None or memo[0] != key:
        memo = _res_json = (key, parts, json.dumps(res, default=_json_default, sort_keys=True))
    text = json.dumps({**entry, "resources": _RES_MARK}, default=_json_default, sort_keys=True)
    return text.replace(f'"{_RES_MARK}"', memo[2], 1)


BATCH = 64  # deferred records written in one transaction
DELAY_S = 0.2  # the longest a deferred record waits (another process's sidebar sees it then)

_Item = tuple[Path, dict[str, Any], "Callable[[int], None] | None"]


class _Buffer:
    """Deferred records, written in batches in the order appended. Written by the caller's own
    thread when a batch is full (no thread competes with a tight loop for the interpreter), and
    by a timer thread that wakes only while something waits. A record that cannot be written is
    lost with a warning, as a synchronous one would be."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # guards the list
        self._writing = threading.Lock()  # one batch at a time: ids follow the order of appends
        self._items: list[_Item] = []
        self._oldest = 0.0
        self._wake = threading.Event()
        self._timer: threading.Thread | None = None
        self._pid: int | None = None

    def add(self, root: Path, entry: dict[str, Any], on_written: Callable[[int], None] | None) -> None:
        with self._lock:
            if not self._items:
                self._oldest = time.monotonic()
            self._items.append((root, entry, on_written))
            full = len(self._items) >= BATCH or time.monotonic() - self._oldest >= DELAY_S
            if self._pid != os.getpid():  # first deferred record of this process
                self._pid = os.getpid()
                _flush_at_exit()
            if self._timer is None or not self._timer.is_alive():
                self._timer = threading.Thread(target=self._tick, name="openmind-journal", daemon=True)
                self._timer.start()
        if full:
            self.flush()
        else:
            self._wake.set()

    def _tick(self) -> None:
        while True:
            self._wake.wait()
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._items:
                        break
                    left = DELAY_S - (time.monotonic() - self._oldest)
                if left <= 0:
                    self.flush()
                    break
                time.sleep(left)

    def flush(self) -> None:
        """Write every record added so far."""
        with self._writing:
            with self._lock:
                batch, self._items = self._items, []
            if batch:
                _write(batch)

    def forget(self) -> None:
        """In a forked child: the parent writes what it buffered; start empty."""
        self.__init__()


def _write(batch: list[_Item]) -> None:
    for root in dict.fromkeys(r for r, _e, _cb in batch):  # OPENMIND_HOME may have changed
        mine = [(e, cb) for r, e, cb in batch if r == root]
        if not root.is_dir():  # the store was deleted meanwhile: its journal went with it
            continue
        try:
            with connect(root, write=True) as con:
                ids = [_insert(con, e) for e, _cb in mine]
        except Exception as exc:  # noqa: BLE001 - an unwritable home must not cost the user the result
            warnings.warn(f"openmind: could not write {len(mine)} journal record(s) to {root} "
                          f"({type(exc).__name__}: {redact(str(exc))})", RuntimeWarning, stacklevel=3)
            continue
        for (e, cb), rid in zip(mine, ids, strict=True):
            e["id"] = rid
            if cb is not None:
                try:
                    cb(rid)
                except Exception:  # noqa: BLE001, S110 - a callback's trouble is not the journal's
                    pass


_BUFFER = _Buffer()
os.register_at_fork(after_in_child=_BUFFER.forget)


def flush() -> None:
    """Write every deferred record of this process now (readers call this first)."""
    _BUFFER.flush()


def _flush_at_exit() -> None:
    """Flush when the process ends: atexit, and multiprocessing's own exit hook (its children
    leave by os._exit, past atexit; it forgets a parent's hooks in a child, so each process
    registers its own at its first deferred record)."""
    atexit.register(flush)
    from multiprocessing import util

    util.Finalize(None, flush, exitpriority=0)


def last_id() -> int:
    """The newest journal id (0 when empty), so a caller can collect exactly the records after it."""
    flush()
    with connect() as con:
        return int(con.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0])


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    if hasattr(obj, "value"):
        return obj.value
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)


def journal(limit: int = 50, *, after: int | None = None, session: str | None = None) -> list[dict[str, Any]]:
    """The latest decision records, newest first (or, with `after`, those with a larger id, oldest first)."""
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        from openmind.errors import BadInput

        raise BadInput(f"limit must be a positive integer, got {limit!r}")
    where, args = [], []
    if after is not None:
        where.append("id > ?")
        args.append(int(after))
    if session is not None:
        where.append("session = ?")
        args.append(session)
    sql = "SELECT id, record FROM journal"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id " + ("ASC" if after is not None else "DESC") + " LIMIT ?"
    args.append(limit)
    flush()
    with connect() as con:
        rows = con.execute(sql, args).fetchall()
    out = []
    for r in rows:
        try:
            rec = json.loads(r["record"])
            if not isinstance(rec, dict):
                raise ValueError(f"a {type(rec).__name__}, not an object")
        except (TypeError, ValueError) as exc:  # a damaged row must not hide the others
            warnings.warn(f"openmind: journal record #{r['id']} is unreadable ({exc}); skipped",
                          RuntimeWarning, stacklevel=2)
            continue
        rec["id"] = r["id"]
        out.append(rec)
    return out


def count() -> int:
    flush()
    with connect() as con:
        return int(con.execute("SELECT COUNT(*) FROM journal").fetchone()[0])


def format_records(records: list[dict]) -> str:
    """One line per journal record, oldest first; shared by the CLI, `%openmind log` and the notebook runner."""
    lines = []
    for r in reversed(records):
        ts = _dt.datetime.fromtimestamp(r.get("ts", 0)).strftime("%H:%M:%S")
        cell = r.get("cell") or {}
        where = f"[{cell.get('execution_count')}]" if cell.get("execution_count") is not None else ""
        what = f"{r.get('intent')} {r.get('name') or ''}".strip()
        how = f"{r.get('pathway')}/{r.get('decision')}" if r.get("ok") else "FAILED"
        why = r.get("reason") or ""
        if r.get("ok") and r.get("degraded"):
            how += " DEGRADED"
            why = f"degraded: {r['degraded']}; {why}"
        elif r.get("interrupted"):
            how = "INTERRUPTED"
        lines.append(f"{r.get('id', ''):>5} {ts} {where:>5} {what:<24} {how:<28} "
                     f"{r.get('duration_ms') or 0:8.1f} ms  {why}")
    return "\n".join(lines)


def rename_notebook(old: str, new: str) -> int:
    """Records of notebook `old` now belong to `new` (the notebook was renamed or moved), so the
    sidebar and `openmind log` follow the file. Returns how many records moved."""
    flush()
    with connect(write=True) as con:
        return con.execute(
            "UPDATE journal SET notebook = ?, record = json_set(record, '$.cell.notebook', ?) "
            "WHERE notebook = ?", (new, new, old)).rowcount
