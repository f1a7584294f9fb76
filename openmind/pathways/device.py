"""The host side of the ESP32 serial protocol (PROTOCOL.md, docs/protocol-v2.md): open a port
exclusively, skip noise, handshake, stream with loss detection, upload a packed model, PREDICT.

The probe uses `hello_on`; `sense_or_simulate` uses `Link.capture`; `deploy` uses
`Link.upload_model` and `Link.predict` / `Link.predict_batch` (protocol 2's PREDICTB when the
device offers it, one v1 PREDICT line a row otherwise).

The device limits are defined here (a test reads firmware/core/om_core.h against them); who may
open a port (the lock, the bench, DeviceError) is `port.py`'s, and which fields of an answer are
believed is `lines.py`'s.
"""

from __future__ import annotations

import base64
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from openmind.pathways.lines import (
    StreamCheck,
    as_count,
    finite,
    float32_text,
    int_fields,
    is_number,
    number_text,
    signals,
)
from openmind.pathways.port import (
    DeviceError,
    PortBusy,
    bench,
    bench_left,
    lock_port,
    unbench,
)

BAUD = 115200
MAX_LINE = 256
# The firmware's limits, as firmware/core/om_core.h defines them (a test checks the two agree).
MODEL_MAX_BYTES = 16384   # OM_MODEL_MAX
MODEL_MAX_WIDTH = 256     # OM_MAX_WIDTH (widest layer, inputs included)
MODEL_MAX_LAYERS = 8      # OM_MAX_LAYERS
# MODEL DATA carries at most 192 base64 characters: 144 bytes a line.
CHUNK_BYTES = 144
# The highest protocol this host speaks (docs/protocol-v2.md); v1 devices are still spoken to in v1.
PROTO = 2
# What a v1 device (no "limits" in HELLO) is assumed to hold: the firmware's defaults.
DEFAULT_LIMITS = {"model_max": MODEL_MAX_BYTES, "max_width": MODEL_MAX_WIDTH,
                  "max_layers": MODEL_MAX_LAYERS, "line_max": MAX_LINE, "b64_max": 4 * CHUNK_BYTES // 3}
# A JSON line nested deeper than this is not protocol (the deepest, HELLO's signals, is 3).
MAX_DEPTH = 8
# Bytes without a newline after which a port counts as flooding (it is benched at once).
FLOOD_BYTES = 64 * MAX_LINE


class Link:
    """One open port, held exclusively: a lock file per port (so a second reader in any process
    is refused before it opens the tty) and flock on the tty itself (pyserial's exclusive=True).
    Every line that is not a JSON object is skipped and counted."""

    def __init__(self, port: str, baud: int = BAUD, read_timeout: float = 0.05) -> None:
        import serial

        left, why = bench_left(port)
        if left > 0:
            raise DeviceError(f"{port} is benched for {left:.1f}s more ({why})", code="benched")
        self._lock = lock_port(port)
        try:
            ser = serial.serial_for_url(port, baudrate=baud, timeout=read_timeout, do_not_open=True,
                                        exclusive=True)
            # De-assert before open: asserting DTR/RTS resets or stalls many ESP32 boards.
            ser.dtr = False
            ser.rts = False
            ser.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            self._unlock()
            if "exclusively lock" in str(exc):
                raise PortBusy(port) from None
            raise DeviceError(f"cannot open {port}: {exc}") from None
        self.port = port
        self.ser = ser
        self.skipped = 0
        self._buf = b""
        self.proto = 1
        self.limits: dict[str, int] = dict(DEFAULT_LIMITS)

    def _unlock(self) -> None:
        if getattr(self, "_lock", None) is not None:
            os.close(self._lock)
            self._lock = None

    def __del__(self) -> None:  # a Link dropped without close() must not hold its port forever
        self._unlock()

    def close(self) -> None:
        try:
            self.ser.close()
        except Exception:
            pass
        self._unlock()

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
                if len(self._buf) > FLOOD_BYTES and b"\n" not in self._buf:
                    # a flood without newlines can't be protocol: bench the port so the next
                    # call costs nothing instead of its full timeout
                    self._buf = b""
                    self.skipped += 1
                    why = f"it sent over {FLOOD_BYTES} bytes without a newline"
                    bench(self.port, why, now=True)
                    raise DeviceError(f"{self.port} floods: {why}", code="flood")

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

    def hello(self, timeout: float, proto: int = PROTO) -> dict[str, Any]:
        """HELLO handshake in the highest protocol both sides speak: `HELLO 2` first; a v1
        device refuses it ("args") and is asked `HELLO 1`. Lines left from a reset or a stream
        are skipped until the answer. Sets `.proto` and `.limits` (v2 HELLO's, else defaults)."""
        self.send(f"HELLO {proto}")
        deadline = time.monotonic() + timeout
        fell_back = False
        while True:
            obj = self.read_json(max(0.0, deadline - time.monotonic()))
            if obj is None:
                why = f"no HELLO answer within {timeout:g}s"
                bench(self.port, why, now=True)  # it already cost the whole timeout
                raise DeviceError(f"not an openmind device ({why})")
            if obj.get("hello") == "openmind":
                got = obj.get("proto")
                top = max(proto, PROTO)  # protocol 3 (learning) is asked by pathways/learnlink.py
                if not isinstance(got, int) or isinstance(got, bool) or not 1 <= got <= top:
                    raise DeviceError(f"device speaks protocol {str(got)[:20]!r}, host speaks 1 to {top}")
                self.proto = got
                self.limits = {**DEFAULT_LIMITS, **int_fields(obj.get("limits"))}
                obj["signals"] = signals(obj.get("signals"))
                for key in ("board", "fw"):
                    obj[key] = str(obj.get(key, "?"))[:40]
                if fell_back and got > 1:  # the error was stale: read off the answer to HELLO 1 too
                    while (late := self.read_json(max(0.0, deadline - time.monotonic()))) is not None:
                        if late.get("hello") == "openmind":
                            break
                obj["skipped"] = self.skipped
                unbench(self.port)
                return obj
            if obj.get("ok") is False and obj.get("error") == "args" and proto > 1 and "s" not in obj:
                self.send("HELLO 1")  # a v1 device: "usage: HELLO 1"
                proto, fell_back = 1, True
                continue
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
                    code = str(obj.get("error"))[:40]
                    msg = str(obj.get("msg") or "")[:120]
                    raise DeviceError(f"{what} refused by the device: {code}" + (f" ({msg})" if msg else ""),
                                      code=code)
                return obj
            self.skipped += 1

    def stop(self, timeout: float = 2.0) -> int:
        """STOP any stream; returns how many samples the device says it sent."""
        obj = self.command("STOP", timeout, accept=lambda o: "sent" in o or o.get("ok") is False)
        sent = as_count(obj.get("sent", 0))
        if sent is None:
            raise DeviceError(f"STOP answer has a malformed 'sent': {str(obj.get('sent'))[:40]!r}")
        return sent

    def capture(self, signal: str, rate_hz: float, count: int, timeout: float = 5.0,
                on_sample: Callable[[int], None] | None = None) -> Capture:
        """Stream `count` samples of `signal` at `rate_hz`. Never raises once the stream started:
        a device that dies or goes silent ends the capture early with `error` set and the samples
        already read kept. Gaps in the sequence numbers are counted as lost samples."""
        if count < 1:
            raise ValueError("count must be at least 1")
        cap = Capture(signal, float(rate_hz), int(count))
        self.command(f"STREAM {signal} {number_text(rate_hz)} {int(count)}", timeout)
        period = 1.0 / rate_hz
        started = time.monotonic()
        # a sample may be late by the timeout; the whole stream by its duration plus the timeout
        deadline = started + count * period + timeout
        expect = 0
        ns, ts, vs = cap._n, cap._t, cap._v
        check = StreamCheck(signal, rate_hz, count, started)
        try:
            while expect < count:
                obj = self.read_json(min(timeout, max(0.0, deadline - time.monotonic())))
                if obj is None:
                    cap.error = (f"device went silent after {len(ns)} of {count} samples "
                                 f"(no sample within {timeout:g}s)")
                    break
                sample = check.accept(obj, expect)
                if sample is None:
                    self.skipped += 1
                    continue
                n, t, v = sample
                if n > expect:
                    cap.lost += n - expect
                ns.append(n)
                ts.append(t)
                vs.append(v)
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
        if cap.error is not None:
            bench(self.port, cap.error, now=True)  # it cost the whole timeout: the next call won't
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
            got = as_count(self.command(f"MODEL DATA {chunk}", timeout).get("got"))
            if got != min(len(blob), i + CHUNK_BYTES):
                raise DeviceError(f"device acknowledged {got} bytes, expected {min(len(blob), i + CHUNK_BYTES)}")
        return self.command("MODEL END", timeout)

    def predict(self, x: Sequence[float] | np.ndarray, timeout: float = 2.0) -> tuple[int, list[float]]:
        """PREDICT on the device: (class index, scores). Protocol 2 sends the row as float32
        bytes (PREDICTB, any width); v1 sends the shortest text that reads back as the same
        float32 (one 256-byte line), so the device sees exactly the numbers given either way."""
        if self.proto >= 2:
            ys, scores = self.predict_batch(np.asarray(x, dtype=np.float32).reshape(1, -1), timeout)
            return int(ys[0]), [float(v) for v in scores[0]]
        return self._predict_v1(x, timeout)

    def predict_batch(self, X: Any, timeout: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
        """Rows of X on the device: (class indices [n], float32 scores [n, outputs]).
        Protocol 2: `PREDICTB BEGIN <rows>`, then the rows' float32 little-endian bytes as base64
        DATA lines; the device answers each row as it completes (scores as float32 bytes, so
        they are exact). A v1 device gets one PREDICT line a row."""
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or len(X) == 0:
            raise DeviceError(f"predict_batch needs a 2-D array of at least one row, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise DeviceError("cannot send non-finite values (NaN/inf) to the device")
        if self.proto < 2:
            rows = [self._predict_v1(x, timeout) for x in X]
            return (np.array([r[0] for r in rows], dtype=np.int64),
                    np.array([r[1] for r in rows], dtype=np.float32))
        self.command(f"PREDICTB BEGIN {len(X)}", timeout, accept=lambda o: "rows" in o or o.get("ok") is False)
        data = X.astype("<f4").tobytes()
        ys: dict[int, int] = {}
        scores: dict[int, np.ndarray] = {}
        for i in range(0, len(data), CHUNK_BYTES):
            self.send("PREDICTB DATA " + base64.b64encode(data[i:i + CHUNK_BYTES]).decode("ascii"))
            deadline = time.monotonic() + timeout
            while True:  # row answers first, then the line's acknowledgement
                obj = self.read_json(max(0.0, deadline - time.monotonic()))
                if obj is None:
                    raise DeviceError(f"no answer to PREDICTB DATA within {timeout:g}s on {self.port}")
                if "r" in obj:
                    r = obj["r"]
                    if obj.get("ok") is False or not isinstance(r, int) or not 0 <= r < len(X):
                        raise DeviceError(f"PREDICTB row {r} refused by the device: {obj.get('error')} "
                                          f"({obj.get('msg', 'bad row answer')})", code=obj.get("error"))
                    y = as_count(obj.get("y"))
                    try:
                        row = np.frombuffer(base64.b64decode(str(obj.get("b", "")), validate=True), dtype="<f4")
                    except (ValueError, TypeError):
                        row = None
                    if y is None or row is None or not len(row):
                        raise DeviceError(f"malformed PREDICTB answer for row {r}: {json.dumps(obj)[:120]}")
                    ys[r], scores[r] = y, row
                elif "s" in obj:
                    self.skipped += 1  # a stream sample interleaved
                elif obj.get("ok") is False:
                    raise DeviceError(f"PREDICTB DATA refused by the device: {obj.get('error')} "
                                      f"({obj.get('msg', '')})", code=obj.get("error"))
                elif "got" in obj:
                    break
                else:
                    self.skipped += 1
        if len(ys) != len(X):
            raise DeviceError(f"the device answered {len(ys)} of {len(X)} rows")
        return (np.array([ys[i] for i in range(len(X))], dtype=np.int64),
                np.stack([scores[i] for i in range(len(X))]).astype(np.float32))

    def _predict_v1(self, x: Sequence[float] | np.ndarray, timeout: float) -> tuple[int, list[float]]:
        text = ",".join(float32_text(v) for v in np.asarray(x, dtype=np.float32).ravel())
        if len(text) + len("PREDICT \n") > MAX_LINE:
            raise DeviceError(f"{len(np.ravel(x))} inputs do not fit one {MAX_LINE}-byte PREDICT line")
        obj = self.command(f"PREDICT {text}", timeout, accept=lambda o: "y" in o or "ok" in o)
        y, scores = as_count(obj.get("y")), obj.get("scores", [])
        if y is None or not isinstance(scores, list) or not all(
                s is None or is_number(s) for s in scores):
            raise DeviceError(f"malformed PREDICT answer: {json.dumps(obj)[:120]}")
        return y, [finite(s) for s in scores]


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


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A JSON object from one line, or None for anything else (boot text, logs, half lines,
    lines too long or nested too deep to be protocol). Never raises."""
    if not isinstance(line, (bytes, bytearray)) or not line.startswith(b"{") or len(line) > MAX_LINE * 4:
        return None
    if line.count(b"{") + line.count(b"[") > MAX_DEPTH and _depth(line) > MAX_DEPTH:
        return None
    try:
        obj = json.loads(line.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return obj if isinstance(obj, dict) else None


def _depth(line: bytes) -> int:
    """The deepest bracket nesting of a JSON text, brackets inside strings not counted."""
    depth = deepest = 0
    in_str = escaped = False
    for c in line:
        if in_str:
            if escaped:
                escaped = False
            elif c == 0x5C:  # backslash
                escaped = True
            elif c == 0x22:
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x7B, 0x5B):
            depth += 1
            deepest = max(deepest, depth)
        elif c in (0x7D, 0x5D):
            depth -= 1
    return deepest


def hello_on(port: str, timeout: float = 1.0) -> dict[str, Any]:
    """Open `port`, handshake, close. Raises DeviceError when it is not an openmind device
    (PortBusy when another reader holds the port). The answer carries `limits` (v2's, or the
    firmware defaults a v1 device is assumed to have)."""
    with Link(port) as link:
        info = link.hello(timeout)
        info["limits"] = dict(link.limits)
        return info
