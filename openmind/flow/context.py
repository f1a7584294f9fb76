"""Where a decision was made: kernel session, notebook, cell id and execution count.

The Jupyter layer sets the cell for the duration of a cell; plain scripts get a session id only.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

_session: str | None = None


@dataclass(frozen=True)
class Cell:
    cell_id: str | None = None
    execution_count: int | None = None
    notebook: str | None = None


_NO_CELL = Cell()
_cell: contextvars.ContextVar[Cell] = contextvars.ContextVar("openmind_cell", default=_NO_CELL)  # noqa: B039 (frozen)


def session_id() -> str:
    """The kernel id when running in a Jupyter kernel, else a per-process id."""
    global _session
    if _session is None:
        _session = _kernel_id() or f"pid{os.getpid()}-{uuid.uuid4().hex[:8]}"
    return _session


def _kernel_id() -> str | None:
    try:
        from ipykernel.connect import get_connection_file

        name = os.path.basename(get_connection_file())
    except Exception:  # not in a kernel
        return None
    if name.startswith("kernel-") and name.endswith(".json"):
        return name[len("kernel-") : -len(".json")]
    return name or None


def current_cell() -> Cell:
    cell = _cell.get()
    if cell.notebook is None and os.environ.get("JPY_SESSION_NAME"):
        cell = Cell(cell.cell_id, cell.execution_count, os.environ["JPY_SESSION_NAME"])
    return cell


def set_cell(cell_id: str | None, execution_count: int | None, notebook: str | None = None):
    """Set the current cell; returns a token for `reset_cell`."""
    return _cell.set(Cell(cell_id, execution_count, notebook))


def reset_cell(token) -> None:
    _cell.reset(token)


@contextlib.contextmanager
def in_cell(cell_id: str | None, execution_count: int | None = None,
            notebook: str | None = None) -> Iterator[Cell]:
    token = set_cell(cell_id, execution_count, notebook)
    try:
        yield _cell.get()
    finally:
        reset_cell(token)


def cell_dict() -> dict:
    cell = current_cell()  # every journal record asks: a plain dict, not dataclasses.asdict
    return {"cell_id": cell.cell_id, "execution_count": cell.execution_count, "notebook": cell.notebook}
