"""The ternary network in torch: TWN layers with a straight-through estimator, and the bridge
between a torch net and a `TernaryModel` (load its weights, export one, score with torch).

Each layer keeps latent float32 weights; the forward pass uses their ternary form t * alpha with
t = sign(w) * [|w| > 0.7 mean|w|] and alpha = mean |w| over the kept weights (per layer or per
output row), and the gradient flows straight through to the latent weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from openmind.errors import PathwayUnavailable
from openmind.pathways.ternary.packed import Layer, TernaryModel

THRESHOLD = 0.7  # TWN: delta = 0.7 * mean|W|


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


def evaluate(net: nn.Module, X: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(accuracy, mean loss) of the net on (X, y), without gradients."""
    with torch.no_grad():
        out = net(X)
        loss = nn.functional.cross_entropy(out, y).item()
        acc = (out.argmax(dim=1) == y).float().mean().item()
    return acc, loss


def load_weights(net: nn.Sequential, model: TernaryModel) -> None:
    """Start `net` from a model: its latent weights when stored, else trit x scale (which
    re-ternarizes to the same trits), and its biases."""
    layers = linears(net)
    if [m.weight.shape for m in layers] != [torch.Size(a.shape) for a in model.layers]:
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
