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
import time
from collections.abc import Callable, Mapping
from typing import Any

from openmind.intents import present
from openmind.jupyter.charts import (
    DRIFT,
    FAIL,
    OK,
    STATE_COLOR,
    WARN,
    heatmap,
    line_chart,
    progress_html,
    sparkline,  # noqa: F401 - the cards' and the tests' sparkline
)
from openmind.units import human_duration, human_time

_FG = "var(--jp-ui-font-color1, inherit)"
_FG2 = "var(--jp-ui-font-color2, inherit)"  # secondary text (>= 4.5:1 in both themes, checked in the browser test)
_BORDER = "var(--jp-border-color2, rgba(128,128,128,.35))"
_BG = "var(--jp-layout-color1, transparent)"
_OK, _FAIL, _WARN = OK, FAIL, WARN  # the state colours: one definition (charts.py)
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


def _count() -> int | None:
    """The execution count of the cell running now (None outside IPython)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    shell = get_ipython()
    return getattr(shell, "execution_count", None) if shell is not None else None


_DRAWN: set[tuple[int | None, Any]] = set()  # (cell, what) charts already drawn in that cell


def journal_key(journal_id: Any) -> tuple[str, str, Any]:
    """A journal record's chart, by the store it was written to (ids restart in another home)."""
    from openmind.memory.store import db_path

    return ("journal", str(db_path()), journal_id)


def drawn(key: Any, mark: bool = False) -> bool:
    """Whether `key`'s chart was drawn in the running cell already (`mark`: it is being drawn
    now), so a cell shows one chart of a thing, not one per display."""
    here = (_count(), key)
    if here[0] is None:  # outside a shell there is no "this cell": every display draws
        return False
    seen = here in _DRAWN
    if mark:
        if len(_DRAWN) > 512:
            _DRAWN.clear()
        _DRAWN.add(here)
    return seen


def _clock(seconds: float) -> str:
    """An axis time: 0 s, 45 s, 2 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.3g} min"
    return f"{seconds / 3600:.3g} h"


def card_picture(intent: str, summary: Mapping[str, Any], journal_id: Any = None) -> str:
    """The card's chart: a training run's validation accuracy per epoch, or a signal over time
    with its value axis (once per cell: the signal's own display then shows none)."""
    if intent == "train" and len(summary.get("val_history") or []) > 1:
        hist = [float(v) for v in summary["val_history"]]
        epochs = int(summary.get("epochs") or len(hist))
        chart = line_chart(hist, x0=1, dx=(epochs - 1) / (len(hist) - 1), x_fmt=lambda x: f"epoch {x:.0f}",
                           y_fmt=lambda v: f"{v * 100:.0f}%", size=(220, 54),
                           title="validation accuracy per epoch", cls="openmind-chart openmind-curve")
        return f"<div style='margin:.1em 0'>{chart}</div>"
    prev = summary.get("preview")
    if intent == "sense" and isinstance(prev, Mapping) and prev.get("values"):
        vals = list(prev.get("values") or [])
        rate, n = float(summary.get("rate_hz") or 1.0), int(summary.get("samples") or len(vals))
        real = list(prev.get("real") or [0] * len(vals))
        if journal_id is not None:
            drawn(journal_key(journal_id), mark=True)
        return f"<div style='margin:.1em 0 .1em 1em'>{_signal_chart(vals, real, n / rate)}</div>"
    return ""


def _signal_chart(values: list[float | None], real: list[int], seconds: float) -> str:
    """A signal's preview over its time span (0 s to the end) with its value axis."""
    title = ("solid: real samples from the device; dashed: simulated" if any(real)
             else "all simulated (dashed)")
    return line_chart(values, real=real, dx=seconds / max(len(values) - 1, 1), x_fmt=_clock,
                      size=(420, 80), title=title, cls="openmind-chart openmind-signal-chart")


def watch_html(w: Any, width: int = 560, height: int = 130, last: int = 2000) -> str:
    """The watched values over samples with value and sample axes, each drift and fine-tune
    marked (its sentence on hover; the card lists the events once)."""
    import numpy as np

    vals = np.asarray(w.values[-last:], dtype=float)
    start = max(0, len(w.values) - last)
    drift = next((e["sample"] for e in w.events if str(e["kind"]).endswith("drift")), None)
    head = (f"<div class='openmind-monitor' style='color:{_FG}'><div><b>monitor {_e(w.name)}</b>: "
            f"{_e(w.state)} · {w.samples:,} samples"
            + (f" · <span style='color:{DRIFT}'>■</span> drift at sample {drift}" if drift is not None else "")
            + (f" · <span style='color:{_OK}'>■</span> fine-tuned" if any(e["kind"] == "fine-tuned" for e in w.events) else "")
            + "</div>")
    if len(vals) < 2:
        return head + "</div>"
    marks = [(float(ev["sample"]), _OK if ev["kind"] == "fine-tuned" else DRIFT,
              f"{ev['kind']} at sample {ev['sample']}: {ev['detail']}") for ev in w.events]
    chart = line_chart(vals.tolist(), x0=start, dx=1, x_fmt=lambda x: f"sample {x:,.0f}",
                       marks=marks, size=(width, height), title=f"{w.name}: the watched values",
                       cls="openmind-chart openmind-monitor-chart")
    return head + chart + "</div>"


def _watch_repr(w: Any) -> str:
    """A Watch shown as a cell's value: the chart, unless the live chart drew it in this cell."""
    if drawn(("watch", id(w))):
        return (f"<div class='openmind-monitor' style='color:{_FG2}'>monitor {_e(w.name)}: {_e(w.state)}"
                f" · {w.samples:,} samples · {len(w.events)} events (chart above)</div>")
    return watch_html(w)


class _Live:
    """A display updated in place while an intent works (IPython display), drawn by `render`;
    shown at the first update, at most every `every` seconds unless forced."""

    def __init__(self, enabled: bool | None, render: Callable[[Any], str], every: float = 0.3) -> None:
        self.handle: Any = None
        self.ok = False
        self.last = 0.0
        self.render, self.every = render, every
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
        self._html, self._display, self.ok = HTML, display, True

    def update(self, value: Any, force: bool = False) -> None:
        if not self.ok or (not force and time.monotonic() - self.last < self.every):
            return
        self.last = time.monotonic()
        page = self._html(self.render(value))
        if self.handle is None:
            self.handle = self._display(page, display_id=True)
        else:
            self.handle.update(page)


class _LiveWatch(_Live):
    def __init__(self, enabled: bool | None) -> None:
        super().__init__(enabled, watch_html)

    def update(self, value: Any, force: bool = False) -> None:
        super().update(value, force)
        if self.ok:
            drawn(("watch", id(value)), mark=True)


def _live(kind: Callable[[bool | None], _Live]) -> Callable[[bool | None], _Live | None]:
    def make(enabled: bool | None) -> _Live | None:
        view = kind(enabled)
        return view if view.ok else None
    return make


def restored_html(mark: Mapping[str, Any]) -> str:
    """The line above replayed outputs: they are restored, from when, and why (warning colour
    when an error brought them back)."""
    made = mark.get("made")
    when = f"made {human_time(made)}" if made else "made in an earlier run"
    error = mark.get("error")
    color = _WARN if error else _FG2
    why = f" because the cell raised <code>{_e(error)}</code>" if error else ""
    return (f"<div class='openmind-restored' data-error='{int(bool(error))}' style='font-family:{_FONT};"
            f"color:{_FG};border-left:4px solid {color};padding:.1em .6em;margin:.1em 0'>"
            f"<b style='color:{color}'>⟲ restored outputs</b>, {_e(when)}{why}:</div>")


def signal_html(sig: Any) -> str:
    """A signal: its name, the values over time with axes (unless its card drew them in this
    cell), samples, rate, range and where it came from."""
    import numpy as np

    how = f"{sig.route.pathway.value}/{sig.route.decision.value}" if sig.route else sig.source
    vals = sig.values[np.isfinite(sig.values)]
    span = (f"{vals.min():.4g} to {vals.max():.4g} {_e(sig.unit)}" if len(vals) else "no values")
    chart = ""
    jid = getattr(sig.route, "journal_id", None) if sig.route else None
    if jid is None or not drawn(journal_key(jid)):
        prev = sig.preview()
        chart = _signal_chart(prev["values"], prev["real"], len(sig) / sig.rate_hz)
    return (f"<div class='openmind-signal' style='font-family:{_FONT};color:{_FG}'><b>{_e(sig.name)}</b> "
            f"{len(sig):,} samples at {sig.rate_hz:g} Hz ({sig.real_count} real), {span} · "
            f"{_e(sig.source)} via {_e(how)}{chart}</div>")


def _pct(value: Any) -> str:
    return f"{value * 100:.1f}%" if isinstance(value, (int, float)) else str(value)


def _3g(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, (int, float)) else "—"


def validation_html(val: Any) -> str:
    """A validation: accuracy first, then calibration and abstention, the verdict, the
    confusion matrix as a shaded grid and per-class precision/recall."""
    f = val.figures
    cell = "padding:0 .5em;text-align:right"
    pr = "".join(f"<tr><td style='{cell}'>{_e(k)}</td><td style='{cell}'>{_3g(f['precision'][k])}</td>"
                 f"<td style='{cell}'>{_3g(f['recall'][k])}</td></tr>" for k in f.get("precision", {}))
    pr = (f"<table style='border-collapse:collapse;margin-top:.3em;color:{_FG}'><tr style='color:{_FG2}'>"
          f"<th style='{cell}'>class</th><th style='{cell}'>precision</th><th style='{cell}'>recall</th>"
          f"</tr>{pr}</table>") if pr else ""
    color = _WARN if val.healthy is False else _FG
    acc = f.get("accuracy")
    return (f"<div class='openmind-validation' style='font-family:{_FONT};color:{_FG}'>"
            f"<div><b>{_e(val.name)}</b> {_e(val.version or '')}: accuracy "
            f"<b>{_e(_pct(acc))}</b> on {f.get('rows')} rows"
            f" · calibration error {f.get('ece')} · abstained {_e(_pct(f.get('abstention')))}</div>"
            f"<div style='color:{color}'>{_e(val.verdict)}</div>"
            f"<div style='display:flex;gap:1em;align-items:flex-start'>"
            f"<div style='flex:none'>{heatmap(f.get('labels', []), f.get('confusion', []))}</div>"
            f"<div style='font-size:90%;color:{_FG2}'>rows: the true class, columns: the predicted one"
            f"{pr}</div></div></div>")


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
            f"<td style='{cell};white-space:nowrap'>{_e(d.title)}</td>"
            f"<td style='{cell};font-family:{_MONO}'>{_dot(STATE_COLOR[d.state], d.state)} {_e(d.route_text)}</td>"
            f"<td style='{cell};text-align:right;white-space:nowrap'>{_e(_ms(r.get('duration_ms')))}</td>"
            f"<td style='{cell}'>{_e(d.brief)}</td></tr>")
    head = "".join(f"<th style='{cell}'>{h}</th>" for h in
                   ("#", "time", "cell", "what", "route", "took", "why"))
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
    present.register("watch", html=_watch_repr, live=_live(_LiveWatch))
    present.register("epochs", live=_live(lambda enabled: _Live(enabled, progress_html, every=0.2)))
    present.register("restored", html=restored_html)
    present.register("validation", html=validation_html)
    present.register("predictions", html=predictions_html)
