"""The shared HTTP layer and the OIP client against real servers on 127.0.0.1: retries, Retry-After,
no retry on 4xx, read timeouts, connection refused and the per-endpoint cooldown. Every test runs on
both lanes: pooled http.client (plain HTTP, no proxy) and httpx (HTTPS and proxied calls)."""

from __future__ import annotations

import base64
import socket
import threading
import time

import numpy as np
import pytest

from openmind.pathways.cloud import http
from openmind.pathways.cloud.http import EndpointError, request
from openmind.pathways.cloud.oip import OIPClient
from tests.fake_llm import Scripted, closed_port

FAST = {"timeout": 2.0, "backoff": 0.01, "max_wait": 2.0}
DIRECT = http._direct  # the lane choice itself (the "httpx" lane replaces it)


@pytest.fixture(autouse=True, params=["direct", "httpx"])
def lane(request, monkeypatch):
    """Both transports behave the same; "httpx" forces the lane HTTPS and proxied URLs take."""
    if request.param == "httpx":
        monkeypatch.setattr(http, "_direct", lambda *args: False)
    http.reset()
    yield request.param
    http.reset()


@pytest.fixture
def srv():
    with Scripted() as s:
        yield s


def test_5xx_is_retried_until_it_works(srv):
    srv.script("/x", ("json", 500, {"error": "boom"}), ("json", 502, {"error": "gateway"}))
    resp = request("GET", f"{srv.url}/x", retries=2, **FAST)
    assert resp.json() == {"ok": True}
    assert len(srv.calls("/x")) == 3


def test_5xx_gives_up_after_the_retries_with_the_status(srv):
    srv.script("/x", *[("json", 503, {"error": "down for maintenance"})] * 5)
    with pytest.raises(EndpointError) as err:
        request("GET", f"{srv.url}/x", retries=1, **FAST)
    assert err.value.status == 503
    assert "down for maintenance" in str(err.value) and "after 2 attempts" in str(err.value)
    assert len(srv.calls("/x")) == 2


def test_429_honours_retry_after(srv):
    srv.script("/x", ("json", 429, {"error": "slow down"}, {"Retry-After": "1"}))
    t0 = time.monotonic()
    resp = request("GET", f"{srv.url}/x", retries=2, **FAST)
    assert resp.status_code == 200
    assert time.monotonic() - t0 >= 0.9  # waited what the server asked, not the 10 ms backoff
    assert len(srv.calls("/x")) == 2


def test_retry_after_beyond_max_wait_fails_at_once_and_benches_the_endpoint(srv):
    srv.script("/x", ("json", 429, {"error": "quota"}, {"Retry-After": "30"}))
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="retry after 30s"):
        request("GET", f"{srv.url}/x", retries=3, **FAST)
    assert time.monotonic() - t0 < 1.0
    assert http.cooldown_left(srv.url) > 25
    with pytest.raises(EndpointError) as err:
        request("GET", f"{srv.url}/x", retries=3, **FAST)
    assert err.value.cooling and len(srv.calls("/x")) == 1


@pytest.mark.parametrize("status", [400, 401, 404, 422])
def test_other_4xx_is_never_retried(srv, status):
    srv.script("/x", ("json", status, {"error": {"message": "nope"}}))
    with pytest.raises(EndpointError) as err:
        request("GET", f"{srv.url}/x", retries=3, **FAST)
    assert err.value.status == status and "nope" in str(err.value)
    assert len(srv.calls("/x")) == 1
    assert http.cooldown_left(srv.url) == 0  # a refusal is not a dead endpoint


def test_read_timeout_is_not_retried(srv):
    srv.script("/x", ("hang", 5))
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="no answer within 0.3s"):
        request("GET", f"{srv.url}/x", retries=3, timeout=0.3, backoff=0.01)
    assert time.monotonic() - t0 < 1.5
    assert len(srv.calls("/x")) == 1


def test_dead_endpoint_cools_down_and_then_costs_nothing():
    url = f"http://127.0.0.1:{closed_port()}"
    # every failed attempt counts: one call that tried twice reaches cooldown_after=2
    with pytest.raises(EndpointError, match="cannot connect") as err:
        request("GET", url + "/v2/health/ready", retries=1, cooldown_after=2, cooldown=0.5, **FAST)
    assert not err.value.cooling
    t0 = time.monotonic()
    with pytest.raises(EndpointError, match="cooling down") as err:
        request("GET", url + "/v2/models/m/infer", retries=1, cooldown_after=2, cooldown=0.5, **FAST)
    assert err.value.cooling and time.monotonic() - t0 < 0.05
    time.sleep(0.6)  # after the cooldown the endpoint is tried again
    with pytest.raises(EndpointError, match="cannot connect"):
        request("GET", url, retries=0, cooldown_after=2, cooldown=0.5, **FAST)


def test_success_clears_the_failure_count(srv):
    srv.script("/x", ("json", 500, {}), ("json", 500, {}))
    for _ in range(2):
        with pytest.raises(EndpointError):
            request("GET", f"{srv.url}/x", retries=0, cooldown_after=2, **FAST)
        request("GET", f"{srv.url}/y", retries=0, cooldown_after=2, **FAST)
    assert http.cooldown_left(srv.url) == 0


def test_a_token_echoed_by_the_server_is_scrubbed(srv):
    srv.script("/v2/models/m/infer", ("echo_auth", 403))
    client = OIPClient(srv.url, token="tok-very-secret-123", retries=0)
    with pytest.raises(EndpointError) as err:
        client.infer("m", np.zeros((1, 2)))
    assert "tok-very-secret-123" not in str(err.value) and "***" in str(err.value)
    sent = srv.calls("/v2/models/m/infer")[0]["headers"]["Authorization"]
    assert sent == "Bearer tok-very-secret-123"


def test_oip_client_decodes_typed_outputs_and_rejects_a_malformed_answer(srv):
    srv.script("/v2/models/m/infer",
               ("json", 200, {"model_name": "m", "outputs": [
                   {"name": "label", "shape": [2], "datatype": "INT64", "data": [3, 1]},
                   {"name": "probabilities", "shape": [2, 2], "datatype": "FP32", "data": [0.1, 0.9, 0.8, 0.2]}]}),
               ("json", 200, {"outputs": [{"name": "label", "shape": [3], "datatype": "INT64", "data": [1]}]}))
    client = OIPClient(srv.url, retries=0)
    out = client.infer("m", np.ones((2, 2), np.float32))
    assert out["label"].tolist() == [3, 1] and out["probabilities"].shape == (2, 2)
    sent = srv.calls("/v2/models/m/infer")[0]["body"]["inputs"][0]
    assert sent == {"name": "input-0", "shape": [2, 2], "datatype": "FP32", "data": [1.0] * 4}
    with pytest.raises(EndpointError, match="needs 3 elements"):
        client.infer("m", np.ones((2, 2), np.float32))


def test_the_direct_lane_is_plain_http_that_no_proxy_covers():
    none = (None,) * len(http.PROXY_VARS)
    assert DIRECT("http", "127.0.0.1", none) and DIRECT("http", "gpu-box.lan", none)
    assert not DIRECT("https", "127.0.0.1", none)  # certificates: httpx
    proxied = ("http://proxy:3128",) + (None,) * (len(http.PROXY_VARS) - 1)
    assert not DIRECT("http", "gpu-box.lan", proxied)  # the proxy: httpx
    bypassed = proxied[:4] + ("gpu-box.lan,localhost", None)
    assert DIRECT("http", "gpu-box.lan", bypassed) and not DIRECT("http", "api.example", bypassed)


def _closes_every_second_request() -> tuple[socket.socket, list[int]]:
    """A keep-alive server that answers the first request on a connection and drops the
    connection, unanswered, on the second: what a peer's idle timeout looks like to a client."""
    lsock = socket.create_server(("127.0.0.1", 0))
    seen: list[int] = []

    def handle(conn: socket.socket) -> None:
        with conn:
            for n in (1, 2):
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                seen.append(n)
                if n == 2:
                    return
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 12\r\n\r\n"
                             b'{"ok": true}')

    def accept() -> None:
        while True:
            try:
                conn, _ = lsock.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return lsock, seen


def test_a_kept_connection_the_peer_dropped_is_replaced_once(lane):
    if lane == "httpx":
        pytest.skip("httpx sends a request once: a kept connection dropped under it is an error there")
    lsock, seen = _closes_every_second_request()
    url = f"http://127.0.0.1:{lsock.getsockname()[1]}/x"
    try:
        assert request("GET", url, retries=0, **FAST).status_code == 200
        # the pooled connection is dropped on the next request: it is sent again on a new one
        assert request("GET", url, retries=0, **FAST).status_code == 200
        assert seen == [1, 2, 1]
    finally:
        lsock.close()


def test_a_password_in_the_url_is_sent_as_basic_auth_and_shown_nowhere(srv):
    srv.script("/x", ("json", 500, {"error": "boom"}))
    url = srv.url.replace("http://", "http://ada:s3cr%40t-pw@") + "/x"
    with pytest.raises(EndpointError) as err:
        request("GET", url, retries=0, **FAST)
    assert "s3cr" not in str(err.value)
    request("GET", url, retries=0, **FAST)
    sent = [c["headers"]["Authorization"] for c in srv.calls("/x")]
    assert sent == ["Basic " + base64.b64encode(b"ada:s3cr@t-pw").decode()] * 2


@pytest.mark.parametrize("outputs, said", [
    ([{"name": "label", "shape": [2], "datatype": "FP32", "data": [float("nan"), 1.0]}],
     "output 'label' holds 1 non-finite value"),
    ([{"name": "label", "shape": [2], "datatype": "INT64", "data": [3, 1]},
      {"name": "probabilities", "shape": [2, 2], "datatype": "FP32",
       "data": [0.1, float("inf"), 0.8, float("-inf")]}],
     "output 'probabilities' holds 2 non-finite value"),
])
def test_an_answer_with_nan_or_infinite_values_is_refused_like_a_short_one(srv, outputs, said):
    """The server sends what Python's json writes for them (NaN, Infinity): not an answer, and
    the endpoint's failure counts as for a short answer."""
    srv.script("/v2/models/m/infer", ("json", 200, {"outputs": outputs}))
    client = OIPClient(srv.url, retries=0, cooldown_after=1)
    with pytest.raises(EndpointError, match=f"malformed answer: {said}"):
        client.infer("m", np.ones((2, 2), np.float32))
    assert http.cooldown_left(srv.url) > 0
