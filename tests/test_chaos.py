"""The chaos matrix in the suite (resource × fault × intent, see tests/chaos.py): every scenario
ends in a result or one clear openmind error on every call, leaves a journal row, costs little
when repeated, keeps the store intact and leaks no planted secret.

`python -m tests.chaos` prints the same matrix as a table with each call's time."""

from __future__ import annotations

import pytest

from tests import chaos

NO_JOURNAL = {("memory", "corrupt_db"), ("memory", "home_is_file")}  # the store itself is the fault


def test_the_matrix_has_at_least_100_scenarios():
    assert len(chaos.SCENARIOS) >= 100
    assert {r for r, _, _ in chaos.SCENARIOS} == {"infer", "api", "serial", "memory"}


@pytest.mark.parametrize("resource,fault,intent", chaos.SCENARIOS,
                         ids=["/".join(s) for s in chaos.SCENARIOS])
def test_chaos(resource, fault, intent, tmp_path):
    out = chaos.run(resource, fault, intent, workdir=str(tmp_path))
    for err in out.errors:
        assert chaos.clear(err), f"not one clear error: {type(err).__name__}: {err}"
    if (resource, fault) in NO_JOURNAL:
        assert any("memory" in w or "journal" in w for w in out.warnings), out.warnings
    else:
        assert all(n >= 1 for n in out.journal_rows), f"a call left no journal row: {out.journal_rows}"
        assert out.store_ok, "the store fails SQLite's integrity check"
    if resource != "memory":  # a local store has no timeout to pay twice; its repeat re-does work
        assert out.seconds[1] <= chaos.repeat_bound(resource, intent), \
            f"the repeated call cost {out.seconds[1]:.2f}s (first {out.seconds[0]:.2f}s): {out.results}"
    assert out.leaks == [], f"planted secrets came back: {out.leaks}"
