"""Shared fixtures: every test gets its own OPENMIND_HOME and a clean probe cache and mask.

The session never touches the user's own `~/.openmind`: before any fixture runs (a module- or
session-scoped one is set up before the per-test home below) and before any subprocess starts,
OPENMIND_HOME, OPENMIND_KEY_DIR and HOME point into this session's temporary folder; the build
caches stay where they were (XDG_CACHE_HOME). A default home that appears in the session's HOME
fails the run (`session_homes`, which also tells a test the user's real home and this folder).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

REAL_HOME = Path(os.path.expanduser("~"))
SESSION_DIR = Path(tempfile.mkdtemp(prefix="openmind-tests-"))
os.environ.setdefault("XDG_CACHE_HOME", str(REAL_HOME / ".cache"))  # compiled kernels, torch: shared
os.environ["HOME"] = str(SESSION_DIR / "user")
os.environ["OPENMIND_HOME"] = str(SESSION_DIR / "openmind-home")
os.environ["OPENMIND_KEY_DIR"] = str(SESSION_DIR / "keys")
(SESSION_DIR / "user").mkdir()
# removed at exit, after what registered later (IPython writes its history then)
atexit.register(shutil.rmtree, SESSION_DIR, ignore_errors=True)

# the firmware host build as a device on a pty (fixtures vdev, noisy_vdev, vdev_binary); the
# team tier's S3 server on loopback, shared directory and machines (moto_endpoint, machines)
pytest_plugins = ["vdev_fixtures", "team_fixtures"]

_ENV = ("OPENMIND_API_BASE", "OPENMIND_API_KEY", "OPENAI_API_KEY", "OPENMIND_INFER_URL",
        "OPENMIND_INFER_TOKEN", "OPENMIND_SERIAL_PORT", "OPENMIND_ASSUME", "OPENMIND_PROBE_TIMEOUT",
        "OPENMIND_TRUST", "OPENMIND_REMOTE", "OPENMIND_REMOTE_WRITE", "OPENMIND_REMOTE_TIMEOUT")


@pytest.fixture(scope="session", autouse=True)
def session_homes():
    """(the user's real home, this session's folder). Every store of the session is a temporary
    one: the default home (`~/.openmind` of the session's HOME) must not exist at the end; it
    would be the user's on a real run."""
    default = Path(os.path.expanduser("~")) / ".openmind"
    yield REAL_HOME, SESSION_DIR
    if default.exists():
        pytest.fail(f"something wrote to the default OPENMIND_HOME ({default}): a fixture or test "
                    f"ran without OPENMIND_HOME set (it would have been the user's ~/.openmind)")


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
    config.forget_sources()  # secrets an earlier test's sources registered (redacted everywhere)
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
