"""What the device's answers are believed to say: numbers written as the firmware reads them,
and the fields of HELLO and stream answers checked (a value that does not fit the protocol is
dropped or makes the line unbelievable, never an exception)."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from openmind.pathways.port import DeviceError


def number_text(x: float) -> str:
    """A rate or threshold as a command argument: nine significant digits, no trailing zeros."""
    return f"{x:.9g}"


def float32_text(v: float) -> str:
    """The shortest decimal that parses (strtof) back to the same float32."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise DeviceError(f"cannot send the non-finite value {v!r} to the device")
    a = np.format_float_positional(f, unique=True, trim="-")
    b = np.format_float_scientific(f, unique=True, trim="-")
    return a if len(a) <= len(b) else b


def int_fields(obj: Any) -> dict[str, int]:
    """The integer fields of a JSON object (a v2 HELLO's "limits"); anything else is dropped."""
    if not isinstance(obj, dict):
        return {}
    return {str(k): int(v) for k, v in obj.items() if isinstance(v, int) and not isinstance(v, bool) and v > 0}


def signals(raw: Any) -> list[dict[str, Any]]:
    """The HELLO answer's signal list as the host uses it: entries with a string name, a string
    unit and a positive finite max_rate_hz (when given); anything else is dropped."""
    out: list[dict[str, Any]] = []
    for entry in raw if isinstance(raw, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name or len(name) > 100:
            continue
        clean: dict[str, Any] = {"name": name, "unit": str(entry.get("unit", ""))[:16]}
        rate = finite(entry.get("max_rate_hz")) if "max_rate_hz" in entry else math.nan
        if rate > 0:
            clean["max_rate_hz"] = rate if rate != int(rate) else int(rate)
        out.append(clean)
    return out


def finite(v: Any) -> float:
    """A sample value as a float; NaN for null, non-finite or out-of-range numbers."""
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return math.nan
    return f if math.isfinite(f) else math.nan


def is_number(x: Any) -> bool:
    """A JSON number (a bool is not one)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def as_count(x: Any) -> int | None:
    """A non-negative integer field of a device answer, or None when it is anything else."""
    if isinstance(x, bool):
        return None
    if isinstance(x, float) and math.isfinite(x) and x == int(x):
        x = int(x)
    if not isinstance(x, int) or not 0 <= x <= 2**53:
        return None
    return x


class StreamCheck:
    """Believes a sample line only when it fits the stream asked for: the signal, a sequence
    number inside the count and not behind, a device time that agrees with the sequence number
    at the rate asked (a bit-flipped n or t breaks the agreement), and a first sample that is not
    from further in the stream than the time since STREAM allows."""

    def __init__(self, signal: str, rate_hz: float, count: int, started: float) -> None:
        self.signal, self.count, self.started = signal, count, started
        self.period_ms = 1000.0 / rate_hz
        self.first: tuple[int, float] | None = None

    def accept(self, obj: dict[str, Any], expect: int) -> tuple[int, int, float] | None:
        """(n, t, value) of a believable sample at or after `expect`, else None."""
        n, t, v = obj.get("n"), obj.get("t"), obj.get("v")
        n, t = as_count(n), as_count(t)
        if obj.get("s") != self.signal or n is None or t is None:
            return None
        if not expect <= n < self.count or not (v is None or is_number(v)):
            return None
        if self.first is None:
            elapsed_ms = (time.monotonic() - self.started) * 1000.0
            if n * self.period_ms > elapsed_ms + 250.0 + 2 * self.period_ms:
                return None  # from further in the stream than the clock allows
            self.first = (n, t)
        else:
            n0, t0 = self.first
            want = (n - n0) * self.period_ms
            slack = max(2.0, 0.25 * self.period_ms) + 0.001 * want
            if abs((t - t0) - want) > slack:
                return None
        return n, t, finite(v)
