"""Shared test setup: every test gets its own OPENMIND_HOME (nothing touches ~/.openmind)."""

from __future__ import annotations

import pytest

# the firmware host build as a device on a pty (fixtures vdev, noisy_vdev, vdev_binary)
pytest_plugins = ["vdev_fixtures"]


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
