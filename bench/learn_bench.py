"""Learning on the device, measured: what one learning step costs on rv32imc (the ESP32-C3's ISA)
and the RAM it needs; the same step on this machine against the Python reference.

  1. rv32imc under qemu-system-riscv32 (-icount shift=0: the instret CSR counts retired
     instructions exactly; on an in-order core such as the C3's that is about the cycles):
     instructions per integer learning step, per labelled sample (frozen float32 layers in soft
     float + quantise + step), per held-out row scored and per update read, against the anchor
     measured in the same run: one inference row (om_model_predict) of the same model.
  2. RAM: sizeof(om_head_t) (the learning state), sizeof(om_device_t) (the whole static device),
     and the deepest stack frame of the learning path (gcc -fstack-usage).
  3. the host build: microseconds per learning step (C, through the transcript program) vs the
     Python reference's numpy step, same random steps.

Run: PYTHONPATH=. .venv/bin/python bench/learn_bench.py [--hidden 32 --rows 200]
(the rv32 part says why it is skipped where riscv64-unknown-elf-gcc or qemu is missing).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"


def model_and_rows(hidden: list[int], rows: int):
    """A digits model trained briefly (latent weights kept), its head blob, rows and labels."""
    from sklearn.datasets import load_digits

    from openmind.pathways.colony.federated import get_weights
    from openmind.pathways.learnlink import Scaling, frac_for, head_for, hidden_of, shift_for
    from openmind.pathways.ternary.fit import FitJob, fit, resolve_config, standardization
    from openmind.pathways.ternary.net import export

    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    cfg = resolve_config({"hidden": hidden, "epochs": 5})
    mean, inv = standardization(X)
    out = fit(X, y, FitJob(10, cfg, mean, inv, progress=False))
    model = export(out.net, mean, inv, np.arange(10), name="bench", config=cfg, info={})
    W, b = get_weights(out.net)[-2:]
    frac = frac_for(W)
    scaling = Scaling(frac, shift_for(hidden_of(model.packed(), X[:rows]), frac), 5)
    return model.pack(), head_for(W, b, scaling, seed=1, carry=False), X[:rows], y[:rows]


def header(model_blob: bytes, head: bytes, X: np.ndarray, y: np.ndarray) -> str:
    from openmind.intents.deploy import _c_array, c_header

    rows = ",\n".join("{" + ",".join(float(v).hex() + "f" for v in r) + "}" for r in X)
    return (c_header(model_blob) + _c_array("om_head_blob", head)
            + f"#define OM_ROWS {len(X)}u\nstatic const float om_rows[{len(X)}][{X.shape[1]}] = {{\n{rows}\n}};\n"
            + "static const int om_labels[] = {" + ",".join(str(int(v)) for v in y) + "};\n")


def stack_bytes(folder: Path) -> dict[str, int]:
    """Per-function stack bytes of the learning path from gcc's .su files."""
    out: dict[str, int] = {}
    for su in folder.glob("learn_bench.elf-*.su"):
        for line in su.read_text().splitlines():
            m = re.match(r"\S+:\d+:\d+:(\w+)\s+(\d+)", line)
            if m:
                out[m.group(1)] = max(out.get(m.group(1), 0), int(m.group(2)))
    return out


def rv32(path: Path) -> dict[str, float] | str:
    missing = [t for t in ("riscv64-unknown-elf-gcc", "qemu-system-riscv32") if shutil.which(t) is None]
    if missing:
        return f"skipped: {', '.join(missing)} not installed (apt-get install gcc-riscv64-unknown-elf " \
               f"picolibc-riscv64-unknown-elf qemu-system-misc)"
    proc = subprocess.run(["make", "-s", "-C", str(FIRMWARE), "learn-bench-rv32", f"LEARN_BENCH_H={path}"],
                          capture_output=True, text=True, timeout=600, cwd=path.parent)
    text = proc.stdout + proc.stderr
    nums = dict(re.findall(r"(\w+) (-?\d+)", " ".join(ln for ln in text.splitlines()
                                                       if ln.startswith(("bench", "instret", "ram")))))
    if proc.returncode != 0 or "sample" not in nums:
        return f"failed: {text[-800:]}"
    res = {k: float(v) for k, v in nums.items()}
    res["stack"] = stack_bytes(FIRMWARE / "build" / "rv32")
    return res


def host_steps(seed: int = 2) -> tuple[float, float, int]:
    """(C us/step, Python us/step, steps) over the transcript's random steps (in <= 64 inputs)."""
    from openmind.pathways.ternary import learn

    subprocess.run(["make", "-s", "-C", str(FIRMWARE), f"build/learn-host-{seed}", f"LEARN_SEED={seed}"],
                   check=True, capture_output=True, timeout=300)
    t0 = time.perf_counter()
    text = subprocess.run([str(FIRMWARE / "build" / f"learn-host-{seed}")], capture_output=True, text=True,
                          check=True).stdout
    c_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    py = learn.transcript(seed)
    py_s = time.perf_counter() - t0
    steps = int(text.strip().splitlines()[-1].split()[1])
    assert py == text, "the C transcript and the Python reference differ"
    return 1e6 * c_s / steps, 1e6 * py_s / steps, steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hidden", type=int, nargs="+", default=[32])
    ap.add_argument("--rows", type=int, default=200)
    args = ap.parse_args()
    model_blob, head, X, y = model_and_rows(args.hidden, args.rows)
    widths = [64, *args.hidden, 10]
    print(f"model {'-'.join(map(str, widths))} ({len(model_blob)} B packed), learned layer "
          f"{widths[-2]}x{widths[-1]} ({len(head)} B head), {len(X)} rows")
    with tempfile.TemporaryDirectory(prefix="learn-bench-") as tmp:
        path = Path(tmp) / "bench.h"
        path.write_text(header(model_blob, head, X, y))
        res = rv32(path)
    if isinstance(res, str):
        print(f"rv32imc under QEMU: {res}")
    else:
        n = res["rows"]
        pred = res["predict"] / n
        print(f"\nrv32imc under QEMU (instret, -icount shift=0), per row over {int(n)} rows:")
        print(f"  {'what':34s} {'instructions':>12s} {'x inference':>12s}")
        for key, what in (("predict", "inference (anchor, om_model_predict)"),
                          ("hidden", "frozen layers + quantise"), ("step", "learning step (integer only)"),
                          ("sample", "labelled sample (all of the above)"), ("eval", "held-out row scored")):
            v = res[key] / n
            print(f"  {what:34s} {v:12,.0f} {v / pred:12.2f}")
        print(f"  {'update (once a round)':34s} {res['update']:12,.0f} {res['update'] / pred:12.2f}")
        st = res["stack"]
        chains = {  # LEARN DATA's frame, then the deepest callees of a sample (gcc -fstack-usage)
            "frozen layers": ("data", "om_model_hidden", "run_layers"),
            "step": ("data", "om_learn_step", "om_learn_forward", "ternary_row")}
        deep = {k: sum(st.get(f, 0) for f in fns) for k, fns in chains.items()}
        print(f"RAM: learning state {int(res['head']):,} B (om_head_t, 4,096 weights at most), whole device "
              f"{int(res['device']):,} B (om_device_t, static); stack under LEARN DATA at most "
              f"{max(deep.values()):,} B (" + ", ".join(f"{k} {v:,}" for k, v in deep.items()) + ")")
        print(f"  at 160 MHz (ESP32-C3), one instruction a cycle: {res['sample'] / n / 160:,.0f} us a sample")
    c_us, py_us, steps = host_steps()
    print(f"\nhost: {steps} random steps (up to 256x16 weights): C {c_us:.1f} us/step (with its transcript I/O), "
          f"Python reference {py_us:.1f} us/step ({py_us / c_us:.1f}x the C), identical transcripts")


if __name__ == "__main__":
    main()
