"""`openmind.federate`: federated rounds on Flower; the result is a new version of the model.

The same steps as every intent: validate the input, look up memory, plan, execute (journaled),
store. Each round is journaled as it ends (clients, rows, bytes both ways, accuracy, and any
member lost or update dropped, with its reason). With `listen=None` the clients are processes on
this machine, each with a slice of the data; with `listen="0.0.0.0:8080"` and `certificates`
(TLS is required off loopback) the server waits for clients on other machines, which join with
`openmind colony join HOST:8080 --data rows.npz --root-certificates ca.pem`; the data given here
is then the server's own evaluation set. `devices` adds serial devices that learn on the device
(protocol 3): each is joined by an `openmind colony join ... --device PORT` process with its own
rows, and each round's journal row says what every device learned. The CLI commands
`openmind colony serve|join` are registered here.
"""

from __future__ import annotations

import argparse
import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from openmind.errors import BadInput, PathwayUnavailable
from openmind.flow.executor import Served, execute
from openmind.flow.policy import split_policy
from openmind.flow.router import Candidate, Intent, Plan
from openmind.intents.trainrequest import prepare
from openmind.memory.blobs import fingerprint, key_for, latest, put
from openmind.pathways.ternary.packed import TernaryModel
from openmind.units import plural
from openmind.vocab import Decision, Pathway

if TYPE_CHECKING:
    from openmind.pathways.colony.federated import Spec
    from openmind.pathways.colony.server import Rounds

SPLITS = ("dirichlet", "label", "iid")


def federate(name: str, data: Any, labels: Any = None, *, clients: int = 3, rounds: int = 10,
             local_epochs: int = 2, split: str = "dirichlet", alpha: float = 0.5,
             listen: str | None = None, eval_fraction: float = 0.2, join_timeout: float = 120.0,
             round_timeout: float = 600.0, devices: Sequence[tuple[str, Any, Any]] = (),
             certificates: tuple[Any, Any, Any] | None = None, insecure: bool = False,
             **options: Any) -> TernaryModel:
    """Train `name` over a federated colony with Flower; return the model, a new version in
    muscle memory.

    clients, rounds, local_epochs: the colony's shape. split ('dirichlet' with `alpha`, 'label',
    'iid'): how the rows are sliced among local clients (non-IID by default). listen: None for
    local client processes on 127.0.0.1; HOST:PORT to wait for clients on other machines (plain
    gRPC on loopback only; another address needs `certificates`: the CA, server certificate and
    server key, PEM bytes or paths, Flower's TLS; or insecure=True on a trusted network).
    devices: (serial port, X, y) per device that joins as a client and learns the model's last
    layer on the device (docs/protocol-v3.md); they count on top of `clients`. A member that sends
    a bad update is dropped, one that is lost is noted: the model then says so (`route.degraded`),
    and each round's row in the journal names who and why. Later rounds wait for the clients still
    there, as long as rounds have taken (join_timeout and round_timeout bound round 1).
    options: training config (hidden, lr, batch_size, seed, scale; defaults hidden=64,
    lr=0.01, annealed over the rounds) and policy (fallback, ...). The model returned is the
    round with the best accuracy on the server's rows (held out from the clients' slices).
    """
    from openmind.pathways.colony import federated as fed
    from openmind.pathways.colony.server import Rounds, free_port
    from openmind.pathways.ternary.fit import resolve_config, split_indices, standardization

    pol, rest = split_policy(options)
    cfg = resolve_config({"hidden": 64, "lr": 1e-2, **rest})
    if cfg.get("growth") or cfg.get("init", "default") != "default":
        raise BadInput("federate averages fixed-width models: growth and init='ancestral' are "
                       "not available in a colony; train_or_load offers them")
    X, y, kind = prepare(name, data, labels)
    if kind != "tabular":
        raise BadInput(f"federate needs 2-D numeric rows, got {kind} data of shape {X.shape}")
    _check_shape(clients=clients, rounds=rounds, local_epochs=local_epochs, split=split)
    classes, y_idx = np.unique(y, return_inverse=True)
    y_idx = y_idx.astype(np.int64).reshape(-1)
    mean, inv_std = standardization(X)
    spec = fed.Spec(X.shape[1], cfg["hidden"], classes, mean, inv_std, cfg, local_epochs, rounds)
    run = Rounds(clients, rounds, listen or "", join_timeout=join_timeout,
                 round_timeout=round_timeout, on_round=lambda row: _journal_round(name, row),
                 certificates=_pem(certificates), insecure=bool(insecure))
    if listen is not None:
        from openmind.pathways.colony.server import check_listen

        check_listen(listen, run.certificates, run.insecure)
    if listen is None:
        keep, held = split_indices(y_idx, eval_fraction, cfg["seed"])
        parts = fed.slices(y_idx[keep], clients, split, alpha, cfg["seed"])
        run.local = [(X[keep][p], y[keep][p]) for p in parts]
        run.listen = f"127.0.0.1:{free_port()}"
        where = f"{plural(clients, 'client process', 'client processes')} on this machine ({split} slices of {len(keep)} rows)"
    else:
        held = np.arange(len(X))
        where = f"{plural(clients, 'client')} joining at {listen}"
    fp = fingerprint(X, y)
    job = _Federation(name, spec, X[held], y_idx[held], run, split, fp,
                      key_for("federate", name, fp, cfg, clients, rounds, local_epochs, split,
                              uuid.uuid4().hex), latest("model", name),
                      [(p, np.asarray(Xd), np.asarray(yd)) for p, Xd, yd in devices])
    intent = Intent.of("train", name=name, rows=int(len(X)), shape=tuple(int(s) for s in X.shape),
                       data_kind=kind, ancestor=job.ancestor is not None)
    cands = [Candidate(Pathway.FULL_TRAIN, Decision.HARDCODE,
                       f"federated training of '{name}' on Flower: {rounds} rounds with {where}"
                       + (f" and {len(devices)} devices learning on the device" if devices else "") + ", "
                       "ternary-coded updates (trits + a scale per row)",
                       {"federated": True, "clients": clients, "rounds": rounds})]
    if job.ancestor is not None:
        cands.append(Candidate(Pathway.MUSCLE_MEMORY, Decision.CACHED,
                               f"the cached model named '{name}' (the colony did not finish)",
                               {"ancestor": True}))
    t0 = time.perf_counter()
    model, _route = execute(Plan(intent, pol, tuple(cands)),
                            {(Pathway.FULL_TRAIN, Decision.HARDCODE): job.colony,
                             (Pathway.MUSCLE_MEMORY, Decision.CACHED): job.cached},
                            summarize=lambda m: {**m.summary(),
                                                 "seconds": round(time.perf_counter() - t0, 3)})
    return model


def _check_shape(*, split: str, **counts: Any) -> None:
    """The colony's shape (clients, rounds, local_epochs: whole numbers >= 1; a known split)."""
    for what, value in counts.items():
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise BadInput(f"{what} must be an integer >= 1, got {value!r}")
    if split not in SPLITS:
        raise BadInput(f"split must be one of {', '.join(SPLITS)}, got {split!r}")


@dataclass
class _Federation:
    """The handlers of one federate call: the colony's rounds, or the cached model of the name;
    each takes the route's candidate and returns the model."""

    name: str
    spec: Spec
    X_eval: np.ndarray
    y_eval_idx: np.ndarray
    run: Rounds
    split: str
    fp: str
    key: str
    ancestor: Any
    devices: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)

    def colony(self, cand: Candidate) -> Served:
        from openmind.pathways.colony import federated as fed

        run, spec = self.run, self.spec
        colony = self._serve()
        best = next((r for r in colony.rounds if r["round"] == colony.best_round), {})
        total = {k: int(sum(r.get(k, 0) for r in colony.rounds))
                 for k in ("bytes_sent", "fp32_bytes", "bytes_down", "fp32_down")}
        info = {"federated": True, "clients": run.clients, "rounds": len(colony.rounds),
                "local_epochs": spec.local_epochs, "split": self.split,
                "eval_accuracy": best.get("accuracy"), "start_accuracy": colony.start_accuracy,
                "eval_rows": int(len(self.X_eval)), **total,
                "train_seconds": round(colony.seconds, 3), "fingerprint": self.fp,
                "key": self.key, "cached": False, "best_round": colony.best_round,
                "round_accuracy": [r.get("accuracy") for r in colony.rounds],
                "devices": [d for r in colony.rounds[-1:] for d in r.get("devices", [])]}
        info["device_learning"] = [device_text(d) for d in info["devices"]]  # the card's words
        if self.ancestor is not None:
            info["parent"] = self.ancestor[1].key
        everyone = run.clients + len(self.devices)
        short = [r["round"] for r in colony.rounds if r.get("clients", 0) < everyone]
        if short or len(colony.rounds) < run.rounds:
            info["incomplete"] = (f"{len(colony.rounds)} of {run.rounds} rounds ran; rounds with "
                                  f"fewer than {everyone} clients: {short}")
        if colony.degraded:
            info["degraded"] = colony.degraded
        model = fed.model_of(spec, colony.weights, name=self.name, info=info)
        arrays, meta = model.to_arrays()
        meta["fingerprint"] = self.fp
        entry = put("model", self.name, self.key, arrays, meta)
        model.info["stored"] = entry is not None
        return Served(model, degraded=colony.degraded)

    def _serve(self) -> Any:
        """The server's rounds; with devices, their `colony join --device` processes beside it."""
        if not self.devices:
            from openmind.pathways.colony.server import serve

            return serve(self.spec, self.X_eval, self.y_eval_idx, self.run)
        from openmind.pathways.colony.devclient import serve_with_devices

        return serve_with_devices(self.spec, self.X_eval, self.y_eval_idx, self.run, self.devices)

    def cached(self, cand: Candidate) -> Served:
        if self.ancestor is None:
            raise PathwayUnavailable(f"no cached model named '{self.name}'")
        arrays, entry = self.ancestor
        model = TernaryModel.from_arrays(arrays, entry.meta)
        model.info.update(cached=True, key=entry.key)
        return Served(model, degraded=f"the colony did not finish: the cached model of "
                                      f"'{self.name}' stands in")


def _pem(certificates: tuple[Any, Any, Any] | None) -> tuple[bytes, bytes, bytes] | None:
    """TLS certificates as PEM bytes (each given as bytes or a file path)."""
    if certificates is None:
        return None
    if not isinstance(certificates, (tuple, list)) or len(certificates) != 3:
        raise BadInput("certificates are (CA, server certificate, server key): PEM bytes or paths")
    out = []
    for c in certificates:
        if isinstance(c, (bytes, bytearray)):
            out.append(bytes(c))
            continue
        try:
            with open(str(c), "rb") as f:
                out.append(f.read())
        except OSError as exc:
            raise BadInput(f"cannot read certificate {c!r}: {exc.strerror}") from None
    return out[0], out[1], out[2]


def _journal_round(name: str, row: dict[str, Any]) -> None:
    """One journal row per finished round, written as the round ends (the sidebar shows it)."""
    from openmind.flow.journal import append
    from openmind.pathways.colony.server import shortfall

    acc = row.get("accuracy")
    up, down = row.get("bytes_sent", 0), row.get("bytes_down", 0)
    fp32 = row.get("fp32_bytes", 0) + row.get("fp32_down", 0)
    reason = (f"federated round {row['round']}/{row['rounds']}: {plural(row.get('clients', 0), 'client')}, "
              f"{plural(row.get('rows', 0), 'row')}, {up} bytes up and {down} down"
              + (f" ({fp32 / (up + down):.1f}x fewer than fp32 both ways)" if up + down else "")
              + (f", accuracy {acc:.3f}" if acc is not None else "")
              + "".join(f"; {device_text(d)}" for d in row.get("devices", [])))
    lacking = shortfall([row], 0) or row.get("error")
    try:
        append({"intent": "train", "name": name, "ok": bool(row.get("clients")),
                "pathway": Pathway.FULL_TRAIN.value, "decision": Decision.HARDCODE.value,
                "reason": reason, "duration_ms": row.get("seconds", 0) * 1000,
                "degraded": lacking, "summary": {"federated_round": row}, "error": None})
    except Exception:  # an unwritable journal must not stop the colony
        pass


def device_text(d: dict[str, Any]) -> str:
    """What a device learned in a round, in words (journal, CLI)."""
    def pct(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, (int, float)) else "?"
    return (f"device {d.get('port')} learned from {d.get('samples')} samples in {d.get('steps')} steps, "
            f"held-out accuracy {pct(d.get('accuracy_before'))} -> {pct(d.get('accuracy_after'))} "
            f"on its {d.get('held_out')} rows, serial {d.get('serial_sent')} B down "
            f"({d.get('serial_model')} B of model) / {d.get('serial_received')} B up, "
            f"update {d.get('update_bytes')} B, "
            f"RAM {d.get('device_ram')} B ({d.get('head_ram')} B learning)")


def _journal_device(d: dict[str, Any]) -> None:
    """The joining machine's journal row for a round its device learned."""
    from openmind.flow.journal import append

    with contextlib.suppress(Exception):  # an unwritable journal must not stop the device
        append({"intent": "train", "name": f"colony device {d.get('port')}", "ok": True,
                "pathway": Pathway.HARDWARE_IN_LOOP.value, "decision": Decision.HARDCODE.value,
                "reason": f"federated round {d.get('round')}: {device_text(d)}", "duration_ms": 0,
                "summary": {"device_round": d}, "error": None})


# --------------------------------------------------------------------------- CLI


def _load_rows(path: str, label: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) from an .npz (arrays X and y) or a .csv with a label column."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as d:
            if "X" not in d or "y" not in d:
                raise BadInput(f"{path} must hold arrays named X and y, it has {sorted(d.files)}")
            return d["X"], d["y"]
    if path.endswith(".csv"):
        import csv

        with open(path, newline="") as f:
            rows = list(csv.reader(f))
        if len(rows) < 2:
            raise BadInput(f"{path} has no data rows")
        head, body = rows[0], rows[1:]
        col = label or head[-1]
        if col not in head:
            raise BadInput(f"label column {col!r} is not in {path}; columns: {head}")
        j = head.index(col)
        try:
            X = np.array([[float(v) for k, v in enumerate(r) if k != j] for r in body])
        except ValueError as exc:
            raise BadInput(f"{path}: every column but the label must be a number ({exc})") from None
        return X, np.array([r[j] for r in body])
    raise BadInput(f"--data must be an .npz (arrays X, y) or a .csv file, got {path}")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("colony", help="federated training with Flower: serve a colony or join one")
    csub = p.add_subparsers(dest="colony_command", required=True)
    j = csub.add_parser("join", help="join a colony's server with this machine's rows")
    j.add_argument("address", help="the server, HOST:PORT")
    j.add_argument("--data", required=True, help=".npz with arrays X and y, or a .csv")
    j.add_argument("--label", help="the label column of a .csv (default: the last)")
    j.add_argument("--wait", type=float, default=60.0, help="seconds to keep trying to connect")
    j.add_argument("--root-certificates", metavar="CA.pem", help="TLS: the colony's CA certificate")
    j.add_argument("--device", help="a serial port: the device learns on its own (protocol 3)")
    j.add_argument("--cid", type=int, default=0, help="this client's id (orders the aggregation)")
    j.add_argument("--lr-log2", type=int, default=5, help="the device's learning rate, 2^-N")
    j.set_defaults(func=cmd_join)
    s = csub.add_parser("serve", help="run a colony's server and wait for clients to join")
    s.add_argument("name", help="the model's name in muscle memory")
    s.add_argument("--data", required=True, help="the server's evaluation rows (.npz or .csv)")
    s.add_argument("--label", help="the label column of a .csv (default: the last)")
    s.add_argument("--listen", default="127.0.0.1:8080",
                   help="HOST:PORT (default 127.0.0.1:8080: clients on this machine only). Another "
                        "address (e.g. 0.0.0.0:8080) needs --certificates (Flower's TLS), or "
                        "--insecure on a trusted network")
    s.add_argument("--insecure", action="store_true",
                   help="allow --listen beyond loopback (anyone who reaches the port can join)")
    s.add_argument("--clients", type=int, default=2)
    s.add_argument("--rounds", type=int, default=10)
    s.add_argument("--local-epochs", type=int, default=2)
    s.add_argument("--hidden", type=int, default=64)
    s.add_argument("--certificates", nargs=3, metavar=("CA", "CERT", "KEY"),
                   help="TLS (required off loopback): CA certificate, server certificate, key")
    s.set_defaults(func=cmd_serve)


def cmd_join(args: argparse.Namespace) -> int:
    from openmind.pathways.colony.federated import join

    X, y = _load_rows(args.data, args.label)
    if args.device:
        from openmind.pathways.colony.devclient import join_device

        print(f"joining the colony at {args.address} with the device at {args.device} and {plural(len(X), 'row')}")

        def report(d: dict[str, Any]) -> None:
            print(f"round {d['round']}: {device_text(d)}", flush=True)
            _journal_device(d)

        join_device(args.address, args.device, X, y, cid=args.cid, wait_s=args.wait,
                    lr_log2=args.lr_log2, on_round=report)
        print("the colony's server ended the run")
        return 0
    print(f"joining the colony at {args.address} with {plural(len(X), 'row')}")
    join(args.address, X, y, cid=args.cid, wait_s=args.wait, root_certificates=args.root_certificates)
    print("the colony's server ended the run")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from openmind.config import is_loopback

    host = args.listen.rpartition(":")[0]
    if not is_loopback(host) and not args.insecure and not getattr(args, "certificates", None):
        shown = host or "'' (every interface)"
        raise BadInput(f"refusing to listen on {shown} over plain gRPC: anyone who reaches the "
                       f"port could join and send updates. Give --certificates CA CERT KEY (Flower's "
                       f"TLS), listen on 127.0.0.1 (clients on this machine or through a tunnel), or "
                       f"pass --insecure on a trusted network")
    X, y = _load_rows(args.data, args.label)
    print(f"colony '{args.name}': waiting for {plural(args.clients, 'client')} at {args.listen} "
          f"(on each: openmind colony join THIS_HOST:{args.listen.rpartition(':')[2]} --data FILE)")
    model = federate(args.name, X, y, clients=args.clients, rounds=args.rounds,
                     local_epochs=args.local_epochs, listen=args.listen, hidden=args.hidden,
                     certificates=args.certificates, insecure=args.insecure)
    print(model.route.reason if getattr(model, "route", None) else "")
    print(f"accuracy on the server's rows: {model.info.get('eval_accuracy')}; "
          f"{model.info.get('bytes_sent')} bytes of ternary updates in "
          f"{plural(int(model.info.get('rounds') or 0), 'round')}")
    return 0
