"""Where `openmind.ingest` reads from: files (a path or a glob), HTTP(S) URLs (httpx, with
conditional requests) and SQL databases (SQLite through the standard library, any other
SQLAlchemy URL through SQLAlchemy, an optional dependency: `openmind-cells[sql]`).

A source that cannot be reached (no such file, connection refused, a timeout, an HTTP error, a
database refusing) raises `SourceUnreachable`, whose message never holds a secret: the URL or DSN
is shown as `config.register_source` gives it, and its secrets are registered with `redact`.
"""

from __future__ import annotations

import glob
import math
import os
import re
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from openmind.config import redact, register_source
from openmind.errors import BadInput, PathwayUnavailable
from openmind.pathways import tables

# How long a URL or database may take to answer when the policy sets no timeout.
DEFAULT_TIMEOUT_S = 30.0
_GLOB = set("*?[")


class SourceUnreachable(PathwayUnavailable):
    """The source did not answer with its content (gone, refused, timed out, an HTTP error)."""


@dataclass(frozen=True)
class Source:
    """A source as given, parsed: `raw` may hold secrets and is never shown; `shown` is safe."""

    kind: str  # file | url | sql
    raw: str = field(repr=False)
    shown: str
    query: str | None = None
    params: Mapping[str, Any] | None = None
    fmt: str | None = None

    @property
    def identity(self) -> tuple[Any, ...]:
        """What makes two calls the same source (the copy in memory is found by it)."""
        params = sorted((str(k), str(v)) for k, v in (self.params or {}).items())
        shown = self.shown
        if self.kind == "file":  # data.csv in two folders is two sources
            shown = os.path.abspath(os.path.expanduser(self.raw))
        elif self.kind == "sql":  # postgresql+psycopg:// and postgresql:// are the same database
            scheme, _, rest = shown.partition("://")
            shown = scheme.split("+", 1)[0].lower() + "://" + rest
        return (self.kind, shown, self.query, params, self.fmt)

    @property
    def label(self) -> str:
        """A short name for memory listings: the file or last URL path part, the database."""
        if self.kind == "sql":
            path = urlsplit(self.shown).path
            return (os.path.basename(path.rstrip("/")) or urlsplit(self.shown).scheme) + ".query"
        if self.kind == "url":
            parts = urlsplit(self.shown)
            return os.path.basename(parts.path.rstrip("/")) or parts.hostname or "url"
        base = os.path.basename(self.raw.rstrip("/")) or self.raw
        return re.sub(r"(\[[^\]]*\]|[*?])+", "all", base)  # a glob: part-*.csv -> part-all.csv


@dataclass
class Fetched:
    """What a source answered: the bytes of each part (files of a glob, in name order; one part
    for a URL or a query), their names, the format, and an HTTP answer's validators.
    `unchanged` says why the copy in memory is still current (an HTTP 304); parts are then empty."""

    parts: list[bytes]
    names: list[str]
    fmt: str
    etag: str | None = None
    last_modified: str | None = None
    unchanged: str | None = None


def parse_source(source: Any, *, query: str | None = None, params: Mapping[str, Any] | None = None,
                 fmt: str | None = None) -> Source:
    """A Source from what the caller gave, or BadInput saying what is wrong (never the secret)."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    if not isinstance(source, str) or not source.strip():
        raise BadInput(f"source must be a path, glob, URL or database URL (a string), got "
                       f"{type(source).__name__}")
    raw = source.strip()
    chosen = tables.check_format(fmt) if fmt is not None else None
    scheme = urlsplit(raw).scheme.lower() if "://" in raw else ""
    if params is not None and not isinstance(params, Mapping):
        raise BadInput(f"params must be a dict of the query's named parameters, got "
                       f"{type(params).__name__}")
    if query is not None:
        if not isinstance(query, str) or not query.strip():
            raise BadInput("query must be SQL text, e.g. query='SELECT * FROM readings'")
        if not scheme or scheme in ("http", "https", "file"):
            raise BadInput("query= needs a database URL as the source, e.g. "
                           "ingest('sqlite:///data.db', query='SELECT ...') or "
                           "'postgresql+psycopg://user@host/db'")
        if fmt is not None:
            raise BadInput("format= is for files and URLs; a query's result is a table")
        return Source("sql", raw, register_source(raw), query.strip(), dict(params or {}))
    if params:
        raise BadInput("params= go with query=: they are the SQL query's named parameters")
    if scheme in ("http", "https"):
        return Source("url", raw, register_source(raw), fmt=chosen)
    if scheme == "file":
        raw = urlsplit(raw).path
    elif scheme:
        raise BadInput(f"a {scheme}:// source needs query='SELECT ...' (a database), or give a "
                       f"path or an http(s) URL")
    if chosen is None and tables.format_of(raw) is None:
        raise BadInput(f"cannot tell the format of {os.path.basename(raw)!r} from its name; give "
                       f"format= ({', '.join(tables.FORMATS)})")
    return Source("file", raw, raw, fmt=chosen or tables.format_of(raw))


# --------------------------------------------------------------------------- files


def fetch_files(src: Source) -> Fetched:
    """The bytes of the file, or of every file the glob matches (sorted by path)."""
    pattern = os.path.expanduser(src.raw)
    if _GLOB & set(pattern):
        paths = sorted(p for p in glob.glob(pattern, recursive=True) if not os.path.isdir(p))
        if not paths:
            raise SourceUnreachable(f"no file matches {src.raw!r}")
    else:
        paths = [pattern]
    parts = []
    for path in paths:
        try:
            parts.append(Path(path).read_bytes())
        except OSError as exc:
            why = exc.strerror or type(exc).__name__
            raise SourceUnreachable(f"cannot read {path}: {why}") from None
    return Fetched(parts, [os.path.basename(p) for p in paths], src.fmt or "csv")


# --------------------------------------------------------------------------- HTTP


def fetch_url(src: Source, *, etag: str | None = None, last_modified: str | None = None,
              timeout: float | None = None) -> Fetched:
    """GET the URL; with a validator of the copy in memory the request is conditional
    (If-None-Match / If-Modified-Since), and a 304 answer downloads nothing."""
    import httpx

    headers = {}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        with httpx.Client(timeout=timeout or DEFAULT_TIMEOUT_S, follow_redirects=True) as client:
            resp = client.get(src.raw, headers=headers)
    except httpx.HTTPError as exc:
        raise SourceUnreachable(redact(f"{src.shown} did not answer: {type(exc).__name__}"
                                       + (f": {exc}" if str(exc) else ""))) from None
    if resp.status_code == 304:
        return Fetched([], [], src.fmt or "", etag, last_modified,
                       unchanged="304 Not Modified: the copy in memory is current")
    if resp.status_code >= 400:
        raise SourceUnreachable(f"{src.shown} answered HTTP {resp.status_code} "
                                f"{resp.reason_phrase}".strip())
    path = urlsplit(src.shown).path
    fmt = src.fmt or tables.format_of(path, resp.headers.get("content-type"))
    if fmt is None:
        raise BadInput(f"cannot tell the format of {src.shown} (Content-Type "
                       f"{resp.headers.get('content-type')!r}); give format= "
                       f"({', '.join(tables.FORMATS)})")
    return Fetched([resp.content], [os.path.basename(path) or "body"], fmt,
                   resp.headers.get("etag"), resp.headers.get("last-modified"))


# --------------------------------------------------------------------------- SQL


def run_query(src: Source, *, timeout: float | None = None) -> Fetched:
    """Run the query; its result in the kept form (`tables.rows_bytes`)."""
    wait = timeout or DEFAULT_TIMEOUT_S
    scheme = urlsplit(src.raw).scheme.lower()
    if scheme == "sqlite":
        columns, rows = _sqlite(src, wait)
    else:
        columns, rows = _sqlalchemy(src, scheme, wait)
    return Fetched([tables.rows_bytes(columns, rows)], ["result"], tables.SQL)


def _sqlite(src: Source, wait: float) -> tuple[list[str], list[Any]]:
    """SQLite through the standard library, read-only (a missing file is not created)."""
    path = src.raw.split("://", 1)[1]
    path = path[1:] if path.startswith("/") else path  # sqlite:///rel.db, sqlite:////abs.db
    if not path or path == ":memory:":
        raise BadInput("give a SQLite file: sqlite:///relative/path.db or sqlite:////absolute/path.db")
    try:
        con = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=wait)
    except sqlite3.Error as exc:
        raise SourceUnreachable(f"cannot open {src.shown}: {exc}") from None
    try:
        cur = con.execute(src.query or "", dict(src.params or {}))
        return [d[0] for d in cur.description or ()], cur.fetchall()
    except sqlite3.Error as exc:
        raise SourceUnreachable(f"{src.shown} refused the query: {exc}") from None
    finally:
        con.close()


def _sqlalchemy(src: Source, scheme: str, wait: float) -> tuple[list[str], list[Any]]:
    try:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool
    except ImportError:
        raise BadInput(f"a {scheme}:// database needs SQLAlchemy and its driver: "
                       f"pip install 'openmind-cells[sql]'") from None
    url = src.raw
    connect: dict[str, Any] = {}
    if scheme.startswith("postgresql"):
        if scheme == "postgresql" and _has("psycopg") and not _has("psycopg2"):
            url = "postgresql+psycopg" + url[len("postgresql"):]
        # a database that does not answer in time counts as unreachable: connecting and the query
        connect["connect_timeout"] = max(1, math.ceil(wait))
        connect["options"] = f"-c statement_timeout={max(1, int(wait * 1000))}"
    try:
        engine = sa.create_engine(url, poolclass=NullPool, connect_args=connect)
    except (sa.exc.ArgumentError, sa.exc.NoSuchModuleError, ImportError) as exc:
        raise BadInput(redact(f"cannot use {src.shown}: {type(exc).__name__}: {exc} (for "
                              f"PostgreSQL: pip install 'openmind-cells[sql]')")) from None
    try:
        with engine.connect() as con:
            result = con.execute(sa.text(src.query or ""), dict(src.params or {}))
            return list(result.keys()), [tuple(r) for r in result.fetchall()]
    except sa.exc.SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[:2]
        raise SourceUnreachable(redact(f"{src.shown} refused: {type(exc).__name__}: "
                                       + " ".join(first))) from None
    finally:
        engine.dispose()


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None
