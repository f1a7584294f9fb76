"""Random small cell programs over lists, dicts, arrays and files (hypothesis), with the corpus's
oracle (tests/cell_oracle.py): run, changed (or not), run again after a fresh Run All; a hit
must equal a fresh re-run, and an unchanged program whose inputs a run does not change must hit."""

from __future__ import annotations

import uuid

from cell_oracle import Pattern, check
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SMALL = st.integers(-5, 9)
STATEMENTS = st.one_of(
    SMALL.map(lambda k: f"L.append({k})"),
    st.tuples(st.integers(0, 9), SMALL).map(lambda t: f"L[{t[0]} % len(L)] = {t[1]}"),
    st.just("L.sort()"),
    st.tuples(st.sampled_from("abc"), SMALL).map(lambda t: f"D[{t[0]!r}] = {t[1]}"),
    st.sampled_from("abc").map(lambda key: f"D.pop({key!r}, None)"),
    st.tuples(st.integers(0, 9), SMALL).map(lambda t: f"A[{t[0]} % A.size] += {t[1]}"),
    SMALL.map(lambda k: f"A = A * {k}"),
    st.integers(0, 3).map(lambda j: f"t{j} = sum(L) + len(D) + float(A.sum())"),
    st.just("print(sorted(D.items()), L[-3:], A.tolist())"),
    st.integers(0, 2).map(lambda j: f"open('out{j}.txt', 'w').write(str(L) + str(D))"),
    st.integers(0, 2).map(lambda j: f"s{j} = open('in.txt').read().split()"),
    st.just("L.extend(int(v) for v in open('in.txt').read().split())"),
    st.just("np.save('a.npy', A)\nB = np.load('a.npy')"),
    st.just("with open('log.txt', 'a') as f:\n    f.write(str(len(L)))"),
    st.just("alias = L"),
    st.just("if 'M' not in dir():\n    M = list(L)"),
)
SETUP = "import numpy as np\nL = {L}\nD = {D}\nA = np.array({A}, dtype=float)\n{extra}"
CHANGES = st.sampled_from(["none", "list", "dict", "array", "in.txt", "name"])


def setup(values: tuple, change: str) -> str:
    L, D, A = values
    extra = ""
    if change == "list":
        L = L + [7]
    elif change == "dict":
        D = {**D, "z": 1}
    elif change == "array":
        A = [a + 1 for a in A]
    elif change == "name":
        extra = "M = [42]"
    return SETUP.format(L=L, D=D, A=A, extra=extra)


VALUES = st.tuples(st.lists(SMALL, min_size=1, max_size=4),
                   st.dictionaries(st.sampled_from("abc"), SMALL, max_size=3),
                   st.lists(SMALL, min_size=1, max_size=4))


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(program=st.lists(STATEMENTS, min_size=1, max_size=6), values=VALUES, change=CHANGES,
       text=st.lists(SMALL, min_size=1, max_size=3))
def test_a_random_program_restored_equals_a_fresh_re_run(program, values, change, text, tmp_path,
                                                         monkeypatch):
    example = uuid.uuid4().hex
    root = tmp_path / example
    root.mkdir()
    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path / f"{example}-home"))  # every example its own memory
    in_txt = " ".join(map(str, text))
    pattern = Pattern("random program", setup(values, "none"), "\n".join(program),
                      setup2=setup(values, change) if change not in ("none", "in.txt") else None,
                      change="open('in.txt', 'w').write(open('in.txt').read() + ' 3')" if change == "in.txt" else "",
                      expect="any", files={"in.txt": in_txt, "log.txt": ""})
    second = check(pattern, root, monkeypatch)
    if change == "none" and "log.txt" not in pattern.cell:
        assert second.cached, f"an unchanged program missed: {second.route.reason}"
