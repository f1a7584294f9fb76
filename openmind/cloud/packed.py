"""Interim numpy reader of the packed ternary format v1 (docs/packed-format.md).

Used until openmind/ternary.py's numpy-only packed model lands on main; then `load_local_model`
switches to that one and this file goes. Float32 BLAS, not the bit-exact accumulation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import numpy as np

_HEAD = struct.Struct("<4sHHHH")
_LAYER = struct.Struct("<HHBBH")


@dataclass(frozen=True)
class Layer:
    trits: np.ndarray  # [out, in] int8
    scale: np.ndarray
    bias: np.ndarray
    relu: bool


class PackedModel:
    """A classifier from packed bytes: predict, predict_proba, classes_, n_features_in_."""

    @classmethod
    def from_bytes(cls, blob: bytes, classes: list | None = None) -> PackedModel:
        return cls(blob, classes)

    def __init__(self, blob: bytes, classes: list | None = None) -> None:
        magic, version, n_layers, n_in, n_out = _HEAD.unpack_from(blob, 0)
        if magic != b"OMT1" or version != 1 or n_layers < 1:
            raise ValueError("not a packed ternary model v1 (bad magic/version)")
        off = _HEAD.size
        self.mean = np.frombuffer(blob, "<f4", n_in, off)
        self.inv_std = np.frombuffer(blob, "<f4", n_in, off + 4 * n_in)
        off += 8 * n_in
        self.layers: list[Layer] = []
        prev = n_in
        for _ in range(n_layers):
            fan_in, fan_out, act, mode, _r = _LAYER.unpack_from(blob, off)
            off += _LAYER.size
            if fan_in != prev:
                raise ValueError("layer sizes do not chain")
            nbytes = (fan_in * fan_out + 3) // 4
            raw = np.frombuffer(blob, np.uint8, nbytes, off)
            off += nbytes
            codes = ((raw[:, None] >> np.array([0, 2, 4, 6], np.uint8)) & 3).reshape(-1)[: fan_in * fan_out]
            if (codes == 3).any():
                raise ValueError("invalid trit code 11")
            trits = (codes.astype(np.int8) - 1).reshape(fan_out, fan_in)
            n_scale = fan_out if mode == 1 else 1
            scale = np.frombuffer(blob, "<f4", n_scale, off)
            off += 4 * n_scale
            bias = np.frombuffer(blob, "<f4", fan_out, off)
            off += 4 * fan_out
            self.layers.append(Layer(trits, scale, bias, act == 1))
            prev = fan_out
        if off != len(blob) or prev != n_out:
            raise ValueError("trailing bytes or output size mismatch")
        self.n_features_in_ = n_in
        self.classes_ = np.asarray(classes if classes is not None else np.arange(n_out))

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        h = (np.asarray(X, np.float32) - self.mean) * self.inv_std
        for layer in self.layers:
            h = (h @ layer.trits.T.astype(np.float32)) * layer.scale + layer.bias
            if layer.relu:
                h = np.maximum(h, 0.0)
        return h

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        z = self.decision_function(X)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


def pack(mean, inv_std, layers) -> bytes:
    """Pack (mean, inv_std, [(trits[out][in], scale, bias, act)]) to format v1 (for tests)."""
    n_in = len(mean)
    parts = [_HEAD.pack(b"OMT1", 1, len(layers), n_in, len(layers[-1][2])),
             np.asarray(mean, "<f4").tobytes(), np.asarray(inv_std, "<f4").tobytes()]
    for trits, scale, bias, act in layers:
        t = np.asarray(trits, np.int8)
        out, fan_in = t.shape
        scale = np.atleast_1d(np.asarray(scale, "<f4"))
        parts.append(_LAYER.pack(fan_in, out, act, 1 if scale.size > 1 else 0, 0))
        codes = (t.reshape(-1) + 1).astype(np.uint8)
        codes = np.concatenate([codes, np.ones((-codes.size) % 4, np.uint8)]).reshape(-1, 4)
        parts.append((codes[:, 0] | codes[:, 1] << 2 | codes[:, 2] << 4 | codes[:, 3] << 6).astype(np.uint8).tobytes())
        parts.append(scale.tobytes())
        parts.append(np.asarray(bias, "<f4").tobytes())
    return b"".join(parts)
