"""A board for the hardware-in-loop pathway, real or virtual: what a notebook calls so that a
bare laptop still runs the loop against the firmware (its host build on a pty) and says so."""

from __future__ import annotations

import atexit
import os

from openmind.errors import PathwayUnavailable
from openmind.flow.resources import invalidate, probe
from openmind.pathways.vdev import VirtualDevice


class Board:
    """What `board_or_virtual()` found: `.port`, `.virtual` and, in words, `.note`."""

    def __init__(self, port: str | None, virtual: VirtualDevice | None, note: str) -> None:
        self.port, self.device, self.note = port, virtual, note

    @property
    def virtual(self) -> bool:
        return self.device is not None

    def close(self) -> None:
        if self.device is not None:
            self.device.close()
            if os.environ.get("OPENMIND_SERIAL_PORT") == self.port:
                os.environ.pop("OPENMIND_SERIAL_PORT")
            invalidate("serial")

    def __repr__(self) -> str:
        return self.note


_STARTED: list[Board] = []


def board_or_virtual() -> Board:
    """The ESP32 if one answers; else the firmware's virtual device, started (built on first use)
    and made this process's serial port, so the hardware-in-loop pathway runs for real. When
    neither can be had, the reason is in `.note` and sensing simulates as usual."""
    for b in _STARTED:  # already started in this process
        if b.device is not None and b.device.proc.poll() is None:
            return b
    serial = probe().serial
    if serial.available:
        return Board(serial.details.get("port"), None, f"a board answers: {serial.reason}")
    try:
        dev = VirtualDevice()
    except PathwayUnavailable as exc:
        return Board(None, None, f"no board and no virtual device ({exc}); sensing will simulate")
    os.environ["OPENMIND_SERIAL_PORT"] = dev.port
    invalidate("serial")
    board = Board(dev.port, dev, f"no board answered, so the firmware's virtual device runs on "
                                 f"{dev.port} (its sensors are simulated in C, read over the real "
                                 f"serial protocol)")
    _STARTED.append(board)
    atexit.register(board.close)
    return board
