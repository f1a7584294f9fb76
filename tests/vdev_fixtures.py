"""The firmware's host build as a real device on a real pty, for tests and benchmarks.

`make -C firmware` runs once per session; each test starts its own `openmind-vdev` process,
which prints the tty path it serves, and kills it afterwards (openmind.pathways.vdev does both).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from openmind.errors import PathwayUnavailable
from openmind.pathways import vdev as _vdev

# the build and the device live in the package (the ebb-and-flow notebook starts one too)
FIRMWARE = _vdev.FIRMWARE
BUILD = FIRMWARE / "build"
ROOT = FIRMWARE.parent
VDev = _vdev.VirtualDevice


def make(*targets: str, **env: str) -> subprocess.CompletedProcess:
    """Build firmware targets; a failure shows the compiler's output."""
    try:
        return _vdev.make(*targets, **env)
    except PathwayUnavailable as exc:
        raise AssertionError(str(exc)) from None


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
