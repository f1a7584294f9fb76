"""Open Inference Protocol v2 (KServe v2 REST) client: talks to `openmind serve`, Triton, KServe,
MLServer alike. Retries, Retry-After and cooldown come from `openmind.cloud.http`."""

from __future__ import annotations

import json
import math
import time
from typing import Any
from urllib.parse import quote

import numpy as np

from openmind.config import infer_token, infer_url, public_url
from openmind.errors import BadInput
from openmind.pathways.cloud.http import EndpointError, failed, request
from openmind.pathways.cloud.tensors import (
    DATATYPES,
    EXTENSION,
    HEADER,
    TensorError,
    encode_many,
    split_body,
    take_binary,
)

META_TTL_S = 60.0  # how long what a server declares (extensions, inputs, outputs) is trusted
_meta: dict[tuple, tuple[float, Any]] = {}


def _remembered(key: tuple, ask: Any) -> Any:
    """ask() once per META_TTL_S per key: metadata costs a round trip, inference should not."""
    now = time.monotonic()
    hit = _meta.get(key)
    if hit is None or now - hit[0] > META_TTL_S:
        hit = _meta[key] = (now, ask())
    return hit[1]


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

    def binary_supported(self) -> bool:
        """True when the server lists the binary tensor data extension (asked once a minute)."""
        def ask() -> bool:
            try:
                meta = self.server_metadata()
            except EndpointError:
                return False
            ext = meta.get("extensions") if isinstance(meta, dict) else None
            return isinstance(ext, list) and EXTENSION in ext

        return _remembered((self.url, "binary"), ask)

    def declared_inputs(self, name: str, version: str | None = None) -> list[dict[str, Any]]:
        """The inputs the served model declares (name, datatype, shape); [] if it declares none."""
        return self._declared(name, version, "inputs")

    def _declared(self, name: str, version: str | None, which: str) -> list[dict[str, Any]]:
        """The model metadata's named `which` ("inputs" or "outputs") entries; the metadata is
        asked once a minute per endpoint and model, and [] stands for none or unreachable."""
        def ask() -> dict[str, Any]:
            try:
                meta = self.model_metadata(name, version)
            except EndpointError:
                return {}
            return meta if isinstance(meta, dict) else {}

        listed = _remembered((self.url, "metadata", name, version), ask).get(which)
        return [i for i in listed if isinstance(i, dict) and isinstance(i.get("name"), str)
                and i["name"]] if isinstance(listed, list) else []

    def infer(self, name: str, inputs: Any, *, outputs: list[str] | None = None,
              version: str | None = None, request_id: str | None = None,
              binary: bool | None = None) -> dict[str, np.ndarray]:
        """Run inference; `inputs` is an array (sent under the name and datatype of the model's
        first declared input, "input-0" if it declares none) or {name: array}.

        `binary`: send and ask for binary tensor data (None: when the server supports it).
        Returns {output name: array}, decoded and validated.
        """
        if not isinstance(inputs, dict):
            declared = self.declared_inputs(name, version)
            spec = declared[0] if declared else {}
            arr = np.asarray(inputs)
            dt = spec.get("datatype")
            if dt in DATATYPES and DATATYPES[dt] is not object and arr.dtype.kind in "biuf":
                arr = arr.astype(DATATYPES[dt], copy=False)
            inputs = {spec.get("name", "input-0"): arr}
        if binary is None:
            binary = self.binary_supported()
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        listed, raw = encode_many(inputs, binary)
        body: dict[str, Any] = {"inputs": listed}
        if outputs:
            body["outputs"] = [{"name": o, **({"parameters": {"binary_data": True}} if binary else {})}
                               for o in outputs]
        elif binary:
            body["parameters"] = {"binary_data_output": True}
        if request_id:
            body["id"] = request_id
        head = json.dumps(body).encode()
        if binary:
            headers[HEADER] = str(len(head))
            headers["Content-Type"] = "application/octet-stream"
        else:
            headers["Content-Type"] = "application/json"
        path = self._model_path(name, version) + "/infer"
        resp = request("POST", f"{self.url}{path}", headers=headers, content=head + raw,
                       secrets=(self.token,) if self.token else (), **self.options)
        rows = {int(np.shape(v)[0]) if np.ndim(v) else 1 for v in inputs.values()}
        try:
            try:
                answer, rest = split_body(resp.content, resp.headers.get(HEADER))
            except (ValueError, UnicodeDecodeError):
                raise TensorError(f"{path} answered neither JSON nor binary tensor data "
                                  f"({resp.headers.get('content-type', '?')})") from None
            return check_answer(answer, rest, rows.pop() if len(rows) == 1 else None,
                                outputs, self.declared_outputs(name, version))
        except TensorError as exc:  # the server's fault, not the caller's: fall through
            reason = f"{public_url(self.url)}: malformed answer: {exc}"
            failed(self.url, reason, cooldown_after=self.options["cooldown_after"],
                   cooldown=self.options["cooldown"])
            raise EndpointError(reason, status=resp.status_code) from None

    def declared_outputs(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The outputs the model's metadata declares ({name: {datatype, shape}}), asked once a
        minute per endpoint and model; empty when it declares none (then only rows are checked)."""
        return {o["name"]: o for o in self._declared(name, version, "outputs")}


def check_answer(answer: Any, rest: Any, rows: int | None, asked: list[str] | None,
                 declared: dict[str, Any]) -> dict[str, np.ndarray]:
    """{name: array} from an infer answer (JSON or binary tensors), believed only when it fits what
    was sent: every output decodes, has one entry per row sent, is one of those asked for, and
    agrees with the model's declared metadata (datatype, rank, fixed dimensions), and every value
    is finite (a NaN label is no answer). TensorError says what did not fit."""
    tensors = answer.get("outputs") if isinstance(answer, dict) else None
    if not isinstance(tensors, list) or not tensors:
        raise TensorError("the answer has no 'outputs' list")
    result: dict[str, np.ndarray] = {}
    for t, (key, arr) in zip(tensors, take_binary(tensors, rest, where="outputs"), strict=True):
        if key in result:
            raise TensorError(f"output '{key[:60]}' appears twice")
        if asked and key not in asked:
            raise TensorError(f"output '{key[:60]}' was not asked for (asked: {asked})")
        if rows is not None and (arr.ndim == 0 or arr.shape[0] != rows):
            got = arr.shape[0] if arr.ndim else "a scalar"
            raise TensorError(f"output '{key[:60]}' has {got} predictions for the {rows} rows sent")
        bad = _non_finite(arr)
        if bad:
            raise TensorError(f"output '{key[:60]}' holds {bad} non-finite value(s) (NaN or "
                              f"infinity): not an answer")
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


def _non_finite(arr: np.ndarray) -> int:
    """How many values of an answer's array are NaN or infinite (numbers, or floats in an
    object array); 0 for text and integers."""
    if arr.dtype.kind in "fc":
        return int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if arr.dtype.kind == "O":
        return sum(1 for v in arr.reshape(-1).tolist() if isinstance(v, float) and not math.isfinite(v))
    return 0
