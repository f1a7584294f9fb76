"""What the machine has right now: host, GPU, language-model API, inference endpoint, ESP32, memory.

Probes run concurrently, each with its own timeout, and never raise: a failing probe makes its
resource absent with a reason. Results are cached per resource with a TTL (and keyed by the
environment that shaped them), so a warm `probe()` costs microseconds.
"""

from __future__ import annotations

import html
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from openmind import config

NAMES = ("host", "gpu", "api", "infer", "serial", "memory")
TTL_S = {"host": 5.0, "gpu": 60.0, "api": 60.0, "infer": 30.0, "serial": 15.0, "memory": 5.0}

# USB bridges found on ESP32 boards (VID, PID) -> name.
ESP32_BRIDGES = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FTDI",
    (0x303A, 0x1001): "ESP32 USB-Serial/JTAG",
}


def probe_timeout() -> float:
    """Seconds one network/device probe may take (OPENMIND_PROBE_TIMEOUT, default 1.5)."""
    try:
        return max(0.05, float(os.environ.get("OPENMIND_PROBE_TIMEOUT", "1.5")))
    except ValueError:
        return 1.5


@dataclass(frozen=True)
class Resource:
    """One resource: present or absent, a status word, a reason a person can read, and details."""

    name: str
    available: bool
    status: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    probed_at: float = 0.0
    duration_ms: float = 0.0

    @classmethod
    def present(cls, name: str, reason: str, status: str = "present", **details: Any) -> Resource:
        return cls(name, True, status, reason, details, time.time())

    @classmethod
    def absent(cls, name: str, reason: str, status: str = "absent", **details: Any) -> Resource:
        return cls(name, False, status, reason, details, time.time())

    def to_dict(self) -> dict[str, Any]:
        return config.redact(
            {
                "available": self.available,
                "status": self.status,
                "reason": self.reason,
                "details": self.details,
                "probed_at": self.probed_at,
                "duration_ms": round(self.duration_ms, 3),
            }
        )

    def __bool__(self) -> bool:
        return self.available


@dataclass(frozen=True)
class Resources:
    """A snapshot of every resource; `probe()` returns one, tests may build one by hand."""

    host: Resource
    gpu: Resource
    api: Resource
    infer: Resource
    serial: Resource
    memory: Resource
    taken_at: float = field(default_factory=time.time)

    @classmethod
    def none(cls, **given: Resource) -> Resources:
        """Everything absent except what is given: the starting point of routing tests."""
        parts = {n: Resource.absent(n, "not given") for n in NAMES}
        parts["host"] = Resource.present("host", "given", cores=1, ram_total=0, ram_available=0)
        parts["memory"] = Resource.present("memory", "empty", models={}, signals={}, predictions=0)
        parts.update(given)
        return cls(**parts)

    def items(self) -> list[tuple[str, Resource]]:
        return [(n, getattr(self, n)) for n in NAMES]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"taken_at": self.taken_at}
        out.update({n: r.to_dict() for n, r in self.items()})
        return out

    def __str__(self) -> str:
        width = max(len(n) for n in NAMES)
        lines = []
        for n, r in self.items():
            mark = "yes" if r.available else "no "
            lines.append(f"{n:<{width}}  {mark}  {r.status:<11}  {config.redact(r.reason)}")
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for n, r in self.items():
            color = "var(--jp-success-color1, #2e7d32)" if r.available else "var(--jp-ui-font-color2, #888)"
            rows.append(
                f"<tr><td style='font-weight:600'>{n}</td>"
                f"<td style='color:{color}'>{'● ' + html.escape(r.status)}</td>"
                f"<td>{html.escape(config.redact(r.reason))}</td></tr>"
            )
        return (
            "<table class='openmind-resources' style='color:var(--jp-ui-font-color1, inherit);"
            "background:var(--jp-layout-color1, transparent)'>"
            "<thead><tr><th>resource</th><th>status</th><th>why</th></tr></thead>"
            f"<tbody>{''.join(rows)}</tbody></table>"
        )


# --------------------------------------------------------------------------- host


def _cgroup_memory_limit() -> int | None:
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(path).read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 1 << 60:
            return int(text)
    return None


def _cgroup_memory_usage() -> int | None:
    for path in ("/sys/fs/cgroup/memory.current", "/sys/fs/cgroup/memory/memory.usage_in_bytes"):
        try:
            return int(open(path).read().strip())
        except (OSError, ValueError):
            continue
    return None


def _cgroup_cpus() -> float | None:
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()
        if quota != "max":
            return int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int(open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read())
        period = int(open("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read())
        if quota > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def probe_host() -> Resource:
    import psutil

    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = max(1, min(cores, int(quota + 0.999)))
    vm = psutil.virtual_memory()
    total, available = vm.total, vm.available
    limit = _cgroup_memory_limit()
    if limit is not None and limit < total:
        total = limit
        used = _cgroup_memory_usage()
        available = min(available, max(0, limit - used)) if used is not None else min(available, limit)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return Resource.present(
        "host",
        f"{cores} cores, {available / 2**30:.1f} of {total / 2**30:.1f} GiB RAM free"
        + (" (cgroup limit)" if limit is not None and limit == total else ""),
        cores=cores,
        ram_total=total,
        ram_available=available,
        load1=load,
        cgroup_memory_limit=limit,
    )


# --------------------------------------------------------------------------- gpu


def probe_gpu() -> Resource:
    """NVML first (no CUDA context, safe before fork); torch only if it is already imported."""
    nvml_reason = None
    try:
        import pynvml
    except ImportError:
        pynvml = None
        nvml_reason = "nvidia-ml-py not installed"
    if pynvml is not None:
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # every NVML error means "no usable GPU"
            nvml_reason = f"no NVIDIA driver ({_nvml_error_text(exc)})"
        else:
            try:
                count = pynvml.nvmlDeviceGetCount()
                devices = []
                for i in range(count):
                    h = pynvml.nvmlDeviceGetHandleByIndex(i)
                    name = pynvml.nvmlDeviceGetName(h)
                    mem = pynvml.nvmlDeviceGetMemoryInfo(h)
                    devices.append(
                        {
                            "index": i,
                            "name": name.decode() if isinstance(name, bytes) else str(name),
                            "memory_total": int(mem.total),
                            "memory_free": int(mem.free),
                        }
                    )
                if devices:
                    return gpu_present(devices, source="nvml")
                nvml_reason = "NVIDIA driver loaded but it reports no GPU"
            except Exception as exc:
                nvml_reason = f"NVML error ({_nvml_error_text(exc)})"
            finally:
                try:
                    pynvml.nvmlShutdown()
                except Exception:
                    pass
    torch = sys.modules.get("torch")
    if torch is not None:
        os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")  # no CUDA init: forks stay safe
        try:
            if torch.cuda.is_available():
                n = torch.cuda.device_count()
                return gpu_present([{"index": i, "name": "CUDA device"} for i in range(n)], "torch")
        except Exception as exc:
            nvml_reason = f"{nvml_reason}; torch: {exc}"
    return Resource.absent("gpu", f"no CUDA GPU: {nvml_reason}")


def gpu_present(devices: list[dict[str, Any]], source: str = "injected") -> Resource:
    """A present GPU resource; also how tests inject one on machines without a GPU."""
    first = devices[0]
    free = first.get("memory_free")
    text = first.get("name", "CUDA device")
    if free is not None:
        text += f", {free / 2**30:.1f} of {first.get('memory_total', 0) / 2**30:.1f} GiB free"
    if len(devices) > 1:
        text += f" (+{len(devices) - 1} more)"
    return Resource.present("gpu", text, devices=devices, source=source)


def _nvml_error_text(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


# --------------------------------------------------------------------------- api / infer


def public_url(url: str) -> str:
    """The URL without user:password, safe to show."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def api_url(base: str, path: str) -> str:
    """Join an OpenAI-compatible base with a path; accepts bases with or without /v1."""
    base = base.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    return f"{base}/{path.lstrip('/')}"


def probe_api() -> Resource:
    base, key = config.api_base(), config.api_key()
    if base is None and key is None:
        return Resource.absent("api", "no language-model API configured (set OPENMIND_API_BASE and OPENMIND_API_KEY)")
    if base is None:
        base = "https://api.openai.com/v1"
    import httpx

    shown = public_url(base)
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        resp = httpx.get(api_url(base, "models"), headers=headers, timeout=probe_timeout())
    except httpx.TimeoutException:
        return Resource.absent("api", f"{shown} unreachable (no answer within {probe_timeout():g}s)",
                               "unreachable", base=shown, key_set=key is not None)
    except httpx.HTTPError as exc:
        return Resource.absent("api", f"{shown} unreachable ({type(exc).__name__})",
                               "unreachable", base=shown, key_set=key is not None)
    info = {"base": shown, "key_set": key is not None, "http_status": resp.status_code}
    if resp.status_code in (401, 403):
        return Resource.absent("api", f"{shown} refused the key (HTTP {resp.status_code})", "invalid", **info)
    if resp.status_code == 404:
        return Resource.present("api", f"{shown} has no /models (HTTP 404); key not checked", "unknown", **info)
    if resp.status_code == 429:
        return Resource.present("api", f"{shown} accepted the key but is rate limiting (HTTP 429)", "valid", **info)
    if resp.status_code >= 400:
        return Resource.absent("api", f"{shown} answered HTTP {resp.status_code}", "unreachable", **info)
    models: list[str] = []
    try:
        models = [m.get("id") for m in resp.json().get("data", []) if isinstance(m, dict)][:50]
    except Exception:
        pass
    return Resource.present("api", f"{shown} accepted the key ({len(models)} models)", "valid",
                            models=models, **info)


def probe_infer() -> Resource:
    url = config.infer_url()
    if url is None:
        return Resource.absent("infer", "no inference endpoint configured (set OPENMIND_INFER_URL)")
    import httpx

    shown = public_url(url)
    token = config.infer_token()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        resp = httpx.get(f"{url}/v2/health/ready", headers=headers, timeout=probe_timeout())
    except httpx.HTTPError as exc:
        return Resource.absent("infer", f"{shown} unreachable ({type(exc).__name__})", "unreachable", url=shown)
    if resp.status_code in (401, 403):
        return Resource.absent("infer", f"{shown} refused the token (HTTP {resp.status_code})", "invalid", url=shown)
    if resp.status_code != 200:
        return Resource.absent("infer", f"{shown} not ready (HTTP {resp.status_code})", "unreachable", url=shown)
    return Resource.present("infer", f"{shown} ready (Open Inference Protocol v2)", "ready", url=shown)


# --------------------------------------------------------------------------- serial


def candidate_ports() -> tuple[list[dict[str, Any]], str]:
    """Ports worth a handshake: OPENMIND_SERIAL_PORT, else USB bridges known on ESP32 boards."""
    explicit = config.serial_port()
    if explicit:
        return [{"port": explicit, "bridge": "OPENMIND_SERIAL_PORT"}], ""
    try:
        from serial.tools import list_ports
    except ImportError:
        return [], "pyserial not installed"
    found, others = [], 0
    for p in list_ports.comports():
        bridge = ESP32_BRIDGES.get((p.vid, p.pid)) if p.vid is not None else None
        if bridge:
            found.append({"port": p.device, "bridge": bridge, "vid_pid": f"{p.vid:04X}:{p.pid:04X}"})
        else:
            others += 1
    why = "" if found else (
        f"no ESP32 USB bridge among {others} serial ports" if others else "no serial ports"
    )
    return found, why


def probe_serial() -> Resource:
    ports, why = candidate_ports()
    if not ports:
        return Resource.absent("serial", f"no ESP32: {why}")
    from openmind.pathways.device import DeviceError, hello_on

    failures = []
    for entry in ports:
        try:
            info = hello_on(entry["port"], timeout=probe_timeout())
        except DeviceError as exc:
            failures.append(f"{entry['port']}: {exc}")
            continue
        signals = info.get("signals") or []
        names = [s.get("name") for s in signals if isinstance(s, dict)]
        return Resource.present(
            "serial",
            f"ESP32 on {entry['port']} ({info.get('board', '?')}, fw {info.get('fw', '?')}): "
            + (", ".join(n for n in names if n) or "no signals"),
            "online",
            port=entry["port"],
            bridge=entry.get("bridge"),
            board=info.get("board"),
            fw=info.get("fw"),
            proto=info.get("proto"),
            signals=signals,
            skipped_lines=info.get("skipped", 0),
        )
    return Resource.absent("serial", "no openmind device answered: " + "; ".join(failures), "silent")


# --------------------------------------------------------------------------- memory


def probe_memory() -> Resource:
    from openmind.memory.store import connect

    root = config.home()
    with connect(root) as con:
        rows = con.execute(
            "SELECT kind, name, COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes "
            "FROM memory GROUP BY kind, name"
        ).fetchall()
    models: dict[str, int] = {}
    signals: dict[str, int] = {}
    predictions = 0
    total = 0
    for r in rows:
        total += r["bytes"]
        if r["kind"] == "model":
            models[r["name"]] = r["n"]
        elif r["kind"] == "pattern":
            signals[r["name"]] = r["n"]
        elif r["kind"] == "predictions":
            predictions += r["n"]
    reason = (
        f"{sum(models.values())} models, {sum(signals.values())} signal patterns, "
        f"{predictions} cached predictions ({total / 2**20:.1f} MiB)"
    )
    return Resource.present("memory", reason, "ready", models=models, signals=signals,
                            predictions=predictions, bytes=total, home=str(root))


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
        return (os.environ.get("OPENMIND_HOME"),)
    return ()


_cache: dict[str, tuple[float, tuple, Resource]] = {}
_cache_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_last: Resources | None = None


def invalidate(*names: str) -> None:
    """Forget cached results (all when no name is given); the memory store calls this on writes."""
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
