"""openmind.ingest (issue 31): files, globs, a real HTTP origin on 127.0.0.1 and real SQLite
files. Fetched now -> full_train/HARDCODE; unchanged (304, same content) -> muscle_memory/CACHED;
unreachable -> the last good copy, CACHED, degraded with its age; max_age and fallback="none"."""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from origin import Origin, start, stop

import openmind
from openmind.errors import AllPathwaysFailed, BadInput
from openmind.memory.blobs import entries
from openmind.vocab import Decision, Pathway

pd = pytest.importorskip("pandas")


def _csv(rows) -> bytes:
    return ("a,b\n" + "".join(f"{a},{b}\n" for a, b in rows)).encode()


def _is(route, pathway, decision, degraded=False):
    assert (route.pathway, route.decision) == (pathway, decision), str(route)
    assert bool(route.degraded) == degraded, str(route)


@pytest.fixture
def origin():
    o = Origin(body=_csv([(1, 2), (3, 4)]))
    server = start(o)
    yield o
    if o.hang is not None:
        o.hang.set()
    stop(server)


# --------------------------------------------------------------------------- files


def test_file_fetched_unchanged_changed_removed(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(_csv([(1, 2), (3, 4)]))
    first = openmind.ingest(str(path))
    _is(first.route, Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert isinstance(first, pd.DataFrame) and first.shape == (2, 2)
    again = openmind.ingest(path)  # a PathLike too
    _is(again.route, Pathway.MUSCLE_MEMORY, Decision.CACHED)
    assert again.equals(first) and "unchanged" not in (again.route.degraded or "")
    path.write_bytes(_csv([(1, 2), (3, 4), (5, 6)]))
    changed = openmind.ingest(str(path))
    _is(changed.route, Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert changed.shape == (3, 2)
    path.unlink()
    kept = openmind.ingest(str(path))
    _is(kept.route, Pathway.MUSCLE_MEMORY, Decision.CACHED, degraded=True)
    assert kept.equals(changed)  # the last good copy, not the first
    assert "old" in kept.route.degraded and "No such file" in kept.route.degraded
    with pytest.raises(AllPathwaysFailed, match="No such file"):
        openmind.ingest(str(path), fallback="none")
    with pytest.raises(AllPathwaysFailed):
        openmind.ingest(str(path), strict=True)
    # two versions of one name, the newest is the three-row copy
    assert [e.meta["rows"] for e in entries("ingest")] == [3, 2]


def test_max_age_bounds_the_copy(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(_csv([(1, 2)]))
    openmind.ingest(str(path))
    path.unlink()
    assert openmind.ingest(str(path), max_age="1h").route.degraded
    t0 = time.time()
    while time.time() < t0 + 0.01:  # the copy is now older than 5 ms
        pass
    with pytest.raises(AllPathwaysFailed) as err:
        openmind.ingest(str(path), max_age=0.005)
    assert "older than max_age=5.0 ms" in str(err.value)
    plan = openmind.route(openmind.Intent.of("ingest", name="d.csv", data_kind="file",
                                             ancestor=True, age_s=7200.0), max_age="1h")
    assert [c.pathway for c in plan] == [Pathway.FULL_TRAIN]
    assert any("older than max_age=1 h" in r for _, r in plan.excluded)


def test_glob_concatenates_and_a_removed_file_is_a_change(tmp_path):
    for i in range(3):
        (tmp_path / f"part-{i}.csv").write_bytes(_csv([(i, i * 10)]))
    df = openmind.ingest(str(tmp_path / "part-*.csv"))
    assert list(df["a"]) == [0, 1, 2] and df.route.pathway is Pathway.FULL_TRAIN
    assert df.route.summary["name"] == "part-all.csv"  # the name a glob is remembered by
    (tmp_path / "part-1.csv").unlink()
    df = openmind.ingest(str(tmp_path / "part-*.csv"), name="parts")
    assert list(df["a"]) == [0, 2] and df.route.decision is Decision.HARDCODE
    for p in tmp_path.glob("part-*.csv"):
        p.unlink()
    df = openmind.ingest(str(tmp_path / "part-*.csv"), name="parts")
    assert list(df["a"]) == [0, 2] and "no file matches" in df.route.degraded


def test_unreadable_file_and_content_that_does_not_parse(tmp_path):
    path = tmp_path / "x.npy"
    buf = io.BytesIO()
    np.save(buf, np.arange(6.0).reshape(3, 2))
    path.write_bytes(buf.getvalue())
    good = openmind.ingest(str(path))
    assert isinstance(good, np.ndarray) and good.shape == (3, 2) and good.route is not None
    path.write_bytes(b"\x93NUMPY garbage")  # not an .npy any more: never kept as a good copy
    bad = openmind.ingest(str(path))
    _is(bad.route, Pathway.MUSCLE_MEMORY, Decision.CACHED, degraded=True)
    assert "not npy" in bad.route.degraded and np.array_equal(bad, good)
    assert len(entries("ingest")) == 1
    path.unlink()
    path.mkdir()  # a directory where the file was: reading it fails
    assert "cannot read" in openmind.ingest(str(path)).route.degraded
    if os.geteuid() != 0:  # root reads a file whatever its mode
        path.rmdir()
        path.write_bytes(buf.getvalue())
        path.chmod(0)
        assert "Permission denied" in openmind.ingest(str(path)).route.degraded


def _write(fmt: str, path, df):
    if fmt == "csv":
        df.to_csv(path, index=False)
    elif fmt == "json":
        df.to_json(path, orient="records")
    elif fmt == "jsonl":
        df.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        pytest.importorskip("pyarrow")
        df.to_parquet(path)
    elif fmt == "npz":
        np.savez(path, a=df["a"].to_numpy(), b=df["b"].to_numpy())


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl", "parquet", "npz"])
def test_formats_round_trip_through_memory(tmp_path, fmt):
    df = pd.DataFrame({"a": [1, 2, 3], "b": [0.5, 1.5, 2.5]})
    path = tmp_path / f"t.{fmt}"
    _write(fmt, path, df)
    fetched = openmind.ingest(str(path))
    path.unlink()
    kept = openmind.ingest(str(path))
    assert kept.route.degraded
    if fmt == "npz":
        assert set(fetched) == {"a", "b"} and np.array_equal(kept["b"], df["b"].to_numpy())
    else:
        pd.testing.assert_frame_equal(pd.DataFrame(kept), df, check_dtype=False)
        pd.testing.assert_frame_equal(pd.DataFrame(kept), pd.DataFrame(fetched))


def test_bad_input_says_what_to_do(tmp_path):
    with pytest.raises(BadInput, match="cannot tell the format"):
        openmind.ingest(str(tmp_path / "data.bin"))
    with pytest.raises(BadInput, match="unknown format"):
        openmind.ingest(str(tmp_path / "d.csv"), format="xls")
    with pytest.raises(BadInput, match="query= needs a database URL"):
        openmind.ingest(str(tmp_path / "d.csv"), query="SELECT 1")
    with pytest.raises(BadInput, match="needs query="):
        openmind.ingest("sqlite:///x.db")
    with pytest.raises(BadInput, match="unknown option 'querry'"):
        openmind.ingest("x.csv", querry="SELECT 1")
    with pytest.raises(BadInput, match="source must be"):
        openmind.ingest(42)
    with pytest.raises(BadInput, match="name"):
        openmind.ingest("x.csv", name="../up")


# --------------------------------------------------------------------------- HTTP


def test_http_changed_content_and_304(origin):
    url = origin.url + "/data/readings.csv"
    first = openmind.ingest(url)
    _is(first.route, Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert "if-none-match" not in origin.requests[-1]
    again = openmind.ingest(url)
    _is(again.route, Pathway.MUSCLE_MEMORY, Decision.CACHED)
    assert again.equals(first)
    assert origin.requests[-1]["if-none-match"] == origin.etag  # a conditional request ...
    assert (origin.bodies_sent, origin.not_modified) == (1, 1)  # ... that downloaded nothing
    assert "304" in again.route.reason
    origin.set(_csv([(7, 8)]))
    changed = openmind.ingest(url)
    _is(changed.route, Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert list(changed["a"]) == [7] and origin.bodies_sent == 2
    origin.validators = False  # a server without validators: same bytes are still "unchanged"
    assert openmind.ingest(url).route.decision is Decision.CACHED


def test_http_server_down_error_and_slow(origin):
    url = origin.url + "/r.csv"
    first = openmind.ingest(url)
    origin.status = 503
    failed = openmind.ingest(url)
    _is(failed.route, Pathway.MUSCLE_MEMORY, Decision.CACHED, degraded=True)
    assert "HTTP 503" in failed.route.degraded and failed.equals(first)
    origin.status = 200
    origin.hang = threading.Event()  # slow: answers only when released
    slow = openmind.ingest(url, timeout="0.3s")
    assert slow.route.degraded and "Timeout" in slow.route.degraded
    origin.hang.set()
    origin.hang = None


def test_http_down_is_the_last_good_copy_and_fallback_none_raises():
    o = Origin(body=_csv([(1, 1)]))
    server = start(o)
    url = o.url + "/x.csv"
    openmind.ingest(url)
    stop(server)  # nothing listens any more
    down = openmind.ingest(url, timeout="2s")
    _is(down.route, Pathway.MUSCLE_MEMORY, Decision.CACHED, degraded=True)
    assert "did not answer" in down.route.degraded and "ConnectError" in down.route.degraded
    with pytest.raises(AllPathwaysFailed, match="ConnectError"):
        openmind.ingest(url, fallback="none", timeout="2s")
    cached = openmind.ingest(url, strategy="cached")  # memory only: asked for, so not degraded
    _is(cached.route, Pathway.MUSCLE_MEMORY, Decision.CACHED)


def test_format_from_content_type(origin):
    origin.body = json.dumps([{"a": 1}, {"a": 2}]).encode()
    origin.content_type = "application/json; charset=utf-8"
    df = openmind.ingest(origin.url + "/api/latest")
    assert list(df["a"]) == [1, 2]
    origin.content_type = "application/octet-stream"
    with pytest.raises(BadInput, match="give format="):
        openmind.ingest(origin.url + "/api/other")


def test_secrets_in_urls_reach_no_journal_card_log_or_error(origin, caplog):
    from openmind.jupyter.card import card_for

    url = origin.url.replace("http://", "http://reader:hunter2-pw@") + "/d.csv?token=tok-SECRET-9&v=2"
    caplog.set_level(logging.DEBUG)
    df = openmind.ingest(url)
    assert origin.basic_user() == "reader:hunter2-pw"  # the credentials were used ...
    origin.status = 500
    failed = openmind.ingest(url)
    with pytest.raises(AllPathwaysFailed) as err:
        openmind.ingest(url, fallback="none")
    shown = [json.dumps(openmind.journal(10), default=str), str(df.route), str(failed.route),
             str(err.value), card_for(failed.route)._repr_html_(), caplog.text,
             json.dumps([e.to_dict() for e in entries("ingest")], default=str)]
    for text in shown:  # ... and shown nowhere
        assert "hunter2-pw" not in text and "tok-SECRET-9" not in text
    assert "token=***" in str(df.route.summary["source"]) and "v=2" in df.route.summary["source"]


# --------------------------------------------------------------------------- SQLite


def _db(path, rows):
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS r (t INTEGER, v REAL, site TEXT)")
    con.execute("DELETE FROM r")
    con.executemany("INSERT INTO r VALUES (?, ?, ?)", rows)
    con.commit()
    con.close()


def test_sqlite_query_unchanged_changed_and_gone(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _db("data.db", [(1, 0.5, "a"), (2, 1.5, "b")])
    q = "SELECT t, v, site FROM r WHERE t >= :lo ORDER BY t"
    first = openmind.ingest("sqlite:///data.db", query=q, params={"lo": 1})
    _is(first.route, Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert list(first.columns) == ["t", "v", "site"] and list(first["site"]) == ["a", "b"]
    same = openmind.ingest("sqlite:///data.db", query=q, params={"lo": 1})
    _is(same.route, Pathway.MUSCLE_MEMORY, Decision.CACHED)
    other = openmind.ingest("sqlite:///data.db", query=q, params={"lo": 2})  # another source
    assert other.route.decision is Decision.HARDCODE and len(other) == 1
    _db("data.db", [(1, 0.5, "a"), (2, 1.5, "b"), (3, 2.5, "c")])
    assert len(openmind.ingest("sqlite:///data.db", query=q, params={"lo": 1})) == 3
    os.remove("data.db")
    gone = openmind.ingest("sqlite:///data.db", query=q, params={"lo": 1})
    _is(gone.route, Pathway.MUSCLE_MEMORY, Decision.CACHED, degraded=True)
    assert len(gone) == 3 and "unable to open" in gone.route.degraded
    assert not os.path.exists("data.db")  # read-only: a missing database is never created


def test_sqlite_through_sqlalchemy_url_form(tmp_path):
    pytest.importorskip("sqlalchemy")
    _db(tmp_path / "d.db", [(1, 0.5, "a")])
    df = openmind.ingest(f"sqlite+pysqlite:///{tmp_path}/d.db", query="SELECT * FROM r")
    assert df.route.decision is Decision.HARDCODE and list(df["v"]) == [0.5]


# --------------------------------------------------------------------------- cells read by content


def test_cells_that_read_it_are_keyed_by_its_content(tmp_path):
    path = tmp_path / "d.csv"
    path.write_bytes(_csv([(1, 2), (3, 4)]))
    ns = {"df": openmind.ingest(str(path))}
    assert openmind.run_cell("total = int(df['a'].sum())", ns).route.decision is Decision.HARDCODE
    ns["df"] = openmind.ingest(str(path))  # unchanged content, a new object
    hit = openmind.run_cell("total = int(df['a'].sum())", ns)
    assert hit.route.decision is Decision.CACHED and ns["total"] == 4
    path.write_bytes(_csv([(1, 2), (5, 4)]))
    ns["df"] = openmind.ingest(str(path))
    miss = openmind.run_cell("total = int(df['a'].sum())", ns)
    assert miss.route.decision is Decision.HARDCODE and ns["total"] == 6


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(-10**6, 10**6), st.integers(-10**6, 10**6)), min_size=1,
                max_size=30))
def test_the_copy_in_memory_is_what_was_fetched(tmp_path, rows):
    path = tmp_path / "h.csv"
    path.write_bytes(_csv(rows))
    fetched = openmind.ingest(str(path), name="h")
    path.unlink()
    kept = openmind.ingest(str(path), name="h")
    assert kept.route.degraded and kept.equals(fetched)
    assert [tuple(r) for r in kept.itertuples(index=False)] == rows


# --------------------------------------------------------------------------- the magic


def test_the_magic_takes_ingest_and_max_age(tmp_path):
    from IPython.core.interactiveshell import InteractiveShell

    from openmind.jupyter.magics import OpenmindMagics

    doc = OpenmindMagics.openmind.__doc__
    assert "ingest" in doc and "--max-age" in doc and "ingest: the oldest last good copy" in doc
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")
    ip.user_ns.update(openmind=openmind, path=str(tmp_path / "m.csv"))
    (tmp_path / "m.csv").write_bytes(_csv([(1, 2)]))
    ip.run_cell_magic("openmind", "ingest --max-age 2h --quiet", "df = openmind.ingest(path)")
    (tmp_path / "m.csv").unlink()
    ip.run_cell_magic("openmind", "ingest --max_age 2h --quiet", "df = openmind.ingest(path)")
    first, second = openmind.journal(2)[::-1]
    assert first["intent"] == second["intent"] == "ingest"
    assert first["policy"]["max_age"] == second["policy"]["max_age"] == 7200.0
    assert second["degraded"] and ip.user_ns["df"].route.decision is Decision.CACHED


def test_fresh_downloads_anew_without_a_conditional_request(origin):
    url = origin.url + "/f.csv"
    openmind.ingest(url)
    again = openmind.ingest(url, fresh=True)
    assert again.route.decision is Decision.HARDCODE
    assert "if-none-match" not in origin.requests[-1] and origin.bodies_sent == 2


_secret = st.text(st.sampled_from("abcdefghijkXYZ0123456789-_.~!$&'()*+,;=%@:/?#"), min_size=6,
                  max_size=24).filter(lambda s: s.strip() == s)


@settings(max_examples=60, deadline=None)
@given(_secret, _secret)
def test_a_dsn_password_or_url_token_never_survives_redaction(password, token):
    from urllib.parse import quote

    from openmind.config import redact, register_source

    dsn = f"postgresql://reader:{quote(password, safe='')}@db.example:5432/sales?sslmode=require"
    url = f"https://api.example/v1/data.csv?access_token={quote(token, safe='')}&day=3"
    for raw, secret in ((dsn, password), (url, token)):
        shown = register_source(raw)
        assert secret not in shown and quote(secret, safe="") not in shown
        text = redact(f"failed: {raw} ({secret})")
        assert secret not in text and quote(secret, safe="") not in text
    assert "db.example:5432/sales" in register_source(dsn) and "day=3" in register_source(url)


def test_only_credential_named_query_values_are_secrets():
    from openmind.config import redact, register_source

    shown = register_source("https://h.example/x.csv?design=bluegreen&apiKey=K3y-v4lue&"
                            "X-Amz-Signature=s1gnature0&page=12")
    assert shown == "https://h.example/x.csv?design=bluegreen&apiKey=***&X-Amz-Signature=***&page=12"
    assert redact("bluegreen K3y-v4lue s1gnature0") == "bluegreen *** ***"


def test_a_damaged_copy_is_a_miss_never_served(origin):
    from openmind.memory.blobs import MemoryWarning, blob_dir

    url = origin.url + "/c.csv"
    first = openmind.ingest(url)
    (entry,) = entries("ingest")
    path = blob_dir() / entry.blob
    path.write_bytes(b"\0" * path.stat().st_size)  # same size, other bytes
    with pytest.warns(MemoryWarning, match="unreadable"):
        again = openmind.ingest(url)  # the 304 names a copy that no longer verifies: ask again
    assert again.route.decision is Decision.HARDCODE and again.equals(first)
    assert origin.bodies_sent == 2 and origin.requests[-1].get("if-none-match") is None
    path = blob_dir() / entries("ingest")[0].blob
    path.write_bytes(b"\0" * path.stat().st_size)
    origin.status = 500
    with pytest.warns(MemoryWarning), pytest.raises(AllPathwaysFailed, match="unreadable"):
        openmind.ingest(url)


# --------------------------------------------------------------------------- the rule (pure)


def _res(memory: bool = True):
    from openmind import Resource, Resources

    given = {"host": Resource.present("host", "2 cores", cores=2),
             "memory": Resource.present("memory", "ready") if memory
             else Resource.absent("memory", "masked", "masked")}
    return Resources.none(**given)


@settings(max_examples=80, deadline=None)
@given(copy=st.booleans(), memory=st.booleans(), age=st.none() | st.floats(0, 1e7),
       max_age=st.none() | st.floats(1e-3, 1e7), fresh=st.booleans(),
       fallback=st.sampled_from(["auto", "cached", "none"]),
       strategy=st.sampled_from(["adaptive", "local", "cloud", "cached"]),
       kind=st.sampled_from(["file", "url", "sql"]))
def test_the_ingest_rule(copy, memory, age, max_age, fresh, fallback, strategy, kind):
    it = openmind.Intent.of("ingest", name="src", data_kind=kind, ancestor=copy,
                            age_s=age if copy else None)
    plan = openmind.route(it, resources=_res(memory), max_age=max_age, fresh=fresh,
                          fallback=fallback, strategy=strategy)
    steps = [(c.pathway, c.decision) for c in plan]
    fetch, kept = (Pathway.FULL_TRAIN, Decision.HARDCODE), (Pathway.MUSCLE_MEMORY, Decision.CACHED)
    too_old = max_age is not None and age is not None and age > max_age
    usable = copy and memory and not too_old
    expect = [] if strategy == "cached" else [fetch]
    if usable:  # fallback="none" plans it too: the executor refuses it there, as degraded
        expect.append(kept)
    assert steps == expect
    if fetch in steps:  # a conditional request only against a copy memory can serve
        assert plan.first.params["conditional"] == (copy and memory and not fresh)
    if copy and memory and too_old:
        assert any("older than max_age" in r for _, r in plan.excluded)
    if kept in steps:  # the copy never jumps ahead of the source (strategy=cloud)
        assert steps[-1] == kept and plan.candidates[-1].params["ancestor"]


def test_the_same_file_name_in_two_folders_is_two_sources(tmp_path, monkeypatch):
    for folder, rows in (("a", [(1, 1)]), ("b", [(2, 2), (3, 3)])):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "d.csv").write_bytes(_csv(rows))
    monkeypatch.chdir(tmp_path / "a")
    assert len(openmind.ingest("d.csv")) == 1
    monkeypatch.chdir(tmp_path / "b")
    df = openmind.ingest("d.csv")  # another file: fetched, not the copy of a/d.csv
    assert df.route.decision is Decision.HARDCODE and len(df) == 2
    (tmp_path / "b" / "d.csv").unlink()
    assert len(openmind.ingest("d.csv")) == 2  # b's own last good copy


_cell = st.one_of(st.none(), st.integers(-2**53, 2**53), st.text(max_size=12),
                  st.floats(allow_nan=False, allow_infinity=False, width=64))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(_cell, _cell), min_size=0, max_size=20))
def test_a_query_result_kept_is_the_result_fetched(tmp_path, rows):
    db = tmp_path / "p.db"
    db.unlink(missing_ok=True)
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (x, y)")  # no declared types: each cell keeps its own
        con.executemany("INSERT INTO t VALUES (?, ?)", rows)
    con.close()
    src = f"sqlite:///{db}"
    fetched = openmind.ingest(src, query="SELECT x, y FROM t ORDER BY rowid", name="p")
    assert [list(r) for r in fetched.astype(object).where(fetched.notna(), None).itertuples(
        index=False)] == [list(r) for r in rows]
    db.unlink()
    kept = openmind.ingest(src, query="SELECT x, y FROM t ORDER BY rowid", name="p")
    assert kept.route.degraded and kept.equals(fetched)
