"""Muscle memory you can trust (issue 11): exact means exact, a fallback says it is one.

Every case goes through the public API (`train_or_load`, `infer_adaptive`) on a real SQLite store;
the policy cases also through a real `%%openmind` cell calling the real `infer_adaptive`.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
import warnings

import numpy as np
import pytest

import openmind
from openmind.errors import AllPathwaysFailed
from openmind.flow.journal import format_records, journal
from openmind.intents.infer import infer_adaptive, load_local_model
from openmind.intents.train import train_or_load
from openmind.memory.blobs import MemoryWarning, blob_dir, entries, gc, put, versions
from openmind.memory.store import db_path
from openmind.vocab import Decision, Pathway

SMALL = {"hidden": [32], "epochs": 6, "progress": False}


@pytest.fixture(autouse=True)
def cache_every_prediction(monkeypatch):
    """These models are tiny: fast inference (issue 12) would not cache their predictions at all;
    the prediction cache is what is under test here."""
    monkeypatch.setattr("openmind.intents.infer.CACHE_MIN_WORK", 0)


def _wine(n: int | None = None):
    from sklearn.datasets import load_wine

    X, y = load_wine(return_X_y=True)
    return (X[:n], y[:n]) if n else (X, y)


def _route(result) -> tuple[Pathway, Decision]:
    return result.route.pathway, result.route.decision


# --------------------------------------------------------------------------- exact means exact


def test_fresh_trains_from_scratch_and_infer_never_serves_the_old_models_predictions():
    X, y = _wine()
    old = train_or_load("wine", X, y, **SMALL)
    before = infer_adaptive("wine", X)
    assert np.array_equal(before.values, old.predict(X))
    again = infer_adaptive("wine", X)
    assert _route(again) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)

    new = train_or_load("wine", X, y, fresh=True, **{**SMALL, "seed": 3})
    # before: fine_tune/HYBRID "cached ancestor + new data" on the same data, under the same key
    assert _route(new) == (Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert "parent" not in new.info and new.route.degraded is None
    assert new.pack() != old.pack()
    assert len(versions("model", "wine")) == 2  # a new version; the old one stays until gc

    after = infer_adaptive("wine", X)
    # before: the old model's cached predictions came back (cache keyed by the index key)
    assert _route(after) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
    assert np.array_equal(after.values, new.predict(X))
    cached = infer_adaptive("wine", X)
    assert _route(cached) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)
    assert np.array_equal(cached.values, new.predict(X))


def test_a_config_change_is_another_request():
    X, y = _wine()
    a = train_or_load("w", X, y, **SMALL)
    b = train_or_load("w", X, y, **{**SMALL, "lr": 0.01})
    assert b.route.pathway != Pathway.MUSCLE_MEMORY and b.config["lr"] == 0.01
    c = train_or_load("w", X, y, **SMALL)
    assert _route(c) == (Pathway.MUSCLE_MEMORY, Decision.CACHED) and c.pack() == a.pack()
    assert c.route.degraded is None


def test_a_budget_cut_run_is_partial_never_exact_for_a_call_that_allows_more():
    X, y = _wine()
    cfg = {"hidden": [32], "epochs": 400, "patience": 400, "progress": False}
    cut = train_or_load("wb", X, y, budget="0.05s", **cfg)
    done = cut.info["epochs"]
    assert cut.info["stopped"] == "budget" and done < 400
    assert cut.route.degraded == f"partial: stopped by the budget after {done} of 400 epochs"
    # the same budget (or a smaller one): the partial run answers it, still marked partial
    same = train_or_load("wb", X, y, budget="0.05s", **cfg)
    assert _route(same) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)
    assert same.pack() == cut.pack() and same.route.degraded == cut.route.degraded
    # no budget: before, the 1-epoch run was the exact hit; now it is resumed
    full = train_or_load("wb", X, y, **cfg)
    assert _route(full) == (Pathway.FINE_TUNE, Decision.HYBRID)
    assert f"resumed after {done} of 400 epochs" in full.route.reason
    assert full.route.degraded is None and full.info["parent"] == cut.info["key"]
    assert train_or_load("wb", X, y, **cfg).pack() == full.pack()


def test_a_cached_model_of_another_config_is_degraded_and_strict_refuses_it():
    X, y = _wine()
    train_or_load("arch", X, y, **SMALL)
    stand_in = train_or_load("arch", X, y, strategy="cached", **{**SMALL, "hidden": [64, 64]})
    assert _route(stand_in) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)
    assert "trained on another config (hidden [32] not [64, 64])" in stand_in.route.degraded
    rec = journal(1)[0]
    assert rec["degraded"] == stand_in.route.degraded
    assert "DEGRADED" in format_records([rec]) and "degraded:" in format_records([rec])
    for strict in ({"strict": True}, {"fallback": "none"}):
        with pytest.raises(AllPathwaysFailed, match="refuses a degraded result"):
            train_or_load("arch", X, y, strategy="cached", **{**SMALL, "hidden": [64, 64]}, **strict)


def test_a_fine_tune_on_another_architecture_trains_full_never_the_cached_model_green():
    X, y = _wine()
    first = train_or_load("ft", X[:100], y[:100], **SMALL)
    model = train_or_load("ft", X[100:], y[100:], **{**SMALL, "hidden": [48, 48]})
    assert model.route.attempts[0].pathway == Pathway.FINE_TUNE
    assert "another architecture" in model.route.attempts[0].error
    assert _route(model) == (Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert model.route.degraded is None and model.pack() != first.pack()
    # fresh on the same data: never a fine-tune, never the cached model
    fresh = train_or_load("ft", X[100:], y[100:], fresh=True, **{**SMALL, "hidden": [48, 48]})
    assert [a.pathway for a in fresh.route.attempts] == [Pathway.FULL_TRAIN]


def test_degraded_card_is_in_the_warning_colour_with_its_reason():
    from openmind.jupyter.card import _OK, _WARN, card_for

    X, y = _wine()
    good = train_or_load("c", X, y, **SMALL)
    bad = train_or_load("c", X, y, strategy="cached", **{**SMALL, "epochs": 7})
    ok_html, bad_html = card_for(good.route)._repr_html_(), card_for(bad.route)._repr_html_()
    assert f"border-left:4px solid {_OK}" in ok_html and "openmind-degraded" not in ok_html
    assert f"border-left:4px solid {_WARN}" in bad_html and "data-degraded='1'" in bad_html
    assert "var(--jp-warn-color1" in _WARN
    assert "DEGRADED</b>: a cached model of &#x27;c&#x27; trained on another config" in bad_html
    assert "DEGRADED" in card_for(bad.route).text()


# --------------------------------------------------------------------------- policy precedence


def test_infer_adaptive_defaults_never_override_the_scope():
    X, y = _wine()
    train_or_load("p", X, y, **SMALL)
    with openmind.policy(strategy="cached"):
        # before: infer_adaptive's own default strategy="adaptive" won and ran the model
        with pytest.raises(AllPathwaysFailed, match="strategy=cached"):
            infer_adaptive("p", X)
        # an argument the caller passed wins over the scope
        local = infer_adaptive("p", X, strategy="local")
        assert _route(local) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
        assert _route(infer_adaptive("p", X)) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)


def test_openmind_infer_cell_with_strategy_cached_reaches_the_real_infer_adaptive():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    X, y = _wine()
    train_or_load("cell", X, y, **SMALL)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")
    ip.user_ns.update(openmind=openmind, X=X)
    with pytest.raises(AllPathwaysFailed), capture_output():
        ip.run_cell_magic("openmind", "infer --strategy cached", "openmind.infer_adaptive('cell', X)")
    rec = journal(1)[0]
    assert rec["policy"]["strategy"] == "cached" and rec["ok"] is False
    with capture_output():
        out = ip.run_cell_magic("openmind", "infer --strategy local",
                                "openmind.infer_adaptive('cell', X)")
    assert _route(out) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
    with capture_output():
        out = ip.run_cell_magic("openmind", "infer --strategy cached",
                                "openmind.infer_adaptive('cell', X)")
    assert _route(out) == (Pathway.MUSCLE_MEMORY, Decision.CACHED)


# --------------------------------------------------------------------------- the store


def _sql(home, statement: str, args: tuple = ()) -> None:
    con = sqlite3.connect(db_path(home))
    with con:
        con.execute(statement, args)
    con.close()


def test_bad_meta_json_is_a_miss_with_a_warning_and_gc_removes_it(openmind_home):
    X, y = _wine()
    train_or_load("bm", X, y, **SMALL)
    _sql(openmind_home, "UPDATE memory SET meta='{not json'")
    with pytest.warns(MemoryWarning, match="unreadable metadata"):
        model = train_or_load("bm", X, y, **SMALL)  # before: a raw JSONDecodeError
    assert model.route.pathway == Pathway.FULL_TRAIN
    with pytest.warns(MemoryWarning, match="unreadable metadata"):
        assert _route(infer_adaptive("bm", X)) == (Pathway.MUSCLE_MEMORY, Decision.HARDCODE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryWarning)
        assert gc() == 1
    assert all(isinstance(e.meta, dict) for e in entries())


def test_an_index_row_with_empty_meta_is_a_miss_not_bad_input(openmind_home):
    X, y = _wine()
    put("model", "em", "em-legacy", {"packed": np.zeros(8, np.uint8)}, {})
    with pytest.warns(MemoryWarning, match="no openmind ternary model"):
        model = train_or_load("em", X, y, **SMALL)  # before: BadInput on every call
    assert model.route.pathway == Pathway.FULL_TRAIN
    _sql(openmind_home, "UPDATE memory SET created=created+100 WHERE key='em-legacy'")  # newest
    with pytest.warns(MemoryWarning, match="no loadable model"):
        assert load_local_model("em").content == versions("model", "em")[1].blob


def test_a_bad_journal_record_is_skipped_with_a_warning(openmind_home, capsys):
    from openmind.cli import main as cli

    X, y = _wine()
    train_or_load("j", X, y, **SMALL)
    train_or_load("j", X, y, **SMALL)
    _sql(openmind_home, "UPDATE journal SET record='{broken' WHERE id=1")
    with pytest.warns(RuntimeWarning, match="journal record #1 is unreadable"):
        recs = journal(10)
    assert [r["id"] for r in recs] == [2]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        assert cli(["log"]) == 0
    assert "muscle_memory/CACHED" in capsys.readouterr().out


def test_a_same_size_corrupt_blob_is_rewritten_and_gc_verify_checks_hashes():
    X, y = _wine()
    train_or_load("blob", X, y, **SMALL)
    (entry,) = entries("model")
    path = blob_dir() / entry.blob
    path.write_bytes(bytes(path.stat().st_size))  # same size, wrong content
    assert gc() == 0  # sizes only: the damage is invisible
    assert gc(verify=True) == 1 and entries() == []  # hashes: found and evicted
    arrays = {"w": np.arange(64.0), "b": np.ones(3, np.float32)}
    first = put("model", "plain", "plain", arrays)
    path = blob_dir() / first.blob
    good = path.read_bytes()
    path.write_bytes(bytes(len(good)))
    again = put("model", "plain", "plain", arrays)  # before: kept the corrupt file
    assert again.blob == first.blob and path.read_bytes() == good


def test_the_store_is_in_wal_mode():
    from openmind.memory.store import connect

    with connect() as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_held_write_lock_costs_a_call_a_second_or_two_and_the_result_comes_back_unstored(openmind_home):
    X, y = _wine()
    train_or_load("lock", X[:60], y[:60], **SMALL)  # the store exists and is migrated
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        con = sqlite3.connect({str(db_path(openmind_home))!r}, isolation_level=None)
        con.execute("BEGIN IMMEDIATE")
        print("held", flush=True)
        time.sleep(30)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        with pytest.warns(Warning) as caught:
            model = train_or_load("lock", X, y, **SMALL)
        took = time.perf_counter() - t0
        assert model.info["stored"] is False
        assert any("could not keep" in str(w.message) for w in caught)
        t1 = time.perf_counter()
        with pytest.warns(Warning):
            pred = infer_adaptive("lock", X[:60])  # before: "memory unavailable: probe timed out"
        took_infer = time.perf_counter() - t1
        # a new process's first connection: nothing to migrate, so no write lock to wait for
        fresh_process = subprocess.run(
            [sys.executable, "-c", "import time, openmind; t = time.perf_counter(); "
             "openmind.journal(1); print(time.perf_counter() - t)"],
            capture_output=True, text=True, timeout=60, check=True)
        first_read = float(fresh_process.stdout.split()[-1])
    finally:
        holder.kill()
        holder.wait()
    assert np.array_equal(pred.values, train_or_load("lock", X[:60], y[:60], **SMALL).predict(X[:60]))
    print(f"with the write lock held: train {took:.2f}s, infer {took_infer:.2f}s, a new "
          f"process's first read {first_read:.2f}s")
    assert took < 2.5 + model.info["train_seconds"] + 2 and took_infer < 4.0
    assert first_read < 0.9  # before: BEGIN IMMEDIATE on every process's first connection


def test_journal_json_keeps_degraded_and_interrupted_fields():
    X, y = _wine()
    train_or_load("f", X, y, **SMALL)
    rec = journal(1)[0]
    assert rec["degraded"] is None and rec["interrupted"] is False
    assert json.loads(json.dumps(rec))["degraded"] is None


# --------------------------------------------------------------------------- Ctrl-C


def _ctrl_c_inside(function: str, filename: str, after: float) -> None:
    """Send a real SIGINT to this process once the main thread has been in `function` (of a file
    ending `filename`) for `after` seconds."""
    import os
    import signal
    import threading

    main = threading.main_thread().ident

    def watch() -> None:
        entered, deadline = None, time.monotonic() + 60
        while time.monotonic() < deadline:
            frame = sys._current_frames().get(main)
            inside = False
            while frame is not None:
                if frame.f_code.co_name == function and frame.f_code.co_filename.endswith(filename):
                    inside = True
                    break
                frame = frame.f_back
            if inside:
                entered = entered or time.monotonic()
                if time.monotonic() - entered >= after:
                    os.kill(os.getpid(), signal.SIGINT)
                    return
            time.sleep(0.01)

    threading.Thread(target=watch, daemon=True).start()


def test_ctrl_c_during_a_device_capture_keeps_the_samples_and_stops_the_cell(vdev, monkeypatch):
    from openmind.intents.sense import sense_or_simulate
    from openmind.pathways.pattern import load as load_pattern

    monkeypatch.setenv("OPENMIND_SERIAL_PORT", vdev.port)
    openmind.probe(refresh=True)
    _ctrl_c_inside("capture", "device.py", after=0.6)
    with pytest.raises(KeyboardInterrupt, match="samples read are kept"):
        # before: the samples read were dropped and the whole signal simulated, green
        sense_or_simulate("temperature", duration="60s", rate="50Hz")
    (cap,) = entries("capture")
    assert cap.name == "temperature" and 5 < cap.meta["received"] < 3000
    assert "interrupted after" in cap.meta["error"]
    pat = load_pattern("temperature")
    assert pat is not None and not pat.synthetic  # fitted to the real samples read
    rec = journal(1)[0]
    assert rec["interrupted"] is True and rec["ok"] is False and "kept" in rec["error"]


# --------------------------------------------------------------------------- time estimates


@pytest.mark.parametrize("dataset", ["digits", "wine", "breast_cancer"])
def test_time_estimate_from_measured_throughput_is_within_2x(dataset):
    from sklearn import datasets

    X, y = getattr(datasets, f"load_{dataset}")(return_X_y=True)
    cfg = {"hidden": [128, 128], "epochs": 30, "patience": 30, "progress": False}
    model = train_or_load(dataset, X, y, **cfg)
    est = journal(1)[0]["plan"]["intent"]["est_seconds"]
    cpu, wall = model.info["train_cpu_seconds"], model.info["train_seconds"]
    ratio = est / cpu
    print(f"{dataset}: estimate {est:.3f}s, actual {cpu:.3f}s CPU ({wall:.3f}s wall on this "
          f"shared machine), estimate/actual {ratio:.2f} (wall {est / wall:.2f})")
    # before: the formula said 216 s for an 8 s run
    assert model.info["stopped"] == "epochs" and 0.5 <= ratio <= 2.0


# --------------------------------------------------------------------------- the GPU


def test_injected_gpu_driver_probe_on_this_cpu_torch_build_is_no_gpu_and_says_how_to_fix():
    import torch

    from openmind.flow.resources import Resources, gpu_from_driver

    assert torch.version.cuda is None  # this machine's torch is a CPU build
    seen = [{"index": 0, "name": "Injected H100", "memory_total": 2**36, "memory_free": 2**36}]
    gpu = gpu_from_driver(seen)  # the driver's answer injected; the torch build is this one's
    assert not gpu.available
    assert "the driver sees Injected H100 but torch" in gpu.reason
    assert "built without CUDA" in gpu.reason and "install a CUDA build of torch" in gpu.reason
    assert gpu_from_driver(seen, build=("12.4", "2.13.0")).available  # both parts: usable
    X, y = _wine()
    model = train_or_load("gpu", X, y, resources=Resources.none(gpu=gpu), **SMALL)
    # before: "training on CUDA", then the CPU, cut at the budget
    assert "CUDA GPU" not in model.route.reason and "built without CUDA" in model.route.reason
    assert model.info["device"] == "cpu" and "device_note" not in model.info


def test_openmind_train_cell_shows_a_degraded_card_and_strict_raises():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from openmind.jupyter.card import MIME

    X, y = _wine()
    train_or_load("cellw", X, y, **SMALL)
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")
    ip.user_ns.update(openmind=openmind, X=X, y=y)
    body = "m = openmind.train_or_load('cellw', X, y, hidden=[16], epochs=6, progress=False)"
    with capture_output() as cap:
        ip.run_cell_magic("openmind", "train --strategy cached", body)
    [card] = [o.data[MIME] for o in cap.outputs if MIME in o.data]
    html = next(o.data["text/html"] for o in cap.outputs if MIME in o.data)
    assert card["degraded"].startswith("a cached model of 'cellw' trained on another config")
    assert "var(--jp-warn-color1" in html and "DEGRADED" in html
    with pytest.raises(AllPathwaysFailed, match="refuses a degraded result"), capture_output():
        ip.run_cell_magic("openmind", "train --strategy cached --strict", body)


def test_ctrl_c_in_an_openmind_train_cell_stops_the_cell_and_keeps_a_partial_version():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    X, y = _wine()
    train_or_load("cc", X, y, **SMALL)  # a cached model the cell must not fall back to
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")
    ip.user_ns.update(openmind=openmind, X=X, y=y)
    ip.user_ns.pop("m", None)
    body = ("m = openmind.train_or_load('cc', X, y, hidden=[32], epochs=5000, patience=5000, "
            "progress=False)")
    _ctrl_c_inside("_fit", "fit.py", after=0.4)
    with pytest.raises(KeyboardInterrupt), capture_output():
        ip.run_cell_magic("openmind", "train", body)
    assert "m" not in ip.user_ns  # before: the cached model came back, green
    cut = versions("model", "cc")[0]
    assert cut.meta["complete"] is False and cut.meta["stopped"] == "interrupted"
    assert journal(1)[0]["interrupted"] is True
