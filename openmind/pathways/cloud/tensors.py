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
    name, dtype_name, shape, count, where = _header(obj, where, max_elements)
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


def _header(obj: Any, where: str, max_elements: int) -> tuple[str, str, list[int], int, str]:
    """(name, datatype, shape, element count, where) of a tensor object, each field checked."""
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
    return name, dtype_name, shape, count, where


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


# --------------------------------------------------------------------------- binary tensor data
# The binary tensor data extension (Triton / KServe v2): the body is a JSON header of
# `Inference-Header-Content-Length` bytes, then the raw tensors in the order the header lists them,
# each marked by "parameters": {"binary_data_size": n}. Numbers are little-endian row-major; BYTES
# elements are a 4-byte little-endian length then the bytes.

HEADER = "Inference-Header-Content-Length"
EXTENSION = "binary_tensor_data"


def encode_binary(name: str, value: Any) -> tuple[dict[str, Any], bytes]:
    """(tensor JSON without data, raw bytes) for one tensor sent as binary data."""
    arr = np.asarray(value)
    dt = datatype_of(arr)
    if dt == "BYTES":
        parts = []
        for x in arr.reshape(-1).tolist():
            b = x if isinstance(x, bytes) else str(x).encode()
            parts += [len(b).to_bytes(4, "little"), b]
        raw = b"".join(parts)
    else:
        raw = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<")).tobytes()
    return ({"name": name, "shape": list(arr.shape), "datatype": dt,
             "parameters": {"binary_data_size": len(raw)}}, raw)


def encode_many(values: dict[str, Any], binary: bool | dict[str, bool]) -> tuple[list[dict[str, Any]], bytes]:
    """(tensor list, binary data) for a request or response; `binary` for all or per name."""
    out, raws = [], []
    for name, value in values.items():
        if binary is True or (isinstance(binary, dict) and binary.get(name)):
            tensor, raw = encode_binary(name, value)
            raws.append(raw)
        else:
            tensor = encode(name, value)
        out.append(tensor)
    return out, b"".join(raws)


def binary_size(obj: Any, where: str) -> int | None:
    """The tensor's binary_data_size parameter, None when its data is inline JSON."""
    params = obj.get("parameters") if isinstance(obj, dict) else None
    if not isinstance(params, dict) or "binary_data_size" not in params:
        return None
    size = params["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise TensorError(f"{where}: parameters.binary_data_size must be a non-negative integer")
    return size


def decode_binary(obj: Any, raw: bytes | memoryview, *, where: str = "tensor",
                  max_elements: int = 50_000_000) -> tuple[str, np.ndarray]:
    """(name, array) from a tensor header whose data is `raw` (its binary_data_size bytes)."""
    name, dtype_name, shape, count, where = _header(obj, where, max_elements)
    if dtype_name == "BYTES":
        items, pos, buf = [], 0, bytes(raw)
        while pos < len(buf):
            if pos + 4 > len(buf):
                raise TensorError(f"{where}: BYTES element at offset {pos} has a truncated length")
            n = int.from_bytes(buf[pos:pos + 4], "little")
            if pos + 4 + n > len(buf):
                raise TensorError(f"{where}: BYTES element at offset {pos} runs past the data")
            try:
                items.append(buf[pos + 4:pos + 4 + n].decode())
            except UnicodeDecodeError:
                raise TensorError(f"{where}: BYTES element at offset {pos} is not UTF-8") from None
            pos += 4 + n
        flat = np.empty(len(items), dtype=object)
        flat[:] = items
    else:
        dtype = np.dtype(DATATYPES[dtype_name]).newbyteorder("<")
        if len(raw) != count * dtype.itemsize:
            raise TensorError(f"{where}: shape {shape} of {dtype_name} needs {count * dtype.itemsize} "
                              f"bytes, binary_data_size is {len(raw)}")
        flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="), copy=False)
    if flat.size != count:
        raise TensorError(f"{where}: shape {shape} needs {count} elements, data has {flat.size}")
    return name, flat.reshape(shape)


def split_body(body: bytes, header_length: str | int | None) -> tuple[Any, memoryview]:
    """(JSON header, the binary rest) of a body; without the header length, all JSON. ValueError
    (for the caller to word) when the length is not a number within the body."""
    import json

    if header_length is None:
        return json.loads(body or b"null"), memoryview(b"")
    n = int(header_length)
    if not 0 <= n <= len(body):
        raise ValueError(f"{HEADER} {n} is outside the body of {len(body)} bytes")
    view = memoryview(body)
    return json.loads(bytes(view[:n]) or b"null"), view[n:]


def take_binary(tensors: list, rest: memoryview, *, where: str,
                max_elements: int = 50_000_000) -> list[tuple[str, np.ndarray]]:
    """Decode a list of tensors, inline JSON or binary (consuming `rest` in order)."""
    out, pos = [], 0
    for i, t in enumerate(tensors):
        size = binary_size(t, f"{where}[{i}]")
        if size is None:
            out.append(decode(t, where=f"{where}[{i}]", max_elements=max_elements))
            continue
        if pos + size > len(rest):
            raise TensorError(f"{where}[{i}]: binary_data_size {size} runs past the binary data "
                              f"({len(rest) - pos} bytes left)")
        out.append(decode_binary(t, rest[pos:pos + size], where=f"{where}[{i}]", max_elements=max_elements))
        pos += size
    if pos != len(rest):
        raise TensorError(f"{len(rest) - pos} bytes of binary data follow the last tensor")
    return out
