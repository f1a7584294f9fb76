"""A muscle memory that is safe: keys outside the store, every restored payload signed over its
entry, an owner-only store. Each attack is refused: a miss with a warning, nothing unpickled."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import stat

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from team_machine import data

import openmind
from openmind.cli import main as cli
from openmind.memory import keys, team
from openmind.memory.blobs import MemoryWarning, blob_dir, entries, put
from openmind.memory.store import connect


class Boom:
    """Unpickling this creates a file: the proof that a refused payload was never unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _row(key: str) -> dict:
    with connect() as con:
        return dict(con.execute("SELECT * FROM memory WHERE key=?", (key,)).fetchone())


def _rewrite(key: str, change, *, resign: bool) -> None:
    """Change an entry's arrays the way an attacker who can write OPENMIND_HOME would: a valid
    blob under its new content name, the index pointing at it, re-signed with the key in force."""
    from safetensors.numpy import load, save

    row = _row(key)
    arrays = load((blob_dir() / row["blob"]).read_bytes())
    change(arrays)
    blob = save(arrays)
    name = hashlib.sha256(blob).hexdigest() + ".safetensors"
    (blob_dir() / name).write_bytes(blob)
    sig = row["sig"]
    if resign:
        sig = json.dumps(keys.sign(row["kind"], row["name"], key, name, len(blob),
                                   json.loads(row["meta"])))
    with connect(write=True) as con:
        con.execute("UPDATE memory SET blob=?, size=?, sig=? WHERE key=?", (name, len(blob), sig, key))


def _pickle(arrays, name, payload) -> None:
    arrays["p/" + name] = np.frombuffer(payload, dtype=np.uint8)


def test_a_key_planted_in_the_store_signs_nothing(openmind_home, monkeypatch, tmp_path):
    cell = "model = {'kind': 'fitted', 'coef': [1, 2]}"
    first = openmind.run_cell(cell, {})
    planted = tmp_path / "pwned"
    mine = os.environ["OPENMIND_KEY_DIR"]
    monkeypatch.setenv("OPENMIND_KEY_DIR", str(tmp_path / "mallory"))  # the attacker's own key
    _rewrite(first.key, lambda a: _pickle(a, "model", pickle.dumps(Boom(str(planted)))), resign=True)
    (openmind_home / "signing.key").write_bytes(os.urandom(32))  # the old scheme's key file
    monkeypatch.setenv("OPENMIND_KEY_DIR", mine)
    ns: dict = {}
    with pytest.warns(MemoryWarning, match="refused, nothing was restored.*does not trust"):
        again = openmind.run_cell(cell, ns)
    assert not planted.exists() and not again.cached and ns["model"]["coef"] == [1, 2]


def _tiny_model():
    X, y = data()
    return openmind.train_or_load("tamper", X, y, epochs=2, hidden=[8], progress=False)


def test_a_key_directory_inside_the_store_is_refused(openmind_home, monkeypatch):
    monkeypatch.setenv("OPENMIND_KEY_DIR", str(openmind_home / "keys"))
    with pytest.warns(MemoryWarning, match="inside OPENMIND_HOME.*Point OPENMIND_KEY_DIR elsewhere"):
        openmind.run_cell("x = 1", {})
    assert entries() == [] and not (openmind_home / "keys").exists()


def test_a_repointed_weight_blob_is_refused(recwarn):
    model = _tiny_model()
    key = entries("model")[0].key
    weights = next(k for k, v in _arrays(key).items() if v.dtype.kind == "f" and v.size > 4)
    _rewrite(key, lambda a: a.__setitem__(weights, np.full_like(a[weights], 666)), resign=False)
    with pytest.warns(MemoryWarning, match="signature does not verify"):
        again = _tiny_model()
    assert not again.info.get("cached") and again.route.pathway.value == "full_train"
    assert not any(np.any(v == 666) for v in _arrays(entries("model")[0].key).values())
    del model


def _arrays(key: str) -> dict:
    from safetensors.numpy import load

    return load((blob_dir() / _row(key)["blob"]).read_bytes())


def test_an_array_blob_changed_in_place_is_a_miss():
    first = openmind.run_cell("w = np.arange(8.0)", {"np": np})
    path = blob_dir() / _row(first.key)["blob"]
    data = bytearray(path.read_bytes())
    data[-8:] = np.float64(666).tobytes()
    path.write_bytes(bytes(data))
    ns = {"np": np}
    with pytest.warns(MemoryWarning, match="does not match its hash"):
        assert not openmind.run_cell("w = np.arange(8.0)", ns).cached
    assert ns["w"][-1] == 7.0


def test_a_payload_moved_to_another_entry_is_refused():
    one = openmind.run_cell("x = {'v': 1}", {})
    two = openmind.run_cell("x = {'v': 2}", {})
    src = _row(one.key)
    with connect(write=True) as con:  # entry two now holds entry one's blob, meta and signature
        con.execute("UPDATE memory SET blob=?, size=?, meta=?, sig=? WHERE key=?",
                    (src["blob"], src["size"], src["meta"], src["sig"], two.key))
    ns: dict = {}
    with pytest.warns(MemoryWarning, match="signature does not verify.*place"):
        again = openmind.run_cell("x = {'v': 2}", ns)
    assert not again.cached and ns["x"] == {"v": 2}


def _as(monkeypatch, tmp_path, who: str, **env: str) -> None:
    """Switch this process to machine `who`: its home and key directory, and `env`."""
    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path / who / "home"))
    monkeypatch.setenv("OPENMIND_KEY_DIR", str(tmp_path / who / "keys"))
    for k in ("OPENMIND_REMOTE_WRITE", "OPENMIND_TRUST"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    team.reset()


def test_a_manifest_signed_by_an_untrusted_key_is_refused(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    monkeypatch.setenv("OPENMIND_REMOTE", shared.as_uri())
    cell = "obj = {'a': 1}"
    _as(monkeypatch, tmp_path, "ci", OPENMIND_REMOTE_WRITE="1")
    key = openmind.run_cell(cell, {}).key
    ci_line = keys.public_line()
    paths = sorted(shared.rglob(f"{key}.json"))  # the manifest, found by key and by name
    assert len(paths) == 2
    doc = json.loads(paths[0].read_text())
    _as(monkeypatch, tmp_path, "mallory")  # can write the shared store, not the CI's key
    planted = tmp_path / "pwned"
    evil = put("cell", doc["name"], "elsewhere", {"p/obj": np.frombuffer(
        pickle.dumps(Boom(str(planted))), np.uint8), "o/__outputs__": np.frombuffer(b"[]", np.uint8)},
        {**doc["meta"], "values": {"obj": {"as": "pickle"}}})
    blob = (blob_dir() / evil.blob).read_bytes()
    (shared / "blobs" / evil.blob).write_bytes(blob)
    meta = {**doc["meta"], "values": {"obj": {"as": "pickle"}}}
    forged = {**doc, "blob": evil.blob, "size": len(blob), "meta": meta,
              "sig": keys.sign("cell", doc["name"], key, evil.blob, len(blob), meta)}
    for path in paths:
        path.write_text(json.dumps(forged))
    trust = tmp_path / "trust"
    trust.write_text(ci_line + "\n")
    _as(monkeypatch, tmp_path, "laptop", OPENMIND_TRUST=str(trust))
    ns: dict = {}
    with pytest.warns(MemoryWarning, match="which this machine does not trust"):
        again = openmind.run_cell(cell, ns)
    assert not again.cached and not planted.exists() and ns["obj"] == {"a": 1}


def test_a_pickle_from_a_signer_no_longer_trusted_is_never_unpickled(monkeypatch, tmp_path):
    shared = tmp_path / "shared"
    monkeypatch.setenv("OPENMIND_REMOTE", shared.as_uri())
    cell = "obj = {'a': 1}"
    _as(monkeypatch, tmp_path, "ci", OPENMIND_REMOTE_WRITE="1")
    openmind.run_cell(cell, {})
    trust = tmp_path / "trust"
    trust.write_text(keys.public_line() + "\n")
    _as(monkeypatch, tmp_path, "laptop", OPENMIND_TRUST=str(trust))
    assert openmind.run_cell(cell, {}).cached  # trusted: pulled and kept here
    monkeypatch.delenv("OPENMIND_REMOTE")
    trust.write_text("# nobody\n")
    os.utime(trust, ns=(1, 1))  # a new stamp even within the file system's time grain
    calls = []
    monkeypatch.setattr(pickle, "load", lambda *a, **k: calls.append(a))
    with pytest.warns(MemoryWarning, match="does not trust"):
        assert not openmind.run_cell(cell, {}).cached
    assert calls == []


def test_a_trust_file_others_can_write_is_ignored(tmp_path, monkeypatch):
    trust = tmp_path / "trust"
    trust.write_text("ed25519 " + "A" * 43 + "= someone\n")
    trust.chmod(0o666)
    monkeypatch.setenv("OPENMIND_TRUST", str(trust))
    with pytest.warns(UserWarning, match="can be changed by other users.*chmod 644"):
        assert keys.trusted() == {keys.own().public}


def test_a_malformed_trust_line_is_named_and_skipped():
    good = keys.public_line()
    found, problems = keys.parse_trust(f"# team\n{good}\nnot-a-key\n\n", "trust")
    assert found == {keys.own().public} and problems == [
        "trust line 3 is not an Ed25519 public key (expected `ed25519 <base64 of 32 bytes>`, "
        "as `openmind key` prints)"]


def test_the_store_and_its_files_are_owner_only(openmind_home):
    openmind.run_cell("w = np.ones(3)", {"np": np})
    mode = lambda p: stat.S_IMODE(p.stat().st_mode)  # noqa: E731
    assert mode(openmind_home) == 0o700 and mode(blob_dir()) == 0o700
    files = [p for p in openmind_home.iterdir() if p.is_file()] + list(blob_dir().iterdir())
    assert {p.name for p in openmind_home.iterdir()} >= {"openmind.db", "openmind.db-wal",
                                                         "openmind.db-shm"}
    assert files and {mode(p) for p in files} == {0o600}


def test_a_store_made_before_is_tightened(tmp_path, monkeypatch):
    old = tmp_path / "old-home"
    old.mkdir(mode=0o755)
    (old / "openmind.db").touch(mode=0o644)
    monkeypatch.setenv("OPENMIND_HOME", str(old))
    openmind.run_cell("x = 1", {})
    assert stat.S_IMODE(old.stat().st_mode) == 0o700
    assert stat.S_IMODE((old / "openmind.db").stat().st_mode) == 0o600


def test_a_key_directory_open_to_others_is_refused_with_the_fix(capsys):
    keys.own()  # made owner-only
    folder = openmind.config.key_dir()
    keys.forget()
    folder.chmod(0o755)
    with pytest.warns(MemoryWarning, match=f"open to other users.*chmod 700 {folder}"):
        openmind.run_cell("x = 1", {})
    assert entries() == []  # nothing kept unsigned
    assert cli(["key"]) == 2 and f"chmod 700 {folder}" in capsys.readouterr().err
    folder.chmod(0o700)
    assert cli(["key"]) == 0
    line = capsys.readouterr().out.strip()
    assert keys.parse_trust(line) == ({keys.own().public}, []) and len(line.splitlines()) == 1


def test_the_key_is_read_once_per_process():
    first = keys.own()
    path = openmind.config.key_dir() / keys.KEY_FILE
    path.write_bytes(b"garbage")  # changed on disk after the first read: not read again
    assert keys.own() is first and put("cell", "n", "k" * 8, {"a": np.ones(2)}) is not None


def test_gc_verify_evicts_entries_no_trusted_key_signed(capsys):
    signed = openmind.run_cell("x = {'v': 1}", {})
    legacy = openmind.run_cell("x = {'v': 2}", {})
    with connect(write=True) as con:  # as a store kept before entries were signed
        con.execute("UPDATE memory SET sig=NULL WHERE key=?", (legacy.key,))
    assert cli(["memory", "gc"]) == 0 and len(entries()) == 2  # a cheap gc reads no signature
    assert cli(["memory", "gc", "--verify"]) == 0
    assert [e.key for e in entries()] == [signed.key]


_text = st.text(min_size=1, max_size=20)
_meta = st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.floats(allow_nan=False),
                                                       st.text(max_size=8), st.booleans()), max_size=4)
_FIELDS = ("kind", "name", "key", "blob", "size", "meta")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entry=st.fixed_dictionaries({"kind": _text, "name": _text, "key": _text, "blob": _text,
                                    "size": st.integers(0, 2**40), "meta": _meta}),
       field=st.sampled_from(_FIELDS), other=st.data())
def test_a_signature_holds_for_its_entry_and_no_other(entry, field, other):
    """Property: a signature verifies for exactly the entry it was made for; changing any one
    field (the payload's hash, its size, metadata, kind, name or key) makes it refused."""
    sig = keys.sign(**entry)
    assert keys.verify(sig, **entry) == keys.own().id
    strategy = {"size": st.integers(0, 2**40), "meta": _meta}.get(field, _text)
    changed = other.draw(strategy.filter(lambda v: v != entry[field]
                                         and keys.canonical_meta({"v": v}) !=
                                         keys.canonical_meta({"v": entry[field]})))
    with pytest.raises(keys.Refused, match="does not verify"):
        keys.verify(sig, **{**entry, field: changed})
