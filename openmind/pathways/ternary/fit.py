"""Training ternary MLPs in torch (TWN weights, straight-through estimator), and exporting them.

Each layer keeps latent float32 weights; the forward pass uses their ternary form t * alpha with
t = sign(w) * [|w| > 0.7 mean|w|] and alpha = mean |w| over the kept weights (per layer or per
output row), and the gradient flows straight through to the latent weights. The exported
`TernaryModel` holds the trits, alphas and biases, and predicts with the packed arithmetic.

CUDA when the plan says so and torch sees a device, else CPU; a time budget is checked per batch;
seeds make runs reproducible; a tqdm.auto bar shows progress (a widget in notebooks).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from openmind.errors import BadInput
from openmind.pathways.ternary.packed import U16_MAX, Layer, TernaryModel, size_for

THRESHOLD = 0.7  # TWN: delta = 0.7 * mean|W|

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
        hidden = tuple(int(h) for h in hidden)
    except (TypeError, ValueError):
        raise BadInput(f"hidden must be a width or a list of widths, got {cfg['hidden']!r}") from None
    if any(h < 1 or h > U16_MAX for h in hidden):
        raise BadInput(f"hidden widths must be between 1 and {U16_MAX}, got {hidden}")
    cfg["hidden"] = list(hidden)
    if cfg["init"] not in INITS:
        raise BadInput(f"init must be one of {', '.join(INITS)}, got {cfg['init']!r}")
    if not isinstance(cfg["growth"], (bool, np.bool_)):
        raise BadInput(f"growth must be True or False, got {cfg['growth']!r}")
    cfg["growth"] = bool(cfg["growth"])
    for key, low in (("epochs", 1), ("batch_size", 1), ("patience", 1), ("growth_patience", 1)):
        if not isinstance(cfg[key], (int, np.integer)) or cfg[key] < low:
            raise BadInput(f"{key} must be an integer >= {low}, got {cfg[key]!r}")
        cfg[key] = int(cfg[key])
    for key in ("lr", "weight_decay", "val_fraction"):
        try:
            cfg[key] = float(cfg[key])
        except (TypeError, ValueError):
            raise BadInput(f"{key} must be a number, got {cfg[key]!r}") from None
    if not cfg["lr"] > 0:
        raise BadInput(f"lr must be positive, got {cfg['lr']}")
    if not 0 <= cfg["val_fraction"] < 0.9:
        raise BadInput(f"val_fraction must be in [0, 0.9), got {cfg['val_fraction']}")
    if cfg["scale"] not in ("layer", "row"):
        raise BadInput(f"scale must be 'layer' or 'row', got {cfg['scale']!r}")
    cfg["seed"] = int(cfg["seed"])
    return cfg


def estimate_seconds(rows: int, n_features: int, n_classes: int, cfg: dict[str, Any],
                     device: str = "cpu") -> float:
    """Seconds a full train of `cfg` on `rows` rows takes on this machine, from measured
    throughput: the architecture's step time is timed once (a few real batches, remembered in
    muscle memory per architecture) and corrected by what real runs of it took. Times are the
    training thread's CPU time, so a neighbour's load while measuring does not skew them."""
    from openmind.memory.throughput import recall, remember

    arch = arch_key(n_features, cfg, n_classes, device)
    t = recall(arch)
    if t is None or not {"per_batch", "per_eval_row", "copy_s"} <= set(t):
        t = measure_throughput(n_features, n_classes, cfg, device)
        remember(arch, **t)
    per_epoch = _epoch_seconds(rows, cfg, t)
    return float(cfg["epochs"] * per_epoch * float(t.get("factor", 1.0)))


def arch_key(n_features: int, cfg: dict[str, Any], n_classes: int, device: str = "cpu") -> str:
    threads = 1 if device == "cpu" and _small(n_features, cfg, n_classes) else torch.get_num_threads()
    widths = "-".join(str(w) for w in [n_features, *cfg["hidden"], n_classes])
    return f"{device}:{widths}:b{cfg['batch_size']}:{cfg['scale']}:t{threads}"


def _epoch_seconds(rows: int, cfg: dict[str, Any], t: dict[str, float]) -> float:
    n_val = int(round(rows * cfg["val_fraction"])) if rows > 1 else 0
    n_tr = max(1, rows - n_val)
    batches = math.ceil(n_tr / cfg["batch_size"])
    return batches * t["per_batch"] + (n_val or n_tr) * t["per_eval_row"] + t["copy_s"]


def measure_throughput(n_features: int, n_classes: int, cfg: dict[str, Any],
                       device: str = "cpu", seconds: float = 0.15) -> dict[str, float]:
    """Time real training steps of this architecture on random data (about `seconds`): one
    batch's step, one row's evaluation, one copy of the weights."""
    threads = torch.get_num_threads()
    if device == "cpu" and _small(n_features, cfg, n_classes):
        torch.set_num_threads(1)
    try:
        gen = torch.Generator().manual_seed(0)
        net = build_net(n_features, cfg["hidden"], n_classes, scale=cfg["scale"]).to(device)
        opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
        bs = cfg["batch_size"]
        X = torch.randn(bs, n_features, generator=gen).to(device)
        y = torch.randint(0, n_classes, (bs,), generator=gen).to(device)
        times: list[float] = []
        for i in range(1000):
            t0 = time.thread_time()
            loss = nn.functional.cross_entropy(net(X), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss.item()
            if i >= 2:  # the first steps warm up allocators and kernels
                times.append(time.thread_time() - t0)
                if sum(times) >= seconds and len(times) >= 5:
                    break
        net.eval()
        Xe = torch.randn(max(bs, 256), n_features, generator=gen).to(device)
        ye = torch.randint(0, n_classes, (len(Xe),), generator=gen).to(device)
        t0 = time.thread_time()
        for _ in range(3):
            _evaluate(net, Xe, ye)
        per_eval_row = (time.thread_time() - t0) / (3 * len(Xe))
        t0 = time.thread_time()
        copy.deepcopy(net.state_dict())
        copy_s = time.thread_time() - t0
    finally:
        torch.set_num_threads(threads)
    # the median step: a neighbour's burst on a shared machine does not skew the estimate
    return {"per_batch": float(np.median(times)), "per_eval_row": per_eval_row, "copy_s": copy_s,
            "factor": 1.0}


def note_run(rows: int, n_features: int, n_classes: int, cfg: dict[str, Any], device: str,
             epochs: int, seconds: float) -> None:
    """Correct this architecture's estimate by what a real run took (time the epochs run,
    extrapolate): the ratio of measured to predicted epoch time, averaged over runs."""
    from openmind.memory.throughput import recall, remember

    arch = arch_key(n_features, cfg, n_classes, device)
    t = recall(arch)
    if t is None or epochs < 2 or not {"per_batch", "per_eval_row", "copy_s"} <= set(t):
        return
    predicted = _epoch_seconds(rows, cfg, t)
    if predicted <= 0:
        return
    ratio = min(max(seconds / epochs / predicted, 0.05), 20.0)
    old = float(t.get("factor", 1.0))
    runs = int(t.get("runs", 0))
    remember(arch, factor=ratio if runs == 0 else 0.5 * old + 0.5 * ratio, runs=runs + 1)


def fits(widths: Sequence[int], per_row: bool, limits: dict[str, int]) -> str | None:
    """None when an architecture fits a device's limits (a v2 HELLO's "limits"), else why not."""
    size = size_for(widths, per_row)
    why = []
    if size > limits["model_max"]:
        why.append(f"packs to {size} bytes, over the device's {limits['model_max']}")
    if max(widths) > limits["max_width"]:
        why.append(f"a layer {max(widths)} wide, over the device's {limits['max_width']}")
    if len(widths) - 1 > limits["max_layers"]:
        why.append(f"{len(widths) - 1} layers, over the device's {limits['max_layers']}")
    return "; ".join(why) or None


def fit_hidden(n_in: int, n_out: int, hidden: Sequence[int], per_row: bool,
               limits: dict[str, int]) -> list[int] | None:
    """The widest hidden layers of the same shape (depth capped by the device, widths scaled down
    together) whose packed model fits `limits`; None when even width 1 cannot (too many inputs
    or classes for the device)."""
    hidden = list(hidden)[:max(0, limits["max_layers"] - 1)]
    if not hidden:
        return [] if fits([n_in, n_out], per_row, limits) is None else None
    top = max(hidden)

    def shaped(t: int) -> list[int]:
        return [max(1, min(limits["max_width"], h * t // top)) for h in hidden]

    lo, hi = 0, top  # largest t whose architecture fits (size grows with t)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if fits([n_in, *shaped(mid), n_out], per_row, limits) is None:
            lo = mid
        else:
            hi = mid - 1
    if lo == 0:
        return None
    return shaped(lo)


# --------------------------------------------------------------------------- the network


def ternarize(w: torch.Tensor, per_row: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """TWN: trits t and scale alpha ([out, 1] per row, [1, 1] per layer) of weights w [out, in]."""
    a = w.abs()
    delta = THRESHOLD * (a.mean(dim=1, keepdim=True) if per_row else a.mean().reshape(1, 1))
    mask = (a > delta).to(w.dtype)
    t = torch.sign(w) * mask
    if per_row:
        alpha = (a * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp_min(1)
    else:
        alpha = ((a * mask).sum() / mask.sum().clamp_min(1)).reshape(1, 1)
    return t, alpha


class TernaryLinear(nn.Linear):
    """A linear layer computing with ternary weights (STE to latent fp32), or plain fp32."""

    def __init__(self, n_in: int, n_out: int, quantize: bool = True, per_row: bool = False) -> None:
        super().__init__(n_in, n_out)
        self.quantize = quantize
        self.per_row = per_row

    def effective_weight(self) -> torch.Tensor:
        if not self.quantize:
            return self.weight
        with torch.no_grad():
            t, alpha = ternarize(self.weight, self.per_row)
        return self.weight + (t * alpha - self.weight).detach()  # straight-through

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.linear(x, self.effective_weight(), self.bias)


def build_net(n_in: int, hidden: Sequence[int], n_out: int, *, quantize: bool = True,
              scale: str = "layer") -> nn.Sequential:
    widths = [n_in, *hidden, n_out]
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths, widths[1:], strict=False)):
        mods.append(TernaryLinear(a, b, quantize, scale == "row"))
        if i < len(widths) - 2:
            mods.append(nn.ReLU())
    return nn.Sequential(*mods)


def linears(net: nn.Sequential) -> list[TernaryLinear]:
    return [m for m in net if isinstance(m, TernaryLinear)]


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


def _evaluate(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    with torch.no_grad():
        out = net(X)
        loss = nn.functional.cross_entropy(out, y).item()
        acc = (out.argmax(dim=1) == y).float().mean().item()
    return acc, loss


def fit(X: np.ndarray, y_idx: np.ndarray, n_classes: int, cfg: dict[str, Any], *,
        mean: np.ndarray, inv_std: np.ndarray, device: str = "cpu", budget: float | None = None,
        init: TernaryModel | None = None, quantize: bool = True, progress: bool = True,
        desc: str = "train", prior: Any = None, replicas: Replicas | None = None) -> FitOutcome:
    """Train on (X, class indices). `init` starts from a model's weights (fine-tune).

    Stops at `epochs`, after `patience` epochs without a better validation score, or when
    `budget` seconds are used up (checked every batch); the best validation state is kept.
    `prior` (an evolve.AncestralPrior) initialises the weights when `init` is not given; with
    cfg["growth"], a plateau of `growth_patience` epochs triggers an extinction (evolve.py).
    Ctrl-C or an error mid-run propagates with the run so far (best weights loaded) as the
    exception's `fit_outcome`, so the caller can keep it as a partial model.
    `replicas`: this process's share of a data-parallel run (default: one process).
    """
    start = time.perf_counter()
    cpu_start = time.thread_time()
    deadline = None if budget is None else start + budget
    threads = torch.get_num_threads()
    if device == "cpu" and _small(X.shape[1], cfg, n_classes):
        torch.set_num_threads(1)
    try:
        out = _fit(X, y_idx, n_classes, cfg, mean, inv_std, device, deadline, init, quantize,
                   progress, desc, start, prior, replicas or Replicas())
    finally:
        torch.set_num_threads(threads)
    out.cpu_seconds = time.thread_time() - cpu_start
    try:  # remember how long this architecture really takes here
        note_run(len(X), X.shape[1], n_classes, cfg, device, out.epochs, out.cpu_seconds)
    except Exception:  # noqa: BLE001 - an estimate's bookkeeping never costs the model
        pass
    return out


# Below this many multiply-adds per batch one CPU thread beats several (thread hand-off costs
# more than the matmuls; measured 4x slower with 2 threads on a shared 2-core machine).
SMALL_BATCH_MACS = 5e7


def _small(n_in: int, cfg: dict[str, Any], n_out: int) -> bool:
    widths = [n_in, *cfg["hidden"], n_out]
    macs = sum(a * b for a, b in zip(widths, widths[1:], strict=False))
    return macs * cfg["batch_size"] < SMALL_BATCH_MACS


def _fit(X: np.ndarray, y_idx: np.ndarray, n_classes: int, cfg: dict[str, Any],
         mean: np.ndarray, inv_std: np.ndarray, device: str, deadline: float | None,
         init: TernaryModel | None, quantize: bool, progress: bool, desc: str,
         start: float, prior: Any = None, rep: Replicas | None = None) -> FitOutcome:
    from tqdm.auto import tqdm

    torch.manual_seed(cfg["seed"])
    gen = torch.Generator().manual_seed(cfg["seed"])
    hidden = cfg["hidden"]
    if init is not None and cfg["growth"]:  # a grown ancestor keeps the widths it grew to
        hidden = [a.shape[0] for a in init.layers[:-1]]
    net = build_net(X.shape[1], hidden, n_classes, quantize=quantize, scale=cfg["scale"])
    inherited: dict[str, Any] = {}
    if init is not None:
        load_weights(net, init)
    elif prior is not None:
        from openmind.pathways.ternary.evolve import sample_into

        inherited = {"ancestors": prior.ancestors, **sample_into(linears(net), prior, cfg["seed"])}
    net.to(device)
    Xs = ((X.astype(np.float32) - mean) * inv_std).astype(np.float32)
    tr, va = split_indices(y_idx, cfg["val_fraction"], cfg["seed"])
    held_out = len(va) > 0
    if not held_out:
        va = tr
    Xt = torch.from_numpy(Xs[tr]).to(device)
    yt = torch.from_numpy(y_idx[tr].astype(np.int64)).to(device)
    Xv = torch.from_numpy(Xs[va]).to(device)
    yv = torch.from_numpy(y_idx[va].astype(np.int64)).to(device)
    rep = rep or Replicas()
    model = net if rep.wrap is None else rep.wrap(net)
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"])
    out = FitOutcome(net, device=device, held_out=held_out, inherited=inherited)
    best: tuple[float, float] | None = None
    best_net: nn.Sequential | None = None
    last_growth = 0
    bar = tqdm(total=cfg["epochs"], desc=desc, unit="epoch", disable=not progress, leave=False)
    try:
        for epoch in range(1, cfg["epochs"] + 1):
            net.train()
            order = torch.randperm(len(tr), generator=gen).to(device)
            total, seen = 0.0, 0
            for s in range(0, len(tr), cfg["batch_size"]):
                idx = order[s:s + cfg["batch_size"]]
                loss = rep.loss(model, Xt, yt, idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                seen += len(idx)
                if deadline is not None and rep.any(time.perf_counter() > deadline):
                    out.stopped = "budget"
                    break
            sched.step()
            net.eval()
            acc, vloss = _evaluate(net, Xv, yv)
            out.epochs = epoch
            out.history.append({"epoch": epoch, "loss": total / max(seen, 1), "val_accuracy": acc,
                                "val_loss": vloss})
            if best is None or (acc, -vloss) > best:
                best, out.best_epoch = (acc, -vloss), epoch
                best_net = copy.deepcopy(net)
            bar.update(1)
            bar.set_postfix(val_acc=f"{acc:.3f}", loss=f"{total / max(seen, 1):.3f}")
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
                opt = torch.optim.Adam(net.parameters(), lr=sched.get_last_lr()[0],
                                       weight_decay=cfg["weight_decay"])
                sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg["epochs"] - epoch))
        _finish_bar(bar, out, cfg, deadline is not None and out.stopped == "budget", start)
    except BaseException as exc:
        out.stopped = "interrupted" if isinstance(exc, KeyboardInterrupt) else "error"
        if best_net is not None:  # what was done so far, for the caller to keep
            _finish_fit(out, net, best_net, best, start)
            exc.fit_outcome = out  # type: ignore[attr-defined]
        raise
    finally:
        bar.close()
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
    _, before = _evaluate(net, Xv, yv)
    for layer in range(len(positions) - 1):
        mods = [net[i] for i in positions]
        width = mods[layer].weight.shape[0]
        die, born = plan_extinction(utility(mods, layer), max_width=4 * cfg["hidden"][layer])
        new_a, new_b = extinction(mods, layer, die, born, seed=cfg["seed"] + epoch)
        net[positions[layer]], net[positions[layer + 1]] = new_a, new_b
        out.extinctions.append({"epoch": epoch, "layer": layer, "units_removed": len(die),
                                "units_born": len(born), "width_before": width,
                                "width_after": width - len(die) + len(born)})
    _, after = _evaluate(net, Xv, yv)
    for e in out.extinctions:
        if e["epoch"] == epoch:
            e.update(val_loss_before=round(before, 4), val_loss_after=round(after, 4))


def stop_reason(out: FitOutcome, cfg: dict[str, Any], seconds: float | None = None) -> str | None:
    """Why training ended before its last epoch, in plain words (None when it ran them all)."""
    if out.stopped == "early_stop":
        return (f"stopped early at epoch {out.epochs} of {cfg['epochs']}: no better for "
                f"{cfg['patience']} epochs (best: epoch {out.best_epoch})")
    if out.stopped == "budget":
        spent = f" ({seconds:.1f} s)" if seconds is not None else ""
        return f"stopped at the time budget{spent} at epoch {out.epochs} of {cfg['epochs']}"
    return None


def _finish_bar(bar: Any, out: FitOutcome, cfg: dict[str, Any], budget: bool, start: float) -> None:
    """An early or budget stop is a normal end, not an error: the bar ends complete (tqdm's
    success state, not red) and stays, saying why it stopped."""
    why = stop_reason(out, cfg, time.perf_counter() - start if budget else None)
    if why is None or getattr(bar, "disable", True):
        return
    bar.set_description_str(f"{bar.desc.rstrip(': ')}: {why}", refresh=False)
    bar.total = bar.n  # complete: tqdm.notebook draws a closed, unfinished bar red
    pbar = getattr(bar, "container", None)
    if pbar is not None:  # the notebook widget: its own maximum
        pbar.children[1].max = max(bar.n, 1)
    bar.leave = True
    bar.refresh()


def load_weights(net: nn.Sequential, model: TernaryModel) -> None:
    """Start `net` from a model: its latent weights when stored, else trit x scale (which
    re-ternarizes to the same trits), and its biases."""
    layers = linears(net)
    if [m.weight.shape for m in layers] != [torch.Size(a.shape) for a in model.layers]:
        from openmind.errors import PathwayUnavailable

        raise PathwayUnavailable("the cached ancestor has another architecture; cannot fine-tune it")
    latent = model.latent or [a.weights() for a in model.layers]
    with torch.no_grad():
        for m, w, a in zip(layers, latent, model.layers, strict=True):
            m.weight.copy_(torch.from_numpy(np.asarray(w, dtype=np.float32)))
            m.bias.copy_(torch.from_numpy(a.bias))


def export(net: nn.Sequential, mean: np.ndarray, inv_std: np.ndarray, classes: np.ndarray, *,
           name: str | None, config: dict[str, Any], info: dict[str, Any]) -> TernaryModel:
    """The trained net as a TernaryModel (trits, alphas, biases + latent weights for fine-tunes)."""
    mods = linears(net)
    layers, latent = [], []
    with torch.no_grad():
        for i, m in enumerate(mods):
            t, alpha = ternarize(m.weight.detach().float().cpu(), m.per_row)
            layers.append(Layer(t.numpy().astype(np.int8), alpha.reshape(-1).numpy().astype(np.float32),
                                m.bias.detach().float().cpu().numpy().astype(np.float32),
                                relu=i < len(mods) - 1))
            latent.append(m.weight.detach().float().cpu().numpy().copy())  # owned, not a view of the net
    return TernaryModel(layers, mean, inv_std, classes, name=name, config=config, info=info,
                        latent=latent)


def torch_scores(net: nn.Module, X: np.ndarray, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """The net's outputs on X (float32), computed by torch (for checks and the fp32 baseline)."""
    p = next(net.parameters())
    Xs = ((X.astype(np.float32) - mean) * inv_std).astype(np.float32)
    with torch.no_grad():
        return net.eval()(torch.from_numpy(Xs).to(p.device)).float().cpu().numpy()
