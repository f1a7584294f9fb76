"""Do inheritance, growth and voting help? Five seeds each, same run, printed as tables.

1. Ancestral init vs the default init on digits classes 5-9, after ancestors were trained on
   wine, breast_cancer and digits classes 0-4: epochs to 95 % validation accuracy and test
   accuracy, with all the data and with 200 rows.
2. Growth/extinction (start 32 wide) vs a fixed net of the starting width and of the final width:
   test accuracy and packed bytes.
3. A colony of 5 (seeds and data slices) vs its best single member: accuracy, abstention rate and
   accuracy on the rows the colony answered; then each colony kept in muscle memory and served by
   `openmind serve`: its packed bytes, the served labels' and abstentions' agreement with the
   in-process vote, and the exact (device) vote's agreement with the fast one.

Run: python bench/evolve_bench.py   (about 3-5 minutes on 2 cores)
"""

from __future__ import annotations

import os
import statistics
import tempfile

os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="openmind-evolve-bench-"))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.datasets import load_breast_cancer, load_digits, load_wine  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import openmind  # noqa: E402
from openmind.memory.blobs import remove  # noqa: E402

SEEDS = range(5)
Q = dict(progress=False, val_fraction=0.2)


def ms(values: list[float]) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return "never"
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return f"{statistics.mean(vals):6.2f} ± {sd:4.2f}" + ("" if len(vals) == len(values) else f" ({len(vals)}/{len(values)})")


def forget(model) -> None:
    remove(model.info["key"])  # keep memory to the ancestors, so runs do not inherit each other


def epochs_to(model, target: float = 0.95) -> int | None:
    hist = model.info.get("val_history") or []
    return next((i + 1 for i, a in enumerate(hist) if a >= target), None)


def ancestral() -> None:
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    low = y < 5
    openmind.train_or_load("anc-digits-0-4", X[low], y[low], hidden=[64], epochs=30, **Q)
    openmind.train_or_load("anc-wine", *load_wine(return_X_y=True), hidden=[64], epochs=30, **Q)
    openmind.train_or_load("anc-breast-cancer", *load_breast_cancer(return_X_y=True), hidden=[64],
                           epochs=30, **Q)
    Xh, yh = X[~low], y[~low]
    print("\n1. ancestral init vs default init: digits classes 5-9 (ancestors: wine, breast_cancer, "
          "digits 0-4)")
    print(f"{'rows':>6} {'init':>10} {'epochs to 95% val':>20} {'test accuracy %':>18}")
    for rows in (None, 200):
        for init in ("default", "ancestral"):
            eps, accs = [], []
            for seed in SEEDS:
                Xtr, Xte, ytr, yte = train_test_split(Xh, yh, test_size=0.3, random_state=seed, stratify=yh)
                if rows:
                    Xtr, ytr = Xtr[:rows], ytr[:rows]
                m = openmind.train_or_load(f"target-{init}-{rows}-{seed}", Xtr, ytr, hidden=[64],
                                           epochs=40, patience=40, seed=seed, init=init, **Q)
                eps.append(epochs_to(m))
                accs.append(100 * float((m.predict(Xte) == yte).mean()))
                forget(m)
            print(f"{rows or len(Xh) * 7 // 10:>6} {init:>10} {ms(eps):>20} {ms(accs):>18}")


def growth() -> None:
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    print("\n2. growth/extinction vs fixed architectures: digits, 10 classes")
    rows = {"grown from 32": ([], [], []), "fixed 32": ([], [], []), "fixed final width": ([], [], [])}
    for seed in SEEDS:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        g = openmind.train_or_load(f"grown-{seed}", Xtr, ytr, hidden=[32], epochs=60, patience=60,
                                   seed=seed, growth=True, growth_patience=4, **Q)
        final = g.info.get("hidden_final", [32])
        f = openmind.train_or_load(f"fixed-{seed}", Xtr, ytr, hidden=[32], epochs=60, patience=60,
                                   seed=seed, **Q)
        w = openmind.train_or_load(f"final-{seed}", Xtr, ytr, hidden=final, epochs=60, patience=60,
                                   seed=seed, **Q)
        for label, m in (("grown from 32", g), ("fixed 32", f), ("fixed final width", w)):
            rows[label][0].append(100 * float((m.predict(Xte) == yte).mean()))
            rows[label][1].append(m.nbytes)
            rows[label][2].append(m.layers[0].shape[0])
    print(f"{'net':>20} {'test accuracy %':>18} {'packed bytes':>16} {'hidden width':>16}")
    for label, (acc, size, width) in rows.items():
        print(f"{label:>20} {ms(acc):>18} {ms(size):>16} {ms(width):>16}")


def colony() -> None:
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    print("\n3. colony of 5 (seeds + 80% data slices) vs its best single member: digits")
    best, col, abst, sure, kept = [], [], [], [], []
    for rep in SEEDS:
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=rep, stratify=y)
        rng = np.random.default_rng(rep)
        members = []
        for k in range(5):
            idx = rng.choice(len(Xtr), size=int(0.8 * len(Xtr)), replace=False)
            members.append(openmind.train_or_load(f"member-{rep}-{k}", Xtr[idx], ytr[idx], hidden=[32],
                                                  epochs=30, seed=10 * rep + k, **Q))
        c = openmind.colony(members, name=f"colony-{rep}", keep=True)
        v = c.vote(Xte)
        kept.append((c, Xte, v))
        best.append(100 * max(float((m.predict(Xte) == yte).mean()) for m in members))
        col.append(100 * float((v.labels == yte).mean()))
        abst.append(100 * float(v.abstained.mean()))
        sure.append(100 * float((v.labels[~v.abstained] == yte[~v.abstained]).mean()))
    print(f"{'best single %':>16} {'colony %':>16} {'abstained %':>16} {'colony on answered %':>22}")
    print(f"{ms(best):>16} {ms(col):>16} {ms(abst):>16} {ms(sure):>22}")
    served(kept)


def served(kept: list) -> None:
    """The kept colonies through `openmind serve` (a child process on this memory) vs in-process."""
    from openmind.pathways.cloud.oip import OIPClient
    from openmind.serve import ServeProcess

    size, labels, abstained, exact = [], [], [], []
    with ServeProcess() as srv:
        client = OIPClient(srv.url, retries=0)
        for c, Xte, v in kept:
            out = client.infer(c.name, Xte)
            size.append(c.summary()["packed_bytes"])
            labels.append(100 * float((out["label"] == v.labels).mean()))
            abstained.append(100 * float((out["abstained"] == v.abstained).mean()))
            exact.append(100 * float((c.vote(Xte, exact=True).labels == v.labels).mean()))
    print(f"{'colony bytes':>16} {'served = in-process labels %':>30} {'abstained %':>14} {'exact = fast %':>16}")
    print(f"{ms(size):>16} {ms(labels):>30} {ms(abstained):>14} {ms(exact):>16}")


if __name__ == "__main__":
    print(f"muscle memory for this run: {os.environ['OPENMIND_HOME']}")
    ancestral()
    growth()
    colony()
