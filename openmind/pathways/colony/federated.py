"""Federated rounds on Flower, with ternary-coded updates (the T-FedAvg idea).

Each client trains the ternary model on its own rows for a few local epochs (`fit`, the same
torch loop as a full train) and sends its update, the change of the latent weights since the
round's global model, coded as trits plus one scale per output row (the TWN rule of
`ternary.fit.ternarize`), 1.6 bits per weight; biases and scales go as float16. What the coding
loses is kept by the client and added to its next update (error feedback), so nothing is lost for
good. The server decodes every update and averages them weighted by each client's rows (FedAvg)
into the global fp32 latent weights, evaluates the ternary model on its own rows after each
round, and reports each round (clients, rows, bytes sent, accuracy) to `on_round`.

Flower runs the rounds: its gRPC server (`start_grpc_server`, `Server`, a FedAvg subclass) and its
clients (`start_client`) - no Ray, no simulation. Clients are processes on this machine, each
with a slice of the data, or other machines joining with `openmind colony join HOST:PORT`.
`flwr` is an optional extra (`pip install 'openmind-cells[flower]'`).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from openmind.errors import BadInput, PathwayUnavailable
from openmind.pathways.ternary.fit import build_net, export, fit, linears, ternarize
from openmind.pathways.ternary.packed import TernaryModel, decode_classes, encode_classes

TENSOR_TYPE = "openmind.ternary-update.v1"
MAGIC = b"OMTU"
_HEAD = struct.Struct("<4sII")   # magic, rows (outputs), columns (inputs)
_POW3 = np.array([1, 3, 9, 27, 81], dtype=np.uint8)
F16_MAX = float(np.finfo(np.float16).max)


def flower() -> Any:
    """The flwr package, or PathwayUnavailable saying how to install it."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")  # no calls home from a notebook
    try:
        import flwr
    except ImportError:
        raise PathwayUnavailable("federated rounds need Flower: pip install "
                                 "'openmind-cells[flower]' (or pip install flwr)") from None
    import logging

    # openmind drives Flower's gRPC server and clients (start_client) itself; their deprecation
    # notices about the SuperLink/SuperNode launchers are not for the notebook user
    logging.getLogger("flwr").setLevel(logging.ERROR)
    return flwr


# --------------------------------------------------------------------------- the update codec


def encode_layer(delta_w: np.ndarray, delta_b: np.ndarray) -> bytes:
    """One layer's update: trits (5 per byte, base 3) with a float16 scale per row, bias float16."""
    w = np.asarray(delta_w, dtype=np.float32)
    t, alpha = ternarize(torch.from_numpy(w), per_row=True)
    digits = (t.numpy().astype(np.int8) + 1).astype(np.uint8).reshape(-1)
    digits = np.concatenate([digits, np.ones((-digits.size) % 5, dtype=np.uint8)])
    packed = (digits.reshape(-1, 5) * _POW3).sum(axis=1, dtype=np.uint16).astype(np.uint8)
    scale = np.clip(alpha.numpy().reshape(-1), 0, F16_MAX).astype("<f2")
    bias = np.clip(np.asarray(delta_b, dtype=np.float32), -F16_MAX, F16_MAX).astype("<f2")
    return _HEAD.pack(MAGIC, w.shape[0], w.shape[1]) + packed.tobytes() + scale.tobytes() + bias.tobytes()


def decode_layer(buf: bytes, shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(delta_w, delta_b) from `encode_layer`'s bytes; anything malformed (a hostile or broken
    peer) raises BadInput saying what was wrong."""
    if len(buf) < _HEAD.size:
        raise BadInput(f"ternary update too short ({len(buf)} bytes)")
    magic, rows, cols = _HEAD.unpack_from(buf, 0)
    if magic != MAGIC:
        raise BadInput(f"not an openmind ternary update (magic {magic!r}); is the client's "
                       f"openmind the same version as the server's?")
    if shape is not None and (rows, cols) != tuple(shape):
        raise BadInput(f"ternary update for a {rows}x{cols} layer, the model's is {shape[0]}x{shape[1]}")
    n_packed = -(-rows * cols // 5)
    want = _HEAD.size + n_packed + 2 * rows + 2 * rows
    if len(buf) != want:
        raise BadInput(f"ternary update of a {rows}x{cols} layer must be {want} bytes, got {len(buf)}")
    pos = _HEAD.size
    packed = np.frombuffer(buf, dtype=np.uint8, count=n_packed, offset=pos)
    if packed.size and packed.max() > 242:
        raise BadInput("ternary update holds a byte above 242 (3^5 - 1): corrupt trits")
    digits = (packed[:, None] // _POW3) % 3
    trits = digits.reshape(-1)[: rows * cols].astype(np.float32).reshape(rows, cols) - 1.0
    scale = np.frombuffer(buf, dtype="<f2", count=rows, offset=pos + n_packed).astype(np.float32)
    bias = np.frombuffer(buf, dtype="<f2", count=rows, offset=pos + n_packed + 2 * rows).astype(np.float32)
    if not (np.isfinite(scale).all() and np.isfinite(bias).all()) or (scale < 0).any():
        raise BadInput("ternary update holds a negative or non-finite scale or bias")
    return trits * scale[:, None], bias


def fp32_bytes(weights: list[np.ndarray]) -> int:
    """What a plain Flower client sends for these arrays (ndarrays_to_parameters, fp32)."""
    from flwr.common import ndarrays_to_parameters

    return sum(len(t) for t in ndarrays_to_parameters(
        [np.asarray(w, dtype=np.float32) for w in weights]).tensors)


# --------------------------------------------------------------------------- the model's spec


@dataclass
class Spec:
    """What every client must agree on: the architecture, classes, standardization, training."""

    n_features: int
    hidden: list[int]
    classes: np.ndarray
    mean: np.ndarray
    inv_std: np.ndarray
    cfg: dict[str, Any]
    local_epochs: int = 1
    rounds: int = 1

    def round_lr(self, rnd: int) -> float:
        """The local learning rate of round `rnd` (1-based): cosine-annealed over the rounds, so
        the last rounds settle instead of jumping around the clients' different optima."""
        frac = min(max(rnd - 1, 0), self.rounds) / max(self.rounds, 1)
        return float(self.cfg["lr"]) * 0.5 * (1 + math.cos(math.pi * frac))

    def to_json(self) -> str:
        return json.dumps({"n_features": self.n_features, "hidden": self.hidden,
                           "classes": encode_classes(self.classes),
                           "mean": self.mean.tolist(), "inv_std": self.inv_std.tolist(),
                           "cfg": self.cfg, "local_epochs": self.local_epochs,
                           "rounds": self.rounds})

    @classmethod
    def from_json(cls, text: str) -> Spec:
        d = json.loads(text)
        return cls(int(d["n_features"]), [int(h) for h in d["hidden"]], decode_classes(d["classes"]),
                   np.asarray(d["mean"], dtype=np.float32), np.asarray(d["inv_std"], dtype=np.float32),
                   dict(d["cfg"]), int(d["local_epochs"]), int(d.get("rounds", 1)))

    def net(self, weights: list[np.ndarray] | None = None) -> torch.nn.Sequential:
        torch.manual_seed(self.cfg["seed"])
        net = build_net(self.n_features, self.hidden, len(self.classes), scale=self.cfg["scale"])
        if weights is not None:
            set_weights(net, weights)
        return net

    def indices(self, y: np.ndarray) -> np.ndarray:
        """Class indices of a client's labels (matched by value, else by their text, so labels
        read from a CSV match numeric classes); labels the model does not know are an error."""
        pos = {v: i for i, v in enumerate(self.classes.tolist())}
        for i, v in enumerate(self.classes.tolist()):
            pos.setdefault(_text(v), i)
        out = []
        for v in np.asarray(y).tolist():
            i = pos.get(v, pos.get(_text(v)))
            if i is None:
                raise BadInput(f"this client has label {v!r}, which the colony's model does not "
                               f"know (classes: {self.classes.tolist()[:20]})")
            out.append(i)
        return np.array(out, dtype=np.int64)


def _text(v: Any) -> str:
    """A label as text: 6, 6.0 and '6' read the same."""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    text = str(v).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if f.is_integer() else text


def get_weights(net: torch.nn.Sequential) -> list[np.ndarray]:
    """[W0, b0, W1, b1, ...] as float32 arrays (the latent weights)."""
    out = []
    for m in linears(net):
        out += [m.weight.detach().cpu().numpy().copy(), m.bias.detach().cpu().numpy().copy()]
    return out


def set_weights(net: torch.nn.Sequential, weights: list[np.ndarray]) -> None:
    mods = linears(net)
    if len(weights) != 2 * len(mods):
        raise BadInput(f"{len(weights)} arrays for a model of {len(mods)} layers")
    with torch.no_grad():
        for i, m in enumerate(mods):
            w, b = weights[2 * i], weights[2 * i + 1]
            if tuple(w.shape) != tuple(m.weight.shape) or tuple(b.shape) != tuple(m.bias.shape):
                raise BadInput(f"layer {i}: arrays of shape {w.shape}/{b.shape}, the model has "
                               f"{tuple(m.weight.shape)}/{tuple(m.bias.shape)}")
            m.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
            m.bias.copy_(torch.from_numpy(np.asarray(b, dtype=np.float32)))


def model_of(spec: Spec, weights: list[np.ndarray], *, name: str | None,
             info: dict[str, Any]) -> TernaryModel:
    return export(spec.net(weights), spec.mean, spec.inv_std, spec.classes, name=name,
                  config={**spec.cfg, "hidden": spec.hidden}, info=info)


# --------------------------------------------------------------------------- the client


def local_update(spec: Spec, weights: list[np.ndarray], X: np.ndarray, y_idx: np.ndarray,
                 residual: list[np.ndarray] | None, rnd: int,
                 cid: int = 0) -> tuple[list[bytes], list[np.ndarray]]:
    """Train from the global weights on this client's rows in round `rnd`; return the coded
    update and the new residual (what the coding left out, sent with the next update)."""
    init = model_of(spec, weights, name=None, info={})
    cfg = {**spec.cfg, "epochs": spec.local_epochs, "val_fraction": 0.0,
           "seed": spec.cfg["seed"] + 1000 * rnd + cid, "patience": spec.local_epochs + 1,
           "lr": spec.round_lr(rnd)}
    out = fit(X, y_idx, len(spec.classes), cfg, mean=spec.mean, inv_std=spec.inv_std,
              init=init, progress=False)
    new = get_weights(out.net)
    delta = [n - w for n, w in zip(new, weights, strict=True)]
    if residual is not None:
        delta = [d + r for d, r in zip(delta, residual, strict=True)]
    tensors, left = [], []
    for i in range(0, len(delta), 2):
        buf = encode_layer(delta[i], delta[i + 1])
        dw, db = decode_layer(buf)
        tensors.append(buf)
        left += [delta[i] - dw, delta[i + 1] - db]
    return tensors, left


def make_client(X: np.ndarray, y: np.ndarray, cid: int = 0) -> Any:
    """A Flower client over (X, y) that answers with ternary-coded updates."""
    fl = flower()
    from flwr.common import Code, EvaluateRes, FitRes, GetParametersRes, Parameters, Status

    class TernaryClient(fl.client.Client):
        def __init__(self) -> None:
            self.residual: list[np.ndarray] | None = None

        def get_parameters(self, ins: Any) -> Any:
            return GetParametersRes(status=Status(Code.OK, "ok"),
                                    parameters=Parameters(tensors=[], tensor_type=TENSOR_TYPE))

        def fit(self, ins: Any) -> Any:
            from flwr.common import parameters_to_ndarrays

            spec = Spec.from_json(str(ins.config["spec"]))
            Xc = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
            if Xc.shape[1] != spec.n_features:
                raise BadInput(f"this client's rows have {Xc.shape[1]} features, the colony's "
                               f"model takes {spec.n_features}")
            weights = parameters_to_ndarrays(ins.parameters)
            rnd = int(ins.config.get("round", 0))
            tensors, self.residual = local_update(spec, weights, Xc, spec.indices(y),
                                                  self.residual, rnd, cid)
            sent = sum(len(t) for t in tensors)
            return FitRes(status=Status(Code.OK, "ok"),
                          parameters=Parameters(tensors=tensors, tensor_type=TENSOR_TYPE),
                          num_examples=int(len(Xc)), metrics={"bytes": sent, "cid": cid})

        def evaluate(self, ins: Any) -> Any:  # the server evaluates on its own rows
            return EvaluateRes(status=Status(Code.OK, "ok"), loss=0.0, num_examples=0, metrics={})

    return TernaryClient()


def join(address: str, X: np.ndarray, y: np.ndarray, *, cid: int = 0,
         wait_s: float = 60.0) -> None:
    """Join the colony at `address` (HOST:PORT) with these rows until the server ends the run."""
    flower()
    from flwr.compat.client.app import start_client

    start_client(server_address=address, client=make_client(X, y, cid), insecure=True,
                 max_wait_time=wait_s)


def _client_process(address: str, path: str, cid: int) -> None:
    """A local client process (spawned: gRPC does not survive fork): its slice from `path`."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    data = np.load(path)
    join(address, data["X"], data["y"], cid=cid)


# --------------------------------------------------------------------------- slicing the data


def slices(y_idx: np.ndarray, clients: int, how: str = "dirichlet", alpha: float = 0.5,
           seed: int = 0) -> list[np.ndarray]:
    """Row indices per client. iid: shuffled equal parts; label: sorted by label, cut in equal
    parts (each client sees few classes); dirichlet: each class spread by Dirichlet(alpha)
    shares (smaller alpha, more skew). Every client gets at least one row."""
    rng = np.random.default_rng(seed)
    n = len(y_idx)
    if clients < 1 or clients > n:
        raise BadInput(f"clients must be between 1 and the {n} rows, got {clients}")
    if how == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif how == "label":
        parts = np.array_split(np.argsort(y_idx, kind="stable"), clients)
    elif how == "dirichlet":
        if not alpha > 0:
            raise BadInput(f"alpha must be positive, got {alpha}")
        buckets: list[list[int]] = [[] for _ in range(clients)]
        for c in np.unique(y_idx):
            rows = rng.permutation(np.flatnonzero(y_idx == c))
            cuts = (np.cumsum(rng.dirichlet([alpha] * clients)) * len(rows)).astype(int)[:-1]
            for k, part in enumerate(np.split(rows, cuts)):
                buckets[k] += part.tolist()
        parts = [np.array(sorted(b), dtype=np.int64) for b in buckets]
        for k, p in enumerate(parts):  # an empty client steals one row from the largest
            if len(p) == 0:
                big = int(np.argmax([len(q) for q in parts]))
                parts[k], parts[big] = parts[big][-1:], parts[big][:-1]
    else:
        raise BadInput(f"split must be 'iid', 'label' or 'dirichlet', got {how!r}")
    return [np.sort(p) for p in parts]


# --------------------------------------------------------------------------- the server


@dataclass
class Colony:
    """The outcome of a federated run."""

    weights: list[np.ndarray]          # the global weights of the best round
    rounds: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    best_round: int = 0                # by accuracy on the server's rows (like early stopping)
    start_accuracy: float | None = None  # the starting global model's, on the same rows


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve(spec: Spec, X_eval: np.ndarray, y_eval_idx: np.ndarray, *, clients: int, rounds: int,
          listen: str, on_round: Callable[[dict[str, Any]], None] | None = None,
          local: list[tuple[np.ndarray, np.ndarray]] | None = None,
          join_timeout: float = 120.0, round_timeout: float = 600.0) -> Colony:
    """Run `rounds` federated rounds with `clients` clients on a Flower server at `listen`.

    `local`: slices to give to client processes started here (spawned, on 127.0.0.1); without
    it the server waits up to `join_timeout` for clients on other machines. Raises
    PathwayUnavailable when too few clients join or no round completes.
    """
    fl = flower()
    from flwr.common import ndarrays_to_parameters
    from flwr.server.client_manager import SimpleClientManager
    from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

    state: dict[str, Any] = {"weights": get_weights(spec.net()), "pending": None,
                             "best": (-1.0, 0, None), "last": time.perf_counter()}
    fp32 = fp32_bytes(state["weights"])
    colony = Colony(state["weights"])
    spec_json = spec.to_json()
    t0 = time.perf_counter()

    class TernaryFedAvg(fl.server.strategy.FedAvg):
        def aggregate_fit(self, server_round: int, results: list, failures: list) -> Any:
            if not results:
                state["pending"] = {"round": server_round, "clients": 0, "failures": len(failures)}
                return None, {}
            # in client order, not arrival order: the same colony gives the same model
            results = sorted(results, key=lambda pr: int(pr[1].metrics.get("cid", 0)))
            total = sum(r.num_examples for _, r in results)
            # a client that trained only the last layers (a device: metrics "frozen" = the layers
            # it kept) counts in the average of those layers only
            n_layers = len(state["weights"]) // 2
            frozen = [min(f if isinstance(f := r.metrics.get("frozen", 0), int) and f > 0 else 0,
                          n_layers - 1) for _, r in results]
            totals = [sum(r.num_examples for (_, r), f in zip(results, frozen, strict=True) if f <= i)
                      for i in range(n_layers)]
            avg = [np.zeros_like(w) for w in state["weights"]]
            sent = 0
            for (_proxy, res), kept in zip(results, frozen, strict=True):
                if res.parameters.tensor_type != TENSOR_TYPE:
                    raise BadInput(f"a client sent {res.parameters.tensor_type!r} parameters, "
                                   f"not ternary updates")
                for i, buf in enumerate(res.parameters.tensors):
                    w = state["weights"][2 * i]
                    dw, db = decode_layer(buf, w.shape)
                    share = res.num_examples / totals[i] if i >= kept else 0.0
                    avg[2 * i] += share * dw
                    avg[2 * i + 1] += share * db
                    sent += len(buf)
            state["weights"] = [w + d for w, d in zip(state["weights"], avg, strict=True)]
            from openmind.pathways.colony.devclient import device_reports  # devices' own reports
            devices = [d for _p, r in results if (d := device_reports(r.metrics)) is not None]
            state["pending"] = {"round": server_round, "clients": len(results), "devices": devices,
                                "failures": len(failures), "rows": int(total),
                                "bytes_sent": int(sent), "fp32_bytes": int(fp32 * len(results)),
                                "bytes_received": int(fp32 * len(results))}
            return ndarrays_to_parameters(state["weights"]), {}

    def evaluate(server_round: int, weights: list[np.ndarray], config: dict) -> Any:
        if server_round == 0 and len(X_eval):  # the model every client starts from
            start = model_of(spec, state["weights"], name=None, info={})
            colony.start_accuracy = float(np.mean(start.predict_index(X_eval) == y_eval_idx))
        if server_round == 0 or state["pending"] is None:
            return None
        model = model_of(spec, state["weights"], name=None, info={})
        acc = float(np.mean(model.predict_index(X_eval) == y_eval_idx)) if len(X_eval) else None
        now = time.perf_counter()
        row = {**state["pending"], "rounds": rounds, "accuracy": acc,
               "seconds": round(now - state["last"], 3), "elapsed": round(now - t0, 3)}
        state["last"] = now
        state["pending"] = None
        colony.rounds.append(row)
        if acc is not None and acc >= state["best"][0]:
            state["best"] = (acc, server_round, state["weights"])
        if on_round is not None:
            on_round(row)
        return 0.0, {"accuracy": acc or 0.0}

    strategy = TernaryFedAvg(
        fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=clients, min_evaluate_clients=0,
        min_available_clients=clients, evaluate_fn=evaluate,
        initial_parameters=ndarrays_to_parameters(state["weights"]),
        on_fit_config_fn=lambda rnd: {"round": rnd, "spec": spec_json})
    manager = _bounded_manager(SimpleClientManager, join_timeout)
    server = fl.server.Server(client_manager=manager, strategy=strategy)
    procs: list[Any] = []
    grpc_server = start_grpc_server(client_manager=manager, server_address=listen)
    try:
        with tempfile.TemporaryDirectory(prefix="openmind-colony-") as tmp:
            if local:
                procs = _start_clients(local, listen, Path(tmp))
            _wait_clients(manager, clients, join_timeout, procs, Path(tmp), listen)
            state["last"] = time.perf_counter()  # a round's seconds start once the clients are in
            server.fit(num_rounds=rounds, timeout=round_timeout)
            server.disconnect_all_clients(timeout=round_timeout)
            for p in procs:
                with contextlib.suppress(Exception):
                    p.wait(timeout=10)
            _stop_all(procs)
    finally:
        grpc_server.stop(grace=1)
        _stop_all(procs)
    _acc, colony.best_round, best = state["best"]
    colony.weights = best if best is not None else state["weights"]
    colony.seconds = time.perf_counter() - t0
    if not any(r.get("clients") for r in colony.rounds):
        raise PathwayUnavailable(f"no federated round completed ({len(colony.rounds)} of {rounds} "
                                 f"rounds had no client result)")
    return colony


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


__all__ = ["Colony", "Spec", "decode_layer", "encode_layer", "fp32_bytes", "free_port", "join",
           "make_client", "serve", "slices"]
