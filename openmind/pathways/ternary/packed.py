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
  `kernel.forward`; both give the same bits.

The arithmetic is `kernel.py`'s and the input checks `checks.py`'s. Training lives in
`ternary/fit.py` (torch); this module must not import it.
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
from openmind.pathways.ternary.checks import check_features
from openmind.pathways.ternary.kernel import Kernels, softmax, standardize

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
        hist = list(self.info.get("val_history") or [])
        if len(hist) > 1:  # the card's training curve: at most 50 points of it
            n = len(hist)  # evenly spread, first and last epoch included
            out["val_history"] = [hist[round(i * (n - 1) / 49)] for i in range(50)] if n > 50 else hist
        return out

    def __repr__(self) -> str:
        acc = self.info.get("val_accuracy")
        extra = f", val acc {acc:.3f}" if isinstance(acc, float) else ""
        return (f"TernaryModel({self.name!r}, {self.summary()['architecture']}, "
                f"classes={self.classes_[:6].tolist()}{'...' if len(self.classes_) > 6 else ''}, "
                f"{self.nbytes} packed bytes{extra})")
