"""Errors openmind raises. A missing resource is never one of these: it is a reason in the journal."""

from __future__ import annotations


class OpenmindError(Exception):
    """Base class for every error openmind raises on purpose."""


class BadInput(OpenmindError, ValueError):
    """The caller asked for something invalid; the message says what and what to do instead.

    The executor never falls through on BadInput: every pathway would fail the same way.
    """


class PathwayUnavailable(OpenmindError):
    """A pathway could not run here (resource gone, cache miss). The executor tries the next one."""


class AllPathwaysFailed(OpenmindError):
    """Every candidate of a plan failed; the message lists each attempt and why."""

    def __init__(self, intent: str, attempts: list) -> None:
        self.intent = intent
        self.attempts = list(attempts)
        lines = [f"openmind could not {intent}: every pathway failed"]
        if not attempts:
            lines.append("  (the plan had no candidates)")
        for i, a in enumerate(attempts, 1):
            lines.append(
                f"  {i}. {a.pathway.value}/{a.decision.value} ({a.reason}) -> {a.outcome}: {a.error}"
            )
        super().__init__("\n".join(lines))
