"""The host side of protocol 3 (docs/protocol-v3.md): a device that learns.

`Learner` drives one open `Link`: load the global model (the packed model with `MODEL`, the
latent weights of its last layer with `LEARN LOAD`), send labelled rows to learn from
(`LEARN TRAIN`) or to score (`LEARN EVAL`), let the device learn from its own sensor
(`LEARN LIVE`), and read its packed update (`LEARN UPDATE`), checked (CRC-32, length, the update
codec's own checks) before anyone uses it. It counts the bytes that cross the link both ways.

`head_for` turns a model's float latent weights into the device's integer head
(openmind.pathways.ternary.learn explains the arithmetic).
"""

from __future__ import annotations

import base64
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.errors import BadInput
from openmind.pathways.device import CHUNK_BYTES, DeviceError, Link
from openmind.pathways.lines import as_count, int_fields
from openmind.pathways.ternary import learn
from openmind.pathways.ternary.kernel import forward
from openmind.pathways.ternary.packed import PackedModel

PROTO = 3


@dataclass
class Scaling:
    """The power-of-two scales of a head: weight = W * 2^-frac_w, q = trunc(h * 2^shift_q),
    learning rate 2^-lr_log2 (`lr_shift` and `bias_shift` follow from the three)."""

    frac_w: int
    shift_q: int
    lr_log2: int

    @property
    def lr_shift(self) -> int:
        return int(np.clip(15 + self.shift_q + self.lr_log2 - self.frac_w, 0, 30))

    @property
    def bias_shift(self) -> int:
        return int(np.clip(self.lr_shift - 2 * self.shift_q, -15, 30))


def frac_for(W: np.ndarray, headroom: int = 2) -> int:
    """The largest frac_w (0..15) that leaves |W| a factor 2^headroom below int16's limit."""
    top = float(np.max(np.abs(W))) if np.size(W) else 0.0
    if top <= 0:
        return 15
    return int(np.clip(np.floor(np.log2(learn.W_MAX / top)) - headroom, 0, 15))


def shift_for(h: np.ndarray, frac_w: int) -> int:
    """shift_q so that the 99th percentile of |h| lands near 64 of q's 127 (clamped so that
    frac_w + shift_q stays in 0..30)."""
    a = np.abs(np.asarray(h, dtype=np.float64))
    top = float(np.percentile(a, 99)) if a.size else 0.0
    s = 8 if top <= 0 else int(np.floor(np.log2(64.0 / top)))
    return int(np.clip(s, max(-8, -frac_w), min(16, 30 - frac_w)))


def head_for(W: np.ndarray, b: np.ndarray, scaling: Scaling, seed: int, carry: bool) -> bytes:
    """The `LEARN LOAD` blob of float latent weights W [out, in] and bias b [out]."""
    Wi = np.clip(np.rint(np.asarray(W, np.float64) * 2.0**scaling.frac_w), -learn.W_MAX, learn.W_MAX)
    Bi = np.clip(np.rint(np.asarray(b, np.float64) * 2.0 ** (scaling.frac_w + scaling.shift_q)),
                 -learn.B_MAX, learn.B_MAX)
    return learn.head_blob(Wi.astype(np.int64), Bi.astype(np.int64), frac_w=scaling.frac_w,
                           shift_q=scaling.shift_q, lr_shift=scaling.lr_shift,
                           bias_shift=scaling.bias_shift, seed=seed, carry=carry)


def hidden_of(model: PackedModel, X: np.ndarray) -> np.ndarray:
    """The last layer's input for rows X: the frozen layers' float32 output, bit-exact with the
    device (docs/packed-format.md); the standardised rows for a one-layer model."""
    return forward(np.asarray(X, np.float32), model.mean, model.inv_std, model.layers[:-1])


def rows_bytes(X: np.ndarray, y: np.ndarray) -> bytes:
    """TRAIN/EVAL payload: each row's float32 LE features, then its label as uint32 LE."""
    X = np.asarray(X, dtype="<f4")
    rec = np.empty(len(X), dtype=[("x", "<f4", (X.shape[1],)), ("y", "<u4")])
    rec["x"], rec["y"] = X, np.asarray(y, dtype=np.int64)
    return rec.tobytes()


class Learner:
    """Protocol 3 on one open Link. `sent` / `received` count the bytes of lines both ways."""

    def __init__(self, link: Link, timeout: float = 5.0) -> None:
        self.link, self.timeout = link, timeout
        self.info: dict[str, Any] = {}
        self.sent = self.received = 0

    def _cmd(self, command: str, accept: Any = None) -> dict[str, Any]:
        self.sent += len(command) + 1
        obj = self.link.command(command, self.timeout, accept=accept)
        self.received += len(str(obj)) + 1  # about the line's length (the JSON as Python prints it)
        return obj

    def hello(self) -> dict[str, Any]:
        """HELLO 3; a device that does not answer in protocol 3 cannot learn (DeviceError)."""
        info = self.link.hello(self.timeout, proto=PROTO)
        if self.link.proto < PROTO or not isinstance(info.get("learn"), dict):
            raise DeviceError(f"{self.link.port} speaks protocol {self.link.proto}: it infers but does "
                              f"not learn (flash firmware 0.3.0 or later)", code="proto")
        self.info = {**int_fields(info["learn"]), "rule": str(info["learn"].get("rule", "?"))[:40]}
        return info

    def load_model(self, blob: bytes) -> dict[str, Any]:
        self.sent += len(blob) * 4 // 3 + 40 * (len(blob) // CHUNK_BYTES + 3)
        return self.link.upload_model(blob, self.timeout)

    def _transfer(self, begin: str, payload: bytes) -> dict[str, Any]:
        """BEGIN line, then DATA lines of 144 bytes; returns the last answer (with "done")."""
        self._cmd(begin)
        last: dict[str, Any] = {}
        for i in range(0, len(payload), CHUNK_BYTES):
            chunk = base64.b64encode(payload[i:i + CHUNK_BYTES]).decode("ascii")
            last = self._cmd(f"LEARN DATA {chunk}", accept=lambda o: "got" in o or o.get("ok") is False)
            if as_count(last.get("got")) != min(len(payload), i + CHUNK_BYTES):
                raise DeviceError(f"device acknowledged {last.get('got')!r} bytes of {min(len(payload), i + CHUNK_BYTES)}")
        if not last.get("done"):
            raise DeviceError(f"{begin.split(' ')[1]} did not complete: {str(last)[:120]}")
        return last

    def load_head(self, blob: bytes) -> dict[str, Any]:
        """LEARN LOAD: the latent weights the device learns from (checked with their CRC-32)."""
        return self._transfer(f"LEARN LOAD {len(blob)} {zlib.crc32(blob) & 0xFFFFFFFF:08x}", blob)

    def train(self, X: np.ndarray, y: np.ndarray) -> dict[str, int]:
        """One learning step a row, in order; returns rows, correct (before each step), bad, steps."""
        return self._rows("TRAIN", X, y)

    def evaluate(self, X: np.ndarray, y: np.ndarray) -> dict[str, int]:
        """The rows scored by the device's current head (no learning): rows, correct."""
        return self._rows("EVAL", X, y)

    def _rows(self, mode: str, X: np.ndarray, y: np.ndarray) -> dict[str, int]:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or not len(X) or len(y) != len(X):
            raise BadInput(f"LEARN {mode} needs 2-D rows with one label each, got {X.shape} and {len(y)} labels")
        if not np.isfinite(X).all():
            raise BadInput("cannot send non-finite values (NaN/inf) to the device")
        last = self._transfer(f"LEARN {mode} {len(X)}", rows_bytes(X, y))
        return {k: as_count(last.get(k)) or 0 for k in ("rows", "correct", "bad", "steps")}

    def live(self, signal: str, label: int, windows: int) -> dict[str, int]:
        """LEARN LIVE: the device learns `windows` windows of its own sensor as `label`."""
        obj = self._cmd(f"LEARN LIVE {signal} {int(label)} {int(windows)}",
                        accept=lambda o: "windows" in o or o.get("ok") is False)
        return {k: as_count(obj.get(k)) or 0 for k in ("windows", "correct", "steps")}

    def status(self) -> dict[str, Any]:
        return self._cmd("LEARN STATUS", accept=lambda o: "head" in o or o.get("ok") is False)

    def update(self) -> tuple[bytes, dict[str, int]]:
        """LEARN UPDATE: the device's packed update (an OMTU layer) and its counters; the bytes
        are checked against the length and CRC-32 the device announces."""
        self.link.send("LEARN UPDATE")
        self.sent += len("LEARN UPDATE\n")
        parts: list[bytes] = []
        while True:
            obj = self.link.read_json(self.timeout)
            if obj is None:
                raise DeviceError(f"no answer to LEARN UPDATE within {self.timeout:g}s on {self.link.port}")
            self.received += len(str(obj)) + 1
            if "u" in obj:
                if obj["u"] != len(parts):
                    raise DeviceError(f"update part {obj['u']!r} out of order (expected {len(parts)})")
                try:
                    parts.append(base64.b64decode(str(obj.get("b", "")), validate=True))
                except ValueError:
                    raise DeviceError("malformed base64 in the device's update") from None
            elif obj.get("ok") is False:
                raise DeviceError(f"LEARN UPDATE refused by the device: {obj.get('error')} ({obj.get('msg', '')})",
                                  code=str(obj.get("error")))
            elif "crc" in obj:
                break
            elif "s" not in obj:
                self.link.skipped += 1
        data = b"".join(parts)
        if as_count(obj.get("bytes")) != len(data) or obj.get("crc") != f"{zlib.crc32(data) & 0xFFFFFFFF:08x}":
            raise DeviceError(f"the device's update failed its check: {len(data)} bytes read, "
                              f"{obj.get('bytes')!r} announced, CRC {obj.get('crc')!r}")
        return data, {k: as_count(obj.get(k)) or 0 for k in ("steps", "correct")}
