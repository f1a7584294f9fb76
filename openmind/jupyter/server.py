"""The Jupyter server side of the sidebar: the probe and the journal as JSON on authenticated routes.

    GET {base_url}/openmind/api/resources[?refresh=1]      -> openmind.probe().to_dict()
    GET {base_url}/openmind/api/journal[?after=ID][&limit=N] -> {"records": [...], "last_id": ID}
    GET {base_url}/openmind/api/memory                     -> what muscle memory holds
    DELETE {base_url}/openmind/api/memory/KEY              -> evict that entry
    GET {base_url}/openmind/api/meters                     -> CPU/RAM of server and kernels, GPU

Each record's notebook is given relative to the server's root (`cell.path`, what the browser
opens) and follows renames: the contents service's rename events move the journal's records.

Journal records come oldest first (ids ascending), so a client keeps the last id it saw and asks
for `after=` it. Probing and SQLite reads run in a worker thread: a slow probe (a silent serial
port, an API that does not answer) never stalls the server's event loop. A serial port that a
kernel holds (streaming, uploading) is never opened here: ports are locked per port, and the
probe answers with the kernel's last probe of it from the store, marked busy.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any, TypeVar

import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.utils import url_path_join

from openmind.config import redact
from openmind.errors import BadInput
from openmind.flow.journal import journal, rename_notebook
from openmind.flow.resources import probe
from openmind.jupyter.card import GLOSSARY, plain

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
        root = _root_dir(self.settings)
        for rec in records:
            _place(rec, root)
        self._send({"records": records, "last_id": last_id,
                    "glossary": GLOSSARY if after is None else None})


# notebooks renamed while this server runs: a running kernel keeps its old JPY_SESSION_NAME
_RENAMED: dict[str, str] = {}


def _root_dir(settings: dict[str, Any]) -> str:
    cm = settings.get("contents_manager")
    return os.path.abspath(getattr(cm, "root_dir", None) or settings.get("server_root_dir") or os.getcwd())


def _place(rec: dict[str, Any], root: str) -> None:
    """The record's notebook after renames, as a path under the server root (what the browser
    opens) or just a file name when outside it; reasons in plain words."""
    cell = rec.get("cell") or {}
    nb = cell.get("notebook")
    if nb:
        seen = set()
        while nb in _RENAMED and nb not in seen:
            seen.add(nb)
            nb = _RENAMED[nb]
        full = os.path.abspath(os.path.join(root, nb))
        rel = os.path.relpath(full, root)
        inside = not rel.startswith("..")
        cell["path"] = rel.replace(os.sep, "/") if inside else None
        cell["notebook"] = cell["path"] or os.path.basename(full)
    if rec.get("reason"):
        rec["reason"] = plain(rec["reason"])


async def on_contents_event(root: str, data: dict[str, Any]) -> int:
    """A rename (or move) of a notebook: its journal records follow it."""
    if data.get("action") != "rename" or not data.get("source_path"):
        return 0
    old = os.path.join(root, data["source_path"])
    new = os.path.join(root, data["path"])
    _RENAMED.update({old: new, data["source_path"]: new})
    moved = await _off_loop(lambda: rename_notebook(old, new) + rename_notebook(data["source_path"], new))
    return moved


class MemoryHandler(_OpenmindHandler):
    """What muscle memory holds (models, cell results, signal patterns), and eviction."""

    @tornado.web.authenticated
    async def get(self, _key: str | None = None) -> None:
        from openmind.memory.catalog import memories

        rows = await _off_loop(memories)  # what `openmind.memories()` and `memory ls` list
        # one item per version (the sidebar evicts by key), named and described as memories() does
        items = [{"key": e.key, "kind": m.kind, "name": m.name, "size": e.size, "used": e.used,
                  "created": e.created, "hits": e.hits, "version": len(m.versions) - i,
                  "versions": len(m.versions), "detail": m.detail}
                 for m in rows for i, e in enumerate(m.versions)]
        self._send({"entries": items, "bytes": sum(m.size for m in rows)})

    @tornado.web.authenticated
    async def delete(self, key: str) -> None:
        from openmind.memory.blobs import remove

        if len(key) < 16:  # the sidebar sends whole keys; a prefix could evict several entries
            return self._fail(400, f"give the whole key of one entry, got {key!r}")
        try:
            removed = await _off_loop(lambda: remove(key))
        except BadInput as exc:
            return self._fail(400, str(exc))
        if not removed:
            return self._fail(404, f"no muscle-memory entry {key!r} (already evicted?)")
        from openmind.flow.resources import invalidate

        invalidate("memory")
        self._send({"removed": removed, "key": key})


class MetersHandler(_OpenmindHandler):
    """CPU and RAM of this server and each kernel against their limits, and the GPU's use."""

    @tornado.web.authenticated
    async def get(self) -> None:
        from openmind.jupyter.meters import meters

        km = self.settings.get("kernel_manager")
        sm = self.settings.get("session_manager")
        paths: dict[str, str] = {}
        if sm is not None:
            try:
                for s in await sm.list_sessions():
                    if s.get("kernel"):
                        paths[s["kernel"]["id"]] = s.get("path") or s.get("name") or ""
            except Exception:  # noqa: S110 (the names are a nicety; the figures still come)
                pass
        kernels = []
        for kid in (km.list_kernel_ids() if km is not None else []):
            kernel = km.get_kernel(kid)
            prov = getattr(kernel, "provisioner", None)
            pid = getattr(prov, "pid", None) if prov is not None else None
            kernels.append({"id": kid, "pid": pid, "name": getattr(kernel, "kernel_name", ""),
                            "path": paths.get(kid, ""),
                            "execution_state": getattr(kernel, "execution_state", None)})
        self._send(await _off_loop(lambda: meters(kernels)))


def routes(base_url: str) -> list[tuple[str, type[APIHandler]]]:
    """The URL patterns under `base_url` (a JupyterHub or proxy prefix is kept)."""
    api = url_path_join(base_url, "openmind", "api")
    return [
        (url_path_join(api, "resources"), ResourcesHandler),
        (url_path_join(api, "journal"), JournalHandler),
        (url_path_join(api, "memory"), MemoryHandler),
        (url_path_join(api, "memory", r"([0-9a-f]{6,64})"), MemoryHandler),
        (url_path_join(api, "meters"), MetersHandler),
    ]


def _load_jupyter_server_extension(server_app: Any) -> None:
    """Register the handlers with the server's tornado application."""
    web_app = server_app.web_app
    base_url = web_app.settings["base_url"]
    web_app.add_handlers(".*$", routes(base_url))
    root = _root_dir(web_app.settings)
    logger = getattr(server_app, "event_logger", None)
    if logger is not None:
        from jupyter_server.services.contents.manager import ContentsManager

        async def listener(logger: Any, schema_id: str, data: dict[str, Any]) -> None:
            try:  # called inside the contents request: never fail it
                await on_contents_event(root, data)
            except Exception as exc:
                server_app.log.warning("openmind: journal did not follow a rename: %s", exc)

        logger.add_listener(schema_id=ContentsManager.event_schema_id, listener=listener)
    server_app.log.info("openmind: sidebar API at %s", url_path_join(base_url, "openmind", "api"))
