"""The arithmetic of a ternary model's packed form (docs/packed-format.md), three ways: `forward`
bit-exact with the device in numpy, `Kernels.exact` the same bits in the compiled host kernel,
`Kernels.fast` by BLAS (float32 weights dequantized once; not bit-exact), and `Kernels.ternary`
by the 2-bit SIMD kernel. The format itself (layers, pack, unpack) is `packed.py`'s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from openmind.pathways.threads import SMALL_WORK, small_work

if TYPE_CHECKING:
    from openmind.pathways.ternary.packed import Layer


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
        self._row_macs = 0
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
            with small_work(0.0 if not self.layers else SMALL_WORK / 2):
                self._folded = _fold(self.layers, self.mean, self.inv_std)
            self._row_macs = sum(wt.shape[0] * wt.shape[1] for wt, _, _ in self._folded)
        h = X.astype(np.float32, copy=False)
        with small_work(len(h) * self._row_macs if h.ndim == 2 else self._row_macs):
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
