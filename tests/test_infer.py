"""infer_adaptive end to end: cache, local model, dead endpoint, injected GPU, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import openmind
from openmind.errors import AllPathwaysFailed, BadInput
from openmind.flow.resources import Resource, Resources, gpu_present
from openmind.memory.blobs import entries
from openmind.pathways.cloud import http
from openmind.vocab import Decision, Pathway
from tests.cloud_fixtures import store_digits_model
from tests.fake_llm import closed_port


@pytest.fixture(autouse=True)
def _fresh_endpoints():
    http.reset()
    yield
    http.reset()


def test_local_then_cached_then_fresh(monkeypatch):
    from openmind.intents import infer

    monkeypatch.setattr(infer, "CACHE_MIN_WORK", 0)  # as if this model were slow to compute
    X, model = store_digits_model()
    expected = model.predict(X[:40])[0]
    first = openmind.infer_adaptive("digits", X[:40])
    assert (first.route.pathway, first.route.decision) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
    assert "cpu" in first.source
    np.testing.assert_array_equal(first.values, expected)
    assert len(entries("predictions", "digits")) == 1
    again = openmind.infer_adaptive("digits", X[:40])
    assert (again.route.pathway, again.route.decision) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)
    np.testing.assert_array_equal(again.values, expected)
    other = openmind.infer_adaptive("digits", X[40:80])  # other data: not a cache hit
    assert other.route.decision is Decision.HARDCODE
    fresh = openmind.infer_adaptive("digits", X[:40], fresh=True)
    assert fresh.route.decision is Decision.HARDCODE
    records = openmind.journal(4)
    assert [r["decision"] for r in records] == ["HARDCODE", "HARDCODE", "CACHED", "HARDCODE"]


def test_a_cheap_local_prediction_is_computed_not_cached():
    """Storing a prediction costs milliseconds, computing a small batch microseconds."""
    X, model = store_digits_model()
    first = openmind.infer_adaptive("digits", X[:40])
    again = openmind.infer_adaptive("digits", X[:40])
    assert first.route.decision is again.route.decision is Decision.HARDCODE
    assert entries("predictions", "digits") == []
    np.testing.assert_array_equal(again.values, model.predict(X[:40])[0])
    assert [r["decision"] for r in openmind.journal(2)] == ["HARDCODE", "HARDCODE"]


def test_store_reuses_its_connection_but_not_across_a_recreated_file(tmp_path, monkeypatch):
    from openmind.flow.journal import journal, write
    from openmind.memory import store

    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path / "h"))
    write({"intent": "infer", "ok": True})
    with store.connect() as a, store.connect() as b:
        assert a is b
    import shutil

    shutil.rmtree(tmp_path / "h")  # the store vanishes (a user wiping ~/.openmind)
    write({"intent": "train", "ok": True})
    assert [r["intent"] for r in journal(5)] == ["train"]


def test_strategy_cached_without_a_cache_fails_with_the_reason():
    X, _ = store_digits_model()
    with pytest.raises(AllPathwaysFailed) as err:
        openmind.infer_adaptive("digits", X[:5], strategy="cached")
    assert "strategy=cached" in str(err.value)


def test_unknown_model_nowhere_fails_listing_each_reason():
    with pytest.raises(AllPathwaysFailed) as err:
        openmind.infer_adaptive("ghost", np.zeros((2, 3)))
    text = str(err.value)
    assert "'ghost' is not in local memory" in text and "no inference endpoint" in text


def test_dead_endpoint_with_strategy_cloud_falls_through_to_local(monkeypatch):
    X, model = store_digits_model()
    url = f"http://127.0.0.1:{closed_port()}"
    res = Resources.none(infer=Resource.present("infer", "ready", "ready", url=url))
    monkeypatch.setenv("OPENMIND_INFER_URL", url)
    pred = openmind.infer_adaptive("digits", X[:10], strategy="cloud", resources=res, timeout=1)
    assert (pred.route.pathway, pred.route.decision) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
    assert "cloud_inference failed" in pred.route.reason and "cannot connect" in pred.route.reason
    np.testing.assert_array_equal(pred.values, model.predict(X[:10])[0])
    rec = openmind.journal(1)[0]
    assert rec["attempts"][0]["outcome"] == "failed" and "cannot connect" in rec["attempts"][0]["error"]


def test_an_endpoint_answering_nan_labels_is_refused_and_falls_through_with_the_reason(monkeypatch):
    from tests.fake_llm import Scripted

    X, model = store_digits_model()
    with Scripted() as srv:
        srv.script("/v2/models/digits/infer", ("json", 200, {"outputs": [
            {"name": "label", "shape": [10], "datatype": "FP64", "data": [float("nan")] * 10}]}))
        res = Resources.none(infer=Resource.present("infer", "ready", "ready", url=srv.url))
        monkeypatch.setenv("OPENMIND_INFER_URL", srv.url)
        pred = openmind.infer_adaptive("digits", X[:10], strategy="cloud", resources=res, timeout=2)
        assert srv.calls("/v2/models/digits/infer")  # the endpoint was asked, and answered NaN
    assert (pred.route.pathway, pred.route.decision) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
    assert "cloud_inference failed" in pred.route.reason and "non-finite" in pred.route.reason
    np.testing.assert_array_equal(pred.values, model.predict(X[:10])[0])


def test_injected_gpu_small_batch_stays_on_cpu_big_batch_routes_to_cuda_then_cpu_when_cuda_is_absent():
    from openmind.flow.router import GPU_MIN_INFER_WORK

    X, model = store_digits_model()
    res = Resources.none(gpu=gpu_present([{"name": "Injected GPU", "memory_total": 8 << 30}]))
    pred = openmind.infer_adaptive("digits", X[:10], resources=res)
    assert "a GPU is here" in pred.route.reason and pred.source == "local cpu"  # too small to repay
    rows = -(-GPU_MIN_INFER_WORK // model.work(1))
    big = np.resize(X, (rows, X.shape[1]))
    pred = openmind.infer_adaptive("digits", big, resources=res)
    assert "CUDA GPU" in pred.route.reason  # the router chose the GPU pathway ...
    assert pred.source.startswith("local cpu (CUDA not usable")  # ... this machine has no CUDA
    np.testing.assert_array_equal(pred.values, model.predict(big)[0])


def test_a_model_object_is_used_directly():
    X, model = store_digits_model()
    pred = openmind.infer_adaptive(model.model, X[:5])
    assert pred.route.pathway is Pathway.MUSCLE_MEMORY
    np.testing.assert_array_equal(pred.values, model.predict(X[:5])[0])


@pytest.mark.parametrize("data, text", [
    ("one string", "single string"),
    (np.zeros((3, 7)), "expects rows of 64 features"),
    (np.array([[np.nan] * 64]), "NaN"),
    (np.zeros((0, 64)), "non-empty"),
    ([{"a": 1}], "numbers"),
])
def test_bad_data_is_a_clear_error(data, text):
    store_digits_model()
    with pytest.raises(BadInput, match=text):
        openmind.infer_adaptive("digits", data)


def test_bad_options_are_clear_errors():
    X, _ = store_digits_model()
    with pytest.raises(BadInput, match="valid: adaptive, local, cloud, cached"):
        openmind.infer_adaptive("digits", X[:2], strategy="fastest")
    with pytest.raises(BadInput, match="unknown option 'batch'"):
        openmind.infer_adaptive("digits", X[:2], batch=3)
    with pytest.raises(BadInput, match="not a model"):
        openmind.infer_adaptive(42, X[:2])


def test_predictions_html_shows_route_and_values():
    X, _ = store_digits_model()
    pred = openmind.infer_adaptive("digits", X[:3])
    page = pred._repr_html_()
    assert "muscle_memory/HARDCODE" in page and str(int(pred.values[0])) in page
    assert len(np.asarray(pred)) == 3
