"""The host: CPU cores and RAM, within the cgroup limits a container sets."""

from __future__ import annotations

import os

from openmind.flow.resources.base import Resource
from openmind.units import plural


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
        f"{plural(cores, 'core')}, {available / 2**30:.1f} of {total / 2**30:.1f} GiB RAM free"
        + (" (cgroup limit)" if limit is not None and limit == total else ""),
        cores=cores,
        ram_total=total,
        ram_available=available,
        load1=load,
        cgroup_memory_limit=limit,
    )


