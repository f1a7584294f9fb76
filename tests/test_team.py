"""The team tier across machines: two OPENMIND_HOMEs and key directories in separate processes,
sharing moto's S3 server on 127.0.0.1 or a shared directory."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from team_fixtures import wait_until

CELL = "w = np.arange(12.0).reshape(3, 4) * 2\nlabel = {'kind': 'fitted', 'n': 3}\nprint('trained')"
MODEL = "team-tiny"


def test_a_cell_and_a_model_kept_on_A_are_hits_on_B(machines):
    a, b = machines("a", write=True), machines("b")
    first = a.run([{"do": "cell", "code": CELL, "show": "w"}, {"do": "model", "name": MODEL}])
    made_cell, made_model = first["results"]
    assert not made_cell["cached"] and not made_model["cached"]
    key_id = first["key"].split()[2]
    b.trust(first["key"])
    second = b.run([{"do": "cell", "code": CELL, "show": "w"}, {"do": "model", "name": MODEL}])
    cell, model = second["results"]
    assert cell["cached"] and cell["value"] == made_cell["value"]
    assert model["cached"] and model["value"] == made_model["value"]
    for hit in (cell, model):
        assert f"from the team's memory, published by {key_id} at " in hit["reason"]
    # backfilled: B keeps them without the team store, and says where they came from
    del b.env["OPENMIND_REMOTE"]
    again = b.run([{"do": "cell", "code": CELL}, {"do": "model", "name": MODEL}])
    assert all(r["cached"] for r in again["results"])
    listing = subprocess.run([sys.executable, "-m", "openmind.cli", "memory", "ls"], env=b.environ(),
                             capture_output=True, text=True, timeout=120).stdout
    assert listing.count(f"from the team, published by {key_id}") == 2, listing


def test_a_reader_without_trust_in_A_reruns_and_says_why(machines):
    a, b = machines("a", write=True), machines("b")
    first = a.run([{"do": "cell", "code": CELL, "show": "w"}])
    second = b.run([{"do": "cell", "code": CELL, "show": "w"}])  # B trusts only itself
    cell = second["results"][0]
    assert not cell["cached"] and cell["decision"] == "HARDCODE"
    assert cell["value"] == first["results"][0]["value"]
    key_id = first["key"].split()[2]
    assert any(f"signed by key {key_id}, which this machine does not trust" in w
               for w in cell["warnings"]), cell["warnings"]


def test_only_a_machine_that_publishes_writes_the_team_store(machines):
    reader, other = machines("reader"), machines("other")
    reader.run([{"do": "cell", "code": CELL}])
    other.trust(reader.run([{"do": "cell", "code": "z = 1"}])["key"])
    assert not other.run([{"do": "cell", "code": CELL}])["results"][0]["cached"]


def test_an_upload_killed_halfway_is_invisible_to_B(machines, tmp_path):
    a, b = machines("a", write=True), machines("b")
    big = "big = np.ones((6_000_000,), dtype=np.float32) * 3\nprint('big')"  # 24 MB: in parts
    flag = tmp_path / "half-uploaded"
    proc = a.start([{"do": "stall", "flag": str(flag), "code": big}])
    try:
        wait_until(lambda: flag.exists() or proc.poll() is not None, 240, "A's upload to stall")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.communicate()
    key = a.run([{"do": "cell", "code": "k = 0"}])["key"]  # A's key line (A's process restarted)
    b.trust(key)
    cell = b.run([{"do": "cell", "code": big}])["results"][0]
    assert not cell["cached"] and cell["decision"] == "HARDCODE"
    assert not any("team" in w for w in cell["warnings"]), cell["warnings"]


def test_nothing_published_names_a_machine_path(machines, team_remote, monkeypatch):
    a = machines("a", write=True)
    a.run([{"do": "cell", "code": CELL}, {"do": "model", "name": MODEL}])
    from openmind.memory.remote import open_remote

    for k, v in team_remote.items():
        monkeypatch.setenv(k, v)
    store = open_remote(team_remote["OPENMIND_REMOTE"], 5.0)
    listed = list(store.list(""))
    texts = [store.get(item.path) or b"" for item in listed if item.path.endswith(".json")]
    assert {p.path.split("/")[0] for p in listed} == {"blobs", "entries", "names"}
    for needle in (str(a.root), str(Path.home()), str(a.keys)):
        assert all(needle not in p.path for p in listed)
        assert all(needle.encode() not in t for t in texts)


class _Silent:
    """A TCP server on 127.0.0.1 that accepts connections and never answers: a hung remote."""

    def __init__(self) -> None:
        import socket
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.accepted: list = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                self.accepted.append(self.sock.accept()[0])
            except OSError:
                return

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"


def test_a_remote_that_hangs_costs_one_timeout_then_is_benched(monkeypatch):
    import warnings

    import openmind
    from openmind.flow.journal import journal
    from openmind.flow.resources import probe

    silent = _Silent()
    for k, v in {"AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value", "AWS_ENDPOINT_URL": silent.url,
                 "OPENMIND_REMOTE": "s3://bucket/team", "OPENMIND_REMOTE_TIMEOUT": "0.5"}.items():
        monkeypatch.setenv(k, v)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = openmind.run_cell("x = 1", {})
    assert not first.cached and len(silent.accepted) >= 1
    said = [str(w.message) for w in caught if "benched" in str(w.message)]
    assert len(said) == 1 and "s3cr3t" not in said[0]
    assert "failed to look up an entry" in said[0] or "failed to list versions" in said[0], said
    seen = len(silent.accepted)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        second = openmind.run_cell("y = 2", {})
    assert not second.cached and len(silent.accepted) == seen and not caught  # not asked again
    assert re.search(r"the team's memory s3://bucket/team failed to (look up an entry|list versions) "
                     r"\(ReadTimeoutError", probe().memory.reason), probe().memory.reason
    assert "benched for 300 s" in probe().memory.reason
    assert "benched for 300 s" in json.dumps(journal(1)[0])


def test_team_gc_spares_pending_uploads_and_fresh_blobs(monkeypatch, tmp_path):
    import openmind
    from openmind.memory import team

    shared = tmp_path / "shared"
    monkeypatch.setenv("OPENMIND_REMOTE", shared.as_uri())
    monkeypatch.setenv("OPENMIND_REMOTE_WRITE", "1")
    openmind.run_cell("kept = np.arange(5)", {"np": np})
    blobs = shared / "blobs"
    (live,) = list(blobs.iterdir())
    old = time.time() - 7200
    for name in ("orphan", "uploading", "fresh"):
        (blobs / f"{name}.safetensors").write_bytes(b"x")
        if name != "fresh":
            os.utime(blobs / f"{name}.safetensors", (old, old))
    (shared / "pending").mkdir(exist_ok=True)
    (shared / "pending" / "w1.json").write_text(json.dumps({"blob": "uploading.safetensors"}))
    os.utime(live, (old, old))
    assert team.gc() == {"entries": 0, "blobs": 1}
    assert sorted(p.name for p in blobs.iterdir()) == sorted(
        [live.name, "uploading.safetensors", "fresh.safetensors"])
    assert team.gc(older_than=0) == {"entries": 1, "blobs": 1}  # evicted by publish time
    assert not (shared / "entries" / "cell").exists() or not any((shared / "entries" / "cell").iterdir())
    assert not list((shared / "names").rglob("*.json"))


def test_only_a_publishing_machine_runs_team_gc(monkeypatch, tmp_path):
    from openmind.errors import BadInput
    from openmind.memory import team

    monkeypatch.setenv("OPENMIND_REMOTE", (tmp_path / "s").as_uri())
    with pytest.raises(BadInput, match="OPENMIND_REMOTE_WRITE=1"):
        team.gc()


def test_a_malformed_remote_is_a_reason_not_a_crash(monkeypatch):
    import openmind
    from openmind.memory.blobs import MemoryWarning

    monkeypatch.setenv("OPENMIND_REMOTE", "ftp://somewhere/dir")
    with pytest.warns(MemoryWarning, match="unknown scheme 'ftp'.*benched"):
        assert not openmind.run_cell("x = 1", {}).cached
    assert openmind.run_cell("x = 1", {}).cached  # local memory still works


def test_team_gc_never_deletes_a_blob_a_writer_is_still_publishing(machines, team_remote, tmp_path,
                                                                   monkeypatch):
    from openmind.memory import team

    a, b = machines("a", write=True), machines("b")
    flag, go = tmp_path / "blob-up", tmp_path / "go"
    proc = a.start([{"do": "gated", "flag": str(flag), "go": str(go), "code": CELL}])
    try:
        wait_until(lambda: flag.exists() or proc.poll() is not None, 240, "A's blob to be up")
        assert proc.poll() is None
        if team_remote["OPENMIND_REMOTE"].startswith("file:"):  # old: only the marker protects it
            old = time.time() - 7200
            for blob in (tmp_path / "shared" / "blobs").iterdir():
                os.utime(blob, (old, old))
        for k, v in {**team_remote, "OPENMIND_REMOTE_WRITE": "1"}.items():
            monkeypatch.setenv(k, v)
        assert team.gc() == {"entries": 0, "blobs": 0}  # another publisher's gc, meanwhile
    finally:
        go.write_text("")
    published = a.result(proc)
    b.trust(published["key"])
    assert b.run([{"do": "cell", "code": CELL}])["results"][0]["cached"]


def test_partial_degraded_or_failed_results_are_never_published(monkeypatch, tmp_path):
    from openmind.memory.blobs import put

    shared = tmp_path / "shared"
    monkeypatch.setenv("OPENMIND_REMOTE", shared.as_uri())
    monkeypatch.setenv("OPENMIND_REMOTE_WRITE", "1")
    arrays = {"w": np.ones(4)}
    for n, meta in enumerate([{"complete": False, "stopped": "budget"}, {"degraded": "stand-in"},
                              {"error": "ValueError"}, {"partial": "2 of 9 epochs"}]):
        assert put("model", "m", f"bad-{n}-key", arrays, meta) is not None  # kept here
    put("labels", "m", "labels-key", arrays, {})  # not a shared kind
    assert not shared.exists() or not list(shared.rglob("*.json"))
    put("model", "m", "good-key", arrays, {"complete": True})
    assert sorted(p.name for p in (shared / "entries").rglob("*.json")) == ["good-key.json"]


def test_a_shared_directory_that_hangs_costs_one_timeout_then_is_benched(monkeypatch, tmp_path):
    import warnings

    import openmind
    from openmind.memory import team
    from openmind.memory.blobs import find, remove

    key = openmind.run_cell("x = 1", {}).key
    name = find(key)[0].name
    remove(key)  # a local miss from now on
    # the manifest where a reader looks for it, by key and by name: opening either for reading
    # blocks, as a file on a hung NFS mount does
    fifos = [tmp_path / "shared" / "entries" / "cell" / f"{key}.json",
             tmp_path / "shared" / team._name_dir("cell", name) / f"{key}.json"]
    for hung in fifos:
        hung.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(hung)
    monkeypatch.setenv("OPENMIND_REMOTE", (tmp_path / "shared").as_uri())
    monkeypatch.setenv("OPENMIND_REMOTE_TIMEOUT", "0.5")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            t0 = time.monotonic()
            assert not openmind.run_cell("x = 1", {}).cached
            first = time.monotonic() - t0
        said = [str(w.message) for w in caught]
        assert any("gave no answer within 0.5 s" in w and "benched" in w for w in said), said
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert not openmind.run_cell("y = 2", {}).cached  # benched: not asked again
        assert not caught and first >= 0.5
    finally:
        for hung in fifos:  # let an abandoned read finish (no reader: nothing to release)
            try:
                os.close(os.open(hung, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
