"""The host side of the ESP32 serial protocol (PROTOCOL.md): open safely, skip noise, handshake,
stream with loss detection, upload a packed model, PREDICT.

The probe uses `hello_on`; `sense_or_simulate` uses `Link.capture`; `deploy` uses
`Link.upload_model` and `Link.predict`.
"""

from __future__ import annotations

import base64
import json
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openmind.errors import OpenmindError

BAUD = 115200
MAX_LINE = 256
# The firmware's limits, as firmware/core/om_core.h defines them (a test checks the two agree).
MODEL_MAX_BYTES = 16384   # OM_MODEL_MAX
MODEL_MAX_WIDTH = 256     # OM_MAX_WIDTH (widest layer, inputs included)
MODEL_MAX_LAYERS = 8      # OM_MAX_LAYERS
# MODEL DATA carries at most 192 base64 characters: 144 bytes a line.
CHUNK_BYTES = 144


class DeviceError(OpenmindError):
    """The port could not be opened, went silent, or answered outside the protocol."""

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code  # the device's error code ("crc", "busy", ...) when it refused


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

    # ------------------------------------------------------------------ commands beyond HELLO

    def command(self, command: str, timeout: float, accept: Callable[[dict], bool] | None = None) -> dict[str, Any]:
        """Send a command; return the first answer `accept` takes (default: any line without "s",
        so stray samples are skipped). A device error answer raises DeviceError naming it."""
        self.send(command)
        deadline = time.monotonic() + timeout
        what = command.split(" ")[0] if not command.startswith("MODEL") else " ".join(command.split(" ")[:2])
        while True:
            obj = self.read_json(max(0.0, deadline - time.monotonic()))
            if obj is None:
                raise DeviceError(f"no answer to {what} within {timeout:g}s on {self.port}")
            if accept(obj) if accept else "s" not in obj:
                if obj.get("ok") is False:
                    raise DeviceError(f"{what} refused by the device: {obj.get('error')}"
                                      + (f" ({obj['msg']})" if obj.get("msg") else ""), code=obj.get("error"))
                return obj
            self.skipped += 1

    def stop(self, timeout: float = 2.0) -> int:
        """STOP any stream; returns how many samples the device says it sent."""
        obj = self.command("STOP", timeout, accept=lambda o: "sent" in o or o.get("ok") is False)
        return int(obj.get("sent", 0))

    def capture(self, signal: str, rate_hz: float, count: int, timeout: float = 5.0,
                on_sample: Callable[[int], None] | None = None) -> Capture:
        """Stream `count` samples of `signal` at `rate_hz`. Never raises once the stream started:
        a device that dies or goes silent ends the capture early with `error` set and the samples
        already read kept. Gaps in the sequence numbers are counted as lost samples."""
        if count < 1:
            raise ValueError("count must be at least 1")
        cap = Capture(signal, float(rate_hz), int(count))
        self.command(f"STREAM {signal} {_num(rate_hz)} {int(count)}", timeout)
        period = 1.0 / rate_hz
        # a sample may be late by the timeout; the whole stream by its duration plus the timeout
        deadline = time.monotonic() + count * period + timeout
        expect = 0
        ns, ts, vs = cap._n, cap._t, cap._v
        try:
            while expect < count:
                obj = self.read_json(min(timeout, max(0.0, deadline - time.monotonic())))
                if obj is None:
                    cap.error = (f"device went silent after {len(ns)} of {count} samples "
                                 f"(no sample within {timeout:g}s)")
                    break
                n = obj.get("n")
                if obj.get("s") != signal or not isinstance(n, int) or n < expect:
                    self.skipped += 1
                    continue
                if n > expect:
                    cap.lost += n - expect
                v = obj.get("v")
                ns.append(n)
                ts.append(obj.get("t", -1))
                vs.append(float(v) if isinstance(v, (int, float)) else math.nan)
                expect = n + 1
                if on_sample is not None:
                    on_sample(expect)
        except DeviceError as exc:
            cap.error = f"device lost after {len(ns)} of {count} samples: {exc}"
        except BaseException as exc:  # Ctrl-C: stop the stream; the samples read go with it
            self._quiet_stop()
            cap.error = f"interrupted after {len(ns)} of {count} samples"
            cap.skipped = self.skipped
            exc.capture = cap  # type: ignore[attr-defined]
            raise
        if cap.error is None:
            try:
                sent = self.stop(timeout)
                if sent > expect:  # samples the device sent after the last one we saw
                    cap.lost += min(sent, count) - expect
            except DeviceError:
                pass
        else:
            self._quiet_stop()
        cap.skipped = self.skipped
        return cap

    def _quiet_stop(self) -> None:
        try:
            self.send("STOP")
        except DeviceError:
            pass

    def upload_model(self, blob: bytes, timeout: float = 5.0) -> dict[str, Any]:
        """MODEL BEGIN/DATA/END; returns the device's {"inputs", "outputs"}. The device checks the
        CRC-32 and keeps its previous model when anything goes wrong."""
        crc = zlib.crc32(blob) & 0xFFFFFFFF
        self.command(f"MODEL BEGIN {len(blob)} {crc:08x}", timeout)
        got = 0
        for i in range(0, len(blob), CHUNK_BYTES):
            chunk = base64.b64encode(blob[i:i + CHUNK_BYTES]).decode("ascii")
            got = int(self.command(f"MODEL DATA {chunk}", timeout).get("got", -1))
            if got != min(len(blob), i + CHUNK_BYTES):
                raise DeviceError(f"device acknowledged {got} bytes, expected {min(len(blob), i + CHUNK_BYTES)}")
        return self.command("MODEL END", timeout)

    def predict(self, x: Sequence[float] | np.ndarray, timeout: float = 2.0) -> tuple[int, list[float]]:
        """PREDICT on the device: (class index, scores). Values go as the shortest text that
        reads back as the same float32, so the device sees exactly the numbers given."""
        text = ",".join(float32_text(v) for v in np.asarray(x, dtype=np.float32).ravel())
        if len(text) + len("PREDICT \n") > MAX_LINE:
            raise DeviceError(f"{len(np.ravel(x))} inputs do not fit one {MAX_LINE}-byte PREDICT line")
        obj = self.command(f"PREDICT {text}", timeout, accept=lambda o: "y" in o or "ok" in o)
        scores = [math.nan if s is None else float(s) for s in obj.get("scores", [])]
        return int(obj["y"]), scores


@dataclass
class Capture:
    """Samples read from one stream: sequence numbers, device times (ms since boot), values."""

    signal: str
    rate_hz: float
    requested: int
    lost: int = 0
    skipped: int = 0
    error: str | None = None
    _n: list = field(default_factory=list, repr=False)
    _t: list = field(default_factory=list, repr=False)
    _v: list = field(default_factory=list, repr=False)

    @property
    def n(self) -> np.ndarray:
        return np.asarray(self._n, dtype=np.int64)

    @property
    def device_ms(self) -> np.ndarray:
        return np.asarray(self._t, dtype=np.int64)

    @property
    def values(self) -> np.ndarray:
        return np.asarray(self._v, dtype=np.float64)

    @property
    def received(self) -> int:
        return len(self._n)

    @property
    def complete(self) -> bool:
        return self.error is None and self.received + self.lost >= self.requested


def _num(x: float) -> str:
    return f"{x:.9g}"


def float32_text(v: float) -> str:
    """The shortest decimal that parses (strtof) back to the same float32."""
    f = np.float32(v)
    if not np.isfinite(f):
        raise DeviceError(f"cannot send the non-finite value {v!r} to the device")
    a = np.format_float_positional(f, unique=True, trim="-")
    b = np.format_float_scientific(f, unique=True, trim="-")
    return a if len(a) <= len(b) else b


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
