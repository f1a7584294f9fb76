"""The issue's end-to-end claim: a model trained in a notebook (a real kernel) is served by
`openmind serve` and queried by another process, with predictions equal to the local ones."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from openmind.pathways.cloud import http
from openmind.serve import ServeProcess
from openmind.vocab import Decision, Pathway

TOKEN = "nb-serve-token-91c2"

CELL = """
import numpy as np, openmind
from sklearn.datasets import load_digits
X, y = load_digits(return_X_y=True)
model = openmind.train_or_load("digits", X.astype(np.float32), y, hidden=32, epochs=5)
np.save({out!r}, np.asarray(model.predict(X[:200].astype(np.float32))))
print(model.route.pathway.value)
"""


@pytest.mark.slow
def test_notebook_trained_model_is_served_and_queried(tmp_path, monkeypatch):
    import openmind

    home = tmp_path / "notebook-home"
    out = tmp_path / "local.npy"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL.format(out=str(out)))])
    monkeypatch.setenv("OPENMIND_HOME", str(home))
    NotebookClient(nb, timeout=240, kernel_name="python3").execute()
    assert nb.cells[0].outputs[-1]["text"].strip() in ("full_train", "fine_tune")
    local = np.load(out)

    monkeypatch.setenv("OPENMIND_HOME", str(tmp_path / "client-home"))  # this process has no model
    http.reset()
    with ServeProcess(home=home, token=TOKEN) as srv:
        monkeypatch.setenv("OPENMIND_INFER_URL", srv.url)
        monkeypatch.setenv("OPENMIND_INFER_TOKEN", TOKEN)
        from sklearn.datasets import load_digits

        X = load_digits(return_X_y=True)[0][:200].astype(np.float32)
        pred = openmind.infer_adaptive("digits", X)
        assert (pred.route.pathway, pred.route.decision) == (Pathway.CLOUD_INFERENCE, Decision.HARDCODE)
        np.testing.assert_array_equal(pred.values, local)
        assert TOKEN not in srv.log() and TOKEN not in json.dumps(openmind.journal(5))
