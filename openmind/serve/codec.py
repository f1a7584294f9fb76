"""The Open Inference Protocol documents of one served model: its metadata, an inference request
read into feature rows (JSON or the binary tensor extension), and the answer encoded back. The
tensors themselves are `openmind.pathways.cloud.tensors`' (the client's codec too); this module
knows what `openmind serve` asks of them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from openmind.pathways.cloud import tensors
from openmind.pathways.cloud.tensors import HEADER, TensorError
from openmind.serve.documents import ModelMetadata


def label_type(model: Any) -> str:
    """The OIP datatype of a model's labels: BYTES for string classes, else INT64."""
    classes = model.classes
    return "BYTES" if classes is not None and classes.dtype.kind in "USO" else "INT64"


def outputs_of(model: Any) -> list[str]:
    """The outputs a model answers: label and probabilities; a colony adds abstained (BOOL, a row
    fewer than its quorum of members stand behind)."""
    return ["label", "probabilities"] + (["abstained"] if model.colony is not None else [])


def model_metadata(name: str, model: Any) -> ModelMetadata:
    """GET /v2/models/{name}: the inputs and outputs `model` takes and answers."""
    n = model.n_inputs
    classes = model.classes
    k = len(classes) if classes is not None else -1
    col = model.colony
    outputs = [{"name": "label", "datatype": label_type(model), "shape": [-1]},
               {"name": "probabilities", "datatype": "FP32", "shape": [-1, k]}]
    params: dict[str, Any] = {"key": model.key,
                              "classes": classes.tolist() if classes is not None else None}
    if col is not None:
        outputs.append({"name": "abstained", "datatype": "BOOL", "shape": [-1]})
        params.update(members=[m.name for m in col.members], quorum=col.quorum,
                      confidence=col.confidence)
    return {
        "name": name, "versions": ["1"],
        "platform": "openmind-colony" if col is not None else "openmind-ternary",
        "inputs": [{"name": "input-0", "datatype": "FP32", "shape": [-1, n if n else -1]}],
        "outputs": outputs, "parameters": params,
    }


@dataclass
class Request:
    """An inference request as read: the feature rows, the outputs wanted (each as binary data or
    JSON) and the caller's id to echo."""

    X: np.ndarray
    wanted: list[str]
    rid: Any
    binary: dict[str, bool]


def read_request(body: Any, model: Any, rest: memoryview, max_rows: int) -> Request:
    """The request `body` (parsed JSON; `rest` the binary data after it) for `model`; TensorError
    says what is wrong with it."""
    if not isinstance(body, dict):
        raise TensorError('body must be a JSON object {"inputs": [...]}')
    if not isinstance(body.get("parameters", {}), dict):
        raise TensorError("parameters must be a JSON object")
    X = _rows(body.get("inputs"), model, rest, max_rows)
    outputs = body.get("outputs")
    wanted = outputs_of(model)
    if outputs is not None:
        if not isinstance(outputs, list) or not all(isinstance(o, dict) and isinstance(o.get("name"), str)
                                                    and isinstance(o.get("parameters", {}), dict)
                                                    for o in outputs):
            raise TensorError('outputs must be a list of {"name": ...} objects')
        wanted = [o["name"] for o in outputs]
        valid = outputs_of(model)
        unknown = [w for w in wanted if w not in valid]
        if unknown:
            raise TensorError(f"unknown output(s) {str(unknown)[:120]}; valid: {', '.join(valid)}")
    rid = body.get("id")
    if rid is not None and not isinstance(rid, str):
        raise TensorError("id must be a string")
    # binary outputs: per output ("parameters": {"binary_data": true}) or all of them
    # ("parameters": {"binary_data_output": true}), as Triton's client asks by default
    params = body.get("parameters")
    every = isinstance(params, dict) and params.get("binary_data_output") is True
    binary = {w: every for w in wanted}
    for o in outputs or []:
        p = o.get("parameters")
        if isinstance(p, dict) and isinstance(p.get("binary_data"), bool):
            binary[o["name"]] = p["binary_data"]
    return Request(X, wanted, rid, binary)


def _rows(inputs: Any, model: Any, rest: memoryview, max_rows: int) -> np.ndarray:
    """The one input tensor as finite float32 rows of the width `model` takes."""
    if not isinstance(inputs, list) or len(inputs) != 1:
        raise TensorError("inputs must be a list of exactly one tensor (the feature rows)")
    n = model.n_inputs
    [(_, X)] = tensors.take_binary(inputs, rest, where="inputs", max_elements=max_rows * max(n or 1, 1))
    if X.dtype == object or X.dtype == np.bool_:
        raise TensorError("inputs[0] must hold numbers (FP32, FP64 or an integer type)")
    if X.ndim == 1:
        X = X.reshape(1, -1)
    if X.ndim != 2 or (n is not None and X.shape[1] != n):
        raise TensorError(f"inputs[0] has shape {list(X.shape)}; model '{model.name}' expects [rows, {n}]")
    X = X.astype(np.float32, copy=False)
    if not np.isfinite(X).all():
        raise TensorError("inputs[0] contains NaN or infinity")
    return X


def encode_answer(name: str, model: Any, request: Request) -> tuple[dict[str, str], bytes]:
    """`model`'s answer to `request` as (headers, body): JSON, or JSON followed by the binary data
    of the outputs asked for that way."""
    labels, proba, _used, abstained = model.answer(request.X)  # a colony: by vote, with its abstentions
    if label_type(model) == "INT64":
        labels = np.asarray(labels).astype(np.int64)
    outs = {"label": labels, "probabilities": proba}
    if abstained is not None:
        outs["abstained"] = abstained
    listed, raw = tensors.encode_many({o: outs[o] for o in request.wanted}, request.binary)
    answer: dict[str, Any] = {"model_name": name, "model_version": "1", "outputs": listed}
    if request.rid is not None:
        answer["id"] = request.rid
    head = json.dumps(answer).encode()
    if not any(request.binary.values()):
        return {"Content-Type": "application/json"}, head
    return {"Content-Type": "application/octet-stream", HEADER: str(len(head))}, head + raw
