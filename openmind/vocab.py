"""The pinned vocabulary: pathways, decisions, intents and the route a result carries.

String values are part of the journal and JSON contracts (see DESIGN.md); never rename them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from openmind.errors import BadInput


class _StrEnum(str, Enum):
    def __str__(self) -> str:  # journal/JSON want the bare value
        return self.value

    @classmethod
    def parse(cls, value: Any, what: str):
        """Accept an enum member or its value (any case); a clear error names the valid ones."""
        if isinstance(value, cls):
            return value
        text = str(value).strip()
        for member in cls:
            if text.lower() in (member.value.lower(), member.name.lower()):
                return member
        valid = ", ".join(m.value for m in cls)
        raise BadInput(f"unknown {what} {value!r}; valid: {valid}")


class Pathway(_StrEnum):
    """The five metabolic pathways a cell can take."""

    FULL_TRAIN = "full_train"
    FINE_TUNE = "fine_tune"
    CLOUD_INFERENCE = "cloud_inference"
    MUSCLE_MEMORY = "muscle_memory"
    HARDWARE_IN_LOOP = "hardware_in_loop"


class Decision(_StrEnum):
    """The tripartite decisions (plus MODEL for novel situations)."""

    HARDCODE = "HARDCODE"
    CACHED = "CACHED"
    HYBRID = "HYBRID"
    MODEL = "MODEL"


class IntentKind(_StrEnum):
    TRAIN = "train"
    SENSE = "sense"
    INFER = "infer"
    VALIDATE = "validate"
    MONITOR = "monitor"
    DEPLOY = "deploy"
    INGEST = "ingest"


@dataclass(frozen=True)
class Attempt:
    """One candidate the executor tried: what, whether it worked, why not, how long."""

    pathway: Pathway
    decision: Decision
    reason: str
    outcome: str  # "ok" | "failed" | "interrupted"
    error: str | None = None
    duration_ms: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "pathway": self.pathway.value,
            "decision": self.decision.value,
            "reason": self.reason,
            "outcome": self.outcome,
            "error": self.error,
            "duration_ms": round(self.duration_ms, 3),
        }


@dataclass
class Route:
    """What every result carries as `.route`: the pathway taken, the decision, and why."""

    pathway: Pathway
    decision: Decision
    reason: str
    intent: str = ""
    attempts: list[Attempt] = field(default_factory=list)
    duration_ms: float = 0.0
    journal_id: int | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    # None when the result answers the call as asked, else a short reason why it does not
    # ("a cached model trained on other data", "partial: stopped by the budget after 3 of 60 epochs")
    degraded: str | None = None
    # the journal record as written (plan, excluded pathways, resources): what a card shows
    record: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "intent": self.intent,
            "pathway": self.pathway.value,
            "decision": self.decision.value,
            "reason": self.reason,
            "attempts": [a.to_dict() for a in self.attempts],
            "duration_ms": round(self.duration_ms, 3),
            "journal_id": self.journal_id,
            "summary": self.summary,
            "degraded": self.degraded,
        }

    def __str__(self) -> str:
        text = f"{self.intent}: {self.pathway.value}/{self.decision.value} ({self.reason})"
        return text + (f" [degraded: {self.degraded}]" if self.degraded else "")

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        # plain text; in a notebook, openmind.jupyter registers the decision card as the HTML form
        p.text(str(self))


# --------------------------------------------------------------------------- names

NAME_MAX = 100
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_name(value: Any, what: str = "name") -> str:
    """A model or signal name as a short label (letters, digits, '-', '_', '.'; at most NAME_MAX;
    not '.' or '..'), or BadInput saying what is wrong. Names become store keys, URL path parts
    and file names, so a separator, a NUL or '..' must never get through: one rule for every intent."""
    if not isinstance(value, str):
        raise BadInput(f"{what} must be a string label, got {type(value).__name__} {str(value)[:40]!r}")
    if not value or len(value) > NAME_MAX:
        raise BadInput(f"{what} must be 1 to {NAME_MAX} characters, got {len(value)}; "
                       f"e.g. 'digits' or 'temperature'")
    bad = sorted({c for c in value if c not in _NAME_CHARS})
    if bad:
        raise BadInput(f"{what} {value[:60]!r} has characters a name may not hold "
                       f"({', '.join(map(repr, bad[:5]))}); use letters, digits, '-', '_' and '.'")
    if set(value) == {"."}:
        raise BadInput(f"{what} {value!r} is not a name; use letters, digits, '-', '_' and '.'")
    return value
