"""Colony training measured against its anchors in one run.

  1. bytes one client sends per round: a ternary-coded update vs the fp32 update a plain Flower
     client sends for the same weights (ndarrays_to_parameters), for the federated default model
     (64-64-10 on digits) and a wider one (target: >= 10x fewer)
  1b. bytes per round both ways in a real federation (uploads, and the global model going down:
     whole in round 1, then its change ternary-coded), each beside fp32
  2. wall time of the same training (digits, same config, same global batch) on 1 process vs 2
     data-parallel processes (DDP, gloo); the ratio on this machine, whatever it is
  3. the cost of starting the processes and their rendezvous: a 1-epoch run on 2 processes
     minus the same run in one, and the rendezvous alone (init_process_group, file://)

Run: PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python bench/colony_bench.py [--epochs 10 --hidden 256]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np


def update_bytes(hidden: list[int]) -> tuple[int, int]:
    """(ternary bytes, fp32 bytes) of one client's update after one local epoch on digits."""
    from sklearn.datasets import load_digits

    from openmind.pathways.colony import federated as fed
    from openmind.pathways.ternary.fit import resolve_config, standardization

    X, y = load_digits(return_X_y=True)
    cfg = resolve_config({"hidden": hidden, "lr": 1e-2})
    mean, inv = standardization(X)
    spec = fed.Spec(X.shape[1], cfg["hidden"], np.arange(10), mean, inv, cfg, 1, 10)
    weights = fed.get_weights(spec.net())
    tensors, _left = fed.local_update(spec, weights, X[:600].astype(np.float32), y[:600], None, 1)
    return sum(len(t) for t in tensors), fed.fp32_bytes(weights)


def round_bytes(rounds: int = 4, clients: int = 3) -> None:
    """Bytes per round up (clients' ternary updates) and down (the global model: whole in round
    1, its change ternary-coded after), each beside what plain fp32 Flower would move."""
    import tempfile

    from sklearn.datasets import load_digits

    os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="openmind-bench-"))
    import openmind

    X, y = load_digits(return_X_y=True)
    model = openmind.federate("bench-colony", X, y, clients=clients, rounds=rounds, local_epochs=1)
    rows = [r["summary"]["federated_round"] for r in openmind.journal(50)[::-1]
            if "federated_round" in (r.get("summary") or {})][-rounds:]
    for r in rows:
        up, down, f_up, f_down = r["bytes_sent"], r["bytes_down"], r["fp32_bytes"], r["fp32_down"]
        print(f"  round {r['round']}: up {up:,} B (fp32 {f_up:,} B, {f_up / up:.1f}x), down "
              f"{down:,} B (fp32 {f_down:,} B, {f_down / down:.1f}x); both ways "
              f"{(f_up + f_down) / (up + down):.1f}x fewer than fp32")
    info = model.info
    both = (info["fp32_bytes"] + info["fp32_down"]) / (info["bytes_sent"] + info["bytes_down"])
    print(f"  whole run: {info['bytes_sent'] + info['bytes_down']:,} B vs fp32 "
          f"{info['fp32_bytes'] + info['fp32_down']:,} B -> {both:.1f}x fewer both ways "
          f"(accuracy on the server's rows {info['eval_accuracy']})")


def timed_fit(workers: int, epochs: int, hidden: int, repeats: int) -> tuple[float, float, dict]:
    """(median seconds, test accuracy, colony info) of the same training on `workers` processes.
    The machine is shared: call it for 1 and 2 processes in turn (see `compare`)."""
    from sklearn.datasets import load_digits

    from openmind.pathways.colony.distributed import fit_local
    from openmind.pathways.ternary.fit import FitJob, resolve_config, standardization
    from openmind.pathways.ternary.net import export

    X, y = load_digits(return_X_y=True)
    Xtr, ytr, Xte, yte = X[:1400], y[:1400], X[1400:], y[1400:]
    cfg = resolve_config({"hidden": hidden, "epochs": epochs, "patience": epochs + 1})
    mean, inv = standardization(Xtr)
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fit_local(Xtr, ytr, FitJob(10, cfg, mean, inv, progress=False), workers=workers)
        times.append(time.perf_counter() - t0)
    model = export(out.net, mean, inv, np.arange(10), name=None, config=cfg, info={})
    return statistics.median(times), model.score(Xte, yte), out.colony


def compare(epochs: int, hidden: int, repeats: int) -> tuple[tuple, tuple]:
    """1 and 2 processes measured in turn, `repeats` times each, so both see the same load."""
    ones, twos = [], []
    for _ in range(repeats):
        ones.append(timed_fit(1, epochs, hidden, 1))
        twos.append(timed_fit(2, epochs, hidden, 1))
    pick = lambda runs: (statistics.median(r[0] for r in runs), runs[-1][1], runs[-1][2])  # noqa: E731
    return pick(ones), pick(twos)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skip-rounds", action="store_true", help="skip the real federation (1b)")
    args = ap.parse_args()
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    print(f"machine: {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f}")

    print("\n1. bytes one client sends per round")
    for hidden in ([64], [256, 256]):
        tern, fp32 = update_bytes(hidden)
        print(f"  64-{'-'.join(map(str, hidden))}-10: ternary {tern:,} B vs fp32 {fp32:,} B "
              f"-> {fp32 / tern:.1f}x fewer")

    if not args.skip_rounds:
        print("\n1b. bytes per round both ways (a real federation: 3 local clients, 4 rounds)")
        round_bytes()

    print(f"\n2. the same training ({args.epochs} epochs, hidden {args.hidden}, batch 64) on 1 vs 2 processes")
    (t1, a1, _), (t2, a2, info) = compare(args.epochs, args.hidden, args.repeats)
    print(f"  1 process:  {t1:.2f} s  (test accuracy {a1:.4f})")
    print(f"  2 processes: {t2:.2f} s  (test accuracy {a2:.4f}; {info.get('start_method')}, "
          f"{info.get('backend')})")
    print(f"  speed-up 2 vs 1: {t1 / t2:.2f}x (the anchor is 1 process, same run)")

    print("\n3. the cost of starting 2 processes and their rendezvous")
    (s1, _, _), (s2, _, info) = compare(1, 16, args.repeats)
    print(f"  1-epoch tiny run: 1 process {s1:.2f} s, 2 processes {s2:.2f} s -> start-up + "
          f"rendezvous + teardown cost {s2 - s1:.2f} s")
    print(f"  rendezvous alone (init_process_group, file://, gloo): {info.get('rendezvous_seconds')} s")


if __name__ == "__main__":
    main()
