"""The team tier across machines: two OPENMIND_HOMEs and key directories in separate processes,
sharing moto's S3 server on 127.0.0.1 or a shared directory."""

from __future__ import annotations

import os
import signal
from pathlib import Path

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
    # backfilled: B keeps them without the team store
    del b.env["OPENMIND_REMOTE"]
    again = b.run([{"do": "cell", "code": CELL}, {"do": "model", "name": MODEL}])
    assert all(r["cached"] for r in again["results"])


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
