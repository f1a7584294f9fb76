"""The federated server: Flower's gRPC server runs the rounds, `TernaryFedAvg` decodes each
client's ternary-coded update and averages them weighted by rows (FedAvg; a client that trained
only the last layers, a device, counts in those layers' average only), `_Tally` evaluates the
starting model and the global model after each round on the server's rows and keeps the best round. The codec, the
model's spec and the client are `federated.py`'s.
"""

from __future__ import annotations

import contextlib
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
    decode_layer,
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


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on `host` right now (for a local colony's server)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class _Tally:
    """The global weights across rounds: each round's averaged update applied, the model
    evaluated on the server's rows, the best round kept, each round reported."""

    def __init__(self, spec: Spec, X_eval: np.ndarray, y_eval_idx: np.ndarray, run: Rounds) -> None:
        self.spec, self.X_eval, self.y_eval_idx, self.run = spec, X_eval, y_eval_idx, run
        self.weights = get_weights(spec.net())
        self.fp32 = fp32_bytes(self.weights)
        self.colony = Colony(self.weights)
        self.pending: dict[str, Any] | None = None
        self.best: tuple[float, int, list[np.ndarray] | None] = (-1.0, 0, None)
        self.t0 = self.last = time.perf_counter()

    def aggregate(self, server_round: int, results: list, failures: int) -> bool:
        """Apply the row-weighted average of the clients' decoded updates; False when no client
        sent one."""
        if not results:
            self.pending = {"round": server_round, "clients": 0, "failures": failures}
            return False
        # in client order, not arrival order: the same colony gives the same model
        results = sorted(results, key=lambda pr: int(pr[1].metrics.get("cid", 0)))
        total = sum(r.num_examples for _, r in results)
        kept, totals = _layer_counts(results, len(self.weights) // 2)
        avg = [np.zeros_like(w) for w in self.weights]
        sent = 0
        for (_proxy, res), frozen in zip(results, kept, strict=True):
            if res.parameters.tensor_type != TENSOR_TYPE:
                raise BadInput(f"a client sent {res.parameters.tensor_type!r} parameters, "
                               f"not ternary updates")
            for i, buf in enumerate(res.parameters.tensors):
                dw, db = decode_layer(buf, self.weights[2 * i].shape)
                share = res.num_examples / totals[i] if i >= frozen else 0.0
                avg[2 * i] += share * dw
                avg[2 * i + 1] += share * db
                sent += len(buf)
        self.weights = [w + d for w, d in zip(self.weights, avg, strict=True)]
        from openmind.pathways.colony.devclient import device_reports  # devices' own reports

        devices = [d for _p, r in results if (d := device_reports(r.metrics)) is not None]
        self.pending = {"round": server_round, "clients": len(results), "devices": devices,
                        "failures": failures, "rows": int(total), "bytes_sent": int(sent),
                        "fp32_bytes": int(self.fp32 * len(results)),
                        "bytes_received": int(self.fp32 * len(results))}
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
        self.last = now
        self.pending = None
        self.colony.rounds.append(row)
        if acc is not None and acc >= self.best[0]:
            self.best = (acc, server_round, self.weights)
        if self.run.on_round is not None:
            self.run.on_round(row)
        return acc

    def outcome(self) -> Colony:
        """The colony: the best round's weights (the last ones when no round was evaluated)."""
        colony = self.colony
        _acc, colony.best_round, best = self.best
        colony.weights = best if best is not None else self.weights
        colony.seconds = time.perf_counter() - self.t0
        if not any(r.get("clients") for r in colony.rounds):
            raise PathwayUnavailable(f"no federated round completed ({len(colony.rounds)} of "
                                     f"{self.run.rounds} rounds had no client result)")
        return colony


def _layer_counts(results: list, n_layers: int) -> tuple[list[int], list[int]]:
    """Per client, how many leading layers it kept frozen (metrics "frozen": a device that
    trained only the last layers), and per layer the rows of the clients that trained it: a
    client counts in the average of the layers it trained only, so a device does not dilute the
    feature layers."""
    kept = [min(f if isinstance(f := r.metrics.get("frozen", 0), int) and f > 0 else 0, n_layers - 1)
            for _, r in results]
    totals = [sum(r.num_examples for (_, r), f in zip(results, kept, strict=True) if f <= i)
              for i in range(n_layers)]
    return kept, totals


def _strategy(fl: Any, tally: _Tally) -> Any:
    """Flower's FedAvg with ternary updates decoded and averaged by `tally`."""
    from flwr.common import ndarrays_to_parameters

    class TernaryFedAvg(fl.server.strategy.FedAvg):
        def aggregate_fit(self, server_round: int, results: list, failures: list) -> Any:
            if not tally.aggregate(server_round, results, len(failures)):
                return None, {}
            return ndarrays_to_parameters(tally.weights), {}

    def evaluate(server_round: int, weights: list[np.ndarray], config: dict) -> Any:
        if server_round == 0:  # the model every client starts from
            tally.evaluate_start()
            return None
        if tally.pending is None:
            return None
        return 0.0, {"accuracy": tally.evaluate(server_round) or 0.0}

    spec_json, clients = tally.spec.to_json(), tally.run.clients
    return TernaryFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients, min_evaluate_clients=0,
        min_available_clients=clients, evaluate_fn=evaluate,
        initial_parameters=ndarrays_to_parameters(tally.weights),
        on_fit_config_fn=lambda rnd: {"round": rnd, "spec": spec_json})


def serve(spec: Spec, X_eval: np.ndarray, y_eval_idx: np.ndarray, run: Rounds) -> Colony:
    """Run the federated rounds `run` describes on a Flower server; the best round's colony.

    Raises PathwayUnavailable when too few clients join or no round completes.
    """
    fl = flower()
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    tally = _Tally(spec, X_eval, y_eval_idx, run)
    manager = _bounded_manager(SimpleClientManager, run.join_timeout)
    server = fl.server.Server(client_manager=manager, strategy=_strategy(fl, tally))
    procs: list[Any] = []
    grpc_server = start_grpc_server(client_manager=manager, server_address=run.listen)
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
