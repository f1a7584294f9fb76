"""What a decision says in words: its title, the figures that matter for its intent, the plain
words that go before (or instead of) the pathway/decision pills, its state, and its result in
readable rows. The card, the log and the sidebar's server side read them here, so a record reads
the same everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from openmind.units import human_bytes, human_duration, human_rate, human_time

_STOPPED = {"early_stop": "stopped early", "budget": "stopped at the budget", "epochs": "all epochs"}
# summary fields that are bookkeeping, not results (kept in the journal, not on the card)
HIDDEN = {"preview", "val_history", "fingerprint", "key", "comparison", "events", "made_at",
          "original_seconds"}
# the result fields people look for first, in this order; the rest follow as they come
_FIRST = ("accuracy", "val_accuracy", "train_accuracy", "rows", "samples", "epochs", "names",
          "model", "version", "verdict", "state")
_HEX_ID = re.compile(r"^[0-9a-f]{16,}$")


def percent(value: Any) -> str | None:
    return f"{float(value) * 100:.1f}%" if isinstance(value, (int, float)) else None


def short(value: Any, limit: int = 80) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)) and len(value) > 6:
        text = "[" + ", ".join(short(v, 12) for v in value[:6]) + f", … ({len(value)} items)]"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def without_no_gpu(reason: str) -> str:
    """A reason without its "no GPU: …" clause (the GPU badge and `%openmind status` say it
    once): "on CPU (2 cores; no GPU: no CUDA GPU: no driver (x))" -> "on CPU (2 cores)"."""
    out = reason
    while True:
        at = out.find("; no GPU")
        if at < 0:
            at = out.find("; no CUDA GPU")
        if at < 0:
            return out
        depth, end = 0, len(out)
        for i in range(at, len(out)):
            if out[i] == "(":
                depth += 1
            elif out[i] == ")":
                if depth == 0:
                    end = i
                    break
                depth -= 1
        out = out[:at] + out[end:]


def is_cell(record: Mapping[str, Any]) -> bool:
    """A record of the user's own code run as a cell (the cell pathway)."""
    summary = record.get("summary") or {}
    if "names" in summary:
        return True
    cands = (record.get("plan") or {}).get("candidates") or []
    return any("this cell" in str(c.get("reason")) for c in cands)


def title(record: Mapping[str, Any]) -> str:
    """`cell → clf, preds` for the user's own code (what it binds), else `train 'digits'`."""
    if is_cell(record):
        names = str((record.get("summary") or {}).get("names") or "")
        if names and names != "-":
            return f"cell → {names}"
        name = str(record.get("name") or "")
        return name if name.startswith("@remember") else "cell"  # a remembered function by name
    what = str(record.get("intent") or "?")
    return what + (f" '{record['name']}'" if record.get("name") else "")


def drifted(record: Mapping[str, Any]) -> bool:
    """A monitor record that saw a drift (an attention state of its own on the card)."""
    if record.get("intent") != "monitor":
        return False
    s = record.get("summary") or {}
    kinds = [str(e.get("kind")) for e in s.get("events") or []] + [str(s.get("event") or "")]
    return s.get("first_drift") is not None or any(k.endswith("drift") for k in kinds) or \
        s.get("state") in ("drift", "collecting")


def state(record: Mapping[str, Any], degraded: Any) -> str:
    """ok, degraded, drift or failed."""
    if not record.get("ok"):
        return "failed"
    if degraded:
        return "degraded"
    return "drift" if drifted(record) else "ok"


def plain_words(record: Mapping[str, Any]) -> str | None:
    """What happened in plain words, for intents the pathway/decision pills do not describe."""
    s, intent = record.get("summary") or {}, record.get("intent")
    if not record.get("ok"):
        return None
    if intent == "deploy":
        target = {"header": "a C header", "upload": "an upload to the device",
                  "serve": "a served model"}.get(str(s.get("target")), f"a {s.get('target') or 'deployment'}")
        size = f" ({human_bytes(s['bytes'])})" if s.get("bytes") is not None else ""
        return f"wrote {target}{size}"
    if intent == "monitor" and s.get("samples") is not None:
        return f"watched {int(s['samples']):,} samples"
    if intent == "validate" and s.get("rows") is not None:
        return f"scored {int(s['rows']):,} rows"
    if is_cell(record) and record.get("decision") == "CACHED":
        return "restored"
    return None


def pills(record: Mapping[str, Any]) -> bool:
    """Whether pathway/decision follow the plain words (a written file needs none)."""
    return record.get("intent") != "deploy"


def figures(intent: str, summary: Mapping[str, Any], record: Mapping[str, Any] | None = None
            ) -> list[tuple[str, str]]:
    """The three or four (label, value) figures that matter for this intent's result."""
    s = summary
    if record is not None and is_cell(record):
        out = _cell_figures(s)
    elif intent == "train":
        out = _train_figures(s)
    elif intent == "infer":
        out = [("rows", f"{int(s['rows']):,}" if s.get("rows") is not None else None),
               ("source", s.get("source")),
               ("classes seen", str(s["classes_seen"]) if s.get("classes_seen") is not None else None)]
    elif intent == "sense":
        out = _sense_figures(s)
    elif intent == "validate":
        out = [("accuracy", percent(s.get("accuracy"))),
               ("rows", f"{int(s['rows']):,}" if s.get("rows") is not None else None),
               ("calibration error", short(s.get("ece")) if s.get("ece") is not None else None),
               ("abstained", percent(s.get("abstention")))]
    elif intent == "monitor" and "events" in s:
        drift = s.get("first_drift")
        out = [("drift at sample", str(drift) if drift is not None else None),
               ("errors", f"{s.get('errors')} of {s.get('labelled')} labelled" if s.get("labelled") else None),
               ("now", s.get("state")),
               ("queued for labels", str(s["queued_for_labels"]) if s.get("queued_for_labels") else None)]
    elif intent == "deploy":
        out = [("file", str(s.get("where") or "").rsplit("/", 1)[-1] or None),
               ("inputs", str(s.get("inputs")) if s.get("inputs") is not None else None),
               ("outputs", str(s.get("outputs")) if s.get("outputs") is not None else None)]
    else:
        out = [(k.replace("_", " "), human_field(k, v)) for k, v in s.items()  # ids are no figures
               if k not in HIDDEN and isinstance(v, (str, int, float, bool))
               and not (isinstance(v, str) and _HEX_ID.match(v))][:4]
    return [(k, v) for k, v in out if v not in (None, "", "None")]


def _train_figures(s: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    acc = s.get("val_accuracy", s.get("train_accuracy"))
    out.append(("accuracy" if "val_accuracy" in s else "train accuracy", percent(acc)))
    if s.get("packed_bytes") is not None:
        size = human_bytes(s["packed_bytes"])
        if s.get("fp32_bytes"):
            size += f" ({float(s['fp32_bytes']) / max(float(s['packed_bytes']), 1):.0f}× smaller than fp32)"
        out.append(("size", size))
    if s.get("epochs") is not None:
        how = _STOPPED.get(str(s.get("stopped")), "")
        best = f", best {s['best_epoch']}" if s.get("best_epoch") not in (None, s.get("epochs")) else ""
        out.append(("epochs", f"{s['epochs']}{best}" + (f" ({how})" if how and how != "all epochs" else "")))
    if s.get("cached"):
        out.append(("from", "muscle memory"))
    elif s.get("rows") is not None:
        out.append(("rows", f"{int(s['rows']):,}"))
    return out


def _sense_figures(s: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    out: list[tuple[str, str | None]] = []
    n, real = s.get("samples"), s.get("real_samples")
    if n is not None:
        out.append(("samples", f"{int(n):,}" + (f" ({int(real):,} real)" if real is not None else "")))
    out.append(("rate", human_rate(s.get("rate_hz")) if s.get("rate_hz") else None))
    out.append(("lost", str(s.get("lost")) if s.get("lost") is not None else None))
    cal = s.get("calibration") or {}
    if isinstance(cal, Mapping) and cal.get("distance_before") is not None:
        out.append(("sim→real distance", f"{cal['distance_before']:.3g} → {cal.get('distance_after', 0):.3g}"))
    else:
        out.append(("source", s.get("source")))
    return out


def _cell_figures(s: Mapping[str, Any]) -> list[tuple[str, str | None]]:
    """Own code: the names restored (or bound), when the kept run was made and the time saved."""
    names = str(s.get("names") or "-")
    if "made_at" not in s:
        return [("bound", names if names != "-" else None),
                ("ran", human_duration(float(s["seconds"])) if s.get("seconds") is not None else None)]
    out: list[tuple[str, str | None]] = [("names restored", names if names != "-" else "none"),
                                         ("made", human_time(s["made_at"]) if s.get("made_at") else None)]
    then, now = s.get("original_seconds"), s.get("seconds")
    if isinstance(then, (int, float)) and isinstance(now, (int, float)):
        saved = float(then) - float(now)
        out.append(("time saved", f"{human_duration(max(saved, 0.0))} (ran {human_duration(float(then))} then)"))
    return out


def human_field(key: str, value: Any) -> str:
    """One result field for people: sizes in bytes, times in words, fractions as percent."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "none"
    if isinstance(value, (int, float)):
        if key.endswith("bytes"):
            return human_bytes(value)
        if key.endswith(("seconds", "_s")):
            return human_duration(value)
        if key.endswith(("_at", "ts")) and value > 1e8:
            return human_time(value)
        if key.endswith("accuracy"):
            return percent(value) or "?"
        if key.endswith("_hz"):
            return human_rate(value)
    if isinstance(value, str) and _HEX_ID.match(value):
        return value[:8] + "…"
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {human_field(str(k), v)}" for k, v in value.items() if k not in HIDDEN)
    return short(value, 60)


def result_rows(summary: Mapping[str, Any], shown: set[str]) -> list[tuple[str, str]]:
    """The result fields not among the figures, most telling first, in words ("val accuracy 91%")."""
    keys = [k for k in _FIRST if k in summary] + [k for k in summary if k not in _FIRST]
    return [(k.replace("_", " "), human_field(k, summary[k])) for k in keys
            if k not in HIDDEN and k.replace("_", " ") not in shown]


def folded(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records a cell shows as cards: a monitor's events (and the fine-tunes they started)
    are listed once on the monitor's own card, not a card each (the journal keeps them all)."""
    watched = {r.get("name") for r in records if r.get("intent") == "monitor"
               and "events" in (r.get("summary") or {})}
    tuned = {r.get("name") for r in records if r.get("intent") == "monitor"
             and any(e.get("kind") == "fine-tuned" for e in (r.get("summary") or {}).get("events") or [])}

    def inside(r: dict[str, Any]) -> bool:
        s = r.get("summary") or {}
        if r.get("intent") == "monitor" and "event" in s:
            return r.get("name") in watched
        return r.get("intent") == "train" and r.get("name") in tuned and r.get("ok")

    return [r for r in records if not inside(r)]
