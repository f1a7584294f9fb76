"""The journal under concurrent writers, and what one record holds."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3
import time

import numpy as np

import openmind
from openmind.flow.journal import count, write


def _writer(home: str, who: int, n: int) -> None:
    import os

    os.environ["OPENMIND_HOME"] = home
    from openmind.flow.journal import write as w

    for i in range(n):
        w({"intent": "train", "name": f"w{who}", "ok": True, "pathway": "full_train",
           "decision": "HARDCODE", "reason": f"writer {who} record {i}", "seq": i, "who": who,
           "payload": "x" * (i % 50)})


def test_four_processes_250_records_each(openmind_home):
    count()  # create the schema first, as a kernel would
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(openmind_home), who, 250)) for who in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=240)
        assert p.exitcode == 0, f"writer exited with {p.exitcode}"
    assert count() == 1000
    con = sqlite3.connect(openmind_home / "openmind.db")
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    seen: dict[int, set[int]] = {w: set() for w in range(4)}
    for (text,) in con.execute("SELECT record FROM journal"):
        rec = json.loads(text)  # every row parses: none corrupted
        assert rec["reason"] == f"writer {rec['who']} record {rec['seq']}"
        assert rec["payload"] == "x" * (rec["seq"] % 50)
        seen[rec["who"]].add(rec["seq"])
    assert all(s == set(range(250)) for s in seen.values())


def test_record_holds_cell_intent_policy_attempts_and_result():
    from openmind.flow.context import in_cell

    res = openmind.Resources.none()
    plan = openmind.route(openmind.Intent.of("sense", name="temperature", prior=True), resources=res,
                          fallback="auto", budget="2m")
    with in_cell("cell-abc", 7, "lab.ipynb"):
        result, route = openmind.execute(plan, lambda c: {"n": 3}, resources=res,
                                         summarize=lambda r: {"samples": r["n"]})
    rec = openmind.journal(1)[0]
    assert rec["id"] == route.journal_id
    assert rec["cell"] == {"cell_id": "cell-abc", "execution_count": 7, "notebook": "lab.ipynb"}
    assert rec["intent"] == "sense" and rec["name"] == "temperature"
    assert rec["pathway"] == "muscle_memory" and rec["decision"] == "HYBRID"
    assert rec["policy"]["budget"] == 120.0
    assert rec["attempts"][0]["outcome"] == "ok" and rec["attempts"][0]["duration_ms"] >= 0
    assert rec["summary"] == {"samples": 3}
    assert rec["resources"]["gpu"]["available"] is False
    assert rec["session"]


def test_journal_after_returns_newer_records_oldest_first():
    ids = [write({"intent": "infer", "ok": True, "reason": str(i)}) for i in range(5)]
    newer = openmind.journal(10, after=ids[1])
    assert [r["id"] for r in newer] == ids[2:]
    latest = openmind.journal(2)
    assert [r["id"] for r in latest] == [ids[4], ids[3]]


# --------------------------------------------------------------------------- deferred records


def _infer_and_exit(home: str) -> None:
    """A multiprocessing child: one real infer (its record is deferred), then the child's os._exit."""
    import os

    os.environ["OPENMIND_HOME"] = home

    import openmind as om
    from openmind.flow.resources import Resources
    from openmind.flow.resources.memory import probe_memory

    # the memory probe alone: a loaded machine must not time the whole probe out in a new process
    om.infer_adaptive("digits", np.zeros((1, 64)), strategy="local",
                      resources=Resources.none(memory=probe_memory()))


def test_deferred_infer_records_keep_call_order_with_synchronous_ones_and_reach_the_route(digits_model):
    from openmind.flow.journal import append

    model, Xte, _ = digits_model
    rows = Xte[:2]
    first = openmind.infer_adaptive(model, rows, strategy="local")
    append({"intent": "train", "name": "sync", "ok": True, "reason": "written at once"})
    second = openmind.infer_adaptive(model, rows, strategy="local")
    records = openmind.journal(3)  # a reader flushes what this process deferred
    assert [r["intent"] for r in reversed(records)] == ["infer", "train", "infer"]
    assert first.route.journal_id == records[2]["id"] and second.route.journal_id == records[0]["id"]
    assert first.route.record["id"] == first.route.journal_id  # the card shows the id written


def test_a_deferred_record_reaches_another_reader_within_the_delay(digits_model, openmind_home):
    from openmind.flow.journal import DELAY_S

    model, Xte, _ = digits_model
    openmind.infer_adaptive(model, Xte[:1], strategy="local")
    con = sqlite3.connect(openmind_home / "openmind.db")  # as another process reads: no flush
    deadline = time.monotonic() + DELAY_S + 5.0
    while time.monotonic() < deadline:
        if con.execute("SELECT count(*) FROM journal WHERE intent = 'infer'").fetchone()[0] == 1:
            break
        time.sleep(0.02)
    assert con.execute("SELECT count(*) FROM journal WHERE intent = 'infer'").fetchone()[0] == 1


def test_a_multiprocessing_child_writes_its_deferred_record_before_it_exits(openmind_home, digits_model):
    from openmind.memory.blobs import put

    arrays, meta = digits_model[0].to_arrays()
    put("model", "digits", "digits-for-child", arrays, meta)
    before = count()
    for method in ("spawn", "fork"):
        child = mp.get_context(method).Process(target=_infer_and_exit, args=(str(openmind_home),))
        child.start()
        child.join(120)
        assert child.exitcode == 0
    assert count() == before + 2  # multiprocessing's children leave by os._exit, past atexit


def test_a_forked_child_does_not_write_its_parents_deferred_records(openmind_home):
    from openmind.flow.journal import append, flush

    append({"intent": "infer", "name": "parent", "ok": True}, defer=True)
    child = mp.get_context("fork").Process(target=flush)  # would write the parent's record too
    child.start()
    child.join(60)
    assert child.exitcode == 0
    flush()
    assert [r["name"] for r in openmind.journal(10)] == ["parent"]


def test_records_sharing_a_resources_snapshot_read_back_whole():
    """A record's resources text is reused while the snapshot is the same: each record still reads
    back with its own fields and the snapshot it was written with."""
    from openmind.flow.journal import append
    from openmind.flow.resources import Resource, Resources, probe

    first, other = probe(), Resources.none(host=Resource.present("host", "given", cores=64))
    for i, res in enumerate([first, first, other, first]):
        append({"intent": "infer", "name": f"r{i}", "ok": True, "resources": res.to_dict(),
                "reason": 'has "quotes" and resources'}, defer=i % 2 == 1)
    got = list(reversed(openmind.journal(4)))
    assert [r["name"] for r in got] == ["r0", "r1", "r2", "r3"]
    assert [r["resources"] for r in got] == [json.loads(json.dumps(x.to_dict()))
                                             for x in (first, first, other, first)]
    assert all(r["reason"] == 'has "quotes" and resources' for r in got)
