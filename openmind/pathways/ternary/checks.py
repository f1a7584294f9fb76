"""Input checks shared by every way in (train, infer, predict): rows of numbers, finite, of the
width a model takes; BadInput says what was wrong and where."""

from __future__ import annotations

from typing import Any

import numpy as np

from openmind.errors import BadInput


def check_features(X: Any, n_features: int, what: str = "X") -> np.ndarray:
    """X as a finite 2-D float array with `n_features` columns, or BadInput saying what is wrong."""
    arr = as_numeric(X, what)
    if arr.dtype.kind not in "biuf":
        raise BadInput(f"{what} must be numeric, got dtype {arr.dtype}; encode text/categories as numbers first")
    if arr.ndim == 1:
        if arr.shape[0] != n_features:
            raise BadInput(f"{what} is one row of {arr.shape[0]} values but the model expects "
                           f"{n_features} features per row")
        arr = arr.reshape(1, -1)
    if arr.ndim > 2:  # images etc.: the model was trained on them flattened
        arr = arr.reshape(arr.shape[0], -1)
    if arr.ndim != 2:
        raise BadInput(f"{what} must be 2-D (rows x features), got shape {arr.shape}")
    if arr.shape[1] != n_features:
        raise BadInput(f"{what} has {arr.shape[1]} features per row (shape {arr.shape}) but the "
                       f"model was trained on {n_features}; pass the same columns in the same order")
    check_finite(arr, what)
    return arr


def as_numeric(X: Any, what: str = "X") -> np.ndarray:
    """X as a numeric numpy array (lists, DataFrames and object arrays of numbers are converted)."""
    try:
        arr = np.asarray(X)
        if arr.dtype.kind == "O":
            arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{what} must be numeric (an array of numbers): {exc}") from None
    return arr


# The model computes in float32: a value beyond this is infinite there.
FLOAT32_MAX = float(np.finfo(np.float32).max)


def check_finite(arr: np.ndarray, what: str = "X") -> None:
    """BadInput naming the first NaN/inf cell (row, column) and how many there are, or the first
    value beyond float32's range, where the model computes (it would be infinite there)."""
    if arr.dtype.kind != "f":
        return
    if arr.dtype.itemsize > 4:  # one pass finds NaN, infinity and float32 overflow alike
        with np.errstate(over="ignore"):
            bad = ~np.isfinite(arr.astype(np.float32))
    else:
        bad = ~np.isfinite(arr)
    if not bad.any():
        return
    where = np.argwhere(bad)
    r, c = (int(v) for v in where[0][:2]) if where.shape[1] >= 2 else (int(where[0][0]), 0)
    value = arr[tuple(where[0])]
    more = f" ({len(where) - 1} more bad cells)" if len(where) > 1 else ""
    if np.isfinite(value):
        raise BadInput(f"{what} has {value:.3g} at row {r}, column {c}{more}: beyond float32's "
                       f"range (±{FLOAT32_MAX:.3g}), where the model computes; rescale those "
                       f"columns (e.g. divide by a power of ten, or take a log)")
    kind = "NaN" if np.isnan(value) else "an infinite value"
    raise BadInput(f"{what} has {kind} at row {r}, column {c}{more}; impute or drop those "
                   f"rows before training or predicting")


def as_rows(data: Any, what: str = "X") -> np.ndarray:
    """np.asarray(data), or BadInput naming the row when the rows are ragged or a cell of a
    table is not a number (numpy's own messages name neither)."""
    try:
        arr = np.asarray(data)
    except (ValueError, TypeError) as exc:
        raise BadInput(f"{what} {_odd_row(data)}; give every row the same number of features "
                       f"({str(exc)[:80]})") from None
    if arr.dtype == object and arr.ndim >= 2 and arr.size:
        for i, row in enumerate(arr.reshape(len(arr), -1)):
            for j, v in enumerate(row):
                if isinstance(v, bool) or not isinstance(v, (int, float, np.number)):
                    raise BadInput(f"{what} row {i}, column {j} holds a {type(v).__name__} "
                                   f"({str(v)[:30]!r}); every cell of a table must be a number")
    return arr


def _odd_row(data: Any) -> str:
    """Which row breaks the table: the first whose shape differs from row 0's."""
    try:
        rows = list(data)
    except TypeError:
        return "cannot be read as rows"
    first: tuple | None = None
    for i, row in enumerate(rows):
        try:
            shape = np.shape(row) if not isinstance(row, (str, bytes)) else ()
        except (ValueError, TypeError):
            return f"row {i} is itself ragged"
        if first is None:
            first = shape
        elif shape != first:
            return f"is ragged: row {i} has shape {list(shape)}, row 0 has {list(first)}"
    return "has rows of different shapes"
