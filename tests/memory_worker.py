"""A process that writes to muscle memory, or one that evicts from it in a loop, for the
concurrency test. Prints one line `RESULT <json>`: what it did, the warnings and exceptions."""

from __future__ import annotations

import json
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

POOL = [np.full(2048, i, dtype=np.float32) for i in range(8)]  # shared contents: deduplicated blobs


def write(who: str, n: int) -> dict:
    from openmind.memory.blobs import put

    kept, errors = [], []
    for i in range(n):
        try:
            if put("predictions", who, f"{who}-{i:04d}", {"y": POOL[(i * 3 + len(who)) % 8]}):
                kept.append(f"{who}-{i:04d}")
        except Exception:  # noqa: BLE001 - counted: the test wants none
            errors.append(traceback.format_exc(limit=3))
    return {"kept": kept, "errors": errors}


def evict(stop: Path) -> dict:
    from openmind.memory.blobs import gc, put, remove

    rounds, errors = 0, []
    while not stop.exists() or rounds < 3:
        try:  # its own entries share contents with the writers': removing them must spare those
            for j in range(4):
                put("predictions", "gc", f"gcgcgc-{rounds}-{j}", {"y": POOL[(rounds + j) % 8]})
            remove(f"gcgcgc-{rounds}-")
            gc(older_than=3600, max_bytes=10**12)
        except Exception:  # noqa: BLE001
            errors.append(traceback.format_exc(limit=3))
        rounds += 1
    return {"rounds": rounds, "errors": errors}


def main() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = write(sys.argv[2], int(sys.argv[3])) if sys.argv[1] == "write" else evict(Path(sys.argv[2]))
    out["warnings"] = [str(w.message) for w in caught]
    print("RESULT " + json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
