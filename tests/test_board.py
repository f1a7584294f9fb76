"""A bare laptop still runs the hardware-in-loop pathway: no board answers, so the firmware's
virtual device (its host build on a real pty) starts and is read over the real protocol."""

from __future__ import annotations

import os

import pytest

import openmind
from openmind.intents.board import board_or_virtual


@pytest.fixture
def board(vdev_binary):  # vdev_binary: built once per session by make
    b = board_or_virtual()
    yield b
    b.close()


def test_no_board_starts_the_virtual_device_and_says_so(board):
    assert board.virtual and board.port and os.environ["OPENMIND_SERIAL_PORT"] == board.port
    assert "virtual device" in repr(board) and board.port in repr(board)
    assert board_or_virtual() is board  # one per process
    first = openmind.sense_or_simulate("temperature", duration="5s", rate="50Hz", progress=False)
    second = openmind.sense_or_simulate("temperature", duration="5s", rate="50Hz", progress=False)
    assert first.route.pathway.value == second.route.pathway.value == "hardware_in_loop"
    assert first.real_count == 250 and first.source == "hardware"
    # ebb and flow: the second capture is compared with the pattern fitted on the first
    d1, d2 = first.calibration["distance_before"], second.calibration["distance_before"]
    assert d2 < d1, (d1, d2)


def test_closing_the_virtual_board_gives_the_port_back(vdev_binary):
    b = board_or_virtual()
    b.close()
    assert "OPENMIND_SERIAL_PORT" not in os.environ
    assert not openmind.probe(refresh=True).serial.available


def test_the_virtual_device_goes_when_the_process_that_started_it_is_killed(vdev_binary, tmp_path):
    """A notebook's kernel killed mid-session (or shut down without closing the board) must not
    leave its virtual device running: the device watches its parent."""
    import signal
    import subprocess
    import sys

    import psutil

    starter = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\n"
        "from openmind.pathways.vdev import VirtualDevice\n"
        f"d = VirtualDevice({str(vdev_binary)!r})\n"
        "print(d.proc.pid, flush=True)\n"
        "time.sleep(60)\n")], stdout=subprocess.PIPE, text=True, env={**os.environ, "OPENMIND_HOME": str(tmp_path)})
    device = psutil.Process(int(starter.stdout.readline()))
    assert device.is_running()
    os.kill(starter.pid, signal.SIGKILL)  # no atexit, no close(): only the device can notice
    starter.wait(5)
    device.wait(timeout=3)  # psutil.TimeoutExpired if it outlives its parent
    starter.stdout.close()
