"""What `openmind.ingest` costs over the plain read it wraps, for a CSV served by a real HTTP server
on 127.0.0.1, measured in the same run: the anchor is httpx GET + pandas.read_csv of the same bytes.

Prints seconds per call and the ratio to the anchor for: a fetch whose content changed (download,
parse, keep the copy), an unchanged source (a conditional request answered 304: nothing
downloaded, the copy read from memory and parsed), and the source down (the last good copy).
Usage: python bench/ingest_bench.py [--mb MEGABYTES] (of CSV, default 20)
"""

from __future__ import annotations

import io
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))


def main(megabytes: float = 20.0) -> None:
    os.environ.setdefault("OPENMIND_HOME", tempfile.mkdtemp(prefix="openmind-bench-"))
    import httpx
    import numpy as np
    import pandas as pd
    from benchlib import machine
    from origin import Origin, start, stop

    import openmind

    rng = np.random.default_rng(0)
    rows = int(megabytes * 1e6 / 60)
    frame = pd.DataFrame(rng.normal(size=(rows, 5)), columns=list("abcde"))
    body = frame.to_csv(index=False, float_format="%.6f").encode()
    origin = Origin(body=body)
    server = start(origin)
    url = origin.url + "/big.csv"

    def anchor():
        return pd.read_csv(io.BytesIO(httpx.get(url, timeout=60).content))

    version = [0]

    def changed():  # every call a new version: download, parse, keep
        version[0] += 1
        origin.set(body + f"{version[0]},0,0,0,0\n".encode())
        return openmind.ingest(url, name="big")

    def unchanged():
        return openmind.ingest(url, name="big")

    def best(fn, n=5) -> float:
        times = []
        for _ in range(n):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return min(times)

    print(f"ingest bench: {len(body) / 1e6:.1f} MB CSV, {rows} rows; {machine()}")
    base = best(anchor)
    figures = {"changed (download, parse, keep)": best(changed),
               "unchanged (304, copy from memory)": best(unchanged)}
    sent = origin.bodies_sent
    unchanged()
    assert origin.bodies_sent == sent, "a 304 must download nothing"
    stop(server)
    figures["source down (last good copy)"] = best(lambda: openmind.ingest(url, name="big",
                                                                            timeout=5))
    print(f"  {'anchor: httpx GET + pandas.read_csv':<40} {base * 1000:8.1f} ms  1.00x")
    for name, secs in figures.items():
        print(f"  {name:<40} {secs * 1000:8.1f} ms  {secs / base:.2f}x")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=20.0, help="megabytes of CSV (default 20)")
    main(parser.parse_args().mb)
