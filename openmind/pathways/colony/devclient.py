"""A device as a federation client: a Flower client whose training happens on a serial device.

`openmind colony join HOST:PORT --device /dev/ttyUSB0 --data rows.npz` runs this client on the
machine the device is plugged into (a laptop with the virtual device, a Raspberry Pi with an
ESP32). Each round it loads the global model onto the device (the packed model with `MODEL`,
the latent weights of its last layer with `LEARN LOAD`, docs/protocol-v3.md), scores the
device's held-out rows, lets the device learn from its training rows for the round's local
epochs, scores again, and reads the device's packed update. That update is already the colony's
update format (an `OMTU` layer): it is checked with the same decoder the server uses and sent as
is; the frozen layers' updates are zero. The server aggregates it like any client's.

Each round's report (rows, steps, held-out accuracy before/after, bytes over the serial link both
ways, the device's RAM) travels in the fit metrics as JSON under "device".
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from openmind.errors import BadInput
from openmind.pathways.colony.federated import (
    TENSOR_TYPE,
    Spec,
    decode_layer,
    encode_layer,
    fit_inputs,
    flower,
    model_of,
    no_parameters,
)
from openmind.pathways.device import Link
from openmind.pathways.learnlink import Learner, Scaling, frac_for, head_for, hidden_of, shift_for
from openmind.pathways.ternary import learn
from openmind.pathways.ternary.fit import split_indices

LR_LOG2 = 5  # the device's learning rate, 2^-5 (docs/protocol-v3.md)


@dataclass
class DeviceState:
    """What a device client keeps between rounds: the weight scale (fixed, so the residual the
    device carries keeps its units) and how many rounds it took part in."""

    port: str
    lr_log2: int = LR_LOG2
    held_fraction: float = 0.2
    frac_w: int | None = None
    rounds: int = 0
    reports: list[dict[str, Any]] = field(default_factory=list)


def _accuracy(got: dict[str, int]) -> float | None:
    return round(got["correct"] / got["rows"], 4) if got.get("rows") else None


def device_round(state: DeviceState, spec: Spec, weights: list[np.ndarray], X: np.ndarray,
                 y_idx: np.ndarray, rnd: int) -> tuple[list[bytes], dict[str, Any]]:
    """One round on the device: (the update tensors for Flower, the round's report)."""
    W, b = weights[-2], weights[-1]
    train, held = split_indices(y_idx, state.held_fraction, int(spec.cfg["seed"]))
    model = model_of(spec, weights, name=None, info={})
    packed = model.packed()
    if state.frac_w is None:
        state.frac_w = frac_for(W)
    scaling = Scaling(state.frac_w, shift_for(hidden_of(packed, X[train]), state.frac_w), state.lr_log2)
    blob = head_for(W, b, scaling, seed=1 + rnd, carry=state.rounds > 0)
    rng = np.random.default_rng(int(spec.cfg["seed"]) + 1000 * rnd)
    with Link(state.port) as link:
        dev = Learner(link)
        dev.hello()
        most, outs = dev.info.get("max_weights", learn.MAX_WEIGHTS), dev.info.get("max_outputs", learn.MAX_OUTPUTS)
        if W.size > most or W.shape[0] > outs:
            raise BadInput(f"{state.port} learns a last layer of at most {most} weights and {outs} "
                           f"outputs (its HELLO 3); this colony's is {W.shape[0]}x{W.shape[1]}: "
                           f"a narrower last hidden layer fits")
        dev.load_model(model.pack())
        dev.load_head(blob)
        model_bytes = dev.sent  # the global model down; the rest is rows and their answers
        before = dev.evaluate(X[held], y_idx[held]) if len(held) else {}
        steps = 0
        for _ in range(spec.local_epochs):
            order = rng.permutation(train)
            steps = dev.train(X[order], y_idx[order])["steps"]
        after = dev.evaluate(X[held], y_idx[held]) if len(held) else {}
        update, counters = dev.update()
    decode_layer(update, W.shape)  # the server's own check: a broken update never leaves here
    zeros = [encode_layer(np.zeros_like(weights[i]), np.zeros_like(weights[i + 1]))
             for i in range(0, len(weights) - 2, 2)]
    state.rounds += 1
    report = {"round": rnd, "port": state.port, "samples": int(len(train)), "held_out": int(len(held)),
              "epochs": spec.local_epochs, "steps": int(steps), "accuracy_before": _accuracy(before),
              "accuracy_after": _accuracy(after), "update_bytes": len(update),
              "serial_sent": dev.sent, "serial_received": dev.received, "serial_model": model_bytes,
              "head_ram": int(dev.info.get("head_ram", 0)), "device_ram": int(dev.info.get("device_ram", 0)),
              "shift_q": scaling.shift_q, "frac_w": scaling.frac_w, "lr_log2": scaling.lr_log2,
              "train_correct": counters["correct"]}
    state.reports.append(report)
    return [*zeros, update], report


def make_device_client(port: str, X: np.ndarray, y: np.ndarray, cid: int = 0, *,
                       lr_log2: int = LR_LOG2, held_fraction: float = 0.2,
                       on_round: Callable[[dict[str, Any]], None] | None = None) -> Any:
    """A Flower client whose rounds run on the device at `port`, on the rows (X, y)."""
    fl = flower()
    from flwr.common import (
        Code,
        EvaluateRes,
        FitRes,
        Parameters,
        Status,
        parameters_to_ndarrays,
    )

    state = DeviceState(port, lr_log2, held_fraction)

    class DeviceClient(fl.client.Client):
        def get_parameters(self, ins: Any) -> Any:
            return no_parameters()

        def fit(self, ins: Any) -> Any:
            spec, Xc, rnd = fit_inputs(ins, X, "this device")
            tensors, report = device_round(state, spec, parameters_to_ndarrays(ins.parameters), Xc,
                                           spec.indices(y), rnd)
            if on_round is not None:
                on_round(report)
            return FitRes(status=Status(Code.OK, "ok"),
                          parameters=Parameters(tensors=tensors, tensor_type=TENSOR_TYPE),
                          num_examples=report["samples"],
                          metrics={"bytes": sum(len(t) for t in tensors), "cid": cid,
                                   "frozen": len(tensors) - 1, "device": json.dumps(report)})

        def evaluate(self, ins: Any) -> Any:
            return EvaluateRes(status=Status(Code.OK, "ok"), loss=0.0, num_examples=0, metrics={})

    return DeviceClient()


def join_device(address: str, port: str, X: np.ndarray, y: np.ndarray, *, cid: int = 0,
                wait_s: float = 60.0, lr_log2: int = LR_LOG2,
                on_round: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Join the colony at `address` with the device at `port` learning on (X, y)."""
    flower()
    from flwr.compat.client.app import start_client

    start_client(server_address=address, insecure=True, max_wait_time=wait_s,
                 client=make_device_client(port, X, y, cid, lr_log2=lr_log2, on_round=on_round))


def device_reports(metrics: dict[str, Any]) -> dict[str, Any] | None:
    """A client's device report from its fit metrics, or None (a Python client, or a report
    that is not a JSON object: a broken peer's metrics are not trusted)."""
    raw = metrics.get("device")
    if not isinstance(raw, str) or len(raw) > 4096:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def simulated_slices(X: np.ndarray, y: np.ndarray, noise: tuple[float, ...] = (0.2, 0.4),
                     seed: int = 0) -> tuple[tuple[np.ndarray, np.ndarray], list[tuple[np.ndarray, np.ndarray]]]:
    """Rows for a colony of one Python client and len(noise) devices, as sensors would give them:
    the client gets a random third (every class), the devices split the rest with a label skew
    (Dirichlet 0.5 per class) and each adds its own Gaussian sensor noise, sigma in `noise` times
    each feature's standard deviation."""
    from openmind.pathways.colony.federated import slices

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    mine, rest = order[: len(X) // 3], order[len(X) // 3:]
    parts = [rest[p] for p in slices(np.asarray(y)[rest], len(noise), "dirichlet", alpha=0.5, seed=seed)]
    spread = np.asarray(X, np.float64).std(axis=0)
    devices = [((X[p] + rng.normal(0, 1, X[p].shape) * sigma * spread).astype(np.float32), y[p])
               for p, sigma in zip(parts, noise, strict=True)]
    return (X[mine], y[mine]), devices


def start_device_clients(address: str, devices: list[tuple[str, np.ndarray, np.ndarray]], folder: Path,
                         first_cid: int = 1000) -> list[Any]:
    """One `openmind colony join ADDRESS --device PORT` process per (port, X, y), as a user would
    start it next to each device; they retry until the server at `address` listens."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "OMP_NUM_THREADS": "1", "FLWR_TELEMETRY_ENABLED": "0",
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = []
    for k, (port, X, y) in enumerate(devices):
        path = folder / f"device-{k}.npz"
        np.savez(path, X=np.asarray(X, np.float32), y=np.asarray(y))
        log = open(folder / f"device-{k}.log", "wb")  # noqa: SIM115 (closed with the folder)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "openmind.cli", "colony", "join", address, "--device", port,
             "--data", str(path), "--cid", str(first_cid + k)],
            env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
    return procs


def serve_with_devices(spec: Spec, X_eval: np.ndarray, y_eval_idx: np.ndarray, run: Any,
                       devices: list[tuple[str, np.ndarray, np.ndarray]]) -> Any:
    """`server.serve` of the `run` (a server.Rounds) with one `colony join --device` process per
    (port, X, y) started next to it; the devices count on top of the run's clients."""
    import contextlib
    import tempfile
    from dataclasses import replace

    from openmind.pathways.colony.server import serve

    if not devices:
        return serve(spec, X_eval, y_eval_idx, run)
    run = replace(run, clients=run.clients + len(devices))
    with tempfile.TemporaryDirectory(prefix="openmind-devices-") as tmp:
        procs = start_device_clients(run.listen, devices, Path(tmp))
        try:
            return serve(spec, X_eval, y_eval_idx, run)
        finally:
            for p in procs:
                with contextlib.suppress(Exception):
                    p.wait(timeout=10)
                if p.poll() is None:
                    p.kill()
                    p.wait(timeout=5)


__all__ = ["DeviceState", "device_reports", "device_round", "join_device", "make_device_client",
           "serve_with_devices", "simulated_slices", "start_device_clients"]
