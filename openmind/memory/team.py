"""The team tier: muscle memory shared by machines through OPENMIND_REMOTE.

Read-through with local backfill: a local miss asks the team's store, and what it brings is
kept here (blob and index row, with the publisher's signature) from then on. Only machines with
OPENMIND_REMOTE_WRITE=1 publish (CI writes, laptops read), and only complete, undegraded results.

Layout under the store's root, free of machine paths:
    blobs/<sha256>.safetensors            content-addressed payloads
    entries/<kind>/<key>.json             a signed manifest, found by key (cells)
    names/<kind>/<sha256(name)>/<key>.json  the same manifest, found by name (model versions)
    pending/<id>.json                     a writer's upload in progress (gc leaves its blob)
A manifest is written after its blob, so a reader never sees a half-written upload, and a
reader restores only what a key it trusts signed (checked before the blob is fetched).

A remote that fails or times out costs that one call (OPENMIND_REMOTE_TIMEOUT), then is benched
for BENCH_S: memory works locally, and the probe and journal say why.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import time
import uuid
import warnings
from typing import Any

from openmind.config import home, public_url, redact, remote_timeout, remote_url, remote_write
from openmind.errors import BadInput
from openmind.memory import keys
from openmind.memory.blobs import Entry, MemoryWarning, index
from openmind.memory.remote import open_remote
from openmind.memory.store import changed, connect

# What is shared: models (by name) and cells (by key); the rest is this machine's own business.
TEAM_KINDS = ("model", "cell", "run")  # run: a notebook run's manifest, for --replay elsewhere
BENCH_S = 300.0  # a failed remote is left alone this long
PULL_LIMIT = 4  # versions of one name fetched per lookup, newest first
PENDING_TTL_S = 86400.0  # an upload marker older than this is from a writer that died
FRESH_SLACK_S = 5.0  # blobs this close to a team gc's start are never judged by it

_lock = threading.Lock()
_benched: dict[str, tuple[float, str]] = {}  # url -> (until, reason)
_clients: dict[tuple[str, float, int], Any] = {}
_last_refusal: str | None = None
_refused: set[tuple[bytes, frozenset[bytes]]] = set()  # manifests refused under a trust set


class _Down(Exception):
    """The remote failed; the reason is already on the bench."""


def _url() -> str | None:
    url = remote_url()
    if url is None:
        return None
    benched = _benched.get(url)
    if benched is not None and benched[0] > time.monotonic():
        return None
    return url


def _client(url: str) -> Any:
    """The remote's client, made once per process (a forked child makes its own); a remote that
    cannot be set up (a malformed URL, no boto3) is benched with the reason, like a failure."""
    try:
        key = (url, remote_timeout(), os.getpid())
        with _lock:
            if key not in _clients:
                _clients[key] = open_remote(url, key[1])
            return _clients[key]
    except (BadInput, ImportError) as exc:
        _bench(url, "open", exc)
        raise _Down from None


def _bench(url: str, what: str, exc: BaseException) -> None:
    reason = redact(f"the team's memory {public_url(url)} failed to {what} "
                    f"({type(exc).__name__}: {exc}); benched for {int(BENCH_S)} s, memory is local")
    _benched[url] = (time.monotonic() + BENCH_S, reason)
    changed()  # the memory probe (and so the journal) says so on its next look
    warnings.warn(f"openmind: {reason}", MemoryWarning, stacklevel=4)


def _call(url: str, what: str, fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - any wire failure benches the remote
        _bench(url, what, exc)
        raise _Down from None


def state() -> dict[str, Any] | None:
    """The team tier as the memory probe reports it: url, whether this machine publishes, and
    the reason it is benched (None when it is not), or None when no remote is configured."""
    url = remote_url()
    if url is None:
        return None
    benched = _benched.get(url)
    return {"url": public_url(url), "write": remote_write(),
            "benched": benched[1] if benched and benched[0] > time.monotonic() else None,
            "refused": _last_refusal}


def reset() -> None:
    """Forget benched remotes and clients (tests; a notebook after fixing the remote)."""
    global _last_refusal
    with _lock:
        _benched.clear()
        _clients.clear()
        _refused.clear()
    _last_refusal = None


def _name_dir(kind: str, name: str) -> str:
    return f"names/{kind}/{hashlib.sha256(name.encode()).hexdigest()[:32]}/"


# --------------------------------------------------------------------------- publishing


def publishable(entry: Entry) -> bool:
    """Complete, undegraded results of the shared kinds only: a partial run, a degraded answer
    or a failure is never published as a hit."""
    meta = entry.meta
    return (entry.kind in TEAM_KINDS and meta.get("complete", True) is not False
            and not meta.get("degraded") and not meta.get("error") and not meta.get("partial"))


def manifest(entry: Entry) -> bytes:
    return json.dumps({"v": 1, "kind": entry.kind, "name": entry.name, "key": entry.key,
                       "blob": entry.blob, "size": entry.size, "meta": entry.meta,
                       "sig": entry.sig}, sort_keys=True).encode()


def publish(entry: Entry, data: bytes) -> bool:
    """Publish a kept entry where this machine writes to the team (OPENMIND_REMOTE_WRITE=1):
    a pending marker, the blob (or a touch of the same blob already there), the manifests last,
    then the marker goes. True when it was published."""
    if not remote_write() or not publishable(entry):
        return False
    url = _url()
    if url is None:
        return False
    try:
        remote = _client(url)
        marker = f"pending/{uuid.uuid4().hex}.json"
        _call(url, "publish", remote.put, marker,
              json.dumps({"blob": entry.blob, "at": time.time()}).encode())
        blob = f"blobs/{entry.blob}"
        if not _call(url, "publish", remote.touch, blob):
            _call(url, "publish", remote.put, blob, data)
        doc = manifest(entry)
        _call(url, "publish", remote.put, f"entries/{entry.kind}/{entry.key}.json", doc)
        _call(url, "publish", remote.put, _name_dir(entry.kind, entry.name) + f"{entry.key}.json", doc)
        _call(url, "publish", remote.delete, marker)
    except _Down:
        return False
    return True


# --------------------------------------------------------------------------- reading


def _refuse(what: str, why: str) -> None:
    global _last_refusal
    _last_refusal = redact(f"{what} refused: {why}")
    warnings.warn(f"openmind: the team's memory entry {_last_refusal}; it runs here instead",
                  MemoryWarning, stacklevel=4)


def _checked(raw: bytes, kind: str, key: str | None, name: str | None) -> Entry | None:
    """The entry a manifest describes, when it is one, in its place, signed by a trusted key."""
    try:
        doc = json.loads(raw)
        meta, size = doc["meta"], int(doc["size"])
        if not isinstance(meta, dict) or doc["kind"] != kind or (key and doc["key"] != key) \
                or (name is not None and doc["name"] != name):
            raise ValueError("it is not the entry its place says")
        name, entry_key, blob = str(doc["name"]), str(doc["key"]), str(doc["blob"])
    except (ValueError, KeyError, TypeError) as exc:
        _refuse(f"{kind} {key or ''}".strip(), f"its manifest is unreadable ({exc})")
        return None
    try:
        keys.verify(doc.get("sig"), kind, name, entry_key, blob, size, meta)
    except (keys.Refused, keys.KeyProblem) as exc:
        _refuse(f"{kind} '{name[:60]}' ({entry_key[:12]})", str(exc))
        return None
    now = time.time()
    return Entry(entry_key, kind, name, blob, size, meta, now, now, 0, {**doc["sig"], "team": True})


def _backfill(url: str, raw: bytes, kind: str, key: str | None, name: str | None = None) -> bool:
    """Check a manifest, fetch its blob, check that, and keep both here. A manifest refused once
    is not judged (nor warned about) again in this process until it or the trust file changes."""
    seen = (hashlib.sha256(raw).digest(), keys.trusted())
    if seen in _refused:
        return False
    entry = _checked(raw, kind, key, name)
    if entry is None:
        if len(_refused) >= 1024:
            _refused.clear()
        _refused.add(seen)
        return False
    data = _call(url, "fetch a blob", _client(url).get, f"blobs/{entry.blob}")
    if data is None or hashlib.sha256(data).hexdigest() + ".safetensors" != entry.blob \
            or len(data) != entry.size:
        _refuse(f"{kind} '{entry.name[:60]}' ({entry.key[:12]})",
                "its blob is missing or does not match the signed hash")
        return False
    try:
        index(entry, data, home())
    except (OSError, sqlite3.Error) as exc:
        warnings.warn(f"openmind: could not keep the team's {kind} '{entry.name[:60]}' here "
                      f"({exc})", MemoryWarning, stacklevel=4)
        return False
    return True


def pull(kind: str, key: str) -> bool:
    """Bring the team's entry under `key` here (read-through); True when it now is."""
    url = _url() if kind in TEAM_KINDS else None
    if url is None:
        return False
    try:
        raw = _call(url, "look up an entry", _client(url).get, f"entries/{kind}/{key}.json")
        return raw is not None and _backfill(url, raw, kind, key)
    except _Down:
        return False


def pull_name(kind: str, name: str) -> int:
    """Bring here the team's newest versions of `name` that this machine lacks; how many came."""
    url = _url() if kind in TEAM_KINDS else None
    if url is None:
        return 0
    try:
        remote = _client(url)
        listed = _call(url, "list versions", lambda: list(remote.list(_name_dir(kind, name))))
        with connect() as con:
            here = {r[0] for r in con.execute("SELECT key FROM memory WHERE kind=? AND name=?",
                                              (kind, name))}
        wanted = [item for item in listed if item.path.rsplit("/", 1)[-1][:-5] not in here]
        wanted.sort(key=lambda item: item.mtime, reverse=True)
        came = 0
        for item in wanted[:PULL_LIMIT]:
            raw = _call(url, "look up an entry", remote.get, item.path)
            came += bool(raw is not None and _backfill(url, raw, kind, None, name))
        return came
    except (_Down, sqlite3.Error, OSError):
        return 0


# --------------------------------------------------------------------------- team gc


def _server_now(remote: Any) -> float:
    """The store's own clock (a marker's time), so writers' clocks never matter to a gc."""
    mark = f"gc/{uuid.uuid4().hex}.json"
    remote.put(mark, b"{}")
    try:
        listed = remote.stat(mark)
    finally:
        remote.delete(mark)
    return listed.mtime if listed is not None else time.time()


def _pending(remote: Any, start: float) -> set[str]:
    """Blobs writers are uploading now; markers of writers that died long ago are dropped."""
    found = set()
    for item in list(remote.list("pending/")):
        if item.mtime < start - PENDING_TTL_S:
            remote.delete(item.path)
            continue
        raw = remote.get(item.path)
        try:
            found.add(str(json.loads(raw or b"{}")["blob"]))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _live(remote: Any, older_than: float | None) -> tuple[set[str], int]:
    """(blobs the kept manifests point at, manifests evicted as published before `older_than`)."""
    live, dropped = set(), 0
    for item in list(remote.list("entries/")):
        raw = remote.get(item.path)
        try:
            doc = json.loads(raw or b"")
            blob, at = str(doc["blob"]), float(doc["sig"]["at"])
        except (ValueError, KeyError, TypeError):
            continue  # not ours to judge
        if older_than is not None and at < time.time() - older_than:
            remote.delete(_name_dir(str(doc["kind"]), str(doc["name"])) + f"{doc['key']}.json")
            remote.delete(item.path)
            dropped += 1
        else:
            live.add(blob)
    return live, dropped


def gc(older_than: float | None = None) -> dict[str, int]:
    """Evict the team's entries published more than `older_than` seconds ago (signed time, not a
    file's), then delete blobs no manifest points at, except those a writer is uploading (a
    pending marker) or that are newer than this gc's start (by the store's clock). Only a
    machine that publishes may run it. Never raises for the store's failures: a warning."""
    url = remote_url()
    if url is None or not remote_write():
        raise BadInput("gc on the team's memory runs on a machine that publishes to it: set "
                       "OPENMIND_REMOTE and OPENMIND_REMOTE_WRITE=1")
    done = {"entries": 0, "blobs": 0}
    try:
        remote = _client(url)
        start = _server_now(remote)
        pending = _pending(remote, start)
        live, done["entries"] = _live(remote, older_than)
        for item in list(remote.list("blobs/")):
            blob = item.path.rsplit("/", 1)[-1]
            if blob in live or blob in pending or item.mtime >= start - FRESH_SLACK_S:
                continue
            remote.delete(item.path)
            done["blobs"] += 1
    except Exception as exc:  # noqa: BLE001 - a gc that stops early loses nothing
        warnings.warn(redact(f"openmind: gc on the team's memory stopped early "
                             f"({type(exc).__name__}: {exc}); run it again later"),
                      MemoryWarning, stacklevel=2)
    return done
