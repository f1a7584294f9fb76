"""Shared fixtures: every test gets its own OPENMIND_HOME and a clean probe cache and mask."""

from __future__ import annotations

import pytest

# the firmware host build as a device on a pty (fixtures vdev, noisy_vdev, vdev_binary)
pytest_plugins = ["vdev_fixtures"]

_ENV = ("OPENMIND_API_BASE", "OPENMIND_API_KEY", "OPENAI_API_KEY", "OPENMIND_INFER_URL",
        "OPENMIND_INFER_TOKEN", "OPENMIND_SERIAL_PORT", "OPENMIND_ASSUME", "OPENMIND_PROBE_TIMEOUT")


@pytest.fixture(autouse=True)
def openmind_home(tmp_path, monkeypatch):
    """A private store per test, no configured resources, no cached probe results."""
    home = tmp_path / "openmind-home"
    monkeypatch.setenv("OPENMIND_HOME", str(home))
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    from openmind import config
    from openmind.probe import invalidate

    config.assume("reset")
    invalidate()
    yield home
    monkeypatch.delenv("OPENMIND_ASSUME", raising=False)
    config.assume("reset")
    invalidate()
