"""Memory cells: `openmind.memories()`, `openmind.recall(name)` and `openmind.forget(name)`.

Plain calls, not routed intents (DESIGN.md): what is remembered, one thing brought back as the
object it was, one thing removed. The listing and the removal are `memory.catalog`'s, the same
functions the sidebar and `openmind memory ls|rm` use; bringing a thing back needs the pathways
that know its form (a model, a signal pattern, an ingested table), so it lives here.
"""

from __future__ import annotations

from typing import Any

from openmind.errors import BadInput
from openmind.memory import cells
from openmind.memory.blobs import Entry, load
from openmind.memory.catalog import MAIN, Memory, forget, matching, memories

__all__ = ["forget", "memories", "recall"]


def _pick(found: list[Memory], name: str, kind: str | None) -> Memory:
    if not found:
        raise BadInput(f"nothing named {name!r} is remembered" + (f" as a {kind}" if kind else "")
                       + " (see openmind.memories())")
    rank = {k: i for i, k in enumerate(MAIN)}
    found = sorted(found, key=lambda m: (rank.get(m.kind, len(rank)), m.name != name, -m.created))
    return found[0]


def _version(memory: Memory, version: int | str | None) -> Entry:
    """`version`: None (the newest), a number (1 = the first kept, -1 = the newest) or a key prefix."""
    entries = memory.versions
    if version is None:
        return entries[0]
    if isinstance(version, int) and not isinstance(version, bool):
        ordered = entries[::-1]  # oldest first: version 1 is the first kept
        try:
            return ordered[version - 1 if version > 0 else version]
        except IndexError:
            pass
    elif isinstance(version, str) and len(version.strip()) >= 4:
        hits = [e for e in entries if e.key.startswith(version.strip())]
        if len(hits) == 1:
            return hits[0]
    raise BadInput(f"{memory.kind} '{memory.name}' has no version {version!r}; it has "
                   f"{len(entries)} (1..{len(entries)}, -1 for the newest, or a key prefix: "
                   f"{', '.join(e.key[:8] for e in entries[:5])})")


def recall(name: str, version: int | str | None = None, *, kind: str | None = None) -> Any:
    """Bring back what memory holds under `name`: a model (its newest version, or `version=`),
    a signal's fitted pattern, an ingested source's data, or a value a cell bound under that
    name. `kind=` picks one when several kinds share the name (else model, cell, signal,
    ingest, in that order)."""
    memory = _pick(matching(name, kind), name, kind)
    entry = _version(memory, version)
    if memory.kind == "cell":
        kept = cells.lookup(entry.key)
        if kept is None:
            raise BadInput(f"the cell that bound {name!r} could not be restored (see the warning)")
        if name in kept.values:
            return kept.values[name]
        raise BadInput(f"the cell {memory.name!r} bound {name!r}, but it was not kept: "
                       f"{kept.unkept.get(name, 'not kept')}")
    arrays = load(entry)
    if arrays is None:
        raise BadInput(f"{memory.kind} '{memory.name}' is unreadable in memory (see the warning); "
                       f"`openmind memory gc` removes it")
    return _rebuild(memory.kind, entry, arrays)


def _rebuild(kind: str, entry: Entry, arrays: dict[str, Any]) -> Any:
    """The object a stored entry was, from its arrays and meta."""
    if kind == "model":
        from openmind.intents.infer import _model_from

        return _model_from(arrays, entry.meta)
    if kind == "signal":
        from openmind.pathways.pattern import Pattern

        return Pattern.from_arrays(entry.name, arrays, entry.meta)
    if kind == "ingest":
        from openmind.intents.ingest import _parse, _wrap

        return _wrap(_parse(arrays, entry.meta))
    return dict(arrays)  # predictions, validations, headers, captures: their arrays by name
