"""Training ternary MLPs in torch: the config, the data split, and the training loop.

The network itself (TWN layers, straight-through estimator, export to a `TernaryModel`) is in
`net.py`; what a config costs in seconds or device bytes is in `estimate.py`. `FitJob` is one
run's settings besides the rows: the train intent builds it once and every trainer (this process,
N local processes, torchrun ranks) takes it whole.

CUDA when the plan says so and torch sees a device, else CPU; a time budget is checked per batch;
seeds make runs reproducible; each epoch is reported to a progress view (`progress.py`: the
notebook face's bar, tqdm in a terminal).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from openmind.errors import BadInput
from openmind.pathways.ternary.estimate import note_run, small_net
from openmind.pathways.ternary.net import TernaryLinear, build_net, evaluate, linears, load_weights
from openmind.pathways.ternary.packed import U16_MAX, TernaryModel

# The training config (part of the muscle-memory key) and its defaults.
DEFAULTS: dict[str, Any] = {
    "hidden": (256, 256),   # hidden layer widths
    "epochs": 60,           # at most this many passes over the data
    "lr": 3e-3,             # Adam learning rate (cosine-annealed over `epochs`)
    "batch_size": 64,
    "seed": 0,              # torch + split seed: same seed, same model
    "scale": "layer",       # ternary scale per "layer" or per output "row"
    "weight_decay": 0.0,
    "patience": 20,         # stop after this many epochs without a better validation score
    "val_fraction": 0.1,    # held out (stratified) for early stopping and the reported accuracy
    "init": "default",      # "ancestral": sample the first weights from models in muscle memory
    "growth": False,        # after a plateau, weak hidden units die and strong ones split
    "growth_patience": 5,   # epochs without a better validation score before an extinction
}
INITS = ("default", "ancestral")
# Options that change how a run looks, not what it learns (not part of the key).
RUN_OPTIONS = ("progress",)
# Part of every muscle-memory request: a trainer that learns differently is another request.
TRAINER_VERSION = "ternary-fit-2"


def resolve_config(options: dict[str, Any]) -> dict[str, Any]:
    """Defaults + options, validated; BadInput names the bad option and the valid ones."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise BadInput(f"unknown training option {', '.join(map(repr, unknown))}; valid: "
                       f"{', '.join(DEFAULTS)} (and policy options: fallback, strategy, budget, "
                       f"fresh, prefer, timeout)")
    cfg = {**DEFAULTS, **options}
    hidden = cfg["hidden"]
    if isinstance(hidden, (int, np.integer)):
        hidden = (hidden,)
    try:
        if isinstance(hidden, (str, bytes)) or any(
                isinstance(h, bool) or not isinstance(h, (int, np.integer)) for h in hidden):
            raise TypeError
        hidden = tuple(int(h) for h in hidden)
    except (TypeError, ValueError):
        raise BadInput(f"hidden must be a width or a list of whole widths, got {cfg['hidden']!r}") from None
    if any(h < 1 or h > U16_MAX for h in hidden):
        raise BadInput(f"hidden widths must be between 1 and {U16_MAX}, got {hidden}")
    cfg["hidden"] = list(hidden)
    if cfg["init"] not in INITS:
        raise BadInput(f"init must be one of {', '.join(INITS)}, got {cfg['init']!r}")
    if not isinstance(cfg["growth"], (bool, np.bool_)):
        raise BadInput(f"growth must be True or False, got {cfg['growth']!r}")
    cfg["growth"] = bool(cfg["growth"])
    for key, low in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("growth_patience", 1),
                     ("seed", 0)):
        if isinstance(cfg[key], bool) or not isinstance(cfg[key], (int, np.integer)) or cfg[key] < low:
            raise BadInput(f"{key} must be an integer >= {low}, got {cfg[key]!r}")
        cfg[key] = int(cfg[key])
    if cfg["seed"] >= 2**63:
        raise BadInput(f"seed must be below 2**63, got {cfg['seed']}")
    for key in ("lr", "weight_decay", "val_fraction"):
        try:
            if isinstance(cfg[key], (bool, str, bytes)):
                raise TypeError
            cfg[key] = float(cfg[key])
        except (TypeError, ValueError):
            raise BadInput(f"{key} must be a number, got {cfg[key]!r}") from None
        if not np.isfinite(cfg[key]):
            raise BadInput(f"{key} must be a finite number, got {cfg[key]}")
    if not cfg["lr"] > 0:
        raise BadInput(f"lr must be positive, got {cfg['lr']}")
    if cfg["weight_decay"] < 0:
        raise BadInput(f"weight_decay must be >= 0, got {cfg['weight_decay']}")
    if not 0 <= cfg["val_fraction"] < 0.9:
        raise BadInput(f"val_fraction must be in [0, 0.9), got {cfg['val_fraction']}")
    if cfg["scale"] not in ("layer", "row"):
        raise BadInput(f"scale must be 'layer' or 'row', got {cfg['scale']!r}")
    return cfg


# --------------------------------------------------------------------------- data


def pick_device(requested: str | None, cuda_available: bool | None = None) -> tuple[str, str | None]:
    """(device, note). CUDA when asked for and torch can use it; else CPU, saying why."""
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if requested == "cuda":
        if cuda_available:
            return "cuda", None
        why = ("was built without CUDA (install a CUDA build of torch)"
               if not torch.backends.cuda.is_built() else "sees no CUDA device (check the driver)")
        return "cpu", f"the plan chose CUDA but this torch ({torch.__version__}) {why}; trained on the CPU"
    return "cpu", None


def standardization(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """float32 mean and 1/std per feature (1 for constant features), stored with the model."""
    X32 = X.astype(np.float64)
    mean = X32.mean(axis=0)
    std = X32.std(axis=0)
    inv = np.where(std > 1e-12, 1.0 / np.where(std > 1e-12, std, 1.0), 1.0)
    return mean.astype(np.float32), inv.astype(np.float32)


def split_indices(y_idx: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A stratified (train, validation) split; every class keeps at least one training row."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(y_idx):
        rows = rng.permutation(np.flatnonzero(y_idx == c))
        k = int(round(len(rows) * fraction)) if len(rows) > 1 else 0
        val.append(rows[:k])
        train.append(rows[k:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


# --------------------------------------------------------------------------- training


@dataclass
class FitOutcome:
    net: nn.Sequential
    epochs: int = 0
    best_epoch: int = 0
    val_accuracy: float | None = None  # on held-out rows; the training rows when val_fraction=0
    held_out: bool = True
    stopped: str = "epochs"  # epochs | early_stop | budget | interrupted | error
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # the training thread's CPU time (what estimates are made of)
    device: str = "cpu"
    history: list[dict[str, float]] = field(default_factory=list)
    colony: dict[str, Any] = field(default_factory=dict)  # data-parallel runs: processes, backend

    extinctions: list[dict[str, Any]] = field(default_factory=list)  # growth: each one's figures
    inherited: dict[str, Any] = field(default_factory=dict)  # init="ancestral": what came from whom


@dataclass
class Replicas:
    """This process's share of a data-parallel run (built by pathways/colony/distributed.py).

    Every rank runs the same loop over the same shuffled batches and computes the loss of every
    `world`-th row of each batch, so the ranks take the same number of steps and the averaged
    gradient is the single-process one (up to float rounding). `wrap` makes the
    net average gradients (DDP); `vote` is True on every rank when it is True on any, so all
    ranks stop at the same step. The default is one process.
    """

    rank: int = 0
    world: int = 1
    wrap: Callable[[nn.Module], nn.Module] | None = None
    vote: Callable[[bool], bool] | None = None

    def loss(self, model: nn.Module, X: torch.Tensor, y: torch.Tensor,
             idx: torch.Tensor) -> torch.Tensor:
        """This rank's part of the batch's mean loss: rows rank, rank + world, ... of the batch,
        summed and scaled so DDP's gradient average equals the single-process mean."""
        if self.world == 1:
            return nn.functional.cross_entropy(model(X[idx]), y[idx])
        mine = idx[self.rank::self.world]
        return nn.functional.cross_entropy(model(X[mine]), y[mine], reduction="sum") * (
            self.world / len(idx))

    def any(self, flag: bool) -> bool:
        return flag if self.vote is None else self.vote(flag)


@dataclass
class FitJob:
    """One training run's settings besides the rows (X, class indices): built once by the caller
    and passed whole to `fit`, `colony.distributed.fit_local` or a torchrun group's `Joined.fit`.

    `init` starts from a model's weights (fine-tune); `prior` (an evolve.AncestralPrior)
    initialises the weights when `init` is not given; `budget` is seconds, checked every batch.
    """

    n_classes: int
    cfg: dict[str, Any]
    mean: np.ndarray
    inv_std: np.ndarray
    device: str = "cpu"
    budget: float | None = None
    init: TernaryModel | None = None
    quantize: bool = True
    progress: Any = True  # True: tqdm; False: none; or a view with update(state, force) (progress.py)
    desc: str = "train"
    prior: Any = None


def fit(X: np.ndarray, y_idx: np.ndarray, job: FitJob,
        replicas: Replicas | None = None) -> FitOutcome:
    """Train on (X, class indices) as `job` says.

    Stops at `epochs`, after `patience` epochs without a better validation score, or when
    `budget` seconds are used up (checked every batch); the best validation state is kept.
    With cfg["growth"], a plateau of `growth_patience` epochs triggers an extinction (evolve.py).
    Ctrl-C or an error mid-run propagates with the run so far (best weights loaded) as the
    exception's `fit_outcome`, so the caller can keep it as a partial model.
    `replicas`: this process's share of a data-parallel run (default: one process).
    """
    start = time.perf_counter()
    cpu_start = time.thread_time()
    deadline = None if job.budget is None else start + job.budget
    threads = torch.get_num_threads()
    if job.device == "cpu" and small_net(X.shape[1], job.cfg, job.n_classes):
        torch.set_num_threads(1)
    try:
        out = _fit(X, y_idx, job, start, deadline, replicas or Replicas())
    finally:
        torch.set_num_threads(threads)
    out.cpu_seconds = time.thread_time() - cpu_start
    try:  # remember how long this architecture really takes here
        note_run(len(X), X.shape[1], job.n_classes, job.cfg, job.device, out.epochs,
                 out.cpu_seconds)
    except Exception:  # noqa: BLE001 - an estimate's bookkeeping never costs the model
        pass
    return out


def _start_net(n_in: int, job: FitJob) -> tuple[nn.Sequential, dict[str, Any]]:
    """The net to train (the init model's weights, a sample of the ancestral prior, or torch's
    default initialisation) on the job's device, and what it inherited from whom."""
    cfg = job.cfg
    hidden = cfg["hidden"]
    if job.init is not None and cfg["growth"]:  # a grown ancestor keeps the widths it grew to
        hidden = [a.shape[0] for a in job.init.layers[:-1]]
    net = build_net(n_in, hidden, job.n_classes, quantize=job.quantize, scale=cfg["scale"])
    inherited: dict[str, Any] = {}
    if job.init is not None:
        load_weights(net, job.init)
    elif job.prior is not None:
        from openmind.pathways.ternary.evolve import sample_into

        inherited = {"ancestors": job.prior.ancestors,
                     **sample_into(linears(net), job.prior, cfg["seed"])}
    return net.to(job.device), inherited


Rows = tuple[torch.Tensor, torch.Tensor]


def _tensors(X: np.ndarray, y_idx: np.ndarray, job: FitJob) -> tuple[Rows, Rows, bool]:
    """Standardised (train, validation) rows on the job's device, and whether rows were held out
    (without them the training rows validate)."""
    Xs = ((X.astype(np.float32) - job.mean) * job.inv_std).astype(np.float32)
    tr, va = split_indices(y_idx, job.cfg["val_fraction"], job.cfg["seed"])
    held_out = len(va) > 0

    def on_device(rows: np.ndarray) -> Rows:
        return (torch.from_numpy(Xs[rows]).to(job.device),
                torch.from_numpy(y_idx[rows].astype(np.int64)).to(job.device))

    return on_device(tr), on_device(va if held_out else tr), held_out


def _optimizer(net: nn.Module, cfg: dict[str, Any], lr: float, epochs: int) -> tuple[Any, Any]:
    """Adam with a cosine-annealed learning rate over `epochs`."""
    opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=cfg["weight_decay"])
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))


def _epoch(model: nn.Module, opt: Any, train: Rows, order: torch.Tensor, rep: Replicas,
           batch_size: int, deadline: float | None) -> tuple[float, int, bool]:
    """One pass over the shuffled training rows: (summed loss, rows seen, budget used up)."""
    Xt, yt = train
    total, seen = 0.0, 0
    for s in range(0, len(Xt), batch_size):
        idx = order[s:s + batch_size]
        loss = rep.loss(model, Xt, yt, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += loss.item() * len(idx)
        seen += len(idx)
        if deadline is not None and rep.any(time.perf_counter() > deadline):
            return total, seen, True
    return total, seen, False


def _fit(X: np.ndarray, y_idx: np.ndarray, job: FitJob, start: float, deadline: float | None,
         rep: Replicas) -> FitOutcome:
    from openmind.pathways.ternary.progress import reporter

    cfg = job.cfg
    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    net, inherited = _start_net(X.shape[1], job)
    train, (Xv, yv), held_out = _tensors(X, y_idx, job)
    model = net if rep.wrap is None else rep.wrap(net)
    opt, sched = _optimizer(net, cfg, cfg["lr"], cfg["epochs"])
    out = FitOutcome(net, device=job.device, held_out=held_out, inherited=inherited)
    best: tuple[float, float] | None = None
    best_net: nn.Sequential | None = None
    last_growth = 0
    bar = reporter(job.progress if rep.rank == 0 else False, job.desc, cfg["epochs"], job.budget)
    try:
        for epoch in range(1, cfg["epochs"] + 1):
            net.train()
            order = torch.randperm(len(train[0]), generator=gen).to(job.device)
            total, seen, spent = _epoch(model, opt, train, order, rep, cfg["batch_size"], deadline)
            if spent:
                out.stopped = "budget"
            sched.step()
            net.eval()
            acc, vloss = evaluate(net, Xv, yv)
            out.epochs = epoch
            out.history.append({"epoch": epoch, "loss": total / max(seen, 1), "val_accuracy": acc,
                                "val_loss": vloss})
            if best is None or (acc, -vloss) > best:
                best, out.best_epoch = (acc, -vloss), epoch
                best_net = copy.deepcopy(net)
            bar.step(epoch, val_accuracy=acc, loss=total / max(seen, 1))
            if out.stopped == "budget":
                break
            if epoch - out.best_epoch >= cfg["patience"]:
                out.stopped = "early_stop"
                break
            if (cfg["growth"] and epoch < cfg["epochs"]
                    and epoch - max(out.best_epoch, last_growth) >= cfg["growth_patience"]):
                last_growth = epoch
                _grow(net, out, epoch, Xv, yv, cfg)
                model = net if rep.wrap is None else rep.wrap(net)  # DDP over the new units
                opt, sched = _optimizer(net, cfg, sched.get_last_lr()[0], cfg["epochs"] - epoch)
    except BaseException as exc:
        out.stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        if best_net is not None:  # what was done so far, for the caller to keep
            _finish_fit(out, net, best_net, best, start)
            exc.fit_outcome = out  # type: ignore[attr-defined]
        raise
    finally:
        bar.end(out.stopped)
    return _finish_fit(out, net, best_net, best, start)


def _finish_fit(out: FitOutcome, net: nn.Sequential, best_net: nn.Sequential | None, best: Any,
                start: float) -> FitOutcome:
    if best_net is not None:
        net = out.net = best_net
        out.val_accuracy = best[0]
    net.eval()
    out.seconds = time.perf_counter() - start
    return out


def _grow(net: nn.Sequential, out: FitOutcome, epoch: int, Xv: torch.Tensor, yv: torch.Tensor,
          cfg: dict[str, Any]) -> None:
    """One extinction on every hidden layer of `net` (in place), recorded in `out.extinctions`."""
    from openmind.pathways.ternary.evolve import extinction, plan_extinction, utility

    positions = [i for i, m in enumerate(net) if isinstance(m, TernaryLinear)]
    net.eval()
    _, before = evaluate(net, Xv, yv)
    for layer in range(len(positions) - 1):
        mods = [net[i] for i in positions]
        width = mods[layer].weight.shape[0]
        die, born = plan_extinction(utility(mods, layer), max_width=4 * cfg["hidden"][layer])
        new_a, new_b = extinction(mods, layer, die, born, seed=cfg["seed"] + epoch)
        net[positions[layer]], net[positions[layer + 1]] = new_a, new_b
        out.extinctions.append({"epoch": epoch, "layer": layer, "units_removed": len(die),
                                "units_born": len(born), "width_before": width,
                                "width_after": width - len(die) + len(born)})
    _, after = evaluate(net, Xv, yv)
    for e in out.extinctions:
        if e["epoch"] == epoch:
            e.update(val_loss_before=round(before, 4), val_loss_after=round(after, 4))
