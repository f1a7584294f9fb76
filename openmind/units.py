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


# --------------------------------------------------------------------------- human forms out
# What a person reads at a glance on a card, in the sidebar or a log line (the inverse direction
# of the parsers above: numbers to short words, never parsed back).


def human_bytes(n: float | int | None) -> str:
    """948 B, 5.2 kB, 3.1 MB (powers of 1000, as file managers show sizes)."""
    if n is None:
        return "?"
    n = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} TB"  # pragma: no cover (the loop returns)


def human_duration(seconds: float | int | None) -> str:
    """0.4 ms, 12 ms, 1.8 s, 2 min 5 s, 1 h 3 min: two significant parts at most."""
    if seconds is None or not math.isfinite(float(seconds)):
        return "?"
    s = float(seconds)
    if s < 1:
        ms = s * 1000
        return f"{ms:.1f} ms" if ms < 10 else f"{ms:.0f} ms"
    if s < 60:
        return f"{s:.1f} s" if s < 10 else f"{s:.0f} s"
    if s < 3600:
        m, rest = divmod(round(s), 60)
        return f"{m} min {rest} s" if rest else f"{m} min"
    h, rest = divmod(round(s / 60), 60)
    return f"{h} h {rest} min" if rest else f"{h} h"


def human_time(ts: float | int | None, now: float | None = None) -> str:
    """A clock time for today ("14:03:07"), else a date and time ("3 Nov 14:03")."""
    import datetime as dt

    if ts is None:
        return "?"
    when = dt.datetime.fromtimestamp(float(ts))
    today = dt.datetime.fromtimestamp(now).date() if now is not None else dt.date.today()
    return when.strftime("%H:%M:%S") if when.date() == today else \
        f"{when.day} {when.strftime('%b')} {when.strftime('%H:%M')}"


def human_rate(hz: float | int | None) -> str:
    """1 Hz, 0.5 Hz, 1 per 10 min (slow rates read better as a period)."""
    if hz is None or not hz or not math.isfinite(float(hz)):
        return "?"
    hz = float(hz)
    if hz >= 0.1:
        return f"{hz:g} Hz" if hz < 1000 else f"{hz / 1000:g} kHz"
    return f"1 per {human_duration(1 / hz)}"


def plural(n: int, word: str, many: str | None = None) -> str:
    """'1 model', '3 models', '0 signal patterns'."""
    return f"{n} {word if n == 1 else (many or word + 's')}"
