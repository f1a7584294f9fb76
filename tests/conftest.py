"""Shared test setup: every test gets its own OPENMIND_HOME (nothing touches ~/.openmind)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _openmind_home(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OPENMIND_SERIAL_PORT", raising=False)
    try:
        from openmind.probe import invalidate

        invalidate()
    except Exception:
        pass
    yield
