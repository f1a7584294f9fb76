"""The faces' HTML pieces: the theme's colours, the status dot, the sparkline, the monitor's
chart and how each intent's result looks in a notebook.

Intents return data; how it looks lives here. `register_presenters()` (run on `import openmind`)
registers each result's HTML and the monitor's live chart with `openmind.intents.present`, which
the results' `_repr_html_` ask, so no intent imports a face. Nothing here imports an intent
(`import openmind` under IPython loads the card, which must not load the sense intent), and numpy
only inside the functions that draw arrays.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from openmind.intents import present
from openmind.units import human_duration, human_time

_FG = "var(--jp-ui-font-color1, inherit)"
_FG2 = "var(--jp-ui-font-color2, inherit)"  # secondary text (>= 4.5:1 in both themes, checked in the browser test)
_BORDER = "var(--jp-border-color2, rgba(128,128,128,.35))"
_BG = "var(--jp-layout-color1, transparent)"
_OK = "var(--jp-success-color1, #2e7d32)"
_FAIL = "var(--jp-error-color1, #c62828)"
_WARN = "var(--jp-warn-color1, #b26a00)"
_MONO = "var(--jp-code-font-family, monospace)"
_FONT = "var(--jp-ui-font-family, inherit)"


def _e(value: Any) -> str:
    return html.escape(str(value))  # the card's content was redacted once, in __init__


def _dot(color: str, tip: str) -> str:
    """A status dot (an SVG shape, so the colour marks state without colouring any text)."""
    return (f"<svg width='10' height='10' style='vertical-align:baseline;flex:none' role='img'>"
            f"<title>{_e(tip)}</title><circle cx='5' cy='5' r='4.5' style='fill:{color}'/></svg>")


def _ms(value: Any) -> str:
    try:
        return human_duration(float(value or 0.0) / 1000)
    except (TypeError, ValueError):
        return "?"


def sparkline(values: list[float | None], real: list[int] | None = None, width: int = 120,
              height: int = 18) -> str:
    """A tiny inline SVG line of `values` (no dependency): real stretches solid in the theme's
    brand colour, simulated ones dashed and grey; gaps (None) break the line."""
    pts = [(i, v) for i, v in enumerate(values) if v is not None and math.isfinite(v)]
    real = list(real or [0] * len(values))
    title = (f"{len(values)} points; solid: real (from the device), dashed: simulated"
             if any(real) else f"{len(values)} points, all simulated (dashed)")
    if not pts:
        return ""
    lo, hi = min(v for _, v in pts), max(v for _, v in pts)
    span = (hi - lo) or 1.0
    step = (width - 2) / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> str:
        return f"{1 + i * step:.1f},{height - 2 - (v - lo) / span * (height - 4):.1f}"

    runs: list[tuple[int, list[str]]] = []  # (real?, points) per unbroken stretch of one kind
    prev = None
    for i, v in enumerate(values):
        if v is None or not math.isfinite(v):
            prev = None
            continue
        kind = int(bool(real[i])) if i < len(real) else 0
        if prev is None or runs[-1][0] != kind or prev != i - 1:
            start = [xy(i - 1, values[i - 1])] if prev == i - 1 else []
            runs.append((kind, start))
        runs[-1][1].append(xy(i, v))
        prev = i
    lines = "".join(
        f"<polyline points='{' '.join(p)}' fill='none' stroke-width='1.5' "
        + ("style='stroke:var(--jp-brand-color1,#1976d2)'/>" if kind else
           "stroke-dasharray='3 2' style='stroke:var(--jp-ui-font-color2,#888)'/>")
        for kind, p in runs)
    return (f"<svg class='openmind-spark' width='{width}' height='{height}' role='img' "
            f"style='vertical-align:middle'><title>{title}</title>{lines}</svg>")


def watch_html(w: Any, width: int = 640, height: int = 160, last: int = 2000) -> str:
    """An inline SVG of the watched values with the events marked (no plotting library needed)."""
    import numpy as np

    vals = np.asarray(w.values[-last:], dtype=float)
    start = max(0, len(w.values) - last)
    e = html.escape
    head = (f"<div class='openmind-monitor'><div><b>monitor {e(w.name)}</b>: {e(w.state)} · "
            f"{w.samples} samples · {len(w.events)} events</div>")
    if len(vals) < 2:
        return head + "</div>"
    lo, hi = float(vals.min()), float(vals.max())
    span = hi - lo or 1.0
    xs = np.linspace(0, width, len(vals))
    ys = height - 4 - (vals - lo) / span * (height - 8)
    step = max(1, len(vals) // width)
    points = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs[::step], ys[::step], strict=True))
    marks = []
    for ev in w.events:
        i = ev["sample"] - start
        if 0 <= i < len(vals):
            x = xs[min(i, len(xs) - 1)]
            color = "#2e7d32" if ev["kind"] == "fine-tuned" else "#c62828"
            marks.append(f"<line x1='{x:.1f}' x2='{x:.1f}' y1='0' y2='{height}' stroke='{color}' "
                         f"stroke-dasharray='4 3'><title>{e(ev['kind'])}: {e(ev['detail'])}</title></line>")
    lines = "".join(f"<div style='font-size:90%'>{e(ev['kind'])} at sample {ev['sample']}: "
                    f"{e(ev['detail'])}</div>" for ev in w.events[-6:])
    return (head + f"<svg width='{width}' height='{height}' style='background:var(--jp-layout-color1,#fff);"
            f"border:1px solid var(--jp-border-color2,#ddd)'><polyline fill='none' stroke='#1565c0' "
            f"stroke-width='1' points='{points}'/>{''.join(marks)}</svg>"
            f"<div style='font-size:85%;color:#666'>{lo:.3g} … {hi:.3g}</div>{lines}</div>")


class _LiveChart:
    """The chart in the notebook, updated in place while the monitor watches (IPython display)."""

    def __init__(self, enabled: bool | None) -> None:
        self.handle = None
        self.last = 0.0
        if enabled is False:
            return
        try:
            from IPython import get_ipython
            from IPython.display import HTML, display
        except ImportError:
            return
        shell = get_ipython()
        if enabled is None and (shell is None or not hasattr(shell, "kernel")):
            return
        self._html = HTML
        self.handle = display(HTML("<div>monitor starting…</div>"), display_id=True)

    def update(self, w: Any, force: bool = False) -> None:
        if self.handle is None or (not force and time.monotonic() - self.last < 0.3):
            return
        self.last = time.monotonic()
        self.handle.update(self._html(watch_html(w)))


def _live_chart(enabled: bool | None) -> _LiveChart | None:
    """The monitor's chart in this notebook, or None outside one (or when switched off)."""
    view = _LiveChart(enabled)
    return view if view.handle is not None else None


def signal_html(sig: Any) -> str:
    """A signal in one line: its name, sparkline, samples, rate, span and where it came from."""
    import numpy as np

    prev = sig.preview()
    how = f"{sig.route.pathway.value}/{sig.route.decision.value}" if sig.route else sig.source
    vals = sig.values[np.isfinite(sig.values)]
    span = (f"{vals.min():.4g} to {vals.max():.4g} {html.escape(sig.unit)}" if len(vals) else "no values")
    return (f"<div class='openmind-signal' style='font-family:var(--jp-ui-font-family,inherit);"
            f"color:var(--jp-ui-font-color1,inherit)'><b>{html.escape(sig.name)}</b> "
            f"{sparkline(prev['values'], prev['real'])} {len(sig)} samples at "
            f"{sig.rate_hz:g} Hz ({sig.real_count} real), {span} · "
            f"{html.escape(sig.source)} via {html.escape(how)}</div>")


def validation_html(val: Any) -> str:
    """A validation: the figures, the verdict, per-class precision/recall, the confusion matrix."""
    f = val.figures
    e = html.escape
    head = "".join(f"<th>{e(str(v))}</th>" for v in f.get("labels", []))
    rows = "".join(f"<tr><th>{e(str(v))}</th>" + "".join(f"<td>{n}</td>" for n in r) + "</tr>"
                   for v, r in zip(f.get("labels", []), f.get("confusion", []), strict=False))
    pr = ", ".join(f"{e(k)}: P {f['precision'][k]} / R {f['recall'][k]}" for k in f.get("precision", {}))
    color = "var(--jp-warn-color0, #b45309)" if val.healthy is False else "inherit"
    return (f"<div class='openmind-validation'><div><b>{e(val.name)}</b> {e(val.version or '')}: "
            f"accuracy <b>{f.get('accuracy')}</b> on {f.get('rows')} rows · ECE {f.get('ece')} · "
            f"abstention {f.get('abstention')}</div><div style='color:{color}'>{e(val.verdict)}</div>"
            f"<div>{pr}</div><table><tr><th>true \\ predicted</th>{head}</tr>{rows}</table>"
            + "".join(f"<div>vs {e(str(c['against']))} <code>{e(str(c['version']))}</code>: "
                      f"{c['accuracy']} (this one {c['delta']:+})</div>" for c in val.comparison)
            + "</div>")


def predictions_html(pred: Any) -> str:
    """Predictions: how many, of which model, from where, the route and the first 20 values."""
    import numpy as np

    head = ", ".join(html.escape(str(v)) for v in np.asarray(pred.values).reshape(-1)[:20].tolist())
    more = " …" if len(pred) > 20 else ""
    why = ""
    if pred.route is not None:
        why = (f"<div><b>{html.escape(pred.route.pathway.value)}/{html.escape(pred.route.decision.value)}</b>"
               f": {html.escape(pred.route.reason)}</div>")
    return (f"<div class='openmind-predictions'><div>{len(pred)} predictions of "
            f"<code>{html.escape(str(pred.model))}</code> ({html.escape(pred.source)})</div>"
            f"{why}<div><code>[{head}{more}]</code></div></div>")


def comparison_html(summary: Mapping[str, Any]) -> str:
    """The validator's comparison as a small table, in the warning colour when the version was shed
    (and a monitor's drift events as a list); empty when the record has neither."""
    comparison = summary.get("comparison") or []
    events = summary.get("events") or []
    if not comparison and not events:
        return ""
    cell = f"padding:.1em .5em;border-bottom:1px solid {_BORDER};text-align:left"
    out = []
    if comparison:
        rows = "".join(
            f"<tr><td style='{cell}'>{_e(c.get('against'))}</td><td style='{cell};font-family:{_MONO}'>"
            f"{_e(c.get('version'))}</td><td style='{cell}'>{_e(c.get('accuracy'))}</td>"
            f"<td style='{cell}'>{_e(c.get('delta'))}</td></tr>"
            for c in comparison)
        mark = _dot(_WARN, "shed") + " " if summary.get("healthy") is False else ""
        out.append(f"<div style='margin-top:.3em'>{mark}{_e(summary.get('verdict') or '')}</div>"
                   f"<table class='openmind-comparison' style='border-collapse:collapse;color:{_FG}'>"
                   f"<tr style='color:{_FG2}'><th style='{cell}'>compared with</th><th style='{cell}'>"
                   f"version</th><th style='{cell}'>its accuracy</th><th style='{cell}'>this one</th></tr>"
                   f"{rows}</table>")
    if events:
        items = "".join(f"<li>{_e(ev.get('kind'))} at sample {_e(ev.get('sample'))}: {_e(ev.get('detail'))}</li>"
                        for ev in events)
        out.append(f"<ul class='openmind-events' style='margin:.2em 0'>{items}</ul>")
    return "".join(out)


def comparison_lines(summary: Mapping[str, Any]) -> list[str]:
    """The validator's comparison (this version against the previous one and its parent) as text."""
    lines = [f"  {summary['verdict']}"] if summary.get("comparison") and summary.get("verdict") else []
    for c in summary.get("comparison") or []:
        lines.append(f"  vs {c.get('against')} {c.get('version')}: accuracy {c.get('accuracy')} "
                     f"(this one {c.get('delta'):+})")
    for ev in summary.get("events") or []:
        lines.append(f"  {ev.get('kind')} at sample {ev.get('sample')}: {ev.get('detail')}")
    return lines


def journal_html(records: list[dict[str, Any]], card: Callable[[dict[str, Any]], Any]) -> str:
    """The latest decisions (newest first) as a table, oldest at the top; `card(record)` gives
    each row's title, state, route and reason (the decision card)."""
    if not records:
        return f"<div style='color:{_FG2}'>the journal is empty</div>"
    cell = f"padding:.15em .5em;border-bottom:1px solid {_BORDER};text-align:left"
    rows = []
    for r in reversed(records):
        d = card(r)
        c = r.get("cell") or {}
        when = human_time(r.get("ts", 0))
        rows.append(
            f"<tr><td style='{cell}'>{_e(r.get('id', ''))}</td><td style='{cell}'>{when}</td>"
            f"<td style='{cell}'>{_e(c.get('execution_count') if c.get('execution_count') is not None else '')}</td>"
            f"<td style='{cell}'>{_e(d.title)}</td>"
            f"<td style='{cell};font-family:{_MONO}'>{_dot(_OK if d.ok else _FAIL, d.state)} {_e(d.route_text)}</td>"
            f"<td style='{cell};text-align:right'>{_e(_ms(r.get('duration_ms')))}</td>"
            f"<td style='{cell}'>{_e(d.reason)}</td></tr>")
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in
                   ("#", "time", "cell", "intent", "route", "took", "why"))
    return (f"<table class='openmind-log' style='border-collapse:collapse;color:{_FG};"
            f"background:{_BG}'><thead><tr style='color:{_FG2}'>{head}</tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>")


class Shown:
    """Any HTML + text pair as a displayable value (e.g. `%openmind status`)."""

    def __init__(self, html_text: str, text: str) -> None:
        self.html, self.plain = html_text, text

    def _repr_html_(self) -> str:
        return self.html

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.plain)

    def __repr__(self) -> str:
        return self.plain


def register_presenters() -> None:
    """Teach the intents' results their HTML (and the monitor its live chart); idempotent."""
    present.register("signal", html=signal_html)
    present.register("watch", html=watch_html, live=_live_chart)
    present.register("validation", html=validation_html)
    present.register("predictions", html=predictions_html)
