"""openmind.ingest against a real PostgreSQL server on 127.0.0.1, started by this module with
initdb/pg_ctl in a temporary directory (as a non-root user: PostgreSQL refuses to run as root).
Skips, saying why, where PostgreSQL or psycopg is not installed (`scripts/test.sh` installs it)."""

from __future__ import annotations

import glob
import json
import logging
import os
import pwd
import shutil
import socket
import subprocess
import tempfile

import pytest

import openmind
from openmind.errors import AllPathwaysFailed
from openmind.vocab import Decision, Pathway

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'openmind-cells[sql]')")
pytest.importorskip("sqlalchemy")

PASSWORD = "pg-Secret-77x"


def _bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


def _as_user() -> tuple[list[str], int | None, int | None]:
    """(command prefix, uid, gid) to run the server as a non-root user."""
    if os.geteuid() != 0:
        return [], None, None
    for user in ("postgres", "nobody"):
        try:
            pw = pwd.getpwnam(user)
        except KeyError:
            continue
        if shutil.which("runuser"):
            return ["runuser", "-u", user, "--"], pw.pw_uid, pw.pw_gid
    pytest.skip("running as root with no postgres/nobody user and no runuser to start PostgreSQL")


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    def __init__(self) -> None:
        initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            pytest.skip("PostgreSQL is not installed here (Debian: apt-get install postgresql)")
        self.prefix, uid, gid = _as_user()
        self.dir = tempfile.mkdtemp(prefix="om-pg-")
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(PASSWORD + "\n")
        if uid is not None:
            for p in (self.dir, pwfile):
                os.chown(p, uid, gid)
        self.data = os.path.join(self.dir, "data")
        self.port = _port()
        subprocess.run([*self.prefix, initdb, "-D", self.data, "-U", "omtest", "-E", "UTF8",
                        "--auth=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
                       check=True, capture_output=True, timeout=120)
        self.start()

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        subprocess.run([*self.prefix, self.pg_ctl, "-D", self.data, "-l",
                        os.path.join(self.dir, "log"), "-o", opts, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, timeout=90)

    def stop(self) -> None:
        subprocess.run([*self.prefix, self.pg_ctl, "-D", self.data, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=60)

    def url(self, password: str = PASSWORD, driver: str = "postgresql") -> str:
        return f"{driver}://omtest:{password}@127.0.0.1:{self.port}/postgres"

    def sql(self, *statements: str) -> None:
        with psycopg.connect(host="127.0.0.1", port=self.port, user="omtest", password=PASSWORD,
                             dbname="postgres", autocommit=True) as con:
            for s in statements:
                con.execute(s)


@pytest.fixture(scope="module")
def pg():
    cluster = Cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.dir, ignore_errors=True)


def test_postgres_fetched_unchanged_changed_and_down(pg, caplog):
    pg.sql("DROP TABLE IF EXISTS readings",
           "CREATE TABLE readings (t integer, temp double precision, site text, at date)",
           "INSERT INTO readings VALUES (1, 20.5, 'north', '2026-01-02'), (2, 21.0, 'south', NULL)")
    q = "SELECT t, temp, site, at FROM readings ORDER BY t"
    caplog.set_level(logging.DEBUG)
    first = openmind.ingest(pg.url(), query=q, name="readings")
    assert (first.route.pathway, first.route.decision) == (Pathway.FULL_TRAIN, Decision.HARDCODE)
    assert list(first["site"]) == ["north", "south"] and first["at"][0] == "2026-01-02"
    same = openmind.ingest(pg.url(driver="postgresql+psycopg"), query=q, name="readings")
    assert same.route.decision is Decision.CACHED and not same.route.degraded
    assert same.equals(first)
    pg.sql("INSERT INTO readings VALUES (3, 19.0, 'east', NULL)")
    changed = openmind.ingest(pg.url(), query=q, name="readings")
    assert changed.route.decision is Decision.HARDCODE and len(changed) == 3
    pg.stop()
    try:
        down = openmind.ingest(pg.url(), query=q, name="readings", timeout="5s")
        assert down.route.degraded and len(down) == 3 and "refused" in down.route.degraded
        with pytest.raises(AllPathwaysFailed) as err:
            openmind.ingest(pg.url(), query=q, name="readings", fallback="none", timeout="5s")
    finally:
        pg.start()
    texts = [str(down.route), str(err.value), caplog.text,
             json.dumps(openmind.journal(20), default=str)]
    assert all(PASSWORD not in t for t in texts)


def test_postgres_refusing_a_password_is_the_last_copy_and_never_shows_it(pg):
    pg.sql("CREATE TABLE IF NOT EXISTS tiny (x integer)", "DELETE FROM tiny",
           "INSERT INTO tiny VALUES (7)")
    kept = openmind.ingest(pg.url(), query="SELECT x FROM tiny", name="tiny")
    assert list(kept["x"]) == [7]
    wrong = "not-the-Pw-123"
    # the same database and query with another password: the same source, and it refuses
    refused = openmind.ingest(pg.url(password=wrong), query="SELECT x FROM tiny", name="tiny")
    assert refused.route.decision is Decision.CACHED and list(refused["x"]) == [7]
    assert "password authentication failed" in refused.route.degraded
    with pytest.raises(AllPathwaysFailed) as err:
        openmind.ingest(pg.url(password=wrong), query="SELECT x FROM tiny", fallback="none")
    for text in (str(refused.route), str(err.value), json.dumps(openmind.journal(5), default=str)):
        assert wrong not in text and PASSWORD not in text


def test_postgres_slower_than_the_timeout_is_the_last_copy(pg):
    pg.sql("CREATE TABLE IF NOT EXISTS delay (d double precision)", "DELETE FROM delay",
           "INSERT INTO delay VALUES (0)")
    q = "SELECT 1 AS one FROM (SELECT pg_sleep(d) FROM delay) AS s"
    kept = openmind.ingest(pg.url(), query=q, name="slow")
    assert list(kept["one"]) == [1]
    pg.sql("UPDATE delay SET d = 60")  # the same query now takes a minute
    slow = openmind.ingest(pg.url(), query=q, name="slow", timeout="1s")
    assert slow.route.decision is Decision.CACHED and "statement timeout" in slow.route.degraded
