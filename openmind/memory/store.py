"""The one SQLite database in OPENMIND_HOME: journal and muscle-memory index, WAL, multi-process safe.

Each module that keeps state registers its schema as a numbered migration here, so a database is
upgraded in place, once, under a write lock, whatever process opens it first.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from openmind.config import home

DB_NAME = "openmind.db"
BUSY_TIMEOUT_S = 30.0

# (version, SQL). Append only; never edit a migration that has shipped.
MIGRATIONS: list[tuple[int, str]] = [
    (
        1,
        """
        CREATE TABLE IF NOT EXISTS journal (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            ts REAL NOT NULL,
            session TEXT,
            notebook TEXT,
            cell_id TEXT,
            execution_count INTEGER,
            intent TEXT NOT NULL,
            name TEXT,
            pathway TEXT,
            decision TEXT,
            reason TEXT,
            ok INTEGER NOT NULL,
            duration_ms REAL,
            record TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS journal_ts ON journal(ts);
        CREATE TABLE IF NOT EXISTS memory (
            key TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            name TEXT NOT NULL,
            blob TEXT,
            size INTEGER NOT NULL DEFAULT 0,
            meta TEXT NOT NULL DEFAULT '{}',
            created REAL NOT NULL,
            used REAL NOT NULL,
            hits INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX IF NOT EXISTS memory_kind_name ON memory(kind, name);
        """,
    ),
]

_migrated: set[str] = set()
_mlock = threading.Lock()


def db_path(root: Path | None = None) -> Path:
    return (root or home()) / DB_NAME


def _open(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return con


def _migrate(con: sqlite3.Connection, key: str) -> None:
    with _mlock:
        if key in _migrated:
            return
        for attempt in range(50):
            try:
                mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                break
            except sqlite3.OperationalError:  # another process holds the lock mid-switch
                time.sleep(0.02 * (attempt + 1))
        else:
            mode = "unknown"
        del mode
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            for number, sql in MIGRATIONS:
                if number > version:
                    for statement in sql.split(";"):
                        if statement.strip():
                            con.execute(statement)
                    con.execute(f"PRAGMA user_version={number}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        _migrated.add(key)


# One idle connection per database (the few most recent) held open by this process: without it
# every `connect()` closes the last connection, and SQLite checkpoints the WAL on that close,
# which costs milliseconds per call (a muscle-memory hit makes two).
_KEEP = 4
_keepers: dict[tuple[str, int], sqlite3.Connection] = {}


def _keep_open(path: Path) -> None:
    key = (str(path), os.getpid())
    if key in _keepers:
        return
    with _mlock:
        if key in _keepers:
            return
        while len(_keepers) >= _KEEP:
            old_key = next(iter(_keepers))
            old = _keepers.pop(old_key)
            if old_key[1] == os.getpid():
                with contextlib.suppress(sqlite3.Error):
                    old.close()
        # never used for queries after this one; closed by whichever thread evicts it
        keeper = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                 check_same_thread=False)
        keeper.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()  # opens the file
        _keepers[key] = keeper


@contextlib.contextmanager
def connect(root: Path | None = None, *, write: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection to the store; with write=True the block is one IMMEDIATE transaction."""
    path = db_path(root)
    con = _open(path)
    try:
        _migrate(con, str(path))
        _keep_open(path)
        con.execute("PRAGMA synchronous=NORMAL")
        if write:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                con.execute("ROLLBACK")
                raise
        else:
            yield con
    finally:
        con.close()


_generation = 0


def changed() -> None:
    """Note a write to the index, so readers that cache what memory holds (the probe) look again."""
    global _generation
    _generation += 1


def generation() -> int:
    """How many writes this process made to the index; a cached summary of memory keys on it."""
    return _generation
