"""Host inference vs torch fp32 of the same weights, same run.

1. Default `predict` (weights dequantized once per model, BLAS) against two torch fp32 twins at
   batch 1 and 256, on a digits-shaped model (64-256-256-10) and a 784-512-512-10 model:
   - torch folded (the fair one): openmind's own folded float32 weights, so the same work a layer:
     the standardisation folded into the first layer's weights, each ReLU layer's bias into the
     next layer (a matmul and one `maximum` or add a layer, then argmax);
   - torch as written: nn.Linear with the dequantized weights, standardisation and ReLU as separate
     ops (what a user who ports the model layer by layer gets).
   Target >= 1.0x against the folded twin.
2. Bit-exact predictions (`predict(exact=True)`: the compiled kernel) against the numpy loop it
   replaces, on the digits test split (360 rows) and at batch 1. Target >= 10x; equality with the
   numpy loop and with the firmware's own C kernel (firmware/core/om_model.c, when the source tree
   is here) is checked bit for bit.

Run: python bench/host_predict_bench.py [--threads 1]
"""

from __future__ import annotations

import argparse
import ctypes
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from benchlib import bench_clock, machine, per_call, pin_threads

ROOT = Path(__file__).resolve().parent.parent
F32 = np.float32


def ternary_model(widths, rng, mean, inv_std):
    from openmind.pathways.ternary.packed import Layer, TernaryModel

    layers = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        trits = rng.choice(np.array([-1, 0, 1], np.int8), size=(b, a), p=[0.3, 0.4, 0.3])
        layers.append(Layer(trits, rng.uniform(0.5, 1.5, b).astype(F32) / np.sqrt(a).astype(F32),
                            rng.normal(0, 0.1, b).astype(F32), relu=i < len(widths) - 2))
    return TernaryModel(layers, mean, inv_std, np.arange(widths[-1]), name="bench")


def torch_twin(model):
    """The same weights as a torch fp32 network, layer by layer as written."""
    import torch

    mods = []
    for a in model.layers:
        lin = torch.nn.Linear(a.shape[1], a.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(a.weights()))
            lin.bias.copy_(torch.from_numpy(a.bias))
        mods += [lin] + ([torch.nn.ReLU()] if a.relu else [])
    net = torch.nn.Sequential(*mods).eval()
    mean, inv = torch.from_numpy(model.mean), torch.from_numpy(model.inv_std)

    def predict(X: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net((torch.from_numpy(X) - mean) * inv).argmax(1).numpy()

    return predict


def torch_folded_twin(model):
    """torch doing openmind's work: the model's own folded float32 weights (what `predict` uses,
    folded once per model), a matmul and one `maximum` (ReLU layers) or add (the last) a layer."""
    import torch

    kernels = model.kernels()
    kernels.fast(np.zeros((1, model.layers[0].shape[1]), F32))  # folds once, keeps them on the model
    layers = [(torch.from_numpy(wt), torch.from_numpy(v), relu) for wt, v, relu in kernels._folded]

    def predict(X: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            h = torch.from_numpy(X)
            for wt, v, relu in layers:
                h = h @ wt
                if relu:
                    torch.maximum(h, v, out=h)
                else:
                    h += v
            return h.argmax(1).numpy()

    return predict


def firmware_scores(model, X):
    """Scores from firmware/core/om_model.c built for this host (None without the source/compiler)."""
    src = ROOT / "firmware" / "core" / "om_model.c"
    if not src.exists():
        return None, "firmware source not here"
    out = Path(tempfile.mkdtemp()) / "libom_model.so"
    proc = subprocess.run(["cc", "-std=c99", "-O2", "-ffp-contract=off", "-fPIC", "-shared",
                           f"-I{src.parent}", "-o", str(out), str(src)], capture_output=True, text=True)
    if proc.returncode != 0:
        return None, proc.stderr[-200:]
    lib = ctypes.CDLL(str(out))
    lib.om_model_parse.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_void_p]
    lib.om_model_predict.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    blob = model.pack()
    buf, keep = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(blob, len(blob))
    if lib.om_model_parse(keep, len(blob), buf) != 0:
        return None, "model exceeds the device limits"
    Xc = np.ascontiguousarray(X, F32)
    scores = np.empty((len(X), model.n_outputs), F32)

    def run(keep=keep):  # the parsed model points into `keep`: it must live as long as run
        for r in range(len(Xc)):
            lib.om_model_predict(buf, Xc[r].ctypes.data, scores[r].ctypes.data)
        return scores

    return run, ""


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="threads for torch and BLAS (default 1)")
    args = ap.parse_args()
    pin_threads(args.threads)
    import torch
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from openmind.pathways.ternary import native
    from openmind.pathways.ternary.kernel import forward

    clock, clock_name = bench_clock(args.threads)
    print(f"{machine()}; torch {torch.__version__}, numpy {np.__version__}, {args.threads} thread(s); "
          f"compiled kernel: {native.simd_level()} {native.reason()}; clock: {clock_name}")
    rng = np.random.default_rng(0)
    X, y = load_digits(return_X_y=True)
    Xtr, Xte, *_ = train_test_split(X.astype(F32), y, test_size=0.2, random_state=0, stratify=y)
    digits = ternary_model((64, 256, 256, 10), rng, Xtr.mean(0).astype(F32),
                           (1 / (Xtr.std(0) + 1)).astype(F32))
    X784 = rng.uniform(0, 1, size=(256, 784)).astype(F32)
    wide = ternary_model((784, 512, 512, 10), rng, np.full(784, 0.5, F32), np.full(784, 3.0, F32))

    print("\n1. default predict vs torch fp32, same weights (ratio = torch time / openmind time);\n"
          "   folded = the same folding as openmind (the fair one), as written = Linear + ReLU layers")
    print(f"{'model':<16} {'batch':>5} {'openmind ms':>12} {'folded ms':>10} {'written ms':>11} "
          f"{'vs folded':>10} {'vs written':>11}")
    for label, model, data in (("64-256-256-10", digits, Xte), ("784-512-512-10", wide, X784)):
        twins = {"folded": torch_folded_twin(model), "written": torch_twin(model)}
        for batch in (1, 256):
            rows = np.ascontiguousarray(np.resize(data, (batch, data.shape[1])))
            for twin in twins.values():
                assert (twin(rows) == model.predict(rows)).mean() > 0.95
            fns = {"om": lambda rows=rows, m=model: m.predict(rows)}
            fns.update({k: (lambda rows=rows, tw=tw: tw(rows)) for k, tw in twins.items()})
            t = per_call(fns, clock=clock)
            print(f"{label:<16} {batch:>5} {t['om'] * 1e3:>12.4f} {t['folded'] * 1e3:>10.4f} "
                  f"{t['written'] * 1e3:>11.4f} {t['folded'] / t['om']:>9.2f}x {t['written'] / t['om']:>10.2f}x")

    print("\n2. bit-exact predictions: compiled kernel vs the numpy loop (digits model)")
    fw, why = firmware_scores(digits, Xte)
    exact = digits.scores(Xte)
    old = forward(Xte, digits.mean, digits.inv_std, digits.layers)
    assert exact.tobytes() == old.tobytes(), "compiled kernel != numpy loop"
    if fw is not None:
        assert exact.tobytes() == fw().tobytes(), "compiled kernel != firmware om_model.c"
    print(f"equal bit for bit on {len(Xte)} test rows: numpy loop yes, firmware om_model.c "
          f"{'yes' if fw is not None else 'not checked (' + why + ')'}")
    print(f"{'batch':>5} {'exact ms':>10} {'numpy loop ms':>14} {'ratio':>7}"
          f"{'   firmware C ms (per-row loop)' if fw is not None else ''}")
    for rows in (Xte[:1], Xte):
        fns = {"new": lambda r=rows: digits.predict(r, exact=True),
               "old": lambda r=rows: np.argmax(forward(r, digits.mean, digits.inv_std, digits.layers), 1)}
        if fw is not None:
            fwr, _ = firmware_scores(digits, rows)
            fns["fw"] = fwr
        t = per_call(fns, blocks=9, clock=clock)
        extra = f"   {t['fw'] * 1e3:.4f} ({t['fw'] / t['new']:.1f}x slower than exact)" if "fw" in t else ""
        print(f"{len(rows):>5} {t['new'] * 1e3:>10.4f} {t['old'] * 1e3:>14.4f} {t['old'] / t['new']:>6.1f}x{extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
