"""The JSON documents `openmind serve` reads and answers (Open Inference Protocol v2 REST, KServe/
Triton shape), as typed dicts: the routes' table names them and `openapi.py` turns them into the
OpenAPI schemas, so the description and the code share one definition.

No `from __future__ import annotations` here: TypedDict sees `Required` only in evaluated hints.
"""

from typing import Annotated, Any, Required, TypedDict

from openmind.pathways.cloud.tensors import DATATYPES

Parameters = dict[str, Any]  # free-form: {"type": "object", "additionalProperties": true}


class Error(TypedDict):
    """Every refusal's body."""

    error: str


class Live(TypedDict, total=False):
    live: bool


class Ready(TypedDict, total=False):
    ready: bool


class ServerMetadata(TypedDict):
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(TypedDict):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(TypedDict, total=False):
    name: Required[str]
    versions: list[str]
    platform: Required[str]
    parameters: Parameters
    inputs: Required[list[MetadataTensor]]
    outputs: Required[list[MetadataTensor]]


class ModelReady(TypedDict, total=False):
    name: str
    ready: bool


class _RepositoryModel(TypedDict, total=False):
    name: str
    version: str
    state: str


RepositoryIndex = list[_RepositoryModel]


class ModelList(TypedDict):
    """GET /v2/models, as KServe's model server answers it: the names of the models served."""

    models: list[str]


class RequestInput(TypedDict, total=False):
    name: Required[str]
    shape: Required[list[Annotated[int, {"minimum": 0}]]]
    datatype: Required[Annotated[str, {"enum": list(DATATYPES)}]]
    parameters: Parameters
    data: Required[list[Any]]


class RequestOutput(TypedDict, total=False):
    name: Required[str]
    parameters: Parameters


class InferenceRequest(TypedDict, total=False):
    id: str
    parameters: Parameters
    inputs: Required[list[RequestInput]]
    outputs: list[RequestOutput]


class ResponseOutput(TypedDict, total=False):
    name: Required[str]
    shape: Required[list[int]]
    datatype: Required[str]
    parameters: Parameters
    data: Required[list[Any]]


class InferenceResponse(TypedDict, total=False):
    model_name: Required[str]
    model_version: str
    id: str
    parameters: Parameters
    outputs: Required[list[ResponseOutput]]
