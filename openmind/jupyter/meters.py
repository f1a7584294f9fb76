"""Live meters for the sidebar: CPU and RAM of the Jupyter server and of each kernel against
their limits, and GPU use and memory when a GPU is present.

Limits come from the cgroup when there is one (a container's CPU quota and memory limit), else
from the machine. NVML (nvidia-ml-py) is imported lazily: without it, or without a driver, the GPU
meter carries a reason instead of figures, never an error.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import psutil

_PROCS: dict[int, psutil.Process] = {}  # kept between calls: cpu_percent measures since the last


def _cgroup_value(*candidates: str) -> str | None:
    for name in candidates:
        try:
            return Path(name).read_text().strip()
        except OSError:
            continue
    return None


def limits() -> dict[str, Any]:
    """CPU cores and bytes of RAM this server may use, and where each limit comes from."""
    cores, cpu_from = float(os.cpu_count() or 1), "machine"
    try:
        cores, cpu_from = float(len(os.sched_getaffinity(0))), "cpu affinity"
    except (AttributeError, OSError):
        pass
    quota = _cgroup_value("/sys/fs/cgroup/cpu.max")
    if quota and not quota.startswith("max"):
        q, period = quota.split()[:2]
        cores, cpu_from = min(cores, int(q) / int(period)), "cgroup cpu.max"
    ram, ram_from = psutil.virtual_memory().total, "machine"
    mem = _cgroup_value("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes")
    if mem and mem.isdigit() and 0 < int(mem) < ram:
        ram, ram_from = int(mem), "cgroup memory limit"
    return {"cpu_cores": cores, "cpu_from": cpu_from, "ram_bytes": int(ram), "ram_from": ram_from}


def _family(pid: int) -> list[psutil.Process] | None:
    """`pid` and its children (a kernel's subprocesses count as the kernel's), each the same
    Process object from call to call (cpu_percent measures since that object's last call)."""
    try:
        proc = _PROCS.get(pid)
        if proc is None or not proc.is_running():
            proc = _PROCS[pid] = psutil.Process(pid)
        return [proc, *(_PROCS.setdefault(c.pid, c) for c in proc.children(recursive=True))]
    except psutil.Error:
        _PROCS.pop(pid, None)
        return None


def _figures(pid: int, family: list[psutil.Process], cpu: dict[int, float]) -> dict[str, Any]:
    rss = 0
    for p in family:
        try:
            rss += p.memory_info().rss
        except psutil.Error:
            continue
    return {"pid": pid, "cpu_percent": round(sum(cpu.get(p.pid, 0.0) for p in family), 1),
            "rss_bytes": int(rss), "processes": len(family)}


def _sample(families: list[list[psutil.Process]]) -> dict[int, float]:
    """CPU of every process, read once per call: the server's children are its kernels, and a
    second read of the same process right after the first would measure nothing (0 %)."""
    cpu: dict[int, float] = {}
    for family in families:
        for p in family:
            if p.pid not in cpu:
                try:
                    cpu[p.pid] = p.cpu_percent(None)
                except psutil.Error:
                    cpu[p.pid] = 0.0
    return cpu


def process(pid: int) -> dict[str, Any] | None:
    """CPU (percent of one core, since the last call) and resident memory of `pid` and its
    children; None when it is gone."""
    family = _family(pid)
    return None if family is None else _figures(pid, family, _sample([family]))


def gpus() -> dict[str, Any]:
    """Use and memory of each NVIDIA GPU via NVML, or the reason there are no figures."""
    try:
        import pynvml
    except ImportError:
        return {"devices": [], "reason": "no GPU meter: nvidia-ml-py is not installed"}
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
        return {"devices": [], "reason": f"no GPU: no NVIDIA driver ({type(exc).__name__})"}
    try:
        devices = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            name = pynvml.nvmlDeviceGetName(h)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            util = pynvml.nvmlDeviceGetUtilizationRates(h)
            devices.append({"index": i, "name": name.decode() if isinstance(name, bytes) else str(name),
                            "gpu_percent": int(util.gpu), "memory_used_bytes": int(mem.used),
                            "memory_total_bytes": int(mem.total)})
        return {"devices": devices, "reason": None if devices else "the NVIDIA driver reports no GPU"}
    except Exception as exc:
        return {"devices": [], "reason": f"GPU meter failed: {type(exc).__name__}: {exc}"}
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:
            pass


def meters(kernels: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the sidebar's meters show; `kernels`: [{"id", "pid", "name", "path"}]. Each
    kernel counts its own process and children; the server counts itself and the children
    that belong to no kernel."""
    server = _family(os.getpid()) or []
    fams = {k["id"]: _family(k["pid"]) if k.get("pid") else None for k in kernels}
    theirs = {p.pid for f in fams.values() if f for p in f}
    own = [p for p in server if p.pid not in theirs]
    cpu = _sample([own, *(f for f in fams.values() if f)])
    rows = []
    for k in kernels:
        fam = fams[k["id"]]
        figures = _figures(k["pid"], fam, cpu) if fam else None
        rows.append({**k, **(figures or {}), "reason": None if figures else "no local process"})
    return {"ts": time.time(), "limits": limits(), "server": _figures(os.getpid(), own, cpu) if own else {},
            "kernels": rows, "gpu": gpus()}
