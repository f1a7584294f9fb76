"""The digits model the cloud tests serve and query: trained once per session (the real
TernaryModel through train_or_load), then put into each test's own OPENMIND_HOME."""

from __future__ import annotations

import numpy as np

from openmind.intents.infer import load_local_model

_TRAINED: dict[str, tuple] = {}


def _digits():
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    return X.astype(np.float32), y


def _trained_arrays() -> tuple[dict, dict]:
    """The digits model's stored arrays + meta, trained once per session in a scratch home."""
    if "digits" not in _TRAINED:
        import os
        import tempfile

        X, y = _digits()
        old = os.environ.get("OPENMIND_HOME")
        os.environ["OPENMIND_HOME"] = tempfile.mkdtemp(prefix="omh-digits-")
        try:
            import openmind
            from openmind.memory.blobs import latest

            openmind.train_or_load("digits", X, y, hidden=32, epochs=5)  # the real TernaryModel
            arrays, entry = latest("model", "digits")
            _TRAINED["digits"] = ({k: v.copy() for k, v in arrays.items()}, dict(entry.meta), entry.key)
        finally:
            if old is None:  # "" would mean the default home, the user's ~/.openmind
                os.environ.pop("OPENMIND_HOME", None)
            else:
                os.environ["OPENMIND_HOME"] = old
    return _TRAINED["digits"]


def store_digits_model(name: str = "digits"):
    """Put the digits model into this test's home as training stores it; returns (X, LocalModel)."""
    from openmind.memory.blobs import put

    arrays, meta, key = _trained_arrays()
    put("model", name, key, arrays, meta)
    return _digits()[0], load_local_model(name)
