"""openmind in Jupyter: the server extension (sidebar routes), the prebuilt labextension, the magics.

Everything here is a thin, lazy entry point so that importing `openmind.jupyter` costs nothing:
the server part lives in `server.py`, the IPython magics in `magics.py`.
"""

from __future__ import annotations

from typing import Any


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """Tell jupyter_server which module to load (the config file in jupyter-config enables it)."""
    return [{"module": "openmind.jupyter"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Add the openmind API routes to a running Jupyter server."""
    from openmind.jupyter.server import _load_jupyter_server_extension as load

    load(server_app)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where the prebuilt labextension sits inside this package (for `jupyter labextension develop`)."""
    return [{"src": "labextension", "dest": "openmind-jupyterlab"}]


def load_ipython_extension(ip: Any) -> None:
    """`%load_ext openmind.jupyter`: register the `%%openmind` magics in this kernel."""
    from openmind.jupyter.magics import load_ipython_extension as load

    load(ip)


def unload_ipython_extension(ip: Any) -> None:
    from openmind.jupyter.magics import unload_ipython_extension as unload

    unload(ip)
