"""The serial probe through a real pty: handshake past boot noise, and a silent port."""

from __future__ import annotations

import json
import os
import pty
import threading
import time

import openmind

HELLO = {"hello": "openmind", "proto": 1, "fw": "0.1.0", "board": "pty-test",
         "signals": [{"name": "temperature", "unit": "C", "max_rate_hz": 50}]}


def _device(master: int, answer: bool, stop: threading.Event) -> None:
    """Plays an ESP32 that resets as the port opens: ROM garbage, an ESP-IDF log line and a half
    line come out before it answers (pyserial flushes input on open, so they come after)."""
    buf = b""
    while not stop.is_set():
        try:
            chunk = os.read(master, 256)
        except OSError:
            return
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            if answer and line.strip() == b"HELLO 1":
                os.write(master, b"\x00\xff ets Jun  8 2016 rst:0x1\r\nI (31) boot: ESP-IDF v5\r\n"
                                 b"{half a li\r\n")
                os.write(master, json.dumps(HELLO).encode() + b"\r\n")
            elif answer and line.startswith(b"HELLO"):  # a v1 device refuses HELLO 2 (protocol-v2.md)
                os.write(master, b'{"ok":false,"error":"args","msg":"usage: HELLO 1"}\r\n')


def _run(answer: bool, monkeypatch):
    master, slave = pty.openpty()
    stop = threading.Event()
    t = threading.Thread(target=_device, args=(master, answer, stop), daemon=True)
    t.start()
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", os.ttyname(slave))
    monkeypatch.setenv("OPENMIND_PROBE_TIMEOUT", "0.5")
    try:
        start = time.perf_counter()
        res = openmind.probe(refresh=True)
        return res, time.perf_counter() - start
    finally:
        stop.set()
        os.close(slave)
        os.close(master)


def test_serial_probe_finds_device_past_boot_noise(monkeypatch):
    res, _ = _run(True, monkeypatch)
    s = res.serial
    assert s.available and s.status == "online", s
    assert s.details["board"] == "pty-test"
    assert [x["name"] for x in s.details["signals"]] == ["temperature"]
    assert s.details["skipped_lines"] >= 2  # ROM text and the log line were skipped and counted
    plan = openmind.route(openmind.Intent.of("sense", name="temperature", prior=True), resources=res)
    assert plan.first.pathway is openmind.Pathway.HARDWARE_IN_LOOP


def test_silent_port_is_not_a_device_and_costs_only_the_timeout(monkeypatch):
    res, elapsed = _run(False, monkeypatch)
    assert not res.serial.available and res.serial.status == "silent"
    assert "not an openmind device" in res.serial.reason
    assert elapsed < 1.5


def test_missing_port_is_absent_with_reason(monkeypatch):
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", "/dev/does-not-exist-42")
    s = openmind.probe(refresh=True).serial
    assert not s.available and "cannot open /dev/does-not-exist-42" in s.reason
