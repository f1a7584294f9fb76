"""The firmware core built for rv32imc (the ESP32-C3's ISA: no FPU, so float32 is libgcc's soft
float) with Debian's riscv64-unknown-elf gcc and picolibc, run under qemu-system-riscv32
(semihosting): the packed-model kernel gives the same classes and scores, bit for bit, as the
same program built for the host and as openmind's numpy kernel, on the whole digits test split."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from vdev_fixtures import BUILD, FIRMWARE, make

from openmind.intents.deploy import c_header

TOOLS = ("riscv64-unknown-elf-gcc", "qemu-system-riscv32")
MISSING = [t for t in TOOLS if shutil.which(t) is None]
needs_rv32 = pytest.mark.skipif(bool(MISSING), reason=(
    f"{', '.join(MISSING)} not installed: apt-get install gcc-riscv64-unknown-elf "
    f"picolibc-riscv64-unknown-elf qemu-system-misc (scripts/test.sh does, as root)"))


def rows_c(X: np.ndarray) -> str:
    """The rows as C (OM_ROWS, om_rows[][]): floats as hex literals, so C reads the exact float32."""
    X = np.asarray(X, np.float32)
    rows = ",\n".join("{" + ",".join(float(v).hex() + "f" for v in row) + "}" for row in X)
    return (f"#define OM_ROWS {len(X)}u\n"
            f"static const float om_rows[{len(X)}][{X.shape[1]}] = {{\n{rows}\n}};\n")


def rows_header(blob: bytes, X: np.ndarray) -> str:
    """The model (its C header) and the rows."""
    return c_header(blob) + rows_c(X)


def parse(out: str) -> tuple[dict, np.ndarray, np.ndarray]:
    import json

    lines = out.strip().splitlines()
    hello = json.loads(lines[0])
    assert lines[-1] == f"done {len(lines) - 2} rows"
    body = [ln.split() for ln in lines[1:-1]]
    assert [int(b[0]) for b in body] == list(range(len(body)))
    ys = np.array([int(b[1]) for b in body])
    bits = np.array([[int(h, 16) for h in b[2:]] for b in body], dtype=np.uint32)
    return hello, ys, bits


@needs_rv32
def test_core_compiles_for_rv32imc_with_werror():
    out = make("rv32-core").stdout
    assert "5 objects, -Werror clean" in out
    elf = subprocess.run(["riscv64-unknown-elf-readelf", "-h", "-A", str(BUILD / "rv32" / "om_model.o")],
                         capture_output=True, text=True, check=True).stdout
    assert "ELF32" in elf and "RVC, soft-float ABI" in elf and 'rv32i2p1_m2p0_c2p0' in elf


@needs_rv32
def test_kernel_under_qemu_rv32imc_matches_host_build_and_numpy_on_digits(tmp_path, digits_model):
    model, Xte, _ = digits_model
    X = np.asarray(Xte, np.float32)
    blob = model.pack()
    header = tmp_path / "rows.h"
    header.write_text(rows_header(blob, X))
    rv = make("rv32-run", ROWS_H=str(header)).stdout
    rv_hello, rv_y, rv_bits = parse(rv[rv.index('{"hello"'):])
    make("kernel-host", ROWS_H=str(header))
    host = subprocess.run([str(BUILD / "kernel-host")], capture_output=True, text=True, check=True,
                          timeout=60, cwd=FIRMWARE).stdout
    _, host_y, host_bits = parse(host)
    ref = model.packed()
    np_y, np_bits = ref.predict_index(X, exact=True), ref.scores(X).astype(np.float32).view(np.uint32)
    print(f"\nrv32imc under QEMU: {len(rv_y)} rows, {rv_bits.size} scores; "
          f"equal to host build: {np.array_equal(rv_bits, host_bits)}, to numpy: {np.array_equal(rv_bits, np_bits)}")
    assert rv_hello["board"] == "qemu-rv32imc" and rv_hello["proto"] == 2
    assert len(rv_y) == 360
    assert np.array_equal(rv_y, host_y) and np.array_equal(rv_y, np_y)
    assert np.array_equal(rv_bits, host_bits) and np.array_equal(rv_bits, np_bits)
