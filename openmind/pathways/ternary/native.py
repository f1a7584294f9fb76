"""The compiled host kernels (omkernel.c), built with the machine's C compiler at first use.

`lib()` compiles omkernel.c once per source version into a shared library cached under
$OPENMIND_NATIVE_DIR (default: $XDG_CACHE_HOME/openmind/native, i.e. ~/.cache/openmind/native) and
loads it with ctypes; with no compiler (or OPENMIND_NATIVE=0) it returns None and callers use the
numpy kernels, which compute the same bits, only slower. `reason()` says why it is missing.
OPENMIND_SIMD=avx2 (or portable) caps the instruction set, to compare the paths on one machine.

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
from pathlib import Path

import numpy as np

SOURCE = Path(__file__).with_name("omkernel.c")
FLAGS = ["-std=c99", "-O3", "-ffp-contract=off", "-fPIC", "-shared", "-Wall"]
LEVELS = {3: "avx512", 2: "avx2", 1: "neon", 0: "portable"}

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
    tag = hashlib.sha256(src + " ".join([cc, *FLAGS, platform.machine(), sys.platform]).encode()).hexdigest()[:16]
    out = cache_dir() / f"omkernel-{platform.machine()}-{tag}.so"
    if out.exists() and not force:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".omkernel-", suffix=".so", dir=out.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
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
                handle.omk_ternary_gemm.argtypes = [_P, _int, _int, _P, _int, _P, _P]
                handle.omk_ternary_gemm.restype = None
                handle.omk_simd_level.restype = _int
                handle.omk_set_max_level.argtypes = [_int]
                cap = os.environ.get("OPENMIND_SIMD", "").strip().lower()
                if cap:  # at most this level: avx512, avx2, neon or portable
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
    """The instruction set the kernels run with here: avx512, avx2, neon, portable or numpy."""
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


def ternary_codes(trits: np.ndarray) -> np.ndarray:
    """Trits [out, in] as the 2-bit kernel layout: uint8 [out, nb, 32], 128 weights per block."""
    out, inp = trits.shape
    nb = -(-inp // 128)
    codes = np.zeros((out, nb * 128), dtype=np.uint8)
    codes[:, :inp] = (trits + 1).astype(np.uint8)
    c = codes.reshape(out, nb, 4, 32)  # [o, block, m, b]: input 128k + 32m + b
    packed = c[:, :, 0] | (c[:, :, 1] << 2) | (c[:, :, 2] << 4) | (c[:, :, 3] << 6)
    return np.ascontiguousarray(packed, dtype=np.uint8)


def quantize_rows(h: np.ndarray, nb: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int8 activations (absmax per row, zero-padded to nb * 128), their row sums and scales."""
    rows, inp = h.shape
    amax = np.abs(h).max(axis=1)
    step = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    q = np.zeros((rows, nb * 128), dtype=np.int8)
    q[:, :inp] = np.rint(h / step[:, None])
    return q, q.sum(axis=1, dtype=np.int32), step


def ternary_dot(handle: ctypes.CDLL, codes: np.ndarray, h: np.ndarray) -> np.ndarray:
    """h [rows, in] times the ternary weights of `codes`, approximately (int8 activations), float32."""
    out, nb, _ = codes.shape
    q, qsum, step = quantize_rows(h, nb)
    d = np.empty((h.shape[0], out), dtype=np.int32)
    handle.omk_ternary_gemm(codes.ctypes.data, out, nb, q.ctypes.data, h.shape[0], qsum.ctypes.data,
                            d.ctypes.data)
    return d.astype(np.float32) * step[:, None]


if __name__ == "__main__":  # python -m openmind.pathways.ternary.native: build now, say what runs
    handle = lib()
    print(f"{build() if handle is not None else reason()}; SIMD: {simd_level()}")
