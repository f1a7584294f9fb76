"""openmind in Jupyter: `%load_ext openmind.jupyter` registers the magics (loaded on first use)."""

from __future__ import annotations

from typing import Any


def load_ipython_extension(ip: Any) -> None:
    from .magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from .magics import unload_ipython_extension as unload

    unload(ip)
