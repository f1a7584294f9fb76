"""How a training run reports its epochs: one state dict per epoch to a view that draws it.

The view is the caller's (the train intent passes the notebook face's live bar, an object with
`update(state, force=False)`), or a plain tqdm bar in a terminal, or nothing (`progress=False`).
Each state says the epoch, the total the run will reach (with a time budget: the epochs that fit
in it at the pace so far, never more than asked), the time left, the latest figures, and at the
end how it ended (`state`: ok, degraded for a budget stop, failed), so a bar ends in the same
state and colour as the card below it. Why it stopped is the card's to say, not the bar's.
"""

from __future__ import annotations

import math
import time
from typing import Any

# how a run's end reads on its bar, the same words as the card's states
END_STATE = {"epochs": "ok", "early_stop": "ok", "budget": "degraded", "interrupted": "failed",
             "error": "failed"}


def expected_total(epoch: int, epochs: int, elapsed: float, budget: float | None) -> int:
    """The epochs this run will reach: all of them, or with a budget the ones that fit in what
    is left at the pace so far (at least the current one)."""
    if budget is None or epoch <= 0 or elapsed <= 0:
        return epochs
    per_epoch = elapsed / epoch
    return max(epoch, min(epochs, epoch + math.floor(max(budget - elapsed, 0.0) / per_epoch)))


class EpochReport:
    """Turns the loop's epochs into states for `view` (None: nothing is drawn)."""

    def __init__(self, view: Any, desc: str, epochs: int, budget: float | None) -> None:
        self.view, self.desc, self.epochs, self.budget = view, desc, epochs, budget
        self.start = time.perf_counter()
        self.ended = False
        self.epoch = 0
        self.figures: dict[str, float] = {}
        self.curve: list[float] = []
        self._send(force=True)

    def state(self, end: str | None = None) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.start
        total = self.epoch if end else expected_total(self.epoch, self.epochs, elapsed, self.budget)
        left = None
        if not end and self.epoch:
            left = elapsed / self.epoch * (total - self.epoch)
            if self.budget is not None:
                left = min(left, max(self.budget - elapsed, 0.0))
        return {"desc": self.desc, "epoch": self.epoch, "total": max(total, 1), "epochs": self.epochs,
                "budget": self.budget, "elapsed": elapsed, "left": left, "figures": dict(self.figures),
                "curve": list(self.curve), "state": END_STATE.get(end or "", "running") if end else "running"}

    def step(self, epoch: int, **figures: float) -> None:
        self.epoch, self.figures = epoch, figures
        if "val_accuracy" in figures:
            self.curve.append(round(float(figures["val_accuracy"]), 4))
        self._send()

    def restart(self) -> None:
        """The loop starts now (the bar showed while torch loaded): pace and budget count from here."""
        self.start = time.perf_counter()

    def end(self, stopped: str) -> None:
        """The run's end, in its state's colour; only the first end counts (the loop's, else the
        caller's when the run never reached the loop)."""
        if self.ended:
            return
        self.ended = True
        self._send(stopped, force=True)
        close = getattr(self.view, "close", None)
        if close is not None:
            close()

    def _send(self, end: str | None = None, force: bool = False) -> None:
        if self.view is not None:
            self.view.update(self.state(end), force=force)


class TqdmView:
    """A terminal's bar (tqdm): its total follows the budget; it closes complete at a normal end."""

    def __init__(self) -> None:
        self.bar: Any = None

    def update(self, state: dict[str, Any], force: bool = False) -> None:
        from tqdm.auto import tqdm

        if self.bar is None:
            self.bar = tqdm(total=state["total"], desc=state["desc"], unit="epoch", leave=False)
        self.bar.total = state["total"]
        self.bar.n = state["epoch"]
        figs = state["figures"]
        if figs:
            self.bar.set_postfix({k.replace("val_accuracy", "val_acc"): f"{v:.3f}" for k, v in figs.items()},
                                 refresh=False)
        if state["state"] in ("ok", "degraded"):
            self.bar.leave = True
        self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def reporter(progress: Any, desc: str, epochs: int, budget: float | None) -> EpochReport:
    """The run's report: the caller's own report (shown before the loop), its view (an object
    with `update`), tqdm when True, or none."""
    if isinstance(progress, EpochReport):
        progress.restart()
        return progress
    if hasattr(progress, "update"):
        view = progress
    else:
        view = TqdmView() if progress else None
    return EpochReport(view, desc, epochs, budget)
