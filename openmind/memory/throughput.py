"""This machine's measured training throughput, per architecture: what time estimates rest on.

A small JSON file in OPENMIND_HOME (written atomically), keyed by device, layer widths, batch size
and threads. Best effort: an unreadable or unwritable file is a miss, never an error.
"""

from __future__ import annotations

import json
from typing import Any

from openmind.config import home
from openmind.memory.blobs import atomic_write

FILE = "throughput.json"


def _read() -> dict[str, Any]:
    try:
        data = json.loads((home() / FILE).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def recall(arch: str) -> dict[str, float] | None:
    """What was measured for `arch` on this machine (None: never measured)."""
    found = _read().get(arch)
    return found if isinstance(found, dict) else None


def remember(arch: str, **figures: float) -> None:
    """Keep figures for `arch` (merged over what was there)."""
    try:
        data = _read()
        data[arch] = {**(data.get(arch) if isinstance(data.get(arch), dict) else {}), **figures}
        atomic_write(home() / FILE, json.dumps(data, indent=1, sort_keys=True).encode())
    except OSError:
        pass  # a read-only home: the next estimate measures again
