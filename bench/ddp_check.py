"""A short check of the data-parallel paths on a machine with CUDA GPUs (the NCCL side).

  1. what torch sees (CUDA, GPUs, NCCL) and what the router picks for workers=2 and for the
     default (one process per GPU when there are several)
  2. NCCL through openmind's own pieces: a process group on a rendezvous file, DDP around the
     ternary net on cuda:0 and the stop vote as NCCL all-reduces (world size 1 on a 1-GPU
     machine: one process per GPU is NCCL's rule)
  3. with 2+ GPUs: train_or_load(workers=N) on NCCL vs one process (accuracy and time)
  4. the spawn path: CUDA initialised in this process first, then train_or_load(workers=2) on the
     CPU must start its workers with spawn (a forked child cannot use the parent's CUDA) and work

Run: PYTHONPATH=. python bench/ddp_check.py      (prints PASS/FAIL per step; exit 1 on a FAIL)
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import time

import numpy as np


def main() -> int:
    import torch
    import torch.distributed as dist
    from sklearn.datasets import load_digits

    import openmind
    from openmind.flow.policy import make_policy
    from openmind.flow.resources import probe
    from openmind.flow.router import Intent, route

    os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="openmind-ddp-check-"))
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    failed = []

    def check(what: str, ok: bool, detail: str = "") -> None:
        print(f"  {'PASS' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""), flush=True)
        if not ok:
            failed.append(what)

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    print(f"1. torch {torch.__version__}, CUDA {torch.version.cuda}, {gpus} GPU(s), "
          f"NCCL {'available' if dist.is_nccl_available() else 'missing'}, {os.cpu_count()} cores")
    res = probe(refresh=True)
    it = Intent.of("train", name="check", rows=1797, est_seconds=30.0, ancestor=False)
    for pol in (make_policy(workers=2), make_policy()):
        cand = next(c for c in route(it, resources=res, policy=pol) if c.pathway.value == "full_train")
        print(f"  route {pol.workers or 'default'}: {cand.reason}  params={cand.params}")
    check("the probe sees the GPUs torch sees", res.gpu.available == (gpus > 0), res.gpu.reason)

    X, y = load_digits(return_X_y=True)
    Xtr, ytr, Xte, yte = X[:1400], y[:1400], X[1400:], y[1400:]
    if gpus and dist.is_nccl_available():
        print("2. NCCL: process group on a rendezvous file, DDP on cuda:0, stop vote")
        from openmind.pathways.colony.distributed import _replicas
        from openmind.pathways.ternary.fit import FitJob, fit, resolve_config, standardization
        from openmind.pathways.ternary.net import export

        folder = tempfile.mkdtemp(prefix="openmind-nccl-")
        t0 = time.perf_counter()
        dist.init_process_group("nccl", init_method=f"file://{folder}/rendezvous", rank=0,
                                world_size=1, timeout=datetime.timedelta(seconds=60))
        rendezvous = time.perf_counter() - t0
        try:
            cfg = resolve_config({"hidden": 64, "epochs": 10})
            mean, inv = standardization(Xtr)
            t0 = time.perf_counter()
            out = fit(Xtr, ytr, FitJob(10, cfg, mean, inv, device="cuda:0", budget=600,
                                       progress=False), _replicas(0, 1, "cuda:0"))
            took = time.perf_counter() - t0
            acc = export(out.net, mean, inv, np.arange(10), name=None, config=cfg, info={}).score(Xte, yte)
            check("NCCL DDP training on cuda:0", dist.get_backend() == "nccl" and acc > 0.8,
                  f"backend {dist.get_backend()}, accuracy {acc:.4f}, {took:.2f}s, "
                  f"rendezvous {rendezvous:.3f}s")
        finally:
            dist.destroy_process_group()
    else:
        print("2. skipped: no CUDA GPU or no NCCL in this torch")

    if gpus >= 2:
        print(f"3. train_or_load(workers={gpus}) on NCCL vs one process")
        t0 = time.perf_counter()
        one = openmind.train_or_load("one", Xtr, ytr, hidden=64, epochs=10, progress=False)
        t1 = time.perf_counter() - t0
        t0 = time.perf_counter()
        many = openmind.train_or_load("many", Xtr, ytr, hidden=64, epochs=10, progress=False,
                                      workers=gpus)
        tn = time.perf_counter() - t0
        check("NCCL data-parallel train", many.info.get("backend") == "nccl",
              f"{many.route.reason}; accuracy {one.score(Xte, yte):.4f} (1) vs "
              f"{many.score(Xte, yte):.4f} ({gpus}); {t1:.2f}s vs {tn:.2f}s")
    else:
        print("3. skipped: NCCL needs one GPU per process and this machine has", gpus)

    print("4. spawn when CUDA is initialised in the parent")
    if gpus:
        torch.zeros(1, device="cuda")
    from openmind.pathways.colony.distributed import start_method

    expect = "spawn" if gpus else "fork"
    check(f"start method is {expect}", start_method() == expect, start_method())
    t0 = time.perf_counter()
    two = openmind.train_or_load("spawned", Xtr, ytr, hidden=32, epochs=5, progress=False,
                                 workers=2, fresh=True)
    check("2 CPU processes (gloo) from a CUDA-initialised parent",
          two.info.get("start_method") == expect and two.info.get("workers") == 2,
          f"{two.info.get('start_method')}, {two.info.get('backend')}, accuracy "
          f"{two.score(Xte, yte):.4f}, {time.perf_counter() - t0:.2f}s")
    print("FAIL:" if failed else "all checks passed", ", ".join(failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
