"""The host serial client against the firmware's host build on a real pty, through pyserial."""

from __future__ import annotations

import time

import numpy as np
import pytest
from vdev_fixtures import wait_until

from openmind.pathways.device import DeviceError, Link, float32_text, hello_on


def test_handshake_lists_signals(vdev):
    info = hello_on(vdev.port, timeout=2.0)
    assert info["hello"] == "openmind" and info["proto"] == 2  # protocol 2 (docs/protocol-v2.md)
    names = {s["name"]: s for s in info["signals"]}
    assert names["temperature"]["unit"] == "C"
    assert names["sine"]["max_rate_hz"] >= 1000
    assert info["skipped"] == 0


def test_boot_noise_and_log_lines_are_skipped_and_counted(noisy_vdev):
    with Link(noisy_vdev.port) as link:
        info = link.hello(2.0)
        assert info["board"] == "host-vdev"
        assert info["skipped"] >= 6  # ROM garbage, ets/rst lines, ESP-IDF logs, the half line
        cap = link.capture("temperature", 50, 40, timeout=2.0)  # 0.8 s: log lines interleave
    assert cap.complete and cap.received == 40 and cap.lost == 0
    assert cap.skipped > info["skipped"]
    assert np.all(np.diff(cap.n) == 1)
    assert 15 < np.nanmean(cap.values) < 35


def test_stream_1khz_for_10s_loses_no_sample(vdev):
    with Link(vdev.port) as link:
        link.hello(2.0)
        t0 = time.perf_counter()
        cap = link.capture("sine", 1000, 10_000, timeout=3.0)
        wall = time.perf_counter() - t0
    rate = cap.received / wall
    print(f"\n1 kHz stream: {cap.received} samples in {wall:.2f} s = {rate:.0f} samples/s, lost {cap.lost}")
    assert cap.error is None and cap.lost == 0 and cap.received == 10_000
    assert np.array_equal(cap.n, np.arange(10_000))
    assert 0.98 * 1000 < rate < 1.05 * 1000
    dt = np.diff(cap.device_ms)
    assert abs(dt.mean() - 1.0) < 0.01


def test_stop_ends_an_open_stream_and_the_device_stays_usable(vdev):
    with Link(vdev.port) as link:
        link.hello(2.0)
        assert link.command("STREAM sine 200", 2.0) == {"ok": True}
        seen = [link.read_json(1.0) for _ in range(20)]
        assert all(s and s["s"] == "sine" for s in seen)
        sent = link.stop(2.0)
        assert sent >= 20
        # after the STOP answer, nothing more arrives
        assert link.read_json(0.3) is None
        assert link.hello(2.0)["hello"] == "openmind"


def test_device_errors_are_named_and_the_device_recovers(vdev):
    with Link(vdev.port) as link:
        with pytest.raises(DeviceError, match="args") as err:
            link.command("STREAM temperature 5000", 2.0)   # above its max_rate_hz
        assert err.value.code == "args"
        with pytest.raises(DeviceError, match="unknown"):
            link.command("FROB", 2.0)
        with pytest.raises(DeviceError, match="nomodel"):
            link.predict([1.0, 2.0])
        link.ser.write(b"\x00\xff" * 400 + b"\n")  # binary flood, overlong
        with pytest.raises(DeviceError, match="size"):
            link.command("", 2.0)
        assert link.hello(2.0)["proto"] == 2


def test_unplug_mid_stream_keeps_samples_and_closes_cleanly(vdev):
    link = Link(vdev.port)
    link.hello(2.0)
    vdev.kill_after(0.4)
    t0 = time.perf_counter()
    cap = link.capture("temperature", 50, 500, timeout=2.0)
    assert time.perf_counter() - t0 < 4.0
    assert 5 <= cap.received < 500 and not cap.complete
    assert "lost" in cap.error or "silent" in cap.error
    assert np.array_equal(cap.n, np.arange(cap.received))
    link.close()
    link.close()  # closing twice is harmless
    assert wait_until(lambda: vdev.proc.poll() is not None)


def test_silent_port_is_not_an_openmind_device(tmp_path):
    import os
    import pty

    master, slave = pty.openpty()
    try:
        with pytest.raises(DeviceError, match="not an openmind device"):
            hello_on(os.ttyname(slave), timeout=0.3)
    finally:
        os.close(master)
        os.close(slave)


def test_float32_text_round_trips():
    rng = np.random.default_rng(0)
    for v in np.concatenate([rng.normal(size=200) * 10.0 ** rng.integers(-8, 8, 200), [0, 16, -0.5]]):
        f = np.float32(v)
        assert np.float32(float32_text(f)) == f
    with pytest.raises(DeviceError):
        float32_text(float("nan"))
