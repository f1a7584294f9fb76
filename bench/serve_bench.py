"""`openmind serve` on loopback vs in-process inference of the same model, and MLServer serving an
sklearn MLP of the same shape, in the same run.

Stores a 64-256-256-10 ternary model in a fresh OPENMIND_HOME, starts `openmind serve` as a
subprocess, and for batch 1 and 256 measures requests/s and p50/p99 latency of one keep-alive
client sending sequential requests: openmind's OIP client with binary tensor data (the default
against a server that lists the extension) and with JSON, against in-process `predict` of the same
rows, and Triton's own client (`tritonclient.http`, binary, default settings) when installed: it
is a second, independent measure of the wire. Then throughput under load, as Triton's perf_analyzer
measures it: CONCURRENCY client processes, each with its own keep-alive connection, send requests
back to back for LOAD_S seconds; and, where wrk is installed (Debian's `wrk`), wrk's C load
generator sends the same request bytes over that many connections. wrk costs the machine little
per request, so on a small machine it shows what the server itself sustains, where Python clients
take the cores the server needs. Each load figure is a ratio to in-process throughput measured just
before and after it, the server and the in-process model both on one BLAS thread; under wrk also
per core: in-process CPU time a call over the server process's CPU time a request, which the
machine's other tenants (and the load generator) do not move. Last, `openmind serve --workers
<cores>` under wrk: every core serving, against one in-process caller (not the one-core comparison
the target is about). Targets: batch 256 binary >= 0.5x the in-process throughput; batch 1 p50 < 1 ms.

MLServer (mlserver + mlserver-sklearn, the `bench` extra; they pin fastapi/starlette older than
other extras, so give them their own virtualenv and pass --mlserver path/to/venv/bin/mlserver)
serves sklearn's MLPClassifier(256, 256) trained on digits; it speaks JSON only.

Run: python bench/serve_bench.py [--mlserver PATH]   (MLSERVER_BIN works too)
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
from benchlib import blas_threads, machine

BATCHES = {1: 400, 256: 80}  # batch size -> requests measured (bounded: ~seconds on 2 cores)
WARMUP = 10
CONCURRENCY = (1, 2, 4)  # client processes (or wrk connections) under load
LOAD_S = 2.0
WRK_ROUNDS = 5


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


def _load_worker(url: str, token: str | None, name: str, rows: np.ndarray, start, out) -> None:
    from openmind.pathways.cloud.oip import OIPClient

    client = OIPClient(url, token=token, retries=0)
    for _ in range(WARMUP):
        client.infer(name, rows)
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < LOAD_S:
        client.infer(name, rows)
        n += 1
    out.put(n * len(rows) / (time.perf_counter() - t0))


def _raw_worker(url: str, body: bytes, headers: dict[str, str], start, out) -> None:
    """A load generator a fresh machine has: the request's bytes built once and sent back to back
    on one keep-alive socket, as wrk does, so the client costs little beside the server."""
    import socket
    from urllib.parse import urlsplit

    u = urlsplit(url)
    head = (f"POST {u.path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nContent-Length: {len(body)}\r\n"
            + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    request = head + body
    sock = socket.create_connection((u.hostname, u.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""

    def answer() -> None:
        nonlocal buf
        while b"\r\n\r\n" not in buf:
            buf += sock.recv(65536)
        top, _, rest = buf.partition(b"\r\n\r\n")
        assert top.startswith(b"HTTP/1.1 200"), top[:80]
        size = int(next(ln.split(b":", 1)[1] for ln in top.split(b"\r\n")
                        if ln.lower().startswith(b"content-length:")))
        while len(rest) < size:
            rest += sock.recv(65536)
        buf = rest[size:]

    for _ in range(WARMUP):
        sock.sendall(request)
        answer()
    start.wait()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < LOAD_S:
        sock.sendall(request)
        answer()
        n += 1
    out.put(n / (time.perf_counter() - t0))
    sock.close()


def raw_load(url: str, body: bytes, headers: dict[str, str], clients: int) -> float:
    """Requests/s that `clients` raw-socket processes get together (Python, no wrk needed)."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_raw_worker, args=(url, body, headers, start, out))
             for _ in range(clients)]
    for p in procs:
        p.start()
    time.sleep(1.0)
    start.set()
    total = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    return total


def in_process_rate(model, rows: np.ndarray, cpu: list[float] | None = None) -> float:
    """Rows/s of in-process `predict` called back to back for LOAD_S seconds (one caller); the
    CPU seconds per call are appended to `cpu` when given."""
    n, t0, c0 = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - t0 < LOAD_S:
        model.predict(rows)
        n += 1
    if cpu is not None:
        cpu.append((time.process_time() - c0) / n)
    return n * len(rows) / (time.perf_counter() - t0)


def around(model, rows: np.ndarray, measure, *args, cpu: list[float] | None = None):
    """(what `measure(*args)` gives, the in-process rows/s measured just before and after it): the
    machine's speed drifts, so each load figure gets its own anchor."""
    before = in_process_rate(model, rows, cpu)
    got = measure(*args)
    return got, (before + in_process_rate(model, rows, cpu)) / 2


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far: what it costs the core it runs on,
    whatever else the machine's other tenants take of the wall clock."""
    import psutil

    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def under_load(url: str, token: str | None, name: str, rows: np.ndarray, clients: int) -> float:
    """Rows/s that `clients` processes, each sending requests back to back, get together."""
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_load_worker, args=(url, token, name, rows, start, out)) for _ in range(clients)]
    for p in procs:
        p.start()
    time.sleep(1.0)  # every client connected and warm
    start.set()
    total = sum(out.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    return total


WRK_SCRIPT = """
local f = io.open(os.getenv("BODY_FILE"), "rb"); wrk.body = f:read("*all"); f:close()
wrk.method = "POST"
for k, v in string.gmatch(os.getenv("HEADERS"), "([^\\n:]+): ([^\\n]+)") do wrk.headers[k] = v end
"""


def request_bytes(rows: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    """One infer request's body and headers, as openmind's client sends them."""
    from openmind.pathways.cloud.tensors import HEADER, encode_many

    listed, raw = encode_many({"input-0": rows}, binary)
    doc: dict = {"inputs": listed}
    if binary:
        doc["parameters"] = {"binary_data_output": True}
    head = json.dumps(doc).encode()
    if not binary:
        return head, {"Content-Type": "application/json"}
    return head + raw, {"Content-Type": "application/octet-stream", HEADER: str(len(head))}


def wrk_load(url: str, body: bytes, headers: dict[str, str], connections: int,
             pid: int | None = None) -> dict[str, float] | None:
    """wrk (one thread, `connections` keep-alive connections, LOAD_S s) posting `body`: requests/s,
    p50 latency, requests answered and, given the server's `pid`, its CPU seconds a request; None
    without wrk. Any non-2xx answer fails the bench."""
    import re

    if not shutil.which("wrk"):
        return None
    used = cpu_seconds(pid) if pid is not None else 0.0
    work = Path(tempfile.mkdtemp(prefix="wrk-"))
    (work / "body").write_bytes(body)
    (work / "post.lua").write_text(WRK_SCRIPT)
    env = dict(os.environ, BODY_FILE=str(work / "body"),
               HEADERS="\n".join(f"{k}: {v}" for k, v in headers.items()))
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{LOAD_S:g}s", "--latency", "-s",
                          str(work / "post.lua"), url], capture_output=True, text=True, env=env, timeout=60).stdout
    shutil.rmtree(work, ignore_errors=True)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    assert not bad, f"wrk got {bad.group(1)} error answers from {url}"
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    p50, unit = re.search(r"50%\s+([\d.]+)(us|ms|s)", out).groups()
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    cpu = (cpu_seconds(pid) - used) / requests if pid is not None else float("nan")
    return {"rps": rps, "p50": float(p50) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit], "cpu": cpu}


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
    # the server and in-process alike: one BLAS thread (numpy is loaded already: the environment
    # alone left the in-process anchor on every core, against a one-thread server)
    blas_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    X = store_model()
    import httpx

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
            print(f"{machine()}; python {sys.version.split()[0]}; BLAS threads: {os.environ['OMP_NUM_THREADS']}")
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
                for clients in CONCURRENCY:
                    got, anchor = around(model, rows, under_load, srv.url, token, "digits", rows, clients)
                    line = (f"{batch:>5} under load, {clients} client(s): openmind serve binary {got:>9.0f} rows/s "
                            f"= {got / anchor:.3f}x in-process ({anchor:.0f} rows/s around it)")
                    if mls:
                        ml = under_load(mls.url, None, "digits-mlp", rows.astype(np.float64), clients)
                        line += f"; MLServer JSON {ml:>9.0f} rows/s (openmind {got / ml:.2f}x)"
                    print(line, flush=True)
                infer_url = f"{srv.url}/v2/models/digits/infer"
                body, headers = request_bytes(rows, binary=True)
                headers["Authorization"] = f"Bearer {token}"
                check = httpx.post(infer_url, content=body, timeout=10, headers=headers)
                assert check.status_code == 200, check.text  # what wrk sends is answered, not refused
                for clients in (1, 2):  # a load generator every machine has: Python, bytes built once
                    got, anchor = around(model, rows, raw_load, infer_url, body, headers, clients)
                    print(f"{batch:>5} raw Python load, {clients} process(es): openmind serve binary "
                          f"{got * batch:>9.0f} rows/s = {got * batch / anchor:.3f}x in-process "
                          f"({anchor:.0f} rows/s around it)", flush=True)
                for clients in CONCURRENCY:
                    ratios, per_core, got = [], [], None
                    for _ in range(WRK_ROUNDS):  # the machine's speed drifts: rounds, median
                        anchor_cpu: list[float] = []
                        got, anchor = around(model, rows, wrk_load, infer_url, body, headers, clients,
                                             srv.proc.pid, cpu=anchor_cpu)
                        if got is None:
                            break
                        ratios.append(got["rps"] * batch / anchor)
                        per_core.append(statistics.mean(anchor_cpu) / got["cpu"])
                    if got is None:
                        print(f"{batch:>5} wrk: not installed (apt-get install wrk)")
                        break
                    line = (f"{batch:>5} wrk, {clients} connection(s): openmind serve binary "
                            f"{got['rps'] * batch:>9.0f} rows/s, p50 {got['p50']:.3f} ms; vs in-process: median "
                            f"{statistics.median(ratios):.3f}x over {len(ratios)} rounds "
                            f"({min(ratios):.3f}-{max(ratios):.3f}); per core (CPU time a call, in-process / "
                            f"the server's a request): median {statistics.median(per_core):.3f}x "
                            f"({min(per_core):.3f}-{max(per_core):.3f})")
                    if mls:
                        mbody, mheaders = request_bytes(rows.astype(np.float64), binary=False)
                        ml = wrk_load(f"{mls.url}/v2/models/digits-mlp/infer", mbody, mheaders, clients)
                        line += (f"; MLServer JSON {ml['rps'] * batch:>9.0f} rows/s, p50 {ml['p50']:.3f} ms "
                                 f"(openmind {got['rps'] / ml['rps']:.2f}x)")
                    print(line, flush=True)
        workers = os.cpu_count() or 1
        if workers > 1 and shutil.which("wrk"):  # every core serving: not the one-core comparison above
            rows = X[:256]
            body, headers = request_bytes(rows, binary=True)
            headers["Authorization"] = f"Bearer {token}"
            with ServeProcess(home=os.environ["OPENMIND_HOME"], token=token, workers=workers) as srv:
                time.sleep(2.0)  # the workers are spawned after the banner
                for clients in (workers, 2 * workers):
                    got, anchor = around(model, rows, wrk_load, f"{srv.url}/v2/models/digits/infer", body,
                                         headers, clients)
                    print(f"  256 wrk, {clients} connection(s), --workers {workers} (all {workers} cores): "
                          f"{got['rps'] * 256:>9.0f} rows/s = {got['rps'] * 256 / anchor:.3f}x one in-process "
                          f"caller on one core", flush=True)
    finally:
        if mls:
            mls.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
