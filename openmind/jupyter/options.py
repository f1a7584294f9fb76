"""The `%openmind` magics' argument parsers and their help (`%openmind?`), with a "did you mean"
for a mistyped option or word. The policy options come from `openmind.flow.policy.OPTIONS`.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring

from openmind.flow.policy import OPTIONS
from openmind.jupyter.card import GLOSSARY
from openmind.vocab import Decision, IntentKind, Pathway

INTENTS = tuple(k.value for k in IntentKind)
LINE_COMMANDS = ("status", "log", "assume")


# --------------------------------------------------------------------------- parsers
# Each parser is attached to a stub so `magic_arguments` builds it once, with a clear prog name.


def _policy_arguments(func: Any) -> Any:
    """One `@argument` per policy option, in the order of OPTIONS (decorators apply bottom-up)."""
    for opt in reversed(OPTIONS):
        flags, kw = opt.argument()
        func = argument(*flags, **kw)(func)
    return func


# magic_arguments puts one '%' before the name itself
@magic_arguments(name="%openmind")
@argument("intent", metavar="{" + ",".join(INTENTS) + "}", help="what the cell does (checked against what ran)")
@_policy_arguments
@argument("--model", metavar="NAME", help="a label for the card (the calls in the cell name their models)")
@argument("--quiet", action="store_true", help="no decision card for this cell")
def cell_parser(line: str, cell: str) -> None:
    """Run the cell with a routing policy in force and show how each openmind call was decided."""


@magic_arguments(name="openmind log")
@argument("-n", type=int, default=10, help="how many records (default 10)")
@argument("--all", action="store_true", help="every session, not only this kernel's")
def log_parser(line: str) -> None:
    """The latest decisions from the journal."""


@magic_arguments(name="openmind status")
@argument("--refresh", action="store_true", help="re-probe instead of using the cache")
def status_parser(line: str) -> None:
    """What this machine has right now."""


def usage() -> str:
    """`%openmind?`: every command and option, then the words the cards use."""
    parts = [cell_parser.__doc__ or "", status_parser.__doc__ or "", log_parser.__doc__ or "",
             "%openmind assume gpu=off api=off serial=off | reset\n\n"
             "Pretend resources are absent for this kernel (or undo that with `reset`).",
             "Words on the cards:\n" + "\n".join(
                 f"  {w:<17} {GLOSSARY[w]}" for w in ("pathway", *[p.value for p in Pathway],
                                                      "decision", *[d.value for d in Decision])
                 if w in GLOSSARY)]
    return "\n\n".join(p.replace("::\n\n", "").strip() for p in parts)


def did_you_mean(word: str, choices: Any) -> str:
    """' (did you mean 'status'?)' for a near miss among `choices`, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def parse_options(parser: Any, line: str) -> Any:
    """`parse_argstring`, with a "did you mean" for a mistyped option or choice."""
    try:
        return parse_argstring(parser, line)
    except UsageError as exc:
        msg = str(exc)
        known = parser.parser._option_string_actions
        hints = [did_you_mean(tok.split("=")[0], known) for tok in
                 re.findall(r"(?<!\S)-{1,2}[\w-]+(?:=\S*)?", msg.partition("unrecognized arguments:")[2])]
        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", msg)
        if bad:
            hints.append(did_you_mean(bad.group(1), re.findall(r"'([^']*)'", bad.group(2))))
        hint = "".join(h for h in hints if h)
        raise UsageError(f"{parser.parser.prog}: {msg}{hint}; see %openmind?") from None
