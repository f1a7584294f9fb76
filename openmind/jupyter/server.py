"""The Jupyter server side of the sidebar: the probe and the journal as JSON on authenticated routes.

    GET {base_url}/openmind/api/resources[?refresh=1]      -> openmind.probe().to_dict()
    GET {base_url}/openmind/api/journal[?after=ID][&limit=N] -> {"records": [...], "last_id": ID}

Journal records come oldest first (ids ascending), so a client keeps the last id it saw and asks
for `after=` it. Probing and SQLite reads run in a worker thread: a slow probe (a silent serial
port, an API that does not answer) never stalls the server's event loop. A serial port that a
kernel holds (streaming, uploading) is never opened here: ports are locked per port, and the
probe answers with the kernel's last probe of it from the store, marked busy.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from openmind.config import redact
from openmind.errors import BadInput
from openmind.flow.journal import journal
from openmind.flow.resources import probe

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


async def _off_loop(fn: Callable[[], T]) -> T:
    """Run blocking work (probes, SQLite) in the default thread pool, off the event loop."""
    return await asyncio.get_running_loop().run_in_executor(None, fn)


class _BadQuery(ValueError):
    """A query parameter the client got wrong (answered with 400 and this message)."""


class _OpenmindHandler(APIHandler):
    def _int_arg(self, name: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
        raw = self.get_argument(name, None)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw)
        except ValueError:
            value = None
        if value is None or value < lo or (hi is not None and value > hi):
            span = f"{lo}..{hi}" if hi is not None else f">= {lo}"
            raise _BadQuery(f"{name} must be an integer {span}, got {raw!r}")
        return value

    def _fail(self, status: int, message: str) -> None:
        self.set_status(status)
        self._send({"message": message})

    def _send(self, obj: Any) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(redact(obj), default=str))


class ResourcesHandler(_OpenmindHandler):
    """What this machine has right now, each absence with its reason."""

    @tornado.web.authenticated
    async def get(self) -> None:
        refresh = self.get_argument("refresh", "0").lower() in ("1", "true", "yes")
        try:
            res = await _off_loop(lambda: probe(refresh=refresh))
        except BadInput as exc:  # a malformed OPENMIND_ASSUME in the server's environment
            return self._fail(500, str(exc))
        self._send(res.to_dict())


class JournalHandler(_OpenmindHandler):
    """The latest cell decisions; with `after`, only the ones newer than that id."""

    @tornado.web.authenticated
    async def get(self) -> None:
        try:
            after = self._int_arg("after", None, 0)
            limit = self._int_arg("limit", DEFAULT_LIMIT, 1, MAX_LIMIT) or DEFAULT_LIMIT
        except _BadQuery as exc:
            return self._fail(400, str(exc))
        records = await _off_loop(lambda: journal(limit, after=after))
        if after is None:
            records.reverse()  # journal() gives newest first without `after`; keep one order
        last_id = records[-1]["id"] if records else after
        self._send({"records": records, "last_id": last_id})


def routes(base_url: str) -> list[tuple[str, type[APIHandler]]]:
    """The URL patterns under `base_url` (a JupyterHub or proxy prefix is kept)."""
    api = url_path_join(base_url, "openmind", "api")
    return [
        (url_path_join(api, "resources"), ResourcesHandler),
        (url_path_join(api, "journal"), JournalHandler),
    ]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the handlers with the server's tornado application."""
    web_app = server_app.web_app
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", routes(base_url))
    server_app.log.info("openmind: sidebar API at %s", url_path_join(base_url, "openmind", "api"))
