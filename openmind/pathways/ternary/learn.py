"""Learning on the device: the Python reference of the firmware's integer learning rule
(firmware/core/om_learn.c), bit for bit.

A device learns the last layer of its packed ternary model; the other layers stay frozen. What
it keeps is bounded and small: latent int16 weights W [out, in] (a weight is W * 2^-frac_w), the
weights W0 it was given, and int32 biases B, B0 in logit units 2^-(frac_w + shift_q) - 16.7 KB at
the firmware's limit of 4,096 weights and 32 outputs. A labelled sample runs through the frozen
layers (the float32 kernel of docs/packed-format.md), its last hidden layer h is quantised to
q = trunc(h * 2^shift_q) in [-127, 127] (a power-of-two product, exact), and the step is integer
arithmetic only (NITI/PocketNN-style power-of-two scaling):

1. each row of W is ternarised (TWN): kept where 10 * in * |w| > 7 * sum|w|, t = sign(w), and the
   row's scale alpha = floor(mean of the kept |w|);
2. logits z = alpha * (t . q) + B (int64);
3. a base-2 softmax in Q15: x = (zmax - z) * 369 >> (frac_w + shift_q) (369/256 ~ log2 e, 8
   fractional bits), e = (32768 - frac(x) * 64) >> int(x) (0 from 15 up), p = e * 2^15 // sum(e);
4. error g = p - 32768 * onehot(label); W -= (g * q + r) >> lr_shift and B -= (g + r) >> bias_shift
   (a negative bias_shift shifts left), r uniform in [0, 2^shift) (stochastic rounding: small
   steps survive in expectation); r comes from `draws`, lowbias32 of a counter seeded by the head;
   W saturates at +-32767, B at +-(2^30 - 1).

The update the device sends is W - W0 ternarised the same way, coded as the federation's update
layer (`OMTU`: trits 5 a byte, float16 scale and bias per row): the server decodes it like any
client's. Loading the next global head with `carry` keeps what the coding left out (error
feedback): W0 = W_global - (delta - t * alpha).

`python -m openmind.pathways.ternary.learn --transcript SEED` prints the text the firmware's
test/learn_main.c prints (`make -C firmware learn-check` compares them).
"""

from __future__ import annotations

import struct
import sys
import zlib
from dataclasses import dataclass

import numpy as np

from openmind.errors import BadInput

MAX_WEIGHTS = 4096   # OM_LEARN_MAX_W
MAX_OUTPUTS = 32     # OM_LEARN_MAX_OUT
MAX_INPUTS = 256     # OM_MAX_WIDTH
W_MAX = 32767
B_MAX = 2**30 - 1
HEAD_MAGIC = b"OMLH"
_HEAD = struct.Struct("<4sHHHBbBbBBI")  # magic, version, in, out, frac_w, shift_q, lr, bias, flags, 0, seed
HEAD_RAM = 24 + 4 * MAX_WEIGHTS + 8 * MAX_OUTPUTS  # sizeof(om_head_t)
_M32 = 0xFFFFFFFF


def mix32(x: int) -> int:
    """lowbias32 of one counter value (om_draw)."""
    x &= _M32
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _M32
    x ^= x >> 15
    x = (x * 0x846CA68B) & _M32
    return x ^ (x >> 16)


def draws(counter: int, n: int) -> np.ndarray:
    """om_draw n times from `counter`: lowbias32 of counter, counter + 1, ... as int64."""
    x = (np.arange(n, dtype=np.uint64) + np.uint64(counter)) & np.uint64(_M32)
    x ^= x >> np.uint64(16)
    x = (x * np.uint64(0x7FEB352D)) & np.uint64(_M32)
    x ^= x >> np.uint64(15)
    x = (x * np.uint64(0x846CA68B)) & np.uint64(_M32)
    return (x ^ (x >> np.uint64(16))).astype(np.int64)


def quantize(h: np.ndarray, shift: int) -> np.ndarray:
    """q = clamp(trunc(h * 2^shift), -127, 127) as int8, NaN -> 0 (om_learn_quantize)."""
    with np.errstate(over="ignore", invalid="ignore"):
        v = np.asarray(h, dtype=np.float32) * np.float32(2.0**shift)
        q = np.trunc(np.clip(v, np.float32(-127), np.float32(127)))
    return np.where(np.isnan(q), 0, q).astype(np.int8)


def f16_scaled(v: np.ndarray | int, frac: int) -> np.ndarray:
    """float16 bits of v * 2^-frac, clipped to +-65504 (om_f16_scaled)."""
    x = np.asarray(v, dtype=np.float64) * 2.0**-frac  # exact: |v| < 2^32
    return np.clip(x, -65504.0, 65504.0).astype(np.float16).view(np.uint16)


def ternary_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TWN per row of int values v [out, in]: trits (int64) and floor(mean kept |v|) per row."""
    a = np.abs(v)
    keep = a * 10 * v.shape[1] > 7 * a.sum(axis=1, keepdims=True)
    kept = keep.sum(axis=1)
    alpha = np.where(kept > 0, (a * keep).sum(axis=1) // np.maximum(kept, 1), 0)
    return np.sign(v) * keep, alpha.astype(np.int64)


def head_blob(W: np.ndarray, B: np.ndarray, *, frac_w: int, shift_q: int, lr_shift: int,
              bias_shift: int, seed: int, carry: bool = False) -> bytes:
    """The bytes of `LEARN LOAD` (docs/protocol-v3.md): header, int16 W [out, in], int32 B [out]."""
    W = np.asarray(W, dtype=np.int64)
    out, n_in = W.shape
    head = _HEAD.pack(HEAD_MAGIC, 1, n_in, out, frac_w, shift_q, lr_shift, bias_shift, int(carry), 0,
                      seed & _M32)
    return head + W.astype("<i2").tobytes() + np.asarray(B, dtype=np.int64).astype("<i4").tobytes()


@dataclass
class Head:
    """The learning state of om_head_t, with the same arithmetic."""

    W: np.ndarray
    W0: np.ndarray
    B: np.ndarray
    B0: np.ndarray
    frac_w: int
    shift_q: int
    lr_shift: int
    bias_shift: int
    rng: int
    steps: int = 0
    correct: int = 0

    @classmethod
    def load(cls, blob: bytes, previous: Head | None = None) -> Head:
        """Parse a head blob like om_learn_load; `previous` carries its residual when the blob's
        carry flag is set and the shapes agree. Anything malformed raises BadInput."""
        if len(blob) < _HEAD.size:
            raise BadInput(f"head blob of {len(blob)} bytes is shorter than its {_HEAD.size}-byte header")
        magic, version, n_in, out, frac, sq, lr, bs, flags, zero, seed = _HEAD.unpack_from(blob)
        if magic != HEAD_MAGIC or version != 1:
            raise BadInput("not a learning head (magic OMLH, version 1)")
        if not (1 <= n_in <= MAX_INPUTS and 1 <= out <= MAX_OUTPUTS and n_in * out <= MAX_WEIGHTS):
            raise BadInput(f"a {out}x{n_in} head exceeds the device's learning limits "
                           f"({MAX_OUTPUTS} outputs, {MAX_WEIGHTS} weights)")
        if len(blob) != _HEAD.size + 2 * n_in * out + 4 * out:
            raise BadInput(f"a {out}x{n_in} head is {_HEAD.size + 2 * n_in * out + 4 * out} bytes, got {len(blob)}")
        if (frac > 15 or not -8 <= sq <= 16 or not 0 <= frac + sq <= 30 or lr > 30
                or not -15 <= bs <= 30 or flags & 0xFE or zero):
            raise BadInput("head field out of range (shifts, flags)")
        W = np.frombuffer(blob, "<i2", n_in * out, _HEAD.size).astype(np.int64).reshape(out, n_in)
        B = np.frombuffer(blob, "<i4", out, _HEAD.size + 2 * n_in * out).astype(np.int64)
        if (W < -W_MAX).any() or (np.abs(B) > B_MAX).any():
            raise BadInput("head weights or biases out of range")
        W0 = W.copy()
        if flags & 1 and previous is not None and previous.W.shape == W.shape:
            delta = previous.W - previous.W0
            t, alpha = ternary_rows(delta)
            W0 = np.clip(W - (delta - t * alpha[:, None]), -W_MAX, W_MAX)
        return cls(W, W0, B.copy(), B.copy(), frac, sq, lr, bs, seed)

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.W.shape[0]), int(self.W.shape[1])

    def forward(self, q: np.ndarray) -> tuple[int, np.ndarray]:
        """(class, int64 logits) of int8 inputs q."""
        t, alpha = ternary_rows(self.W)
        z = alpha * (t @ np.asarray(q, dtype=np.int64)) + self.B
        return int(np.argmax(z)), z

    def step(self, q: np.ndarray, label: int) -> int:
        """One learning step; returns the class predicted before it (om_learn_step)."""
        q = np.asarray(q, dtype=np.int64)
        y, z = self.forward(q)
        x8 = ((z[y] - z) * 369) >> (self.frac_w + self.shift_q)
        k = x8 >> 8
        e = np.where(k >= 15, 0, (32768 - ((x8 & 255) << 6)) >> np.minimum(k, 15))
        g = (e << 15) // e.sum()
        g[label] -= 32768
        out, n_in = self.shape
        extra = 1 if self.bias_shift >= 0 else 0
        r = draws(self.rng, out * (n_in + extra)).reshape(out, n_in + extra)
        self.rng = (self.rng + out * (n_in + extra)) & _M32
        sh = self.lr_shift
        upd = (g[:, None] * q[None, :] + (r[:, :n_in] & ((1 << sh) - 1))) >> sh
        self.W = np.clip(self.W - upd, -W_MAX, W_MAX)
        bs = self.bias_shift
        db = (g + (r[:, n_in] & ((1 << bs) - 1))) >> bs if bs >= 0 else g * (1 << -bs)
        self.B = np.clip(self.B - db, -B_MAX, B_MAX)
        self.steps += 1
        self.correct += int(y == label)
        return y

    def update(self) -> bytes:
        """W - W0 and B - B0 as an `OMTU` update layer (om_learn_update)."""
        out, n_in = self.shape
        t, alpha = ternary_rows(self.W - self.W0)
        digits = (t + 1).reshape(-1).astype(np.int64)
        digits = np.concatenate([digits, np.ones((-digits.size) % 5, dtype=np.int64)])
        packed = (digits.reshape(-1, 5) * np.array([1, 3, 9, 27, 81])).sum(axis=1).astype(np.uint8)
        scale = f16_scaled(alpha, self.frac_w).astype("<u2")
        bias = f16_scaled(self.B - self.B0, self.frac_w + self.shift_q).astype("<u2")
        return struct.pack("<4sII", b"OMTU", out, n_in) + packed.tobytes() + scale.tobytes() + bias.tobytes()

    def state_crc(self) -> int:
        """The transcript's CRC-32: W, B, the draw counter, then W0 (learn_main.c)."""
        crc = zlib.crc32(self.W.astype("<i2").tobytes() + self.B.astype("<i4").tobytes()
                         + struct.pack("<I", self.rng))
        return zlib.crc32(self.W0.astype("<i2").tobytes(), crc)


# --------------------------------------------------------------------------- the transcript


class _Gen:
    """learn_main.c's random draws: om_draw from a counter."""

    def __init__(self, seed: int) -> None:
        self.ctr = seed & _M32

    def r(self) -> int:
        x = mix32(self.ctr)
        self.ctr = (self.ctr + 1) & _M32
        return x

    def uniform(self, lim: int) -> int:
        return self.r() % (2 * lim + 1) - lim


def _random_blob(g: _Gen, n_in: int, out: int, f: list[int], seed: int, carry: bool) -> bytes:
    wlim = (32767, 4096, 256, 16)[g.r() % 4]
    blim = 0x3FFFFFFF >> (g.r() % 31)
    W = np.array([g.uniform(wlim) for _ in range(n_in * out)], dtype=np.int64).reshape(out, n_in)
    B = np.array([g.uniform(blim) for _ in range(out)], dtype=np.int64)
    return head_blob(W, B, frac_w=f[0], shift_q=f[1], lr_shift=f[2], bias_shift=f[3], seed=seed, carry=carry)


def _update_line(c: int, head: Head) -> str:
    u = head.update()
    return f"u {c} {len(u)} {zlib.crc32(u):08x}"


def _config(g: _Gen, c: int, steps: int, lines: list[str]) -> int:
    n_in = 256 if c == 0 else 1 + g.r() % 64
    out = 16 if c == 0 else 2 + g.r() % 11
    f = [g.r() % 16, g.r() % 25 - 8, 0, 0]
    f[1] = max(f[1], -f[0])
    f[1] = min(f[1], 30 - f[0])
    f[2] = g.r() % 31
    f[3] = g.r() % 46 - 15
    head = Head.load(_random_blob(g, n_in, out, f, g.r(), False))
    lines.append(f"cfg {c} {n_in} {out} {f[0]} {f[1]} {f[2]} {f[3]} 0")
    for k in range(steps):
        sparse = g.r() % 4 == 0
        if k == steps // 2:
            lines.append(_update_line(c, head))
            head = Head.load(_random_blob(g, n_in, out, f, g.r(), True), previous=head)
            lines.append(f"l {c} 0 {head.state_crc():08x}")
        vs = [g.r() for _ in range(n_in)]
        q = np.array([0 if sparse and v & 1 else (v >> 1) % 255 - 127 for v in vs], dtype=np.int64)
        y = head.step(q, g.r() % out)
        lines.append(f"s {c} {k} {y} {head.state_crc():08x}")
    lines.append(_update_line(c, head))
    return steps


def transcript(seed: int = 1, configs: int = 8, steps: int = 160) -> str:
    """The text firmware/test/learn_main.c prints for LEARN_SEED=seed (same configs and steps)."""
    g = _Gen(seed)
    lines = [f"learn seed {seed} head_ram {HEAD_RAM}"]
    total = sum(_config(g, c, steps, lines) for c in range(configs))
    crc = 0
    for _ in range(40):
        shift = g.r() % 25 - 8
        h = np.array([g.r() for _ in range(64)], dtype=np.uint32).view(np.float32)
        crc = zlib.crc32(quantize(h, shift).tobytes(), crc)
    lines.append(f"q {crc:08x}")
    crc = 0
    for k in range(4000):
        x = g.r()
        v = (x - 2**32 if x >= 2**31 else x) if k & 1 else g.uniform(0x3FFFFFFF >> (g.r() % 31))
        crc = zlib.crc32(f16_scaled(v, g.r() % 31).astype("<u2").tobytes(), crc)
    lines.append(f"f {crc:08x}")
    lines.append(f"done {total} steps")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover - the firmware Makefile's learn-check runs it
    if len(sys.argv) >= 2 and sys.argv[1] == "--transcript":
        sys.stdout.write(transcript(int(sys.argv[2]) if len(sys.argv) > 2 else 1))
    else:
        sys.exit("usage: python -m openmind.pathways.ternary.learn --transcript [SEED]")
