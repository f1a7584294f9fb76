"""Federated rounds on a real Flower server with real client processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import openmind
from openmind.errors import BadInput
from openmind.memory.blobs import entries

pytest.importorskip("flwr")

from openmind.pathways.colony import federated as fed  # noqa: E402
from openmind.pathways.colony.server import free_port  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- the codec


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 23)),
              elements=st.floats(-1, 1, width=32)),
       arrays(np.float32, st.integers(1, 1), elements=st.floats(-1, 1, width=32)))
def test_a_coded_update_decodes_to_trits_times_a_row_scale_and_never_grows(w, b0):
    b = np.resize(b0, w.shape[0]).astype(np.float32)
    buf = fed.encode_layer(w, b)
    dw, db = fed.decode_layer(buf, w.shape)
    assert dw.shape == w.shape and db.shape == b.shape
    for row, orig in zip(dw, w, strict=True):
        nz = row[row != 0]
        assert len(np.unique(np.abs(nz))) <= 1            # one scale per row
        assert np.all(np.sign(nz) == np.sign(orig[row != 0]))  # the trits keep the signs
    # what the coding leaves out (the residual the client keeps) is smaller than the update
    assert np.linalg.norm(w - dw) <= np.linalg.norm(w) + 1e-5
    assert np.allclose(db, b, atol=2e-3)
    assert len(buf) == 12 + -(-w.size // 5) + 4 * w.shape[0]


@pytest.mark.parametrize("mutate, message", [
    (lambda b: b[:5], "too short"),
    (lambda b: b"XXXX" + b[4:], "not an openmind ternary update"),
    (lambda b: b + b"\0", "must be"),
    (lambda b: b[:12] + b"\xff" + b[13:], "above 242"),
])
def test_a_hostile_update_is_a_clear_error(mutate, message):
    buf = fed.encode_layer(np.ones((4, 10), np.float32), np.zeros(4, np.float32))
    with pytest.raises(BadInput, match=message):
        fed.decode_layer(mutate(buf), (4, 10))


def test_slices_are_non_iid_and_cover_every_row():
    y = np.repeat(np.arange(10), 50)
    parts = fed.slices(y, 3, "dirichlet", 0.5, seed=0)
    assert sorted(np.concatenate(parts).tolist()) == list(range(len(y)))
    shares = np.array([[np.mean(y[p] == c) for c in range(10)] for p in parts])
    assert shares.max() > 0.2  # skewed: some client is dominated by a few classes


# --------------------------------------------------------------------------- real rounds


@pytest.mark.slow
def test_three_client_processes_non_iid_digits_within_2pt_of_centralised(digits_split):
    """A real Flower server, 3 client processes on 127.0.0.1 with Dirichlet(0.5) slices of
    digits, 10 rounds of 2 local epochs; against centralised training of the same model for
    the same number of passes over the data (10 x 2 epochs)."""
    Xtr, Xte, ytr, yte = digits_split
    t0 = time.perf_counter()
    model = openmind.federate("digits", Xtr, ytr, clients=3, rounds=10, local_epochs=2)
    took = time.perf_counter() - t0
    central = openmind.train_or_load("central", Xtr, ytr, hidden=64, lr=1e-2, epochs=20,
                                     progress=False)
    a_fed, a_central = model.score(Xte, yte), central.score(Xte, yte)
    print(f"federated {a_fed:.4f} vs centralised {a_central:.4f}; {took:.1f}s; "
          f"{model.info['bytes_sent']} B ternary vs {model.info['fp32_bytes']} B fp32")
    assert a_fed >= a_central - 0.02, (a_fed, a_central)
    assert model.route.pathway.value == "full_train"
    assert "10 rounds with 3 client processes" in model.route.reason
    # ternary updates: at least 10x fewer bytes than the fp32 updates Flower would send
    assert model.info["fp32_bytes"] >= 10 * model.info["bytes_sent"] > 0
    # a new version of 'digits' in muscle memory; each round journaled, then the call itself
    assert len(entries("model", "digits")) == 1
    rows = openmind.journal(50)[::-1]
    rounds = [r for r in rows if "federated_round" in (r.get("summary") or {})]
    assert [r["summary"]["federated_round"]["round"] for r in rounds] == list(range(1, 11))
    first = rounds[0]["summary"]["federated_round"]
    assert first["clients"] == 3 and first["rows"] > 0 and first["bytes_sent"] > 0
    assert 0 <= first["accuracy"] <= 1
    assert "federated round 1/10: 3 clients" in rounds[0]["reason"]


@pytest.mark.slow
def test_clients_join_with_one_command(tmp_path, digits_split):
    """The server waits at an address; two `openmind colony join` processes bring their rows."""
    Xtr, Xte, ytr, yte = digits_split
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = []
    for k, part in enumerate(np.array_split(np.arange(len(Xtr)), 2)):
        path = tmp_path / f"node{k}.npz"
        np.savez(path, X=Xtr[part], y=ytr[part])
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "openmind.cli", "colony", "join", f"127.0.0.1:{port}",
             "--data", str(path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    try:
        model = openmind.federate("nodes", Xte, yte, clients=2, rounds=2, local_epochs=1,
                                  listen=f"127.0.0.1:{port}", join_timeout=90)
        outs = [p.communicate(timeout=60)[0].decode() for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), outs
    assert all("the colony's server ended the run" in o for o in outs), outs
    assert model.info["rounds"] == 2 and model.info["clients"] == 2
    assert "2 clients joining at 127.0.0.1" in model.route.reason


def test_no_client_is_a_clear_error_within_the_join_timeout(digits_split):
    Xtr, _Xte, ytr, _yte = digits_split
    port = free_port()
    t0 = time.perf_counter()
    with pytest.raises(openmind.AllPathwaysFailed, match=r"only 0 of 2 clients joined.*openmind colony join"):
        openmind.federate("lonely", Xtr[:200], ytr[:200], clients=2, rounds=1,
                          listen=f"127.0.0.1:{port}", join_timeout=3)
    assert time.perf_counter() - t0 < 30


def test_labels_read_from_a_csv_match_numeric_classes():
    spec = fed.Spec(2, [4], np.array([0, 1, 6]), np.zeros(2, np.float32), np.ones(2, np.float32),
                    {"seed": 0, "scale": "layer"})
    assert spec.indices(np.array(["6", "0", "1.0"])).tolist() == [2, 0, 1]
    with pytest.raises(BadInput, match="label '7', which the colony's model does not know"):
        spec.indices(np.array(["7"]))
