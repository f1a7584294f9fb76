"""The native packed-ternary kernel (omkernel.c: 2-bit weights, int8 activations, SIMD) against
torch fp32 of the same weights, same run: a 4096x4096 layer at batch 1 (GEMV) and batch 64 (GEMM).

Targets: batch 1 >= 2x torch (moonshot 3x), batch 64 >= 1x. Prints the SIMD level the kernel
runs with, the threads both use, the weight bytes each reads and the kernel's error against fp32
(it quantizes activations to int8 per row, as BitNet b1.58 does).

Run: python bench/ternary_bench.py [--threads 1] [--size 4096]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from benchlib import machine, per_call, pin_threads


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the kernel uses one)")
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args()
    pin_threads(args.threads)
    import torch

    from openmind.pathways.ternary import native
    from openmind.pathways.ternary.packed import Layer, PackedModel

    n = args.size
    rng = np.random.default_rng(0)
    trits = rng.choice(np.array([-1, 0, 1], np.int8), size=(n, n), p=[0.3, 0.4, 0.3])
    scale = rng.uniform(0.5, 1.5, n).astype(np.float32) / np.float32(np.sqrt(n))
    bias = rng.normal(0, 0.1, n).astype(np.float32)
    model = PackedModel([Layer(trits, scale, bias, relu=False)], np.zeros(n, np.float32),
                        np.ones(n, np.float32))
    w = torch.from_numpy(model.layers[0].weights())
    b = torch.from_numpy(bias)
    print(f"{machine()}; torch {torch.__version__} with {torch.get_num_threads()} thread(s); "
          f"ternary kernel: SIMD {native.simd_level()}, 1 thread {native.reason()}")
    print(f"weights: torch fp32 {w.numel() * 4 / 2**20:.0f} MiB, packed ternary "
          f"{model.nbytes / 2**20:.1f} MiB")
    print(f"{'shape':<16} {'ternary ms':>11} {'torch fp32 ms':>14} {'ratio':>7} {'max rel err':>12}")
    for batch in (1, 64):
        x = rng.normal(size=(batch, n)).astype(np.float32)
        xt = torch.from_numpy(x)

        def fp32(xt=xt):
            with torch.inference_mode():
                return torch.nn.functional.linear(xt, w, b)

        got, ref = model.scores_ternary(x), fp32().numpy()
        err = float(np.abs(got - ref).max() / np.abs(ref).max())
        t = per_call({"tern": lambda x=x: model.scores_ternary(x), "torch": fp32}, blocks=9, block_s=0.1)
        print(f"{n}x{n} x{batch:<5} {t['tern'] * 1e3:>11.3f} {t['torch'] * 1e3:>14.3f} "
              f"{t['torch'] / t['tern']:>6.2f}x {err:>12.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
