"""Fuzzing with a fixed budget: the device parser, the host's protocol commands against a device
answering anything, the OIP tensor decoder and answer check, and `openmind serve` (hypothesis
bodies and schemathesis against its own OpenAPI description).

Every target must stay total: a parser returns or raises its own clear error, a server answers 4xx
for any body, never 5xx. OPENMIND_FUZZ_EXAMPLES raises the budget for a longer run; each test
prints `fuzz <target>: N inputs, C crashes[, K 5xx]` (pytest -s shows them).
"""

from __future__ import annotations

import json
import math
import os

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from openmind.pathways import device
from openmind.pathways.cloud.oip import check_answer
from openmind.pathways.cloud.tensors import DATATYPES, TensorError, decode
from openmind.pathways.device import DeviceError, Link, parse_line
from openmind.pathways.lines import StreamCheck
from tests.hostile_device import HostileDevice

BUDGET = int(os.environ.get("OPENMIND_FUZZ_EXAMPLES", "200"))
FAST = settings(max_examples=BUDGET, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))
SLOW = settings(max_examples=max(20, BUDGET // 5), deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                         st.floats(allow_nan=False), st.text(max_size=12))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)), max_leaves=12)
PROTOCOL_KEYS = ("hello", "proto", "signals", "ok", "sent", "got", "y", "scores", "s", "n", "t", "v",
                 "error", "msg", "inputs", "outputs")
device_objects = st.dictionaries(st.sampled_from(PROTOCOL_KEYS), json_values, max_size=6)


def deep(depth: int) -> bytes:
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def report(target: str, inputs: int, crashes: int, fivexx: int | None = None) -> None:
    extra = f", {fivexx} 5xx" if fivexx is not None else ""
    print(f"\nfuzz {target}: {inputs} inputs, {crashes} crashes{extra}")


# --------------------------------------------------------------------------- device


def test_parse_line_is_total():
    seen = {"n": 0}
    for line in (deep(10), deep(500), deep(5000)[:1024], b'{"s":' + b"{" * 300, b"{" + b"\xff" * 50):
        assert parse_line(line) is None

    @FAST
    @given(st.one_of(st.binary(max_size=1200),
                     device_objects.map(lambda o: json.dumps(o).encode()),
                     st.integers(1, 3000).map(deep)))
    def run(line):
        seen["n"] += 1
        out = parse_line(line)
        assert out is None or isinstance(out, dict)

    run()
    report("device parse_line", seen["n"], 0)


def test_stream_check_believes_only_samples_that_fit_the_stream():
    seen = {"n": 0}

    @FAST
    @given(device_objects, st.integers(0, 30))
    def run(obj, expect):
        seen["n"] += 1
        check = StreamCheck("temperature", 10.0, 20, started=-1e9)  # long ago: any n is in time
        got = check.accept({**obj, "s": "temperature"}, expect)
        if got is not None:
            n, t, v = got
            assert expect <= n < 20 and isinstance(t, int) and t >= 0 and isinstance(v, float)

    run()
    report("device sample check", seen["n"], 0)


def test_a_bit_flipped_sequence_or_time_is_not_believed():
    check = StreamCheck("temperature", 10.0, 20, started=-1e9)
    assert check.accept({"s": "temperature", "n": 0, "t": 1000, "v": 1.0}, 0) == (0, 1000, 1.0)
    assert check.accept({"s": "temperature", "n": 1 ^ (1 << 30), "t": 1100, "v": 1.0}, 1) is None
    assert check.accept({"s": "temperature", "n": 1 ^ 4, "t": 1100, "v": 1.0}, 1) is None  # n=5 at t of 1
    assert check.accept({"s": "temperature", "n": 2, "t": 1200 + 2**27, "v": 1.0}, 1) is None
    assert check.accept({"s": "temperature", "n": 2, "t": 1200, "v": None}, 1)[0] == 2


@pytest.fixture(scope="module")
def scripted_device():
    dev = HostileDevice(script=[])
    yield dev
    dev.close()


def test_host_commands_survive_any_device_answer(scripted_device):
    """hello, STOP, MODEL upload, PREDICT and a stream against a device answering arbitrary lines:
    each returns or raises DeviceError, never TypeError/ValueError/RecursionError."""
    seen = {"n": 0, "crashes": 0}
    ops = {
        "hello": lambda link: link.hello(0.05),
        "stop": lambda link: link.stop(0.05),
        "upload": lambda link: link.upload_model(b"\x01" * 200, 0.05),
        "predict": lambda link: link.predict([1.0, 2.0], 0.05),
        "capture": lambda link: link.capture("temperature", 1000, 3, 0.05),
    }

    @SLOW
    @given(st.lists(st.one_of(device_objects.map(lambda o: json.dumps(o).encode()),
                              st.binary(max_size=80).filter(lambda b: b"\n" not in b),
                              st.integers(50, 800).map(deep)), max_size=5),
           st.sampled_from(sorted(ops)))
    def run(lines, op):
        seen["n"] += 1
        device.unbench()
        scripted_device.script = lines
        try:
            with Link(scripted_device.port) as link:
                result = ops[op](link)
        except DeviceError:
            return
        except Exception:
            seen["crashes"] += 1
            raise
        if op == "capture":
            assert result.received <= 3 and result.lost <= 3
        if op == "stop":
            assert isinstance(result, int) and result >= 0
        if op == "hello":
            assert all(isinstance(x["name"], str) and isinstance(x["unit"], str) for x in result["signals"])

    run()
    report("device commands (hello/STOP/MODEL/PREDICT/STREAM)", seen["n"], seen["crashes"])


def test_stop_and_upload_refuse_fields_that_are_not_counts(scripted_device):
    for answer, op in ((b'{"ok":true,"sent":"many"}', "stop"), (b'{"ok":true,"got":null}', "upload"),
                       (b'{"ok":true,"got":{}}', "upload")):
        device.unbench()
        scripted_device.script = [answer]
        with Link(scripted_device.port) as link, pytest.raises(DeviceError):
            link.stop(0.2) if op == "stop" else link.upload_model(b"\x01" * 10, 0.2)


# --------------------------------------------------------------------------- OIP decoder


tensor_like = st.fixed_dictionaries({}, optional={
    "name": st.one_of(st.text(max_size=8), json_values),
    "datatype": st.one_of(st.sampled_from(list(DATATYPES)), json_values),
    "shape": st.one_of(st.lists(st.integers(-2, 6), max_size=4), json_values),
    "data": st.one_of(st.lists(st.one_of(json_scalars, st.lists(json_scalars, max_size=3)), max_size=12),
                      json_values),
    "parameters": json_values,
})


def test_decode_is_total():
    seen = {"n": 0}

    @FAST
    @given(st.one_of(tensor_like, json_values))
    def run(obj):
        seen["n"] += 1
        try:
            name, arr = decode(obj)
        except TensorError as exc:
            assert str(exc)
            return
        assert arr.shape == tuple(obj["shape"]) and isinstance(name, str)

    run()
    report("OIP tensor decode", seen["n"], 0)


def test_check_answer_is_total_and_holds_the_rows():
    seen = {"n": 0}

    @FAST
    @given(st.one_of(st.fixed_dictionaries({"outputs": st.lists(tensor_like, max_size=3)}), json_values),
           st.integers(1, 6))
    def run(answer, rows):
        seen["n"] += 1
        try:
            out = check_answer(answer, b"", rows, None, {})
        except TensorError:
            return
        assert out and all(a.shape[0] == rows for a in out.values())

    run()
    report("OIP answer check", seen["n"], 0)


def test_one_prediction_for_five_rows_is_refused():
    answer = {"outputs": [{"name": "label", "datatype": "INT64", "shape": [1], "data": [3]}]}
    with pytest.raises(TensorError, match="1 predictions for the 5 rows"):
        check_answer(answer, b"", 5, None, {})
    declared = {"label": {"name": "label", "datatype": "INT64", "shape": [-1]}}
    answer = {"outputs": [{"name": "label", "datatype": "FP32", "shape": [5], "data": [0.0] * 5}]}
    with pytest.raises(TensorError, match="metadata declares INT64"):
        check_answer(answer, b"", 5, None, declared)


# --------------------------------------------------------------------------- openmind serve

TOKEN = "fuzz-serve-token-4f2a"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from openmind.serve import ServeProcess
    from tests.cloud_fixtures import store_digits_model

    home = tmp_path_factory.mktemp("serve-fuzz-home")
    mp = pytest.MonkeyPatch()  # undone whether OPENMIND_HOME was set before or not
    mp.setenv("OPENMIND_HOME", str(home))
    try:
        store_digits_model("digits")
    finally:
        mp.undo()
    with ServeProcess(home=str(home), token=TOKEN) as sp:
        yield sp


bodies = st.one_of(
    json_values,
    st.fixed_dictionaries({"inputs": st.one_of(st.lists(tensor_like, max_size=2), json_values)},
                          optional={"outputs": json_values, "id": json_values, "parameters": json_values}),
    st.fixed_dictionaries({"inputs": st.just([{"name": "x", "datatype": "FP32", "shape": [1, 64],
                                               "data": [0.5] * 64}])},
                          optional={"outputs": st.lists(st.fixed_dictionaries(
                              {"name": st.sampled_from(["label", "probabilities", "x"])},
                              optional={"parameters": json_values}), max_size=2),
                              "id": json_values, "parameters": json_values}),
)


def test_serve_answers_4xx_for_any_body(served):
    seen = {"n": 0, "5xx": 0}
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    with httpx.Client(base_url=served.url, headers=headers, timeout=10) as client:

        @FAST
        @given(bodies)
        def run(body):
            seen["n"] += 1
            resp = client.post("/v2/models/digits/infer", content=json.dumps(body))
            if resp.status_code >= 500:
                seen["5xx"] += 1
            assert resp.status_code < 500, (body, resp.text)
            assert isinstance(resp.json(), dict)
            if resp.status_code >= 400:
                assert resp.json()["error"]

        run()
        for raw in (b"[" * 100_000, b'{"inputs": ' + b"[" * 5000, b"\xff\xfe", b"null", b"{}"):
            seen["n"] += 1
            assert client.post("/v2/models/digits/infer", content=raw).status_code == 400
    assert "Traceback" not in served.log()
    report("openmind serve /infer bodies", seen["n"], 0, seen["5xx"])


def test_schemathesis_finds_no_5xx(served):
    import schemathesis
    from schemathesis import GenerationMode

    schema = schemathesis.openapi.from_url(f"{served.url}/v2/openapi.json")
    seen = {"n": 0, "5xx": 0, "ops": 0}
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for result in schema.get_all_operations():
        op = result.ok()
        seen["ops"] += 1
        names = [p.name for p in op.path_parameters]
        fixed = {"model_name": "digits"} if "model_name" in names else {}
        if "model_version" in names:
            fixed["model_version"] = "1"
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for path_parameters in (fixed,):  # the served model's name: the body gets parsed
                try:
                    strategy = op.as_strategy(mode, path_parameters=path_parameters or None)
                except Exception:  # no negative case exists for an operation without inputs
                    continue

                @settings(max_examples=max(5, BUDGET // 10 if "infer" in op.label else BUDGET // 40), deadline=None, database=None,
                          suppress_health_check=list(HealthCheck))
                @given(case=strategy)
                def run(case):
                    seen["n"] += 1
                    resp = case.call(base_url=served.url, headers=auth)
                    if resp.status_code >= 500:
                        seen["5xx"] += 1
                    assert resp.status_code < 500, (case.path, case.body, resp.text)

                try:
                    run()
                except Unsatisfiable:  # a negative case of an operation that takes no input
                    pass
    assert seen["ops"] >= 9
    assert "Traceback" not in served.log()
    report("schemathesis vs /v2/openapi.json", seen["n"], 0, seen["5xx"])


def test_openapi_describes_the_oip_v2_rest_api(served):
    spec = httpx.get(f"{served.url}/v2/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/v2/models/{model_name}",
                 "/v2/models/{model_name}/ready", "/v2/models/{model_name}/infer"):
        assert path in spec["paths"]
    req = spec["components"]["schemas"]["InferenceRequest"]
    assert req["required"] == ["inputs"]
    assert set(spec["components"]["schemas"]["RequestInput"]["required"]) == {"name", "shape", "datatype", "data"}


def test_nan_and_odd_numbers_in_device_scores_become_nan():
    assert math.isnan(device.finite(None)) and math.isnan(device.finite(10**400))
    assert device.finite(2) == 2.0 and np.isnan(device.finite("x"))
