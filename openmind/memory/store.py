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
import warnings
from collections.abc import Iterator
from pathlib import Path

from openmind.config import home, private

DB_NAME = "openmind.db"
# How long a call waits for another process's write lock before it gives up on storing (the
# caller keeps its result, unstored, with a warning): a held lock costs a call a second or two.
BUSY_TIMEOUT_S = 1.0

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
    (
        2,
        # A counter of changes to what memory holds (not to its use counts), kept by triggers so
        # every writer, in any process, bumps it: a reader that cached what it found (a loaded
        # model, the label queue) asks one cheap question per call instead of re-reading rows.
        """
        CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
        INSERT OR IGNORE INTO counters (name, n) VALUES ('memory', 0);
        CREATE TRIGGER IF NOT EXISTS memory_added AFTER INSERT ON memory BEGIN
            UPDATE counters SET n = n + 1 WHERE name = 'memory';
        END;
        CREATE TRIGGER IF NOT EXISTS memory_removed AFTER DELETE ON memory BEGIN
            UPDATE counters SET n = n + 1 WHERE name = 'memory';
        END;
        CREATE TRIGGER IF NOT EXISTS memory_changed AFTER UPDATE OF key, kind, name, blob, size, meta
            ON memory BEGIN
            UPDATE counters SET n = n + 1 WHERE name = 'memory';
        END;
        """,
    ),
    (
        3,
        # issue 26: every entry's Ed25519 signature record ({by, at, sig}, JSON), made by the
        # machine that kept it (or published it to the team) and checked on every restore
        """
        ALTER TABLE memory ADD COLUMN sig TEXT;
        """,
    ),
]

_migrated: set[str] = set()
_mlock = threading.Lock()


def _statements(sql: str) -> Iterator[str]:
    """The complete statements of a migration (a trigger's body holds semicolons of its own)."""
    buf = ""
    for line in sql.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()


def db_path(root: Path | None = None) -> Path:
    root = root or home()
    path = _paths.get(root)
    if path is None:  # every store call asks: join once per home
        if len(_paths) > 64:
            _paths.clear()
        path = _paths[root] = root / DB_NAME
    return path


_paths: dict[Path, Path] = {}


def _owner_only(path: Path) -> None:
    """The database and its -wal and -shm files readable by their owner alone (SQLite gives the
    side files the database's mode): create it 0600, tighten one made before. An existing file is
    never opened here: closing any descriptor of it would drop this process's SQLite locks."""
    if not os.path.exists(path):
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError:
            pass  # made meanwhile, or unwritable: sqlite reports it in the caller's terms
    for suffix in ("", "-wal", "-shm"):
        private(Path(f"{path}{suffix}"))


def _open(path: Path) -> sqlite3.Connection:
    _owner_only(path)
    con = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    con.row_factory = sqlite3.Row
    con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
    return con


class StoreWarning(UserWarning):
    """The store works, but not as well as it should (e.g. WAL could not be enabled)."""


def _wal(con: sqlite3.Connection, path: str) -> str:
    """Switch to WAL (readers never wait for a writer) and check it took; report a failure."""
    mode = "unknown"
    for attempt in range(20):
        try:
            mode = str(con.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            break
        except sqlite3.OperationalError as exc:  # another process holds the lock mid-switch
            mode = f"unknown ({exc})"
            time.sleep(0.01 * (attempt + 1))
    if mode != "wal":
        warnings.warn(f"openmind: the store {path} could not switch to WAL (journal mode is "
                      f"{mode}); readers may wait for writers. A network or read-only file system "
                      f"does not support WAL: point OPENMIND_HOME at a local disk.",
                      StoreWarning, stacklevel=5)
    return mode


def _migrate(con: sqlite3.Connection, key: str) -> None:
    with _mlock:
        if key in _migrated:
            return
        _wal(con, key.split("#")[0])
        if con.execute("PRAGMA user_version").fetchone()[0] >= MIGRATIONS[-1][0]:
            _migrated.add(key)  # nothing to migrate: no write lock taken
            return
        con.execute("BEGIN IMMEDIATE")
        try:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            for number, sql in MIGRATIONS:
                if number > version:
                    for statement in _statements(sql):
                        con.execute(statement)
                    con.execute(f"PRAGMA user_version={number}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise
        _migrated.add(key)


# One open connection per thread and database file, reused: opening and closing a WAL database
# costs a checkpoint (and its fsync) at every close, ~100x the INSERT itself. Keyed by the file's
# inode, so a deleted and recreated store gets a fresh connection; dropped after a fork.
_local = threading.local()
_KEEP = 4  # connections kept per thread (tests switch OPENMIND_HOME often)


def _pooled(path: Path) -> sqlite3.Connection:
    pool = getattr(_local, "pool", None)
    if pool is None or getattr(_local, "pid", None) != os.getpid():
        pool = _local.pool = {}
        _local.pid = os.getpid()
    key = str(path)
    try:
        ino = os.stat(key).st_ino
    except OSError:
        ino = None
    hit = pool.get(key)
    if hit is not None and hit[1] == ino and ino is not None:
        return hit[0]
    if hit is not None:
        pool.pop(key)[0].close()
    con = _open(path)
    ino = path.stat().st_ino
    _migrate(con, f"{key}#{ino}")  # a recreated file is a new database: migrate it again
    con.execute("PRAGMA synchronous=NORMAL")  # WAL: commits are not synced, checkpoints are
    while len(pool) >= _KEEP:
        pool.pop(next(iter(pool)))[0].close()
    pool[key] = (con, ino)
    return con


@contextlib.contextmanager
def connect(root: Path | None = None, *, write: bool = False,
            timeout: float | None = None) -> Iterator[sqlite3.Connection]:
    """A connection to the store; with write=True the block is one IMMEDIATE transaction.
    `timeout`: seconds to wait for another process's lock (default BUSY_TIMEOUT_S) before
    sqlite3.OperationalError."""
    con = _pooled(db_path(root))
    if timeout is not None:
        con.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
    try:
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
        if timeout is not None:
            con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")


_generation = 0


def changed() -> None:
    """Note a write to the index, so readers that cache what memory holds (the probe) look again."""
    global _generation
    _generation += 1


def generation() -> int:
    """How many writes this process made to the index; a cached summary of memory keys on it."""
    return _generation


def memory_version(root: Path | None = None) -> tuple[str, int] | None:
    """(store, change count): equal for two calls when nothing memory holds changed between them,
    in this process or any other. One indexed read, for readers that cache what they found.
    None when the store cannot say (unreadable, damaged): then no cached finding may be trusted."""
    path = db_path(root)
    try:
        row = _pooled(path).execute("SELECT n FROM counters WHERE name = 'memory'").fetchone()
    except (OSError, sqlite3.Error):
        return None
    return (str(path), int(row[0])) if row else None
