"""The OpenAPI 3.0 description of `openmind serve`, generated from its routes' table (`Operation`)
and the typed documents they read and answer (`documents.py`): a route added to the table is
described, and a document's fields are described as the code defines them.

Per operation, the refusals it can answer follow from its shape: every one may be a 401 (the
token); one naming a model a 404 (no such model) or 503 (stored but unreadable); one taking a body
a 400, 408 or 413.
"""

from __future__ import annotations

import re
from dataclasses import KW_ONLY, dataclass
from typing import Annotated, Any, Required, get_args, get_origin, get_type_hints, is_typeddict

from openmind.config import VERSION
from openmind.serve import documents

ERRORS = {400: "malformed request", 401: "missing or wrong bearer token", 404: "no such model",
          408: "body not received in time", 413: "body too large", 503: "model stored but cannot be loaded"}
_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "number"}
_PARAM = re.compile(r"\{(\w+)(?::\w+)?\}")


@dataclass(frozen=True)
class Operation:
    """One route: where and how it is called, the `Routes` method answering it, and, when it is
    described (`operation_id`), the documents it answers and reads."""

    path: str
    method: str
    handler: str
    _: KW_ONLY
    operation_id: str | None = None  # None: served but not described (an alias, the description)
    answers: Any = None  # the document of a 200
    reads: Any = None  # the document of the request body
    description: str = ""
    asgi: bool = False  # the handler is a bare ASGI callable (scope, receive, send)

    def path_params(self) -> list[str]:
        return _PARAM.findall(self.path)


def components() -> dict[str, Any]:
    """The public documents by name: the typed dicts and the named lists of them."""
    def is_document(v: Any) -> bool:
        return is_typeddict(v) or (get_origin(v) is list and is_typeddict(get_args(v)[0]))

    return {n: v for n, v in vars(documents).items() if not n.startswith("_") and is_document(v)}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _schema(tp: Any, refs: dict[Any, str]) -> dict[str, Any]:
    """The JSON schema of a type hint; a public typed dict is referred to by name."""
    if is_typeddict(tp) and tp in refs:
        return _ref(refs[tp])
    return _inline(tp, refs)


def _inline(tp: Any, refs: dict[Any, str]) -> dict[str, Any]:
    origin = get_origin(tp)
    if origin is Required:
        return _schema(get_args(tp)[0], refs)
    if origin is Annotated:  # extra schema keywords ride in the metadata: Annotated[int, {"minimum": 0}]
        base, *extra = get_args(tp)
        out = _schema(base, refs)
        for more in extra:
            out = {**out, **more}
        return out
    if is_typeddict(tp):
        hints = get_type_hints(tp, include_extras=True)
        out: dict[str, Any] = {"type": "object"}
        required = [k for k in hints if k in tp.__required_keys__]
        if required:
            out["required"] = required
        out["properties"] = {k: _schema(v, refs) for k, v in hints.items()}
        return out
    if origin is list:
        return {"type": "array", "items": _schema(get_args(tp)[0], refs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": True}
    if tp is Any:
        return {}
    return {"type": _SCALARS[tp]}


def _operation(op: Operation, names: dict[Any, str]) -> dict[str, Any]:
    params = op.path_params()
    codes = {401} | ({404, 503} if "model_name" in params else set()) | ({400, 408, 413} if op.reads else set())
    responses: dict[str, Any] = {}
    if op.answers is not None:
        responses["200"] = {"description": "OK", "content": {"application/json": {"schema": _ref(names[op.answers])}}}
    for code in sorted(codes):
        responses[str(code)] = {"description": ERRORS[code],
                                "content": {"application/json": {"schema": _ref("Error")}}}
    out: dict[str, Any] = {"operationId": op.operation_id}
    if op.description:
        out["description"] = op.description
    if params:
        out["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                             for p in params]
    if op.reads is not None:
        out["requestBody"] = {"required": True,
                              "content": {"application/json": {"schema": _ref(names[op.reads])}}}
    out["responses"] = responses
    return out


def describe(operations: tuple[Operation, ...]) -> dict[str, Any]:
    """The OpenAPI 3.0 description of the described `operations`: the Open Inference Protocol v2
    REST API (KServe/Triton shape), with openmind's error body {"error": "..."}."""
    docs = components()
    names = {v: n for n, v in docs.items()}
    refs = {v: n for n, v in docs.items() if is_typeddict(v)}
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        if op.operation_id:
            paths.setdefault(op.path, {})[op.method.lower()] = _operation(op, names)
    return {"openapi": "3.0.3",
            "info": {"title": "openmind serve: Open Inference Protocol v2 (REST)", "version": VERSION},
            "paths": paths,
            "components": {"schemas": {n: _inline(v, refs) for n, v in docs.items()},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}, {}]}
