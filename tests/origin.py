"""A real HTTP origin on 127.0.0.1 for the ingest tests: serves one body with an ETag and a
Last-Modified, answers conditional requests with 304, and can fail (HTTP 5xx) or hang until
released. It counts what it sent, so a test can show that a 304 downloaded nothing."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Origin:
    body: bytes = b""
    content_type: str = "text/csv"
    status: int = 200  # 500: the server answers but fails
    modified: float = 1_700_000_000.0
    validators: bool = True  # False: no ETag / Last-Modified (every answer is a full 200)
    hang: threading.Event | None = None  # set: every request waits until it is set
    requests: list[dict[str, str]] = field(default_factory=list)
    bodies_sent: int = 0
    not_modified: int = 0
    url: str = ""

    def set(self, body: bytes) -> None:
        self.body = body
        self.modified += 60

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'

    def answer(self, h: BaseHTTPRequestHandler) -> None:
        self.requests.append({k.lower(): v for k, v in h.headers.items()} | {"path": h.path})
        if self.hang is not None:
            self.hang.wait(30)
        if self.status >= 400:
            h.send_response(self.status)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        lm = email.utils.formatdate(self.modified, usegmt=True)
        if self.validators and (h.headers.get("If-None-Match") == self.etag
                                or (h.headers.get("If-None-Match") is None
                                    and h.headers.get("If-Modified-Since") == lm)):
            self.not_modified += 1
            h.send_response(304)
            h.send_header("ETag", self.etag)
            h.end_headers()
            return
        self.bodies_sent += 1
        h.send_response(200)
        h.send_header("Content-Type", self.content_type)
        h.send_header("Content-Length", str(len(self.body)))
        if self.validators:
            h.send_header("ETag", self.etag)
            h.send_header("Last-Modified", lm)
        h.end_headers()
        h.wfile.write(self.body)

    def basic_user(self) -> str | None:
        """The user:password the last request authenticated with (Basic), if any."""
        auth = (self.requests[-1] if self.requests else {}).get("authorization", "")
        return base64.b64decode(auth[6:]).decode() if auth.startswith("Basic ") else None


class _Server(ThreadingHTTPServer):
    daemon_threads = True


def start(origin: Origin) -> _Server:
    """Serve `origin` on a free port of 127.0.0.1 (origin.url is set); stop with `stop`."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            try:
                origin.answer(self)
            except OSError:
                pass  # the client gave up (the slow-server test)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    origin.url = f"http://127.0.0.1:{server.server_address[1]}"
    return server


def stop(server: _Server) -> None:
    server.shutdown()
    server.server_close()
