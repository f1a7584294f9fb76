"""`openmind serve` as a real process on 127.0.0.1, queried by this (second) process."""

from __future__ import annotations

import ipaddress
import json
import socket
import time

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openmind.pathways.cloud import http
from openmind.pathways.cloud.oip import OIPClient
from openmind.serve import ServeProcess
from openmind.vocab import Decision, Pathway
from tests.cloud_fixtures import store_digits_model

TOKEN = "serve-token-4f9a1c"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """One server for the module (starting a process costs ~1 s on this machine)."""
    home = tmp_path_factory.mktemp("serve-home")
    mp = pytest.MonkeyPatch()
    mp.setenv("OPENMIND_HOME", str(home))
    X, model = store_digits_model()
    mp.undo()
    with ServeProcess(home=home, token=TOKEN, max_body=256 * 1024) as srv:
        yield srv, X, model


@pytest.fixture(autouse=True)
def _fresh_endpoints():
    http.reset()
    yield


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_and_metadata(served):
    srv, X, model = served
    assert srv.url.startswith("http://127.0.0.1:")
    c = OIPClient(srv.url, token=TOKEN, retries=0)
    assert c.live() and c.ready() and c.model_ready("digits")
    assert not c.model_ready("nope")
    assert c.server_metadata()["name"] == "openmind"
    meta = c.model_metadata("digits")
    assert meta["inputs"][0]["shape"] == [-1, 64]
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]
    assert meta["outputs"][1]["shape"] == [-1, 10]


def test_the_model_list_answers_the_served_names_as_kserve_does(served):
    """GET /v2/models: KServe's `{"models": [names]}` (it was a 404), described in the API."""
    srv, *_ = served
    for path in ("/v2/models", "/v2/models/"):
        r = httpx.get(srv.url + path, headers=auth(), timeout=5)
        assert r.status_code == 200 and r.json() == {"models": ["digits"]}
    assert httpx.get(srv.url + "/v2/models", timeout=5).status_code == 401  # the token still holds
    spec = httpx.get(srv.url + "/v2/openapi.json", timeout=5).json()
    answer = spec["paths"]["/v2/models"]["get"]["responses"]["200"]["content"]["application/json"]
    schema = spec["components"]["schemas"][answer["schema"]["$ref"].rpartition("/")[2]]
    assert schema["properties"]["models"] == {"type": "array", "items": {"type": "string"}}


@pytest.mark.parametrize("path", ["/v2/health/ready", "/v2", "/v2/models", "/v2/models/digits",
                                  "/v2/models/digits/infer", "/v2/anything"])
@pytest.mark.parametrize("token", [None, "wrong-token"])
def test_every_route_needs_the_token(served, path, token):
    srv, *_ = served
    headers = auth(token) if token else {}
    method = "POST" if path.endswith("infer") else "GET"
    r = httpx.request(method, srv.url + path, headers=headers, content=b"{}", timeout=5)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/json") and "error" in r.json()
    assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("host", ["attacker.example", "attacker.example:8000", "127.0.0.1.nip.io",
                                  "localhost.attacker.example", ""])
def test_a_foreign_host_header_is_refused_before_anything_else(served, host):
    """DNS rebinding: a web page whose name resolves to 127.0.0.1 sends its own name as Host.
    Refused (403, JSON) before the token is even looked at, on every route."""
    srv, *_ = served
    for path in ("/v2/models/digits", "/v2/openapi.json", "/v2/models/digits/infer"):
        method = "POST" if path.endswith("infer") else "GET"
        r = httpx.request(method, srv.url + path, headers={**auth(), "Host": host}, content=b"{}",
                          timeout=5)
        assert r.status_code == 403, (path, r.text)
        assert r.headers["content-type"].startswith("application/json")
        assert "--allowed-hosts" in r.json()["error"] and "digits" not in r.text


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "LOCALHOST:80", "127.0.0.2", "[::1]:8000"])
def test_loopback_host_headers_are_answered(served, host):
    srv, *_ = served
    r = httpx.get(srv.url + "/v2/models/digits", headers={**auth(), "Host": host}, timeout=5)
    assert r.status_code == 200 and r.json()["name"] == "digits"


def test_allowed_hosts_adds_names(tmp_path):
    with ServeProcess(home=tmp_path, allowed_hosts="gpu-box.lan,Other.Example") as srv:
        ok = [httpx.get(srv.url + "/v2/health/live", headers={"Host": h}, timeout=5).status_code
              for h in ("gpu-box.lan:8000", "other.example", "localhost", "attacker.example")]
    assert ok == [200, 200, 200, 403]


def test_served_predictions_equal_local_ones(served):
    srv, X, model = served
    c = OIPClient(srv.url, token=TOKEN, retries=0)
    batch = X[:300]
    out = c.infer("digits", batch)
    local_labels, local_proba, _ = model.predict(batch)
    assert out["label"].dtype == np.int64
    np.testing.assert_array_equal(out["label"], local_labels)
    np.testing.assert_allclose(out["probabilities"], local_proba, rtol=1e-6, atol=1e-7)
    assert len(set(out["label"].tolist())) > 1  # a real classifier, not a constant
    only = c.infer("digits", X[:3], outputs=["label"])
    assert list(only) == ["label"]


def test_infer_adaptive_from_another_home_goes_to_the_cloud(served, monkeypatch):
    import openmind

    srv, X, model = served
    monkeypatch.setenv("OPENMIND_INFER_URL", srv.url)
    monkeypatch.setenv("OPENMIND_INFER_TOKEN", TOKEN)
    pred = openmind.infer_adaptive("digits", X[:50])
    assert pred.route.pathway is Pathway.CLOUD_INFERENCE and pred.route.decision is Decision.HARDCODE
    np.testing.assert_array_equal(pred.values, model.predict(X[:50])[0])
    rec = openmind.journal(1)[0]
    assert rec["pathway"] == "cloud_inference" and rec["ok"]
    assert TOKEN not in json.dumps(rec)


def _post(srv, body: bytes, name: str = "digits", headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{srv.url}/v2/models/{name}/infer", content=body,
                      headers={**auth(), **(headers or {})}, timeout=10)


def _tensor(**over):
    t = {"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": [0.0] * 64}
    t.update(over)
    return t


BAD = {
    "not json": (b"{nope", 400, "not valid JSON"),
    "not an object": (b"[1, 2]", 400, "JSON object"),
    "no inputs": (b"{}", 400, "exactly one tensor"),
    "two inputs": (json.dumps({"inputs": [_tensor(), _tensor()]}).encode(), 400, "exactly one"),
    "unknown datatype": (json.dumps({"inputs": [_tensor(datatype="FP128")]}).encode(), 400, "unknown datatype"),
    "count mismatch": (json.dumps({"inputs": [_tensor(shape=[2, 64])]}).encode(), 400, "needs 128 elements"),
    "wrong width": (json.dumps({"inputs": [_tensor(shape=[2, 32])]}).encode(), 400, "expects [rows, 64]"),
    "negative shape": (json.dumps({"inputs": [_tensor(shape=[-1, 64])]}).encode(), 400, "non-negative"),
    "strings as FP32": (json.dumps({"inputs": [_tensor(data=["a"] * 64)]}).encode(), 400, "does not fit"),
    "BYTES input": (json.dumps({"inputs": [_tensor(datatype="BYTES", data=["a"] * 64)]}).encode(), 400, "numbers"),
    "NaN": (json.dumps({"inputs": [_tensor(data=[float("nan")] * 64)]}).encode(), 400, "NaN"),
    "unknown output": (json.dumps({"inputs": [_tensor()], "outputs": [{"name": "logits"}]}).encode(), 400, "unknown output"),
    "huge shape": (json.dumps({"inputs": [_tensor(shape=[10**9, 64])]}).encode(), 400, "exceed the limit"),
    "numeric id": (json.dumps({"inputs": [_tensor()], "id": 5}).encode(), 400, "id must be a string"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_malformed_requests_get_a_4xx_json_error(served, case):
    srv, *_ = served
    body, status, text = BAD[case]
    r = _post(srv, body)
    assert r.status_code == status, r.text
    assert text in r.json()["error"]


def test_unknown_model_is_404_naming_what_is_served(served):
    srv, *_ = served
    r = _post(srv, json.dumps({"inputs": [_tensor()]}).encode(), name="nope")
    assert r.status_code == 404 and "digits" in r.json()["error"]


def test_oversized_body_is_refused_with_413_json(served):
    srv, *_ = served
    r = _post(srv, b"x" * (2 * 2**20))  # 2 MiB against a 256 KiB limit: refused unread
    assert r.status_code == 413 and "exceeds the limit" in r.json()["error"]
    r = _post(srv, b"x" * (300 * 1024), headers={"Transfer-Encoding": "chunked"})
    assert r.status_code in (400, 413)


def test_a_stalled_client_does_not_block_others(served):
    srv, X, _ = served
    port = int(srv.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
                  "Content-Length: 100000\r\n\r\n{".encode())
        t0 = time.monotonic()
        out = OIPClient(srv.url, token=TOKEN, retries=0, timeout=5).infer("digits", X[:2])
        assert time.monotonic() - t0 < 2 and out["label"].shape == (2,)


def test_a_body_that_does_not_come_in_time_is_refused_with_408(tmp_path):
    with ServeProcess(home=tmp_path, body_timeout=0.5) as srv:
        port = int(srv.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"POST /v2/models/digits/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n\r\n{")
            t0 = time.monotonic()
            answer = b""
            while not answer.endswith(b"}"):
                chunk = s.recv(4096)
                assert chunk, answer
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408") and 0.4 < time.monotonic() - t0 < 3
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["error"].startswith("request body not received within 0.5 s")
        assert OIPClient(srv.url, retries=0).live()  # the server goes on


def test_workers_share_the_port_keep_the_token_and_leave_with_the_server(tmp_path, monkeypatch):
    import psutil

    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path))
    X, model = store_digits_model()
    with ServeProcess(home=tmp_path, token=TOKEN, workers=2) as srv:
        deadline = time.monotonic() + 30
        while len(kids := psutil.Process(srv.proc.pid).children(recursive=True)) < 2:
            assert time.monotonic() < deadline, "the two workers did not start"
            time.sleep(0.1)
        for _ in range(6):  # new connections: the kernel hands them to either worker
            r = httpx.post(f"{srv.url}/v2/models/digits/infer", headers=auth(), timeout=30,
                           json={"inputs": [_tensor(data=X[0].tolist())]})
            assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [int(model.predict(X[:1])[0][0])]
            assert httpx.get(f"{srv.url}/v2/health/ready", timeout=30).status_code == 401
    gone, alive = psutil.wait_procs(kids, timeout=10)
    assert not alive, "a worker outlived `openmind serve`"


def test_small_work_is_answered_on_the_event_loop_big_work_in_a_worker(tmp_path, monkeypatch):
    """A thread hop costs more than a digits model at batch 256; a request over INLINE_WORK goes to
    a worker thread. Both answer what the model computes in-process."""
    from openmind.intents.infer import load_local_model
    from openmind.serve import INLINE_WORK, inline

    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path))
    X, _ = store_digits_model()
    local = load_local_model("digits")
    per_row = 4 * local.n_inputs  # FP32 binary rows
    big_rows = INLINE_WORK // local.work(1) + 1
    assert inline(local, 256 * per_row) and not inline(local, big_rows * per_row)
    assert inline(None, 1024) and not inline(None, 1 << 20)  # no such model: only a small 404 inline
    rows = np.resize(X, (big_rows, X.shape[1])).astype(np.float32)
    with ServeProcess(home=tmp_path) as srv:
        client = OIPClient(srv.url, retries=0, timeout=60)
        for batch in (rows[:256], rows):  # on the event loop, then in a worker thread
            np.testing.assert_array_equal(client.infer("digits", batch)["label"], local.predict(batch)[0])
        assert client.live()


def test_the_description_is_generated_from_the_served_routes():
    """/v2/openapi.json describes exactly the described rows of the routes' table, each one a route
    the app answers with that method; a row added to the table is described with the refusals its
    shape allows, and the documents' fields become the schemas."""
    from starlette.routing import Match

    from openmind.pathways.cloud.tensors import DATATYPES
    from openmind.serve import OPERATIONS, documents, make_app, openapi_spec
    from openmind.serve.openapi import Operation, describe
    from openmind.serve.routes import MODEL

    spec = openapi_spec()
    described = {(path, method.upper()) for path, ops in spec["paths"].items() for method in ops}
    assert described == {(op.path, op.method) for op in OPERATIONS if op.operation_id}
    assert len(described) == 10
    routes = make_app().routes
    for path, method in described:
        concrete = path.replace("{model_name}", "digits").replace("{model_version}", "1")
        scope = {"type": "http", "path": concrete, "method": method, "root_path": ""}
        assert any(r.matches(scope)[0] == Match.FULL for r in routes), (path, method)
    explain = Operation(MODEL + "/explain", "POST", "infer", operation_id="modelExplain",
                        answers=documents.InferenceResponse, reads=documents.InferenceRequest)
    grown = describe((*OPERATIONS, explain))["paths"][MODEL + "/explain"]["post"]
    assert set(grown["responses"]) == {"200", "400", "401", "404", "408", "413", "503"}
    assert [p["name"] for p in grown["parameters"]] == ["model_name"]
    assert set(spec["paths"]["/v2/health/live"]["get"]["responses"]) == {"200", "401"}
    tensor = spec["components"]["schemas"]["RequestInput"]["properties"]
    assert tensor["datatype"]["enum"] == list(DATATYPES) and tensor["shape"]["items"]["minimum"] == 0


def test_server_survived_everything_and_logged_no_token(served):
    srv, X, _ = served
    assert OIPClient(srv.url, token=TOKEN, retries=0).ready()
    assert srv.proc.poll() is None
    log = srv.log()
    assert TOKEN not in log
    assert "Traceback" not in log


# ----------------------------------------------------------------- binary tensor data extension


def test_tritonclient_with_default_settings_round_trips(served):
    """Triton's own HTTP client sends and asks for binary tensor data by default."""
    import tritonclient.http as triton

    srv, X, model = served
    client = triton.InferenceServerClient(srv.url.removeprefix("http://"))
    try:
        assert client.is_server_live(headers=auth()) and client.is_model_ready("digits", headers=auth())
        meta = client.get_model_metadata("digits", headers=auth())
        spec = meta["inputs"][0]
        assert spec["datatype"] == "FP32" and spec["shape"] == [-1, 64]
        rows = X[:40].astype(np.float32)
        inp = triton.InferInput(spec["name"], list(rows.shape), spec["datatype"])
        inp.set_data_from_numpy(rows)  # binary_data=True is the default
        result = client.infer("digits", [inp], headers=auth())
        labels, proba, _ = model.predict(rows)
        np.testing.assert_array_equal(result.as_numpy("label"), labels)
        np.testing.assert_array_equal(result.as_numpy("probabilities"), proba)
        asked = [triton.InferRequestedOutput("probabilities", binary_data=False)]
        json_only = client.infer("digits", [inp], outputs=asked, headers=auth())
        np.testing.assert_allclose(json_only.as_numpy("probabilities"), proba, rtol=1e-6)
    finally:
        client.close()


def test_openmind_client_speaks_binary_when_the_server_does(served):
    srv, X, model = served
    c = OIPClient(srv.url, token=TOKEN, retries=0)
    assert c.binary_supported()
    assert c.declared_inputs("digits")[0]["name"] == "input-0"
    binary = c.infer("digits", X[:64])
    text = c.infer("digits", X[:64], binary=False)
    for k in ("label", "probabilities"):
        np.testing.assert_array_equal(binary[k], text[k])
    assert binary["label"].dtype == np.int64


def _binary_body(rows: np.ndarray, size: int | None = None, extra: bytes = b"") -> tuple[bytes, dict]:
    raw = rows.astype("<f4").tobytes()
    head = json.dumps({"inputs": [{"name": "x", "shape": list(rows.shape), "datatype": "FP32",
                                   "parameters": {"binary_data_size": len(raw) if size is None else size}}]}).encode()
    return head + raw + extra, {"Inference-Header-Content-Length": str(len(head))}


@pytest.mark.parametrize("case", ["short size", "trailing bytes", "header past the body", "header not a number"])
def test_malformed_binary_requests_get_a_4xx(served, case):
    srv, X, _ = served
    rows = X[:2]
    body, headers = _binary_body(rows, size=100 if case == "short size" else None,
                                 extra=b"\0" * 8 if case == "trailing bytes" else b"")
    if case == "header past the body":
        headers["Inference-Header-Content-Length"] = str(len(body) + 1)
    if case == "header not a number":
        headers["Inference-Header-Content-Length"] = "many"
    r = _post(srv, body, headers=headers)
    assert r.status_code == 400, r.text
    assert r.json()["error"]


def test_binary_request_with_a_json_answer(served):
    srv, X, model = served
    body, headers = _binary_body(X[:3])
    r = _post(srv, body, headers=headers)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    out = {t["name"]: t for t in r.json()["outputs"]}
    assert out["label"]["data"] == model.predict(X[:3])[0].tolist()


def test_infer_adaptive_sends_the_input_the_served_model_declares(monkeypatch):
    """A KServe-like server (JSON only, no binary extension) that accepts only its declared input."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import openmind

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):  # noqa: N802
            if self.path == "/v2":
                self._send(200, {"name": "kserve-like", "extensions": []})
            elif self.path.endswith("/ready"):
                self._send(200, {"ready": True})
            else:
                self._send(200, {"name": "remote", "inputs": [{"name": "pixels", "datatype": "FP64",
                                                               "shape": [-1, 3]}], "outputs": []})

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.headers.get("Inference-Header-Content-Length"), body["inputs"][0]))
            t = body["inputs"][0]
            if t["name"] != "pixels" or t["datatype"] != "FP64":
                return self._send(400, {"error": f"unexpected input {t['name']} {t['datatype']}"})
            rows = np.asarray(t["data"], float).reshape(t["shape"])
            self._send(200, {"outputs": [{"name": "label", "shape": [len(rows)], "datatype": "INT64",
                                          "data": (rows.sum(1) > 0).astype(int).tolist()}]})

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("OPENMIND_INFER_URL", f"http://127.0.0.1:{server.server_address[1]}")
        X = np.array([[1.0, 2, 3], [-1, -2, -3]], np.float32)
        pred = openmind.infer_adaptive("remote", X, strategy="cloud")
        assert pred.values.tolist() == [1, 0]
        header, sent = seen[-1]
        assert header is None and sent["name"] == "pixels" and sent["datatype"] == "FP64"
    finally:
        server.shutdown()
        server.server_close()


@settings(max_examples=200, deadline=None)
@given(st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,30}", fullmatch=True), st.integers(0, 65535))
def test_a_host_header_names_its_host_with_or_without_a_port(name, port):
    """Only loopback names pass by default; the port never changes what a name is."""
    from openmind.serve.routes import _TrustedHost, host_of

    assert host_of(f"{name}:{port}") == host_of(name) == name.lower()
    gate = _TrustedHost(None)
    try:
        loop = ipaddress.ip_address(name).is_loopback
    except ValueError:
        loop = name.lower() == "localhost"
    assert gate.allows(f"{name}:{port}".encode()) == loop
    assert gate.allows(f"[::1]:{port}".encode()) and not gate.allows(f"[::2]:{port}".encode())
