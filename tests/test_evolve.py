"""Cells that inherit, grow and die: ancestral priors, growth and extinction, colony voting,
through the public train_or_load and the firmware's host build."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits, load_wine

import openmind
from openmind.errors import BadInput
from openmind.pathways.device import Link
from openmind.pathways.ternary.evolve import extinction, fit_prior, plan_extinction
from openmind.pathways.ternary.net import build_net, linears
from openmind.pathways.ternary.packed import PackedModel, TernaryModel

F32 = np.float32


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X.astype(F32), y


def test_a_grown_model_is_stored_journaled_and_predicts_bit_exactly_on_the_device(vdev):
    X, y = load_wine(return_X_y=True)
    X = X.astype(F32)
    model = openmind.train_or_load("wine-grown", X, y, hidden=[12], epochs=40, growth=True,
                                   growth_patience=2, patience=40, progress=False)
    events = model.info["extinctions"]
    assert events and all(e["units_removed"] >= 1 and e["units_born"] >= 1 for e in events)
    assert all({"val_loss_before", "val_loss_after", "width_before", "width_after"} <= set(e) for e in events)
    rec = openmind.journal(1)[0]
    assert rec["summary"]["extinctions"] == events  # the journal records each extinction
    widths = [a.shape[0] for a in model.layers[:-1]]
    assert widths == model.info["hidden_final"]
    # packed bytes round-trip, and the firmware's kernel on a pty gives the same answers bit for bit
    again = PackedModel.from_bytes(model.pack())
    assert np.array_equal(again.scores(X), model.packed().scores(X))
    openmind.deploy(model, "esp32", port=vdev.port)
    with Link(vdev.port) as link:
        got = [link.predict(x) for x in X]
    assert [g[0] for g in got] == model.packed().predict_index(X, exact=True).tolist()
    assert np.array_equal(np.array([g[1] for g in got], F32), model.packed().scores(X))


def test_an_extinction_of_every_unit_is_refused():
    net = build_net(4, [3], 2)
    with pytest.raises(BadInput, match="would remove all 3 units of hidden layer 0"):
        extinction(linears(net), 0, remove=[0, 1, 2], split=[])
    with pytest.raises(BadInput, match="not a hidden layer"):
        extinction(linears(net), 1, remove=[0], split=[])


@settings(max_examples=40, deadline=None)
@given(width=st.integers(2, 12), data=st.data())
def test_splitting_units_keeps_the_function_and_removing_keeps_the_shapes(width, data):
    """Net2Net: a split unit's halves share its outgoing weight, so an fp32 net computes the same."""
    torch.manual_seed(width)
    net = build_net(5, [width], 3, quantize=False)
    mods = linears(net)
    split = data.draw(st.lists(st.integers(0, width - 1), max_size=width, unique=True))
    x = torch.randn(7, 5)
    a, b = extinction(mods, 0, remove=[], split=split)
    grown = torch.nn.Sequential(a, torch.nn.ReLU(), b)
    assert a.weight.shape[0] == width + len(split)
    with torch.no_grad():
        before, after = net(x), grown(x)
    assert torch.allclose(after, before, atol=1e-2 * float(before.abs().max()) + 1e-4)
    remove = data.draw(st.lists(st.integers(0, width - 1), min_size=1, max_size=width - 1, unique=True))
    a2, b2 = extinction(mods, 0, remove=remove, split=[])
    assert a2.weight.shape == (width - len(remove), 5) and b2.weight.shape == (3, width - len(remove))


def test_plan_extinction_kills_the_weakest_and_splits_the_strongest():
    u = np.array([5.0, 0.01, 3.0, 0.02, 4.0, 9.0, 2.0, 1.0])
    die, born = plan_extinction(u)
    assert die == [1, 3] and born == [5]
    die, born = plan_extinction(np.ones(1))  # a one-unit layer never loses its last unit
    assert die == [] and born == [0]


def test_ancestral_init_names_its_ancestors_and_inherits_units(digits):
    X, y = digits
    low = y < 5
    openmind.train_or_load("digits-low", X[low], y[low], hidden=[32], epochs=8, progress=False)
    openmind.train_or_load("wine", *load_wine(return_X_y=True), hidden=[16], epochs=5, progress=False)
    model = openmind.train_or_load("digits-high", X[~low][:200], y[~low][:200], hidden=[32],
                                   epochs=8, init="ancestral", progress=False)
    assert "initialised from the ancestral priors of digits-low, wine" in model.route.reason
    assert model.info["inherited"]["ancestors"] == ["digits-low", "wine"]
    assert model.info["inherited"]["units_inherited"] == 32  # digits-low reads the same 64 pixels


def test_ancestral_init_with_an_empty_memory_is_the_default_init_not_an_error(digits):
    X, y = digits
    model = openmind.train_or_load("alone", X[:300], y[:300], hidden=[16], epochs=3,
                                   init="ancestral", progress=False)
    assert "ancestral" not in model.route.reason and "inherited" not in model.info
    with pytest.raises(BadInput, match="init must be one of default, ancestral"):
        openmind.train_or_load("alone", X[:300], y[:300], init="lamarckian")


def test_fit_prior_keeps_the_ternary_statistics_per_role(digits):
    X, y = digits
    m = openmind.train_or_load("p", X, y, hidden=[24, 16], epochs=3, progress=False)
    prior = fit_prior([m])
    assert set(prior.layers) == {"first", "hidden", "last"}
    first = prior.layers["first"]
    assert 0.0 < first.zero_fraction < 1.0 and first.scale_gain > 0
    assert first.genes[64].shape == (24, 64)
    with pytest.raises(BadInput, match="no ancestor models"):
        fit_prior([])


def test_a_colony_votes_abstains_and_refuses_strangers(digits):
    X, y = digits
    members = [openmind.train_or_load(f"col{s}", X[:1400], y[:1400], hidden=[24], epochs=6,
                                      seed=s, progress=False) for s in range(3)]
    col = openmind.colony(members)
    vote = col.vote(X[1400:])
    trits = col.member_trits(X[1400:])
    assert set(np.unique(trits)) <= {-1, 0, 1}
    assert np.array_equal(vote.scores, trits.sum(axis=0))
    assert np.array_equal(vote.abstained, vote.scores.max(axis=1) < col.quorum)
    sure = ~vote.abstained
    assert (vote.labels[sure] == y[1400:][sure]).mean() >= (vote.labels == y[1400:]).mean()
    assert np.array_equal(col.predict(X[1400:]), vote.labels)
    by_name = openmind.colony(["col0", "col1", "col2"])
    assert np.array_equal(by_name.predict(X[1400:]), vote.labels)
    wine = openmind.train_or_load("w", *load_wine(return_X_y=True), hidden=[8], epochs=2, progress=False)
    with pytest.raises(BadInput, match="share features and classes"):
        openmind.colony([members[0], wine])
    with pytest.raises(BadInput, match="no model named 'nope'"):
        openmind.colony(["col0", "nope"])
    assert isinstance(members[0], TernaryModel)
