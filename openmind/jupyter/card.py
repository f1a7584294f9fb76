"""The decision card: what a cell decided, shown as HTML in JupyterLab and as text in a terminal.

One card renders one journal record (the executor writes one per intent call), so a card shows
exactly what the journal holds: the pathway, the decision, the reason, every attempt with its time,
the pathways left out and why, and the result summary. `card_for(route)` makes one from any
result's `.route`, which is how plain Python users get the same card (`Route._repr_html_`).

Colours come from JupyterLab's theme variables (with neutral fallbacks), so the card is readable
in light and dark themes and in other frontends.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

from openmind.config import redact
from openmind.flow.journal import format_records
from openmind.vocab import Route

# The MIME type carrying the machine-readable decision next to the HTML and the text.
MIME = "application/vnd.openmind.decision+json"

_FG = "var(--jp-ui-font-color1, inherit)"
_FG2 = "var(--jp-ui-font-color2, inherit)"
_BORDER = "var(--jp-border-color2, rgba(128,128,128,.35))"
_BG = "var(--jp-layout-color1, transparent)"
_BG2 = "var(--jp-layout-color2, rgba(128,128,128,.08))"
_OK = "var(--jp-success-color1, #2e7d32)"
_FAIL = "var(--jp-error-color1, #c62828)"
_WARN = "var(--jp-warn-color1, #b26a00)"
_MONO = "var(--jp-code-font-family, monospace)"
_FONT = "var(--jp-ui-font-family, inherit)"

_POLICY_DEFAULTS = {"fallback": "auto", "strategy": "adaptive", "budget": None, "fresh": False,
                    "prefer": [], "source": "auto", "timeout": None, "strict": False}


def _e(value: Any) -> str:
    return html.escape(str(value))  # the card's content was redacted once, in __init__


def _ms(value: Any) -> str:
    try:
        ms = float(value or 0.0)
    except (TypeError, ValueError):
        return "?"
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"


def _short(value: Any, limit: int = 80) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)) and len(value) > 6:
        text = "[" + ", ".join(_short(v, 12) for v in value[:6]) + f", … ({len(value)} items)]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class DecisionCard:
    """One decision, renderable as HTML (`_repr_html_`), text (`text()`, `_repr_pretty_`) or JSON.

    Built from a journal record (`DecisionCard(record)`) or a result's route (`card_for(route)`).
    `label` is the cell's `--model` label, `note` an extra line (e.g. an intent mismatch).
    """

    def __init__(self, record: Mapping[str, Any], *, label: str | None = None,
                 note: str | None = None, assumed: Sequence[str] = ()) -> None:
        self.record: dict[str, Any] = redact(dict(record))  # once: everything shown comes from here
        self.label = redact(label)
        self.note = redact(note)
        self.assumed = tuple(assumed)  # resources masked when the card was made (if no resources)

    # ------------------------------------------------------------------ facts

    @property
    def ok(self) -> bool:
        return bool(self.record.get("ok"))

    @property
    def degraded(self) -> str | None:
        """Why the result is not what the cell asked for (None: it is); shown in the warning colour."""
        return self.record.get("degraded") if self.ok else None

    @property
    def color(self) -> str:
        return _FAIL if not self.ok else _WARN if self.degraded else _OK

    @property
    def title(self) -> str:
        r = self.record
        what = str(r.get("intent") or "?")
        if r.get("name"):
            what += f" '{r['name']}'"
        return what

    @property
    def route_text(self) -> str:
        r = self.record
        if not self.ok:
            return "FAILED"
        return f"{r.get('pathway')}/{r.get('decision')}" + (" DEGRADED" if self.degraded else "")

    def attempts(self) -> list[dict[str, Any]]:
        return list(self.record.get("attempts") or [])

    def excluded(self) -> list[tuple[str, str]]:
        plan = self.record.get("plan") or {}
        out = []
        for item in plan.get("excluded") or self.record.get("excluded") or []:
            if isinstance(item, Mapping):
                out.append((str(item.get("pathway")), str(item.get("reason"))))
            else:
                out.append((str(item[0]), str(item[1])))
        return out

    def policy_items(self) -> list[tuple[str, Any]]:
        """The policy options the cell changed from the defaults."""
        pol = self.record.get("policy") or {}
        return [(k, v) for k, v in pol.items() if k in _POLICY_DEFAULTS and v != _POLICY_DEFAULTS[k]]

    def masked(self) -> list[tuple[str, str]]:
        """Resources that were absent only because of `assume` (the usual reason a route changed)."""
        res = self.record.get("resources")
        if not res:
            return [(n, f"masked by assume ({n}=off)") for n in self.assumed]
        return [(n, str(r.get("reason"))) for n, r in res.items()
                if isinstance(r, Mapping) and r.get("status") == "masked"]

    def untried(self) -> list[tuple[str, str]]:
        """Candidates of the plan that were not needed (what would have run next, and why)."""
        tried = len(self.attempts())
        cands = (self.record.get("plan") or {}).get("candidates") or []
        return [(f"{c.get('pathway')}/{c.get('decision')}", str(c.get("reason"))) for c in cands[tried:]]

    def summary(self) -> dict[str, Any]:
        return dict(self.record.get("summary") or {})

    def where(self) -> str:
        cell = self.record.get("cell") or {}
        parts = []
        if self.record.get("id") is not None:
            parts.append(f"journal #{self.record['id']}")
        if cell.get("execution_count") is not None:
            parts.append(f"cell [{cell['execution_count']}]")
        if cell.get("notebook"):
            parts.append(str(cell["notebook"]))
        if self.record.get("ts"):
            parts.append(_dt.datetime.fromtimestamp(self.record["ts"]).strftime("%H:%M:%S"))
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The compact decision carried in the card's MIME bundle (what `openmind run` reads)."""
        r = self.record
        cell = r.get("cell") or {}
        return {
            "id": r.get("id"), "intent": r.get("intent"), "name": r.get("name"),
            "ok": self.ok, "pathway": r.get("pathway"), "decision": r.get("decision"),
            "reason": r.get("reason"), "duration_ms": r.get("duration_ms"),
            "degraded": self.degraded, "execution_count": cell.get("execution_count"), "label": self.label,
        }

    # ------------------------------------------------------------------ text

    def text(self) -> str:
        r = self.record
        head = f"openmind {self.title}: {self.route_text}  ({_ms(r.get('duration_ms'))})"
        if self.label:
            head += f"  [model: {self.label}]"
        lines = [head, f"  why: {r.get('reason') or r.get('error') or ''}"]
        if self.degraded:
            lines.append(f"  degraded: {self.degraded}")
        if self.note:
            lines.append(f"  note: {self.note}")
        for name, why in self.masked():
            lines.append(f"  assumed absent: {name} ({why})")
        attempts = self.attempts()
        if attempts:
            lines.append("  attempts:")
            for i, a in enumerate(attempts, 1):
                tail = a.get("error") or a.get("reason") or ""
                lines.append(f"    {i}. {a.get('pathway')}/{a.get('decision')}  {a.get('outcome')}  "
                             f"{_ms(a.get('duration_ms'))}  {tail}")
        untried = self.untried()
        if untried:
            lines.append("  next in line (not needed):")
            lines.extend(f"    - {p}: {why}" for p, why in untried)
        excluded = self.excluded()
        if excluded:
            lines.append("  not taken:")
            lines.extend(f"    - {p}: {why}" for p, why in excluded)
        summary = self.summary()
        if summary:
            lines.append("  result: " + ", ".join(f"{k}={_short(v, 40)}" for k, v in summary.items()
                                                 if k not in _RICH))
        lines.extend(comparison_lines(summary))
        pol = self.policy_items()
        if pol:
            lines.append("  policy: " + ", ".join(f"{k}={v}" for k, v in pol))
        where = self.where()
        if where:
            lines.append(f"  {where}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def __repr__(self) -> str:
        return f"<DecisionCard {self.title}: {self.route_text}>"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    # ------------------------------------------------------------------ html

    def _repr_html_(self) -> str:
        r = self.record
        color = self.color
        badge = (f"<span style='font-family:{_MONO};font-weight:600;color:{color}'>"
                 f"{_e(self.route_text)}</span>")
        label = (f" <span style='color:{_FG2}'>· model {_e(self.label)}</span>" if self.label else "")
        head = (f"<div style='display:flex;gap:.6em;align-items:baseline;flex-wrap:wrap'>"
                f"<strong>openmind {_e(self.title)}</strong>{badge}{label}"
                f"<span style='margin-left:auto;color:{_FG2}'>{_e(_ms(r.get('duration_ms')))}</span></div>")
        body = [head, f"<div style='margin:.3em 0'><span style='color:{_FG2}'>why</span> "
                      f"{_e(r.get('reason') or r.get('error') or '')}</div>"]
        if self.degraded:
            body.append(f"<div class='openmind-degraded' style='color:{_WARN};font-weight:600'>"
                        f"⚠ degraded: {_e(self.degraded)}</div>")
        if self.note:
            body.append(f"<div style='color:{_WARN}'>⚠ {_e(self.note)}</div>")
        for name, why in self.masked():
            body.append(f"<div style='color:{_WARN}'>assumed absent: <b>{_e(name)}</b> "
                        f"<span style='color:{_FG2}'>({_e(why)})</span></div>")
        body.append(self._attempts_html())
        body.append(_pathway_list("next in line", self.untried()))
        body.append(_pathway_list("not taken", self.excluded()))
        summary = self.summary()
        if summary:
            items = " · ".join(f"{_e(k)} <b>{_e(_short(v))}</b>" for k, v in summary.items() if k not in _RICH)
            body.append(f"<div style='margin-top:.3em'><span style='color:{_FG2}'>result</span> {items}</div>")
        body.append(comparison_html(summary))
        foot = []
        pol = self.policy_items()
        if pol:
            foot.append("policy " + ", ".join(f"{_e(k)}={_e(v)}" for k, v in pol))
        if self.where():
            foot.append(_e(self.where()))
        if foot:
            body.append(f"<div style='margin-top:.3em;color:{_FG2};font-size:90%'>{' · '.join(foot)}</div>")
        return (f"<div class='openmind-card' data-pathway='{_e(r.get('pathway'))}' "
                f"data-decision='{_e(r.get('decision'))}' data-ok='{int(self.ok)}' "
                f"data-degraded='{int(bool(self.degraded))}' "
                f"style='font-family:{_FONT};color:{_FG};background:{_BG};border:1px solid {_BORDER};"
                f"border-left:4px solid {color};border-radius:4px;padding:.5em .8em;margin:.3em 0;"
                f"max-width:60em'>{''.join(body)}</div>")

    def _attempts_html(self) -> str:
        attempts = self.attempts()
        if not attempts:
            return ""
        rows = []
        for i, a in enumerate(attempts, 1):
            ok = a.get("outcome") == "ok"
            rows.append(
                f"<tr><td>{i}</td><td style='font-family:{_MONO}'>{_e(a.get('pathway'))}/"
                f"{_e(a.get('decision'))}</td><td style='color:{_OK if ok else _FAIL}'>"
                f"{_e(a.get('outcome'))}</td><td style='text-align:right'>{_e(_ms(a.get('duration_ms')))}"
                f"</td><td>{_e(a.get('error') or a.get('reason') or '')}</td></tr>")
        cell = f"padding:.15em .5em;border-bottom:1px solid {_BORDER};text-align:left"
        return (f"<table style='border-collapse:collapse;margin:.2em 0;color:{_FG};background:{_BG2}'>"
                f"<thead><tr style='color:{_FG2}'><th style='{cell}'>#</th><th style='{cell}'>attempt"
                f"</th><th style='{cell}'>outcome</th><th style='{cell}'>time</th><th style='{cell}'>"
                f"reason</th></tr></thead><tbody>{''.join(rows)}</tbody></table>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.text(), "text/html": self._repr_html_(), MIME: self.to_json()}


def card_for(route: Any, excluded: Sequence[tuple[Any, str]] | None = None) -> DecisionCard:
    """A card for a result's `.route`: the full journal record when it has one, else the route."""
    jid = getattr(route, "journal_id", None)
    record = dict(route.record) if getattr(route, "record", None) else None
    if record is None:
        record = dict(route.to_dict())
        record["ok"] = any(a.get("outcome") == "ok" for a in record.get("attempts") or []) or not record.get("attempts")
        record["id"] = jid
    if excluded is not None:
        record["excluded"] = [{"pathway": str(p), "reason": r} for p, r in excluded]
        record.pop("plan", None)
    return DecisionCard(record)


class JournalTable:
    """The latest decisions as an HTML table (`%openmind log`) with the CLI's text as fallback."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = records  # newest first, as journal() returns them

    def text(self) -> str:
        return format_records(self.records) if self.records else "the journal is empty"

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(self.text())

    def __repr__(self) -> str:
        return self.text()

    def _repr_html_(self) -> str:
        if not self.records:
            return f"<div style='color:{_FG2}'>the journal is empty</div>"
        cell = f"padding:.15em .5em;border-bottom:1px solid {_BORDER};text-align:left"
        rows = []
        for r in reversed(self.records):
            card = DecisionCard(r)
            c = r.get("cell") or {}
            when = _dt.datetime.fromtimestamp(r.get("ts", 0)).strftime("%H:%M:%S")
            rows.append(
                f"<tr><td style='{cell}'>{_e(r.get('id', ''))}</td><td style='{cell}'>{when}</td>"
                f"<td style='{cell}'>{_e(c.get('execution_count') if c.get('execution_count') is not None else '')}</td>"
                f"<td style='{cell}'>{_e(card.title)}</td>"
                f"<td style='{cell};font-family:{_MONO};color:{card.color}'>{_e(card.route_text)}</td>"
                f"<td style='{cell};text-align:right'>{_e(_ms(r.get('duration_ms')))}</td>"
                f"<td style='{cell}'>{_e(r.get('reason') or r.get('error') or '')}</td></tr>")
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


# summary keys shown by their own renderers below, not in the one-line result
_RICH = ("comparison", "events")


def comparison_lines(summary: Mapping[str, Any]) -> list[str]:
    """The validator's comparison (this version against the previous one and its parent) as text."""
    lines = []
    for c in summary.get("comparison") or []:
        lines.append(f"  vs {c.get('against')} {c.get('version')}: accuracy {c.get('accuracy')} "
                     f"(this one {c.get('delta'):+})")
    for ev in summary.get("events") or []:
        lines.append(f"  {ev.get('kind')} at sample {ev.get('sample')}: {ev.get('detail')}")
    return lines


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
            f"<td style='{cell};color:{_OK if (c.get('delta') or 0) >= 0 else _WARN}'>{_e(c.get('delta'))}</td></tr>"
            for c in comparison)
        color = _WARN if summary.get("healthy") is False else _FG
        out.append(f"<div style='margin-top:.3em;color:{color}'>{_e(summary.get('verdict') or '')}</div>"
                   f"<table class='openmind-comparison' style='border-collapse:collapse;color:{_FG}'>"
                   f"<tr style='color:{_FG2}'><th style='{cell}'>compared with</th><th style='{cell}'>"
                   f"version</th><th style='{cell}'>its accuracy</th><th style='{cell}'>this one</th></tr>"
                   f"{rows}</table>")
    if events:
        items = "".join(f"<li>{_e(ev.get('kind'))} at sample {_e(ev.get('sample'))}: {_e(ev.get('detail'))}</li>"
                        for ev in events)
        out.append(f"<ul class='openmind-events' style='margin:.2em 0;color:{_WARN}'>{items}</ul>")
    return "".join(out)


def _pathway_list(title: str, pairs: list[tuple[str, str]]) -> str:
    """A folded list of (pathway, why) lines; empty when there are none."""
    if not pairs:
        return ""
    items = "".join(f"<li><code style='font-family:{_MONO}'>{_e(p)}</code>: {_e(w)}</li>"
                    for p, w in pairs)
    return (f"<details><summary style='cursor:pointer;color:{_FG2}'>{_e(title)} "
            f"({len(pairs)})</summary><ul style='margin:.2em 0'>{items}</ul></details>")


def register_display(shell: Any) -> None:
    """Show every result's `.route` as its decision card in this IPython shell (HTML, and the
    card's text in a terminal), magic or not; `openmind` calls this when imported under IPython."""
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(Route, lambda route: card_for(route)._repr_html_())
    formatters["text/plain"].for_type(Route, lambda route, p, cycle: p.text(card_for(route).text()))
