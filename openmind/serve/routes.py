"""The ASGI app of `openmind serve` (starlette): the Open Inference Protocol v2 REST routes over the
models in muscle memory, the bearer token checked before routing, and every refusal a 4xx with a
JSON `{"error": ...}` (oversized bodies refused from their Content-Length before they are read).

`OPERATIONS` is the one table of routes: `make_app` serves it and `openapi.describe` describes it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmind.config import VERSION
from openmind.errors import BadInput
from openmind.pathways.cloud import tensors
from openmind.pathways.cloud.tensors import HEADER
from openmind.serve import codec, documents
from openmind.serve.openapi import Operation, describe

log = logging.getLogger("openmind.serve")
HEADER_KEY = HEADER.lower().encode()  # as ASGI names headers

DEFAULT_MAX_BODY = 32 * 2**20  # bytes of one request body
DEFAULT_MAX_ROWS = 100_000
DEFAULT_BODY_TIMEOUT = 60.0  # seconds a request body may take to arrive (a stalled client is cut off)
RELOAD_S = 1.0  # how long a model lookup is trusted before muscle memory is asked again
# A request whose model work is at most this many multiply-adds (~1 ms on one core) is answered
# on the event loop itself: handing it to a worker thread and back costs ~0.5 ms, more than the
# model at batch 256 of a digits-sized network. Bigger or unknown work goes to a worker thread.
INLINE_WORK = 40_000_000

INFER_DOC = ("Outputs: label (INT64 or BYTES, one per row) and probabilities (FP32, rows x "
             "classes). A colony (platform openmind-colony) answers label by its vote and adds "
             "abstained (BOOL, one per row: fewer than its quorum of members stand behind the "
             "label). Left out, `outputs` means all of them.")
MODEL = "/v2/models/{model_name}"
VERSIONED = MODEL + "/versions/{model_version}"
_INFER = {"answers": documents.InferenceResponse, "reads": documents.InferenceRequest,
          "description": INFER_DOC, "asgi": True}
# The router tries routes in order: the hot one first. Without an operation_id a route is served
# but not described (the trailing-slash aliases, the description itself).
OPERATIONS: tuple[Operation, ...] = (
    Operation(MODEL + "/infer", "POST", "infer", operation_id="modelInfer", **_INFER),
    Operation(VERSIONED + "/infer", "POST", "infer", operation_id="modelVersionInfer", **_INFER),
    Operation("/v2/openapi.json", "GET", "openapi"),
    Operation("/v2/health/live", "GET", "live", operation_id="serverLive", answers=documents.Live),
    Operation("/v2/health/ready", "GET", "ready", operation_id="serverReady", answers=documents.Ready),
    Operation("/v2", "GET", "server_meta", operation_id="serverMetadata", answers=documents.ServerMetadata),
    Operation("/v2/", "GET", "server_meta"),
    Operation("/v2/repository/index", "POST", "repo_index", operation_id="repositoryIndex",
              answers=documents.RepositoryIndex),
    Operation("/v2/models", "GET", "model_list", operation_id="modelList", answers=documents.ModelList),
    Operation("/v2/models/", "GET", "model_list"),
    Operation(MODEL + "/ready", "GET", "model_ready", operation_id="modelReady", answers=documents.ModelReady),
    Operation(MODEL, "GET", "model_meta", operation_id="modelMetadata", answers=documents.ModelMetadata),
    Operation(MODEL + "/", "GET", "model_meta"),
    Operation(VERSIONED + "/ready", "GET", "model_ready"),
    Operation(VERSIONED, "GET", "model_meta", operation_id="modelVersionMetadata",
              answers=documents.ModelMetadata),
    Operation(VERSIONED + "/", "GET", "model_meta"),
)


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.0 description of what `openmind serve` answers (served at /v2/openapi.json)."""
    return describe(OPERATIONS)


class Registry:
    """Models by name from muscle memory; a newer model stored under the same name is picked up."""

    def __init__(self, only: list[str] | None = None) -> None:
        self.only = set(only) if only else None
        self._cache: dict[str, tuple[float, Any]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        from openmind.memory.blobs import entries

        names = sorted({e.name for e in entries("model")})
        return [n for n in names if self.only is None or n in self.only]

    def get(self, name: str):
        """The LocalModel for `name`, or None when memory holds no such model."""
        if self.only is not None and name not in self.only:
            return None
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(name)
        if hit and now - hit[0] < RELOAD_S:
            return hit[1]
        from openmind.intents.infer import load_local_model
        from openmind.memory.blobs import entries

        found = entries("model", name)
        if not found:
            model = None
        elif hit and hit[1] is not None and hit[1].key == found[0].key:
            model = hit[1]
        else:
            model = load_local_model(name)
        with self._lock:
            self._cache[name] = (now, model)
        return model


class Refusal(Exception):
    """A request refused with `status` and a message for the caller ({"error": message})."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    # json.dumps, not starlette's JSONResponse: that refuses NaN, which a model may answer
    return Response(json.dumps(obj).encode(), status, headers, media_type="application/json")


def authorized(header: str | None, token: str) -> bool:
    """Whether an Authorization header carries `Bearer <token>` (compared in constant time)."""
    scheme, _, value = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())


class _BearerToken:
    """Every route but the API description needs the token; checked before routing, so an unknown
    path is a 401 too (it tells a stranger nothing about what is served)."""

    PUBLIC = ("/v2/openapi.json",)

    def __init__(self, app: Any, token: str | None) -> None:
        self.app = app
        self.token = token

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if self.token and scope["type"] == "http" and scope["path"] not in self.PUBLIC:
            given = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"authorization"), None)
            if not authorized(given, self.token):
                client = scope.get("client") or ("?", 0)
                log.warning("401 %s %s from %s: missing or wrong bearer token", scope["method"],
                            scope["path"][:200], client[0])
                answer = _json({"error": "missing or wrong bearer token"}, 401,
                               {"WWW-Authenticate": 'Bearer realm="openmind"'})
                await answer(scope, receive, send)
                return
        await self.app(scope, receive, send)


LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


def host_of(value: str) -> str:
    """The name in a Host header, without its port or IPv6 brackets, lower-cased."""
    h = value.strip().lower()
    if h.startswith("["):
        return h[1:h.find("]")] if "]" in h else h
    return h.rpartition(":")[0] if h.count(":") == 1 else h


def _is_loopback_name(name: str) -> bool:
    """'localhost', or an address only this machine reaches (127.0.0.0/8, ::1)."""
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class _TrustedHost:
    """Answer only requests whose Host header names this server: loopback names, and the names
    it was told (`--allowed-hosts`; "*": any), as Jupyter's server does. A web page cannot then
    reach it through DNS rebinding (its requests carry the page's own host name). Checked first;
    a Host seen before costs one set lookup."""

    def __init__(self, app: Any, allowed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.any = "*" in allowed
        self.names = frozenset(host_of(a) for a in allowed if a != "*")
        self.ok: set[bytes] = set()

    def allows(self, raw: bytes) -> bool:
        name = host_of(raw.decode("latin-1"))
        return _is_loopback_name(name) or name in self.names

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and not self.any:
            raw = next((v for k, v in scope["headers"] if k == b"host"), b"")
            if raw not in self.ok:
                if not self.allows(raw):
                    shown = raw.decode("latin-1")[:100]
                    log.warning("403 %s %s: Host %r is not this server's", scope["method"],
                                scope["path"][:200], shown)
                    answer = _json({"error": f"Host {shown!r} is not a name this server answers "
                                             f"to; start it with --allowed-hosts NAME to add one"}, 403)
                    await answer(scope, receive, send)
                    return
                if len(self.ok) < 64:
                    self.ok.add(raw)
        await self.app(scope, receive, send)


class Routes:
    """The Open Inference Protocol v2 REST routes over a Registry: one method per route."""

    def __init__(self, registry: Registry, max_body: int, max_rows: int,
                 body_timeout: float = DEFAULT_BODY_TIMEOUT) -> None:
        self.registry = registry
        self.max_body = max_body
        self.max_rows = max_rows
        self.body_timeout = body_timeout
        self._spec = json.dumps(openapi_spec()).encode()

    def model_or_404(self, name: str):
        try:
            model = self.registry.get(name)
        except Exception as exc:  # a stored model this version cannot read: the server's problem
            log.warning("model %r cannot be loaded: %s", name, exc)
            raise Refusal(503, f"model '{name}' is stored but cannot be loaded ({type(exc).__name__})") from None
        if model is None:
            raise Refusal(404, f"no model named '{name}' here; served: {self.registry.names()}")
        return model

    async def live(self, request: Request) -> Response:
        return _json({"live": True})

    async def ready(self, request: Request) -> Response:
        return _json({"ready": True})

    async def server_meta(self, request: Request) -> Response:
        return _json({"name": "openmind", "version": VERSION,
                      "extensions": ["model_repository", tensors.EXTENSION]})

    async def repo_index(self, request: Request) -> Response:
        return _json([{"name": n, "version": "1", "state": "READY"} for n in self.registry.names()])

    async def model_list(self, request: Request) -> Response:
        """KServe's `{"models": [names]}` (Triton's index is POST /v2/repository/index)."""
        return _json({"models": self.registry.names()})

    async def openapi(self, request: Request) -> Response:
        return Response(self._spec, media_type="application/json")

    async def model_meta(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        return _json(codec.model_metadata(name, self.model_or_404(name)))

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["model_name"]
        self.model_or_404(name)
        return _json({"name": name, "ready": True})

    async def _body(self, length: bytes | None, receive: Any) -> bytes | None:
        """The request body (None: the caller left), refused with 413 from its Content-Length
        before it is read, or as soon as a chunked one grows past the limit; 408 when it takes
        longer than body_timeout to come."""
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise Refusal(413, f"request body of {int(length)} bytes exceeds the limit of {self.max_body} "
                               f"bytes (openmind serve --max-body); send smaller batches")
        chunks, size, more = [], 0, True
        try:
            async with asyncio.timeout(self.body_timeout):
                while more:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    chunk, more = message.get("body", b""), message.get("more_body", False)
                    size += len(chunk)
                    if size > self.max_body:
                        raise Refusal(413, f"request body exceeds the limit of {self.max_body} bytes")
                    chunks.append(chunk)
        except TimeoutError:
            raise Refusal(408, f"request body not received within {self.body_timeout:g} s "
                               f"({size} bytes came); send it at once") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def infer(self, scope: dict, receive: Any, send: Any) -> None:
        """POST /v2/models/{name}/infer, a bare ASGI endpoint (the hottest route skips starlette's
        request and response objects). Small work is answered on the event loop, the rest in a
        worker thread (the loop keeps serving meanwhile)."""
        name = scope["path_params"]["model_name"]
        headers = dict(scope["headers"])
        body = await self._body(headers.get(b"content-length"), receive)
        if body is None:  # the caller left mid-body: no one to answer
            return
        model = self.model_or_404(name)  # a memo hit; memory is asked at most once a second
        header_length = headers[HEADER_KEY].decode("latin-1") if HEADER_KEY in headers else None
        if inline(model, len(body)):  # microseconds of work: two thread hops cost more
            answer, payload = self._infer(model, name, body, header_length)
        else:
            answer, payload = await asyncio.get_running_loop().run_in_executor(
                _pool(), self._infer, model, name, body, header_length)
        raw = [(k.lower().encode(), v.encode()) for k, v in answer.items()]
        await send({"type": "http.response.start", "status": 200,
                    "headers": raw + [(b"content-length", str(len(payload)).encode())]})
        await send({"type": "http.response.body", "body": payload})

    def _infer(self, model: Any, name: str, body: bytes, header_length: str | None) -> tuple[dict[str, str], bytes]:
        """One request to `model`: (headers, body) of the answer."""
        try:
            doc, rest = tensors.split_body(body, header_length)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            raise Refusal(400, f"body is not valid JSON or {HEADER} is wrong ({str(exc)[:120]})") from None
        try:
            request = codec.read_request(doc, model, rest, self.max_rows)
        except BadInput as exc:
            raise Refusal(400, str(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            # a body shape no check above foresaw: still the caller's mistake, never a 500
            log.info("malformed infer body for %r: %s: %s", name, type(exc).__name__, exc)
            raise Refusal(400, f"malformed inference request ({type(exc).__name__}); "
                               "see /v2/openapi.json") from None
        return codec.encode_answer(name, model, request)


def inline(model: Any, size: int) -> bool:
    """Whether a request body of `size` bytes for `model` (a LocalModel, None when unknown) is
    answered on the event loop: its model work is at most INLINE_WORK multiply-adds. Rows are
    estimated as if every value took 4 bytes (JSON takes more: the estimate errs towards a thread)."""
    if model is None:
        return size <= 16 * 1024  # a 404 to come: cheap
    work = model.work(max(1, size // (4 * max(1, model.n_inputs or 1))))
    return work is not None and work <= INLINE_WORK


_executor: concurrent.futures.ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    """The worker threads inference runs in (numpy and the C kernels release the GIL)."""
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=min(8, (os.cpu_count() or 2)), thread_name_prefix="openmind-serve")
        return _executor


class _Endpoint:
    """A bare ASGI callable as a route's endpoint (starlette wraps functions and methods in its
    request/response machinery, and passes anything else through as it is)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Refusal)
    return _json({"error": exc.message}, exc.status)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, method not allowed) in openmind's error body."""
    assert isinstance(exc, HTTPException)
    what = f"{request.method} {request.url.path}"
    msg = {404: f"no such route: {what}",
           405: f"method not allowed: {what}; see /v2/openapi.json"}.get(exc.status_code, str(exc.detail))
    return _json({"error": msg}, exc.status_code, dict(exc.headers or {}))


async def _crashed(request: Request, exc: Exception) -> Response:
    return _json({"error": "internal error"}, 500)  # the traceback goes to the log, not the caller


def make_app(token: str | None = None, *, max_body: int = DEFAULT_MAX_BODY,
             max_rows: int = DEFAULT_MAX_ROWS, models: list[str] | None = None,
             body_timeout: float = DEFAULT_BODY_TIMEOUT,
             allowed_hosts: list[str] | tuple[str, ...] = ()) -> Starlette:
    """The ASGI application (exposed for embedding in another ASGI server; `serve` runs it).
    `allowed_hosts`: Host names answered besides the loopback ones ("*": any)."""
    r = Routes(Registry(models), max_body, max_rows, body_timeout)

    def endpoint(op: Operation) -> Any:
        handler = getattr(r, op.handler)
        return _Endpoint(handler) if op.asgi else handler

    routes = [Route(op.path, endpoint(op), methods=[op.method]) for op in OPERATIONS]
    app = Starlette(routes=routes, middleware=[Middleware(_TrustedHost, allowed=tuple(allowed_hosts)),
                                               Middleware(_BearerToken, token=token)],
                    exception_handlers={Refusal: _refused, HTTPException: _http_error, Exception: _crashed})
    app.router.redirect_slashes = False  # every path answers itself: a redirect would drop the body
    return app
