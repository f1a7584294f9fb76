"""`openmind serve`: the models in muscle memory over the Open Inference Protocol v2 REST API.

One notebook's memory becomes another's cloud. An ASGI app (starlette) on uvicorn, loopback by
default; with a token every request needs `Authorization: Bearer <token>`.

The package, by what one may touch:
  routes     the app: the table of routes (`OPERATIONS`), their handlers, the token, the refusals
  codec      one model's OIP documents: metadata, a request read into rows, the answer encoded
  documents  the JSON documents read and answered, as typed dicts
  openapi    the OpenAPI description, generated from the routes' table and the documents
  runner     uvicorn (one process or several workers on one port) and the bind rule
  process    `openmind serve` in a child process (tests, benchmarks, notebooks)
  cli        the `openmind serve` command (`register(subparsers)`)
"""

from openmind.serve.cli import cmd_serve, register
from openmind.serve.process import ServeProcess
from openmind.serve.routes import (
    DEFAULT_BODY_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_ROWS,
    INLINE_WORK,
    OPERATIONS,
    Refusal,
    Registry,
    authorized,
    inline,
    make_app,
    openapi_spec,
)
from openmind.serve.runner import (
    SETTINGS_ENV,
    app_from_env,
    check_bind,
    is_loopback,
    log_to_stderr,
    serve,
)

__all__ = [
    "DEFAULT_BODY_TIMEOUT", "DEFAULT_MAX_BODY", "DEFAULT_MAX_ROWS", "INLINE_WORK", "OPERATIONS", "SETTINGS_ENV",
    "Refusal", "Registry", "ServeProcess", "app_from_env", "authorized", "check_bind", "cmd_serve", "inline",
    "is_loopback", "log_to_stderr", "make_app", "openapi_spec", "register", "serve",
]
