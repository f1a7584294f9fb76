"""Overhead of `%%openmind infer` over calling the same function directly, on the cached path.

Anchor: the direct call, measured in the same run. Goal: the magic adds < 2 ms per cell (policy
scope, journal lookups before/after, rendering and publishing the decision card).

    python bench/magic_bench.py [--n 300]

Uses `openmind.infer_adaptive` on cached predictions when it is installed; otherwise the same
cached-path route through the real executor and journal (`muscle_memory/CACHED`).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300, help="repetitions of each (default 300)")
    args = ap.parse_args()
    os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="openmind-bench-"))

    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    import openmind

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")
    ns = ip.user_ns
    ns["openmind"] = openmind
    if importlib.util.find_spec("openmind.intents.infer") and importlib.util.find_spec("openmind.intents.train"):
        import numpy as np

        rng = np.random.default_rng(0)
        X = rng.normal(size=(200, 16)).astype(np.float32)
        y = (X[:, 0] > 0).astype(int)
        ns["model"] = openmind.train_or_load("bench", X, y)
        ns["X"] = X
        ns["call"] = lambda: openmind.infer_adaptive(ns["model"], ns["X"])
        what = "openmind.infer_adaptive(model, X), cached predictions"
    else:
        from openmind.flow.router import Intent

        cached = {"values": list(range(10))}

        def call():
            plan = openmind.route(Intent.of("infer", name="bench", exact=True))
            return openmind.execute(plan, lambda cand: cached, summarize=lambda r: {"n": 10})

        ns["call"] = call
        what = "execute(route(infer, exact hit)) -> muscle_memory/CACHED (intents not merged yet)"
    ns["call"]()  # warm: caches, probe, journal schema
    first = ns["call"]()
    route = first.route if hasattr(first, "route") else first[1]

    def direct() -> None:
        ns["call"]()

    def magic() -> None:
        ip.run_cell_magic("openmind", "infer", "call()")

    magics = ip._openmind_magics[0]
    times: dict[str, list[float]] = {"direct": [], "magic": [], "inside": []}
    with capture_output() as cap:  # the cards are rendered and published, then dropped here
        for _ in range(20):
            direct()
            magic()
        for i in range(args.n):
            for name, fn in (("direct", direct), ("magic", magic)) if i % 2 else (("magic", magic), ("direct", direct)):
                t0 = time.perf_counter()
                fn()
                times[name].append((time.perf_counter() - t0) * 1000)
                if name == "magic":
                    times["inside"].append(magics.last_timing["overhead_ms"])
            if i % 50 == 0:
                cap.outputs.clear()
    d = statistics.median(times["direct"])
    m = statistics.median(times["magic"])
    print(f"what: {what}")
    print(f"route: {route.pathway.value}/{route.decision.value}")
    print(f"direct call (anchor): median {d:.3f} ms over {args.n}")
    print(f"%%openmind infer:     median {m:.3f} ms over {args.n}")
    inside = statistics.median(times["inside"])
    p90 = statistics.quantiles(times["inside"], n=10)[-1]
    print(f"end to end: magic - direct = {m - d:.3f} ms ({m / d:.2f}x; noisy on a shared machine)")
    print(f"the magic's own time per cell (all but the body): median {inside:.3f} ms, p90 {p90:.3f} ms; "
          f"goal < 2 ms: " + ("met" if inside < 2.0 else "NOT met"))


if __name__ == "__main__":
    main()
