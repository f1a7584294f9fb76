"""Shared test fixtures (keep additive: each helper adds what its tests need)."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def openmind_home(tmp_path, monkeypatch):
    """Every test gets its own OPENMIND_HOME and a cold probe cache."""
    home = tmp_path / "openmind-home"
    monkeypatch.setenv("OPENMIND_HOME", str(home))
    for var in ("OPENMIND_API_BASE", "OPENMIND_API_KEY", "OPENAI_API_KEY", "OPENMIND_INFER_URL",
                "OPENMIND_INFER_TOKEN", "OPENMIND_ASSUME", "OPENMIND_SERIAL_PORT"):
        monkeypatch.delenv(var, raising=False)
    from openmind.probe import invalidate

    invalidate()
    yield home
    invalidate()
