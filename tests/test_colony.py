"""The colony's checkers (issue 16): validator, shedding, active learning, monitor, routed deploy.

Real parts only: models trained by train_or_load, the store in a real SQLite file, a real
`openmind serve` process for publishing, the firmware's host build on a pty for uploads.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import openmind
from openmind.errors import BadInput
from openmind.flow.resources import invalidate
from openmind.intents.monitor import PageHinkley, WatchConfig, ks_pvalue, psi
from openmind.jupyter.card import card_for
from openmind.memory import health
from openmind.memory.blobs import entries

SMALL = {"hidden": [32], "epochs": 8, "progress": False}


@pytest.fixture(scope="module")
def cancer():
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    idx = np.random.default_rng(0).permutation(len(X))
    return X[idx[:300]], y[idx[:300]], X[idx[300:]], y[idx[300:]]


def excluded(result) -> list[str]:
    return [e["reason"] for e in result.route.record["plan"]["excluded"]]


# --------------------------------------------------------------------------- validator


def test_validation_figures_agree_with_sklearn(cancer):
    from sklearn.metrics import confusion_matrix, precision_score, recall_score

    Xtr, ytr, Xte, yte = cancer
    model = openmind.train_or_load("bc", Xtr, ytr, **SMALL)
    v = openmind.validate(model, Xte, yte)
    pred = model.predict(Xte)
    assert v.accuracy == pytest.approx(np.mean(pred == yte), abs=1e-4)
    assert (v.confusion == confusion_matrix(yte, pred, labels=[0, 1])).all()
    assert v.figures["precision"]["1"] == pytest.approx(precision_score(yte, pred), abs=1e-4)
    assert v.figures["recall"]["0"] == pytest.approx(recall_score(yte, pred, pos_label=0), abs=1e-4)
    trits = model.predict_trits(Xte)
    assert v.figures["abstention"] == pytest.approx(np.mean(trits == 0), abs=1e-4)
    assert 0 <= v.figures["ece"] <= 1
    assert v.route.pathway.value == "muscle_memory" and v.healthy is True
    stored = entries("validation", "bc")
    assert len(stored) == 1 and stored[0].meta["accuracy"] == v.accuracy
    with pytest.raises(BadInput, match="one label per row"):
        openmind.validate(model, Xte, yte[:-1])


def test_a_worse_version_is_shed_passed_over_by_train_and_infer_and_pinning_keeps_it(cancer):
    Xtr, ytr, Xte, yte = cancer
    good = openmind.train_or_load("bc", Xtr, ytr, **SMALL)
    assert openmind.validate("bc", Xte, yte).healthy
    rng = np.random.default_rng(1)
    bad = openmind.train_or_load("bc", Xtr, rng.permutation(ytr), hidden=[32], epochs=3,
                                 progress=False, fresh=True)
    v = openmind.validate("bc", Xte, yte)
    print(v)
    assert v.healthy is False and v.verdict.startswith("shed")
    [cmp] = v.comparison
    assert cmp["accuracy"] - v.accuracy > 0.02 and cmp["delta"] < -0.02
    text = card_for(v.route).text()
    assert "vs previous version" in text and "shed" in text
    assert "openmind-comparison" in card_for(v.route)._repr_html_()

    # infer: the newest version is shed, so the one before it answers; the card says why
    p = openmind.infer_adaptive("bc", Xte)
    assert (np.asarray(p.values) == good.predict(Xte)).all()
    assert any("shed by the validator" in r for r in excluded(p))
    # train: neither exact hit, ancestor nor fallback
    again = openmind.train_or_load("bc", Xtr[:50], ytr[:50], **SMALL)
    assert again.route.pathway.value == "fine_tune"
    assert again.info["parent"] == good.info["key"] != bad.info["key"]
    assert any("shed by the validator" in r and "below the previous version" in r for r in excluded(again))

    # the user pins the shed version: it counts again (and stays kept when validated again)
    openmind.pin(bad)
    assert openmind.validate(bad, Xte, yte).verdict.startswith("kept because pinned")
    from openmind.intents.infer import load_local_model

    assert load_local_model("bc").key == again.info["key"]  # the newest, pinned or not


# --------------------------------------------------------------------------- active learning


def test_active_learning_on_breast_cancer_raises_accuracy_on_the_abstained_rows(cancer, openmind_home):
    Xtr, ytr, Xpool, ypool = cancer
    model = openmind.train_or_load("bc", Xtr, ytr, hidden=[32], epochs=10, progress=False)
    openmind.infer_adaptive("bc", Xpool)
    queued = openmind.label_queue("bc")
    assert len(queued) > 5
    unsure = model.predict_trits(Xpool) == 0  # exactly the rows the model abstained on
    assert len(queued) == int(unsure.sum())
    # the queue is in SQLite: a new process sees it
    out = subprocess.run([sys.executable, "-c", "import openmind; print(len(openmind.label_queue('bc')))"],
                         env={**os.environ, "OPENMIND_HOME": str(openmind_home)}, capture_output=True,
                         text=True, timeout=60, check=True)
    assert int(out.stdout.strip()) == len(queued)
    # a person labels them (here: the dataset's labels, found by row)
    truth = np.array([ypool[np.flatnonzero((Xpool == row).all(axis=1))[0]] for row in queued])
    assert openmind.label("bc", np.arange(len(queued)), truth) == len(queued)
    assert len(openmind.label_queue("bc")) == 0
    before = float(np.mean(model.predict(queued) == truth))
    tuned = openmind.train_or_load("bc", Xtr, ytr, hidden=[32], epochs=10, progress=False)
    after = float(np.mean(tuned.predict(queued) == truth))
    print(f"accuracy on the {len(queued)} previously abstained rows: before {before:.3f}, after {after:.3f}")
    assert tuned.route.pathway.value == "fine_tune" and tuned.info["rows"] == len(Xtr) + len(queued)
    assert after > before
    # the same call again is an exact hit: the labelled rows are part of the name's data
    assert openmind.train_or_load("bc", Xtr, ytr, hidden=[32], epochs=10, progress=False).route.decision.value == "CACHED"
    with pytest.raises(BadInput, match="out of range"):
        openmind.label("bc", np.array([10_000]), np.array([1]))


def test_the_label_queue_holds_each_row_once_for_any_batch(openmind_home):
    from itertools import count

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import arrays

    from openmind.memory import labels

    names = count()

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 4)),
                  elements=st.sampled_from([0.0, 1.0, -2.5, 3.25])),
           st.integers(0, 11))
    def check(X, cut):
        name = f"q{next(names)}"
        assert labels.row_keys(X) == [np.asarray(r, np.float64).tobytes() for r in X]
        unique = [r for i, r in enumerate(X.astype(np.float64)) if not any((r == X[:i]).all(axis=1))]
        assert labels.queue(name, X[:cut], "test") + labels.queue(name, X, "test") == len(unique)
        assert labels.queue(name, X, "test") == 0  # all of it known now
        queued = labels.pending(name)
        assert sorted(map(bytes, queued)) == sorted(map(bytes, np.array(unique)))

    check()


# --------------------------------------------------------------------------- monitor

NOISE, SHIFT = 1.0, 3.0  # a cheap sensor's noise (°C); the mean shift halfway (°C)


def temperature(seed: int, minutes: int) -> np.ndarray:
    s = openmind.sense_or_simulate("temperature", f"{minutes}min", "1Hz", source="simulate",
                                   seed=seed, progress=False)
    return s.values + np.random.default_rng(seed).normal(0, NOISE, len(s.values))


def test_input_drift_on_a_simulated_temperature_shift_is_found_within_the_stated_bound():
    train = temperature(1, 20)
    usual = np.median(train)
    openmind.train_or_load("room", train.reshape(-1, 1), (train > usual).astype(int), **SMALL)
    stream = temperature(2, 20)
    shift_at = len(stream) // 2
    stream[shift_at:] += SHIFT
    w = openmind.monitor("room", stream, reference=train, action="alert")
    bound = 40 + 2 * 5  # window + confirm * step (the defaults)
    delay = w.first_drift - shift_at
    print(f"input drift detected {delay} samples after the shift (bound {bound}): {w.events[0]['detail']}")
    assert 0 <= delay <= bound
    assert [e["kind"] for e in w.events] == ["input drift"] and w.state == "drift"
    monitor_records = [r for r in openmind.journal(20) if r["intent"] == "monitor"]
    assert any("input drift at sample" in (r["reason"] or "") for r in monitor_records)
    assert w.route.record["summary"]["first_drift"] == w.first_drift


def test_monitor_takes_its_options_as_keywords_or_as_a_watch_config():
    """`openmind.monitor(model, source, **options)`: the keywords, a `WatchConfig`, or both (the
    keywords win) watch alike; a bad option is refused before anything is watched."""
    train = temperature(1, 10)
    openmind.train_or_load("room", train.reshape(-1, 1), (train > np.median(train)).astype(int), **SMALL)
    stream = temperature(2, 10)
    stream[len(stream) // 2:] += SHIFT
    by_keywords = openmind.monitor("room", stream, reference=train, action="alert", window=60)
    by_config = openmind.monitor("room", stream, reference=train,
                                 config=WatchConfig(action="alert", window=60))
    overridden = openmind.monitor("room", stream, reference=train, window=60,
                                  config=WatchConfig(action="fine_tune", window=20), action="alert")
    assert by_keywords.first_drift is not None and by_keywords.state == "drift"
    for w in (by_config, overridden):
        assert w.first_drift == by_keywords.first_drift and w.events[0]["detail"] == by_keywords.events[0]["detail"]
    assert "last 60 rows" in by_keywords.events[0]["detail"]
    with pytest.raises(BadInput, match="window must be an integer of at least 5, got 3"):
        openmind.monitor("room", stream, window=3)
    with pytest.raises(BadInput, match="unknown action 'panic'"):
        WatchConfig(action="panic")
    with pytest.raises(BadInput, match="unknown option 'windw' for monitor"):
        openmind.monitor("room", stream, windw=60)


def test_page_hinkley_flags_a_rise_of_the_error_rate_and_not_a_steady_one():
    rng = np.random.default_rng(0)
    steady = PageHinkley()
    assert not any(steady.update(float(e)) for e in rng.random(2000) < 0.05)
    ph = PageHinkley()
    stream = np.concatenate([rng.random(500) < 0.05, rng.random(500) < 0.5])
    hits = [i for i, e in enumerate(stream) if ph.update(float(e))]
    assert hits and 500 <= hits[0] <= 540


def test_drift_statistics_see_a_shift_and_not_the_same_distribution():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 1000)
    assert psi(ref, rng.normal(0, 1, 1000)) < 0.1
    assert psi(ref, rng.normal(2, 1, 200)) > 0.25
    assert ks_pvalue(ref, rng.normal(0, 1, 200))[1] > 0.01
    assert ks_pvalue(ref, rng.normal(1, 1, 200))[1] < 1e-6
    from scipy.stats import ks_2samp

    for _ in range(5):  # the statistic is scipy's
        a, b = rng.normal(0, 1, 500), rng.normal(0.3, 1.2, 40)
        assert ks_pvalue(a, b)[0] == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)
    # a smooth (autocorrelated) window counts as fewer samples: a weaker p-value
    smooth = np.repeat(rng.normal(0.3, 1, 20), 10)
    assert ks_pvalue(ref, smooth)[1] > ks_pvalue(ref, rng.permutation(smooth))[1]


# --------------------------------------------------------------------------- deploy


def test_deploy_auto_without_device_or_server_keeps_a_c_header_in_memory(cancer):
    Xtr, ytr, _, _ = cancer
    model = openmind.train_or_load("bc", Xtr, ytr, **SMALL)
    d = openmind.deploy(model)
    assert (d.route.pathway.value, d.route.decision.value) == ("muscle_memory", "HYBRID")
    text = open(d.where).read()
    assert f"#define OM_MODEL_BYTES {len(model.pack())}u" in text
    [kept] = entries("header", "bc")
    assert kept.meta["path"] == d.where
    assert any("no device" in r for r in excluded(d))


def test_deploy_auto_publishes_to_the_oip_server_reading_this_memory(cancer, openmind_home, monkeypatch):
    from openmind.pathways.cloud.oip import OIPClient
    from openmind.serve import ServeProcess

    Xtr, ytr, Xte, _ = cancer
    model = openmind.train_or_load("bc", Xtr, ytr, **SMALL)
    with ServeProcess(home=openmind_home) as srv:
        monkeypatch.setenv("OPENMIND_INFER_URL", srv.url)
        invalidate()
        d = openmind.deploy(model)
        assert d.route.pathway.value == "cloud_inference" and d.target == "server"
        served = OIPClient(srv.url, retries=0).infer("bc", Xte[:20])
        assert (np.asarray(served["label"]) == model.predict(Xte[:20])).all()


def test_deploy_auto_uploads_when_the_boards_hello_limits_fit_and_says_what_fits_when_not(vdev, monkeypatch):
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    monkeypatch.setenv("OPENMIND_SERIAL_PORT", vdev.port)
    invalidate()
    wide = openmind.train_or_load("digits-wide", X[:300], y[:300], hidden=[300], epochs=1, progress=False)
    d = openmind.deploy(wide)  # a layer wider than the board's 256
    assert d.target == "header"
    [why] = [r for r in excluded(d) if "over the device's" in r]
    assert "a layer 300 wide, over the device's 256" in why and "fit_device=True): hidden [" in why
    # the default architecture (~23.7 KB) fits the host build's 32 KB buffer, as its HELLO says
    default = openmind.train_or_load("digits", X[:300], y[:300], epochs=1, progress=False)
    assert 16384 < len(default.pack()) <= 32768
    d = openmind.deploy(default)
    assert (d.route.pathway.value, d.target, d.where) == ("hardware_in_loop", "device", vdev.port)


# --------------------------------------------------------------------------- pure rules, properties


def test_deploy_validate_monitor_rules_are_pure_and_ordered():
    from openmind import Intent, Resource, Resources
    from openmind.flow.policy import Policy
    from openmind.flow.router import plan

    def res(serial: bool, infer: bool) -> Resources:
        given = {"memory": Resource.present("memory", "ready", models={}, signals={})}
        if serial:
            given["serial"] = Resource.present("serial", "ESP32", "online", port="/dev/ttyUSB0", signals=[])
        if infer:
            given["infer"] = Resource.present("infer", "ready", "ready", url="http://127.0.0.1:9")
        return Resources.none(**given)

    def steps(intent, r, **pol):
        return [(c.pathway.value, c.decision.value) for c in plan(intent, r, Policy(**pol))]

    dep = Intent.of("deploy", name="m")
    assert steps(dep, res(True, True)) == [("hardware_in_loop", "HARDCODE"), ("cloud_inference", "HARDCODE"),
                                           ("muscle_memory", "HYBRID")]
    too_big = Intent.of("deploy", name="m", misfit="23768 bytes > the 16384-byte model buffer")
    p = plan(too_big, res(True, False), Policy())
    assert [(c.pathway.value, c.decision.value) for c in p] == [("muscle_memory", "HYBRID")]
    assert any("16384-byte" in why for _, why in p.excluded)
    assert steps(dep, res(True, True), strategy="local") == [("hardware_in_loop", "HARDCODE"),
                                                             ("muscle_memory", "HYBRID")]
    val = Intent.of("validate", name="m", rows=10, local_model=True)
    assert steps(val, res(False, False)) == [("muscle_memory", "HARDCODE")]
    assert steps(Intent.of("validate", name="m", local_model=False), res(False, True)) == [("cloud_inference", "HARDCODE")]
    assert steps(Intent.of("monitor", name="m", local_model=True, exact=True), res(False, False)) == [("muscle_memory", "HARDCODE")]
    assert steps(Intent.of("monitor", name="m", local_model=True), res(False, False)) == [("muscle_memory", "HYBRID")]
    shed = plan(Intent.of("train", name="m", rows=10, shed="version ab: worse"), res(False, False), Policy())
    assert any("shed by the validator: version ab" in why for _, why in shed.excluded)


def test_validation_figures_are_consistent_for_any_labels():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from openmind.intents.validate import figures

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3), st.floats(0.25, 1.0)), min_size=1, max_size=60))
    def check(rows):
        y = np.array([r[0] for r in rows])
        pred = np.array([r[1] for r in rows])
        top = np.array([r[2] for r in rows])
        proba = np.stack([top, 1 - top], axis=1)
        f = figures(y, pred, proba, np.arange(4))
        cm = np.asarray(f["confusion"])
        assert cm.sum() == len(y) and np.trace(cm) / len(y) == pytest.approx(f["accuracy"], abs=1e-4)
        assert 0 <= f["ece"] <= 1 and 0 <= f["abstention"] <= 1
        for k, r in f["recall"].items():
            assert r is None or 0 <= r <= 1
            assert (r is None) == (int(k) not in set(y.tolist()))

    check()


def test_monitor_reads_a_live_signal_by_name_batch_by_batch():
    train = temperature(1, 5)
    openmind.train_or_load("room", train.reshape(-1, 1), (train > np.median(train)).astype(int), **SMALL)
    w = openmind.monitor("room", "temperature", batches=3, duration="20s", rate="1Hz", reference=train,
                         action="alert", seed=5)
    assert w.samples == 60 and w.state == "watching" and not w.events
    senses = [r for r in openmind.journal(20) if r["intent"] == "sense"]
    assert len(senses) == 1 + 3  # the training capture, then each batch routed by the sense intent
    with pytest.raises(BadInput, match="unknown action"):
        openmind.monitor("room", train, action="panic")


def test_monitor_fine_tunes_on_labelled_batches_after_drift_and_the_new_version_validates_better():
    train = temperature(1, 10)
    usual = float(np.median(train))
    v1 = openmind.train_or_load("room", train.reshape(-1, 1), (train > usual).astype(int), **SMALL)
    stream = temperature(2, 10)
    shift_at = len(stream) // 2
    stream[shift_at:] += SHIFT
    truth = np.where(np.arange(len(stream)) < shift_at, stream > usual, stream > usual + SHIFT).astype(int)
    batches = [(stream[i:i + 50].reshape(-1, 1), truth[i:i + 50]) for i in range(0, len(stream), 50)]
    w = openmind.monitor(v1, batches, reference=train, retrain_rows=80,
                         train_options={"hidden": [32], "epochs": 40, "lr": 0.03, "batch_size": 16})
    kinds = [e["kind"] for e in w.events]
    print(kinds, [e["sample"] - shift_at for e in w.events])
    assert kinds[0].endswith("drift") and 0 <= w.first_drift - shift_at <= 50 and "fine-tuned" in kinds
    assert w.model is not v1 and w.model.info["parent"] == v1.info["key"]
    post = temperature(3, 5) + SHIFT
    X_post, y_post = post.reshape(-1, 1), (post > usual + SHIFT).astype(int)
    old, new = openmind.validate(v1, X_post, y_post), openmind.validate(w.model, X_post, y_post)
    print(f"post-shift accuracy: first version {old.accuracy}, fine-tuned {new.accuracy}")
    assert new.accuracy > old.accuracy + 0.1 and new.healthy


def test_a_shed_exact_hit_is_not_served_from_memory_and_its_retrain_stays_shed(cancer):
    Xtr, ytr, Xte, yte = cancer
    openmind.train_or_load("bc", Xtr, ytr, **SMALL)
    flipped = 1 - ytr[:100]
    bad = openmind.train_or_load("bc", Xtr[:100], flipped, hidden=[32], epochs=30, lr=0.03, progress=False)
    assert openmind.validate("bc", Xte, yte).healthy is False
    from openmind.memory import health

    [old] = [e for e in entries("model", "bc") if e.key == bad.info["key"]]
    again = openmind.train_or_load("bc", Xtr[:100], flipped, hidden=[32], epochs=30, lr=0.03, progress=False)
    assert again.route.decision.value != "CACHED"  # the exact hit was shed
    assert any("shed by the validator" in r for r in excluded(again))
    # same name, data and config: the same key. A version is its key and its content hash: the
    # retrain is judged afresh unless its stored content is bit for bit the shed one
    [new] = [e for e in entries("model", "bc") if e.key == bad.info["key"]]
    assert (new.key, old.blob) in health.shed_versions("bc")
    assert ((new.key, new.blob) in health.shed_versions("bc")) == (new.blob == old.blob)


# --------------------------------------------------------------------------- shedding on evidence


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(2).permutation(len(X))
    return X[idx[:900]], y[idx[:900]], X[idx[900:]], y[idx[900:]]


def test_a_better_version_is_kept_against_10_adversarial_rows(digits):
    """The issue's case: a version clearly better overall, judged on 10 rows chosen where it loses
    (the rows it gets wrong, the older one right when there are such): not enough evidence, both
    kept, the next train_or_load still takes its exact hit."""
    Xtr, ytr, Xte, yte = digits
    old = openmind.train_or_load("dg", Xtr[:150], ytr[:150], hidden=[16], epochs=3, progress=False)
    new = openmind.train_or_load("dg", Xtr, ytr, hidden=[64], epochs=30, progress=False)
    assert new.score(Xte, yte) > old.score(Xte, yte) + 0.05
    lost = (new.predict(Xte) != yte)
    order = np.argsort(~(lost & (old.predict(Xte) == yte)) * 2 + ~lost)  # old right & new wrong first
    bad10 = order[:10]
    assert lost[bad10].all()
    v = openmind.validate("dg", Xte[bad10], yte[bad10])
    assert v.healthy is True and v.verdict.startswith("not enough evidence"), v.verdict
    assert "both versions kept" in v.verdict and v.comparison[0]["delta"] < 0
    assert health.shed_versions("dg") == {}
    again = openmind.train_or_load("dg", Xtr, ytr, hidden=[64], epochs=30, progress=False)
    assert again.route.decision.value == "CACHED" and again.info["key"] == new.info["key"]
    # the level and the minimum are the user's: asked to judge on 10 rows, the test speaks
    strict = openmind.validate("dg", Xte[bad10], yte[bad10], min_rows=10, tolerance=0.0)
    assert strict.comparison[0]["p_worse"] == pytest.approx(0.5 ** strict.comparison[0]["losses"],
                                                            rel=1e-6)


def test_a_worse_version_is_shed_on_500_rows_and_stays_loadable_by_version(digits):
    Xtr, ytr, Xte, yte = digits
    good = openmind.train_or_load("dw", Xtr, ytr, hidden=[64], epochs=30, progress=False)
    rng = np.random.default_rng(3)
    noisy = np.where(rng.random(len(ytr)) < 0.5, rng.integers(0, 10, len(ytr)), ytr)
    bad = openmind.train_or_load("dw", Xtr, noisy, hidden=[16], epochs=4, progress=False)
    v = openmind.validate("dw", Xte[:500], yte[:500])
    assert v.figures["rows"] == 500
    assert v.healthy is False and v.verdict.startswith("shed"), v.verdict
    assert v.comparison[0]["p_worse"] < 0.05 and "p=" in v.verdict
    # passed over by train_or_load, yet loadable by name and version
    again = openmind.train_or_load("dw", Xte[:50], yte[:50], hidden=[64], epochs=2, progress=False)
    assert again.info.get("parent") == good.info["key"]
    from openmind.memory.blobs import entries as listed

    [entry] = [e for e in listed("model", "dw") if e.key == bad.info["key"]]
    loaded = openmind.load_version("dw", health.version(entry))
    assert loaded.pack() == bad.pack()
    assert openmind.load_version("dw", bad.info["key"][:10]).pack() == bad.pack()
    with pytest.raises(BadInput, match="no stored version"):
        openmind.load_version("dw", "ffffffffff")
    with pytest.raises(BadInput, match="level takes a number"):
        openmind.validate("dw", Xte, yte, level="x")


@settings(max_examples=80, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=300))
def test_the_sign_test_never_sheds_a_version_that_loses_no_row(pairs):
    """p_worse is a probability; a version that never loses a row the other wins has p = 1; and
    swapping which is 'mine' turns losses into wins (p of one side small -> of the other large)."""
    from openmind.intents.validate import worse_p

    mine = np.array([a for a, _ in pairs])
    theirs = np.array([b for _, b in pairs])
    p = worse_p(mine, theirs)
    assert 0.0 <= p <= 1.0
    if not np.any(theirs & ~mine):
        assert p == 1.0
    if worse_p(theirs, mine) < 0.05:
        assert p > 0.5
