"""Health of stored model versions: the validator's verdicts, kept beside the models.

A version is named by its memory key and the content hash of its blob (a retrain under the same
key is another version). The validator marks a version `healthy` or `shed`; the user may `pin`
one. `healthy_hits` is the one place the train and infer lookups consult: a shed version is never
an exact hit, an ancestor or a fallback, unless it is pinned. Additive storage: one "health"
entry per version in the memory index, nothing else changes.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from openmind.memory.blobs import Entry, entries, get, key_for, put

Hit = tuple[dict[str, np.ndarray], Entry]
STATUSES = ("healthy", "shed", "pinned")


def version(entry: Entry) -> str:
    """A short, stable label of one stored version (for cards and the journal)."""
    return f"{entry.key[:8]}" + (f"·{entry.blob[:6]}" if entry.blob else "")


def _key(entry: Entry) -> str:
    return key_for("health", entry.key, entry.blob)


def mark(entry: Entry, status: str, reason: str, figures: dict[str, Any] | None = None) -> None:
    """Record the verdict on one stored model version (shed, healthy or pinned)."""
    if status not in STATUSES:
        from openmind.errors import BadInput

        raise BadInput(f"unknown health status {status!r}; valid: {', '.join(STATUSES)}")
    put("health", entry.name, _key(entry), {"status": np.zeros(1, np.uint8)},
        {"status": status, "model_key": entry.key, "model_blob": entry.blob, "reason": reason,
         "figures": figures or {}, "version": version(entry), "ts": time.time()})


def status(entry: Entry) -> dict[str, Any] | None:
    """The verdict on this version (its meta: status, reason, figures), or None if never judged."""
    for e in entries("health", entry.name):
        if e.key == _key(entry):
            return e.meta
    return None


def shed_versions(name: str) -> dict[tuple[str, str | None], dict[str, Any]]:
    """(model key, blob) -> verdict, for the versions of `name` that are shed (pinned ones are not)."""
    out = {}
    for e in entries("health", name):
        if e.meta.get("status") == "shed":
            out[(e.meta.get("model_key"), e.meta.get("model_blob"))] = e.meta
    return out


def healthy_hits(name: str, exact: Hit | None, ancestor: Hit | None) -> tuple[Hit | None, Hit | None, str | None]:
    """(exact, ancestor, note): the lookups of `name` with shed versions taken out.

    A shed exact hit becomes a miss; a shed ancestor is replaced by the newest version of that name
    that is not shed (or none). `note` says which versions were passed over and why, for the route.
    """
    try:
        shed = shed_versions(name)
    except Exception:  # an unreadable index must not stop training; the lookups stand as they are
        return exact, ancestor, None
    if not shed:
        return exact, ancestor, None
    notes: list[str] = []

    def is_shed(hit: Hit | None) -> bool:
        if hit is None or (hit[1].key, hit[1].blob) not in shed:
            return False
        meta = shed[(hit[1].key, hit[1].blob)]
        line = f"version {meta.get('version')}: {meta.get('reason')}"
        if line not in notes:
            notes.append(line)
        return True

    if is_shed(exact):
        exact = None
    if is_shed(ancestor):
        ancestor = None
        for e in entries("model", name):
            if (e.key, e.blob) not in shed:
                ancestor = get("model", e.key)
                if ancestor is not None:
                    break
    return exact, ancestor, "; ".join(notes) or None
