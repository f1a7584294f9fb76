"""Human forms of time and rate ("1h", "90s", "500ms", "1Hz", "10/s"), parsed strictly."""

from __future__ import annotations

import math
import re

from openmind.errors import BadInput

_DURATION_UNITS = {
    "ms": 0.001, "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "m": 60.0, "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hour": 3600.0, "hours": 3600.0, "d": 86400.0, "day": 86400.0,
    "days": 86400.0,
}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([a-z]+)")


def parse_duration(value: str | float | int | None, what: str = "duration") -> float | None:
    """Seconds from 1.5, "90s", "1h30m", "500ms". None stays None (no limit)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise BadInput(f"{what} must be a number of seconds or text like '90s', not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        if text in ("", "none", "inf", "unlimited"):
            return None
        try:
            seconds = float(text)
        except ValueError:
            pos, seconds = 0, 0.0
            for m in _PART.finditer(text):
                if m.start() != pos or m.group(2) not in _DURATION_UNITS:
                    break
                seconds += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
                pos = m.end()
            if pos != len(text) or pos == 0:
                raise BadInput(
                    f"cannot read {what} {value!r}: use seconds or forms like '500ms', '90s', "
                    f"'5m', '1h30m'"
                ) from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise BadInput(f"{what} must be positive and finite, got {value!r}")
    return seconds


def parse_rate(value: str | float | int, what: str = "rate") -> float:
    """Hertz from 10, "10Hz", "2kHz", "10/s", "30/min"."""
    if isinstance(value, bool):
        raise BadInput(f"{what} must be a number of Hz or text like '10Hz', not {value!r}")
    if isinstance(value, (int, float)):
        hz = float(value)
    else:
        text = str(value).strip().lower().replace(" ", "")
        m = re.fullmatch(r"(\d+(?:\.\d+)?|\.\d+)(khz|hz|/s|/sec|/m|/min|/h|/hr)?", text)
        if not m:
            raise BadInput(
                f"cannot read {what} {value!r}: use forms like '1Hz', '2kHz', '10/s', '30/min'"
            )
        scale = {None: 1.0, "hz": 1.0, "khz": 1000.0, "/s": 1.0, "/sec": 1.0, "/m": 1 / 60,
                 "/min": 1 / 60, "/h": 1 / 3600, "/hr": 1 / 3600}[m.group(2)]
        hz = float(m.group(1)) * scale
    if not math.isfinite(hz) or hz <= 0:
        raise BadInput(f"{what} must be positive and finite, got {value!r}")
    return hz
