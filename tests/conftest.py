"""Shared test setup: every test gets its own OPENMIND_HOME and a clean probe cache and assume mask."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def openmind_home(tmp_path, monkeypatch):
    """A fresh, empty OPENMIND_HOME for each test (the user's ~/.openmind is never touched)."""
    home = tmp_path / "openmind-home"
    monkeypatch.setenv("OPENMIND_HOME", str(home))
    monkeypatch.delenv("OPENMIND_ASSUME", raising=False)
    from openmind.config import assume
    from openmind.probe import invalidate

    invalidate()
    yield home
    assume("reset")
    invalidate()
