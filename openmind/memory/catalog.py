"""What muscle memory holds, by what a user calls it: `memories()` and `forget()`.

One listing serves a notebook cell (`openmind.memories`), the sidebar's memory list and
`openmind memory ls`: models with their versions, cells with the names they bind, signal
patterns, ingested sources, and the rest (cached predictions, validations, headers, captures) under
the store's own kind. Each `Memory` is one name with its versions, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from openmind.errors import BadInput
from openmind.memory.blobs import KINDS, Entry, entries, remove
from openmind.units import human_time

# the store's kind -> the word a user sees (the others keep the store's word)
WORDS = {"pattern": "signal"}
STORE_KIND = {v: k for k, v in WORDS.items()}
# the kinds a user asks for by name first (recall looks in this order)
MAIN = ("model", "cell", "signal", "ingest")


def word(kind: str) -> str:
    return WORDS.get(kind, kind)


def kinds() -> tuple[str, ...]:
    """Every kind `memories(kind=...)` takes, the main ones first."""
    rest = tuple(word(k) for k in KINDS if word(k) not in MAIN)
    return MAIN + rest


@dataclass(frozen=True)
class Memory:
    """One remembered thing: its kind, its name, its versions (newest first) and what it holds."""

    kind: str
    name: str
    versions: tuple[Entry, ...]
    detail: dict[str, Any]

    @property
    def key(self) -> str:
        return self.versions[0].key

    @property
    def size(self) -> int:
        return sum(e.size for e in self.versions)

    @property
    def created(self) -> float:
        return self.versions[0].created

    @property
    def used(self) -> float:
        return max(e.used for e in self.versions)

    @property
    def hits(self) -> int:
        return sum(e.hits for e in self.versions)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "key": self.key, "size": self.size,
                "created": self.created, "used": self.used, "hits": self.hits,
                "versions": [{"key": e.key, "created": e.created, "size": e.size, "hits": e.hits}
                             for e in self.versions],
                "detail": self.detail}

    def __str__(self) -> str:
        n = len(self.versions)
        shown = {k: human_time(v) if k == "checked" else v for k, v in self.detail.items()}
        extra = ", ".join(f"{k}: {v}" for k, v in shown.items() if v not in (None, "", []))
        return (f"{self.kind} '{self.name}' ({n} version{'s' if n != 1 else ''})"
                + (f": {extra}" if extra else ""))


def binds(entry: Entry) -> list[str]:
    """The names a cell entry bound (kept or not), without openmind's own slots."""
    names = list(entry.meta.get("values") or {}) + list(entry.meta.get("unkept") or {})
    return sorted({n for n in names if not n.startswith("__")})


def _detail(kind: str, entry: Entry) -> dict[str, Any]:
    meta = entry.meta
    if kind == "cell":
        return {"binds": binds(entry), "intent": meta.get("intent")}
    if kind == "ingest":
        return {"source": meta.get("source"), "format": meta.get("format"),
                "rows": meta.get("rows"), "shape": meta.get("shape"),
                "checked": meta.get("checked")}
    if kind == "model":
        acc = (meta.get("info") or {}).get("val_accuracy")
        return {"val_accuracy": acc, "complete": meta.get("complete", True)}
    if kind == "signal":
        return {"unit": meta.get("unit")}
    return {}


def _name(kind: str, entry: Entry) -> str:
    """A cell is named by its first line (the store's name is its code's hash)."""
    if kind == "cell":
        return str(entry.meta.get("first_line") or entry.name)
    return entry.name


def memories(kind: str | None = None) -> list[Memory]:
    """What muscle memory holds, newest first: one `Memory` per kind and name, with its versions
    (`kind`: model, cell, signal, ingest, or another store kind; None: everything)."""
    store_kind = None
    if kind is not None:
        if kind not in kinds():
            raise BadInput(f"unknown memory kind {kind!r}; valid: {', '.join(kinds())}")
        store_kind = STORE_KIND.get(kind, kind)
    groups: dict[tuple[str, str], list[Entry]] = {}
    for entry in entries(store_kind):  # newest first
        k = word(entry.kind)
        # a cell's store name is its code: its runs on other inputs are its versions
        groups.setdefault((k, entry.name), []).append(entry)
    out = []
    for (k, _), found in groups.items():
        newest = found[0]
        out.append(Memory(k, _name(k, newest), tuple(found), _detail(k, newest)))
    return out


def matching(name: str, kind: str | None = None) -> list[Memory]:
    """The memories a user means by `name`: of that name, or cells that bind it."""
    if not isinstance(name, str) or not name.strip():
        raise BadInput("give the name of something remembered (see openmind.memories())")
    return [m for m in memories(kind)
            if m.name == name or (m.kind == "cell" and name in m.detail.get("binds", []))]


def forget(name: str, kind: str | None = None) -> int:
    """Remove every version of what `name` names (a model with its predictions, validations and
    headers; a signal; an ingested source; cells that bind `name`); returns how many entries went.
    Forgetting what is not there is not an error: 0."""
    n = 0
    for memory in matching(name, kind):
        for entry in memory.versions:
            n += remove(entry.key)
    return n
