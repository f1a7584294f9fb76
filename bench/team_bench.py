"""The team tier against its anchors, in one run: a cell that makes 100 MB (a sorted random
array), kept on machine A (which publishes) and looked up on machine B (which trusts A).

  1. re-running the cell (its code, plain Python): what a miss costs
  2. a local hit on A (lookup, verify the signature, restore, replay)
  3. a hit from the team's memory on B with an empty local store: fetch the signed manifest from
     an S3 server on loopback (moto's standalone server), fetch and check the 100 MB blob, keep
     it locally (backfill), restore
  4. the wire alone: boto3 downloading that blob from the same server (what no code of ours can
     go below on this server)

Machines are two OPENMIND_HOMEs and key directories in this process. Each figure is the median of
--repeat runs. Run: .venv/bin/python bench/team_bench.py
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from benchlib import machine  # noqa: E402

CELL = """
rng = np.random.default_rng(2026)
big = np.sort(rng.standard_normal(13_107_200))  # 100 MiB of float64
print("median", float(big[len(big) // 2]))
"""


def moto(port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2):
                return proc
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("moto_server did not answer within 60 s (pip install 'moto[server]')")


def as_machine(root: Path, **env: str) -> None:
    os.environ["OPENMIND_HOME"] = str(root / "home")
    os.environ["OPENMIND_KEY_DIR"] = str(root / "keys")
    os.environ.pop("OPENMIND_REMOTE_WRITE", None)
    os.environ.pop("OPENMIND_TRUST", None)
    os.environ.update(env)


def timed(fn) -> tuple[float, object]:
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto(port)
    try:
        run(port, args.repeat)
    finally:
        server.terminate()
        server.wait(timeout=30)


def run(port: int, repeat: int) -> None:
    import boto3

    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench-secret",
                      AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
                      OPENMIND_REMOTE="s3://openmind-team/bench",
                      OPENMIND_ASSUME="gpu=off,api=off,infer=off,serial=off")
    boto3.client("s3").create_bucket(Bucket="openmind-team")
    import openmind
    from openmind.memory.keys import public_line

    work = Path(tempfile.mkdtemp(prefix="team-bench-"))
    as_machine(work / "a", OPENMIND_REMOTE_WRITE="1")
    keep_s, first = timed(lambda: openmind.run_cell(CELL, {"np": np}))
    assert not first.cached
    trust = work / "trust"
    trust.write_text(public_line() + "\n")

    rerun = [timed(lambda: exec(CELL, {"np": np}))[0] for _ in range(repeat)]  # noqa: S102
    local = []
    for _ in range(repeat):
        seconds, hit = timed(lambda: openmind.run_cell(CELL, {"np": np}))
        assert hit.cached
        local.append(seconds)
    from openmind.memory.blobs import entries
    from openmind.memory.remote import open_remote

    blob = f"blobs/{entries('cell')[0].blob}"
    remote = open_remote(os.environ["OPENMIND_REMOTE"], 30.0)
    wire = [timed(lambda: remote.get(blob))[0] for _ in range(repeat)]
    team = []
    for n in range(repeat):
        as_machine(work / f"b{n}", OPENMIND_TRUST=str(trust))  # an empty store each time
        seconds, hit = timed(lambda: openmind.run_cell(CELL, {"np": np}))
        assert hit.cached and "from the team's memory" in hit.route.reason, hit.route.reason
        team.append(seconds)
    r, lo, tm, w = (statistics.median(x) for x in (rerun, local, team, wire))
    print(f"machine: {machine()}")
    print(f"cell: 100 MiB float64 kept; S3 server: moto on 127.0.0.1:{port}; median of {repeat}")
    print(f"  keep + publish on A (first run)   {keep_s:8.3f} s")
    print(f"  re-run (plain Python)             {r:8.3f} s")
    print(f"  local hit on A                    {lo:8.3f} s")
    print(f"  team hit on B (empty local store) {tm:8.3f} s")
    print(f"  the wire alone (boto3 get, 100 MiB){w:8.3f} s")
    print(f"ratios: re-run / team hit = {r / tm:.2f}x   team hit / local hit = {tm / lo:.2f}x   "
          f"re-run / local hit = {r / lo:.2f}x   team hit / wire = {tm / w:.2f}x")
    print(f"reason on B: {hit.route.reason}")


if __name__ == "__main__":
    main()
