"""`openmind serve`: the models in muscle memory over the Open Inference Protocol v2 REST API.

One notebook's memory becomes another's cloud. An ASGI app (starlette) on uvicorn, loopback by
default; with a token every request needs `Authorization: Bearer <token>`. Every refusal is a 4xx with a JSON
`{"error": ...}`: oversized bodies are refused from their Content-Length before they are read.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import hmac
import ipaddress
import json
import logging
import os
import sys
import threading
import time
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from openmind.config import VERSION
from openmind.errors import BadInput
from openmind.pathways.cloud import tensors
from openmind.pathways.cloud.tensors import DATATYPES, HEADER, TensorError

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


def _label_type(model) -> str:
    classes = model.classes
    return "BYTES" if classes is not None and classes.dtype.kind in "USO" else "INT64"


def _outputs(model) -> list[str]:
    """The outputs a model answers: label and probabilities; a colony adds abstained (BOOL, a row
    fewer than its quorum of members stand behind)."""
    return ["label", "probabilities"] + (["abstained"] if model.colony is not None else [])


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

    async def openapi(self, request: Request) -> Response:
        return Response(self._spec, media_type="application/json")

    async def model_meta(self, request: Request) -> Response:
        name = request.path_params["name"]
        model = self.model_or_404(name)
        n = model.n_inputs
        classes = model.classes
        k = len(classes) if classes is not None else -1
        col = model.colony
        outputs = [{"name": "label", "datatype": _label_type(model), "shape": [-1]},
                   {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]}]
        params: dict[str, Any] = {"key": model.key,
                                  "classes": classes.tolist() if classes is not None else None}
        if col is not None:
            outputs.append({"name": "abstained", "datatype": "BOOL", "shape": [-1]})
            params.update(members=[m.name for m in col.members], quorum=col.quorum,
                          confidence=col.confidence)
        return _json({
            "name": name, "versions": ["1"],
            "platform": "openmind-colony" if col is not None else "openmind-ternary",
            "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, n if n else -1]}],
            "outputs": outputs, "parameters": params,
        })

    async def model_ready(self, request: Request) -> Response:
        name = request.path_params["name"]
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
        name = scope["path_params"]["name"]
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
            X, wanted, rid, binary = self._parse(doc, model, rest)
        except BadInput as exc:
            raise Refusal(400, str(exc)) from None
        except (TypeError, ValueError, KeyError, AttributeError, RecursionError) as exc:
            # a body shape no check above foresaw: still the caller's mistake, never a 500
            log.info("malformed infer body for %r: %s: %s", name, type(exc).__name__, exc)
            raise Refusal(400, f"malformed inference request ({type(exc).__name__}); "
                               "see /v2/openapi.json") from None
        labels, proba, _used, abstained = model.answer(X)  # a colony: by vote, with its abstentions
        if _label_type(model) == "INT64":
            labels = np.asarray(labels).astype(np.int64)
        outs = {"label": labels, "probabilities": proba}
        if abstained is not None:
            outs["abstained"] = abstained
        listed, raw = tensors.encode_many({o: outs[o] for o in wanted}, binary)
        answer: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": listed}
        if rid is not None:
            answer["id"] = rid
        head = json.dumps(answer).encode()
        if not any(binary.values()):
            return {"Content-Type": "application/json"}, head
        return {"Content-Type": "application/octet-stream", HEADER: str(len(head))}, head + raw

    def _parse(self, body: Any, model, rest: memoryview) -> tuple[np.ndarray, list[str], Any, dict[str, bool]]:
        if not isinstance(body, dict):
            raise TensorError('body must be a JSON object {"inputs": [...]}')
        if not isinstance(body.get("parameters", {}), dict):
            raise TensorError("parameters must be a JSON object")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or len(inputs) != 1:
            raise TensorError("inputs must be a list of exactly one tensor (the feature rows)")
        n = model.n_inputs
        [(_, X)] = tensors.take_binary(inputs, rest, where="inputs", max_elements=self.max_rows * max(n or 1, 1))
        if X.dtype == object or X.dtype == np.bool_:
            raise TensorError("inputs[0] must hold numbers (FP32, FP64 or an integer type)")
        if X.ndim == 1:
            X = X.reshape(1, -1)
        if X.ndim != 2 or (n is not None and X.shape[1] != n):
            raise TensorError(f"inputs[0] has shape {list(X.shape)}; model '{model.name}' expects [rows, {n}]")
        X = X.astype(np.float32, copy=False)
        if not np.isfinite(X).all():
            raise TensorError("inputs[0] contains NaN or infinity")
        outputs = body.get("outputs")
        wanted = _outputs(model)
        if outputs is not None:
            if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                        and isinstance(o.get("parameters", {}), dict)
                                                        for o in outputs):
                raise TensorError('outputs must be a list of {"name": ...} objects')
            wanted = [o["name"] for o in outputs]
            valid = _outputs(model)
            unknown = [w for w in wanted if w not in valid]
            if unknown:
                raise TensorError(f"unknown output(s) {str(unknown)[:120]}; valid: {', '.join(valid)}")
        rid = body.get("id")
        if rid is not None and not isinstance(rid, str):
            raise TensorError("id must be a string")
        # binary outputs: per output ("parameters": {"binary_data": true}) or all of them
        # ("parameters": {"binary_data_output": true}), as Triton's client asks by default
        params = body.get("parameters")
        every = isinstance(params, dict) and params.get("binary_data_output") is True
        binary = {w: every for w in wanted}
        for o in outputs or []:
            p = o.get("parameters")
            if isinstance(p, dict) and isinstance(p.get("binary_data"), bool):
                binary[o["name"]] = p["binary_data"]
        return X, wanted, rid, binary


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
             body_timeout: float = DEFAULT_BODY_TIMEOUT) -> Starlette:
    """The ASGI application (exposed for embedding in another ASGI server; `serve` runs it)."""
    r = Routes(Registry(models), max_body, max_rows, body_timeout)
    model, version = "/v2/models/{name}", "/v2/models/{name}/versions/{version}"
    # the router tries routes in order: the hot one first
    routes = [Route(model + "/infer", _Endpoint(r.infer), methods=["POST"]),
              Route(version + "/infer", _Endpoint(r.infer), methods=["POST"]),
              Route("/v2/openapi.json", r.openapi), Route("/v2/health/live", r.live),
              Route("/v2/health/ready", r.ready), Route("/v2", r.server_meta), Route("/v2/", r.server_meta),
              Route("/v2/repository/index", r.repo_index, methods=["POST"])]
    for m in (model, version):
        routes += [Route(m + "/ready", r.model_ready), Route(m, r.model_meta), Route(m + "/", r.model_meta)]
    app = Starlette(routes=routes, middleware=[Middleware(_BearerToken, token=token)],
                    exception_handlers={Refusal: _refused, HTTPException: _http_error, Exception: _crashed})
    app.router.redirect_slashes = False  # every path answers itself: a redirect would drop the body
    return app


def serve(host: str = "127.0.0.1", port: int = 8000, token: str | None = None, *,
          max_body: int = DEFAULT_MAX_BODY, models: list[str] | None = None,
          ready: Any = None, insecure: bool = False, body_timeout: float = DEFAULT_BODY_TIMEOUT,
          workers: int = 1) -> None:
    """Run the server until interrupted; prints the URL it listens on (port 0 = any free port).
    Beyond loopback it needs a token, unless `insecure` says the caller means it. `workers` > 1
    runs that many processes on the one port (uvicorn's supervisor restarts one that dies): a
    process answers on one core, so a machine with cores to spare serves that many times more.

    uvicorn with httptools (and uvloop where it exists), as KServe and MLServer run: per request
    it costs a third of what tornado did, which is most of a small model's round trip."""
    import tornado.netutil
    import uvicorn

    check_bind(host, token, insecure)
    settings = {"max_body": max_body, "models": models, "body_timeout": body_timeout}
    common = {"http": "auto", "loop": "auto", "lifespan": "off", "log_config": None, "access_log": False,
              "server_header": False, "proxy_headers": False, "ws": "none", "timeout_keep_alive": 120,
              "timeout_graceful_shutdown": 3}
    if workers > 1:  # spawned workers build the app from the environment: the token stays off argv
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        if token:
            os.environ["OPENMIND_SERVE_TOKEN"] = token
        else:
            os.environ.pop("OPENMIND_SERVE_TOKEN", None)
        config = uvicorn.Config("openmind.serve:app_from_env", factory=True, workers=workers, **common)
    else:
        config = uvicorn.Config(make_app(token, **settings), **common)
    sockets = tornado.netutil.bind_sockets(port, address=host)  # every address of the name, v4 and v6
    bound = sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"openmind serve: listening on http://{shown_host}:{bound} "
          f"({'token required' if token else 'no token'}; models: {', '.join(Registry(models).names()) or 'none yet'})",
          flush=True)
    if ready is not None:
        ready(bound)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, target=uvicorn.Server(config).run, sockets=sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)


SETTINGS_ENV = "OPENMIND_SERVE_SETTINGS"


def app_from_env() -> Starlette:
    """The app of one `openmind serve --workers N` process, from what the supervisor put in the
    environment (settings as JSON, the token in OPENMIND_SERVE_TOKEN)."""
    log_to_stderr()
    settings = json.loads(os.environ[SETTINGS_ENV])
    return make_app(os.environ.get("OPENMIND_SERVE_TOKEN") or None, **settings)


def log_to_stderr() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")


class ServeProcess:
    """`openmind serve` in a child process (tests, benchmarks, notebooks serving their memory).

    stdout is read only for the "listening on" line; the log goes to a file (`log_path`), so a
    chatty server can never block on a full pipe.
    """

    def __init__(self, *, home: str | None = None, token: str | None = None, port: int = 0,
                 max_body: int | None = None, body_timeout: float | None = None, workers: int = 1,
                 extra_env: dict[str, str] | None = None,
                 timeout: float = 60.0) -> None:
        import selectors
        import subprocess
        import tempfile

        env = dict(os.environ, **(extra_env or {}))
        if home is not None:
            env["OPENMIND_HOME"] = str(home)
        env.pop("OPENMIND_SERVE_TOKEN", None)
        if token:
            env["OPENMIND_SERVE_TOKEN"] = token  # not on the command line, where `ps` shows it
        cmd = [sys.executable, "-m", "openmind.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if max_body is not None:
            cmd += ["--max-body", str(max_body)]
        if body_timeout is not None:
            cmd += ["--body-timeout", str(body_timeout)]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="openmind-serve-", suffix=".log", delete=False)
        self.log_path = self._log.name
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = sel.select(max(0.0, left)) if left > 0 else []
            if not ready:
                self.close()
                raise RuntimeError(f"openmind serve did not start within {timeout:g}s: {self.log()[-500:]}")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                self.close()
                raise RuntimeError(f"openmind serve exited: {self.log()[-500:]}")
            line += chunk
        sel.close()
        self.banner = line.decode().strip()
        self.url = self.banner.split("listening on ", 1)[1].split()[0]

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# --------------------------------------------------------------------------- CLI


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="serve the models in muscle memory over the Open Inference Protocol v2")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer <token>' (default: $OPENMIND_SERVE_TOKEN)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY,
                   help=f"largest request body in bytes (default {DEFAULT_MAX_BODY})")
    p.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT,
                   help=f"seconds a request body may take to arrive (default {DEFAULT_BODY_TIMEOUT:g}); "
                        "a stalled client gets 408")
    p.add_argument("--workers", type=int, default=1,
                   help="processes answering on the port (default 1; one per core the server may use)")
    p.add_argument("--model", action="append", dest="models", help="serve only this model (repeatable)")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening beyond loopback without a token (anyone who reaches the port can query)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get("OPENMIND_SERVE_TOKEN") or None
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port {args.port} is not a TCP port; give 0-65535 (0 = any free port)")
    if args.max_body < 1024:
        raise BadInput(f"--max-body {args.max_body} is too small; give at least 1024 bytes")
    if not 1 <= args.workers <= 256:
        raise BadInput(f"--workers {args.workers}: give 1-256 processes (one per core to spare)")
    if not args.body_timeout > 0:
        raise BadInput(f"--body-timeout {args.body_timeout} must be a positive number of seconds")
    insecure = bool(getattr(args, "insecure", False))
    check_bind(args.host, token, insecure)
    if insecure and not token and not is_loopback(args.host):
        print("openmind serve: warning: listening beyond loopback without a token (--insecure); anyone "
              "who can reach this port can query the models", file=sys.stderr, flush=True)
    log_to_stderr()
    try:
        serve(args.host, args.port, token, max_body=args.max_body, models=args.models, insecure=insecure,
              body_timeout=args.body_timeout, workers=args.workers)
    except OSError as exc:
        raise BadInput(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                       "pick another --port or 0 for any free one") from None
    return 0


# --------------------------------------------------------------------------- bind rule


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches ('localhost', 127.0.0.0/8, ::1).
    '', '0.0.0.0' and '::' mean every interface; any other name may resolve anywhere."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve beyond loopback without a token unless the caller said --insecure."""
    if token or insecure or is_loopback(host):
        return
    shown = host if host else "'' (every interface)"
    raise BadInput(f"refusing to listen on {shown} without a token: anyone who can reach the port could "
                   f"query the models. Set OPENMIND_SERVE_TOKEN (or --token), listen on 127.0.0.1, or "
                   f"pass --insecure if you mean it")


# --------------------------------------------------------------------------- OpenAPI


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(ok: str | None, *errors: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if ok:
        out["200"] = {"description": "OK", "content": {"application/json": {"schema": _ref(ok)}}}
    for code in errors:
        out[str(code)] = {"description": {400: "malformed request", 401: "missing or wrong bearer token",
                                          404: "no such model", 408: "body not received in time",
                                          413: "body too large",
                                          503: "model stored but cannot be loaded"}[code],
                          "content": {"application/json": {"schema": _ref("Error")}}}
    return out


def openapi_spec() -> dict[str, Any]:
    """The OpenAPI 3.0 description of what `openmind serve` answers: the Open Inference Protocol
    v2 REST API (KServe/Triton shape), with openmind's error body {"error": "..."}."""
    model = {"name": "model_name", "in": "path", "required": True, "schema": {"type": "string"}}
    version = {"name": "model_version", "in": "path", "required": True, "schema": {"type": "string"}}
    params = {"type": "object", "additionalProperties": True}
    tensor_in = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}},
        "datatype": {"type": "string", "enum": list(DATATYPES)}, "parameters": params,
        "data": {"type": "array", "items": {}}}}
    tensor_out = {"type": "object", "required": ["name", "shape", "datatype", "data"], "properties": {
        "name": {"type": "string"}, "shape": {"type": "array", "items": {"type": "integer"}},
        "datatype": {"type": "string"}, "parameters": params, "data": {"type": "array", "items": {}}}}
    schemas = {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Live": {"type": "object", "properties": {"live": {"type": "boolean"}}},
        "Ready": {"type": "object", "properties": {"ready": {"type": "boolean"}}},
        "ServerMetadata": {"type": "object", "required": ["name", "version", "extensions"], "properties": {
            "name": {"type": "string"}, "version": {"type": "string"},
            "extensions": {"type": "array", "items": {"type": "string"}}}},
        "MetadataTensor": {"type": "object", "required": ["name", "datatype", "shape"], "properties": {
            "name": {"type": "string"}, "datatype": {"type": "string"},
            "shape": {"type": "array", "items": {"type": "integer"}}}},
        "ModelMetadata": {"type": "object", "required": ["name", "platform", "inputs", "outputs"], "properties": {
            "name": {"type": "string"}, "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"}, "parameters": params,
            "inputs": {"type": "array", "items": _ref("MetadataTensor")},
            "outputs": {"type": "array", "items": _ref("MetadataTensor")}}},
        "ModelReady": {"type": "object", "properties": {"name": {"type": "string"}, "ready": {"type": "boolean"}}},
        "RepositoryIndex": {"type": "array", "items": {"type": "object", "properties": {
            "name": {"type": "string"}, "version": {"type": "string"}, "state": {"type": "string"}}}},
        "RequestInput": tensor_in,
        "RequestOutput": {"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string"}, "parameters": params}},
        "InferenceRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"}, "parameters": params,
            "inputs": {"type": "array", "items": _ref("RequestInput")},
            "outputs": {"type": "array", "items": _ref("RequestOutput")}}},
        "ResponseOutput": tensor_out,
        "InferenceResponse": {"type": "object", "required": ["model_name", "outputs"], "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "parameters": params, "outputs": {"type": "array", "items": _ref("ResponseOutput")}}},
    }
    infer_body = {"required": True, "content": {"application/json": {"schema": _ref("InferenceRequest")}}}
    infer_doc = ("Outputs: label (INT64 or BYTES, one per row) and probabilities (FP32, rows x "
                 "classes). A colony (platform openmind-colony) answers label by its vote and adds "
                 "abstained (BOOL, one per row: fewer than its quorum of members stand behind the "
                 "label). Left out, `outputs` means all of them.")
    a = (401,)
    paths = {
        "/v2/health/live": {"get": {"operationId": "serverLive", "responses": _answer("Live", *a)}},
        "/v2/health/ready": {"get": {"operationId": "serverReady", "responses": _answer("Ready", *a)}},
        "/v2": {"get": {"operationId": "serverMetadata", "responses": _answer("ServerMetadata", *a)}},
        "/v2/repository/index": {"post": {"operationId": "repositoryIndex",
                                          "responses": _answer("RepositoryIndex", *a)}},
        "/v2/models/{model_name}": {"get": {"operationId": "modelMetadata", "parameters": [model],
                                            "responses": _answer("ModelMetadata", 401, 404, 503)}},
        "/v2/models/{model_name}/versions/{model_version}": {"get": {
            "operationId": "modelVersionMetadata", "parameters": [model, version],
            "responses": _answer("ModelMetadata", 401, 404, 503)}},
        "/v2/models/{model_name}/ready": {"get": {"operationId": "modelReady", "parameters": [model],
                                                  "responses": _answer("ModelReady", 401, 404, 503)}},
        "/v2/models/{model_name}/infer": {"post": {
            "operationId": "modelInfer", "description": infer_doc,
            "parameters": [model], "requestBody": infer_body,
            "responses": _answer("InferenceResponse", 400, 401, 404, 408, 413, 503)}},
        "/v2/models/{model_name}/versions/{model_version}/infer": {"post": {
            "operationId": "modelVersionInfer", "description": infer_doc,
            "parameters": [model, version], "requestBody": infer_body,
            "responses": _answer("InferenceResponse", 400, 401, 404, 408, 413, 503)}},
    }
    return {"openapi": "3.0.3",
            "info": {"title": "openmind serve: Open Inference Protocol v2 (REST)", "version": VERSION},
            "paths": paths,
            "components": {"schemas": schemas,
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}, {}]}
