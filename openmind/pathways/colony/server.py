"""The federated server: Flower's gRPC server runs the rounds; `TernaryFedAvg` hands them to
`_Tally`, which picks each round's clients (waiting for those still there as long as rounds have
taken), sends the global model (then its coded change), checks each client's update (a bad one is
dropped with its reason, never aborting the round), averages the rest weighted by their rows,
capped (FedAvg; a client that trained only the last layers, a device, counts in those layers'
average only), evaluates the starting model and the global model after each round on the
server's rows and keeps the best round. Plain gRPC on loopback only; Flower's TLS otherwise. The
codec, the model's spec and the client are `federated.py`'s.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.pathways.colony.federated import (
    TENSOR_TYPE,
    Spec,
    decode_update,
    encode_update,
    flower,
    fp32_bytes,
    get_weights,
    model_of,
)


@dataclass
class Colony:
    """The outcome of a federated run."""

    weights: list[np.ndarray]          # the global weights of the best round
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    best_round: int = 0                # by accuracy on the server's rows (like early stopping)
    degraded: str | None = None        # lost clients, dropped updates (None: all answered)
    start_accuracy: float | None = None  # the starting global model's, on the same rows


@dataclass
class Rounds:
    """How a federated run goes: `clients` clients for `rounds` rounds on a server at `listen`.

    `local`: slices to give to client processes started here (on 127.0.0.1); None: wait up to
    `join_timeout` seconds for clients on other machines. `on_round` gets each round's row.
    """

    clients: int
    rounds: int
    listen: str
    local: list[tuple[np.ndarray, np.ndarray]] | None = None
    on_round: Callable[[dict[str, Any]], None] | None = None
    join_timeout: float = 120.0
    round_timeout: float = 600.0
    certificates: tuple[bytes, bytes, bytes] | None = None  # (CA, server cert, key), PEM: TLS
    insecure: bool = False  # plain gRPC beyond loopback, because the caller said so


# A client's claimed rows above this are absurd: its update is dropped.
MAX_CLIENT_ROWS = 10**9
# No client weighs more in the average than this many times the median client's rows.
ROW_CAP = 4.0
# After round 1, a round waits for the clients still there at most this many times the slowest
# round so far (at least ROUND_WAIT_MIN_S), and for their updates twice that (ROUND_FIT_MIN_S).
ROUND_WAIT_FACTOR = 3.0
ROUND_WAIT_MIN_S = 5.0
ROUND_FIT_MIN_S = 30.0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (for a local colony's server)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_update(res: Any, weights: list[np.ndarray]) -> tuple[int, int, list[np.ndarray]]:
    """(client number, rows, decoded update) of one client's FitRes, checked against the model
    (a hostile or broken member's update raises BadInput saying why it is dropped)."""
    if res.parameters.tensor_type != TENSOR_TYPE:
        raise BadInput(f"sent {str(res.parameters.tensor_type)[:40]!r} parameters, not ternary updates")
    cid = res.metrics.get("cid", 0)
    if isinstance(cid, bool) or not isinstance(cid, int) or cid < 0:
        raise BadInput(f"client number {str(cid)[:40]!r} is not one (a whole number >= 0)")
    rows = res.num_examples
    if isinstance(rows, bool) or not isinstance(rows, int) or not 1 <= rows <= MAX_CLIENT_ROWS:
        raise BadInput(f"claimed {str(rows)[:40]} rows: a client trains on 1 to "
                       f"{MAX_CLIENT_ROWS:.0e} rows")
    return cid, rows, decode_update(list(res.parameters.tensors), weights)


def shares(rows: list[int]) -> np.ndarray:
    """FedAvg's weights by rows, each client's rows capped at ROW_CAP times the median client's,
    so no one claim can take over the average."""
    r = np.asarray(rows, dtype=np.float64)
    w = np.minimum(r, ROW_CAP * float(np.median(r)))
    return w / w.sum()


def _who(proxy: Any, res: Any = None) -> str:
    cid = getattr(res, "metrics", {}).get("cid") if res is not None else None
    return f"client {str(cid)[:20]}" if isinstance(cid, int) and not isinstance(cid, bool) \
        else f"peer {str(getattr(proxy, 'cid', '?'))[:40]}"


class _Tally:
    """The global weights across rounds: what each client is sent (the first time the weights,
    then the model's change ternary-coded), each round's checked updates averaged, the model
    evaluated on the server's rows, the best round kept, each round reported."""

    def __init__(self, spec: Spec, X_eval: np.ndarray, y_eval_idx: np.ndarray, run: Rounds) -> None:
        self.spec, self.X_eval, self.y_eval_idx, self.run = spec, X_eval, y_eval_idx, run
        self.weights = get_weights(spec.net())
        self.fp32 = fp32_bytes(self.weights)
        self.colony = Colony(self.weights)
        self.pending: dict[str, Any] | None = None
        self.best: tuple[float, int, list[np.ndarray] | None] = (-1.0, 0, None)
        self.t0 = self.last = time.perf_counter()
        self.sent: list[np.ndarray] | None = None   # the global model the clients hold
        self.holders: set[str] = set()              # the peers holding `sent`
        self.present = run.clients                  # clients still there (answered last round)
        self.longest = 0.0                          # the slowest round so far, seconds
        self.down: dict[str, Any] = {}

    def deadline(self, server_round: int, fit: bool = False) -> float:
        """How long round `server_round` waits for clients (or, `fit`, for their updates): the
        run's limits in round 1, then a multiple of the slowest round seen."""
        if server_round <= 1 or not self.longest:
            return self.run.round_timeout if fit else self.run.join_timeout
        if fit:
            return min(self.run.round_timeout, max(ROUND_FIT_MIN_S, ROUND_WAIT_FACTOR * 2 * self.longest))
        return min(self.run.join_timeout, max(ROUND_WAIT_MIN_S, ROUND_WAIT_FACTOR * self.longest))

    def instructions(self, server_round: int, manager: Any) -> list:
        """(client, FitIns) for the clients there: those holding last round's model (and saying
        they take it coded) get its change ternary-coded, the others the whole model (fp32);
        bytes counted both ways."""
        from flwr.common import FitIns, Parameters, ndarrays_to_parameters

        expected = self.present
        manager.wait_for(expected, timeout=int(math.ceil(self.deadline(server_round))))
        proxies = sorted(manager.all().values(), key=lambda p: str(p.cid))
        base = server_round - 1
        if self.sent is None:
            self.sent, coded = [np.asarray(w, np.float32).copy() for w in self.weights], None
        else:
            coded, _left = encode_update([w - s for w, s in zip(self.weights, self.sent, strict=True)])
            self.sent = [s + d for s, d in zip(self.sent, decode_update(coded, self.weights), strict=True)]
        full = ndarrays_to_parameters(self.sent)
        config = {"round": server_round, "spec": self.spec.to_json(), "base": base}
        out, down = [], 0
        for proxy in proxies:
            params = Parameters(tensors=coded, tensor_type=TENSOR_TYPE) \
                if coded is not None and proxy.cid in self.holders else full
            down += sum(len(t) for t in params.tensors)
            out.append((proxy, FitIns(params, config)))
        self.down = {"expected": expected, "bytes_down": int(down),
                     "fp32_down": int(self.fp32 * len(proxies))}
        return out

    def aggregate(self, server_round: int, results: list, failures: list | int) -> bool:
        """Apply the capped row-weighted average of the clients' checked updates; a bad update
        is dropped with its reason, a lost client noted. False when no update was accepted."""
        failed = failures if isinstance(failures, list) else []
        dropped, accepted = [], []
        for proxy, res in results:
            try:
                cid, rows, delta = check_update(res, self.weights)
            except Exception as exc:  # noqa: BLE001 - a hostile member is dropped, never fatal
                dropped.append({"client": _who(proxy, res), "reason": str(exc)[:300]})
                continue
            accepted.append((cid, str(proxy.cid), rows, delta, res.metrics))
        up = sum(sum(len(t) for t in res.parameters.tensors if isinstance(t, bytes)) for _p, res in results)
        # a client that says it takes the coded change (metrics "down") gets it next round; any
        # other (an older client, a device client) the whole model, as plain Flower sends it
        self.holders = {str(p.cid) for p, r in results if r.metrics.get("down") == TENSOR_TYPE}
        expected = self.down.get("expected", self.run.clients)
        self.present = max(1, len(results))
        row = {"round": server_round, "clients": len(accepted), "expected": expected,
               "failures": len(failed) if isinstance(failures, list) else int(failures),
               "lost": max(0, expected - len(results)), "dropped": dropped,
               "failed": [_failure(f) for f in failed][:5], "bytes_sent": int(up),
               "fp32_bytes": int(self.fp32 * len(results)),
               "bytes_down": self.down.get("bytes_down", 0), "fp32_down": self.down.get("fp32_down", 0)}
        row["bytes_received"] = row["bytes_down"]
        from openmind.pathways.colony.devclient import device_reports  # devices' own reports

        row["devices"] = [d for _p, r in results if (d := device_reports(r.metrics)) is not None]
        self.pending = row
        if not accepted:
            row["rows"] = 0
            return False
        # in client order, not arrival order: the same colony gives the same model
        accepted.sort(key=lambda a: (a[0], a[1]))
        layers = len(self.weights) // 2
        avg = [np.zeros_like(w) for w in self.weights]
        for i in range(layers):  # a client counts in the layers it trained (not those it froze)
            part = [a for a in accepted if _frozen(a[4], layers) <= i]
            if not part:
                continue
            for w, a in zip(shares([a[2] for a in part]), part, strict=True):
                avg[2 * i] += w * a[3][2 * i]
                avg[2 * i + 1] += w * a[3][2 * i + 1]
        self.weights = [w + d for w, d in zip(self.weights, avg, strict=True)]
        row["rows"] = int(sum(a[2] for a in accepted))
        return True

    def evaluate_start(self) -> None:
        """The accuracy of the model every client starts from, on the server's rows."""
        if len(self.X_eval):
            start = model_of(self.spec, self.weights, name=None, info={})
            self.colony.start_accuracy = float(np.mean(start.predict_index(self.X_eval) == self.y_eval_idx))

    def evaluate(self, server_round: int) -> float | None:
        """The round's accuracy on the server's rows, reported with the round's figures."""
        model = model_of(self.spec, self.weights, name=None, info={})
        X, y = self.X_eval, self.y_eval_idx
        acc = float(np.mean(model.predict_index(X) == y)) if len(X) else None
        now = time.perf_counter()
        row = {**(self.pending or {}), "rounds": self.run.rounds, "accuracy": acc,
               "seconds": round(now - self.last, 3), "elapsed": round(now - self.t0, 3)}
        self.longest = max(self.longest, now - self.last)
        self.last = now
        self.pending = None
        self.colony.rounds.append(row)
        if acc is not None and acc >= self.best[0]:
            self.best = (acc, server_round, self.weights)
        if self.run.on_round is not None:
            self.run.on_round(row)
        return acc

    def outcome(self) -> Colony:
        """The colony: the best round's weights (the last ones when no round was evaluated), and
        what it lacks (lost clients, dropped updates, rounds that never ran) as `degraded`."""
        colony = self.colony
        _acc, colony.best_round, best = self.best
        colony.weights = best if best is not None else self.weights
        colony.seconds = time.perf_counter() - self.t0
        if not any(r.get("clients") for r in colony.rounds):
            raise PathwayUnavailable(f"no federated round completed ({len(colony.rounds)} of "
                                     f"{self.run.rounds} rounds had no client result)")
        colony.degraded = shortfall(colony.rounds, self.run.rounds)
        return colony


def _failure(f: Any) -> str:
    if isinstance(f, BaseException):
        return f"{type(f).__name__}: {str(f)[:200]}"
    proxy, res = f
    return f"{_who(proxy, res)}: {str(getattr(getattr(res, 'status', None), 'message', res))[:200]}"


def _frozen(metrics: dict[str, Any], layers: int) -> int:
    """How many leading layers a client kept frozen (metrics "frozen": a device that trained only
    the last layers); it counts in the average of the layers it trained only, so a device does
    not dilute the feature layers. Every client trains the last layer."""
    f = metrics.get("frozen", 0)
    return min(f, layers - 1) if isinstance(f, int) and not isinstance(f, bool) and f > 0 else 0


def shortfall(rows: list[dict[str, Any]], rounds: int) -> str | None:
    """What a colony's result lacks, in words (None: every member answered every round)."""
    parts = []
    lost = [(r["round"], r["lost"], r.get("expected")) for r in rows if r.get("lost")]
    if lost:
        parts.append("lost clients: " + ", ".join(f"round {n} lost {k} of {e}" for n, k, e in lost))
    dropped = [(r["round"], d) for r in rows for d in r.get("dropped") or []]
    if dropped:
        parts.append(f"{len(dropped)} update(s) dropped: " + "; ".join(
            f"round {n} {d['client']}: {d['reason']}" for n, d in dropped[:3]))
    if len(rows) < rounds:
        parts.append(f"{len(rows)} of {rounds} rounds ran")
    return "; ".join(parts) or None


def _strategy(fl: Any, tally: _Tally) -> Any:
    """Flower's FedAvg whose rounds go to `tally`: it picks the clients and what each is sent,
    and averages what they send back. Neither ever raises into Flower's loop: a round that
    fails is a round with no result."""
    from flwr.common import Parameters

    class TernaryFedAvg(fl.server.strategy.FedAvg):
        def configure_fit(self, server_round: int, parameters: Any, client_manager: Any) -> list:
            try:
                return tally.instructions(server_round, client_manager)
            except Exception as exc:  # noqa: BLE001 - the round is lost, the run goes on
                tally.pending = {"round": server_round, "clients": 0, "error": str(exc)[:300]}
                return []

        def aggregate_fit(self, server_round: int, results: list, failures: list) -> Any:
            try:
                ok = tally.aggregate(server_round, results, failures)
            except Exception as exc:  # noqa: BLE001
                tally.pending = {"round": server_round, "clients": 0, "error": str(exc)[:300]}
                ok = False
            return (Parameters(tensors=[], tensor_type="openmind.tally"), {}) if ok else (None, {})

    def evaluate(server_round: int, weights: list[np.ndarray], config: dict) -> Any:
        if server_round == 0:  # the model every client starts from
            tally.evaluate_start()
            return None
        if tally.pending is None:
            return None
        return 0.0, {"accuracy": tally.evaluate(server_round) or 0.0}

    clients = tally.run.clients
    return TernaryFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients, min_evaluate_clients=0,
        min_available_clients=clients, evaluate_fn=evaluate,
        initial_parameters=Parameters(tensors=[], tensor_type="openmind.tally"))


def serve(spec: Spec, X_eval: np.ndarray, y_eval_idx: np.ndarray, run: Rounds) -> Colony:
    """Run the federated rounds `run` describes on a Flower server; the best round's colony.

    Raises PathwayUnavailable when too few clients join or no round completes.
    """
    fl = flower()
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    check_listen(run.listen, run.certificates, run.insecure)
    tally = _Tally(spec, X_eval, y_eval_idx, run)
    manager = _bounded_manager(SimpleClientManager, run.join_timeout)

    class Paced(fl.server.Server):  # a round waits for updates as long as rounds have taken
        def fit_round(self, server_round: int, timeout: float | None) -> Any:
            return super().fit_round(server_round, tally.deadline(server_round, fit=True))

    server = Paced(client_manager=manager, strategy=_strategy(fl, tally))
    procs: list[Any] = []
    grpc_server = start_grpc_server(client_manager=manager, server_address=run.listen,
                                    certificates=run.certificates)
    try:
        with tempfile.TemporaryDirectory(prefix="openmind-colony-") as tmp:
            if run.local:
                procs = _start_clients(run.local, run.listen, Path(tmp))
            _wait_clients(manager, run.clients, run.join_timeout, procs, Path(tmp), run.listen)
            tally.last = time.perf_counter()  # a round's seconds start once the clients are in
            server.fit(num_rounds=run.rounds, timeout=run.round_timeout)
            server.disconnect_all_clients(timeout=run.round_timeout)
            for p in procs:
                with contextlib.suppress(Exception):
                    p.wait(timeout=10)
            _stop_all(procs)
    finally:
        grpc_server.stop(grace=1)
        _stop_all(procs)
    return tally.outcome()


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def check_listen(listen: str, certificates: Any, insecure: bool = False) -> None:
    """Plain gRPC only on loopback: any other address needs Flower's TLS certificates
    (CA, server certificate, server key), or `insecure` (the caller means it), or BadInput."""
    host = listen.rpartition(":")[0] if ":" in listen else listen
    if host in LOOPBACK or host.startswith("127."):
        return
    if certificates is None and insecure:
        return
    if certificates is None:
        raise BadInput(f"listening on {listen} serves every machine that can reach it: give TLS "
                       f"certificates (CA, server certificate, server key; Flower's own option), "
                       f"listen on 127.0.0.1, or say insecure=True on a trusted network")
    if len(certificates) != 3 or not all(isinstance(c, bytes) and c for c in certificates):
        raise BadInput("certificates are three PEM byte strings: CA, server certificate, server key")


def _bounded_manager(base: type, timeout: float) -> Any:
    """Flower's SimpleClientManager, but a wait for clients lasts `timeout` seconds, not a day,
    so a client that died ends its rounds quickly instead of hanging the run."""
    limit = max(1, int(timeout))

    class Bounded(base):  # type: ignore[misc, valid-type]
        def wait_for(self, num_clients: int, timeout: int = 86400) -> bool:
            return super().wait_for(num_clients, timeout=min(timeout, limit))

    return Bounded()


def _start_clients(local: list[tuple[np.ndarray, np.ndarray]], listen: str, folder: Path) -> list:
    """One Python process per slice, started with `python -c` on `_client_process`: no fork
    (gRPC does not survive it) and no re-import of the caller's `__main__` (spawn would run a
    script without a main guard again)."""
    import subprocess
    import sys

    host, _, port = listen.rpartition(":")
    address = f"{'127.0.0.1' if host in ('', '0.0.0.0', '[::]') else host}:{port}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = []
    for cid, (X, y) in enumerate(local):
        path = folder / f"client-{cid}.npz"
        np.savez(path, X=X, y=y)
        code = ("from openmind.pathways.colony.federated import _client_process; "
                f"_client_process({address!r}, {str(path)!r}, {cid})")
        log = open(folder / f"client-{cid}.log", "wb")  # noqa: SIM115 (closed with the folder)
        procs.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    return procs


def _wait_clients(manager: Any, clients: int, timeout: float, procs: list, folder: Path,
                  listen: str) -> None:
    """Wait until `clients` clients joined; a local client that exits ends the wait at once."""
    deadline = time.perf_counter() + timeout
    while not manager.wait_for(clients, timeout=1):
        dead = [(i, p.poll()) for i, p in enumerate(procs) if p.poll() is not None]
        if dead or time.perf_counter() > deadline:
            detail = ""
            if dead:
                i, code = dead[0]
                tail = (folder / f"client-{i}.log").read_text(errors="replace").strip()[-600:]
                detail = f"; client {i} exited with code {code}: {tail}"
            raise PathwayUnavailable(
                f"only {manager.num_available()} of {clients} clients joined the colony at "
                f"{listen} within {timeout:.0f}s{detail}"
                + ("" if procs else f"; start them with: openmind colony join {listen} --data FILE"))


def _stop_all(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except Exception:
            p.kill()
            p.wait(timeout=5)
