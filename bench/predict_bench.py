"""Predict throughput over serial: protocol 1's text PREDICT (the anchor, one line a row) against
protocol 2's PREDICTB, one row a batch and the whole digits test split as one batch, on the
firmware's host build on a pty, in the same run. Also shows what v1 cannot send: the same rows
as arbitrary float32 (digits' pixels plus noise) no longer fit one 256-byte PREDICT line.
Usage: python bench/predict_bench.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import numpy as np  # noqa: E402
from vdev_fixtures import BUILD, VDev, make  # noqa: E402


def main() -> None:
    os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="om-bench-"))
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    import openmind
    from openmind.pathways.device import DeviceError, Link

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, _ = train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)
    model = openmind.train_or_load("digits-bench", Xtr, ytr, fit_device=True, epochs=5, progress=False)
    Xte = Xte.astype(np.float32)
    ref_y = model.packed().predict_index(Xte, exact=True)
    make("all")
    dev = VDev(BUILD / "openmind-vdev")
    try:
        openmind.deploy(model, "esp32", port=dev.port)
        with Link(dev.port) as link:
            link.hello(2.0)
            runs = {}
            link.proto = 1  # the anchor: protocol 1's text PREDICT, as a v1 host speaks it
            t0 = time.perf_counter()
            ys = [link.predict(x)[0] for x in Xte]
            runs["v1 PREDICT text, a line a row"] = (time.perf_counter() - t0, np.array_equal(ys, ref_y))
            link.proto = 2
            t0 = time.perf_counter()
            ys = [link.predict(x)[0] for x in Xte]
            runs["v2 PREDICTB, a batch a row"] = (time.perf_counter() - t0, np.array_equal(ys, ref_y))
            t0 = time.perf_counter()
            ys, _ = link.predict_batch(Xte)
            runs["v2 PREDICTB, one batch of 360"] = (time.perf_counter() - t0, np.array_equal(ys, ref_y))
            noisy = Xte + np.random.default_rng(0).normal(0, 1e-3, Xte.shape).astype(np.float32)
            link.proto = 1
            try:
                link.predict(noisy[0])
                v1_noisy = "fits"
            except DeviceError as exc:
                v1_noisy = f"refused: {exc}"
            link.proto = 2
            ys, _ = link.predict_batch(noisy)
            v2_noisy = np.array_equal(ys, model.packed().predict_index(noisy, exact=True))
    finally:
        dev.close()
    anchor = len(Xte) / runs["v1 PREDICT text, a line a row"][0]
    print(f"model: hidden {model.config['hidden']}, {len(model.pack())} bytes; {len(Xte)} rows x 64 features")
    print(f"{'path':<34} {'rows/s':>9} {'x anchor':>9} {'== numpy':>9}")
    for name, (secs, same) in runs.items():
        rate = len(Xte) / secs
        print(f"{name:<34} {rate:>9.0f} {rate / anchor:>9.2f} {str(same):>9}")
    print(f"float32 rows with noise: v1 {v1_noisy}; v2 batch equal to numpy: {v2_noisy}")


if __name__ == "__main__":
    main()
