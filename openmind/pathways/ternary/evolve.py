"""Cells that inherit and grow: ancestral priors for a new network, growth and extinction of units.

Ancestral priors (the "DNA" idea): the models already in muscle memory carry what training found.
`fit_prior` turns their latent weights into per-layer distributions, by the layer's role (first,
hidden, last): the empirical distribution of weights scaled by sqrt(fan-in) (so it transfers across
widths), of biases, and the ternary zero fraction and scale; where an ancestor's layer reads the
same inputs as the new one, its units' incoming weight vectors are kept whole as genes.
`sample_into` initialises a new network from them: genes where they fit, else draws from the
layer's distribution.

Growth and extinction (Dynamic Neural Architecture, Net2Net): after a plateau, the hidden units
that carry the least (utility = |incoming| x |outgoing|) die and the strongest split in two; the
halves share the outgoing weight, so the function is kept. The widths a model ends with are any
the packed format holds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from openmind.errors import BadInput
from openmind.pathways.ternary.packed import U16_MAX, TernaryModel

ROLES = ("first", "hidden", "last")
QUANTILES = np.linspace(0.0, 1.0, 201)
MAX_GENES = 4096  # incoming-weight rows kept per role


def _role(i: int, n_layers: int) -> str:
    if i == n_layers - 1:
        return "last"
    return "first" if i == 0 else "hidden"


@dataclass
class LayerPrior:
    """What the ancestors' layers of one role look like."""

    role: str
    weight_q: np.ndarray          # quantiles of latent weight x sqrt(fan_in)
    bias_q: np.ndarray            # quantiles of biases
    zero_fraction: float          # share of zero trits
    scale_gain: float             # ternary scale x sqrt(fan_in)
    genes: dict[int, np.ndarray] = field(default_factory=dict)  # fan_in -> rows [k, fan_in]
    sources: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "zero_fraction": round(self.zero_fraction, 4),
                "scale_gain": round(self.scale_gain, 4), "genes": {k: len(v) for k, v in self.genes.items()},
                "sources": self.sources}


@dataclass
class AncestralPrior:
    """Per-role layer priors fitted from ancestor models, and the ancestors' names."""

    layers: dict[str, LayerPrior]
    ancestors: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {"ancestors": self.ancestors, "layers": {r: p.to_dict() for r, p in self.layers.items()}}


def fit_prior(models: Sequence[TernaryModel]) -> AncestralPrior:
    """Fit per-role weight, bias, zero-fraction and scale distributions from `models`.

    BadInput when no model carries weights to learn from (there is nothing to inherit)."""
    pools: dict[str, dict[str, list]] = {r: {"w": [], "b": [], "zero": [], "gain": [], "genes": {},
                                             "src": []} for r in ROLES}
    names: list[str] = []
    for model in models:
        latent = model.latent or [a.weights() for a in model.layers]
        n = len(model.layers)
        for i, (layer, w) in enumerate(zip(model.layers, latent, strict=True)):
            w = np.asarray(w, dtype=np.float32)
            out, fan_in = w.shape
            pool = pools[_role(i, n)]
            pool["w"].append((w * math.sqrt(fan_in)).reshape(-1))
            pool["b"].append(np.asarray(layer.bias, dtype=np.float32))
            pool["zero"].append(float((layer.trits == 0).mean()))
            pool["gain"].append(float(np.mean(layer.scale)) * math.sqrt(fan_in))
            pool["genes"].setdefault(fan_in, []).append(w)
            pool["src"].append(f"{model.name or '?'}[{i}]")
        names.append(model.name or "?")
    if not names:
        raise BadInput("no ancestor models to fit a prior from: train any model first, or use "
                       "init='default'")
    layers: dict[str, LayerPrior] = {}
    for role, pool in pools.items():
        if not pool["w"]:
            continue
        genes = {k: np.concatenate(v)[:MAX_GENES] for k, v in pool["genes"].items()}
        layers[role] = LayerPrior(role, np.quantile(np.concatenate(pool["w"]), QUANTILES),
                                  np.quantile(np.concatenate(pool["b"]), QUANTILES),
                                  float(np.mean(pool["zero"])), float(np.mean(pool["gain"])),
                                  genes, pool["src"])
    return AncestralPrior(layers, sorted(set(names)))


def _nearest(prior: AncestralPrior, role: str) -> LayerPrior:
    order = {"first": ("first", "hidden", "last"), "hidden": ("hidden", "first", "last"),
             "last": ("last", "hidden", "first")}[role]
    return next(prior.layers[r] for r in order if r in prior.layers)


def sample_into(linears: Sequence[nn.Linear], prior: AncestralPrior, seed: int) -> dict[str, int]:
    """Initialise `linears` (in place) from the prior; returns how many units came from genes."""
    rng = np.random.default_rng(seed)
    inherited = 0
    n = len(linears)
    with torch.no_grad():
        for i, m in enumerate(linears):
            out, fan_in = m.weight.shape
            lp = _nearest(prior, _role(i, n))
            u = rng.random((out, fan_in))
            w = np.interp(u, QUANTILES, lp.weight_q) / math.sqrt(fan_in)
            genes = lp.genes.get(fan_in)
            if genes is not None and _role(i, n) != "last":
                # whole units inherited (feature detectors of the same inputs), jittered
                take = min(out, len(genes))
                rows = genes[rng.choice(len(genes), size=take, replace=False)]
                noise = rng.normal(0.0, 0.05 * float(np.std(rows)) + 1e-8, rows.shape)
                w[:take] = rows + noise
                inherited += take
            b = np.interp(rng.random(out), QUANTILES, lp.bias_q)
            m.weight.copy_(torch.from_numpy(w.astype(np.float32)))
            m.bias.copy_(torch.from_numpy(b.astype(np.float32)))
    return {"units_inherited": inherited}


# --------------------------------------------------------------------------- growth / extinction


def utility(linears: Sequence[nn.Linear], layer: int) -> np.ndarray:
    """Per hidden unit of `layer`: |incoming weights| x |outgoing weights| (latent)."""
    w_in = linears[layer].weight.detach().float().cpu()
    w_out = linears[layer + 1].weight.detach().float().cpu()
    return (w_in.norm(dim=1) * w_out.norm(dim=0)).numpy()


def extinction(linears: list[nn.Linear], layer: int, remove: Sequence[int],
               split: Sequence[int], *, seed: int = 0) -> tuple[nn.Linear, nn.Linear]:
    """New (layer, next layer) with the `remove` units deleted and the `split` units split in two.

    A split unit's copy gets the same incoming weights and bias (plus a tiny jitter to break the
    symmetry) and both halves share the outgoing weight (Net2Net), so the layer computes what it
    did. Refuses to remove every unit of a layer (the network would be cut in two)."""
    if layer < 0 or layer + 1 >= len(linears):
        raise BadInput(f"layer {layer} is not a hidden layer (the network has {len(linears)} layers)")
    a, b = linears[layer], linears[layer + 1]
    width = a.weight.shape[0]
    remove = sorted({int(r) for r in remove})
    split = [int(s) for s in split if int(s) not in set(remove)]
    if any(not 0 <= r < width for r in [*remove, *split]):
        raise BadInput(f"unit index out of range for layer {layer} of width {width}")
    if len(remove) >= width:
        raise BadInput(f"extinction refused: it would remove all {width} units of hidden layer "
                       f"{layer}, cutting the network in two; keep at least one unit")
    keep = [j for j in range(width) if j not in set(remove)]
    new_width = len(keep) + len(split)
    if new_width > U16_MAX:
        raise BadInput(f"growth refused: layer {layer} would have {new_width} units "
                       f"(the packed format allows {U16_MAX})")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        w_in, b_in, w_out = a.weight.detach(), a.bias.detach(), b.weight.detach().clone()
        for s in split:
            w_out[:, s] *= 0.5  # the two halves share the outgoing weight
        rows = [w_in[keep], w_in[split] + 1e-3 * w_in.std() * torch.randn(len(split), w_in.shape[1],
                                                                           generator=gen).to(w_in)]
        new_a = type(a)(a.in_features, new_width, a.quantize, a.per_row).to(w_in.device)
        new_a.weight.copy_(torch.cat(rows))
        new_a.bias.copy_(torch.cat([b_in[keep], b_in[split]]))
        new_b = type(b)(new_width, b.out_features, b.quantize, b.per_row).to(w_in.device)
        new_b.weight.copy_(torch.cat([w_out[:, keep], w_out[:, split]], dim=1))
        new_b.bias.copy_(b.bias.detach())
    return new_a, new_b


def plan_extinction(u: np.ndarray, *, die_below: float = 0.25, max_die: float = 0.25,
                    split_top: float = 0.125, max_width: int | None = None) -> tuple[list[int], list[int]]:
    """Which units die (utility under `die_below` x the median, at most `max_die` of the layer,
    always the weakest one at least) and which split (the strongest `split_top`, at least one)."""
    width = len(u)
    order = np.argsort(u)
    weak = [int(j) for j in order if u[j] < die_below * float(np.median(u))]
    n_die = min(max(1, len(weak)), max(0, math.floor(max_die * width)), width - 1)
    die = [int(j) for j in order[:n_die]]
    n_split = max(1, math.ceil(split_top * width))
    if max_width is not None:
        n_split = max(0, min(n_split, max_width - (width - n_die)))
    born = [int(j) for j in order[::-1][:n_split] if int(j) not in set(die)]
    return die, born
