"""Shared fixtures: every test gets its own OPENMIND_HOME and a clean probe cache and mask."""

from __future__ import annotations

import numpy as np
import pytest

# the firmware host build as a device on a pty (fixtures vdev, noisy_vdev, vdev_binary); the
# team tier's S3 server on loopback, shared directory and machines (moto_endpoint, machines)
pytest_plugins = ["vdev_fixtures", "team_fixtures"]

_ENV = ("OPENMIND_API_BASE", "OPENMIND_API_KEY", "OPENAI_API_KEY", "OPENMIND_INFER_URL",
        "OPENMIND_INFER_TOKEN", "OPENMIND_SERIAL_PORT", "OPENMIND_ASSUME", "OPENMIND_PROBE_TIMEOUT",
        "OPENMIND_TRUST", "OPENMIND_REMOTE", "OPENMIND_REMOTE_WRITE", "OPENMIND_REMOTE_TIMEOUT")


def pytest_configure(config) -> None:
    """A signing key directory for the whole session, before any fixture runs: module- and
    session-scoped fixtures that keep something in memory (a served model) never make one in
    ~/.config/openmind. Each test then gets its own (below)."""
    import os
    import tempfile

    if not os.environ.get("OPENMIND_KEY_DIR"):
        os.environ["OPENMIND_KEY_DIR"] = tempfile.mkdtemp(prefix="openmind-test-keys-")  # 0700


@pytest.fixture(autouse=True)
def openmind_home(tmp_path, monkeypatch):
    """A private store and signing key per test (never ~/.openmind or ~/.config/openmind), no
    configured resources or team memory, no cached probe results."""
    home = tmp_path / "openmind-home"
    monkeypatch.setenv("OPENMIND_HOME", str(home))
    # beside tmp_path, not in it: a test may make tmp_path itself the home, and a key directory
    # inside OPENMIND_HOME is refused
    monkeypatch.setenv("OPENMIND_KEY_DIR", str(tmp_path.parent / f"{tmp_path.name}-openmind-keys"))
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    from openmind import config
    from openmind.flow.resources import invalidate

    config.assume("reset")
    invalidate()
    _forget_benched()
    yield home
    monkeypatch.delenv("OPENMIND_ASSUME", raising=False)
    config.assume("reset")
    invalidate()


def _forget_benched() -> None:
    """Endpoints and ports benched by an earlier test (pty paths get reused) start fresh."""
    from openmind.memory import team
    from openmind.pathways.cloud import http, oip
    from openmind.pathways.device import unbench

    team.reset()
    http.reset()
    oip._meta.clear()
    unbench()


@pytest.fixture(scope="session")
def digits_split():
    """sklearn's digits (shipped with scikit-learn), a stratified 80/20 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.2, random_state=0, stratify=y)


@pytest.fixture(scope="session")
def _digits_trained(digits_split):
    """One small ternary net trained on digits (torch), shared by the ternary tests."""
    from openmind.pathways.ternary.fit import FitJob, fit, resolve_config, standardization
    from openmind.pathways.ternary.net import export

    Xtr, Xte, ytr, yte = digits_split
    cfg = resolve_config({"hidden": [64], "epochs": 25})
    mean, inv_std = standardization(Xtr)
    out = fit(Xtr, ytr, FitJob(10, cfg, mean, inv_std, progress=False))
    model = export(out.net, mean, inv_std, np.arange(10), name="digits", config=cfg, info={})
    return model, out.net, Xte, yte


@pytest.fixture
def digits_model(_digits_trained):
    model, _net, Xte, yte = _digits_trained
    return model, Xte, yte


@pytest.fixture
def digits_net(_digits_trained):
    return _digits_trained[1]
