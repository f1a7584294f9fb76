"""Open Inference Protocol v2 typed tensors <-> numpy, shared by the client and the server.

Decoding validates everything a remote party sends (name, datatype, shape, element count), so a
malformed tensor becomes a `TensorError` with a message naming the bad field, never a crash.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from openmind.errors import BadInput

# OIP v2 datatype -> numpy dtype (BYTES are Python strings in JSON)
DATATYPES: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "FP16": np.float16, "FP32": np.float32, "FP64": np.float64,
    "BYTES": object,
}
_BY_KIND = {np.dtype(v).str: k for k, v in DATATYPES.items() if v is not object}


class TensorError(BadInput):
    """A tensor in an OIP request or response is malformed; the message says which field."""


def datatype_of(arr: np.ndarray) -> str:
    """The OIP datatype name for a numpy array (strings are BYTES)."""
    if arr.dtype.kind in ("U", "S", "O"):
        return "BYTES"
    name = _BY_KIND.get(arr.dtype.newbyteorder("<").str) or _BY_KIND.get(arr.dtype.str)
    if name is None:
        raise TensorError(f"numpy dtype {arr.dtype} has no Open Inference Protocol datatype; "
                          f"use one of {', '.join(DATATYPES)}")
    return name


def encode(name: str, value: Any) -> dict[str, Any]:
    """One tensor as the JSON object OIP v2 expects (row-major flat data)."""
    arr = np.asarray(value)
    dt = datatype_of(arr)
    if dt == "BYTES":
        data = [x.decode() if isinstance(x, bytes) else str(x) for x in arr.reshape(-1).tolist()]
    else:
        data = arr.reshape(-1).tolist()
    return {"name": name, "shape": list(arr.shape), "datatype": dt, "data": data}


def decode(obj: Any, *, where: str = "tensor", max_elements: int = 50_000_000) -> tuple[str, np.ndarray]:
    """(name, array) from one OIP tensor object, validating every field."""
    if not isinstance(obj, dict):
        raise TensorError(f"{where} must be a JSON object with name, shape, datatype, data; got {type(obj).__name__}")
    name = obj.get("name")
    if not isinstance(name, str) or not name:
        raise TensorError(f"{where}.name must be a non-empty string")
    where = f"{where} '{name[:60]}'"
    dtype_name = obj.get("datatype")
    if not isinstance(dtype_name, str) or dtype_name not in DATATYPES:
        raise TensorError(f"{where}: unknown datatype {str(dtype_name)[:40]!r}; valid: {', '.join(DATATYPES)}")
    if not isinstance(obj.get("parameters", {}), dict):
        raise TensorError(f"{where}: parameters must be a JSON object")
    shape = obj.get("shape")
    if (not isinstance(shape, list) or len(shape) > 8
            or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)):
        raise TensorError(f"{where}: shape must be a list of at most 8 non-negative integers, got {str(shape)[:60]}")
    count = math.prod(shape)
    if count > max_elements:
        raise TensorError(f"{where}: {count} elements exceed the limit of {max_elements}")
    data = obj.get("data")
    if not isinstance(data, list):
        raise TensorError(f"{where}: data must be a JSON list")
    try:
        if dtype_name == "BYTES":
            flat = np.asarray(_flatten(data), dtype=object)
            if not all(isinstance(x, str) for x in flat.tolist()):
                raise ValueError("BYTES elements must be strings")
        else:
            flat = np.asarray(data, dtype=DATATYPES[dtype_name]).reshape(-1)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise TensorError(f"{where}: data does not fit datatype {dtype_name} ({str(exc)[:120]})") from None
    if flat.size != count:
        raise TensorError(f"{where}: shape {shape} needs {count} elements, data has {flat.size}")
    return name, flat.reshape(shape)


def _flatten(data: list) -> list:
    out: list = []
    stack = [iter(data)]
    while stack:
        for x in stack[-1]:
            if isinstance(x, list):
                stack.append(iter(x))
                break
            out.append(x)
        else:
            stack.pop()
    return out
