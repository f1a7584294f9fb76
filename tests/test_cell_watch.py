"""What the cell pathway follows at run time (intents/cellwatch.py, celleffects.py): the network
(a real HTTP server on 127.0.0.1), declared inputs for eval, a cell whose reads depend on a flag,
what the journal names, and the re-run path that keeps nothing again."""

from __future__ import annotations

import http.server
import sys
import threading
import time

import numpy as np
import pytest

import openmind
from openmind.intents import cellwatch
from openmind.memory.blobs import entries
from openmind.vocab import Decision


@pytest.fixture
def server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            body = b"42"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()


def test_a_cell_that_reads_the_network_is_kept_as_external_and_a_hit_says_its_age(server):
    cell = "import urllib.request\nanswer = int(urllib.request.urlopen(url).read())"
    first = openmind.run_cell(cell, {"url": server})
    assert not first.cached and entries("cell")[0].meta["external"] > 0
    ns = {"url": server}
    hit = openmind.run_cell(cell, ns)
    assert hit.cached and ns["answer"] == 42 and hit.age is not None
    assert "it read the network when it ran: the outputs are" in hit.route.reason
    assert "old" in hit.route.record["summary"]["age"]
    time.sleep(0.05)  # the entry must be older than the bound below: any age > 0.01 s
    bounded = openmind.run_cell(cell, {"url": server}, max_age=0.01)
    assert not bounded.cached and bounded.route.decision is Decision.HARDCODE
    assert "older than max_age (0.01 s)" in bounded.route.reason


def test_eval_is_uncacheable_unless_the_inputs_are_declared():
    cell = "v = eval('a + 1')"
    result = openmind.run_cell(cell, {"a": 1})
    assert result.uncacheable == "it calls eval(), which reads names openmind cannot follow"
    assert any("not cacheable: it calls eval()" in e["reason"] for e in result.route.record["plan"]["excluded"])
    openmind.run_cell(cell, {"a": 1}, inputs=["a"])
    ns = {"a": 1}
    assert openmind.run_cell(cell, ns, inputs=["a"]).cached and ns["v"] == 2
    changed = {"a": 5}
    assert not openmind.run_cell(cell, changed, inputs=["a"]).cached and changed["v"] == 6
    with pytest.raises(openmind.BadInput, match="inputs must be a list"):
        openmind.run_cell(cell, {"a": 1}, inputs="a")


def test_a_cell_whose_reads_depend_on_a_flag_keeps_one_entry_per_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.txt").write_text("1 2")
    (tmp_path / "b.txt").write_text("3 4")
    cell = "path = f\"{'a' if flag else 'b'}.txt\"\nv = np.loadtxt(path).sum()"  # no file named as is
    for flag in (True, False):
        assert not openmind.run_cell(cell, {"np": np, "flag": flag}).cached
    for flag, want in ((True, 3.0), (False, 7.0)):
        ns = {"np": np, "flag": flag}
        assert openmind.run_cell(cell, ns).cached and ns["v"] == want
    (tmp_path / "b.txt").write_text("30 40")
    ns = {"np": np, "flag": False}
    assert not openmind.run_cell(cell, ns).cached and ns["v"] == 70.0
    ns = {"np": np, "flag": True}
    assert openmind.run_cell(cell, ns).cached  # the other path's file did not change


def test_a_sense_cell_that_touched_no_hardware_is_journaled_as_what_ran():
    result = openmind.run_cell("x = 40 + 2", {}, intent="sense")
    rec = openmind.journal(1)[0]
    assert (rec["intent"], rec["pathway"], rec["decision"]) == ("sense", "full_train", "HARDCODE")
    assert "hardware_in_loop" not in str(rec["plan"]) and "on CPU" in result.route.reason
    hit = openmind.run_cell("x = 40 + 2", {}, intent="sense")
    assert (hit.route.pathway.value, hit.route.decision.value) == ("muscle_memory", "CACHED")


def test_running_again_over_restoring_keeps_nothing_again(monkeypatch):
    from openmind.memory import cells

    cell = "big = signal * 2\ntotal = float(big.sum())"
    openmind.run_cell(cell, {"signal": np.ones(1000)})
    [entry] = entries("cell")
    monkeypatch.setattr("openmind.intents.cell._restore_rate", 1.0)  # restoring looks slow
    kept = []
    monkeypatch.setattr(cells, "keep", lambda *a, **k: kept.append(a) or (None, {}))
    ns = {"signal": np.ones(1000)}
    again = openmind.run_cell(cell, ns)
    assert again.route.decision is Decision.HARDCODE and "quicker than restoring" in str(again.route.record["plan"])
    assert ns["total"] == 2000.0 and kept == [] and entries("cell") == [entry]


def test_one_audit_hook_that_records_only_while_a_remembered_cell_runs(tmp_path):
    path = tmp_path / "seen.txt"
    path.write_text("x")
    assert cellwatch.active() is None
    with cellwatch.watching() as watch:
        path.read_text()
    path.read_text()  # after the block: not recorded anywhere
    assert ("file", str(path)) in watch.deps and cellwatch.active() is None
    hooks_before = cellwatch._hooked
    with cellwatch.watching():
        pass
    assert hooks_before is True and cellwatch._hooked is True  # installed once, never again
    mod = sys.modules["openmind"]
    assert type(mod).__name__ == "module"  # a library's module is never swapped


def test_a_module_attribute_the_cell_sets_is_restored_on_a_hit(tmp_path, monkeypatch):
    (tmp_path / "knobs.py").write_text("LR = 0.1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "knobs", raising=False)
    import knobs

    cell = "knobs.LR = knobs.LR / 10\nlr = knobs.LR"
    openmind.run_cell(cell, {"knobs": knobs})
    assert knobs.LR == pytest.approx(0.01) and type(knobs).__name__ == "module"
    knobs.LR = 0.1  # a new Run All
    ns = {"knobs": knobs}
    assert openmind.run_cell(cell, ns).cached and knobs.LR == pytest.approx(0.01) and ns["lr"] == knobs.LR
    knobs.LR = 0.5
    assert not openmind.run_cell(cell, {"knobs": knobs}).cached and knobs.LR == pytest.approx(0.05)


def test_files_a_thread_that_was_already_running_reads_are_not_the_cells(tmp_path):
    path, mine = tmp_path / "kernel-own.txt", tmp_path / "cells.txt"
    path.write_text("x")
    mine.write_text("y")
    go, done, end = threading.Event(), threading.Event(), threading.Event()

    def kernel_thread():  # like IPython's history thread: running before the cell, and after
        go.wait(10)
        path.read_text()
        done.set()
        end.wait(10)

    threading.Thread(target=kernel_thread, daemon=True).start()
    with cellwatch.watching() as watch:
        go.set()
        assert done.wait(10)
        started = threading.Thread(target=mine.read_bytes)
        started.start()  # a thread the cell starts is the cell's
        started.join()
    end.set()
    assert list(watch.deps) == [("file", str(mine))]


def test_paths_under_the_working_folder_are_kept_relative_so_a_moved_notebook_hits(tmp_path, monkeypatch):
    import shutil

    first, moved = tmp_path / "first", tmp_path / "moved"
    first.mkdir()
    (first / "data.txt").write_text("1 2 3")
    monkeypatch.chdir(first)
    cell = "v = np.loadtxt('data.txt').sum()\nnp.savetxt('out.txt', [v])"
    openmind.run_cell(cell, {"np": np})
    meta = entries("cell")[0].meta
    assert meta["trace"][0][0] == ["file", "data.txt"] and str(tmp_path) not in str(meta)
    shutil.copytree(first, moved, ignore=shutil.ignore_patterns("out.txt"))
    monkeypatch.chdir(moved)
    ns = {"np": np}
    assert openmind.run_cell(cell, ns).cached and ns["v"] == 6.0
    assert (moved / "out.txt").read_text() == (first / "out.txt").read_text()  # written back here


def test_a_remembered_function_is_watched_too(tmp_path):
    path = tmp_path / "rows.txt"
    path.write_text("1\n2\n")

    @openmind.remember
    def total(p):
        return sum(int(v) for v in open(p).read().split())

    assert total(str(path)) == 3 and total(str(path)) == 3
    assert total.last_route.decision is Decision.CACHED
    path.write_text("1\n2\n30\n")
    assert total(str(path)) == 33 and total.last_route.decision is Decision.HARDCODE

    @openmind.remember
    def grow(items):
        items.append(len(items))
        return len(items)

    seen = [0]
    assert grow(seen) == 2 and seen == [0, 1]
    summary = grow.last_route.record["summary"]
    assert summary["uncacheable"] == "it changes its arguments in place"
    assert not any("grow" in e.meta["first_line"] for e in entries("cell"))  # nothing kept


def test_when_openmind_cannot_work_out_what_a_run_changed_the_cell_still_stands(monkeypatch):
    from openmind.intents import celleffects

    def broken(*args, **kwargs):
        raise RuntimeError("bookkeeping broke")

    monkeypatch.setattr(celleffects, "after_cell", broken)
    ns: dict = {}
    result = openmind.run_cell("v = 2 * 21", ns)
    assert ns["v"] == 42 and not result.cached and not entries("cell")
    assert "could not work out what it changed (RuntimeError: bookkeeping broke)" in result.route.reason
