"""Open Inference Protocol v2 (KServe v2 REST) client: talks to `openmind serve`, Triton, KServe,
MLServer alike. Retries, Retry-After and cooldown come from `openmind.cloud.http`."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import quote

import numpy as np

from openmind.config import infer_token, infer_url, public_url
from openmind.errors import BadInput
from openmind.pathways.cloud.http import EndpointError, failed, request
from openmind.pathways.cloud.tensors import DATATYPES, TensorError, decode, encode

METADATA_TTL_S = 60.0
_METADATA: dict[tuple, tuple[float, dict[str, Any]]] = {}  # (url, model, version) -> (when, outputs)


class OIPClient:
    """A client for one endpoint. `url`/`token` default to OPENMIND_INFER_URL/OPENMIND_INFER_TOKEN."""

    def __init__(self, url: str | None = None, token: str | None = None, *, timeout: float = 10.0,
                 retries: int = 2, backoff: float = 0.25, max_wait: float = 5.0,
                 cooldown_after: int = 3, cooldown: float = 30.0) -> None:
        url = url or infer_url()
        if not url:
            raise BadInput("no inference endpoint: pass url= or set OPENMIND_INFER_URL "
                           "(e.g. http://127.0.0.1:8000 for `openmind serve`)")
        self.url = url.rstrip("/")
        self.token = token if token is not None else infer_token()
        self.options = {"timeout": timeout, "retries": retries, "backoff": backoff,
                        "max_wait": max_wait, "cooldown_after": cooldown_after, "cooldown": cooldown}

    def __repr__(self) -> str:
        return f"OIPClient({public_url(self.url)!r})"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        resp = request(method, f"{self.url}{path}", headers=headers, json=body,
                       secrets=(self.token,) if self.token else (), **self.options)
        if not resp.content:
            return {}
        try:
            return resp.json()
        except ValueError:
            raise EndpointError(f"{public_url(self.url)}{path} answered non-JSON "
                                f"({resp.headers.get('content-type', '?')})", status=resp.status_code) from None

    @staticmethod
    def _model_path(name: str, version: str | None = None) -> str:
        path = f"/v2/models/{quote(name, safe='')}"
        return path + (f"/versions/{quote(version, safe='')}" if version else "")

    def live(self) -> bool:
        """True when the server process answers (GET /v2/health/live)."""
        return self._status("/v2/health/live")

    def ready(self) -> bool:
        """True when the server is ready for inference (GET /v2/health/ready)."""
        return self._status("/v2/health/ready")

    def model_ready(self, name: str, version: str | None = None) -> bool:
        """True when the endpoint serves `name` and it is ready (404 -> False)."""
        return self._status(self._model_path(name, version) + "/ready")

    def _status(self, path: str) -> bool:
        try:
            self._call("GET", path)
        except EndpointError as exc:
            if exc.status is not None and exc.status in (400, 404):
                return False
            raise
        return True

    def server_metadata(self) -> dict[str, Any]:
        return self._call("GET", "/v2")

    def model_metadata(self, name: str, version: str | None = None) -> dict[str, Any]:
        return self._call("GET", self._model_path(name, version))

    def infer(self, name: str, inputs: Any, *, outputs: list[str] | None = None,
              version: str | None = None, request_id: str | None = None) -> dict[str, np.ndarray]:
        """Run inference; `inputs` is an array (sent as "input-0") or {name: array}.

        Returns {output name: array}, decoded and validated.
        """
        if not isinstance(inputs, dict):
            inputs = {"input-0": inputs}
        body: dict[str, Any] = {"inputs": [encode(k, v) for k, v in inputs.items()]}
        if outputs:
            body["outputs"] = [{"name": o} for o in outputs]
        if request_id:
            body["id"] = request_id
        answer = self._call("POST", self._model_path(name, version) + "/infer", body)
        rows = {int(np.shape(v)[0]) if np.ndim(v) else 1 for v in inputs.values()}
        try:
            return check_answer(answer, rows.pop() if len(rows) == 1 else None,
                                outputs, self._declared(name, version))
        except TensorError as exc:  # the server's fault, not the caller's: fall through
            reason = f"{public_url(self.url)}: malformed answer: {exc}"
            failed(self.url, reason, cooldown_after=self.options["cooldown_after"],
                   cooldown=self.options["cooldown"])
            raise EndpointError(reason) from None

    def _declared(self, name: str, version: str | None) -> dict[str, Any]:
        """The outputs the model's metadata declares ({name: {datatype, shape}}), fetched once a
        minute per endpoint and model; empty when the endpoint has none (then only rows are checked)."""
        key = (self.url, name, version)
        hit = _METADATA.get(key)
        if hit is None or time.monotonic() - hit[0] > METADATA_TTL_S:
            declared: dict[str, Any] = {}
            try:
                meta = self.model_metadata(name, version)
            except EndpointError:
                meta = {}
            outs = meta.get("outputs") if isinstance(meta, dict) else None
            if isinstance(outs, list):
                for o in outs:
                    if isinstance(o, dict) and isinstance(o.get("name"), str):
                        declared[o["name"]] = o
            _METADATA[key] = (time.monotonic(), declared)
        return _METADATA[key][1]


def check_answer(answer: Any, rows: int | None, asked: list[str] | None,
                 declared: dict[str, Any]) -> dict[str, np.ndarray]:
    """{name: array} from an infer answer, believed only when it fits what was sent: every output
    decodes, has one entry per row sent, is one of those asked for, and agrees with the model's
    declared metadata (datatype, rank, fixed dimensions). TensorError says what did not fit."""
    tensors = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(tensors, list) or not tensors:
        raise TensorError("the answer has no 'outputs' list")
    result: dict[str, np.ndarray] = {}
    for i, t in enumerate(tensors):
        key, arr = decode(t, where=f"outputs[{i}]")
        if key in result:
            raise TensorError(f"output '{key[:60]}' appears twice")
        if asked and key not in asked:
            raise TensorError(f"output '{key[:60]}' was not asked for (asked: {asked})")
        if rows is not None and (arr.ndim == 0 or arr.shape[0] != rows):
            got = arr.shape[0] if arr.ndim else "a scalar"
            raise TensorError(f"output '{key[:60]}' has {got} predictions for the {rows} rows sent")
        meta = declared.get(key)
        if declared and meta is None:
            raise TensorError(f"output '{key[:60]}' is not among the model's declared outputs "
                              f"{sorted(declared)[:10]}")
        if meta is not None:
            dt, shape = meta.get("datatype"), meta.get("shape")
            if isinstance(dt, str) and dt in DATATYPES and t.get("datatype") != dt:
                raise TensorError(f"output '{key[:60]}' is {t.get('datatype')}, the metadata declares {dt}")
            if isinstance(shape, list) and all(isinstance(d, int) for d in shape):
                if len(shape) != arr.ndim or any(d >= 0 and d != s for d, s in zip(shape[1:], arr.shape[1:], strict=False)):
                    raise TensorError(f"output '{key[:60]}' has shape {list(arr.shape)}, the metadata "
                                      f"declares {shape}")
        result[key] = arr
    return result
