"""Hostile peers and bad input, one behaviour each: names, ragged rows, signals with gaps, benched
ports and endpoints, the serve bind rule. (The matrix of all of them is tests/test_chaos.py.)"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import openmind
from openmind import BadInput
from openmind.pathways import device
from openmind.pathways.cloud import http
from openmind.pathways.cloud.oip import OIPClient
from openmind.vocab import NAME_MAX, check_name
from tests.fake_llm import Scripted
from tests.hostile_device import HostileDevice

X = np.random.default_rng(0).normal(size=(30, 3))
Y = np.arange(30) % 2


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["../evil", "a/b", "a\\b", "a\x00b", "../../etc/passwd", "..", ".", "",
                                  "x" * (NAME_MAX + 1), "a b", "ü", None, 3])
def test_bad_model_names_are_refused_by_every_intent(name):
    with pytest.raises(BadInput, match="name"):
        openmind.train_or_load(name, X, Y, epochs=1, progress=False)
    with pytest.raises(BadInput, match="name"):
        openmind.infer_adaptive(name, X)
    with pytest.raises(BadInput, match="signal"):
        openmind.sense_or_simulate(name, "1s", "1Hz")
    assert openmind.journal(5) == []  # refused before anything was routed or stored


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=120))
def test_check_name_accepts_only_short_labels(text):
    try:
        check_name(text)
    except BadInput:
        return
    assert 1 <= len(text) <= NAME_MAX and set(text) != {"."}
    assert all(c.isascii() and (c.isalnum() or c in "-_.") for c in text)


def test_ragged_and_object_rows_name_the_row():
    with pytest.raises(BadInput, match="row 2"):
        openmind.train_or_load("ragged", [[1, 2], [3, 4], [5], [6, 7]], [0, 1, 0, 1], progress=False)
    with pytest.raises(BadInput, match="row 1, column 0"):
        openmind.train_or_load("objects", np.array([[1, 2], [{}, 4]], dtype=object), [0, 1], progress=False)
    with pytest.raises(BadInput, match="row 1"):
        openmind.infer_adaptive("m", [[1.0, 2.0], [3.0]])


# --------------------------------------------------------------------------- device


def _sense(port: str, monkeypatch, **kw):
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", port)
    monkeypatch.setenv("OPENMIND_PROBE_TIMEOUT", "0.4")
    return openmind.sense_or_simulate("temperature", "0.2s", "100Hz", timeout=0.4, progress=False, **kw)


def test_a_device_that_drops_samples_gives_every_asked_sample_with_the_gaps_marked(monkeypatch):
    with HostileDevice("drops") as dev:
        sig = _sense(dev.port, monkeypatch)
    assert len(sig) == len(sig.times) == len(sig.real) == 20
    assert sig.source == "hardware+simulated" and sig.route.pathway.value == "hardware_in_loop"
    assert not sig.real[3::4].any() and sig.real_count == 15  # every 4th lost in transit
    assert np.isfinite(sig.values).all() and "simulated" in sig.note and "Signal.real" in sig.note
    assert np.allclose(np.diff(sig.times), 0.01, atol=1e-5)


def test_a_bit_flipped_sequence_number_is_a_lost_sample_not_a_billion(monkeypatch):
    with HostileDevice("bitflip") as dev:
        sig = _sense(dev.port, monkeypatch)
    assert len(sig) == 20 and sig.lost == 2 and sig.real_count == 18
    assert not sig.real[3] and not sig.real[7]
    assert sig.times[-1] - sig.times[0] < 0.2  # not 10^8 s


def test_a_flooding_port_is_benched_so_the_repeated_call_is_free(monkeypatch):
    with HostileDevice("flood") as dev:
        t0 = time.perf_counter()
        with pytest.raises(device.DeviceError, match="floods"):
            device.hello_on(dev.port, timeout=2.0)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        with pytest.raises(device.DeviceError, match="benched"):
            device.hello_on(dev.port, timeout=2.0)
        assert first < 1.0 and time.perf_counter() - t0 < 0.05
        assert device.bench_left(dev.port)[0] > 10


def test_a_silent_port_costs_its_timeout_once(monkeypatch):
    with HostileDevice("silent") as dev:
        with pytest.raises(device.DeviceError, match="no HELLO answer"):
            device.hello_on(dev.port, timeout=0.3)
        t0 = time.perf_counter()
        with pytest.raises(device.DeviceError, match="benched"):
            device.hello_on(dev.port, timeout=0.3)
        assert time.perf_counter() - t0 < 0.05


# --------------------------------------------------------------------------- endpoints


def test_a_hanging_endpoint_is_benched_and_a_404_does_not_reset_it():
    http.reset()
    with Scripted() as srv:
        srv.script("/v2/models/m/infer", ("hang", 5))
        client = OIPClient(srv.url, retries=0, timeout=0.3)
        with pytest.raises(http.EndpointError, match="no answer within 0.3s"):
            client.infer("m", np.ones((2, 2)))
        assert http.cooldown_left(srv.url) > 20  # a timeout benches at once
        t0 = time.perf_counter()
        with pytest.raises(http.EndpointError, match="cooling down") as err:
            client.infer("m", np.ones((2, 2)))
        assert err.value.cooling and time.perf_counter() - t0 < 0.05
    http.reset()
    with Scripted() as srv:
        srv.script("/v2/models/m/infer", ("json", 500, {"error": "x"}))
        srv.script("/v2/models/m/ready", *[("json", 404, {"error": "no"})] * 3)
        client = OIPClient(srv.url, retries=0, timeout=0.3, cooldown_after=2)
        with pytest.raises(http.EndpointError, match="HTTP 500"):
            client.infer("m", np.ones((2, 2)))
        assert client.model_ready("m") is False  # a 404: the failure count stands
        srv.script("/v2/models/m/infer", ("json", 500, {"error": "x"}))
        with pytest.raises(http.EndpointError, match="HTTP 500"):
            client.infer("m", np.ones((2, 2)))
        assert http.cooldown_left(srv.url) > 20  # two failures in a row despite the 404 between


def test_one_prediction_for_five_rows_is_refused_and_counted():
    http.reset()
    with Scripted() as srv:
        srv.script("/v2/models/m/infer", ("json", 200, {"outputs": [
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]}]}))
        client = OIPClient(srv.url, retries=0, cooldown_after=1)
        with pytest.raises(http.EndpointError, match="1 predictions for the 5 rows"):
            client.infer("m", np.ones((5, 2)))
        assert http.cooldown_left(srv.url) > 0


# --------------------------------------------------------------------------- serve bind rule


@pytest.mark.parametrize("host", ["0.0.0.0", "::", ""])
def test_serve_refuses_every_interface_without_a_token(host, monkeypatch, tmp_path):
    monkeypatch.delenv("OPENMIND_SERVE_TOKEN", raising=False)
    out = subprocess.run([sys.executable, "-m", "openmind.cli", "serve", "--host", host, "--port", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "refusing to listen" in out.stderr and "--insecure" in out.stderr
    assert "Traceback" not in out.stderr


def test_serve_bind_rule():
    from openmind.serve import check_bind, is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "example.org", "10.0.0.1"))
    check_bind("0.0.0.0", "tok", False)
    check_bind("0.0.0.0", None, True)
    with pytest.raises(BadInput, match="OPENMIND_SERVE_TOKEN"):
        check_bind("::", None, False)
