"""The firmware's host build as a real device on a real pty, for tests and benchmarks.

`make -C firmware` runs once per session; each test starts its own `openmind-vdev` process,
which prints the tty path it serves, and kills it afterwards.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BUILD = FIRMWARE / "build"


def make(*targets: str, **env: str) -> subprocess.CompletedProcess:
    """Build firmware targets; a failure shows the compiler's output."""
    args = ["make", "-s", "-C", str(FIRMWARE), *targets, *(f"{k}={v}" for k, v in env.items())]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


class VDev:
    """One running virtual device: `.port` is the tty to open, `.kill()` unplugs it."""

    def __init__(self, binary: Path, *args: str) -> None:
        self.proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10.0)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PTY "):
            self.kill()
            raise AssertionError(f"virtual device did not start: {line!r} {self.proc.stderr.read()!r}")
        self.port = line.split(" ", 1)[1].strip()

    def kill(self) -> None:
        """SIGKILL: the device vanishes mid-whatever, like a pulled USB cable."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def kill_after(self, seconds: float) -> None:
        import threading

        t = threading.Timer(seconds, self.kill)
        t.daemon = True
        t.start()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


@pytest.fixture(scope="session")
def vdev_binary() -> Path:
    make("all")
    return BUILD / "openmind-vdev"


def _serve(binary: Path, *args: str):
    dev = VDev(binary, *args)
    yield dev
    dev.close()


@pytest.fixture
def vdev(vdev_binary):
    """A fresh virtual device (no boot noise), with a 32 KB model buffer."""
    yield from _serve(vdev_binary)


@pytest.fixture(scope="session")
def vdev16k_binary() -> Path:
    make("build/openmind-vdev-16k")
    return BUILD / "openmind-vdev-16k"


@pytest.fixture
def vdev16k(vdev16k_binary):
    """A virtual device with the ESP32 build's default 16 KB model buffer."""
    yield from _serve(vdev16k_binary)


@pytest.fixture
def noisy_vdev(vdev_binary):
    """A virtual device that prints ROM garbage, ESP-IDF logs and a half line before the protocol
    and a log line every 0.2 s."""
    yield from _serve(vdev_binary, "--boot-noise", "--log-every", "0.2")


def wait_until(pred, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return False
