"""Charts people look at rather than read, as inline SVG drawn here (no plotting library, nothing
heavy at import): a line with time and value axes (a signal, a monitor's stream with its drift
marked, a training curve), a shaded grid (a confusion matrix) and a progress bar that ends in its
card's state and colour.

Colours are JupyterLab's theme variables (with fallbacks), so one chart reads in light and dark.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from typing import Any

from openmind.units import human_duration

OK = "var(--jp-success-color1, #2e7d32)"
FAIL = "var(--jp-error-color1, #c62828)"
WARN = "var(--jp-warn-color1, #b26a00)"
DRIFT = "var(--openmind-drift-color, #9c27b0)"  # an attention state of its own (not degraded, not failed)
LINE = "var(--jp-brand-color1, #1976d2)"
FG2 = "var(--jp-ui-font-color2, #666)"
GRID = "var(--jp-border-color2, rgba(128,128,128,.35))"
STATE_COLOR = {"ok": OK, "degraded": WARN, "failed": FAIL, "drift": DRIFT, "running": LINE}

Fmt = Callable[[float], str]


def _e(value: Any) -> str:
    return html.escape(str(value))


def tick(value: float) -> str:
    """A short axis label: 3 significant digits, no trailing zeros."""
    return f"{value:.3g}"


def _finite(values: Sequence[float | None]) -> list[tuple[int, float]]:
    return [(i, float(v)) for i, v in enumerate(values) if v is not None and math.isfinite(v)]


def runs(values: Sequence[float | None], real: Sequence[int], xy: Callable[[int, float], str]
         ) -> list[tuple[int, list[str]]]:
    """(real?, points) per unbroken stretch of one kind; a gap (None, nan) breaks the line."""
    out: list[tuple[int, list[str]]] = []
    prev = None
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            prev = None
            continue
        kind = int(bool(real[i])) if i < len(real) else 0
        if prev is None or out[-1][0] != kind or prev != i - 1:
            start = [xy(i - 1, float(values[i - 1]))] if prev == i - 1 else []  # type: ignore[arg-type]
            out.append((kind, start))
        out[-1][1].append(xy(i, v))
        prev = i
    return out


def _polylines(parts: list[tuple[int, list[str]]], width: float = 1.5, dashed_sim: bool = True) -> str:
    return "".join(
        f"<polyline points='{' '.join(p)}' fill='none' stroke-width='{width}' "
        + (f"style='stroke:{LINE}'/>" if kind or not dashed_sim else
           f"stroke-dasharray='3 2' style='stroke:{FG2}'/>")
        for kind, p in parts)


def _thin(values: Sequence[float | None], real: Sequence[int], most: int) -> tuple[list, list, int]:
    """At most `most` points (every k-th), so a long stream stays a small SVG."""
    k = max(1, math.ceil(len(values) / most))
    return list(values[::k]), list(real[::k]) if real else [], k


def line_chart(values: Sequence[float | None], *, real: Sequence[int] | None = None,
               x0: float = 0.0, dx: float = 1.0, x_fmt: Fmt = tick, y_fmt: Fmt = tick,
               marks: Sequence[tuple[float, str, str]] = (), size: tuple[int, int] = (560, 120),
               title: str = "", cls: str = "openmind-chart") -> str:
    """`values` at x = x0 + i*dx with a value axis (low, high) on the left and an x axis (first,
    middle, last) below; `real` marks points drawn solid (the rest dashed, when given);
    `marks`: (x, colour, tooltip) vertical lines (a drift, a fine-tune)."""
    pts = _finite(values)
    if not pts:
        return ""
    width, height = size
    left, bottom, top = 46, 16, 4
    plot_w, plot_h = width - left - 6, height - bottom - top
    vals, rl, k = _thin(values, list(real or [1] * len(values)), plot_w)
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span = (hi - lo) or 1.0
    n = max(len(values) - 1, 1)

    def x_at(i: float) -> float:
        return left + i / n * plot_w

    def xy(i: int, v: float) -> str:
        return f"{x_at(i * k):.1f},{top + plot_h - (v - lo) / span * plot_h:.1f}"

    axis = (f"<line x1='{left}' y1='{top}' x2='{left}' y2='{top + plot_h}' style='stroke:{GRID}'/>"
            f"<line x1='{left}' y1='{top + plot_h}' x2='{left + plot_w}' y2='{top + plot_h}' "
            f"style='stroke:{GRID}'/>")
    text = f"font-size='10' style='fill:{FG2}'"
    labels = (f"<text x='{left - 4}' y='{top + 8}' text-anchor='end' {text}>{_e(y_fmt(hi))}</text>"
              f"<text x='{left - 4}' y='{top + plot_h}' text-anchor='end' {text}>{_e(y_fmt(lo))}</text>")
    for frac, anchor in ((0.0, "start"), (0.5, "middle"), (1.0, "end")):
        labels += (f"<text x='{x_at(frac * n):.1f}' y='{height - 3}' text-anchor='{anchor}' {text}>"
                   f"{_e(x_fmt(x0 + frac * n * dx))}</text>")
    lines = "".join(
        f"<line class='openmind-mark' x1='{x_at((x - x0) / dx):.1f}' x2='{x_at((x - x0) / dx):.1f}' "
        f"y1='{top}' y2='{top + plot_h}' stroke-width='2' stroke-dasharray='4 3' style='stroke:{color}'>"
        f"<title>{_e(tip)}</title></line>"
        for x, color, tip in marks if x0 <= x <= x0 + n * dx)
    body = _polylines(runs(vals, rl, xy), dashed_sim=real is not None)
    return (f"<svg class='{cls}' width='{width}' height='{height}' role='img' "
            f"style='display:block;overflow:visible'><title>{_e(title)}</title>{axis}{labels}{body}{lines}</svg>")


def sparkline(values: list[float | None], real: list[int] | None = None, width: int = 120,
              height: int = 18) -> str:
    """A tiny inline SVG line of `values`: real stretches solid in the theme's brand colour,
    simulated ones dashed and grey; gaps (None) break the line."""
    pts = _finite(values)
    if not pts:
        return ""
    real = list(real or [0] * len(values))
    title = (f"{len(values)} points; solid: real (from the device), dashed: simulated"
             if any(real) else f"{len(values)} points, all simulated (dashed)")
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span = (hi - lo) or 1.0
    step = (width - 2) / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{1 + i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}"

    return (f"<svg class='openmind-spark' width='{width}' height='{height}' role='img' "
            f"style='vertical-align:middle'><title>{title}</title>{_polylines(runs(values, real, xy))}</svg>")


def heatmap(labels: Sequence[Any], matrix: Sequence[Sequence[int]], cell: int = 26) -> str:
    """A confusion matrix as a shaded grid: rows are the true class, columns the predicted one;
    the shade is the share of the row (the diagonal: right), each count in its square."""
    n = len(labels)
    if not n:
        return ""
    pad = 30
    size = pad + n * cell
    text = f"font-size='10' style='fill:{FG2}'"
    out = []
    for j, lab in enumerate(labels):
        out.append(f"<text x='{pad + j * cell + cell / 2}' y='{pad - 6}' text-anchor='middle' {text}>"
                   f"{_e(str(lab)[:4])}</text>")
        out.append(f"<text x='{pad - 4}' y='{pad + j * cell + cell / 2 + 3}' text-anchor='end' {text}>"
                   f"{_e(str(lab)[:4])}</text>")
    for i, row in enumerate(matrix):
        total = sum(row) or 1
        for j, count in enumerate(row):
            share = count / total
            color = OK if i == j else FAIL
            out.append(
                f"<rect x='{pad + j * cell}' y='{pad + i * cell}' width='{cell - 1}' height='{cell - 1}' "
                f"fill-opacity='{0.08 + 0.85 * share:.2f}' style='fill:{color}'>"
                f"<title>true {_e(labels[i])}, predicted {_e(labels[j])}: {count} ({share:.0%} of the row)"
                f"</title></rect>")
            if count:
                out.append(f"<text x='{pad + j * cell + cell / 2}' y='{pad + i * cell + cell / 2 + 3}' "
                           f"text-anchor='middle' font-size='9' style='fill:var(--jp-ui-font-color1,#000)'>"
                           f"{count}</text>")
    return (f"<svg class='openmind-heatmap' width='{size}' height='{size}' role='img'>"
            f"<title>confusion matrix: rows true class, columns predicted; shade: share of the row"
            f"</title>{''.join(out)}</svg>")


def progress_html(s: dict[str, Any]) -> str:
    """A training run's bar: fills as epochs pass toward the total the budget allows, and ends in
    its state's colour (ok, degraded, failed); the figures beside it, never the stop reason."""
    state = str(s.get("state") or "running")
    epoch, total = int(s.get("epoch") or 0), max(int(s.get("total") or 1), 1)
    frac = 1.0 if state != "running" else min(epoch / total, 1.0)
    if state == "running":
        about = "~" if s.get("budget") is not None and total < int(s.get("epochs") or total) else ""
        words = f"epoch {epoch} of {about}{total}"
        if s.get("left") is not None:
            words += f" · {human_duration(float(s['left']))} left"
    else:
        words = f"{epoch} epoch{'s' if epoch != 1 else ''} in {human_duration(float(s.get('elapsed') or 0))}"
    acc = (s.get("figures") or {}).get("val_accuracy")
    if state != "running" and s.get("curve"):
        acc = max(s["curve"])  # the kept model is the best epoch's, as the card says
    if acc is not None:
        words += f" · accuracy {float(acc) * 100:.1f}%"
    color = STATE_COLOR.get(state, LINE)
    return (f"<div class='openmind-progress openmind-progress-{_e(state)}' data-state='{_e(state)}' "
            f"style='display:flex;gap:.6em;align-items:center;font-family:var(--jp-ui-font-family,inherit);"
            f"font-size:var(--jp-ui-font-size1,13px);color:var(--jp-ui-font-color1,inherit);max-width:60em'>"
            f"<span style='flex:none'>{_e(s.get('desc') or 'train')}</span>"
            f"<span style='flex:1 1 12em;min-width:8em;height:.7em;border-radius:3px;"
            f"background:{GRID}'><span class='openmind-progress-fill' style='display:block;height:100%;"
            f"width:{frac * 100:.1f}%;border-radius:3px;background:{color}'></span></span>"
            f"<span style='flex:none;font-variant-numeric:tabular-nums'>{_e(words)}</span></div>")
