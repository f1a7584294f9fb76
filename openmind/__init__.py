"""openmind: resource-aware notebook cells.

The light core (probe, route, execute, journal, policy) is imported eagerly; the intents that need
torch or devices load on first use, so `import openmind` stays fast.

Inside the package, import names from submodules (`from .journal import write`), never
`from . import journal`: the public functions `probe`, `route`, `journal`, `policy` and `deploy`
share their module's name and replace it as an attribute of the package.
"""

from __future__ import annotations

import importlib
from typing import Any

from openmind.config import assume
from openmind.errors import AllPathwaysFailed, BadInput, OpenmindError, PathwayUnavailable
from openmind.flow.executor import execute
from openmind.flow.journal import journal
from openmind.flow.policy import Policy, policy
from openmind.flow.resources import Resource, Resources, probe
from openmind.flow.router import Candidate, Intent, Plan, route
from openmind.vocab import Attempt, Decision, IntentKind, Pathway, Route

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "train_or_load": "openmind.intents.train",
    "TernaryModel": "openmind.pathways.ternary.packed",
    "sense_or_simulate": "openmind.intents.sense",
    "Signal": "openmind.intents.sense",
    "infer_adaptive": "openmind.intents.infer",
    "Predictions": "openmind.intents.infer",
    "deploy": "openmind.intents.deploy",
}

__all__ = [
    "AllPathwaysFailed", "Attempt", "BadInput", "Candidate", "Decision", "Intent", "IntentKind",
    "OpenmindError", "Pathway", "PathwayUnavailable", "Plan", "Policy", "Resource", "Resources",
    "Route", "assume", "execute", "journal", "policy", "probe", "route", *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'openmind' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # also replaces a same-named submodule attribute (openmind.deploy)
    return value
