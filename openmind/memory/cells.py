"""Cell entries in muscle memory: the values a cell bound and what it showed, kept so a hit can
restore them.

Arrays and tensors go into the entry's safetensors blob as they are. Anything else (a fitted
estimator, an `nn.Module`, a DataFrame) is pickled, as joblib and ipycache do. The recorded
outputs are JSON. The whole entry (blob hash, metadata, kind, name, key) is signed with this
machine's Ed25519 key (`memory.keys`, kept outside OPENMIND_HOME) when it is kept, and checked
when it is read: a payload whose entry does not verify, or that a key this machine does not trust
signed, is never unpickled, and the entry is a miss with a warning. openmind's own artifacts never
come through here.
"""

from __future__ import annotations

import io
import json
import pickle
import sys
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.memory import keys
from openmind.memory.blobs import Entry, MemoryWarning, find, get, latest, put

KIND = "cell"
OUTPUTS = "__outputs__"


class Tampered(Exception):
    """A cell entry whose signature does not verify, or that no trusted key signed."""


@dataclass
class Kept:
    """What a cell entry gives back: its values (name -> object), outputs, and what was not kept."""

    values: dict[str, Any]
    outputs: list[dict[str, Any]]
    unkept: dict[str, str]
    entry: Entry

    @property
    def origin(self) -> str | None:
        """'from the team's memory, published by <key id> at <time>' when it came from the team."""
        return self.entry.origin


def _as_array(value: Any) -> tuple[np.ndarray, dict[str, Any]] | None:
    """(array, how to rebuild) for numpy arrays and torch tensors that safetensors can hold."""
    if isinstance(value, np.ndarray) and not value.dtype.hasobject and value.dtype.kind in "biufc" \
            and value.dtype.kind != "c":
        return value, {"as": "numpy"}
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(value, torch.Tensor) and value.layout == torch.strided:
        try:
            arr = value.detach().cpu().numpy()
        except (TypeError, RuntimeError):  # bfloat16 and friends: pickled instead
            return None
        return arr, {"as": "torch", "device": str(value.device),
                     "requires_grad": bool(value.requires_grad)}
    return None


def pack(values: dict[str, Any], outputs: list[dict[str, Any]]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays for the blob, meta) from a cell's values; values that cannot be kept are listed in
    meta["unkept"] with the reason, never raised. The entry is signed when it is kept (blobs.put)."""
    arrays: dict[str, np.ndarray] = {}
    how: dict[str, dict[str, Any]] = {}
    unkept: dict[str, str] = {}
    for name, value in values.items():
        got = _as_array(value)
        if got is not None:
            arrays["a/" + name], how[name] = np.ascontiguousarray(got[0]), got[1]
            continue
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means "not kept"
            unkept[name] = f"{type(value).__name__} cannot be pickled ({type(exc).__name__}: {exc})"[:200]
            continue
        arrays["p/" + name] = np.frombuffer(data, dtype=np.uint8)
        how[name] = {"as": "pickle"}
    out = json.dumps(outputs, default=str).encode()
    arrays["o/" + OUTPUTS] = np.frombuffer(out, dtype=np.uint8)
    return arrays, {"values": how, "unkept": unkept}


def unpack(arrays: dict[str, np.ndarray], entry: Entry) -> Kept:
    """Check the entry is signed by a trusted key first; only then unpickle. The blob itself was
    checked against the signed hash when it was read (blobs.get). Raises Tampered saying why."""
    meta = entry.meta
    try:
        keys.verify(entry.sig, entry.kind, entry.name, entry.key, entry.blob, entry.size, meta)
    except (keys.Refused, keys.KeyProblem) as exc:
        raise Tampered(str(exc)) from None
    how = meta.get("values") or {}
    payloads: dict[str, bytes] = {}
    for name, spec in how.items():
        if spec.get("as") == "pickle":
            payloads[name] = arrays["p/" + name].tobytes()
    payloads[OUTPUTS] = arrays["o/" + OUTPUTS].tobytes()
    values: dict[str, Any] = {}
    torch = sys.modules.get("torch")
    for name, spec in how.items():
        kind = spec.get("as")
        if kind == "pickle":
            values[name] = pickle.load(io.BytesIO(payloads[name]))  # noqa: S301 - signed, trusted
        elif kind == "numpy":
            values[name] = arrays["a/" + name]
        elif kind == "torch":
            if torch is None:
                import torch
            t = torch.from_numpy(np.array(arrays["a/" + name]))
            device = spec.get("device", "cpu")
            if device.startswith("cuda") and torch.cuda.is_available():
                t = t.to(device)
            values[name] = t.requires_grad_(bool(spec.get("requires_grad")))
    outputs = json.loads(payloads[OUTPUTS].decode())
    return Kept(values, outputs, dict(meta.get("unkept") or {}), entry)


def store(name: str, key: str, values: dict[str, Any], outputs: list[dict[str, Any]],
          meta: dict[str, Any]) -> Entry | None:
    """Keep a cell's values and outputs under `key` (name: the cell's code, for `latest`)."""
    arrays, packed = pack(values, outputs)
    return put(KIND, name, key, arrays, {**meta, **packed})


def _open(found: tuple[dict[str, np.ndarray], Entry] | None) -> Kept | None:
    if found is None:
        return None
    arrays, entry = found
    try:
        return unpack(arrays, entry)
    except Tampered as exc:
        warnings.warn(f"openmind: cell entry {entry.key[:12]} refused, nothing was unpickled: {exc}; "
                      f"treating it as a miss", MemoryWarning, stacklevel=3)
    except Exception as exc:  # noqa: BLE001 - e.g. a class that no longer exists: a miss
        warnings.warn(f"openmind: cell entry {entry.key[:12]} could not be restored "
                      f"({type(exc).__name__}: {exc}); treating it as a miss", MemoryWarning,
                      stacklevel=3)
    return None


def peek(key: str) -> Entry | None:
    """The index row of the entry under `key` (size, run time), without reading its blob; a
    local miss reads through the team's memory (OPENMIND_REMOTE), keeping what it brings."""
    found = next((e for e in find(key) if e.kind == KIND and e.key == key), None)
    if found is None:
        from openmind.memory import team

        if team.pull(KIND, key):
            found = next((e for e in find(key) if e.kind == KIND and e.key == key), None)
    return found


def lookup(key: str) -> Kept | None:
    """The verified, restored entry under `key`, or None (a miss, with a warning if refused)."""
    return _open(get(KIND, key))


def last_good(name: str) -> Kept | None:
    """The newest verified entry of the same code (other inputs), or None."""
    return _open(latest(KIND, name))
