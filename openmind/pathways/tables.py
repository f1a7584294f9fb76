"""Bytes to data: the formats `openmind.ingest` reads (CSV, TSV, Parquet, JSON, JSON lines,
NumPy .npy/.npz) and the form a SQL result is kept in.

Every result is parsed from bytes, whether they were fetched now or are the copy in memory, so a
fetched result and the same content served from memory are equal, value for value. A SQL result
is kept as canonical JSON (`rows_bytes`): dates and times become ISO strings, NUMERIC becomes
float, bytes become hex. Nothing here is ever unpickled (`allow_pickle=False`).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

from openmind.errors import BadInput

TABULAR = ("csv", "tsv", "parquet", "json", "jsonl")
ARRAYS = ("npy", "npz")
SQL = "sqljson"  # a SQL result as `rows_bytes` writes it
FORMATS = (*TABULAR, *ARRAYS)

# file suffix -> format (a trailing .gz is read as gzip)
_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".tab": "tsv", ".parquet": "parquet", ".pq": "parquet",
           ".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".npy": "npy", ".npz": "npz"}
# HTTP Content-Type (without parameters) -> format
_MEDIA = {"text/csv": "csv", "application/csv": "csv", "text/tab-separated-values": "tsv",
          "application/vnd.apache.parquet": "parquet", "application/parquet": "parquet",
          "application/x-parquet": "parquet", "application/json": "json",
          "application/x-ndjson": "jsonl", "application/jsonl": "jsonl",
          "application/x-npy": "npy", "application/x-npz": "npz"}


def check_format(fmt: Any) -> str:
    """A format word given by the caller, or BadInput naming the valid ones."""
    word = str(fmt).strip().lower().lstrip(".")
    if word not in FORMATS:
        raise BadInput(f"unknown format {fmt!r}; valid: {', '.join(FORMATS)}")
    return word


def format_of(name: str, media_type: str | None = None) -> str | None:
    """The format a file or URL path names by its suffix, else its Content-Type; None if neither."""
    low = name.lower()  # a file name, a glob or a URL's path (its query is not part of it)
    if low.endswith(".gz"):
        low = low[:-3]
    for suffix, fmt in _SUFFIX.items():
        if low.endswith(suffix):
            return fmt
    media = (media_type or "").split(";", 1)[0].strip().lower()
    return _MEDIA.get(media)


def _pandas() -> Any:
    try:
        import pandas as pd
    except ImportError:  # pragma: no cover - pandas is a dependency
        raise BadInput("reading tables needs pandas: pip install pandas") from None
    return pd


def _table(data: bytes, fmt: str, gz: bool) -> Any:
    pd = _pandas()
    buf = io.BytesIO(data)
    comp = "gzip" if gz else None
    if fmt == "csv":
        return pd.read_csv(buf, compression=comp)
    if fmt == "tsv":
        return pd.read_csv(buf, sep="\t", compression=comp)
    if fmt == "json":
        return pd.read_json(buf, compression=comp)
    if fmt == "jsonl":
        return pd.read_json(buf, lines=True, compression=comp)
    try:
        return pd.read_parquet(buf)
    except ImportError:
        raise BadInput("reading Parquet needs pyarrow: pip install 'openmind-cells[parquet]'") from None


def _array(data: bytes, fmt: str) -> Any:
    loaded = np.load(io.BytesIO(data), allow_pickle=False)
    if fmt == "npy":
        return loaded
    with loaded:
        return {k: loaded[k] for k in loaded.files}


def parse(parts: Sequence[bytes], names: Sequence[str], fmt: str) -> Any:
    """The data in `parts` (one per file, in order): a DataFrame for tables (several files are
    concatenated row-wise), an array for .npy (concatenated along the first axis), a dict of
    arrays for .npz. Raises ValueError (or the reader's own error) when the bytes are not that
    format: content that does not parse is never a good copy."""
    if fmt == SQL:
        return rows_frame(parts[0])
    if fmt in TABULAR:
        frames = [_table(p, fmt, n.lower().endswith(".gz")) for p, n in zip(parts, names, strict=True)]
        return frames[0] if len(frames) == 1 else _pandas().concat(frames, ignore_index=True)
    arrays = [_array(p, fmt) for p in parts]
    if len(arrays) == 1:
        return arrays[0]
    if fmt == "npy":
        return np.concatenate(arrays)
    keys = set(arrays[0])
    if any(set(a) != keys for a in arrays):
        raise ValueError("the .npz files hold different array names; ingest them one by one")
    return {k: np.concatenate([a[k] for a in arrays]) for k in sorted(keys)}


def _plain(value: Any) -> Any:
    """A SQL value JSON cannot hold, as the kept form has it."""
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return str(value)


def rows_bytes(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """A SQL result in its kept form: canonical JSON, the same bytes for the same result."""
    return json.dumps({"columns": [str(c) for c in columns], "rows": [list(r) for r in rows]},
                      default=_plain, separators=(",", ":"), ensure_ascii=False).encode()


def rows_frame(data: bytes) -> Any:
    doc = json.loads(data.decode())
    return _pandas().DataFrame(doc["rows"], columns=doc["columns"])


def describe(value: Any) -> dict[str, Any]:
    """rows / columns / shape of a parsed result, for the route's summary and memory listings."""
    if hasattr(value, "columns") and hasattr(value, "shape"):
        return {"rows": int(value.shape[0]), "columns": [str(c) for c in value.columns][:50]}
    if isinstance(value, np.ndarray):
        return {"shape": list(value.shape), "dtype": str(value.dtype)}
    if isinstance(value, dict):
        return {"arrays": {k: list(np.shape(v)) for k, v in list(value.items())[:50]}}
    return {}
