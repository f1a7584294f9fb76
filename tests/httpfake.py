"""A real HTTP server on 127.0.0.1 with scripted answers, for probe tests."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

Responder = Callable[[BaseHTTPRequestHandler], tuple[int, dict]]


@contextlib.contextmanager
def serve(respond: Responder) -> Iterator[str]:
    """Serve `respond(handler) -> (status, json_body)` for every GET; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            status, body = respond(self)
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up (timeout tests)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def models_api(key: str, hang: float = 0.0) -> Responder:
    """An OpenAI-compatible /v1/models that accepts only `key`."""

    def respond(h: BaseHTTPRequestHandler) -> tuple[int, dict]:
        if hang:
            time.sleep(hang)
        if h.path.rstrip("/") != "/v1/models":
            return 404, {"error": {"message": "not found"}}
        if h.headers.get("Authorization") != f"Bearer {key}":
            return 401, {"error": {"message": "invalid api key"}}
        return 200, {"object": "list", "data": [{"id": "tiny-1"}, {"id": "tiny-2"}]}

    return respond


def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
