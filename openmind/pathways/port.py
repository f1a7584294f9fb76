"""Who may open a serial port: one reader at a time (a lock file per port, taken before the tty
is opened), and ports that keep failing benched for a while so later calls fail at once.
`DeviceError` and `PortBusy` are the errors of every device call."""

from __future__ import annotations

import os
import re
import threading
import time

from openmind.errors import OpenmindError

# After this many failed opens/handshakes in a row a port is benched for BENCH_S seconds.
BENCH_AFTER = 2
BENCH_S = 15.0  # as long as the probe trusts a serial result (TTL_S["serial"])


class DeviceError(OpenmindError):
    """The port could not be opened, went silent, or answered outside the protocol."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # the device's error code ("crc", "busy", ...) when it refused


class PortBusy(DeviceError):
    """Another reader (a kernel streaming, a probe) holds the port: it is not opened at all."""

    def __init__(self, port: str) -> None:
        super().__init__(f"{port} is in use by another openmind reader (a stream, an upload or a "
                         f"probe); wait for it to finish, or close the notebook that holds it", code="busy")


def _lock_path(port: str) -> str:
    from openmind.config import home

    folder = home() / "locks"
    folder.mkdir(exist_ok=True)
    return str(folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.realpath(port)).strip("_") + ".lock"))


def lock_port(port: str) -> int | None:
    """Take this port's lock (flock on OPENMIND_HOME/locks/<port>.lock) or raise PortBusy.
    Returns the lock's fd (closing it releases the lock); None for ports that are not files
    (pyserial URLs such as loop://) or where flock does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: the OS opens COM ports exclusively anyway
        return None
    if "://" in port:
        return None
    fd = os.open(_lock_path(port), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise PortBusy(port) from None
    return fd


def port_busy(port: str) -> bool:
    """Whether another reader holds `port` right now (without opening the port)."""
    try:
        fd = lock_port(port)
    except PortBusy:
        return True
    except OSError:
        return False
    if fd is not None:
        os.close(fd)
    return False


_bench_lock = threading.Lock()
_benched: dict[str, list] = {}  # port -> [failures, until, reason]


def bench(port: str, reason: str, *, now: bool = False) -> None:
    """Count a failure of `port`; after BENCH_AFTER in a row (or at once with `now`) it is
    benched for BENCH_S seconds, so later calls fail at once instead of costing their timeout."""
    with _bench_lock:
        h = _benched.setdefault(port, [0, 0.0, ""])
        h[0] += 1
        h[2] = reason
        if now or h[0] >= BENCH_AFTER:
            h[1] = time.monotonic() + BENCH_S


def unbench(port: str | None = None) -> None:
    """Forget a port's failures (a good handshake), or every port's (None)."""
    with _bench_lock:
        if port is None:
            _benched.clear()
        else:
            _benched.pop(port, None)


def bench_left(port: str) -> tuple[float, str]:
    """(seconds `port` stays benched, why); (0, "") when it may be opened."""
    with _bench_lock:
        h = _benched.get(port)
        if not h:
            return 0.0, ""
        return max(0.0, h[1] - time.monotonic()), h[2]
