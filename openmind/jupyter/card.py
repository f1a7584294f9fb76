"""The decision card: what a cell decided, shown as HTML in JupyterLab and as text in a terminal.

One card renders one journal record (the executor writes one per intent call). It reads at a
glance: one line (intent, name, pathway/decision, the reason in plain words, how long, when), one
line of the three or four figures that matter for that intent, and everything else (every
attempt, the pathways left out and why, the full result, the policy, where) behind a disclosure.
`card_for(route)` makes one from any result's `.route`, which is how plain Python users get the
same card (`Route._repr_html_`).

Colours come from JupyterLab's theme variables (with neutral fallbacks); text stays in the
theme's font colours (readable in light and dark), status colours mark borders and dots only.
Every vocabulary word carries a tooltip (GLOSSARY).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from openmind.config import redact
from openmind.flow.journal import flush, format_records
from openmind.flow.policy import defaults as policy_defaults
from openmind.jupyter.plots import (
    _BG,
    _BORDER,
    _FG,
    _FG2,
    _FONT,
    _MONO,
    _OK,  # noqa: F401 - the state colours, for the tests that check a card's border
    _WARN,
    STATE_COLOR,
    Shown,  # noqa: F401 - the magics take it from here
    _dot,
    _e,
    _ms,
    card_picture,
    comparison_html,
    comparison_lines,
    journal_html,
)
from openmind.jupyter.words import figures, pills, plain_words, result_rows, title, without_no_gpu
from openmind.jupyter.words import state as state_of
from openmind.units import human_time
from openmind.vocab import Route

# The MIME type carrying the machine-readable decision next to the HTML and the text.
MIME = "application/vnd.openmind.decision+json"

# Short explanations of the words a card shows, as tooltips (the sidebar gets them from the server).
GLOSSARY: dict[str, str] = {
    "pathway": "how openmind did the work; it picks one from what this machine has right now",
    "full_train": "pathway: train a new model from the data (CUDA GPU if present, else CPU)",
    "fine_tune": "pathway: start from a cached ancestor model and adapt it to the new data",
    "cloud_inference": "pathway: an inference endpoint or language-model API over the network",
    "muscle_memory": "pathway: reuse what the local cache holds (models, predictions, fitted signal patterns)",
    "hardware_in_loop": "pathway: read from the ESP32 on its serial port",
    "cell": "pathway: the cell's own code, run as a whole",
    "decision": "one of four ways to decide: HARDCODE, CACHED, HYBRID, MODEL",
    "HARDCODE": "decision: compute directly, deterministically",
    "CACHED": "decision: return what memory holds, without computing",
    "HYBRID": "decision: compute part, reuse part (fine-tune; simulate from a fitted pattern)",
    "MODEL": "decision: a novel situation; ask the language model for a plan",
    "degraded": "a result, but not quite what was asked for (the reason says how)",
}

def plain(reason: Any) -> str:
    """A reason without repeats: "CPU (no GPU: no CUDA GPU: no driver)" -> "CPU (no CUDA GPU: no
    driver)": the last clause of a part whose words all appear in the next part says nothing more."""
    parts = str(reason or "").split(": ")
    out = []
    for i, part in enumerate(parts):
        if i + 1 < len(parts):
            cut = max(part.rfind("; "), part.rfind(" ("), part.rfind(", "))
            head, clause = (part[: cut + 2], part[cut + 2:]) if cut >= 0 else ("", part)
            words = set(clause.lower().split())
            if words and words <= set(parts[i + 1].lower().split()):
                parts[i + 1] = head + parts[i + 1]
                continue
        out.append(part)
    return ": ".join(out)


def relative_path(path: Any) -> str:
    """A notebook path as a person and a saved notebook should see it: relative to the working
    directory when under it, else the file name (an absolute path never goes into a notebook)."""
    text = str(path or "")
    if not os.path.isabs(text):
        return text
    try:
        rel = os.path.relpath(text)
    except ValueError:  # another drive (Windows)
        rel = ".."
    return rel if not rel.startswith("..") else os.path.basename(text)


def _term(*words: Any) -> str:
    """Vocabulary words joined by '/' with one tooltip explaining each (dotted underline)."""
    tips = [f"{w}: {GLOSSARY[str(w)].split(': ', 1)[-1]}" for w in words if str(w) in GLOSSARY]
    text = _e("/".join(str(w) for w in words))
    if not tips:
        return text
    return (f"<span title='{_e(chr(10).join(tips))}' style='text-decoration:underline dotted;"
            f"text-underline-offset:2px;cursor:help'>{text}</span>")


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
        """Why the result is not quite what was asked for (issue 11 writes it), else None."""
        value = self.record.get("degraded")
        if not value or not self.ok:
            return None
        return value if isinstance(value, str) else "the result is not what was asked for"

    @property
    def state(self) -> str:
        """ok, degraded, drift (a monitor that saw one) or failed."""
        return state_of(self.record, self.degraded)

    @property
    def title(self) -> str:
        """`train 'digits'`; for the user's own code what it binds: `cell → clf, preds`."""
        return title(self.record)

    @property
    def words(self) -> str | None:
        """What happened in plain words where the pills do not say it (deploy, monitor, validate)."""
        return plain_words(self.record)

    @property
    def pills(self) -> bool:
        """Whether pathway/decision follow the words (a written file needs none)."""
        return pills(self.record)

    @property
    def route_text(self) -> str:
        r = self.record
        if not self.ok:
            return "FAILED"
        route = f"{r.get('pathway')}/{r.get('decision')}" if self.pills else ""
        text = " ".join(w for w in (self.words, route) if w)
        return text + (" DEGRADED" if self.degraded else (" DRIFT" if self.state == "drift" else ""))

    @property
    def reason(self) -> str:
        """Why, in full (the details' "why" row)."""
        r = self.record
        return plain(r.get("reason") if self.ok else (r.get("error") or r.get("reason")) or "")

    @property
    def brief(self) -> str:
        """Why, on the card's face: without the "no GPU" clause (the GPU badge says that once)."""
        return without_no_gpu(self.reason)

    @property
    def raised(self) -> str | None:
        """The error that brought an earlier run's outputs back (on the card's face)."""
        error = self.summary().get("error")
        return str(error) if error and self.ok else None

    def attempts(self) -> list[dict[str, Any]]:
        return list(self.record.get("attempts") or [])

    def excluded(self) -> list[tuple[str, str]]:
        plan = self.record.get("plan") or {}
        out = []
        for item in plan.get("excluded") or self.record.get("excluded") or []:
            if isinstance(item, Mapping):
                out.append((str(item.get("pathway")), plain(item.get("reason"))))
            else:
                out.append((str(item[0]), plain(item[1])))
        return out

    def policy_items(self) -> list[tuple[str, Any]]:
        """The policy options the cell changed from the defaults."""
        pol, base = self.record.get("policy") or {}, policy_defaults()
        return [(k, v) for k, v in pol.items() if k in base and v != base[k]]

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
        return [(f"{c.get('pathway')}/{c.get('decision')}", plain(c.get("reason"))) for c in cands[tried:]]

    def summary(self) -> dict[str, Any]:
        return dict(self.record.get("summary") or {})

    def figures(self) -> list[tuple[str, str]]:
        return figures(str(self.record.get("intent") or ""), self.summary(), self.record)

    def details(self) -> list[tuple[str, str]]:
        """Every result field not among the figures, in words, the telling ones first."""
        return result_rows(self.summary(), {k for k, _ in self.figures()})

    def where(self) -> str:
        cell = self.record.get("cell") or {}
        parts = []
        if self.record.get("id") is not None:
            parts.append(f"journal #{self.record['id']}")
        if cell.get("execution_count") is not None:
            parts.append(f"cell [{cell['execution_count']}]")
        if cell.get("notebook"):
            parts.append(relative_path(cell["notebook"]))
        return " · ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The compact decision carried in the card's MIME bundle (what `openmind run` reads)."""
        r = self.record
        cell = r.get("cell") or {}
        return {
            "id": r.get("id"), "intent": r.get("intent"), "name": r.get("name"),
            "ok": self.ok, "pathway": r.get("pathway"), "decision": r.get("decision"),
            "reason": r.get("reason"), "duration_ms": r.get("duration_ms"),
            "execution_count": cell.get("execution_count"), "label": self.label,
            "degraded": self.degraded,
        }

    # ------------------------------------------------------------------ text

    def headline(self) -> str:
        """The card's first line: intent and name, route, reason, how long, when."""
        r = self.record
        parts = [f"openmind {self.title}", self.route_text, self.brief, _ms(r.get("duration_ms"))]
        if r.get("ts"):
            parts.append(human_time(r["ts"]))
        return " · ".join(p for p in parts if p)

    def text(self) -> str:
        """The same card as plain text: the headline, the figures, then the details indented."""
        lines = [self.headline()]
        figs = self.figures()
        if figs:
            lines.append("  " + " · ".join(f"{k} {v}" for k, v in figs))
        if self.raised:
            lines.append(f"  the cell raised {self.raised}")
        if self.degraded:
            lines.append(f"  degraded: {self.degraded}")
        if self.note:
            lines.append(f"  note: {self.note}")
        if self.label:
            lines.append(f"  model label: {self.label}")
        for name, why in self.masked():
            lines.append(f"  assumed absent: {name} ({why})")
        attempts = self.attempts()
        if len(attempts) > 1 or not self.ok:
            lines.append("  attempts:")
            for i, a in enumerate(attempts, 1):
                tail = plain(a.get("error") or a.get("reason") or "")
                lines.append(f"    {i}. {a.get('pathway')}/{a.get('decision')} {a.get('outcome')} "
                             f"{_ms(a.get('duration_ms'))}: {tail}")
        untried = self.untried()
        if untried:
            lines.append("  next in line (not needed): " + "; ".join(f"{p} ({w})" for p, w in untried))
        excluded = self.excluded()
        if excluded:
            lines.append("  not taken: " + "; ".join(f"{p} ({w})" for p, w in excluded))
        lines.extend(comparison_lines(self.summary()))
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

    def _head_html(self) -> str:
        """The first line: state dot, title, plain words and pills, the reason, how long and when."""
        r = self.record
        tips = {"ok": "done", "degraded": GLOSSARY["degraded"], "failed": "every pathway failed",
                "drift": "the monitor saw a drift: look at the chart and the events"}
        if not self.ok:
            route = "<b>failed</b>"
        else:
            words = f"<span style='font-family:{_FONT}'>{_e(self.words)}</span> " if self.words else ""
            route = words + (_term(r.get("pathway"), r.get("decision")) if self.pills else "")
        flag = ""
        if self.degraded:
            flag = f"<b title='{_e(self.degraded)}'>{_term('degraded')}</b>"
        elif self.state == "drift":
            flag = f"<b class='openmind-drift' style='color:{_FG}'>drift</b>"
        when = _e(_ms(r.get("duration_ms"))) + (f" · {_e(human_time(r['ts']))}" if r.get("ts") else "")
        return (f"<div style='display:flex;gap:.5em;align-items:baseline;white-space:nowrap;"
                f"min-width:0'>{_dot(STATE_COLOR[self.state], tips[self.state])}"
                f"<b>{_e(self.title)}</b>"
                f"<span style='font-family:{_MONO};font-size:90%'>{route}</span>{flag}"
                f"<span title='{_e(self.reason)}' style='overflow:hidden;text-overflow:ellipsis;"
                f"min-width:0;flex:1 1 auto;color:{_FG2}'>{_e(self.brief)}</span>"
                f"<span style='flex:none;color:{_FG2}'>{when}</span></div>")

    def _face_lines(self) -> str:
        """What must be seen without opening the details: the error that brought an earlier
        run back, why it is degraded, notes, the resources assumed absent, comparisons, events."""
        extra = []
        if self.raised:
            extra.append(f"<div class='openmind-raised' style='border-left:3px solid {_WARN};"
                         f"padding-left:.4em'>the cell raised <code>{_e(self.raised)}</code>; "
                         f"the outputs above are an earlier run's</div>")
        if self.degraded:
            extra.append(f"<div class='openmind-degraded'><b>DEGRADED</b>: {_e(self.degraded)}</div>")
        if self.note:
            extra.append(f"<div><b>note</b>: {_e(self.note)}</div>")
        masked = self.masked()
        if masked:  # what the user switched off explains most route changes: keep it in sight
            extra.append("<div>assumed absent: " + " · ".join(
                f"<b title='{_e(why)}'>{_e(name)}</b>" for name, why in masked) + "</div>")
        extra.append(comparison_html(self.summary()))
        return "".join(extra)

    def _repr_html_(self) -> str:
        r = self.record
        picture = card_picture(str(r.get("intent") or ""), self.summary(), r.get("id"))
        fig_html = " · ".join(f"<span style='color:{_FG2}'>{_e(k)}</span> <b>{_e(v)}</b>"
                              for k, v in self.figures())
        body = (f"<details style='margin-top:.15em'><summary style='cursor:pointer;list-style-position:"
                f"outside;margin-left:1em'>{fig_html or _e('details')}</summary>"
                f"{self._details_html()}</details>")
        return (f"<div class='openmind-card' data-pathway='{_e(r.get('pathway'))}' "
                f"data-decision='{_e(r.get('decision'))}' data-ok='{int(self.ok)}' "
                f"data-state='{self.state}' data-degraded='{int(bool(self.degraded))}' "
                f"style='font-family:{_FONT};font-size:var(--jp-ui-font-size1,13px);color:{_FG};"
                f"background:{_BG};border:1px solid {_BORDER};border-left:4px solid "
                f"{STATE_COLOR[self.state]};border-radius:4px;padding:.3em .7em;margin:.2em 0;"
                f"max-width:60em;line-height:1.5'>{self._laid_out(picture, body)}</div>")

    def _laid_out(self, picture: str, body: str) -> str:
        """The lines, and the chart: a training curve beside them (the card stays short), a
        signal below them (it needs the width)."""
        lines = f"{self._head_html()}{self._face_lines()}{body}"
        if not picture or self.record.get("intent") != "train":
            return lines + picture
        return (f"<div style='display:flex;gap:.8em;align-items:flex-start'><div style='flex:1 1 auto;"
                f"min-width:0'>{lines}</div><div style='flex:none'>{picture}</div></div>")

    def _details_html(self) -> str:
        """Everything behind the disclosure: why in full, attempts, alternatives, result, where."""
        rows: list[tuple[str, str]] = [("why", _e(self.reason))]
        if self.label:
            rows.append(("model label", _e(self.label)))
        for i, a in enumerate(self.attempts(), 1):
            why = plain(a.get("error") or a.get("reason") or "")
            why = "" if why == self.reason else f": {why}"  # the headline's reason, not again
            rows.append((f"attempt {i}", f"<span style='font-family:{_MONO}'>"
                         f"{_term(a.get('pathway'), a.get('decision'))}</span> {_e(a.get('outcome'))} in "
                         f"{_e(_ms(a.get('duration_ms')))}{_e(why)}"))
        for p, why in self.untried():
            rows.append(("next in line", f"<span style='font-family:{_MONO}'>{_e(p)}</span>: {_e(why)}"))
        for p, why in self.excluded():
            rows.append(("not taken", f"<span style='font-family:{_MONO}'>{_term(p)}</span>: {_e(why)}"))
        details = self.details()
        if details:
            rows.append(("result", " · ".join(f"{_e(k)} {_e(v)}" for k, v in details)))
        pol = self.policy_items()
        if pol:
            rows.append(("policy", _e(", ".join(f"{k}={v}" for k, v in pol))))
        if self.where():
            rows.append(("where", _e(self.where())))
        cell = "padding:.1em .6em .1em 0;vertical-align:top;text-align:left"
        # the primary colour: JupyterLab stripes table rows, and the secondary one is below 4.5:1 there
        body = "".join(f"<tr><th style='{cell};font-weight:normal;color:{_FG};white-space:nowrap'>"
                       f"{_e(k)}</th><td style='{cell}'>{v}</td></tr>" for k, v in rows)
        return f"<table style='border-collapse:collapse;margin:.2em 0 .1em 1em;color:{_FG}'>{body}</table>"

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, Any]:
        return {"text/plain": self.text(), "text/html": self._repr_html_(), MIME: self.to_json()}


def card_for(route: Any, excluded: Sequence[tuple[Any, str]] | None = None) -> DecisionCard:
    """A card for a result's `.route`: the full journal record when it has one, else the route."""
    if getattr(route, "record", None) is not None and route.record.get("id") is None:
        flush()  # a deferred record: written by now, so the card can name its journal id
    jid = getattr(route, "journal_id", None)
    record = dict(route.record) if getattr(route, "record", None) else None
    if record is None:
        record = dict(route.to_dict())
        record["ok"] = any(a.get("outcome") == "ok" for a in record.get("attempts") or []) or not record.get("attempts")
        record["id"] = jid
    if record.get("degraded") is None and getattr(route, "degraded", None):
        record["degraded"] = route.degraded
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
        return journal_html(self.records, DecisionCard)


def register_display(shell: Any) -> None:
    """Show every result's `.route` as its decision card in this IPython shell (HTML, and the
    card's text in a terminal), magic or not; `openmind` calls this when imported under IPython."""
    formatters = shell.display_formatter.formatters
    formatters["text/html"].for_type(Route, lambda route: card_for(route)._repr_html_())
    formatters["text/plain"].for_type(Route, lambda route, p, cycle: p.text(card_for(route).text()))
