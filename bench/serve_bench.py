"""`openmind serve` on loopback vs in-process inference of the same model, and MLServer serving an
sklearn MLP of the same shape, in the same run.

Stores a 64-256-256-10 ternary model in a fresh OPENMIND_HOME, starts `openmind serve` as a
subprocess, and for batch 1 and 256 measures requests/s and p50/p99 latency of one keep-alive
client sending sequential requests: openmind's OIP client with binary tensor data (the default
against a server that lists the extension) and with JSON, against in-process `predict` of the same
rows, and Triton's own client (`tritonclient.http`, binary, default settings) when installed: it
shows the server without the cost of openmind's httpx client. Targets: batch 256 binary >= 0.5x
the in-process throughput; batch 1 p50 < 1 ms.

MLServer (mlserver + mlserver-sklearn, the `bench` extra; they pin fastapi/starlette older than
other extras, so give them their own virtualenv and pass --mlserver path/to/venv/bin/mlserver)
serves sklearn's MLPClassifier(256, 256) trained on digits; it speaks JSON only.

Run: python bench/serve_bench.py [--mlserver PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from benchlib import machine

BATCHES = {1: 400, 256: 80}  # batch size -> requests measured (bounded: ~seconds on 2 cores)
WARMUP = 10


def store_model():
    """A digits-shaped ternary model in muscle memory, as training stores it."""
    from host_predict_bench import ternary_model
    from sklearn.datasets import load_digits

    from openmind.memory.blobs import put

    X, _ = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    model = ternary_model((64, 256, 256, 10), np.random.default_rng(0), X.mean(0).astype(np.float32),
                          (1 / (X.std(0) + 1)).astype(np.float32))
    model.name = "digits"
    arrays, meta = model.to_arrays()
    put("model", "digits", "bench-digits", arrays, meta)
    return X


def timed(fn, n: int) -> list[float]:
    for _ in range(WARMUP):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def stats(samples: list[float], batch: int) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples)
    p99 = ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))]
    total = sum(samples)
    return {"rps": len(samples) / total, "rows_s": len(samples) * batch / total,
            "p50": statistics.median(ms), "p99": p99}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MLSERVER_TRAIN = """
import joblib, sys
from sklearn.datasets import load_digits
from sklearn.neural_network import MLPClassifier
X, y = load_digits(return_X_y=True)
m = MLPClassifier(hidden_layer_sizes=(256, 256), max_iter=30, random_state=0).fit(X, y)
joblib.dump(m, sys.argv[1])
"""


class MLServer:
    """MLServer serving an sklearn MLP of the same shape (64-256-256-10), or why it could not."""

    def __init__(self, binary: str) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mlserver-bench-"))
        python = str(Path(binary).with_name("python"))
        model_dir = self.dir / "digits-mlp"
        model_dir.mkdir()
        subprocess.run([python, "-c", MLSERVER_TRAIN, str(model_dir / "model.joblib")], check=True,
                       capture_output=True, timeout=300)
        (model_dir / "model-settings.json").write_text(json.dumps({
            "name": "digits-mlp", "implementation": "mlserver_sklearn.SKLearnModel",
            "parameters": {"uri": "./model.joblib", "version": "v1"}}))
        self.port = free_port()
        (self.dir / "settings.json").write_text(json.dumps({
            "http_port": self.port, "grpc_port": free_port(), "metrics_port": free_port(),
            "host": "127.0.0.1", "parallel_workers": 0, "debug": False}))
        self.log = open(self.dir / "log.txt", "wb")
        self.proc = subprocess.Popen([binary, "start", str(self.dir)], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=self.dir)
        self.url = f"http://127.0.0.1:{self.port}"
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlserver exited: {(self.dir / 'log.txt').read_text()[-800:]}")
            try:
                if httpx.get(f"{self.url}/v2/models/digits-mlp/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.close()
        raise RuntimeError("mlserver did not get ready within 120 s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def triton_call(url: str, token: str, rows: np.ndarray):
    """A no-argument call of `tritonclient.http` (binary, default settings) answering the labels,
    or None when tritonclient is not installed (it is in the dev extra)."""
    try:
        import tritonclient.http as th
    except ImportError:
        return None
    client = th.InferenceServerClient(url.split("//", 1)[1])
    data = np.ascontiguousarray(rows, dtype=np.float32)
    inp = th.InferInput("input-0", list(data.shape), "FP32")
    inp.set_data_from_numpy(data)
    outs = [th.InferRequestedOutput("label"), th.InferRequestedOutput("probabilities")]
    headers = {"Authorization": f"Bearer {token}"}
    return lambda: client.infer("digits", [inp], outputs=outs, headers=headers).as_numpy("label")


def find_mlserver(given: str | None) -> str | None:
    for cand in (given, os.environ.get("MLSERVER_BIN"), str(Path(sys.executable).with_name("mlserver")),
                 shutil.which("mlserver")):
        if cand and Path(cand).exists():
            return cand
    return None


def row(batch: int, name: str, r: dict[str, float]) -> None:
    print(f"{batch:>5} {name:<18} {r['rps']:>9.1f} {r['rows_s']:>11.0f} {r['p50']:>8.3f} {r['p99']:>8.3f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mlserver", help="the mlserver executable (its own venv: pip install '.[bench]')")
    args = ap.parse_args()
    os.environ["OPENMIND_HOME"] = tempfile.mkdtemp(prefix="omh-serve-bench-")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the server and in-process alike: one BLAS thread
    os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    X = store_model()
    from openmind.intents.infer import load_local_model
    from openmind.pathways.cloud.oip import OIPClient
    from openmind.serve import ServeProcess

    model = load_local_model("digits")
    mls_bin = find_mlserver(args.mlserver)
    mls, mls_why = None, "not installed (pip install '.[bench]' in its own venv, then --mlserver PATH)"
    if mls_bin:
        try:
            mls = MLServer(mls_bin)
            mls_why = ""
        except Exception as exc:  # noqa: BLE001 - the comparison is optional; say why it is missing
            mls_why = f"could not start: {exc}"
    token = "bench-token"
    try:
        with ServeProcess(home=os.environ["OPENMIND_HOME"], token=token) as srv:
            client = OIPClient(srv.url, token=token, retries=0)
            print(f"{machine()}; python {sys.version.split()[0]}")
            print(f"openmind serve at {srv.url} (binary tensor data: {client.binary_supported()}); "
                  f"MLServer: {mls.url if mls else mls_why}")
            print(f"{'batch':>5} {'path':<18} {'req/s':>9} {'rows/s':>11} {'p50 ms':>8} {'p99 ms':>8}")
            for batch, n in BATCHES.items():
                rows = X[:batch]
                served = client.infer("digits", rows)["label"]
                assert np.array_equal(served, model.predict(rows)[0]), "served != local predictions"
                res = {
                    "in-process": stats(timed(lambda rows=rows: model.predict(rows), n), batch),
                    "serve binary": stats(timed(lambda rows=rows: client.infer("digits", rows), n), batch),
                    "serve JSON": stats(timed(lambda rows=rows: client.infer("digits", rows, binary=False), n), batch),
                }
                triton = triton_call(srv.url, token, rows)
                if triton is not None:  # Triton's own client (binary): the server without httpx's cost
                    assert np.array_equal(triton(), served), "tritonclient != openmind client"
                    res["serve tritonclient"] = stats(timed(triton, n), batch)
                if mls:
                    mc = OIPClient(mls.url, retries=0)
                    rows64 = rows.astype(np.float64)
                    mc.infer("digits-mlp", rows64)
                    res["MLServer JSON"] = stats(timed(lambda r=rows64, mc=mc: mc.infer("digits-mlp", r), n), batch)
                for name, r in res.items():
                    row(batch, name, r)
                base, base50 = res["in-process"]["rps"], res["in-process"]["p50"]
                ratios = ", ".join(f"{k} {v['rps'] / base:.3f}x" for k, v in res.items() if k != "in-process")
                print(f"{batch:>5} throughput vs in-process (mean over requests): {ratios}")
                ratios = ", ".join(f"{k} {base50 / v['p50']:.3f}x" for k, v in res.items() if k != "in-process")
                print(f"{batch:>5} throughput vs in-process (from p50 latency, stalls left out): {ratios}")
                if mls:
                    print(f"{batch:>5} openmind serve binary vs MLServer: "
                          f"{res['serve binary']['rps'] / res['MLServer JSON']['rps']:.2f}x throughput")
    finally:
        if mls:
            mls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
