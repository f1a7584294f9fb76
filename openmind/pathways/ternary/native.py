"""The compiled host kernels (omkernel.c), built with the machine's C compiler at first use.

`lib()` compiles omkernel.c once per source version into a shared library cached under
$OPENMIND_NATIVE_DIR (default: $XDG_CACHE_HOME/openmind/native, i.e. ~/.cache/openmind/native) and
loads it with ctypes; with no compiler (or OPENMIND_NATIVE=0) it returns None and callers use the
numpy kernels, which compute the same bits, only slower. `reason()` says why it is missing.
OPENMIND_SIMD=avx2 (avx512, or portable) caps the instruction set, to compare the paths on one machine.

Two kernels: `layer_exact` (the device's arithmetic bit for bit) and `ternary_layer` (speed: 2-bit
weights, int8 activations per row, an exact int32 dot, AVX-512 VNNI where the CPU has it). The
ternary kernel is approximate against float32 (activations rounded to 8 bits) but deterministic:
every SIMD path and the numpy fallback give the same bits.

The flags are the firmware's (-std=c99 -ffp-contract=off, no -ffast-math), so the exact kernel's
float arithmetic is the device's; SIMD comes from per-function targets chosen by cpuid at run time,
so one library is correct on any x86-64 and the fastest its CPU allows.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("omkernel.c")
FLAGS = ["-std=c99", "-O3", "-ffp-contract=off", "-fPIC", "-shared", "-Wall"]
LIBS = ["-lm"]
LEVELS = {4: "avx512vnni", 3: "avx512", 2: "avx2", 1: "neon", 0: "portable"}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_tried = False
_reason = ""

# pointers go in as plain addresses (arr.ctypes.data): ndpointer's checks cost more than a
# small layer; every array passed is made C-contiguous with the right dtype first
_P = ctypes.c_void_p
_int = ctypes.c_int


def cache_dir() -> Path:
    base = os.environ.get("OPENMIND_NATIVE_DIR")
    if base:
        return Path(base).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "openmind" / "native"


def _compiler() -> str | None:
    for cc in (os.environ.get("CC"), "cc", "gcc", "clang"):
        if cc and shutil.which(cc):
            return cc
    return None


def build(force: bool = False) -> Path:
    """Compile omkernel.c (if not cached) and return the library path; RuntimeError if it fails."""
    cc = _compiler()
    if cc is None:
        raise RuntimeError("no C compiler (cc, gcc or clang) on PATH")
    src = SOURCE.read_bytes()
    tag = hashlib.sha256(src + " ".join([cc, *FLAGS, *LIBS, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    out = cache_dir() / f"omkernel-{platform.machine()}-{tag}.so"
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".omkernel-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE), *LIBS], capture_output=True, text=True,
                              timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} failed: {(proc.stderr or proc.stdout).strip()[-400:]}")
        os.replace(tmp, out)  # atomic: a concurrent builder never loads half a file
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return out


def lib() -> ctypes.CDLL | None:
    """The loaded kernels, or None (then `reason()` says why and numpy does the work)."""
    global _lib, _tried, _reason
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        if os.environ.get("OPENMIND_NATIVE", "1").strip().lower() in ("0", "false", "no", "off"):
            _reason = "OPENMIND_NATIVE=0"
        else:
            try:
                handle = ctypes.CDLL(str(build()))
                handle.omk_layer_exact.argtypes = [_P, _int, _int, _P, _int, _int, _P, _int, _P, _int, _P]
                handle.omk_layer_exact.restype = None
                handle.omk_ternary_layer.argtypes = [_P, _int, _int, _P, _int, _int, _P, _P, _P, _int,
                                                     _P, _int, _P, _int, _int]
                handle.omk_ternary_layer.restype = _int
                handle.omk_simd_level.restype = _int
                handle.omk_set_max_level.argtypes = [_int]
                cap = os.environ.get("OPENMIND_SIMD", "").strip().lower()
                if cap:  # at most this level: avx512vnni, avx512, avx2, neon or portable
                    levels = {v: k for k, v in LEVELS.items()}
                    if cap not in levels:
                        raise RuntimeError(f"OPENMIND_SIMD={cap!r}; valid: {', '.join(levels)}")
                    handle.omk_set_max_level(levels[cap])
                _lib = handle
            except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
                _reason = f"native kernel unavailable ({exc})"
        _tried = True
    return _lib


def reason() -> str:
    """Why `lib()` is None ('' when it loaded)."""
    lib()
    return _reason


def simd_level() -> str:
    """The instruction set the kernels run with here: avx512vnni, avx512, avx2, neon, portable or
    numpy."""
    handle = lib()
    return LEVELS.get(int(handle.omk_simd_level()), "portable") if handle is not None else "numpy"


def reset() -> None:
    """Forget the loaded library (tests switching OPENMIND_NATIVE)."""
    global _lib, _tried, _reason
    with _lock:
        _lib, _tried, _reason = None, False, ""


# --------------------------------------------------------------------------- the calls

TO = 32  # outputs per tile in omkernel.c: the exact kernel's weights are padded to a multiple


def exact_weights(trits: np.ndarray) -> np.ndarray:
    """Trits [out, in] as the exact kernel's float32 Wt [in, out padded to TO]."""
    out, inp = trits.shape
    wt = np.zeros((inp, -(-out // TO) * TO), dtype=np.float32)
    wt[:, :out] = trits.T
    return wt


def layer_exact(handle: ctypes.CDLL, h: np.ndarray, wt: np.ndarray, out: int, scale: np.ndarray,
                bias: np.ndarray, relu: bool) -> np.ndarray:
    """One layer, bit-exact with the device (docs/packed-format.md step 2)."""
    h = np.ascontiguousarray(h, dtype=np.float32)
    y = np.empty((h.shape[0], out), dtype=np.float32)
    handle.omk_layer_exact(h.ctypes.data, h.shape[0], h.shape[1], wt.ctypes.data, out, wt.shape[1],
                           scale.ctypes.data, 1 if scale.size > 1 else 0, bias.ctypes.data,
                           1 if relu else 0, y.ctypes.data)
    return y


SPLIT_MACS = 1 << 22  # below this many multiply-adds a layer runs on one thread whatever set_threads says
_threads = 1
_executor: ThreadPoolExecutor | None = None


def set_threads(n: int) -> None:
    """Threads the ternary kernel may use on a big layer. Default 1: on a machine whose other cores
    are busy, work split across them waits for the slowest (benchmarks pin both sides to n)."""
    global _threads, _executor
    if n < 1:
        raise ValueError(f"threads must be >= 1, got {n}")
    with _lock:
        _threads = int(n)
        if _executor is not None:
            _executor.shutdown(wait=False)
            _executor = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(_threads, thread_name_prefix="omkernel")
        return _executor


QG, QK = 16, 16  # the ternary kernel's output group and input block (omkernel.c)
_EXACT_F32 = 2**24 // 127  # inputs up to this: a float32 matmul of the int8 dot is exact


def ternary_codes(trits: np.ndarray) -> np.ndarray:
    """Trits [out, in] as the ternary kernel's layout: uint8 [groups of 16 outputs, blocks of 16
    inputs, 64]; byte 4o + c, bits 2s..2s+1: the code t + 1 of weight (16g + o, 16k + 4s + c)."""
    out, inp = trits.shape
    og, kg = -(-out // QG), -(-inp // QK)
    codes = np.ones((og * QG, kg * QK), dtype=np.uint8)  # padding: t = 0
    codes[:out, :inp] = (trits + 1).astype(np.uint8)
    c = codes.reshape(og, QG, kg, 4, 4).transpose(0, 2, 3, 1, 4).reshape(og, kg, 4, 64)
    packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    return np.ascontiguousarray(packed, dtype=np.uint8)


class TernaryLayer:
    """One layer prepared for the ternary kernel: the 2-bit codes (compiled kernel) or the trits as
    float32 (numpy fallback), each built on first use, with the layer's scale, bias and ReLU, and
    for a first layer the input standardisation (mean, inv_std) the kernel applies on the way in."""

    def __init__(self, trits: np.ndarray, scale: np.ndarray, bias: np.ndarray, relu: bool,
                 standardize: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        self.out, self.inp = trits.shape
        self.trits = trits
        self.scale = np.ascontiguousarray(scale, np.float32).reshape(-1)
        self.bias = np.ascontiguousarray(bias, np.float32).reshape(-1)
        self.relu = bool(relu)
        self.standardize = None if standardize is None else (
            np.ascontiguousarray(standardize[0], np.float32), np.ascontiguousarray(standardize[1], np.float32))
        self._codes: np.ndarray | None = None
        self._tt: np.ndarray | None = None
        self._args: tuple | None = None

    @property
    def codes(self) -> np.ndarray:
        if self._codes is None:
            self._codes = ternary_codes(self.trits)
        return self._codes

    def kernel_args(self) -> tuple:
        """omk_ternary_layer's per-layer arguments, addresses taken once (an array's .ctypes costs
        a microsecond a call; the arrays live as long as the layer): (codes, out, blocks, in,
        mean, inv_std, scale, per_row, bias, relu), then the number of output groups."""
        if self._args is None:
            codes = self.codes
            mean, inv = (None, None) if self.standardize is None else (a.ctypes.data for a in self.standardize)
            self._args = ((codes.ctypes.data, self.out, codes.shape[1], self.inp, mean, inv,
                           self.scale.ctypes.data, 1 if self.scale.size > 1 else 0, self.bias.ctypes.data,
                           1 if self.relu else 0), codes.shape[0])
        return self._args

    def trits_t(self) -> np.ndarray:
        """Trits [in, out] as float32 (float64 past _EXACT_F32 inputs): BLAS sums them exactly."""
        if self._tt is None:
            dtype = np.float32 if self.inp <= _EXACT_F32 else np.float64
            self._tt = np.ascontiguousarray(self.trits.T, dtype=dtype)
        return self._tt


def quantize_rows(h: np.ndarray, ldq: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 activations (absmax per row, zero-padded to ldq), their row sums and steps: what
    omkernel.c computes, bit for bit (float32 division, round half to even). A row holding an inf
    or NaN (a layer overflowed) gets q = 0 and step NaN, so its outputs are NaN."""
    rows, inp = h.shape
    with np.errstate(invalid="ignore", over="ignore"):
        amax = np.abs(h).max(axis=1) if inp else np.zeros(rows, np.float32)
        finite = np.isfinite(amax)
        step = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
        step[~finite] = 1
        vals = np.rint(h / step[:, None])
    vals[~finite] = 0
    step[~finite] = np.nan
    q = np.zeros((rows, ldq), dtype=np.int8)
    q[:, :inp] = vals
    return q, q.sum(axis=1, dtype=np.int32), step


def _epilogue(dot: np.ndarray, step: np.ndarray, layer: TernaryLayer) -> np.ndarray:
    """omkernel.c's tern_store in numpy: (float)dot * step * scale + bias, then relu."""
    y = dot.astype(np.float32, copy=False) * step[:, None]
    y *= layer.scale
    y += layer.bias
    if layer.relu:
        y[y < 0] = 0
    return y


def ternary_layer(handle: ctypes.CDLL | None, layer: TernaryLayer, h: np.ndarray) -> np.ndarray:
    """relu?((int8(h') . trits) * step * scale + bias), h' = (h - mean) * inv_std for a layer that
    standardises, else h: float32 [rows, out]. The compiled kernel with a handle, numpy without;
    the same bits either way (the int8 dot is exact in both, the float steps are the same
    operations in the same order)."""
    h = np.ascontiguousarray(h, dtype=np.float32)
    if handle is None:
        if layer.standardize is not None:  # the format's step 1
            h = (h - layer.standardize[0]) * layer.standardize[1]
        q, _, step = quantize_rows(h, layer.inp)
        tt = layer.trits_t()
        return _epilogue(q.astype(tt.dtype) @ tt, step, layer)
    (codes, out, kg, inp, *rest), og = layer.kernel_args()
    rows = h.shape[0]
    y = np.empty((rows, out), dtype=np.float32)
    args = (codes, out, kg, h.ctypes.data, rows, inp, *rest, y.ctypes.data)
    n = min(_threads, og) if rows * inp * out >= SPLIT_MACS else 1
    if n <= 1:
        rcs = [handle.omk_ternary_layer(*args, 0, og)]
    else:  # ctypes lets go of the GIL: each thread takes a run of output groups
        cuts = [og * i // n for i in range(n + 1)]
        rcs = list(_pool().map(lambda i: handle.omk_ternary_layer(*args, cuts[i], cuts[i + 1]), range(n)))
    if any(rcs):
        raise MemoryError(f"ternary kernel: no memory for {rows} rows of {inp} inputs")
    return y


def ternary_forward(handle: ctypes.CDLL | None, layers: Sequence[TernaryLayer], X: np.ndarray) -> np.ndarray:
    """Raw rows through every layer (the first one standardises them on the way in)."""
    h = X
    for layer in layers:
        h = ternary_layer(handle, layer, h)
    return h


if __name__ == "__main__":  # python -m openmind.pathways.ternary.native: build now, say what runs
    handle = lib()
    print(f"{build() if handle is not None else reason()}; SIMD: {simd_level()}")
