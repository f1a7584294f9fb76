"""openmind: resource-aware notebook cells.

The light core (probe, route, execute, journal, policy) is imported eagerly; the intents that need
torch or devices load on first use, so `import openmind` stays fast.

The package is laid out as the flow of a cell (docs/architecture.md): jupyter/cli/serve (faces)
-> intents -> flow -> pathways -> memory -> the ground (vocab, errors, units, config); imports run
one way, checked by the import contract in the test suite.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from openmind.config import VERSION, assume
from openmind.errors import AllPathwaysFailed, BadInput, OpenmindError, PathwayUnavailable
from openmind.flow.allowance import budget, device
from openmind.flow.executor import execute
from openmind.flow.journal import journal
from openmind.flow.policy import Policy, policy
from openmind.flow.resources import Resource, Resources, probe
from openmind.flow.router import Candidate, Intent, Plan, route
from openmind.vocab import Attempt, Decision, IntentKind, Pathway, Route

__version__ = VERSION


def _show_results() -> None:
    """The faces own the HTML: the results' views are registered with the intents' presenter table
    (an intent never imports a face), and under IPython a result's `.route` displays as its
    decision card. Neither loads an intent."""
    from openmind.jupyter.plots import register_presenters

    register_presenters()
    if "IPython" not in sys.modules:
        return
    shell = sys.modules["IPython"].get_ipython()
    if shell is not None and hasattr(shell, "display_formatter"):
        from openmind.jupyter.card import register_display

        register_display(shell)


_show_results()

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "train_or_load": "openmind.intents.train",
    "TernaryModel": "openmind.pathways.ternary.packed",
    "sense_or_simulate": "openmind.intents.sense",
    "Signal": "openmind.intents.sense",
    "infer_adaptive": "openmind.intents.infer",
    "Predictions": "openmind.intents.infer",
    "deploy": "openmind.intents.deploy",
    "validate": "openmind.intents.validate",
    "Validation": "openmind.intents.validate",
    "pin": "openmind.intents.validate",
    "load_version": "openmind.intents.validate",
    "monitor": "openmind.intents.monitor",
    "label_queue": "openmind.intents.label",
    "label": "openmind.intents.label",
    "forget_labels": "openmind.intents.label",
    "run_cell": "openmind.intents.cell",
    "remember": "openmind.intents.cell",
    "CellResult": "openmind.intents.cell",
    "federate": "openmind.intents.federate",
    "colony": "openmind.pathways.ternary.vote",
    "ingest": "openmind.intents.ingest",
    "memories": "openmind.intents.remembered",
    "recall": "openmind.intents.remembered",
    "forget": "openmind.intents.remembered",
    "Colony": "openmind.pathways.ternary.vote",
}

__all__ = [
    "AllPathwaysFailed", "Attempt", "BadInput", "Candidate", "Decision", "Intent", "IntentKind",
    "OpenmindError", "Pathway", "PathwayUnavailable", "Plan", "Policy", "Resource", "Resources",
    "Route", "assume", "budget", "device", "execute", "journal", "policy", "probe", "route", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openmind' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
