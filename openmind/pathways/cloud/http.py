"""One HTTP call to a remote endpoint: timeout, retries with backoff, Retry-After, cooldown.

Shared by the OIP client and the language-model client so both behave the same way:
- connect errors, HTTP 5xx and 429 are retried (429/503 honour Retry-After, capped by max_wait);
- other 4xx are the caller's mistake or a refusal and are never retried;
- a read timeout is not retried and benches the endpoint at once (it already cost the whole timeout);
- after `cooldown_after` failed attempts in a row an endpoint is benched for `cooldown` seconds, so a
  dead endpoint costs later cells no time (per process, per scheme://host:port).

Errors never carry a secret: messages are built from the public URL, the status and a short,
redacted detail of the body.

Plain-HTTP calls that no proxy setting covers (an inference server on loopback or the LAN) go over
pooled keep-alive `http.client` connections: a call costs ~0.2 ms there against ~0.7 ms through
httpx, more than the model itself at a small batch. HTTPS and proxied calls go through httpx
(certificates, proxies); both answer an `httpx.Response` and fail with httpx's exceptions.
"""

from __future__ import annotations

import base64
import email.utils
import functools
import http.client
import json as jsonlib
import os
import select
import socket
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import httpx

from openmind.config import VERSION, public_url, redact
from openmind.errors import OpenmindError


class EndpointError(OpenmindError):
    """A remote endpoint failed; `status` is the HTTP status (None: no answer), `cooling` is True
    when the call was not even tried because the endpoint is cooling down."""

    def __init__(self, message: str, *, status: int | None = None, cooling: bool = False) -> None:
        super().__init__(message)
        self.status = status
        self.cooling = cooling


@dataclass
class _Health:
    failures: int = 0
    until: float = 0.0
    last: str = ""


_health: dict[str, _Health] = {}
_lock = threading.Lock()
_client: httpx.Client | None = None


@functools.lru_cache(maxsize=256)
def endpoint_of(url: str) -> str:
    """scheme://host:port of a URL: the unit retries and cooldowns are kept for (parsed once per
    URL: every request asks)."""
    parts = httpx.URL(url)
    port = parts.port or {"http": 80, "https": 443}.get(parts.scheme, 0)
    return f"{parts.scheme}://{parts.host}:{port}"


def reset(endpoint: str | None = None) -> None:
    """Forget failure counts and cooldowns (of one endpoint, or all)."""
    with _lock:
        if endpoint is None:
            _health.clear()
        else:
            _health.pop(endpoint_of(endpoint), None)


def cooldown_left(url: str) -> float:
    """Seconds the endpoint of `url` stays benched (0 when it may be called)."""
    with _lock:
        h = _health.get(endpoint_of(url))
        return max(0.0, h.until - time.monotonic()) if h else 0.0


def _shared_client() -> httpx.Client:
    """One pooled client per process: keep-alive matters when a cell makes many calls."""
    global _client
    with _lock:
        if _client is None:
            _client = httpx.Client(limits=httpx.Limits(max_connections=32, max_keepalive_connections=8))
        return _client


PROXY_VARS = ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY")
KEEP_IDLE = 8  # idle keep-alive connections kept per endpoint
_idle: dict[tuple[str, int], list[http.client.HTTPConnection]] = {}
_idle_pid = os.getpid()


@functools.lru_cache(maxsize=256)
def _direct(scheme: str, host: str, env: tuple[str | None, ...]) -> bool:
    """Whether a call goes over the pooled http.client lane: plain HTTP that no proxy covers
    (httpx, which the rest takes, reads the same variables)."""
    if scheme != "http":
        return False
    proxy = env[0] or env[1] or env[2] or env[3]
    return not proxy or bool(urllib.request.proxy_bypass_environment(host, {"no": env[4] or env[5] or ""}))


def _take(key: tuple[str, int]) -> http.client.HTTPConnection | None:
    """An idle connection to `key` the peer has not closed meanwhile (a closed one polls readable)."""
    global _idle_pid
    with _lock:
        if _idle_pid != os.getpid():  # a forked child never shares its parent's sockets
            _idle.clear()
            _idle_pid = os.getpid()
        pool = _idle.get(key)
        while pool:
            conn = pool.pop()
            if conn.sock is not None and not _readable(conn.sock):
                return conn
            conn.close()
    return None


def _readable(sock: socket.socket) -> bool:
    """Whether an idle connection has something to read: the peer closed it (or broke protocol).
    poll, not select: select fails on descriptors past 1024, which a long notebook can reach."""
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock, select.POLLIN)
        return bool(poller.poll(0))
    return bool(select.select([sock], [], [], 0)[0])  # Windows has no poll


def _give_back(key: tuple[str, int], conn: http.client.HTTPConnection) -> None:
    with _lock:
        pool = _idle.setdefault(key, [])
        if len(pool) < KEEP_IDLE:
            pool.append(conn)
            return
    conn.close()


def _send_direct(method: str, url: urllib.parse.SplitResult, headers: dict[str, str], body: bytes | None,
                 timeout: float) -> httpx.Response:
    """One call over a pooled keep-alive connection. A reused connection that turns out closed is
    replaced once (the peer dropped it while idle: the request never reached it)."""
    key = (url.hostname or "", url.port or 80)
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    for _ in range(2):
        conn = _take(key)
        reused = conn is not None
        if conn is None:
            conn = http.client.HTTPConnection(key[0], key[1], timeout=min(timeout, 5.0))
            try:
                conn.connect()
            except TimeoutError as exc:
                raise httpx.ConnectTimeout(str(exc)) from None
            except OSError as exc:
                raise httpx.ConnectError(type(exc).__name__) from None
        conn.sock.settimeout(timeout)
        try:
            conn.request(method, target, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        except TimeoutError:
            conn.close()
            raise httpx.ReadTimeout("no answer in time") from None
        except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
            conn.close()
            if reused:
                continue
            raise httpx.RemoteProtocolError(type(exc).__name__) from None
        except (OSError, http.client.HTTPException) as exc:
            conn.close()
            raise httpx.ReadError(type(exc).__name__) from None
        if resp.will_close:
            conn.close()
        else:
            _give_back(key, conn)
        return httpx.Response(resp.status, headers=resp.getheaders(), content=data)
    # two kept connections in a row were dropped by the peer (a fresh one answers or raises above)
    raise httpx.RemoteProtocolError("the server closed two kept connections in a row")


def _send(method: str, url: str, headers: dict[str, str] | None, json: Any, content: bytes | None,
          timeout: float) -> httpx.Response:
    parts = urllib.parse.urlsplit(url)
    if _direct(parts.scheme, parts.hostname or "", tuple(os.environ.get(v) for v in PROXY_VARS)):
        head = {"User-Agent": f"openmind/{VERSION}", **(headers or {})}
        if parts.username is not None and not any(k.lower() == "authorization" for k in head):
            # user:password@ in the URL is HTTP Basic auth, as httpx sends it
            pair = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
            head["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        if json is not None:
            content = jsonlib.dumps(json).encode()
            head.setdefault("Content-Type", "application/json")
        return _send_direct(method, parts, head, content, timeout)
    return _shared_client().request(method, url, headers=headers, json=json, content=content,
                                    timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    for s in secrets:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return redact(text)


def _detail(resp: httpx.Response) -> str:
    """A short reason from an error body ({"error": "..."} or {"error": {"message": ...}})."""
    try:
        body = resp.json()
    except Exception:
        return resp.text[:200].strip()
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, dict):
        err = err.get("message") or err.get("type")
    return str(err if err is not None else body)[:200]


def retry_after(resp: httpx.Response) -> float | None:
    """Seconds asked by a Retry-After header (delta-seconds or an HTTP date), if any."""
    value = resp.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _failed(ep: str, reason: str, cooldown_after: int, cooldown: float, bench_for: float = 0.0,
            attempts: int = 1) -> None:
    with _lock:
        h = _health.setdefault(ep, _Health())
        h.failures += attempts  # every failed attempt counts: a call that retried twice failed 3 times
        h.last = reason
        if h.failures >= cooldown_after:
            h.until = time.monotonic() + max(cooldown, bench_for)
        elif bench_for:
            h.until = time.monotonic() + bench_for


def failed(url: str, reason: str, *, cooldown_after: int = 3, cooldown: float = 30.0) -> None:
    """Count a failure found after the call (an answer that did not survive validation), so a
    peer that keeps answering garbage gets benched like one that does not answer."""
    _failed(endpoint_of(url), redact(reason), cooldown_after, cooldown)


def _succeeded(ep: str) -> None:
    with _lock:
        _health.pop(ep, None)


def request(
    method: str,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    json: Any = None,
    content: bytes | None = None,
    timeout: float = 10.0,
    retries: int = 2,
    backoff: float = 0.25,
    max_wait: float = 5.0,
    cooldown_after: int = 3,
    cooldown: float = 30.0,
    secrets: tuple[str, ...] = (),
) -> httpx.Response:
    """Make one call (with up to `retries` retries); return a 2xx/3xx response or raise EndpointError.

    `secrets` (tokens, keys sent in headers) are scrubbed from every message, besides the
    configured ones.
    """
    ep = endpoint_of(url)
    shown = public_url(url)
    with _lock:
        h = _health.get(ep)
        if h and h.until > time.monotonic():
            left = h.until - time.monotonic()
            raise EndpointError(_scrub(f"{ep} is cooling down for {left:.1f}s after {h.failures} "
                                       f"failed attempts (last: {h.last})", secrets), cooling=True)
    attempt = 0
    while True:
        wait = backoff * (2 ** attempt)
        status: int | None = None
        bench_for = 0.0
        try:
            resp = _send(method, url, headers, json, content, timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason, retryable = f"{shown}: cannot connect ({type(exc).__name__})", True
        except httpx.TimeoutException:
            # the endpoint already cost the whole timeout: bench it now, so the next call is free
            reason, retryable, bench_for = f"{shown}: no answer within {timeout:g}s", False, cooldown
        except httpx.HTTPError as exc:
            reason, retryable = f"{shown}: {type(exc).__name__}", False
        else:
            status = resp.status_code
            if status < 400:
                _succeeded(ep)
                return resp
            detail = _detail(resp)
            reason = f"{shown} answered HTTP {status}" + (f": {detail}" if detail else "")
            if status == 429 or status >= 500:
                retryable = True
                asked = retry_after(resp)
                if asked is not None:
                    if asked > max_wait:
                        retryable = False
                        bench_for = asked
                        reason += f" (asked to retry after {asked:g}s, more than the {max_wait:g}s this call may wait)"
                    wait = asked
            else:
                # a refusal (e.g. the 404 of a model it does not serve) neither proves the endpoint
                # healthy nor sick: the failure count stands, so a slow endpoint still gets benched
                raise EndpointError(_scrub(reason, secrets), status=status)
        if retryable and attempt < retries:
            attempt += 1
            time.sleep(min(wait, max_wait))
            continue
        if attempt:
            reason += f" (after {attempt + 1} attempts)"
        reason = _scrub(reason, secrets)
        _failed(ep, reason, cooldown_after, cooldown, bench_for, attempts=attempt + 1)
        raise EndpointError(reason, status=status)
