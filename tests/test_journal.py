"""The journal under concurrent writers, and what one record holds."""

from __future__ import annotations

import json
import multiprocessing as mp
import sqlite3

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
    plan = openmind.route(openmind.Intent.of("sense", name="temperature"), resources=res,
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
