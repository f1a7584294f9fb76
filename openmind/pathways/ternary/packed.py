"""Ternary models for inference: numpy only, never torch.

A `TernaryModel` is an MLP whose weights are trits {-1, 0, +1} with a float32 scale per layer (or
per output row), a float32 bias, and the input standardisation it was trained with. Its "chord
shape" is the packed form of docs/packed-format.md (2 bits a weight): `model.pack() -> bytes` and
`PackedModel.from_bytes(b)`, which loads and predicts with numpy alone (the ESP32 runs the same
bytes).

Two ways to compute, chosen per call:
- fast (the default of `predict`, `predict_proba`, `predict_index`): float32 weights dequantized
  once per loaded model and cached on it, one BLAS matmul a layer. Not bit-exact with the device
  (BLAS sums in its own order), so a near tie can flip a label.
- exact (`scores`, and `exact=True` everywhere): the format's arithmetic bit for bit (ordered
  float32 sums), so the notebook, the packed file and the device agree. It runs in the compiled
  host kernel (`native.py`, omkernel.c) where a C compiler exists, else in the numpy loop
  `forward`; both give the same bits.

Training lives in `openmind/fit.py` (torch); this module must not import it.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from openmind.errors import BadInput

MAGIC = b"OMT1"
VERSION = 1
U16_MAX = 0xFFFF
_HEAD = struct.Struct("<4sHHHH")
_LAYER = struct.Struct("<HHBBH")
# trit -> 2-bit code (00 -> -1, 01 -> 0, 10 -> +1); index = trit + 1
_CODE = np.array([0, 1, 2], dtype=np.uint8)
_TRIT = np.array([-1, 0, 1, 127], dtype=np.int8)  # 127 marks the invalid code 11


@dataclass(frozen=True)
class Layer:
    """One ternary layer: trits [out, in] (int8), scale (1 or out float32), bias (out float32)."""

    trits: np.ndarray
    scale: np.ndarray
    bias: np.ndarray
    relu: bool

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.trits.shape[0]), int(self.trits.shape[1])

    @property
    def scale_mode(self) -> int:
        return 0 if self.scale.size == 1 else 1

    def weights(self) -> np.ndarray:
        """The dequantized float32 weights (trit x scale), for speed paths and fine-tuning."""
        s = self.scale.reshape(-1, 1) if self.scale_mode else self.scale.reshape(1, 1)
        return self.trits.astype(np.float32) * s


# --------------------------------------------------------------------------- the kernel


def standardize(X: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """Step 1 of the format: x' = (x - mean) * inv_std, each op rounded to float32."""
    return (X.astype(np.float32, copy=False) - mean) * inv_std


def forward(X: np.ndarray, mean: np.ndarray, inv_std: np.ndarray,
            layers: Sequence[Layer]) -> np.ndarray:
    """Scores (float32, [rows, outputs]) bit-exact with the C kernel of docs/packed-format.md.

    The accumulation runs over the inputs in ascending order, one float32 add per step, for all
    rows and outputs at once: adding h*t with t in {-1, 0, +1} equals the C `acc + h` / `acc - h`
    / skip (x - y is x + (-y) in IEEE 754, and acc, starting at +0.0, never becomes -0.0, so adding
    a signed zero for t = 0 leaves it unchanged).
    """
    return _layers_exact(standardize(X, mean, inv_std), layers)


def _layers_exact(h: np.ndarray, layers: Sequence[Layer]) -> np.ndarray:
    """The numpy loop of `forward` after standardisation (the fallback of the compiled kernel)."""
    for layer in layers:
        t = layer.trits.astype(np.float32)  # [out, in]
        acc = np.zeros((h.shape[0], t.shape[0]), dtype=np.float32)
        for i in range(t.shape[1]):
            acc += h[:, i:i + 1] * t[:, i]
        y = acc * layer.scale + layer.bias
        if layer.relu:
            y = np.where(y < 0, np.float32(0), y)
        h = y
    return h


Folded = list[tuple[np.ndarray, np.ndarray, bool]]


def _fold(layers: Sequence[Layer], mean: np.ndarray, inv_std: np.ndarray) -> Folded:
    """[(weights [in, out], -bias for a ReLU layer's `maximum`, else the bias, relu)] for
    `Kernels.fast`, computed in float64 and stored as float32. The format puts ReLU on every layer
    but the last, so the last bias is added, never carried on."""
    out: Folded = []
    carry: np.ndarray | None = None  # the bias a ReLU layer left for the next one
    for i, a in enumerate(layers):
        w = a.weights().T.astype(np.float64)
        b = a.bias.astype(np.float64)
        if i == 0:
            w = inv_std.astype(np.float64)[:, None] * w
            b = b - mean.astype(np.float64) @ w
        if carry is not None:
            b = b + carry @ w
        carry = b if a.relu else None
        out.append((np.ascontiguousarray(w, np.float32), (-b if a.relu else b).astype(np.float32), a.relu))
    if carry is not None:
        raise ValueError("the last layer has ReLU: the packed format gives the scores without it")
    return out


class Kernels:
    """What one model computes with, prepared once: dequantized float32 weights for BLAS, the
    exact kernel's weight layout, the 2-bit layout of the ternary kernel (each built on first use)."""

    def __init__(self, layers: Sequence[Layer], mean: np.ndarray, inv_std: np.ndarray) -> None:
        self.layers = list(layers)
        self.mean, self.inv_std = mean, inv_std
        self.key = tuple(id(a) for a in self.layers)
        self._folded: Folded | None = None
        self._exact: list[tuple[np.ndarray, int, np.ndarray, np.ndarray, bool]] | None = None
        self._ternary: list[Any] | None = None  # native.TernaryLayer (imported on first use)

    def fast(self, X: np.ndarray) -> np.ndarray:
        """Raw rows -> scores by BLAS (not bit-exact: BLAS sums in its own order), with weights
        (trit x scale) cast once and two passes over the data fewer per layer, the algebra
        done once per model: the standardisation folds into the first layer
        ((x - m) s @ W = x @ (s W) - (m s) @ W), and a ReLU layer's bias into the next one's
        (relu(y + b) = max(y, -b) + b, and (g + b) @ W = g @ W + b @ W): one `maximum` a layer
        instead of an add and a maximum."""
        if self._folded is None:
            self._folded = _fold(self.layers, self.mean, self.inv_std)
        h = X.astype(np.float32, copy=False)
        for wt, v, relu in self._folded:
            h = h @ wt
            if relu:
                np.maximum(h, v, out=h)
            else:
                h += v
        return h

    def exact(self, h: np.ndarray) -> np.ndarray:
        """Standardized rows -> scores bit-exact with the device: compiled kernel, else numpy."""
        from openmind.pathways.ternary import native

        handle = native.lib()
        if handle is None:
            return _layers_exact(h, self.layers)
        if self._exact is None:
            self._exact = [(native.exact_weights(a.trits), a.shape[0],
                            np.ascontiguousarray(a.scale, np.float32),
                            np.ascontiguousarray(a.bias, np.float32), a.relu) for a in self.layers]
        for wt, out, scale, bias, relu in self._exact:
            h = native.layer_exact(handle, h, wt, out, scale, bias, relu)
        return h

    def ternary(self, X: np.ndarray) -> np.ndarray:
        """Raw rows -> scores by the 2-bit ternary kernel (int8 activations; approximate).
        Without a compiler numpy computes the same bits, slower."""
        from openmind.pathways.ternary import native

        if self._ternary is None:
            self._ternary = [native.TernaryLayer(a.trits, a.scale, a.bias, a.relu,
                                                 (self.mean, self.inv_std) if i == 0 else None)
                             for i, a in enumerate(self.layers)]
        return native.ternary_forward(native.lib(), self._ternary, X)


def softmax(scores: np.ndarray) -> np.ndarray:
    z = scores.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


# --------------------------------------------------------------------------- input checks


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


def check_finite(arr: np.ndarray, what: str = "X") -> None:
    """BadInput naming the first NaN/inf cell (row, column) and how many there are."""
    if arr.dtype.kind != "f":
        return
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)
        r, c = (int(v) for v in where[0][:2]) if where.shape[1] >= 2 else (int(where[0][0]), 0)
        kind = "NaN" if np.isnan(arr[tuple(where[0])]) else "an infinite value"
        more = f" ({len(where) - 1} more bad cells)" if len(where) > 1 else ""
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


# --------------------------------------------------------------------------- packed


class PackedModel:
    """A model in the packed format, predicting with numpy alone (importing no torch).

    `classes` (optional) maps the class index the format returns to the label the caller used.
    """

    def __init__(self, layers: Sequence[Layer], mean: np.ndarray, inv_std: np.ndarray,
                 classes: Sequence[Any] | np.ndarray | None = None) -> None:
        self.layers = list(layers)
        self.mean = np.ascontiguousarray(mean, dtype=np.float32)
        self.inv_std = np.ascontiguousarray(inv_std, dtype=np.float32)
        self.classes_ = None if classes is None else np.asarray(classes)
        _validate(self.layers, self.mean, self.inv_std, self.classes_)

    # ---- shape
    @property
    def n_features_in_(self) -> int:
        return int(self.mean.shape[0])

    @property
    def n_outputs(self) -> int:
        return self.layers[-1].shape[0]

    # ---- inference
    def kernels(self) -> Kernels:
        """The prepared weights, built once per model (again only if `layers` is replaced)."""
        k = self.__dict__.get("_kernels")
        if k is None or k.key != tuple(id(a) for a in self.layers):
            k = self.__dict__["_kernels"] = Kernels(self.layers, self.mean, self.inv_std)
        return k

    def _check(self, X: Any) -> np.ndarray:
        name = getattr(self, "name", None)
        return check_features(X, self.n_features_in_, f"X for model '{name}'" if name else "X")

    def scores(self, X: Any, exact: bool = True) -> np.ndarray:
        """The last layer's outputs (float32): bit-exact with the device by default (the compiled
        kernel, or numpy without a compiler); exact=False takes the BLAS path."""
        if not exact:
            return self.kernels().fast(self._check(X))
        return self.kernels().exact(standardize(self._check(X), self.mean, self.inv_std))

    def scores_fast(self, X: Any) -> np.ndarray:
        """Like `scores` through BLAS with weights cast once: fast, not bit-exact."""
        return self.scores(X, exact=False)

    def scores_ternary(self, X: Any) -> np.ndarray:
        """Scores by the native 2-bit kernel with int8 activations (fastest on big layers). An
        approximation: activations are rounded to 8 bits per row, so scores move by about 1% of
        the largest score on a 4096-wide layer, a few % on small ones; argmax can flip on near ties."""
        return self.kernels().ternary(self._check(X))

    def predict_index(self, X: Any, exact: bool = False) -> np.ndarray:
        """The class index per row (first maximum on ties); exact=True is what the device returns."""
        return np.argmax(self.scores(X, exact=exact), axis=1)

    def predict(self, X: Any, exact: bool = False) -> np.ndarray:
        """Labels per row (class indices when the model has no class list); exact=True: the
        device's arithmetic bit for bit."""
        idx = self.predict_index(X, exact=exact)
        return idx if self.classes_ is None else self.classes_[idx]

    def predict_proba(self, X: Any, exact: bool = False) -> np.ndarray:
        """Softmax of the scores, columns in `classes_` order."""
        return softmax(self.scores(X, exact=exact))

    # ---- bytes
    def to_bytes(self) -> bytes:
        return pack(self.layers, self.mean, self.inv_std)

    @classmethod
    def from_bytes(cls, data: bytes | bytearray | memoryview | np.ndarray,
                   classes: Sequence[Any] | np.ndarray | None = None) -> PackedModel:
        layers, mean, inv_std = unpack(data)
        return cls(layers, mean, inv_std, classes)

    @property
    def nbytes(self) -> int:
        return packed_size(self.layers, self.n_features_in_)

    def fp32_nbytes(self) -> int:
        """Bytes of the same architecture in float32 (weights, biases, standardisation)."""
        return 4 * (2 * self.n_features_in_ + sum(a.trits.size + a.bias.size for a in self.layers))

    def __repr__(self) -> str:
        arch = "-".join([str(self.n_features_in_)] + [str(a.shape[0]) for a in self.layers])
        return f"{type(self).__name__}({arch}, {self.nbytes} packed bytes)"


def _validate(layers: Sequence[Layer], mean: np.ndarray, inv_std: np.ndarray,
              classes: np.ndarray | None) -> None:
    if not layers:
        raise BadInput("a ternary model needs at least one layer")
    if mean.ndim != 1 or mean.shape != inv_std.shape:
        raise BadInput(f"mean and inv_std must be 1-D of equal length, got {mean.shape} and {inv_std.shape}")
    n_in = mean.shape[0]
    for i, layer in enumerate(layers):
        out, inp = layer.shape
        if inp != n_in:
            raise BadInput(f"layer {i} takes {inp} inputs but receives {n_in}")
        if max(out, inp) > U16_MAX:
            raise BadInput(f"layer {i} is {inp}x{out}; the packed format allows at most {U16_MAX} per side")
        if layer.scale.size not in (1, out) or layer.bias.shape != (out,):
            raise BadInput(f"layer {i}: scale must have 1 or {out} values and bias {out}")
        if not np.isin(layer.trits, (-1, 0, 1)).all():
            raise BadInput(f"layer {i}: weights must be trits -1, 0 or +1")
        if layer.relu == (i == len(layers) - 1):
            raise BadInput(f"layer {i}: relu on every layer but the last (the scores)")
        n_in = out
    if classes is not None and len(classes) != layers[-1].shape[0]:
        raise BadInput(f"{len(classes)} class labels for {layers[-1].shape[0]} outputs")


def _layer_bytes(inp: int, out: int, n_scales: int) -> int:
    return _LAYER.size + (inp * out + 3) // 4 + 4 * n_scales + 4 * out


def packed_size(layers: Sequence[Layer], n_inputs: int) -> int:
    size = _HEAD.size + 8 * n_inputs
    for a in layers:
        out, inp = a.shape
        size += _layer_bytes(inp, out, a.scale.size)
    return size


def size_for(widths: Sequence[int], per_row: bool = False) -> int:
    """Bytes an architecture packs to before it is trained (widths = inputs, hidden..., classes),
    so training can pick one that fits a device's model buffer."""
    return _HEAD.size + 8 * widths[0] + sum(_layer_bytes(i, o, o if per_row else 1)
                                            for i, o in zip(widths, widths[1:], strict=False))


def pack(layers: Sequence[Layer], mean: np.ndarray, inv_std: np.ndarray) -> bytes:
    """The bytes of docs/packed-format.md v1."""
    _validate(layers, mean, inv_std, None)
    parts = [_HEAD.pack(MAGIC, VERSION, len(layers), mean.shape[0], layers[-1].shape[0]),
             mean.astype("<f4").tobytes(), inv_std.astype("<f4").tobytes()]
    for a in layers:
        out, inp = a.shape
        parts.append(_LAYER.pack(inp, out, 1 if a.relu else 0, a.scale_mode, 0))
        codes = _CODE[a.trits.reshape(-1).astype(np.int64) + 1]
        codes = np.concatenate([codes, np.full((-codes.size) % 4, 1, dtype=np.uint8)])  # pad with 0-trits
        quads = codes.reshape(-1, 4)
        parts.append((quads[:, 0] | (quads[:, 1] << 2) | (quads[:, 2] << 4) | (quads[:, 3] << 6))
                     .astype(np.uint8).tobytes())
        parts.append(a.scale.astype("<f4").tobytes())
        parts.append(a.bias.astype("<f4").tobytes())
    return b"".join(parts)


def unpack(data: bytes | bytearray | memoryview | np.ndarray) -> tuple[list[Layer], np.ndarray, np.ndarray]:
    """Parse packed bytes; anything malformed raises BadInput saying what and at which offset."""
    buf = bytes(data.tobytes() if isinstance(data, np.ndarray) else data)
    if len(buf) < _HEAD.size:
        raise BadInput(f"packed model too short ({len(buf)} bytes; the header alone is {_HEAD.size})")
    magic, version, n_layers, n_in, n_out = _HEAD.unpack_from(buf, 0)
    if magic != MAGIC:
        raise BadInput(f"not a packed openmind model: magic {magic!r}, expected {MAGIC!r}")
    if version != VERSION:
        raise BadInput(f"packed model version {version}; this openmind reads version {VERSION}")
    if n_layers < 1:
        raise BadInput("packed model has no layers")
    pos = _HEAD.size

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(buf):
            raise BadInput(f"packed model truncated: {what} needs {n} bytes at offset {pos}, "
                           f"only {len(buf) - pos} left")
        chunk = buf[pos:pos + n]
        pos += n
        return chunk

    mean = np.frombuffer(take(4 * n_in, "mean"), dtype="<f4").astype(np.float32)
    inv_std = np.frombuffer(take(4 * n_in, "inv_std"), dtype="<f4").astype(np.float32)
    layers, prev = [], n_in
    for i in range(n_layers):
        inp, out, act, mode, _reserved = _LAYER.unpack(take(_LAYER.size, f"layer {i} header"))
        if inp != prev:
            raise BadInput(f"packed layer {i} takes {inp} inputs but the previous layer gives {prev}")
        if act not in (0, 1) or mode not in (0, 1):
            raise BadInput(f"packed layer {i}: activation {act} / scale_mode {mode} unknown")
        raw = np.frombuffer(take((inp * out + 3) // 4, f"layer {i} trits"), dtype=np.uint8)
        codes = np.stack([(raw >> s) & 3 for s in (0, 2, 4, 6)], axis=1).reshape(-1)[:inp * out]
        trits = _TRIT[codes]
        if (trits == 127).any():
            raise BadInput(f"packed layer {i} has the invalid trit code 11")
        scale = np.frombuffer(take(4 * (out if mode else 1), f"layer {i} scale"), dtype="<f4")
        bias = np.frombuffer(take(4 * out, f"layer {i} bias"), dtype="<f4")
        layers.append(Layer(trits.reshape(out, inp), scale.astype(np.float32),
                            bias.astype(np.float32), act == 1))
        prev = out
    if pos != len(buf):
        raise BadInput(f"packed model has {len(buf) - pos} trailing bytes after the last layer")
    if layers[-1].shape[0] != n_out:
        raise BadInput(f"packed header says {n_out} outputs, the last layer has {layers[-1].shape[0]}")
    return layers, mean, inv_std


def describe(data: bytes | bytearray | memoryview) -> dict[str, int]:
    """Layers, inputs, outputs and the widest layer of packed bytes (BadInput if malformed)."""
    layers, mean, _ = unpack(data)
    return {"layers": len(layers), "inputs": int(mean.shape[0]), "outputs": layers[-1].shape[0],
            "width": max([int(mean.shape[0])] + [a.shape[0] for a in layers])}


# --------------------------------------------------------------------------- labels


def encode_classes(classes: np.ndarray) -> dict[str, Any]:
    """Class labels as JSON (values + numpy dtype), so ints stay ints and strings stay strings."""
    return {"values": [c.item() if hasattr(c, "item") else c for c in classes],
            "dtype": classes.dtype.str}


def decode_classes(spec: dict[str, Any]) -> np.ndarray:
    dtype = np.dtype(spec["dtype"])
    if dtype.hasobject:
        out = np.empty(len(spec["values"]), dtype=object)
        out[:] = spec["values"]
        return out
    return np.asarray(spec["values"], dtype=dtype)


# --------------------------------------------------------------------------- the model


class TernaryModel(PackedModel):
    """A trained ternary classifier: predicts labels, keeps its class list, config and history.

    `predict` runs the packed arithmetic, so it equals `PackedModel.from_bytes(m.pack()).predict`
    and the device. `latent` (optional float32 weights from training) lets a fine-tune resume
    exactly; the packed bytes alone are enough to predict.
    """

    def __init__(self, layers: Sequence[Layer], mean: np.ndarray, inv_std: np.ndarray,
                 classes: Sequence[Any] | np.ndarray, *, name: str | None = None,
                 config: dict[str, Any] | None = None, info: dict[str, Any] | None = None,
                 latent: Sequence[np.ndarray] | None = None) -> None:
        super().__init__(layers, mean, inv_std, classes)
        self.name = name
        self.config = dict(config or {})
        self.info = dict(info or {})
        self.latent = [np.asarray(w, dtype=np.float32) for w in latent] if latent else None

    def score(self, X: Any, y: Any, exact: bool = False) -> float:
        """Accuracy on (X, y)."""
        return float(np.mean(self.predict(X, exact=exact) == np.asarray(y)))

    # ---- abstaining (active learning)
    def predict_trits(self, X: Any, confidence: float = 0.8) -> np.ndarray:
        """Binary models: +1 (classes_[1]), -1 (classes_[0]) or 0 = unsure (top probability below
        `confidence`), so the unsure rows can be sent for labelling."""
        if len(self.classes_) != 2:
            raise BadInput(f"predict_trits needs a binary model; this one has {len(self.classes_)} "
                           f"classes {list(self.classes_)} (use predict, or uncertain())")
        if not 0.5 <= confidence <= 1.0:
            raise BadInput(f"confidence must be between 0.5 and 1, got {confidence}")
        p = self.predict_proba(X)
        trits = np.where(p[:, 1] >= p[:, 0], 1, -1).astype(np.int8)
        trits[p.max(axis=1) < confidence] = 0
        return trits

    def uncertain(self, X: Any, confidence: float = 0.8) -> np.ndarray:
        """Indices of the rows whose top class probability is below `confidence` (label these next)."""
        return np.flatnonzero(self.predict_proba(X).max(axis=1) < confidence)

    # ---- packing and storage
    def pack(self) -> bytes:
        """The chord shape: docs/packed-format.md bytes (2 bits a weight + scales, bias, mean/inv_std)."""
        return self.to_bytes()

    def packed(self) -> PackedModel:
        return PackedModel(self.layers, self.mean, self.inv_std, self.classes_)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """(tensors, meta) for a safetensors blob: the packed bytes + latent weights; JSON meta."""
        arrays = {"packed": np.frombuffer(self.pack(), dtype=np.uint8).copy()}
        for i, w in enumerate(self.latent or []):
            arrays[f"latent.{i}"] = w
        meta = {"format": "openmind-ternary", "version": VERSION, "name": self.name,
                "classes": encode_classes(self.classes_), "config": self.config, "info": self.info}
        return arrays, meta

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> TernaryModel:
        if "packed" not in arrays or "classes" not in meta:
            raise BadInput("not an openmind ternary model: 'packed' bytes or 'classes' missing")
        layers, mean, inv_std = unpack(arrays["packed"])
        n = sum(1 for k in arrays if k.startswith("latent."))
        latent = [arrays[f"latent.{i}"] for i in range(n)] if n == len(layers) else None
        return cls(layers, mean, inv_std, decode_classes(meta["classes"]), name=meta.get("name"),
                   config=meta.get("config"), info=meta.get("info"), latent=latent)

    def save(self, path: str | Path) -> Path:
        """Write a safetensors file (atomically; never pickle)."""
        from safetensors.numpy import save

        from openmind.memory.blobs import atomic_write

        arrays, meta = self.to_arrays()
        path = Path(path)
        atomic_write(path, save(arrays, metadata={"openmind": json.dumps(meta, default=str)}))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TernaryModel:
        """Read a file written by `save`; a damaged file raises BadInput naming it."""
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="np") as f:
                meta = json.loads((f.metadata() or {}).get("openmind", "{}"))
                arrays = {k: f.get_tensor(k) for k in f.keys()}
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise BadInput(f"cannot read model file {path}: {type(exc).__name__}: {exc}") from None
        return cls.from_arrays(arrays, meta)

    def summary(self) -> dict[str, Any]:
        """What the journal and the notebook card show."""
        out = {"model": self.name, "classes": len(self.classes_),
               "architecture": "-".join([str(self.n_features_in_)] + [str(a.shape[0]) for a in self.layers]),
               "packed_bytes": self.nbytes, "fp32_bytes": self.fp32_nbytes()}
        out.update({k: v for k, v in self.info.items() if k not in out and k != "val_history"})
        return out

    def __repr__(self) -> str:
        acc = self.info.get("val_accuracy")
        extra = f", val acc {acc:.3f}" if isinstance(acc, float) else ""
        return (f"TernaryModel({self.name!r}, {self.summary()['architecture']}, "
                f"classes={self.classes_[:6].tolist()}{'...' if len(self.classes_) > 6 else ''}, "
                f"{self.nbytes} packed bytes{extra})")
