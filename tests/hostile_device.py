"""A hostile ESP32 on a real pty: speaks protocol v1 (PROTOCOL.md) well or badly on purpose.

The host side opens the pty's slave path with pyserial exactly as it opens a board; a thread on
the master side answers each command line according to `fault`:

    healthy      answers like the firmware
    silent       answers nothing
    flood        answers every command with 40 KB of bytes and no newline
    garbage      binary noise, ROM text, half lines and odd JSON between correct answers
    bitflip      one sample's sequence number has bit 30 flipped, another's bit 2 (time kept)
    timeflip     one sample's device time jumps by 2**27 ms
    wrong_types  samples with "n":"x" / "t":null / "v":{}; STOP says "sent":"many", DATA "got":null
    drops        every 4th sample never arrives
    dies         goes silent after 5 samples of a stream
    deep         deeply nested JSON lines around every answer
    wrong_proto  answers HELLO with proto 2
    duplicate    every sample is sent twice, and one from an earlier stream arrives late
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
import tty

FAULTS = ("healthy", "silent", "flood", "garbage", "bitflip", "timeflip", "wrong_types", "drops",
          "dies", "deep", "wrong_proto", "duplicate")

SIGNALS = [{"name": "temperature", "unit": "C", "max_rate_hz": 1000},
           {"name": "light", "unit": "lx", "max_rate_hz": 1000}]


class HostileDevice:
    """One device on a fresh pty; `.port` is the path to open; `close()` unplugs it."""

    def __init__(self, fault: str = "healthy", script: list[bytes] | None = None) -> None:
        if fault not in FAULTS:
            raise ValueError(f"unknown fault {fault!r}")
        self.fault = fault
        self.script = script  # when set: every command is answered with these raw lines (fuzzing)
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)  # a write into a full pty must never hang close()
        self.port = os.ttyname(self.slave)
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._stream: threading.Thread | None = None
        self._streaming = threading.Event()
        self._sent = 0
        self._model = bytearray()
        self._clock0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    # ------------------------------------------------------------------ plumbing
    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._stop.is_set():
            try:
                n = os.write(self.master, view[:4096])
            except BlockingIOError:
                time.sleep(0.001)
                continue
            except OSError:
                return
            view = view[n:]

    def _line(self, obj: object) -> None:
        self._write((obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))).encode() + b"\n")

    def _noise(self) -> None:
        if self.fault == "garbage":
            self._write(b"\xff\xfe\x80garbage\r\n" + b"ets Jun  8 2016 rst:0x1\r\n" + b'{"s":"temperature","n":4\n'
                        + b'[1,2,3]\n{"hello":"other"}\n{"ok":\n')
        elif self.fault == "deep":
            self._write(b'{"a":' + b"[" * 600 + b"]" * 600 + b"}\n")
            self._write(b'{"s":' + b"{" * 300 + b"\n")

    def _ms(self) -> int:
        return int((time.monotonic() - self._clock0) * 1000)

    def _run(self) -> None:
        buf = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except BlockingIOError:
                continue
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\n" in buf:
                raw, buf = buf.split(b"\n", 1)
                self._command(raw.decode(errors="replace").strip())

    # ------------------------------------------------------------------ protocol
    def _command(self, text: str) -> None:
        self.commands.append(text)
        if self.script is not None:
            self._write(b"".join(line + b"\n" for line in self.script))
            return
        if self.fault == "silent":
            return
        if self.fault == "flood":
            self._write(b"A" * 40_000)
            return
        self._noise()
        words = text.split(" ")
        cmd = words[0]
        if cmd == "HELLO":
            proto = 2 if self.fault == "wrong_proto" else 1
            self._line({"hello": "openmind", "proto": proto, "fw": "hostile", "board": "pty",
                        "signals": SIGNALS})
        elif cmd == "STREAM" and len(words) == 4:
            self._stop_stream()
            rate, count = float(words[2]), int(words[3])
            self._line({"ok": True})
            self._streaming.set()
            self._stream = threading.Thread(target=self._samples, args=(words[1], rate, count), daemon=True)
            self._stream.start()
        elif cmd == "STOP":
            self._stop_stream()
            self._line({"ok": True, "sent": "many" if self.fault == "wrong_types" else self._sent})
        elif cmd == "MODEL" and len(words) >= 2:
            if words[1] == "BEGIN":
                self._model = bytearray()
                self._line({"ok": True})
            elif words[1] == "DATA":
                import base64

                self._model += base64.b64decode(words[2])
                self._line({"ok": True, "got": None if self.fault == "wrong_types" else len(self._model)})
            else:
                self._line({"ok": True, "inputs": 4, "outputs": 3})
        elif cmd == "PREDICT":
            self._line({"y": "one" if self.fault == "wrong_types" else 1, "scores": [0.1, 0.9, 0.0]})
        else:
            self._line({"ok": False, "error": "unknown", "msg": "no such command"})

    def _stop_stream(self) -> None:
        self._streaming.clear()
        if self._stream is not None:
            self._stream.join(2)
            self._stream = None

    def _samples(self, signal: str, rate: float, count: int) -> None:
        period = 1.0 / rate
        start = time.monotonic()
        t0 = self._ms()
        self._sent = 0
        if self.fault == "duplicate":
            self._line({"s": signal, "n": 0, "t": t0 - 5000, "v": 99.0})  # late, from an old stream
        for n in range(count):
            if not self._streaming.is_set():
                return
            due = start + n * period
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            self._sent = n + 1
            t = t0 + int(n * period * 1000)
            v = 23.5 + 0.5 * ((n % 7) - 3) / 3
            line: dict = {"s": signal, "n": n, "t": t, "v": round(v, 4)}
            if self.fault == "drops" and n % 4 == 3:
                continue
            if self.fault == "dies" and n >= 5:
                return
            if self.fault == "bitflip" and n == 3:
                line["n"] = n ^ (1 << 30)
            if self.fault == "bitflip" and n == 7:
                line["n"] = n ^ 4
            if self.fault == "timeflip" and n == 4:
                line["t"] = t + 2**27
            if self.fault == "wrong_types" and n % 5 == 2:
                line.update({"n": "x"} if n % 3 == 0 else {"t": None} if n % 3 == 1 else {"v": {}})
            self._line(line)
            if self.fault == "duplicate":
                self._line(line)
            if self.fault in ("garbage", "deep") and n % 5 == 0:
                self._noise()

    def close(self) -> None:
        self._streaming.clear()
        self._stop.set()
        self._thread.join(2)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    def __enter__(self) -> HostileDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
