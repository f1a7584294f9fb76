"""Federated rounds on Flower, with ternary-coded updates (the T-FedAvg idea).

Each client trains the ternary model on its own rows for a few local epochs (`fit`, the same
torch loop as a full train) and sends its update, the change of the latent weights since the
round's global model, coded as trits plus one scale per output row (the TWN rule of
`ternary.net.ternarize`), 1.6 bits per weight; biases and scales go as float16. What the coding
loses is kept by the client and added to its next update (error feedback), so nothing is lost for
good. The server checks and decodes every update (a bad one is dropped with its reason) and
averages them weighted by each client's rows, capped (FedAvg), into the global fp32 latent
weights, evaluates the ternary model on its own rows after each round, and reports each round
(clients, rows, bytes both ways, lost and dropped members, accuracy) to `on_round`. The global
model goes down whole once, then as its change, coded the same way (the server keeps what the
coding left out for the next round), to each client holding the previous one.

Flower runs the rounds: its gRPC server (`start_grpc_server`, `Server`, a FedAvg subclass) and its
clients (`start_client`) - no Ray, no simulation. Clients are processes on this machine, each
with a slice of the data, or other machines joining with `openmind colony join HOST:PORT`.
`flwr` is an optional extra (`pip install 'openmind-cells[flower]'`).
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from openmind.errors import BadInput, PathwayUnavailable
from openmind.pathways.ternary.fit import FitJob, fit
from openmind.pathways.ternary.net import build_net, export, linears, ternarize
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


def encode_update(delta: list[np.ndarray]) -> tuple[list[bytes], list[np.ndarray]]:
    """A whole update [dW0, db0, dW1, db1, ...] coded layer by layer; with what the coding left
    out (the residual its sender adds to the next update: error feedback)."""
    tensors, left = [], []
    for i in range(0, len(delta), 2):
        buf = encode_layer(delta[i], delta[i + 1])
        dw, db = decode_layer(buf)
        tensors.append(buf)
        left += [delta[i] - dw, delta[i + 1] - db]
    return tensors, left


def decode_update(tensors: list[bytes], weights: list[np.ndarray]) -> list[np.ndarray]:
    """The update `encode_update` coded, checked against the model it applies to (one tensor per
    layer, each of that layer's shape, every value finite); BadInput says what was wrong."""
    layers = len(weights) // 2
    if len(tensors) != layers:
        raise BadInput(f"{len(tensors)} coded tensors for a model of {layers} layers")
    out: list[np.ndarray] = []
    for i, buf in enumerate(tensors):
        if not isinstance(buf, (bytes, bytearray, memoryview)):
            raise BadInput(f"layer {i}: a {type(buf).__name__}, not the bytes of a coded update")
        dw, db = decode_layer(bytes(buf), weights[2 * i].shape)
        if not (np.isfinite(dw).all() and np.isfinite(db).all()):
            raise BadInput(f"layer {i}: the update holds non-finite values")
        out += [dw, db]
    return out


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
    out = fit(X, y_idx, FitJob(len(spec.classes), cfg, spec.mean, spec.inv_std, init=init,
                               progress=False))
    new = get_weights(out.net)
    delta = [n - w for n, w in zip(new, weights, strict=True)]
    if residual is not None:
        delta = [d + r for d, r in zip(delta, residual, strict=True)]
    return encode_update(delta)


def no_parameters() -> Any:
    """A member's answer to get_parameters: none (the server holds the colony's model)."""
    from flwr.common import Code, GetParametersRes, Parameters, Status

    return GetParametersRes(status=Status(Code.OK, "ok"),
                            parameters=Parameters(tensors=[], tensor_type=TENSOR_TYPE))


def fit_inputs(ins: Any, X: np.ndarray, who: str) -> tuple[Spec, np.ndarray, int]:
    """From a fit request: the colony's spec, this member's rows as float32 and the round (a
    member whose rows do not fit the colony's model says so)."""
    spec = Spec.from_json(str(ins.config["spec"]))
    Xc = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    if Xc.shape[1] != spec.n_features:
        raise BadInput(f"{who}'s rows have {Xc.shape[1]} features, the colony's model takes "
                       f"{spec.n_features}")
    return spec, Xc, int(ins.config.get("round", 0))


def make_client(X: np.ndarray, y: np.ndarray, cid: int = 0) -> Any:
    """A Flower client over (X, y) that answers with ternary-coded updates."""
    fl = flower()
    from flwr.common import Code, EvaluateRes, FitRes, Parameters, Status

    class TernaryClient(fl.client.Client):
        def __init__(self) -> None:
            self.residual: list[np.ndarray] | None = None
            self.held: tuple[int, list[np.ndarray]] | None = None  # (round, global weights)

        def get_parameters(self, ins: Any) -> Any:
            return no_parameters()

        def fit(self, ins: Any) -> Any:
            from flwr.common import parameters_to_ndarrays

            spec, Xc, rnd = fit_inputs(ins, X, "this client")
            if ins.parameters.tensor_type == TENSOR_TYPE:  # the global model's change, coded
                base = int(ins.config.get("base", -1))
                if self.held is None or self.held[0] != base:
                    raise BadInput(f"a coded global update on round {base}'s model, this client "
                                   f"holds {self.held[0] if self.held else 'none'}")
                delta = decode_update(list(ins.parameters.tensors), self.held[1])
                weights = [w + d for w, d in zip(self.held[1], delta, strict=True)]
            else:
                weights = parameters_to_ndarrays(ins.parameters)
            self.held = (rnd, weights)
            tensors, self.residual = local_update(spec, weights, Xc, spec.indices(y),
                                                  self.residual, rnd, cid)
            sent = sum(len(t) for t in tensors)
            return FitRes(status=Status(Code.OK, "ok"),
                          parameters=Parameters(tensors=tensors, tensor_type=TENSOR_TYPE),
                          num_examples=int(len(Xc)),
                          metrics={"bytes": sent, "cid": cid, "down": TENSOR_TYPE})

        def evaluate(self, ins: Any) -> Any:  # the server evaluates on its own rows
            return EvaluateRes(status=Status(Code.OK, "ok"), loss=0.0, num_examples=0, metrics={})

    return TernaryClient()


def join(address: str, X: np.ndarray, y: np.ndarray, *, cid: int = 0,
         wait_s: float = 60.0, root_certificates: bytes | str | None = None) -> None:
    """Join the colony at `address` (HOST:PORT) with these rows until the server ends the run.
    `root_certificates` (the CA's PEM bytes or a path): TLS, as a server off loopback requires."""
    flower()
    from flwr.compat.client.app import start_client

    if isinstance(root_certificates, str):
        with open(root_certificates, "rb") as f:
            root_certificates = f.read()
    start_client(server_address=address, client=make_client(X, y, cid),
                 insecure=root_certificates is None, root_certificates=root_certificates,
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


__all__ = ["Spec", "decode_layer", "decode_update", "encode_layer", "encode_update", "fp32_bytes", "join", "make_client", "slices"]
