"""Real HTTP servers on 127.0.0.1 with scripted behaviours, for the cloud tests.

`Scripted` answers any path from a queue of behaviours (then a default); `FakeLLM` is a small
OpenAI-compatible server (`GET /v1/models` checks the key, `POST /v1/chat/completions` answers
from the script). Behaviours:
    ("json", status, obj, headers)   answer JSON
    ("reply", text)                  a chat completion whose message content is `text`
    ("hang", seconds)                answer nothing for that long (bounded; released on close)
    ("echo_auth", status)            an error body that echoes the Authorization header back
    ("raw", status, bytes)           answer these bytes as the body
    ("reset",)                       close the connection without answering
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import deque
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return raw.decode(errors="replace")

    def _send(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        body = self._body()
        owner = self.server.owner
        with owner.lock:
            owner.requests.append({"method": self.command, "path": self.path,
                                   "headers": dict(self.headers), "body": body})
        behaviour = owner.next_for(self.command, self.path, dict(self.headers))
        try:
            self._behave(behaviour)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up first (timeout tests)

    def _behave(self, behaviour: tuple) -> None:
        kind = behaviour[0]
        if kind == "json":
            _, status, obj, *rest = behaviour
            self._send(status, obj, rest[0] if rest else None)
        elif kind == "reply":
            self._send(200, {"id": "x", "object": "chat.completion", "choices": [
                {"index": 0, "message": {"role": "assistant", "content": behaviour[1]},
                 "finish_reason": "stop"}]})
        elif kind == "hang":
            self.server.owner.release.wait(behaviour[1])
            self._send(504, {"error": "hung"})
        elif kind == "echo_auth":
            self._send(behaviour[1], {"error": f"bad credentials: {self.headers.get('Authorization')}"})
        elif kind == "raw":  # ("raw", status, bytes): a body that is not what was promised
            data = behaviour[2]
            self.send_response(behaviour[1])
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        elif kind == "reset":  # drop the connection without a word
            self.close_connection = True
            import socket

            self.connection.shutdown(socket.SHUT_RDWR)
        else:
            raise AssertionError(kind)

    do_GET = do_POST = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Scripted


class Scripted:
    """A real HTTP server on 127.0.0.1; `script(path_prefix, *behaviours)` queues answers."""

    default: tuple = ("json", 200, {"ok": True})

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.requests: list[dict[str, Any]] = []
        self.queues: dict[str, deque] = {}
        self._srv = _Server(("127.0.0.1", 0), _Handler)
        self._srv.owner = self
        self.port = self._srv.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._srv.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    def script(self, prefix: str, *behaviours: tuple) -> Scripted:
        with self.lock:
            self.queues.setdefault(prefix, deque()).extend(behaviours)
        return self

    def next_for(self, method: str, path: str, headers: dict[str, str]) -> tuple:
        with self.lock:
            for prefix, q in self.queues.items():
                if path.startswith(prefix) and q:
                    return q.popleft()
        return self.default_for(method, path, headers)

    def default_for(self, method: str, path: str, headers: dict[str, str]) -> tuple:
        return self.default

    def calls(self, prefix: str = "") -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["path"].startswith(prefix)]

    def close(self) -> None:
        self.release.set()
        self._srv.shutdown()
        self._srv.server_close()

    def __enter__(self) -> Scripted:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


VALID_PLAN = {"pathway": "full_train", "architecture": {"hidden": [32], "activation": "relu"},
              "epochs": 40, "reason": "small tabular data"}


class FakeLLM(Scripted):
    """OpenAI-compatible: /v1/models checks the key; chat answers a valid plan unless scripted."""

    def __init__(self, key: str) -> None:
        super().__init__()
        self.key = key
        self.base = f"{self.url}/v1"

    def default_for(self, method: str, path: str, headers: dict[str, str]) -> tuple:
        if headers.get("Authorization") != f"Bearer {self.key}":
            return ("json", 401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
        if path.startswith("/v1/models"):
            return ("json", 200, {"object": "list", "data": [{"id": "fake-small", "object": "model"}]})
        return ("reply", json.dumps(VALID_PLAN))


@contextlib.contextmanager
def configured(monkeypatch: Any, key: str, **env: str) -> Iterator[FakeLLM]:
    """A FakeLLM that openmind is configured to use (OPENMIND_API_BASE/KEY, plus `env`), with
    the endpoint health openmind keeps reset before and after."""
    from openmind.pathways.cloud import http

    http.reset()
    with FakeLLM(key) as fake:
        monkeypatch.setenv("OPENMIND_API_BASE", fake.base)
        monkeypatch.setenv("OPENMIND_API_KEY", key)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        yield fake
    http.reset()


def closed_port() -> int:
    """A port nothing listens on (bound then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
