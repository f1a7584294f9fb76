"""Secrets planted in every configuration slot never come back out.

Unique values go into every slot openmind reads (API keys, the inference token, the serve token,
user:password in both URLs); real servers on 127.0.0.1 echo the Authorization header they get
(Bearer or Basic) back in their error bodies. Then every surface is collected: log records
(httpx/httpcore at DEBUG included), exceptions, warnings, the journal, decision cards (HTML and
text), the resources table, `openmind log` and `openmind status`, the sidebar's journal and
resources routes on a real Jupyter server, and `openmind serve`'s log and refusals. No planted
value, nor its base64 / `Basic` form, may appear in any of them.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import subprocess
import sys
import warnings
from urllib.parse import quote

import httpx
import numpy as np
import pytest

import openmind
from openmind.pathways.cloud import http
from openmind.pathways.cloud.oip import OIPClient
from tests.fake_llm import Scripted

pytest_plugins = ["pytest_jupyter.jupyter_server"]

PLANTED = {
    "OPENMIND_API_KEY": "sk-plant-APIKEY-a1b2c3",
    "OPENAI_API_KEY": "sk-plant-OPENAI-d4e5f6",
    "OPENMIND_INFER_TOKEN": "tok-plant-INFER-778899",
    "OPENMIND_SERVE_TOKEN": "srv-plant-SERVE-112233",
}
INFER_USER, INFER_PASS = "plant-infer-user", "plant-INFERPASS-4455"
API_USER, API_PASS = "plant-api-user", "plant-APIPASS-6677!"


def forms() -> list[str]:
    """Every planted value and the forms a peer may echo: user:pass, its base64, the encoded password."""
    raw = list(PLANTED.values()) + [INFER_PASS, API_PASS, f"{INFER_USER}:{INFER_PASS}", f"{API_USER}:{API_PASS}"]
    out = list(raw)
    for r in raw:
        out.append(base64.b64encode(r.encode()).decode().rstrip("="))
    out.append(quote(API_PASS, safe=""))
    return out


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"openmind.jupyter": True}}}


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def echoing_servers():
    """An OIP endpoint whose infer answers 403 echoing the Authorization header; an
    OpenAI-compatible API whose chat answers 500 echoing it (models list fine)."""
    with Scripted() as infer, Scripted() as api:
        infer.script("/v2/models/remote/infer", *[("echo_auth", 403)] * 20)
        api.script("/v1/models", *[("json", 200, {"object": "list", "data": [{"id": "m"}]})] * 20)
        api.script("/v1/chat", *[("echo_auth", 500)] * 40)
        yield infer, api


async def test_planted_secrets_appear_on_no_surface(jp_fetch, echoing_servers, monkeypatch, openmind_home):
    infer_srv, api_srv = echoing_servers
    for k, v in PLANTED.items():
        monkeypatch.setenv(k, v)
    infer_url = infer_srv.url.replace("http://", f"http://{INFER_USER}:{INFER_PASS}@")
    api_base = api_srv.url.replace("http://", f"http://{API_USER}:{quote(API_PASS, safe='')}@") + "/v1"
    monkeypatch.setenv("OPENMIND_INFER_URL", infer_url)
    monkeypatch.setenv("OPENMIND_API_BASE", api_base)
    monkeypatch.setenv("OPENMIND_ASSUME", "gpu=off")
    monkeypatch.setenv("OPENMIND_PROBE_TIMEOUT", "2")
    monkeypatch.setenv("OPENMIND_LLM_TIMEOUT", "2")
    http.reset()

    surfaces: dict[str, list[str]] = {}
    handler = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            errors: list[str] = []
            res = openmind.probe(refresh=True)
            surfaces["resources"] = [str(res), res._repr_html_(), json.dumps(res.to_dict(), default=str)]
            assert res.infer.available and res.api.available  # the secrets went on the wire
            # the OIP path with the bearer token (infer echoes it), then with Basic from the URL
            # (httpx sends the URL's user:password as Basic, in place of a bearer header)
            for url, token in ((infer_srv.url, PLANTED["OPENMIND_INFER_TOKEN"]), (infer_url, None)):
                monkeypatch.setenv("OPENMIND_INFER_URL", url)
                if token is None:
                    monkeypatch.delenv("OPENMIND_INFER_TOKEN")
                http.reset()
                try:
                    openmind.infer_adaptive("remote", np.ones((3, 4)), timeout=2)
                except Exception as exc:  # noqa: BLE001 - the message is the surface under test
                    errors.append(f"{type(exc).__name__}: {exc}")
                client = OIPClient(retries=0)
                errors.append(repr(client))
                try:
                    client.infer("remote", np.ones((2, 2)))
                except Exception as exc:  # noqa: BLE001
                    errors.append(str(exc))
            monkeypatch.setenv("OPENMIND_INFER_TOKEN", PLANTED["OPENMIND_INFER_TOKEN"])
            # the language model: a plan for data no rule knows, zero-shot text (chat echoes)
            model = openmind.train_or_load("planted", np.random.default_rng(0).normal(size=(40, 2, 2)),
                                           np.arange(40) % 2, epochs=1, hidden=[4], progress=False)
            from openmind.jupyter.card import DecisionCard, card_for

            surfaces["train"] = [repr(model), str(model.route), card_for(model.route)._repr_html_()]
            try:
                openmind.infer_adaptive("sentiment", ["good", "bad"], timeout=2)
            except Exception as exc:  # noqa: BLE001
                errors.append(str(exc))
            surfaces["exceptions"] = errors
        surfaces["warnings"] = [str(w.message) for w in caught]
        echoed = "\n".join(json.dumps(c["headers"]) for s in (infer_srv, api_srv) for c in s.calls())
        assert "Basic " in echoed and "Bearer " in echoed  # both forms really went out, and came back

        # the journal, its cards, the CLI
        records = openmind.journal(50)
        assert len(records) >= 3
        surfaces["journal"] = [json.dumps(records, default=str)]
        surfaces["cards"] = [DecisionCard(r)._repr_html_() + DecisionCard(r).text() for r in records]
        for cmd in ("log", "status"):
            out = subprocess.run([sys.executable, "-m", "openmind.cli", cmd], env=dict(os.environ),
                                 capture_output=True, text=True, timeout=120)
            surfaces.setdefault("cli", []).append(out.stdout + out.stderr)
        # the sidebar's routes on a real Jupyter server
        for route in ("journal", "resources"):
            resp = await jp_fetch("openmind", "api", route, params={"refresh": "1"} if route == "resources" else {})
            surfaces.setdefault("sidebar", []).append(resp.body.decode())
        # openmind serve: its banner, log and a refusal
        from openmind.serve import ServeProcess

        with ServeProcess(home=str(openmind_home), token=PLANTED["OPENMIND_SERVE_TOKEN"]) as sp:
            bad = httpx.get(f"{sp.url}/v2", headers={"Authorization": "Bearer wrong"})
            good = httpx.get(f"{sp.url}/v2", headers={"Authorization": f"Bearer {PLANTED['OPENMIND_SERVE_TOKEN']}"})
            assert bad.status_code == 401 and good.status_code == 200
            surfaces["serve"] = [sp.banner, bad.text, good.text]
        surfaces["serve"].append(sp.log())
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
    surfaces["logs"] = handler.lines
    assert any("HTTP Request" in line for line in handler.lines)  # httpx's INFO lines were seen

    hits = [(where, secret) for where, texts in surfaces.items() for text in texts
            for secret in forms() if secret in text]
    n_texts = sum(len(t) for t in surfaces.values())
    print(f"\nsecrets: {len(forms())} planted forms x {n_texts} texts on {len(surfaces)} surfaces: "
          f"{len(hits)} hits")
    assert hits == []
