"""The firmware's virtual device: the ESP32 firmware core built for this machine and served on a
pseudo-terminal, so the hardware-in-loop pathway runs for real without a board.

A laptop with a C compiler builds it on first use (`make -C firmware`, a second or two) from a
source checkout; the tests use the same code. `openmind.intents.board.board_or_virtual()` is
what a notebook calls.
"""

from __future__ import annotations

import fcntl
import os
import select
import shutil
import signal
import subprocess
import threading
from pathlib import Path

from openmind.errors import PathwayUnavailable

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
BINARY = FIRMWARE / "build" / "openmind-vdev"


def make(*targets: str, firmware: Path = FIRMWARE, **env: str) -> subprocess.CompletedProcess:
    """`make -s -C firmware TARGETS`; a failure raises PathwayUnavailable with the compiler's
    output (a missing compiler is a reason, not a crash)."""
    if not (firmware / "Makefile").is_file():
        raise PathwayUnavailable(f"no firmware sources at {firmware} (a source checkout has them)")
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "gcc")) is None:
        raise PathwayUnavailable("no C toolchain (make and gcc) to build the virtual device")
    args = ["make", "-s", "-C", str(firmware), *targets, *(f"{k}={v}" for k, v in env.items())]
    (firmware / "build").mkdir(exist_ok=True)
    # one build at a time per tree: two processes (kernels, test workers) making the same target
    # would write a binary while the other runs it ("text file busy")
    with open(firmware / "build" / ".make.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(args, capture_output=True, text=True, timeout=240)
    if proc.returncode != 0:
        raise PathwayUnavailable(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def build(firmware: Path = FIRMWARE) -> Path:
    """The virtual device's binary, built if missing or older than its sources."""
    make("all", firmware=firmware)  # make itself skips an up-to-date build
    return firmware / "build" / "openmind-vdev"


class VirtualDevice:
    """One running virtual device: `.port` is the tty to open, `.kill()` unplugs it."""

    def __init__(self, binary: Path | None = None, *args: str) -> None:
        binary = binary or build()
        self.proc = subprocess.Popen([str(binary), *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 10.0)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("PTY "):
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.kill()
            raise PathwayUnavailable(f"virtual device did not start: {line!r} {err!r}")
        self.port = line.split(" ", 1)[1].strip()

    def kill(self) -> None:
        """SIGKILL: the device vanishes mid-whatever, like a pulled USB cable."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=5)

    def kill_after(self, seconds: float) -> None:
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

    def __enter__(self) -> VirtualDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
