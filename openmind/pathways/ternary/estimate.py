"""What a training config costs: seconds on this machine (measured throughput, corrected by real
runs, remembered in muscle memory per architecture) and whether its packed model fits a device.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from openmind.pathways.ternary.net import build_net, evaluate
from openmind.pathways.ternary.packed import size_for

# Below this many multiply-adds per batch one CPU thread beats several (thread hand-off costs
# more than the matmuls; measured 4x slower with 2 threads on a shared 2-core machine).
SMALL_BATCH_MACS = 5e7


def small_net(n_in: int, cfg: dict[str, Any], n_out: int) -> bool:
    """True when one CPU thread trains this architecture faster than several."""
    widths = [n_in, *cfg["hidden"], n_out]
    macs = sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    return macs * cfg["batch_size"] < SMALL_BATCH_MACS


def estimate_seconds(rows: int, n_features: int, n_classes: int, cfg: dict[str, Any],
                     device: str = "cpu") -> float:
    """Seconds a full train of `cfg` on `rows` rows takes on this machine, from measured
    throughput: the architecture's step time is timed once (a few real batches, remembered in
    muscle memory per architecture) and corrected by what real runs of it took. Times are the
    training thread's CPU time, so a neighbour's load while measuring does not skew them."""
    from openmind.memory.throughput import recall, remember

    arch = arch_key(n_features, cfg, n_classes, device)
    t = recall(arch)
    if t is None or not {"per_batch", "per_eval_row", "copy_s"} <= set(t):
        t = measure_throughput(n_features, n_classes, cfg, device)
        remember(arch, **t)
    per_epoch = _epoch_seconds(rows, cfg, t)
    return float(cfg["epochs"] * per_epoch * float(t.get("factor", 1.0)))


def arch_key(n_features: int, cfg: dict[str, Any], n_classes: int, device: str = "cpu") -> str:
    threads = 1 if device == "cpu" and small_net(n_features, cfg, n_classes) else torch.get_num_threads()
    widths = "-".join(str(w) for w in [n_features, *cfg["hidden"], n_classes])
    return f"{device}:{widths}:b{cfg['batch_size']}:{cfg['scale']}:t{threads}"


def _epoch_seconds(rows: int, cfg: dict[str, Any], t: dict[str, float]) -> float:
    n_val = int(round(rows * cfg["val_fraction"])) if rows > 1 else 0
    n_tr = max(1, rows - n_val)
    batches = math.ceil(n_tr / cfg["batch_size"])
    return batches * t["per_batch"] + (n_val or n_tr) * t["per_eval_row"] + t["copy_s"]


def measure_throughput(n_features: int, n_classes: int, cfg: dict[str, Any],
                       device: str = "cpu", seconds: float = 0.15) -> dict[str, float]:
    """Time real training steps of this architecture on random data (about `seconds`): one
    batch's step, one row's evaluation, one copy of the weights."""
    threads = torch.get_num_threads()
    if device == "cpu" and small_net(n_features, cfg, n_classes):
        torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        net = build_net(n_features, cfg["hidden"], n_classes, scale=cfg["scale"]).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
        bs = cfg["batch_size"]
        X = torch.randn(bs, n_features, generator=gen).to(device)
        y = torch.randint(0, n_classes, (bs,), generator=gen).to(device)
        times: list[float] = []
        for i in range(1000):
            t0 = time.thread_time()
            loss = nn.functional.cross_entropy(net(X), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            if i >= 2:  # the first steps warm up allocators and kernels
                times.append(time.thread_time() - t0)
                if sum(times) >= seconds and len(times) >= 5:
                    break
        net.eval()
        Xe = torch.randn(max(bs, 256), n_features, generator=gen).to(device)
        ye = torch.randint(0, n_classes, (len(Xe),), generator=gen).to(device)
        t0 = time.thread_time()
        for _ in range(3):
            evaluate(net, Xe, ye)
        per_eval_row = (time.thread_time() - t0) / (3 * len(Xe))
        t0 = time.thread_time()
        copy.deepcopy(net.state_dict())
        copy_s = time.thread_time() - t0
    finally:
        torch.set_num_threads(threads)
    # the median step: a neighbour's burst on a shared machine does not skew the estimate
    return {"per_batch": float(np.median(times)), "per_eval_row": per_eval_row, "copy_s": copy_s,
            "factor": 1.0}


def note_run(rows: int, n_features: int, n_classes: int, cfg: dict[str, Any], device: str,
             epochs: int, seconds: float) -> None:
    """Correct this architecture's estimate by what a real run took (time the epochs run,
    extrapolate): the ratio of measured to predicted epoch time, averaged over runs."""
    from openmind.memory.throughput import recall, remember

    arch = arch_key(n_features, cfg, n_classes, device)
    t = recall(arch)
    if t is None or epochs < 2 or not {"per_batch", "per_eval_row", "copy_s"} <= set(t):
        return
    predicted = _epoch_seconds(rows, cfg, t)
    if predicted <= 0:
        return
    ratio = min(max(seconds / epochs / predicted, 0.05), 20.0)
    old = float(t.get("factor", 1.0))
    runs = int(t.get("runs", 0))
    remember(arch, factor=ratio if runs == 0 else 0.5 * old + 0.5 * ratio, runs=runs + 1)


def fits(widths: Sequence[int], per_row: bool, limits: dict[str, int]) -> str | None:
    """None when an architecture fits a device's limits (a v2 HELLO's "limits"), else why not."""
    size = size_for(widths, per_row)
    why = []
    if size > limits["model_max"]:
        why.append(f"packs to {size} bytes, over the device's {limits['model_max']}")
    if max(widths) > limits["max_width"]:
        why.append(f"a layer {max(widths)} wide, over the device's {limits['max_width']}")
    if len(widths) - 1 > limits["max_layers"]:
        why.append(f"{len(widths) - 1} layers, over the device's {limits['max_layers']}")
    return "; ".join(why) or None


def fit_hidden(n_in: int, n_out: int, hidden: Sequence[int], per_row: bool,
               limits: dict[str, int]) -> list[int] | None:
    """The widest hidden layers of the same shape (depth capped by the device, widths scaled down
    together) whose packed model fits `limits`; None when even width 1 cannot (too many inputs
    or classes for the device)."""
    hidden = list(hidden)[:max(0, limits["max_layers"] - 1)]
    if not hidden:
        return [] if fits([n_in, n_out], per_row, limits) is None else None
    top = max(hidden)

    def shaped(t: int) -> list[int]:
        return [max(1, min(limits["max_width"], h * t // top)) for h in hidden]

    lo, hi = 0, top  # largest t whose architecture fits (size grows with t)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits([n_in, *shaped(mid), n_out], per_row, limits) is None:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    return shaped(lo)
