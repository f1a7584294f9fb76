"""The last probe result of a resource, kept in the store so another process can read it.

The kernel probes the ESP32 while it can; the Jupyter server's sidebar, which must not open a
port a kernel is streaming from, shows what the kernel last saw. One row per (resource, where).
The table is created on first use (CREATE IF NOT EXISTS), not as a numbered migration: it is a
cache that any version may drop and rebuild.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from openmind.memory.store import connect

_TABLE = ("CREATE TABLE IF NOT EXISTS probes (name TEXT NOT NULL, place TEXT NOT NULL, ts REAL NOT NULL, "
          "details TEXT NOT NULL, PRIMARY KEY (name, place))")


def remember(name: str, place: str, details: dict[str, Any]) -> None:
    """Keep `details` as the last probe of `name` at `place` (a port). Never raises: a read-only
    store only means the sidebar cannot show it."""
    try:
        with connect(write=True) as con:
            con.execute(_TABLE)
            con.execute("INSERT OR REPLACE INTO probes (name, place, ts, details) VALUES (?, ?, ?, ?)",
                        (name, place, time.time(), json.dumps(details, default=str)))
    except (sqlite3.Error, OSError):
        pass


def last(name: str, place: str) -> tuple[float, dict[str, Any]] | None:
    """(when, details) of the last probe of `name` at `place`, or None."""
    try:
        with connect() as con:
            con.execute(_TABLE)
            row = con.execute("SELECT ts, details FROM probes WHERE name=? AND place=?", (name, place)).fetchone()
    except (sqlite3.Error, OSError):
        return None
    return (float(row["ts"]), json.loads(row["details"])) if row else None
