"""The host side of the ESP32 serial protocol (PROTOCOL.md): open safely, skip noise, handshake.

Streams, model upload and PREDICT build on `Link`; the probe uses `hello_on`.
"""

from __future__ import annotations

import json
import time
from typing import Any

from .errors import OpenmindError

BAUD = 115200
MAX_LINE = 256


class DeviceError(OpenmindError):
    """The port could not be opened, went silent, or answered outside the protocol."""


class Link:
    """One open port. Every line that is not a JSON object is skipped and counted."""

    def __init__(self, port: str, baud: int = BAUD, read_timeout: float = 0.05) -> None:
        import serial

        try:
            ser = serial.serial_for_url(port, baudrate=baud, timeout=read_timeout, do_not_open=True)
            # De-assert before open: asserting DTR/RTS resets or stalls many ESP32 boards.
            ser.dtr = False
            ser.rts = False
            ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise DeviceError(f"cannot open {port}: {exc}") from None
        self.port = port
        self.ser = ser
        self.skipped = 0
        self._buf = b""

    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:
            pass

    def __enter__(self) -> Link:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, command: str) -> None:
        if "\n" in command or len(command) + 1 > MAX_LINE:
            raise DeviceError(f"command too long or multi-line for the protocol: {command[:40]!r}")
        try:
            self.ser.write(command.encode() + b"\n")
            self.ser.flush()
        except Exception as exc:
            raise DeviceError(f"{self.port} went away while writing ({exc})") from None

    def read_line(self, timeout: float) -> bytes | None:
        """One raw line without its newline, or None when the timeout passes."""
        deadline = time.monotonic() + timeout
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line, self._buf = self._buf[:nl], self._buf[nl + 1 :]
                return line.rstrip(b"\r")
            if time.monotonic() >= deadline:
                return None
            try:
                chunk = self.ser.read(max(1, self.ser.in_waiting or 1))
            except Exception as exc:
                raise DeviceError(f"{self.port} went away while reading ({exc})") from None
            if chunk:
                self._buf += chunk
                if len(self._buf) > 64 * MAX_LINE and b"\n" not in self._buf:
                    self._buf = b""  # a flood without newlines: drop it, it can't be protocol
                    self.skipped += 1

    def read_json(self, timeout: float) -> dict[str, Any] | None:
        """The next JSON object line; non-JSON lines are skipped and counted."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.read_line(max(0.0, deadline - time.monotonic()))
            if line is None:
                return None
            obj = parse_line(line)
            if obj is None:
                self.skipped += 1
                continue
            return obj

    def request(self, command: str, timeout: float) -> dict[str, Any]:
        """Send a command and return its answer, or raise DeviceError after `timeout`."""
        self.send(command)
        obj = self.read_json(timeout)
        if obj is None:
            raise DeviceError(f"no answer to {command.split(' ')[0]} within {timeout:g}s on {self.port}")
        return obj

    def hello(self, timeout: float) -> dict[str, Any]:
        """HELLO 1 handshake; lines left from a reset or a stream are skipped until the answer."""
        self.send("HELLO 1")
        deadline = time.monotonic() + timeout
        while True:
            obj = self.read_json(max(0.0, deadline - time.monotonic()))
            if obj is None:
                raise DeviceError(f"not an openmind device (no HELLO answer within {timeout:g}s)")
            if obj.get("hello") == "openmind":
                if obj.get("proto") != 1:
                    raise DeviceError(f"device speaks protocol {obj.get('proto')!r}, host speaks 1")
                obj["skipped"] = self.skipped
                return obj
            self.skipped += 1  # a JSON line that is not the answer (e.g. a late sample)


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A JSON object from one line, or None for anything else (boot text, logs, half lines)."""
    if not line.startswith(b"{") or len(line) > MAX_LINE * 4:
        return None
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


def hello_on(port: str, timeout: float = 1.0) -> dict[str, Any]:
    """Open `port`, handshake, close. Raises DeviceError when it is not an openmind device."""
    with Link(port) as link:
        return link.hello(timeout)
