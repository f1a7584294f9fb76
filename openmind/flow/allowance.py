"""What the route allows a running cell: `openmind.device()` and `openmind.budget()`.

The cell pathway sets them for the duration of a cell's body; outside one, `device()` answers
from the probe (CUDA when a GPU is present and not assumed off, else the CPU) and `budget()` from
the active policy scope.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from typing import Any

_allowed: contextvars.ContextVar[tuple[str, float | None] | None] = contextvars.ContextVar(
    "openmind_allowed", default=None)


@contextlib.contextmanager
def allowing(device: str, budget: float | None) -> Iterator[None]:
    """Run a block with this device and budget in force (the cell pathway's body)."""
    token = _allowed.set((device, budget))
    try:
        yield
    finally:
        _allowed.reset(token)


def device_name() -> str:
    """'cuda' (or 'cuda:N') or 'cpu': the route's choice inside a cell, else the probe's."""
    got = _allowed.get()
    if got is not None:
        return got[0]
    from openmind.flow.resources import probe

    return "cuda" if probe().gpu.available else "cpu"


def device() -> Any:
    """The torch device a cell should use: `model.to(openmind.device())`.

    CUDA when the route allows it (a GPU is present and not assumed off), else the CPU; a plain
    string when torch is not installed."""
    name = device_name()
    try:
        import torch
    except ImportError:
        return name
    return torch.device(name)


def budget() -> float | None:
    """The seconds the running cell may spend (None: no limit)."""
    got = _allowed.get()
    if got is not None:
        return got[1]
    from openmind.flow.policy import make_policy

    return make_policy().budget
