"""`openmind.ingest(source, **policy)`: the colony's ingestor. Data from a file or glob, an
HTTP(S) URL or a SQL query, kept in muscle memory so the notebook goes on when the source is gone.

The same five steps as every intent: validate the input, look up the facts (the last good copy of
this source and its age), route (DESIGN.md: fetched → HARDCODE; unchanged since the copy in
memory → muscle_memory/CACHED; unreachable → the last good copy, CACHED, degraded with its age),
execute, return the data with `.route`.

The copy is the source's bytes (the file's, the body's, a query result's canonical JSON) in one
content-addressed blob, so a restored copy parses to exactly what the fetch gave. A copy's age is
the time since the source last answered for it (fetched, or confirmed unchanged).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import Served, execute
from openmind.flow.policy import Policy, split_policy
from openmind.flow.resources import Resources, probe
from openmind.flow.router import Candidate, Intent, route
from openmind.memory.blobs import Entry, fingerprint, get, key_for, put, versions
from openmind.pathways import sources, tables
from openmind.units import human_duration
from openmind.vocab import Decision, IntentKind, Pathway, Route, check_name

KIND = "ingest"


_FRAME: type | None = None


def _frame_class() -> type:
    """`IngestedFrame`: a DataFrame that carries `.route` (pandas keeps `_metadata` names as
    attributes, without its new-column warning); operations on it give plain DataFrames. Made on
    first use so pandas loads only when a table is read; pickles find it by name (`__getattr__`)."""
    global _FRAME
    if _FRAME is None:
        import pandas as pd

        _FRAME = type("IngestedFrame", (pd.DataFrame,),
                      {"_metadata": ["route"], "__module__": __name__,
                       "__doc__": "A DataFrame from openmind.ingest; `.route` says where it came from."})
    return _FRAME


def __getattr__(name: str) -> Any:
    if name == "IngestedFrame":
        return _frame_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class IngestedArray(np.ndarray):
    """An array from openmind.ingest; `.route` says where it came from (None on derived arrays)."""

    route: Route | None = None


class IngestedArrays(dict):
    """The arrays of an .npz from openmind.ingest, by name; `.route` says where they came from."""

    route: Route | None = None


def _wrap(value: Any) -> Any:
    """The parsed value as a type that can carry `.route`."""
    if isinstance(value, np.ndarray):
        return value.view(IngestedArray)
    if isinstance(value, dict):
        return IngestedArrays(value)
    return _frame_class()(value)


@dataclass
class _Copy:
    """The last good copy of a source in memory (its index row; the blob is read on use)."""

    entry: Entry

    @property
    def checked(self) -> float:
        meta = self.entry.meta
        return float(meta.get("checked") or meta.get("fetched") or self.entry.created)

    def age(self, now: float) -> float:
        return max(0.0, now - self.checked)


def _last_copy(name: str, source_id: str) -> _Copy | None:
    """The newest copy of this source kept under `name` (another source of the same name is not it)."""
    found = [e for e in versions(KIND, name) if e.meta.get("source_id") == source_id]
    if not found:
        return None
    return _Copy(max(found, key=lambda e: float(e.meta.get("checked") or e.created)))


def ingest(source: Any, /, *, query: str | None = None, params: Mapping[str, Any] | None = None,
           name: str | None = None, format: str | None = None,
           resources: Resources | None = None, **policy: Any) -> Any:
    """Read `source` (a path or glob, an http(s) URL, or a database URL with `query=`) and return
    its data with `.route`: a DataFrame for tables and query results, an array for .npy, a dict of
    arrays for .npz. The data is kept in muscle memory under `name` (default: the file or URL's
    last part); when the source cannot be reached, the last good copy comes back, degraded, saying
    how old it is (`max_age=` bounds that; `fallback="none"` raises instead)."""
    pol, rest = split_policy(policy)
    if rest:
        raise BadInput(f"unknown option {', '.join(map(repr, sorted(rest)))} for ingest; valid: "
                       "query, params, name, format, resources and the policy options")
    src = sources.parse_source(source, query=query, params=params, fmt=format)
    label = check_name(name, "name") if name is not None else _label(src.label)
    source_id = key_for("ingest-source", *src.identity)
    copy = _last_copy(label, source_id)
    now = time.time()
    if resources is None:
        resources = probe()
    intent = Intent.of(IntentKind.INGEST, name=label, data_kind=src.kind,
                       ancestor=copy is not None, age_s=copy.age(now) if copy else None)
    plan = route(intent, resources=resources, policy=pol)
    run = _Run(src, label, source_id, copy, pol)
    handlers = {(Pathway.FULL_TRAIN, Decision.HARDCODE): run.fetch,
                (Pathway.MUSCLE_MEMORY, Decision.CACHED): run.restore}
    value, _ = execute(plan, handlers, resources=resources, summarize=run.summary)
    return value


def _label(text: str) -> str:
    """A derived name as memory keeps names (letters, digits, '-', '_', '.'; the rest as '_')."""
    keep = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in text)
    keep = keep.strip("_")[:100] or "source"
    return keep if set(keep) != {"."} else "source"


@dataclass
class _Run:
    """One ingest call: what its two handlers share."""

    src: sources.Source
    name: str
    source_id: str
    copy: _Copy | None
    pol: Policy
    tried: str | None = None  # why the source could not be read, once the fetch failed
    content: str | None = None
    meta: dict[str, Any] | None = None

    def fetch(self, cand: Candidate) -> Served:
        """Read the source (conditionally when a copy is kept); unchanged content serves the copy.
        Whatever stops it (but the caller's own mistake) makes a later copy degraded."""
        try:
            return self._fetch(cand)
        except BadInput:
            raise
        except Exception as exc:
            self.tried = str(exc) if isinstance(exc, PathwayUnavailable) \
                else f"{type(exc).__name__}: {exc}"
            raise

    def _fetch(self, cand: Candidate) -> Served:
        got = self._read(cand)
        if got.unchanged:
            return self._unchanged(got.unchanged, None, None, got)
        try:
            value = tables.parse(got.parts, got.names, got.fmt)
        except BadInput:
            raise
        except Exception as exc:  # content that does not parse is not a good copy
            raise PathwayUnavailable(f"{self.src.shown} sent content that is not {got.fmt}: "
                                     f"{type(exc).__name__}: {exc}") from None
        arrays = {f"part/{i:04d}": np.frombuffer(p, dtype=np.uint8) for i, p in enumerate(got.parts)}
        content = fingerprint(*arrays.values())
        if cand.params.get("conditional") and self.copy is not None \
                and self.copy.entry.meta.get("content") == content:
            return self._unchanged("unchanged: the same content as the copy in memory", value,
                                   arrays, got)
        now = time.time()
        meta = {"source": self.src.shown, "source_id": self.source_id, "origin": self.src.kind,
                "format": got.fmt, "names": got.names[:1000], "content": content,
                "etag": got.etag, "last_modified": got.last_modified, "fetched": now,
                "checked": now, **tables.describe(value)}
        put(KIND, self.name, key_for(KIND, self.source_id, content), arrays, meta)
        self.content, self.meta = content, meta
        return Served(_wrap(value), note=f"{_size(got.parts)} read")

    def _read(self, cand: Candidate) -> sources.Fetched:
        timeout = self.pol.timeout
        if self.src.kind == "url":
            meta = self.copy.entry.meta if self.copy is not None and cand.params.get("conditional") else {}
            return sources.fetch_url(self.src, etag=meta.get("etag"),
                                     last_modified=meta.get("last_modified"), timeout=timeout)
        if self.src.kind == "sql":
            return sources.run_query(self.src, timeout=timeout)
        return sources.fetch_files(self.src)

    def _unchanged(self, why: str, value: Any, arrays: dict[str, np.ndarray] | None,
                   got: sources.Fetched) -> Served:
        """The source says the copy is current: serve it (CACHED, not degraded), its age reset."""
        assert self.copy is not None
        entry = self.copy.entry
        if arrays is None:  # a 304: the copy's own bytes
            hit = get(KIND, entry.key)
            if hit is None:  # the copy is gone or damaged: ask again without validators
                self.copy = None
                return self.fetch(Candidate(Pathway.FULL_TRAIN, Decision.HARDCODE, "", {}))
            arrays = hit[0]
            value = _parse(arrays, entry.meta)
        meta = {**entry.meta, "checked": time.time(), "etag": got.etag or entry.meta.get("etag"),
                "last_modified": got.last_modified or entry.meta.get("last_modified")}
        put(KIND, self.name, entry.key, arrays, meta)  # vouched for now: its age starts again
        self.content, self.meta = entry.meta.get("content"), meta
        return Served(_wrap(value), pathway=Pathway.MUSCLE_MEMORY, decision=Decision.CACHED,
                      note=why)

    def restore(self, cand: Candidate) -> Served:
        """The last good copy: degraded with its age when the source was tried and failed."""
        if self.copy is None:
            raise PathwayUnavailable(f"no copy of {self.name} in memory")
        hit = get(KIND, self.copy.entry.key)
        if hit is None:
            raise PathwayUnavailable(f"the copy of {self.name} in memory is unreadable")
        value = _parse(hit[0], self.copy.entry.meta)
        self.content, self.meta = self.copy.entry.meta.get("content"), self.copy.entry.meta
        age = human_duration(self.copy.age(time.time()))
        degraded = None
        if self.tried:
            degraded = f"the last good copy, {age} old: the source did not answer ({self.tried})"
        return Served(_wrap(value), degraded=degraded)

    def summary(self, value: Any) -> dict[str, Any]:
        meta = self.meta or {}
        out = {"source": self.src.shown, "name": self.name, "format": meta.get("format"),
               "content": (self.content or "")[:17]}
        out.update(tables.describe(value))
        if meta.get("checked"):
            out["age_s"] = round(max(0.0, time.time() - float(meta["checked"])), 3)
        return out


def _parse(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> Any:
    """A kept copy's data, parsed as the fetch parsed it."""
    parts = [arrays[k].tobytes() for k in sorted(arrays) if k.startswith("part/")]
    try:
        return tables.parse(parts, meta.get("names") or ["part"] * len(parts),
                            meta.get("format", "csv"))
    except Exception as exc:  # noqa: BLE001 - a copy that no longer parses is a miss
        raise PathwayUnavailable(f"the copy in memory does not parse ({type(exc).__name__}: "
                                 f"{exc})") from None


def _size(parts: list[bytes]) -> str:
    from openmind.units import human_bytes

    n = sum(len(p) for p in parts)
    return human_bytes(n) + (f" from {len(parts)} files" if len(parts) > 1 else "")
