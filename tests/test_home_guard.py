"""The suite never writes to the user's `~/.openmind` (issue 27): a module-scoped fixture is set
up before the per-test home applies, so it used to train into the default home."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import openmind
from openmind.config import home


@pytest.fixture(scope="module")
def trained_early():
    """The pattern that leaked: a model trained in a module-scoped fixture, before any test's
    own OPENMIND_HOME exists."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 3)).astype(np.float32)
    model = openmind.train_or_load("early", X, (X[:, 0] > 0).astype(int), hidden=[4], epochs=2,
                                   progress=False)
    return home(), model


def test_a_module_fixture_trains_into_the_sessions_home_not_the_users(trained_early, session_homes):
    real, session = session_homes
    where, model = trained_early
    assert where.is_relative_to(session) and not where.is_relative_to(real / ".openmind")
    assert model.route is not None
    default = Path(os.path.expanduser("~")) / ".openmind"  # HOME is the session's too
    assert default.is_relative_to(session) and not default.exists()


def test_subprocesses_inherit_the_sessions_homes(openmind_home, session_homes):
    """The CLI and kernels the tests start see a temporary HOME and OPENMIND_HOME as well."""
    out = subprocess.run([sys.executable, "-c", "import os, openmind.config as c; "
                          "print(os.path.expanduser('~')); print(c.home())"],
                         env=dict(os.environ), capture_output=True, text=True, timeout=60, check=True)
    user, store = out.stdout.split("\n")[:2]
    real, session = session_homes
    assert Path(user).is_relative_to(session) and Path(store) == openmind_home
    assert not Path(os.environ["OPENMIND_KEY_DIR"]).is_relative_to(real / ".config")  # keys too
