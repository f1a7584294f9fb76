"""A colony with devices that learn on the device, round by round, against its anchors.

Two virtual devices (the firmware's host build on ptys, protocol 3), each with its own slice of
digits' training split, its own sensor noise (sigma 0.2 and 0.4 of each pixel's standard deviation) and a label
skew (Dirichlet 0.5), and one Python client with a random third, run federated rounds on a real
Flower server; the devices join with `openmind colony join --device PORT` processes and learn the
last layer of the global model on the device (integer arithmetic, the rest frozen ternary).
Printed per round: the held-out accuracy (digits' test split, never seen by a client) against the
starting model's, the bytes of the round both ways (ternary updates up, the fp32 global model
down, as Flower carries them), and for each device: rows, steps, its own held-out accuracy before
and after it learned, the bytes over its serial link both ways, its update and its RAM.
The anchor measured in the same run: the same rounds with the Python client alone.

Run: PYTHONPATH=. .venv/bin/python bench/learn_colony_bench.py [--rounds 5 --hidden 32]
"""

from __future__ import annotations

import argparse

import numpy as np


def run(spec, X_eval, y_eval, python_rows, devices, rounds: int, on_round) -> object:
    """The server's rounds with one Python client process and one device client process per device."""
    from openmind.pathways.colony.devclient import serve_with_devices
    from openmind.pathways.colony.server import Rounds, free_port

    plan = Rounds(1, rounds, f"127.0.0.1:{free_port()}", local=[python_rows], on_round=on_round,
                  join_timeout=180, round_timeout=600)
    return serve_with_devices(spec, X_eval, y_eval, plan, devices)


def row_text(r: dict) -> str:
    acc = r.get("accuracy")
    return (f"round {r['round']}: {r['clients']} clients, held-out accuracy {acc:.3f}, "
            f"up {r.get('bytes_sent', 0):,} B of ternary updates, down {r.get('bytes_received', 0):,} B "
            f"of fp32 global model, {r.get('seconds', 0):.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--hidden", type=int, nargs="+", default=[32])
    ap.add_argument("--epochs", type=int, default=2, help="local epochs a round (devices and client)")
    args = ap.parse_args()

    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    from openmind.intents.federate import device_text
    from openmind.pathways.colony import federated as fed
    from openmind.pathways.colony.devclient import simulated_slices
    from openmind.pathways.ternary.fit import resolve_config, standardization
    from openmind.pathways.vdev import VirtualDevice

    X, y = load_digits(return_X_y=True)
    Xtr, Xte, ytr, yte = train_test_split(X.astype(np.float32), y, test_size=0.2, random_state=0, stratify=y)
    python_rows, devices = simulated_slices(Xtr, ytr)
    cfg = resolve_config({"hidden": args.hidden, "lr": 1e-2})
    mean, inv = standardization(python_rows[0])
    spec = fed.Spec(64, cfg["hidden"], np.arange(10), mean, inv, cfg, args.epochs, args.rounds)
    print(f"digits: Python client {len(python_rows[0])} rows; devices "
          + ", ".join(f"{len(d[0])} rows (sigma {s}, classes {np.bincount(d[1], minlength=10).tolist()})"
                      for d, s in zip(devices, (0.2, 0.4), strict=True))
          + f"; held-out {len(Xte)} rows; model {'-'.join(map(str, [64, *args.hidden, 10]))}")

    def show(r: dict) -> None:
        print(row_text(r), flush=True)
        for d in r.get("devices", []):
            print(f"    {device_text(d)}", flush=True)

    with VirtualDevice() as d1, VirtualDevice() as d2:
        print("\nwith two devices learning on the device:")
        col = run(spec, Xte, yte, python_rows, [(d1.port, *devices[0]), (d2.port, *devices[1])],
                  args.rounds, show)
    print("\nanchor, the Python client alone:")
    alone = run(spec, Xte, yte, python_rows, [], args.rounds, show)
    best = max(r["accuracy"] for r in col.rounds)
    print(f"\nstarting model {col.start_accuracy:.3f}; best round with devices {best:.3f} "
          f"({best - col.start_accuracy:+.3f}); Python client alone {max(r['accuracy'] for r in alone.rounds):.3f}")


if __name__ == "__main__":
    main()
