"""One reader a port: while a kernel captures from the firmware's host build, the sidebar's
server (a real Jupyter server, polled through its route) shows the kernel's last probe from the
store instead of opening the port, and the capture loses nothing."""

from __future__ import annotations

import asyncio
import json

import pytest

from openmind.flow.resources.serial import probe_serial
from openmind.pathways.device import DeviceError, Link, PortBusy, hello_on
from openmind.pathways.port import port_busy

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"openmind.jupyter": True}}}


@pytest.mark.slow
async def test_10s_capture_at_1khz_loses_nothing_while_the_sidebar_polls(jp_fetch, vdev, monkeypatch):
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", vdev.port)
    first = probe_serial()  # the kernel's probe: stored for the server to read later
    assert first.status == "online" and first.details["limits"]["model_max"] == 32768
    link = Link(vdev.port)
    try:
        link.hello(2.0)
        capture = asyncio.ensure_future(asyncio.to_thread(link.capture, "adc", 1000, 10_000, timeout=3.0))
        polls = []
        while not capture.done():
            resp = await jp_fetch("openmind", "api", "resources", params={"refresh": "1"})
            polls.append(json.loads(resp.body)["serial"])
            await asyncio.sleep(0.2)
        cap = await capture
    finally:
        link.close()
    print(f"\n10 s at 1 kHz with {len(polls)} sidebar polls: received {cap.received}, lost {cap.lost}")
    assert cap.error is None and cap.lost == 0 and cap.received == 10_000 and cap.complete
    assert len(polls) >= 20
    assert all(p["status"] == "busy" and p["available"] and p["details"]["busy"] for p in polls)
    assert all(p["details"]["board"] == "host-vdev" and "as probed" in p["reason"] for p in polls[1:])
    assert not port_busy(vdev.port)
    assert probe_serial().status == "online"  # free again: probed for real


def test_busy_port_is_never_opened_and_a_probe_without_history_says_so(vdev, monkeypatch):
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", vdev.port)
    with Link(vdev.port):
        assert port_busy(vdev.port)
        with pytest.raises(PortBusy):
            hello_on(vdev.port)
        res = probe_serial()
        assert res.available and res.status == "busy" and "not probed" in res.reason


def test_a_reader_that_ignores_the_lock_does_lose_samples(vdev):
    """Why the lock exists: opening the tty (pyserial flushes its input on open) mid-stream
    discards bytes the capturing reader has not read yet."""
    import threading
    import time

    import serial

    link = Link(vdev.port)
    stop = threading.Event()

    def intruder() -> None:
        while not stop.is_set():
            ser = serial.Serial(vdev.port, 115200, timeout=0.05)  # no lock, no exclusive
            ser.close()
            time.sleep(0.01)

    try:
        link.hello(2.0)
        t = threading.Thread(target=intruder, daemon=True)
        t.start()
        try:
            cap = link.capture("adc", 1000, 2000, timeout=3.0)
            damaged = cap.lost > 0 or cap.error is not None
        except DeviceError:  # the intruder's open broke the STREAM command's own answer
            damaged = True
    finally:
        stop.set()
        link.close()
    assert damaged
