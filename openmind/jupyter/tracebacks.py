"""How an error in a `%%openmind` cell is shown: the user's own error from their lines (openmind's
routing, executor and cell-runner frames left out), a BadInput as its message and the user's line.
"""

from __future__ import annotations

import os
from typing import Any

from openmind.errors import OpenmindError

_HOME = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # openmind/


def _user_line(shell: Any, tb: Any) -> str:
    """Where in the user's own code the error came from: 'line 2: x = f(...)'."""
    import linecache

    cells = getattr(shell.compile, "_filename_map", {})
    found = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        name, lineno = code.co_filename, tb.tb_lineno
        if name in cells or not (_ours(name) or "site-packages" in name):
            # a cell's file name maps to a prompt number that is off by one on some IPython
            # versions, so a cell is named by its line only
            where = f"line {lineno}" if name in cells else f"{os.path.basename(name)}, line {lineno}"
            src = linecache.getline(name, lineno).strip()
            found = f"{where}: {src}" if src else where
        tb = tb.tb_next
    return found


def own_error(exc: BaseException | bool) -> bool:
    """An error the cell's own code raised (not openmind's, not Ctrl-C): the user's to read."""
    if not isinstance(exc, Exception) or isinstance(exc, OpenmindError):
        return False
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and not _ours(tb.tb_frame.f_code.co_filename)


def _ours(filename: str) -> bool:
    """Is this file part of openmind itself?"""
    return os.path.abspath(filename).startswith(_HOME)


def failed_by(record: dict[str, Any], exc: BaseException) -> bool:
    """A failed journal record whose attempts failed only because the body raised `exc`: the
    cell pathway ran the user's code and it raised, which the user's traceback already says."""
    head = f"{type(exc).__name__}:"
    errors = [str(a.get("error") or "") for a in record.get("attempts") or []]
    return not record.get("ok") and bool(errors) and all(e.startswith(head) for e in errors)


def user_frames(tb: Any) -> Any:
    """The traceback without openmind's own frames, so the user's error reads as Python's would
    for their lines (routing, executor and cell-runner frames are openmind's, not theirs)."""
    import types

    kept = []
    while tb is not None:
        if not _ours(tb.tb_frame.f_code.co_filename):
            kept.append(tb)
        tb = tb.tb_next
    head = None
    for t in reversed(kept):
        head = types.TracebackType(head, t.tb_frame, t.tb_lasti, t.tb_lineno)
    return head


def show_bad_input(shell: Any, etype: type, value: BaseException, tb: Any,
                   tb_offset: int | None = None) -> list[str]:
    """IPython's custom exception handler for BadInput: the message and the user's line that
    led to it, not a traceback through openmind's own frames (`%xmode verbose` + %tb for those)."""
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    where = _user_line(shell, tb)
    if where:
        stb.append(f"  from {where}")
    shell._showtraceback(etype, value, stb)
    return stb
