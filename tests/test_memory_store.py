"""Muscle memory: fingerprints, damage (truncated/deleted blobs, unwritable store), concurrency, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from openmind.cli import main as cli
from openmind.errors import BadInput
from openmind.intents.train import train_or_load
from openmind.memory.blobs import (
    MemoryWarning,
    blob_dir,
    entries,
    fingerprint,
    gc,
    get,
    key_for,
    latest,
    put,
)
from openmind.vocab import Decision, Pathway

SMALL = {"hidden": [16], "epochs": 5, "progress": False}


def _data(n: int = 200, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    return rng.normal(size=(n, 4)) + 3 * y[:, None], y


def test_fingerprint_depends_on_content_dtype_shape_not_strides():
    a = np.arange(24, dtype=np.float64).reshape(4, 6)
    assert fingerprint(a) == fingerprint(a.copy())
    assert fingerprint(a[:, ::2]) == fingerprint(np.ascontiguousarray(a[:, ::2]))
    assert fingerprint(np.asfortranarray(a)) == fingerprint(a)
    b = a.copy()
    b[3, 5] += 1e-12
    assert fingerprint(b) != fingerprint(a)
    assert fingerprint(a.astype(np.float32)) != fingerprint(a)
    assert fingerprint(a.reshape(6, 4)) != fingerprint(a)
    assert fingerprint(a, None) != fingerprint(a)
    assert fingerprint(np.array(["x", 1], dtype=object)) != fingerprint(np.array(["x", 2], dtype=object))


def _trained(name: str = "m", seed: int = 0):
    X, y = _data(seed=seed)
    return X, y, train_or_load(name, X, y, **SMALL)


def test_truncated_blob_is_a_miss_with_a_warning_and_still_a_model():
    X, y, first = _trained()
    (entry,) = entries("model")
    path = blob_dir() / entry.blob
    path.write_bytes(path.read_bytes()[: entry.size // 2])
    with pytest.warns(MemoryWarning, match="unreadable"):
        model = train_or_load("m", X, y, **SMALL)
    assert model.route.pathway == Pathway.FULL_TRAIN  # retrained, and stored afresh
    assert model.pack() == first.pack()  # same seed, same data: same model
    assert get("model", model.info["key"]) is not None  # a new version, readable


def test_deleted_blob_is_a_miss_with_a_warning_and_gc_drops_the_entry():
    X, y, _ = _trained()
    (entry,) = entries("model")
    (blob_dir() / entry.blob).unlink()
    with pytest.warns(MemoryWarning, match="unreadable"):
        assert get("model", entry.key) is None
    assert gc() == 1 and entries() == []
    model = train_or_load("m", X, y, **SMALL)
    assert model.route.pathway == Pathway.FULL_TRAIN and get("model", model.info["key"]) is not None


def test_unwritable_blob_store_warns_and_returns_the_model(openmind_home):
    X, y = _data()
    openmind_home.mkdir(parents=True, exist_ok=True)
    (openmind_home / "blobs").write_text("not a directory")
    with pytest.warns(MemoryWarning, match="could not keep model 'm'"):
        model = train_or_load("m", X, y, **SMALL)
    assert model.info["stored"] is False and model.route.pathway == Pathway.FULL_TRAIN
    assert model.score(X, y) > 0.9


def test_unusable_home_still_gives_a_model(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("OPENMIND_HOME", str(blocker / "home"))
    from openmind.flow.resources import invalidate

    invalidate()
    X, y = _data()
    with pytest.warns(Warning) as caught:
        model = train_or_load("m", X, y, **SMALL)
    texts = " ".join(str(w.message) for w in caught)
    assert "muscle memory" in texts and "journal" in texts
    assert model.route.pathway == Pathway.FULL_TRAIN and model.score(X, y) > 0.9


def test_crash_mid_save_leaves_the_old_entry_intact(openmind_home):
    """A writer killed (SIGKILL) while saving a big blob leaves the index and old blobs whole."""
    old = put("model", "keep", key_for("keep"), {"w": np.arange(10.0)}, {"v": 1})
    code = textwrap.dedent("""
        import numpy as np
        from openmind.memory.blobs import put, key_for
        put("model", "big", key_for("big"), {"w": np.ones(40 * 2**20 // 8)})
        put("model", "keep", key_for("keep"), {"w": np.zeros(40 * 2**20 // 8)})
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], env=dict(os.environ))
    folder = openmind_home / "blobs"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.name.startswith(".tmp-") for p in folder.iterdir()):
            break
        time.sleep(0.002)
    proc.kill()
    proc.wait(10)
    arrays, entry = get("model", old.key)
    assert entry.name == "keep" and (np.array_equal(arrays["w"], np.arange(10.0))
                                     or np.array_equal(arrays["w"], np.zeros(40 * 2**20 // 8)))
    for e in entries():
        assert get("model", e.key) is not None  # every indexed entry is readable


def test_two_processes_training_into_one_store(openmind_home):
    start = openmind_home.parent / "go"
    code = textwrap.dedent(f"""
        import os, sys, time
        import numpy as np
        from openmind.intents.train import train_or_load
        rng = np.random.default_rng(int(sys.argv[2]))
        y = rng.integers(0, 2, size=300)
        X = rng.normal(size=(300, 4)) + 3 * y[:, None]
        while not os.path.exists({str(start)!r}):
            time.sleep(0.01)
        m = train_or_load(sys.argv[1], X, y, hidden=[16], epochs=20, progress=False)
        print(m.route.pathway.value, m.score(X, y))
    """)
    procs = [subprocess.Popen([sys.executable, "-c", code, name, str(i)], stdout=subprocess.PIPE,
                              text=True, env=dict(os.environ))
             for i, name in enumerate(("alpha", "beta"))]
    time.sleep(0.5)
    start.write_text("go")
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert all(o.split()[0] == "full_train" and float(o.split()[1]) > 0.9 for o in outs)
    for name in ("alpha", "beta"):
        hit = latest("model", name)
        assert hit is not None and hit[1].name == name
    assert {e.name for e in entries("model")} == {"alpha", "beta"}


def test_cli_ls_show_rm_gc(capsys):
    X, y, _ = _trained("cli-model")
    put("predictions", "p", key_for("p"), {"v": np.arange(3)})
    assert cli(["memory", "ls"]) == 0
    out = capsys.readouterr().out
    assert "cli-model" in out and "2 entries" in out
    assert cli(["memory", "ls", "--kind", "model", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [e["name"] for e in listed] == ["cli-model"]
    key = listed[0]["key"]
    assert cli(["memory", "show", key[:8]]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["meta"]["classes"]["values"] == [0, 1]
    assert cli(["memory", "rm", "abc"]) == 2  # too short: a clear error, nothing removed
    assert "at least 6 characters" in capsys.readouterr().err
    assert cli(["memory", "rm", key[:10]]) == 0
    assert "removed 1 entry" in capsys.readouterr().out
    assert [e.kind for e in entries()] == ["predictions"]
    assert cli(["memory", "gc", "--max-bytes", "1"]) == 0
    assert "evicted 1 entry" in capsys.readouterr().out
    assert entries() == [] and not any(blob_dir().iterdir())
    with pytest.raises(BadInput, match="cannot read size"):
        from openmind.memory.cli import parse_size

        parse_size("lots")


def test_cached_ancestor_with_other_features_is_not_served():
    from openmind.errors import AllPathwaysFailed

    X, y, _ = _trained("shape")
    with pytest.raises(AllPathwaysFailed, match="takes 4 features") as err:
        train_or_load("shape", X[:, :3], y, fallback="cached", **SMALL)
    assert [a.pathway for a in err.value.attempts] == [Pathway.FINE_TUNE, Pathway.MUSCLE_MEMORY]
    model = train_or_load("shape", X[:, :3], y, **SMALL)  # default fallback: trains afresh
    assert (model.route.pathway, model.route.decision) == (Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert model.route.attempts[0].outcome == "failed"


def _store_in_child(home: str, key: str, value: float) -> None:
    import os

    os.environ["OPENMIND_HOME"] = home
    import numpy as np

    from openmind.memory.blobs import put as p

    p("model", "other", key, {"w": np.full(3, value)}, {"v": value})


def test_the_change_counter_sees_every_writer_and_ignores_use_counts(openmind_home):
    """What memory holds changed (in this process or another) => memory_version changed; a hit
    counting its use does not change it, so a loaded model stays loaded while it is used."""
    import multiprocessing as mp

    from openmind.memory.blobs import get, remove
    from openmind.memory.store import memory_version

    put("model", "m", "key-m-1", {"w": np.zeros(3)}, {})
    v0 = memory_version()
    assert get("model", "key-m-1") is not None  # a hit: its use count is written
    assert memory_version() == v0
    child = mp.get_context("spawn").Process(target=_store_in_child, args=(str(openmind_home), "key-o-1", 1.0))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    v1 = memory_version()
    assert v1 != v0
    remove("key-o-1")
    assert memory_version() not in (v0, v1)


def test_a_model_retrained_by_another_process_is_served_at_the_next_call(openmind_home, digits_model):
    import multiprocessing as mp

    from openmind.intents.infer import load_local_model

    model, Xte, _ = digits_model
    arrays, meta = model.to_arrays()
    put("model", "digits", "digits-v1", arrays, meta)
    first = load_local_model("digits")
    assert load_local_model("digits") is first  # memoised while nothing changed
    child = mp.get_context("spawn").Process(target=_retrain_in_child, args=(str(openmind_home),))
    child.start()
    child.join(120)
    assert child.exitcode == 0
    second = load_local_model("digits")
    assert second is not first and second.key == "digits-v2" and second.meta["retrained"]


def _retrain_in_child(home: str) -> None:
    import os

    os.environ["OPENMIND_HOME"] = home
    from openmind.memory.blobs import latest
    from openmind.memory.blobs import put as p

    arrays, entry = latest("model", "digits")
    p("model", "digits", "digits-v2", arrays, {**entry.meta, "retrained": True})


def test_a_damaged_store_has_no_version_so_no_memo_is_trusted(openmind_home):
    from openmind.intents.infer import load_local_model
    from openmind.memory import store
    from openmind.memory.store import db_path, memory_version

    put("model", "m", "key-m-1", {"w": np.zeros(3)}, {})
    assert memory_version() is not None
    for con, _ino in getattr(store._local, "pool", {}).values():  # as a new process would open it
        con.close()
    store._local.pool = {}
    db = db_path()
    for suffix in ("-wal", "-shm"):
        (db.parent / (db.name + suffix)).unlink(missing_ok=True)
    db.write_bytes(b"this is not a database" * 100)
    assert memory_version() is None
    with pytest.warns(MemoryWarning):
        assert load_local_model("m") is None  # a miss with a warning, never a stale memo
