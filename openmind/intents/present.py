"""How a result is shown is the faces' business: an intent returns data, and a face registers here
how each kind of result looks (`openmind.jupyter.plots.register_presenters`, run on
`import openmind`). A result's `_repr_html_` asks this table, so no intent imports a face (the
import contract forbids it) and no face has to import an intent to teach it HTML.

Two things a face can register per kind of result (a short word: "signal", "watch", ...):
its HTML, and a live view (a display updated in place while the intent works, e.g. the monitor's
chart). Without a face, a result has no HTML (`None`, so a notebook shows its text) and a live
view does nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class LiveView(Protocol):
    """A display updated in place while an intent works (`force` draws even when just drawn)."""

    def update(self, value: Any, force: bool = False) -> None: ...


class _Silent:
    """The live view when no face shows one: nothing to draw."""

    def update(self, value: Any, force: bool = False) -> None:
        return None


_HTML: dict[str, Callable[[Any], str]] = {}
_LIVE: dict[str, Callable[[bool | None], LiveView | None]] = {}


def register(kind: str, html: Callable[[Any], str] | None = None,
             live: Callable[[bool | None], LiveView | None] | None = None) -> None:
    """A face says how results of `kind` look: `html(result)` and/or `live(enabled)` (a live
    view, or None where it cannot show one: not in a notebook, or switched off)."""
    if html is not None:
        _HTML[kind] = html
    if live is not None:
        _LIVE[kind] = live


def html_of(kind: str, value: Any) -> str | None:
    """`value` as HTML by the face registered for `kind`; None when no face registered one."""
    render = _HTML.get(kind)
    return None if render is None else render(value)


def live_view(kind: str, enabled: bool | None = None, otherwise: Any = None) -> Any:
    """The face's live view for `kind` (`enabled`: True, False, or None for "when in a notebook");
    where no face shows one, `otherwise` (default: a view that does nothing)."""
    make = _LIVE.get(kind)
    view = make(enabled) if make is not None and enabled is not False else None
    if view is not None:
        return view
    return _Silent() if otherwise is None else otherwise
