"""What the machine has right now: host, GPU, language-model API, inference endpoint, ESP32, memory.

Probes run concurrently, each with its own timeout, and never raise: a failing probe makes its
resource absent with a reason. Results are cached per resource with a TTL (and keyed by the
environment that shaped them), so a warm `probe()` costs microseconds. One module a resource.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import replace

from openmind import config
from openmind.flow.resources.base import NAMES, TTL_S, Resource, Resources, probe_timeout
from openmind.flow.resources.endpoints import probe_api, probe_infer
from openmind.flow.resources.gpu import gpu_from_driver, gpu_present, probe_gpu
from openmind.flow.resources.host import probe_host
from openmind.flow.resources.memory import probe_memory
from openmind.flow.resources.serial import ESP32_BRIDGES, candidate_ports, probe_serial
from openmind.memory.store import generation

__all__ = ["ESP32_BRIDGES", "NAMES", "PROBES", "Resource", "Resources", "candidate_ports",
           "gpu_from_driver", "gpu_present", "invalidate", "probe", "probe_timeout"]

PROBES: dict[str, Callable[[], Resource]] = {
    "host": probe_host,
    "gpu": probe_gpu,
    "api": probe_api,
    "infer": probe_infer,
    "serial": probe_serial,
    "memory": probe_memory,
}


def _env_key(name: str) -> tuple:
    """What a cached result depends on; a change re-probes that resource."""
    if name == "api":
        return (config.api_base(), config.api_key())
    if name == "infer":
        return (config.infer_url(), config.infer_token())
    if name == "serial":
        return (config.serial_port(),)
    if name == "memory":
        return (os.environ.get("OPENMIND_HOME"), generation())
    return ()


_cache: dict[str, tuple[float, tuple, Resource]] = {}
_cache_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_last: Resources | None = None


def invalidate(*names: str) -> None:
    """Forget cached results (all when no name is given), e.g. after a device was unplugged."""
    global _last
    with _cache_lock:
        for n in names or NAMES:
            _cache.pop(n, None)
        _last = None


def _run_one(name: str) -> Resource:
    start = time.perf_counter()
    try:
        res = PROBES[name]()
    except Exception as exc:  # a probe never raises
        res = Resource.absent(name, f"probe failed: {type(exc).__name__}: {config.redact(str(exc))}", "error")
    return replace(res, duration_ms=(time.perf_counter() - start) * 1000, probed_at=time.time())


def _masked(name: str, how: str) -> Resource:
    source = "openmind.assume()" if config._assume_override is not None else "OPENMIND_ASSUME"
    return Resource.absent(name, f"masked by {source} ({name}={how})", "masked")


def probe(refresh: bool = False) -> Resources:
    """Probe every resource (cached per TTL; refresh=True re-probes). Never raises on a resource.

    Raises BadInput only for a malformed OPENMIND_ASSUME, which is the user's input, not a resource.
    """
    global _pool, _last
    mask = config.assumed()
    now = time.monotonic()
    results: dict[str, Resource] = {}
    todo: list[str] = []
    with _cache_lock:
        for name in NAMES:
            if mask.get(name) == "off":
                results[name] = _masked(name, "off")
                continue
            hit = _cache.get(name)
            if not refresh and hit and now - hit[0] < TTL_S[name] and hit[1] == _env_key(name):
                results[name] = hit[2]
            else:
                todo.append(name)
        if not todo and _last is not None and all(
            getattr(_last, n) is results[n] for n in NAMES
        ):
            return _last
    if todo:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=len(NAMES), thread_name_prefix="openmind-probe")
        futures = {n: (_pool.submit(_run_one, n), _env_key(n)) for n in todo}
        deadline = time.monotonic() + probe_timeout() + 1.0
        for name, (fut, key) in futures.items():
            try:
                res = fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                res = Resource.absent(name, f"probe timed out after {probe_timeout():g}s", "timeout")
            results[name] = res
            with _cache_lock:
                _cache[name] = (time.monotonic(), key, res)
    snap = Resources(**results)
    with _cache_lock:
        _last = snap
    return snap
