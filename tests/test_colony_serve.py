"""A colony served and deployed like a model: kept in muscle memory under a name, loaded by
`load_local_model`, answered by `infer_adaptive` and `openmind serve` (with an `abstained` output),
written as a C header whose `om_colony_vote` equals `Colony.vote(X, exact=True)` bit for bit, and
refused by the board (which holds one model) with what to do instead. Real parts throughout: three
ternary nets trained by `train_or_load`, the server as a process, the firmware core compiled here,
the firmware's host build on a pty."""

from __future__ import annotations

import subprocess

import httpx
import numpy as np
import pytest
from test_rv32 import needs_rv32, rows_c
from vdev_fixtures import BUILD, make

import openmind
from openmind.errors import BadInput
from openmind.flow.resources import invalidate
from openmind.intents.deploy import deploy
from openmind.intents.infer import load_local_model
from openmind.memory.blobs import entries, put
from openmind.pathways.cloud.oip import OIPClient
from openmind.pathways.ternary.vote import Colony, portable_exp
from openmind.serve import ServeProcess

NAME = "digits-colony"
CONFIDENCE = 0.6  # the colony abstains on about a fifth of the held-out rows


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Three small digits nets (seeds 0-2, 12 epochs each, ~1 s apiece) and held-out rows."""
    from sklearn.datasets import load_digits

    mp = pytest.MonkeyPatch()
    mp.setenv("OPENMIND_HOME", str(tmp_path_factory.mktemp("colony-train")))
    X, y = load_digits(return_X_y=True)
    members = [openmind.train_or_load(f"col{s}", X[:1200], y[:1200], hidden=[24], epochs=12, seed=s,
                                      progress=False) for s in range(3)]
    mp.undo()
    return members, X[1200:].astype(np.float32), y[1200:]


def kept(trained) -> Colony:
    members, _, _ = trained
    return openmind.colony(members, name=NAME, confidence=CONFIDENCE).keep()


def test_a_kept_colony_is_one_entry_and_loads_and_infers_like_a_model(trained):
    _, X, y = trained
    col = kept(trained)
    again = openmind.colony(trained[0], name=NAME, confidence=CONFIDENCE, keep=True)
    [entry] = entries("model", NAME)  # the same colony kept twice is one entry
    assert entry.key == col.key == again.key and entry.meta["format"] == "openmind-colony"
    assert entry.meta["members"] == ["col0", "col1", "col2"] and entry.meta["quorum"] == 2
    assert entry.meta["n_inputs"] == 64 and entry.meta["confidence"] == CONFIDENCE

    local = load_local_model(NAME)
    assert isinstance(local.model, Colony) and local.colony is local.model
    vote = col.vote(X)
    assert vote.abstained.any() and not vote.abstained.all()
    assert (vote.labels[~vote.abstained] == y[~vote.abstained]).mean() > 0.93
    np.testing.assert_array_equal(local.model.predict(X), vote.labels)

    pred = openmind.infer_adaptive(NAME, X, strategy="local")
    assert pred.route.pathway.value == "muscle_memory" and "colony vote" in pred.source
    np.testing.assert_array_equal(pred.values, col.predict(X))
    np.testing.assert_array_equal(pred.abstained, vote.abstained)
    np.testing.assert_allclose(pred.probabilities, col.predict_proba(X), rtol=1e-6)
    # the rows it abstained on wait in each member's label queue
    assert len(openmind.label_queue("col0")) == int(vote.abstained.sum())

    back = openmind.colony(NAME)  # a kept colony by name: its members and its vote's settings
    assert (back.name, back.quorum, back.confidence) == (NAME, 2, CONFIDENCE)
    assert [m.name for m in back.members] == ["col0", "col1", "col2"]
    np.testing.assert_array_equal(back.predict(X), vote.labels)
    assert openmind.colony(NAME, quorum=3).quorum == 3


def test_the_exact_vote_is_the_fast_vote_but_for_near_ties_and_portable_exp_is_exp(trained):
    _, X, _ = trained
    col = kept(trained)
    fast, exact = col.vote(X), col.vote(X, exact=True)
    assert (fast.labels == exact.labels).mean() > 0.99
    x = -np.abs(np.random.default_rng(0).normal(0, 30, 10_000))
    ok = x > -700
    np.testing.assert_allclose(portable_exp(x)[ok], np.exp(x[ok]), rtol=1e-15)
    assert portable_exp(np.array([0.0, -701.0])).tolist() == [1.0, 0.0]


def test_openmind_serve_answers_a_colony_like_in_process_with_abstained(trained, openmind_home):
    import tritonclient.http as triton

    members, X, _ = trained
    col = kept(trained)
    vote = col.vote(X)
    arrays, meta = members[0].to_arrays()
    put("model", "plain", "plain-key", arrays, meta)  # a plain model served beside it
    with ServeProcess(home=openmind_home) as srv:
        client = OIPClient(srv.url, retries=0)
        meta = client.model_metadata(NAME)
        assert meta["platform"] == "openmind-colony" and meta["parameters"]["quorum"] == 2
        assert {"name": "abstained", "datatype": "BOOL", "shape": [-1]} in meta["outputs"]
        out = client.infer(NAME, X)
        np.testing.assert_array_equal(out["label"], vote.labels)
        np.testing.assert_array_equal(out["abstained"], vote.abstained)
        np.testing.assert_allclose(out["probabilities"], vote.probabilities, rtol=1e-6)
        only = client.infer(NAME, X[:5], outputs=["abstained"])
        assert list(only) == ["abstained"]

        tc = triton.InferenceServerClient(srv.url.removeprefix("http://"))
        try:
            inp = triton.InferInput("input-0", list(X.shape), "FP32")
            inp.set_data_from_numpy(X)
            res = tc.infer(NAME, [inp], outputs=[triton.InferRequestedOutput("abstained"),
                                                  triton.InferRequestedOutput("label")])
            np.testing.assert_array_equal(res.as_numpy("abstained"), vote.abstained)
            np.testing.assert_array_equal(res.as_numpy("label"), vote.labels)
        finally:
            tc.close()

        # a plain model keeps its two outputs and refuses the colony's
        plain = client.model_metadata("plain")
        assert plain["platform"] == "openmind-ternary"
        assert [o["name"] for o in plain["outputs"]] == ["label", "probabilities"]
        r = httpx.post(f"{srv.url}/v2/models/plain/infer", json={
            "inputs": [{"name": "input-0", "shape": [1, 64], "datatype": "FP32", "data": X[0].tolist()}],
            "outputs": [{"name": "abstained"}]})
        assert r.status_code == 400 and "valid: label, probabilities" in r.json()["error"]
        assert sorted(client.infer("plain", X[:3])) == ["label", "probabilities"]

        # deploy to the server: a colony kept under a new name is served by it
        d = deploy(col, "oip", url=srv.url)
        assert (d.target, d.members, d.inputs, d.outputs) == ("server", 3, 64, 10)
        renamed = openmind.colony(members, name="digits-colony-2", confidence=CONFIDENCE)
        d = deploy(renamed, "oip", url=srv.url)
        assert d.where.endswith("/v2/models/digits-colony-2")
        np.testing.assert_array_equal(client.infer("digits-colony-2", X[:50])["label"], vote.labels[:50])


def test_infer_adaptive_on_another_machine_gets_the_served_vote_and_abstentions(trained, openmind_home,
                                                                                monkeypatch, tmp_path):
    _, X, _ = trained
    vote = kept(trained).vote(X)
    with ServeProcess(home=openmind_home) as srv:
        monkeypatch.setenv("OPENMIND_HOME", str(tmp_path / "elsewhere"))
        monkeypatch.setenv("OPENMIND_INFER_URL", srv.url)
        invalidate()
        pred = openmind.infer_adaptive(NAME, X)
    assert pred.route.pathway.value == "cloud_inference"
    np.testing.assert_array_equal(pred.values, vote.labels)
    np.testing.assert_array_equal(pred.abstained, vote.abstained)


def votes_of(stdout: str, col: Colony, rows: np.ndarray) -> np.ndarray:
    """The C program's lines ("class abstained votes...") checked against Colony.vote(exact=True)."""
    got = np.array([line.split() for line in stdout.strip().splitlines()], dtype=np.int64)
    vote = col.vote(rows, exact=True)
    assert got.shape == (len(rows), 2 + len(col.classes_))
    np.testing.assert_array_equal(col.classes_[got[:, 0]], vote.labels)
    np.testing.assert_array_equal(got[:, 1].astype(bool), vote.abstained)
    np.testing.assert_array_equal(got[:, 2:], vote.scores)
    assert vote.abstained.any() and not vote.abstained.all()
    return got


@pytest.fixture
def colony_h(trained, tmp_path):
    """The kept colony's C header, written by deploy from muscle memory by name."""
    col = kept(trained)
    path = tmp_path / "colony.h"
    d = deploy(NAME, str(path))
    assert (d.target, d.members, d.bytes) == ("header", 3, sum(m.nbytes for m in col.members))
    text = path.read_text()
    assert "#define OM_COLONY_MEMBERS 3" in text and f"#define OM_COLONY_CONFIDENCE {CONFIDENCE!r}" in text
    return col, path


def test_the_colony_header_compiles_and_om_colony_vote_equals_python_bit_for_bit(trained, colony_h):
    from sklearn.datasets import load_digits

    col, path = colony_h
    make("colony-host", COLONY_H=str(path))
    rows = np.vstack([trained[1], load_digits().data.astype(np.float32)])  # 2394 rows
    run = subprocess.run([str(BUILD / "colony-host")], input=rows.astype("<f4").tobytes(),
                         capture_output=True, check=True, timeout=60)
    votes_of(run.stdout.decode(), col, rows)


@needs_rv32
def test_om_colony_vote_on_rv32imc_soft_float_equals_python_bit_for_bit(trained, colony_h, tmp_path):
    """The ESP32-C3's ISA has no FPU: doubles are libgcc's soft float, and the vote still agrees."""
    col, path = colony_h
    rows = trained[1][:300]
    (tmp_path / "rows.h").write_text(rows_c(rows))
    out = make("colony-rv32-run", COLONY_H=str(path), ROWS_H=str(tmp_path / "rows.h")).stdout
    votes_of(out, col, rows)  # `make -s`: the program's lines alone


def test_the_board_refuses_a_colony_saying_what_to_do_and_auto_keeps_a_header(trained, vdev, monkeypatch):
    col = kept(trained)
    with pytest.raises(BadInput, match="colony of 3 models and the firmware holds one model: deploy it "
                                       "to a C header"):
        deploy(col, "esp32", port=vdev.port)
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", vdev.port)
    invalidate()
    assert openmind.probe(refresh=True).serial.available
    d = deploy(NAME)  # auto: the board is online, but holds one model: a header, and the route says why
    assert (d.route.pathway.value, d.route.decision.value, d.target) == ("muscle_memory", "HYBRID", "header")
    excluded = [e["reason"] for e in d.route.record["plan"]["excluded"]]
    assert any("colony of 3 models" in r and vdev.port in r for r in excluded)
    assert "#define OM_COLONY_MEMBERS 3" in open(d.where).read()
    assert [e.name for e in entries("header", NAME)] == [NAME]
    # the board still answers with its own model slot untouched: one model, one member works
    assert deploy(col.members[0], "esp32", port=vdev.port).target == "device"


def test_bad_colonies_are_refused_clearly(trained):
    members, _, _ = trained
    with pytest.raises(BadInput, match="at least two members, got 1"):
        Colony(members[:1])
    from sklearn.datasets import load_wine

    wine = openmind.train_or_load("wine", *load_wine(return_X_y=True), hidden=[8], epochs=1, progress=False)
    with pytest.raises(BadInput, match="share features and classes"):
        openmind.colony([members[0], wine])
    with pytest.raises(BadInput, match="colony name 'a/b' has characters"):
        openmind.colony(members).keep("a/b")
    arrays, meta = openmind.colony(members).to_arrays()
    del arrays["m1.packed"]
    with pytest.raises(BadInput, match="lacks member 1's packed bytes"):
        Colony.from_arrays(arrays, meta)
    assert openmind.colony(members).name == "colony-col0-col1-col2"


def test_a_kept_colony_is_no_ancestor_and_does_not_break_ancestral_init(trained):
    from sklearn.datasets import load_digits

    kept(trained)
    X, y = load_digits(return_X_y=True)
    model = openmind.train_or_load("heir", X[:300], y[:300], hidden=[16], epochs=1, init="ancestral",
                                   progress=False)
    assert "inherited" not in model.info  # memory held only the colony: the default init
