"""The cell pathway's core with no shell: `openmind.run_cell`, `@openmind.remember`, the signed
cell entries in a real SQLite store, and the routing rule."""

from __future__ import annotations

import ast
import json
import os
import pickle
import re
import stat

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import openmind
from openmind.cli import main
from openmind.flow.policy import Policy
from openmind.flow.resources import Resources, gpu_present, probe
from openmind.flow.router import EARLIER_RUN, Intent, plan_cell
from openmind.intents.cellkey import Fingerprinter, Uncacheable, normalised, reads_and_binds
from openmind.memory.blobs import MemoryWarning, blob_dir, entries
from openmind.memory.store import connect
from openmind.vocab import Decision, IntentKind, Pathway

FIT = "w = np.linalg.lstsq(A, b, rcond=None)[0]\nprint('weights', np.round(w, 3))\nw.sum()"


def data(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"np": np, "A": rng.normal(size=(20, 3)), "b": rng.normal(size=20)}


def how(result) -> tuple[str, str]:
    return result.route.pathway.value, result.route.decision.value


def test_a_hit_restores_the_names_and_the_value_and_replays_the_printed_output(capsys):
    ns = data()
    first = openmind.run_cell(FIT, ns)
    printed = capsys.readouterr().out
    assert how(first) == ("full_train", "HARDCODE") and first.names == ["w"] and printed.startswith("weights")
    again = data()
    hit = openmind.run_cell("# same fit, other comments\nw = np.linalg.lstsq(A,b,rcond = None)[0]\n\n"
                            "print('weights',  np.round(w, 3))\nw.sum()", again)
    assert how(hit) == ("muscle_memory", "CACHED") and hit.cached
    replayed = capsys.readouterr()  # as printed; marked as restored (when made) on stderr
    assert re.match(r"restored outputs, made \d\d:\d\d:\d\d:\n", replayed.err), replayed.err
    assert replayed.out == printed
    np.testing.assert_array_equal(again["w"], ns["w"])
    assert hit.value == first.value and hit.route.degraded is None


def test_new_input_values_a_new_option_or_another_version_miss(monkeypatch):
    openmind.run_cell(FIT, data(0))
    assert how(openmind.run_cell(FIT, data(1))) == ("full_train", "HARDCODE")  # other data
    assert how(openmind.run_cell(FIT, data(0), budget="30s")) == ("full_train", "HARDCODE")
    assert how(openmind.run_cell(FIT, data(0), fresh=True)) == ("full_train", "HARDCODE")
    monkeypatch.setattr("openmind.intents.cell.VERSION", "99.0")
    assert how(openmind.run_cell(FIT, data(0))) == ("full_train", "HARDCODE")


def test_editing_a_helper_two_calls_deep_misses_and_moving_it_does_not():
    ns: dict = {}
    exec("SCALE = 2\ndef inner(x):\n    return x * SCALE\ndef outer(x):\n    return inner(x) + 1", ns)
    ns.pop("__builtins__")
    cell = "out = outer(3)"
    assert openmind.run_cell(cell, ns).route.decision is Decision.HARDCODE and ns["out"] == 7
    assert openmind.run_cell(cell, ns).route.decision is Decision.CACHED
    exec("\n\n\ndef inner(x):\n    # moved and commented\n    return x * SCALE", ns)
    assert openmind.run_cell(cell, ns).route.decision is Decision.CACHED  # same bytecode
    exec("def inner(x):\n    return x * SCALE * 10", ns)
    assert openmind.run_cell(cell, ns).route.decision is Decision.HARDCODE and ns["out"] == 61
    ns["SCALE"] = 3  # a global the helper reads
    assert openmind.run_cell(cell, ns).route.decision is Decision.HARDCODE and ns["out"] == 91


def test_a_value_that_cannot_be_fingerprinted_makes_the_cell_uncacheable_with_the_reason():
    ns = {"rows": (i for i in range(3))}
    result = openmind.run_cell("total = sum(rows)", ns)
    assert result.uncacheable and "'rows' (generator) cannot be fingerprinted" in result.uncacheable
    excluded = result.route.record["plan"]["excluded"]
    assert any("not cacheable: 'rows'" in e["reason"] for e in excluded)
    assert not entries("cell")  # nothing kept
    with pytest.raises(Uncacheable, match="lock"):
        import threading

        Fingerprinter().of(threading.Lock(), "'lock'")


def test_fallback_cached_restores_the_last_good_run_degraded_and_without_it_the_error_is_raised():
    cell = "r = 1 / x\nprint('r is', r)"
    openmind.run_cell(cell, {"x": 4})
    ns = {"x": 0}
    result = openmind.run_cell(cell, ns, fallback="cached")
    assert how(result) == ("muscle_memory", "CACHED") and ns["r"] == 0.25
    assert result.route.degraded == EARLIER_RUN == result.degraded
    assert result.error == "ZeroDivisionError: division by zero"
    rec = result.route.record
    assert rec["summary"]["error"] == result.error and rec["summary"]["degraded"] == EARLIER_RUN
    assert [a["outcome"] for a in rec["attempts"]] == ["failed", "ok"]
    assert openmind.journal(1)[0]["degraded"] == EARLIER_RUN  # the stored row says so too
    with pytest.raises(ZeroDivisionError):  # the user's own error, as is
        openmind.run_cell(cell, {"x": 0})
    assert openmind.journal(1)[0]["ok"] is False


def test_ctrl_c_stops_even_with_an_earlier_run_to_fall_back_on():
    cell = "if stop:\n    raise KeyboardInterrupt\nv = 1"
    openmind.run_cell(cell, {"stop": False})
    ns = {"stop": True}
    with pytest.raises(KeyboardInterrupt):
        openmind.run_cell(cell, ns, fallback="cached")
    assert "v" not in ns
    assert openmind.journal(1)[0]["attempts"][0]["outcome"] == "interrupted"


def test_a_cell_that_makes_an_openmind_call_is_not_kept():
    cell = "sig = openmind.sense_or_simulate('temperature', duration='2s', rate='1Hz', progress=False)"
    openmind.run_cell(cell, {"openmind": openmind})
    assert not entries("cell")


class Boom:
    """Unpickling this would create a file: the proof that a refused blob was never unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _retamper(key: str, name: str, payload: bytes) -> None:
    """Replace one pickle inside a stored entry consistently (a valid blob, a new content name,
    the index pointing at it): only the signature can tell."""
    from safetensors.numpy import load, save

    with connect() as con:
        row = con.execute("SELECT blob FROM memory WHERE key=?", (key,)).fetchone()
    arrays = load((blob_dir() / row["blob"]).read_bytes())
    arrays["p/" + name] = np.frombuffer(payload, dtype=np.uint8)
    blob = save(arrays)
    import hashlib

    new = hashlib.sha256(blob).hexdigest() + ".safetensors"
    (blob_dir() / new).write_bytes(blob)
    with connect(write=True) as con:
        con.execute("UPDATE memory SET blob=?, size=? WHERE key=?", (new, len(blob), key))


def test_a_tampered_pickle_is_refused_without_being_unpickled(tmp_path):
    cell = "model = {'kind': 'fitted', 'coef': [1, 2]}\nprint('fitted')"
    first = openmind.run_cell(cell, {})
    assert entries("cell")[0].meta["values"]["model"] == {"as": "pickle"}
    planted = tmp_path / "pwned"
    _retamper(first.key, "model", pickle.dumps(Boom(str(planted))))
    ns: dict = {}
    with pytest.warns(MemoryWarning, match="refused, nothing was restored.*signature does not verify"):
        again = openmind.run_cell(cell, ns)
    assert not planted.exists()  # never unpickled
    assert how(again) == ("full_train", "HARDCODE") and ns["model"]["kind"] == "fitted"


def test_a_blob_signed_with_another_machines_key_is_refused(openmind_home, monkeypatch, tmp_path):
    first = openmind.run_cell("obj = {'a': 1}", {})
    monkeypatch.setenv("OPENMIND_KEY_DIR", str(tmp_path / "another-machine"))  # another key
    with pytest.warns(MemoryWarning, match="which this machine does not trust"):
        again = openmind.run_cell("obj = {'a': 1}", {})
    assert again.route.decision is Decision.HARDCODE and first.key == again.key


def test_the_signing_key_is_created_private_and_outside_the_store(openmind_home):
    openmind.run_cell("x = [1]", {})
    folder = openmind.config.key_dir()
    assert not str(folder).startswith(str(openmind_home))
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert [stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()] == [0o600]
    assert not any(p.name.endswith(".key") for p in os.scandir(openmind_home))


def test_arrays_and_tensors_are_kept_in_safetensors_not_pickled():
    import torch

    cell = "arr = np.arange(6.0).reshape(2, 3)\nt = torch.ones(3, requires_grad=True)\nlabel = 'x'"
    openmind.run_cell(cell, {"np": np, "torch": torch})
    how_kept = entries("cell")[0].meta["values"]
    assert how_kept["arr"] == {"as": "numpy"} and how_kept["t"]["as"] == "torch"
    assert how_kept["label"] == {"as": "pickle"}
    ns = {"np": np, "torch": torch}
    assert openmind.run_cell(cell, ns).cached
    assert isinstance(ns["t"], torch.Tensor) and ns["t"].requires_grad
    np.testing.assert_array_equal(ns["arr"], np.arange(6.0).reshape(2, 3))


def test_functions_and_imports_defined_in_the_cell_are_rerun_not_pickled():
    cell = "import math\ndef area(r):\n    return math.pi * r * r\nA = area(2)"
    openmind.run_cell(cell, {})
    assert set(entries("cell")[0].meta["values"]) == {"A"}
    ns: dict = {}
    assert openmind.run_cell(cell, ns).cached
    assert ns["area"](1) == pytest.approx(3.14159, rel=1e-4) and ns["A"] == pytest.approx(12.566, rel=1e-4)


def test_remember_keys_on_the_code_and_the_argument_contents():
    @openmind.remember
    def total(values, scale=1):
        return float(np.sum(values)) * scale

    def served(*args, **kwargs):
        return total(*args, **kwargs), total.last_route.decision

    assert served(np.arange(4)) == (6.0, Decision.HARDCODE)
    assert served(np.arange(4)) == (6.0, Decision.CACHED)
    assert served(np.arange(5)) == (10.0, Decision.HARDCODE)
    assert served(np.arange(4), scale=2) == (12.0, Decision.HARDCODE)


def test_remember_with_fallback_cached_returns_the_last_result_degraded():
    @openmind.remember(fallback="cached")
    def invert(x):
        return 1 / x

    assert invert(2) == 0.5
    assert invert(0) == 0.5 and invert.last_route.degraded == EARLIER_RUN


def test_device_and_budget_tell_the_body_what_the_route_allows():
    openmind.assume(gpu="off")
    result = openmind.run_cell("d = str(openmind.device())\nb = openmind.budget()", {"openmind": openmind},
                               budget="45s")
    assert result.route.record["plan"]["candidates"][0]["params"]["device"] == "cpu"
    ns = {"openmind": openmind}
    openmind.run_cell("d = str(openmind.device())\nb = openmind.budget()", ns, budget="45s", fresh=True)
    assert ns["d"] == "cpu" and ns["b"] == 45.0
    assert openmind.budget() is None and str(openmind.device()) == "cpu"  # outside a cell


def test_an_injected_gpu_probe_makes_the_route_pick_cuda():
    res = probe()
    res = Resources(**{**{n: getattr(res, n) for n in ("host", "api", "infer", "serial", "memory")},
                       "gpu": gpu_present([{"index": 0, "name": "injected GPU"}])})
    ns = {"openmind": openmind}
    result = openmind.run_cell("d = str(openmind.device())", ns, resources=res)
    assert ns["d"] == "cuda" and "injected GPU" in result.route.reason


def test_the_routing_rule_is_pure():
    res = probe()
    pol = Policy()
    hit = plan_cell(Intent(IntentKind.TRAIN, exact=True, ancestor=True), res, pol)
    assert [(c.pathway, c.decision) for c in hit] == [(Pathway.MUSCLE_MEMORY, Decision.CACHED),
                                                      (Pathway.FULL_TRAIN, Decision.HARDCODE)]
    assert any("fallback=cached" in r for _, r in hit.excluded)
    infer = plan_cell(Intent(IntentKind.INFER, ancestor=True), res, Policy(fallback="cached"))
    assert [(c.pathway, c.decision) for c in infer] == [(Pathway.FULL_TRAIN, Decision.HARDCODE),
                                                        (Pathway.MUSCLE_MEMORY, Decision.CACHED)]
    assert infer.candidates[1].params["degraded"] == EARLIER_RUN
    fresh = plan_cell(Intent(IntentKind.SENSE, exact=True), res, Policy(fresh=True))
    assert [c.pathway for c in fresh] == [Pathway.FULL_TRAIN]  # the magic's word is not what ran
    never = plan_cell(Intent(IntentKind.TRAIN, uncacheable="'g' cannot"), res, Policy(strategy="cached"))
    assert not never.candidates and any("not cacheable" in r for _, r in never.excluded)


def test_bad_input_says_what_is_wrong():
    with pytest.raises(openmind.BadInput, match="not valid Python"):
        openmind.run_cell("x = (", {})
    with pytest.raises(openmind.BadInput, match="namespace must be a dict"):
        openmind.run_cell("x = 1", [])
    with pytest.raises(openmind.BadInput, match="intent 'learn'"):
        openmind.run_cell("x = 1", {}, intent="learn")


def test_memory_ls_shows_cell_entries_and_gc_evicts_them(capsys):
    openmind.run_cell("# a comment first\nbig = np.zeros(50_000)", {"np": np})
    openmind.run_cell("small = 1", {})
    assert main(["memory", "ls", "--kind", "cell"]) == 0
    out = capsys.readouterr().out
    assert "big = np.zeros(50_000)" in out and "small = 1" in out and "last use" in out
    assert main(["memory", "gc", "--max-bytes", "10KB"]) == 0
    left = [e.meta["first_line"] for e in entries("cell")]
    assert "big = np.zeros(50_000)" not in left
    assert len(list(blob_dir().iterdir())) == len(entries("cell"))  # its blob went too


_names = st.from_regex(r"[a-z]{1,6}", fullmatch=True).filter(lambda s: s not in {"if", "in", "is", "or", "as", "def", "for", "and", "not", "del", "try"})


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(_names, st.integers(), st.lists(st.sampled_from(["", "# note", "   "]), max_size=3))
def test_comments_and_blank_lines_never_change_the_code_digest(name, value, noise):
    plain = f"{name}_v = {value}\nprint({name}_v)"
    noisy = "\n".join(noise) + f"\n{name}_v  =  {value}  # set\n" + "\n".join(noise) + f"\nprint( {name}_v )\n"
    assert normalised(ast.parse(plain)) == normalised(ast.parse(noisy))
    reads, binds = reads_and_binds(ast.parse(plain))
    assert binds == [f"{name}_v"] and reads == ["print"]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=50), st.integers(0, 49))
def test_changing_any_element_of_an_input_array_changes_its_fingerprint(values, where):
    arr = np.array(values, dtype=np.float32)
    other = arr.copy()
    other[where % len(arr)] = np.nextafter(other[where % len(arr)], np.float32(np.inf))
    fp = Fingerprinter()
    assert fp.of(arr, "a") != fp.of(other, "a")
    assert fp.of(arr, "a") == Fingerprinter().of(arr.copy(), "a")


def test_the_journal_record_is_json_and_names_the_cell():
    openmind.run_cell("# first comment\nq = 2", {})
    rec = openmind.journal(1)[0]
    assert rec["name"] == "q = 2" and json.dumps(rec)
    with connect() as con:
        assert con.execute("SELECT COUNT(*) FROM memory WHERE kind='cell'").fetchone()[0] == 1




def test_in_a_shell_the_body_runs_through_ipython_and_a_hit_replays_its_displays():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")
    ip.user_ns["openmind"] = openmind
    body = ("%%openmind train\nimport asyncio\nfrom IPython.display import HTML, display\n"
            "%time sum(range(3))\nn = 21\nawait asyncio.sleep(0)\ndisplay(HTML('<b>shown</b>'))\n"
            "cur = sqlite3.connect(':memory:').execute('select 2')\nn * 2")
    ip.user_ns["sqlite3"] = __import__("sqlite3")
    runs = []
    for _ in range(2):
        with capture_output() as cap:
            result = ip.run_cell(body)
        assert result.success, result.error_in_exec
        runs.append((result.result, [o.data.get("text/html") for o in cap.outputs],
                     openmind.journal(1)[0]))
    (first, shown, rec1), (second, shown2, rec2) = runs
    assert first == second == 42 and "<b>shown</b>" in shown and "<b>shown</b>" in shown2
    # .execute is not openmind's; a cursor cannot be kept, so a hit could not give back what a
    # re-run binds: the cell is not cacheable, and the route says why in plain words
    assert (rec1["pathway"], rec2["pathway"]) == ("full_train", "full_train")
    assert "'cur' cannot be kept" in rec1["summary"]["uncacheable"]
    assert "not cacheable: 'cur' cannot be kept" in rec2["reason"]


def test_with_several_injected_gpus_the_route_picks_the_freest_as_cuda_n():
    res = probe()
    gpus = gpu_present([{"index": 0, "name": "a", "memory_free": 1 << 30, "memory_total": 8 << 30},
                        {"index": 1, "name": "b", "memory_free": 6 << 30, "memory_total": 8 << 30}])
    res = Resources(**{**{n: getattr(res, n) for n in ("host", "api", "infer", "serial", "memory")},
                       "gpu": gpus})
    plan = plan_cell(Intent(IntentKind.TRAIN), res, Policy())
    assert plan.candidates[0].params["device"] == "cuda:1"
    ns = {"openmind": openmind}
    openmind.run_cell("d = str(openmind.device())", ns, resources=res)
    assert ns["d"] == "cuda:1"


def test_a_last_expression_that_is_a_bound_name_is_kept_once():
    cell = "model = {'w': [1.0, 2.0]}\nmodel"
    first = openmind.run_cell(cell, {})
    assert set(entries("cell")[0].meta["values"]) == {"model", "__value_of__"}
    ns: dict = {}
    hit = openmind.run_cell(cell, ns)
    assert hit.cached and hit.value == first.value and hit.value is ns["model"] and hit.names == ["model"]


def test_a_quick_cell_with_large_kept_outputs_runs_again_instead_of_restoring():
    res = probe()
    big = plan_cell(Intent(IntentKind.TRAIN, exact=True, kept_bytes=500_000_000, est_seconds=0.3), res, Policy())
    assert [c.pathway for c in big] == [Pathway.FULL_TRAIN]
    assert any("quicker than restoring its 500 MB" in r for _, r in big.excluded)
    slow = plan_cell(Intent(IntentKind.TRAIN, exact=True, kept_bytes=500_000_000, est_seconds=60), res, Policy())
    assert slow.first.decision is Decision.CACHED
    forced = plan_cell(Intent(IntentKind.TRAIN, exact=True, kept_bytes=500_000_000, est_seconds=0.3), res,
                       Policy(strategy="cached"))
    assert forced.first.decision is Decision.CACHED


def test_a_remembered_function_called_inside_a_routed_cell_records_and_restores_cleanly():
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "openmind.jupyter")

    @openmind.remember
    def shown(n):
        from IPython.display import display

        display({"text/plain": f"inner {n}"}, raw=True)
        return n + 1

    ip.user_ns.update(shown=shown, big=list(range(1000)))
    for _ in range(2):
        with capture_output() as cap:
            result = ip.run_cell("%%openmind train\nm = shown(len(big))\nm")
        assert result.success and result.result == 1001, result.error_in_exec
        assert any(o.data.get("text/plain") == "inner 1000" for o in cap.outputs)
    assert "publish" not in vars(ip.display_pub)  # every wrapper was taken off again


def test_dataframes_are_fingerprinted_by_content_and_kept_signed():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": ["x", "y", "z"]})
    fp = Fingerprinter()
    same = fp.of(frame.copy(), "df") == Fingerprinter().of(frame, "df")
    changed = frame.copy()
    changed.loc[1, "b"] = "q"
    renamed = frame.rename(columns={"a": "c"})
    assert same and len({fp.of(frame, "df"), Fingerprinter().of(changed, "df"),
                         Fingerprinter().of(renamed, "df")}) == 3
    cell = "summary = df.groupby('b')['a'].sum()\ntop = df[df.a > 1]"
    openmind.run_cell(cell, {"df": frame})
    kept = entries("cell")[0].meta
    assert kept["values"]["top"] == {"as": "pickle"} and entries("cell")[0].signer
    ns = {"df": frame.copy()}
    assert openmind.run_cell(cell, ns).cached
    pd.testing.assert_frame_equal(ns["top"], frame[frame.a > 1])
    assert how(openmind.run_cell(cell, {"df": changed})) == ("full_train", "HARDCODE")
