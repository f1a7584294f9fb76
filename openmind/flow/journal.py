"""The journal: one SQLite row per executed plan, readable by the CLI, the sidebar and `journal()`.

Rows are written with every configured secret redacted; resources are stored as their
(redacted) `to_dict`, never raw environment values.
"""

from __future__ import annotations

import datetime as _dt
import json
import time
import warnings
from typing import Any

from openmind.config import redact
from openmind.flow.context import cell_dict, session_id
from openmind.memory.store import connect

_appended = 0


def appended() -> int:
    """How many records this process has written: a cell that wrote none made no openmind call."""
    return _appended


def write(entry: dict[str, Any]) -> int:
    """Append one record and return its id. `entry` holds intent, pathway, decision, ok, ..."""
    return int(append(entry)["id"])


def append(entry: dict[str, Any]) -> dict[str, Any]:
    """Append one record and return it as stored (redacted, with its cell, session, time and id),
    so the caller can show it without reading it back."""
    entry = redact(entry)
    cell = entry.get("cell") or cell_dict()
    entry["cell"] = cell
    entry.setdefault("session", session_id())
    entry.setdefault("ts", time.time())
    text = json.dumps(entry, default=_json_default, sort_keys=True)
    with connect(write=True) as con:
        cur = con.execute(
            "INSERT INTO journal (ts, session, notebook, cell_id, execution_count, intent, name, "
            "pathway, decision, reason, ok, duration_ms, record) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                entry["ts"], entry["session"], cell.get("notebook"), cell.get("cell_id"),
                cell.get("execution_count"), entry.get("intent", "?"), entry.get("name"),
                entry.get("pathway"), entry.get("decision"), entry.get("reason"),
                1 if entry.get("ok") else 0, entry.get("duration_ms"), text,
            ),
        )
        entry["id"] = int(cur.lastrowid)
    global _appended
    _appended += 1
    return entry


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
    with connect(write=True) as con:
        return con.execute(
            "UPDATE journal SET notebook = ?, record = json_set(record, '$.cell.notebook', ?) "
            "WHERE notebook = ?", (new, new, old)).rowcount
