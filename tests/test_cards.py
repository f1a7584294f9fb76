"""Cards, signals and progress bars that a person reads at a glance (issue 18), without a browser:
the card's text and HTML from real intent calls, Signal.plot/to_pandas/sparkline, the bar's end."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from html import escape as _html_escape

import numpy as np
import pytest

import openmind
from openmind.intents import present
from openmind.jupyter.card import GLOSSARY, DecisionCard, card_for, plain, relative_path
from openmind.units import human_bytes, human_duration, human_rate


@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X[:300], y[:300]


def _train(digits, **kw):
    X, y = digits
    return openmind.train_or_load("digits", X, y, hidden=[16], epochs=40, patience=4,
                                  progress=False, **kw)


def test_train_card_is_one_line_plus_figures_with_the_rest_folded(digits):
    model = _train(digits)
    card = card_for(model.route)
    head, figs, *rest = card.text().splitlines()
    assert head.startswith("openmind train 'digits' · full_train/HARDCODE · ")
    assert re.search(r" · [\d.]+ (ms|s) · \d\d:\d\d:\d\d$", head)  # how long, then when
    assert "no GPU: no CUDA GPU" not in head  # a reason says a thing once
    assert re.match(r"  accuracy \d+\.\d% · size \d+ B \(\d+× smaller than fp32\) · epochs \d+", figs)
    assert "fingerprint" not in card.text() and "fp32_bytes" not in card.text()
    html = card._repr_html_()
    assert html.count("<details") == 1 and "fingerprint" not in html
    assert "cached_at" not in html and "1.79e+09" not in html
    # the vocabulary explains itself where it appears
    assert f"full_train: {GLOSSARY['full_train'].split(': ', 1)[1]}" in html.replace("&#x27;", "'")
    assert "HARDCODE: compute directly" in html
    # the details say the reason once (the attempt that gave it does not repeat it)
    # its tooltip and the "why" row in full; not the attempt row; the headline says it without
    # the "no GPU" clause (the GPU badge and %openmind status say that once)
    assert html.count(_html_escape(card.reason)) == 2
    assert card.brief == "training 'digits' on CPU (2 cores)" or "GPU" not in card.brief
    assert f">{_html_escape(card.brief)}</span>" in html
    # stopped early: said in words on the figures line
    if model.info["stopped"] == "early_stop":
        assert "(stopped early)" in figs


def test_each_intent_shows_its_own_figures(digits):
    model = _train(digits)
    pred = openmind.infer_adaptive(model, digits[0][:40])
    sig = openmind.sense_or_simulate("temperature", duration="2m", rate="1Hz")
    infer_figs = card_for(pred.route).text().splitlines()[1]
    sense_figs = card_for(sig.route).text().splitlines()[1]
    assert infer_figs.strip().startswith("rows 40 · source ")
    assert sense_figs.strip().startswith("samples 120 (0 real) · rate 1 Hz · lost 0")
    html = card_for(sig.route)._repr_html_()
    # the signal over time, with its time and value axes (once: the signal's own display then
    # shows no second chart in the same cell)
    assert "openmind-signal-chart" in html and "<polyline" in html and html.count("<svg class='openmind-chart") == 1
    assert ">0 s</text>" in html and ">2 min</text>" in html  # the time axis: 120 samples at 1 Hz
    assert "all simulated" in html  # the chart's own title says what it draws


def test_degraded_and_failed_cards_say_so_in_their_state(digits):
    rec = dict(card_for(_train(digits).route).record)
    rec["degraded"] = "stopped at the budget: fewer epochs than asked"
    card = DecisionCard(rec)
    assert card.state == "degraded" and "DEGRADED" in card.text().splitlines()[0]
    html = card._repr_html_()
    assert "data-state='degraded'" in html and "--jp-warn-color1" in html
    assert "fewer epochs than asked" in html
    rec.update(degraded=True)
    assert DecisionCard(rec).degraded == "the result is not what was asked for"
    failed = DecisionCard({**rec, "ok": False, "error": "AllPathwaysFailed: nothing worked"})
    assert failed.state == "failed" and "data-state='failed'" in failed._repr_html_()


def test_notebook_paths_never_absolute_in_a_card(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inside, outside = str(tmp_path / "sub" / "a.ipynb"), "/somewhere/else/b.ipynb"
    assert relative_path(inside) == os.path.join("sub", "a.ipynb")
    assert relative_path(outside) == "b.ipynb" and relative_path("c.ipynb") == "c.ipynb"
    rec = {"intent": "sense", "ok": True, "pathway": "muscle_memory", "decision": "HYBRID",
           "reason": "r", "id": 3, "cell": {"notebook": outside, "execution_count": 2}}
    card = DecisionCard(rec)
    assert "/somewhere" not in card.text() + card._repr_html_()
    assert "b.ipynb" in card.text()


def test_plain_reasons_and_human_numbers():
    assert plain("CPU (2 cores; no GPU: no CUDA GPU: no driver)") == "CPU (2 cores; no CUDA GPU: no driver)"
    assert plain("no device: the port is busy") == "no device: the port is busy"
    assert (human_bytes(948), human_bytes(297208), human_bytes(3.2e9)) == ("948 B", "297 kB", "3.2 GB")
    assert (human_duration(0.0123), human_duration(1.79), human_duration(125)) == ("12 ms", "1.8 s", "2 min 5 s")
    assert human_rate(1) == "1 Hz" and human_rate(1 / 600) == "1 per 10 min"


def _mixed_signal():
    """Half real, half simulated: what a device that died mid-capture leaves (sense.py's Signal)."""
    from openmind.intents.sense import Signal

    t = 1.7e9 + np.arange(100.0)
    real = np.arange(100) < 50
    return Signal("temperature", t, 20 + np.sin(t / 5), "C", "hardware+simulated", 1.0, real)


def test_signal_to_pandas_and_plot():
    pytest.importorskip("pandas")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    sig = _mixed_signal()
    df = sig.to_pandas()
    assert list(df.columns) == ["temperature", "real"] and len(df) == 100
    assert df["real"].sum() == 50 and str(df.index.tz) == "UTC"
    assert np.allclose(df["temperature"].to_numpy(), sig.values)
    ax = sig.plot()
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["real (device)", "simulated"]
    assert [line.get_linestyle() for line in ax.get_lines()] == ["-", "--"]
    assert ax.get_ylabel() == "temperature [C]"


def test_sparkline_tells_real_from_simulated():
    sig = _mixed_signal()
    prev = sig.preview()
    assert len(prev["values"]) == 48 and prev["real"][0] == 1 and prev["real"][-1] == 0
    html = sig._repr_html_()
    assert html.count("<polyline") == 2 and "stroke-dasharray" in html
    assert "50 real" in html
    assert "solid: real" in html


# Under IPython `import openmind` registers the card with the display formatter; the card's
# sparkline comes from the face (openmind.jupyter.plots), so no intent is loaded on the way.
_UNDER_IPYTHON = """
import sys
from IPython.testing.globalipapp import start_ipython
ip = start_ipython()
import openmind
from openmind.vocab import Route
html = ip.display_formatter.formatters["text/html"]
print("card", html.lookup_by_type(Route) is not None)
print("intents", sorted(m for m in sys.modules if m.startswith("openmind.intents.")))
sig = openmind.sense_or_simulate("temperature", "30s", "1Hz", source="simulate", progress=False)
print("signal", "openmind-signal-chart" in sig._repr_html_())
"""


def test_import_openmind_under_ipython_shows_cards_without_loading_an_intent():
    pytest.importorskip("IPython")
    out = subprocess.run([sys.executable, "-c", _UNDER_IPYTHON], env=dict(os.environ),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    assert lines["card"] == "True"  # the registration path ran
    assert lines["intents"] == "['openmind.intents.present']"  # the presenter table, no intent
    assert lines["signal"] == "True"  # and a signal sensed later still draws its chart


def test_a_result_without_a_face_has_no_html_and_a_silent_live_view():
    """The presenter table the intents ask: what a face registered, else nothing (text shows)."""
    assert present.html_of("no-face-for-this", object()) is None
    present.live_view("no-face-for-this", True).update(object(), force=True)  # does nothing
    present.register("a-test-kind", html=lambda v: f"<b>{v}</b>")
    assert present.html_of("a-test-kind", 7) == "<b>7</b>"
    assert isinstance(present.live_view("watch", None), present._Silent)  # no kernel: no chart


def test_the_epoch_bar_follows_the_budget_and_ends_in_the_cards_state():
    """The bar's total is what the budget allows at the pace so far (no ETA toward epochs that
    never run); it ends full in the state the card will show (a budget stop: degraded, in the
    warning colour), with no stop reason in it; an early stop ends green."""
    from openmind.jupyter.charts import progress_html
    from openmind.pathways.ternary.progress import EpochReport, expected_total

    assert expected_total(10, 400, 5.0, 25.0) == 50  # 0.5 s an epoch, 20 s left: 40 more
    assert expected_total(10, 40, 5.0, 25.0) == 40  # never more than asked
    assert expected_total(10, 400, 5.0, None) == 400
    assert expected_total(10, 400, 30.0, 25.0) == 10  # over budget: this one is the last

    class View:
        def __init__(self):
            self.states = []

        def update(self, state, force=False):
            self.states.append(state)

    view = View()
    bar = EpochReport(view, "train digits", 400, 25.0)
    bar.start -= 5.0  # as if 10 epochs took 5 s
    bar.step(10, val_accuracy=0.9, loss=0.3)
    running = view.states[-1]
    assert running["state"] == "running" and 45 <= running["total"] <= 50 and running["left"] <= 20.0
    html = progress_html(running)
    assert "epoch 10 of ~" in html and "of ~400" not in html and "left" in html
    bar.end("budget")
    final = view.states[-1]
    assert final["state"] == "degraded" and final["total"] == final["epoch"] == 10
    html = progress_html(final)
    assert "openmind-progress-degraded" in html and "--jp-warn-color1" in html and "width:100.0%" in html
    assert "budget" not in html and "stopped" not in html  # the card says why, not the bar
    ok = EpochReport(View(), "train digits", 80, None)
    ok.step(52, val_accuracy=0.95)
    ok.end("early_stop")
    assert ok.view.states[-1]["state"] == "ok"
    assert "--jp-success-color1" in progress_html(ok.view.states[-1])
