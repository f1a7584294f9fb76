"""`openmind run`'s plan for a notebook: every code cell through the cell pathway, parameters
injected as papermill does, each cell's outcome kept in the executed notebook and in memory.

A run remembers every code cell (the cell pathway: restoring one leaves what a re-run would), so a
later `--resume` restores the cells before the one that failed and runs from there, a `-p` change
re-runs exactly the cells that read that parameter, and `--replay RUN` restores what a recorded run
computed, from the memory this machine shares with the one that ran it. A cell tagged
`openmind-skip` runs as it is, never remembered; a cell that starts with another cell magic owns
its cell and runs as it is too.
"""

from __future__ import annotations

import ast
import hashlib
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from openmind.errors import BadInput

SKIP_TAG = "openmind-skip"
PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
RUN_KIND = "run"
# plain cells run as cells of the cell pathway under this intent (a user cell computed here is
# journaled full_train/HARDCODE on the device it used, a restore muscle_memory/CACHED)
CELL_INTENT = "train"


def parse_value(text: str) -> Any:
    """A parameter's value: a Python literal when it reads as one (`3`, `0.1`, `[1, 2]`, `True`),
    else the text itself, as papermill's `-p` does."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def inject_parameters(nb: Any, params: list[tuple[str, str]]) -> int | None:
    """Insert a cell assigning `params` right after the cell tagged `parameters` (at the top when
    none is tagged); returns its index, or None when there are no parameters."""
    if not params:
        return None
    import nbformat

    lines = []
    for name, raw in params:
        if not name.isidentifier() or name.startswith("_"):
            raise BadInput(f"parameter name {name!r} is not a Python name: -p takes NAME VALUE, "
                           "e.g. -p lr 0.01")
        lines.append(f"{name} = {parse_value(raw)!r}")
    cell = nbformat.v4.new_code_cell("# Parameters injected by openmind run\n" + "\n".join(lines))
    cell.metadata["tags"] = [INJECTED_TAG, SKIP_TAG]
    at = next((i + 1 for i, c in enumerate(nb.cells)
               if PARAMETERS_TAG in c.get("metadata", {}).get("tags", [])), 0)
    nb.cells.insert(at, cell)
    return at


def routed_source(cell: Any, *, fresh: bool) -> str | None:
    """The source a plain code cell runs as, through the cell pathway; None to run it as it is."""
    src = cell.get("source") or ""
    if cell.get("cell_type") != "code" or not src.strip():
        return None
    if SKIP_TAG in cell.get("metadata", {}).get("tags", []):
        return None
    if src.lstrip().startswith("%%"):  # a cell magic (ours or another) owns its cell
        return None
    return f"%%openmind {CELL_INTENT} --quiet" + (" --fresh" if fresh else "") + "\n" + src


@dataclass
class CellOutcome:
    """What became of one code cell in a run: restored or run, how long, what was decided."""

    index: int
    seconds: float
    routed: bool
    records: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    note: str | None = None  # e.g. why a replayed cell could not be replayed

    @property
    def restored(self) -> bool:
        return bool(self.records) and all(
            r.get("ok") and r.get("pathway") == "muscle_memory" and r.get("decision") == "CACHED"
            and not r.get("degraded") for r in self.records)

    @property
    def state(self) -> str:
        if self.error:
            return "failed"
        return "restored" if self.restored else "ran"

    def metadata(self) -> dict[str, Any]:
        """What the executed notebook keeps in the cell's metadata (`openmind`)."""
        keep = ("intent", "name", "pathway", "decision", "degraded", "reason", "duration_ms", "ok")
        out: dict[str, Any] = {"state": self.state, "seconds": round(self.seconds, 4),
                               "decisions": [{k: r.get(k) for k in keep} for r in self.records]}
        if self.note:
            out["note"] = self.note
        return out


class CellTimer:
    """nbclient hooks: route each plain cell through the cell pathway and time it; the executed
    notebook keeps the cell's own source."""

    def __init__(self, *, fresh: bool) -> None:
        self.fresh = fresh
        self.client: Any = None  # the NotebookClient, set once it exists
        self._loaded = False
        self.started: dict[int, float] = {}
        self.seconds: dict[int, float] = {}
        self.routed: dict[int, bool] = {}
        self._source: dict[int, str] = {}

    async def on_cell_execute(self, cell: Any, cell_index: int, **_: Any) -> None:
        wrapped = routed_source(cell, fresh=self.fresh)
        self.routed[cell_index] = wrapped is not None
        if wrapped is not None and not self._loaded and self.client is not None:
            # the magic must exist before the first routed cell; silent: no count, no output
            from jupyter_core.utils import ensure_async

            await ensure_async(self.client.kc.execute("%load_ext openmind.jupyter", silent=True,
                                                      store_history=False))
            self._loaded = True
        if wrapped is not None:
            self._source[cell_index] = cell.source
            cell.source = wrapped
        self.started[cell_index] = time.perf_counter()

    def on_cell_complete(self, cell: Any, cell_index: int, **_: Any) -> None:
        if cell_index in self._source:  # sent: the notebook keeps what the user wrote
            cell.source = self._source.pop(cell_index)

    def on_cell_executed(self, cell: Any, cell_index: int, **_: Any) -> None:
        self.seconds[cell_index] = time.perf_counter() - self.started.get(cell_index,
                                                                         time.perf_counter())

    def hooks(self) -> dict[str, Any]:
        return {"on_cell_execute": self.on_cell_execute, "on_cell_complete": self.on_cell_complete,
                "on_cell_executed": self.on_cell_executed}


def source_id(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass
class Manifest:
    """A run as memory keeps it: which notebook, which cells, what each decided; what `--resume`
    and `--replay` read back (shared through the team's memory like any entry)."""

    run: str
    notebook: str
    created: float
    cells: list[dict[str, Any]]
    failed_cell: int | None = None
    error: str | None = None

    def to_meta(self) -> dict[str, Any]:
        return {"run": self.run, "notebook": self.notebook, "created": self.created,
                "cells": self.cells, "failed_cell": self.failed_cell, "error": self.error}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> Manifest:
        return cls(str(meta["run"]), str(meta.get("notebook") or ""), float(meta.get("created") or 0),
                   list(meta.get("cells") or []), meta.get("failed_cell"), meta.get("error"))


def keep_manifest(manifest: Manifest) -> None:
    """Store the run in muscle memory (kind `run`), so another machine sharing memory replays it."""
    import numpy as np

    from openmind.memory.blobs import key_for, put

    put(RUN_KIND, manifest.run, key_for(RUN_KIND, manifest.run),
        {"none": np.zeros(0, dtype=np.uint8)}, manifest.to_meta())


def find_manifest(run: str) -> Manifest | None:
    """The run's manifest from this machine's memory or the team's (read through), once its
    signature checks out: an untrusted or tampered manifest is not believed."""
    from openmind.memory.blobs import entries, load, versions

    found = versions(RUN_KIND, run) or [e for e in entries(RUN_KIND) if e.name.startswith(run)]
    if len(found) != 1 and not (found and found[0].name == run):
        return None  # none, or a prefix that names several runs
    return Manifest.from_meta(found[0].meta) if load(found[0]) is not None else None


def last_manifest(notebook: str) -> Manifest | None:
    """The newest run of `notebook` (by its file name) that memory holds."""
    from openmind.memory.blobs import entries

    runs = [Manifest.from_meta(e.meta) for e in entries(RUN_KIND)
            if (e.meta or {}).get("notebook") == notebook]
    return max(runs, key=lambda m: m.created) if runs else None


def replay_note(recorded: dict[str, Any] | None, outcome: CellOutcome) -> str | None:
    """Why a cell of a replayed run could not be replayed (None when it was, or had nothing to)."""
    if recorded is None:
        return "not in the recorded run (the notebook changed there)"
    if outcome.restored or not recorded.get("decisions"):
        return None
    if recorded.get("state") == "failed":
        return "it failed in the recorded run: run here"
    paths = {d.get("pathway") for d in recorded["decisions"]}
    if "hardware_in_loop" in paths:
        return "the recorded run read a device; its reading is not in memory here: run here"
    reasons = [str(r.get("reason") or "") for r in outcome.records if r.get("reason")]
    return ("what the recorded run computed is not in this machine's memory"
            + (f" ({reasons[0]})" if reasons else "") + ": run here")
