"""A resource and a snapshot of all of them: what every probe returns and the router reads."""

from __future__ import annotations

import html
import os
import time
from dataclasses import dataclass, field
from typing import Any

from openmind import config

NAMES = ("host", "gpu", "api", "infer", "serial", "memory")
TTL_S = {"host": 5.0, "gpu": 60.0, "api": 60.0, "infer": 30.0, "serial": 15.0, "memory": 5.0}

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
        # computed once per snapshot and configured secrets (every journal record carries it);
        # a fresh top level each call, the nested dicts are shared: read them, do not edit them
        key = tuple(config.secrets())
        memo = self.__dict__.get("_dict")
        if memo is None or memo[0] != key:
            out: dict[str, Any] = {"taken_at": self.taken_at}
            out.update({n: r.to_dict() for n, r in self.items()})
            memo = (key, out)
            object.__setattr__(self, "_dict", memo)
        return dict(memo[1])

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


