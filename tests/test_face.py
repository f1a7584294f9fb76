"""The face tells the truth at a glance (issue 27), without a browser: restored outputs marked
before they replay, the error that brought them back on the card's face, own-code titles that
name what the cell binds, plain words before the pills, drift as its own state, the "no GPU"
clause once, a readable result row, the log's dots, the meters' per-kernel CPU, and a monitor
cell that shows one chart and one drift sentence."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import nbformat
import pytest
from hypothesis import given
from hypothesis import strategies as st

import openmind
from openmind.intents.cell import run_cell
from openmind.jupyter.card import DecisionCard, JournalTable
from openmind.jupyter.words import folded, result_rows, title, without_no_gpu
from openmind.units import plural

RESTORE = ("clf = sum(range(n * 100))\npreds = [clf % 7] * 3\nassert n != 4, 'n=4 is not supported'\n"
           "print(f'accuracy {clf / 1e5:.3f}')")


def test_a_restored_cell_is_marked_before_its_outputs_and_its_error_is_on_the_face(capsys):
    ns = {"n": 3}
    first = run_cell(RESTORE, ns, fallback="cached")
    assert not first.cached
    capsys.readouterr()
    ns["n"] = 4
    back = run_cell(RESTORE, ns, fallback="cached")
    shown = capsys.readouterr()
    assert back.cached and back.degraded
    # in a terminal the mark goes to stderr, so stdout stays exactly what the cell printed (the
    # browser test checks that the notebook shows it before the replayed output)
    assert shown.err.startswith("restored outputs, made ")
    assert "because the cell raised AssertionError: n=4 is not supported" in shown.err
    assert shown.out == "accuracy 0.449\n"
    card = DecisionCard(openmind.journal(1)[0])
    assert card.title == "cell → clf, preds"  # what it binds, not its first line of code
    assert card.raised == "AssertionError: n=4 is not supported"
    html = card._repr_html_()
    face = html.split("<details")[0]  # on the face, not behind the disclosure
    assert "openmind-raised" in face and "n=4 is not supported" in face
    figs = dict(card.figures())
    assert figs["names restored"] == "clf, preds" and "time saved" in figs and "made" in figs
    assert card.text().splitlines()[1].startswith("  names restored clf, preds · made ")


def test_an_own_code_run_names_what_it_bound_and_how_long_it_ran():
    run_cell("a = 1\nb = a + 1", {})
    card = DecisionCard(openmind.journal(1)[0])
    assert card.title == "cell → a, b"
    assert card.text().splitlines()[1].startswith("  bound a, b · ran ")
    assert "GPU" not in card.text().splitlines()[0]


@given(st.text(alphabet="abc ,;:()", max_size=30), st.sampled_from(["", " (NVML x)", " (driver)"]))
def test_the_no_gpu_clause_goes_and_the_rest_stays(head, tail):
    reason = f"training 'x' on CPU (2 cores; no GPU: no CUDA GPU: no NVIDIA driver{tail})"
    assert without_no_gpu(reason) == "training 'x' on CPU (2 cores)"
    clean = head.replace(";", ",")
    assert without_no_gpu(clean) == clean  # nothing to take out: nothing changes


def _record(**kw):
    rec = {"id": 7, "intent": "train", "name": "x", "ok": True, "pathway": "full_train",
           "decision": "HARDCODE", "reason": "r", "duration_ms": 1.0, "ts": time.time(), "summary": {}}
    rec.update(kw)
    return rec


def test_deploy_monitor_and_validate_say_it_in_words_before_the_pills():
    header = DecisionCard(_record(intent="deploy", pathway="muscle_memory", decision="HYBRID",
                                  summary={"bytes": 204, "target": "header", "where": "/h/room-1.h"}))
    assert header.route_text == "wrote a C header (204 B)"  # no muscle_memory/HYBRID
    assert "muscle_memory/HYBRID" not in header._repr_html_().split("<details")[0]
    val = DecisionCard(_record(intent="validate", summary={"abstention": 0.2, "accuracy": 0.9,
                                                           "ece": 0.05, "rows": 600}))
    assert val.route_text.startswith("scored 600 rows full_train/HARDCODE")
    assert [k for k, _ in val.figures()][:2] == ["accuracy", "rows"]  # accuracy before abstention


def test_a_drift_is_an_attention_state_of_its_own_never_green():
    events = [{"kind": "error drift", "sample": 608, "detail": "Page–Hinkley"},
              {"kind": "fine-tuned", "sample": 708, "detail": "train_or_load"}]
    mon = _record(intent="monitor", name="room", summary={"events": events, "first_drift": 608,
                                                          "samples": 1200, "state": "watching",
                                                          "errors": 80, "labelled": 1200})
    card = DecisionCard(mon)
    assert card.state == "drift" and "data-state='drift'" in card._repr_html_()
    assert "--openmind-drift-color" in card._repr_html_() and "--jp-success-color1" not in \
        card._repr_html_().split("<details")[0]
    # the events (and the fine-tune they started) go on the monitor's card, not a card each
    ev = _record(intent="monitor", name="room", summary={"event": "error drift", "sample": 608})
    tune = _record(intent="train", name="room", pathway="fine_tune", decision="HYBRID")
    other = _record(intent="train", name="other")
    assert folded([ev, tune, mon, other]) == [mon, other]


def test_the_log_dots_follow_the_state_and_the_grammar_counts():
    rows = [_record(id=1), _record(id=2, degraded="partial: stopped by the budget"),
            _record(id=3, ok=False, pathway=None, decision=None, error="boom")]
    html = JournalTable(rows)._repr_html_()
    dots = [html.split(f"<td style='padding:.15em .5em;border-bottom:1px solid var(--jp-border-color2, "
                       f"rgba(128,128,128,.35));text-align:left'>{i}</td>")[1].split("</tr>")[0] for i in (1, 2, 3)]
    assert "--jp-success-color1" in dots[0]
    assert "--jp-warn-color1" in dots[1] and "--jp-success-color1" not in dots[1]
    assert "--jp-error-color1" in dots[2]
    assert plural(1, "decision") == "1 decision" and plural(2, "decision") == "2 decisions"


def test_the_result_row_reads_as_words_telling_fields_first():
    rows = result_rows({"zeta_count": 3, "version": "0123456789abcdef0123456789abcdef",
                        "accuracy": 0.9, "healthy": True}, shown=set())
    assert rows[0] == ("accuracy", "90.0%")
    assert ("version", "01234567…") in rows and ("healthy", "yes") in rows
    assert ("zeta count", "3") in rows
    html = DecisionCard(_record(intent="other", summary={"key_id": "0123456789abcdef0123456789abcdef",
                                                         "some_value": 2}))._repr_html_()
    assert "0123456789abcdef0123456789abcdef" not in html and "<b>0123" not in html
    assert title(_record(intent="train", name="digits")) == "train 'digits'"


def test_a_kernel_busy_on_cpu_reads_its_cpu_and_the_server_does_not_count_it():
    """The meters sample each process once: the server's children are its kernels, and reading
    a kernel as the server's child first left nothing for the kernel's own row (0 %)."""
    from openmind.jupyter.meters import meters

    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        kernels = [{"id": "k1", "pid": busy.pid, "name": "python3", "path": "a/n.ipynb"}]
        meters(kernels)  # the first reading starts each process's interval
        deadline = time.monotonic() + 30
        seen = 0.0
        while time.monotonic() < deadline:
            time.sleep(0.5)
            m = meters(kernels)
            seen = m["kernels"][0]["cpu_percent"]
            if seen > 30:
                break
        assert seen > 30, f"a busy kernel read {seen} % CPU"
        assert m["kernels"][0]["processes"] == 1 and m["server"]["pid"] == os.getpid()
        assert m["server"]["cpu_percent"] < seen + 100  # the busy child is the kernel's, not the server's
    finally:
        busy.kill()
        busy.wait()


MONITOR_CELLS = [
    "%load_ext openmind.jupyter",
    "import numpy as np, openmind\nrng = np.random.default_rng(1)\ntrain = rng.normal(20, 1, 1200)\n"
    "usual = float(np.median(train))\n"
    "openmind.train_or_load('room', train.reshape(-1, 1), (train > usual).astype(int), hidden=[32], "
    "epochs=30, progress=False)\nstream = rng.normal(20, 1, 1200)\nstream[600:] += 3\n"
    "labels = np.where(np.arange(1200) < 600, stream > usual, stream > usual + 3).astype(int)",
    "%%openmind monitor\nw = openmind.monitor('room', stream, labels=labels, reference=train, "
    "train_options=dict(hidden=[32], epochs=40, lr=0.03, batch_size=16))\nw",
]


@pytest.mark.timeout(300)
def test_a_monitor_cell_shows_one_chart_with_axes_one_drift_sentence_and_no_warnings(tmp_path):
    from openmind.jupyter.run import run_notebook

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in MONITOR_CELLS]
    path = tmp_path / "monitor.ipynb"
    nbformat.write(nb, path)
    result = run_notebook(path, timeout=240)
    assert result.ok, result.error
    outputs = result.notebook.cells[2].outputs
    assert not [o for o in outputs if o.get("name") == "stderr"], "warnings shown under the cell"
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert html.count("openmind-monitor-chart") == 1  # the live chart; `w` then says "chart above"
    assert "chart above" in html and ">sample 0</text>" in html and "openmind-mark" in html
    assert html.count("Page–Hinkley on the error stream") == 1 + 1  # the card's list, the mark's hover
    cards = [o for o in outputs if "openmind-card" in o.get("data", {}).get("text/html", "")]
    assert len(cards) == 1 and "data-state='drift'" in cards[0]["data"]["text/html"]


def test_a_column_constant_but_for_its_last_value_warns_nothing():
    """Digit pixels are mostly zero: a window whose first n-1 values are constant made numpy
    print "invalid value encountered in divide" on red under the monitor cell."""
    import warnings

    import numpy as np

    from openmind.intents.monitor import _lag1

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _lag1(np.array([0.0, 0, 0, 0, 1])) == 0.0
        assert _lag1(np.array([1.0, 0, 0, 0, 0])) == 0.0


@given(st.integers(1, 500), st.integers(1, 500), st.floats(0.001, 100), st.one_of(st.none(), st.floats(0.1, 100)))
def test_the_bar_total_is_never_past_what_was_asked_nor_before_where_it_is(epoch, epochs, elapsed, budget):
    from openmind.pathways.ternary.progress import expected_total

    epoch = min(epoch, epochs)
    total = expected_total(epoch, epochs, elapsed, budget)
    assert epoch <= total <= epochs
    if budget is None:
        assert total == epochs
    elif elapsed >= budget:
        assert total == epoch  # the budget is spent: this epoch is the last


@given(st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), max_size=300))
def test_a_chart_of_any_values_is_one_svg_with_its_axes_or_nothing(values):
    from openmind.jupyter.charts import line_chart

    svg = line_chart(values, marks=[(0.0, "red", "m")])
    finite = [v for v in values if v is not None]
    if not finite:
        assert svg == ""
        return
    assert svg.startswith("<svg") and svg.endswith("</svg>") and svg.count("<svg") == 1
    assert svg.count("<text") == 5  # low and high, first, middle and last
    assert "nan" not in svg and "inf" not in svg


def test_outside_a_cell_every_display_draws_its_chart(monkeypatch):
    """The one-chart-per-cell rule needs a cell: in a script the card and the signal both draw.
    (No shell here, whatever an earlier test in this process started.)"""
    from openmind.jupyter import plots
    from openmind.jupyter.card import card_for

    monkeypatch.setattr(plots, "_count", lambda: None)

    sig = openmind.sense_or_simulate("temperature", "30s", "1Hz", source="simulate", progress=False)
    assert "openmind-signal-chart" in card_for(sig.route)._repr_html_()
    assert "openmind-signal-chart" in sig._repr_html_()
