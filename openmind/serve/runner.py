"""Running `openmind serve`: the app on uvicorn (one process, or `workers` processes sharing the
port under uvicorn's supervisor), and the bind rule (beyond loopback only with a token).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from starlette.applications import Starlette

from openmind.config import is_loopback
from openmind.errors import BadInput
from openmind.serve.routes import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY, Registry, make_app


def serve(host: str = "127.0.0.1", port: int = 8000, token: str | None = None, *,
          max_body: int = DEFAULT_MAX_BODY, models: list[str] | None = None,
          ready: Any = None, insecure: bool = False, body_timeout: float = DEFAULT_BODY_TIMEOUT,
          workers: int = 1, allowed_hosts: list[str] | None = None) -> None:
    """Run the server until interrupted; prints the URL it listens on (port 0 = any free port).
    Beyond loopback it needs a token, unless `insecure` says the caller means it. `workers` > 1
    runs that many processes on the one port (uvicorn's supervisor restarts one that dies): a
    process answers on one core, so a machine with cores to spare serves that many times more.

    uvicorn with httptools (and uvloop where it exists), as KServe and MLServer run: per request
    it costs a third of what tornado did, which is most of a small model's round trip.
    Requests are answered only when their Host header names the server (`trusted_hosts`)."""
    import tornado.netutil
    import uvicorn

    check_bind(host, token, insecure)
    settings = {"max_body": max_body, "models": models, "body_timeout": body_timeout,
                "allowed_hosts": trusted_hosts(host, allowed_hosts)}
    common = {"http": "auto", "loop": "auto", "lifespan": "off", "log_config": None, "access_log": False,
              "server_header": False, "proxy_headers": False, "ws": "none", "timeout_keep_alive": 120,
              "timeout_graceful_shutdown": 3}
    if workers > 1:  # spawned workers build the app from the environment: the token stays off argv
        os.environ[SETTINGS_ENV] = json.dumps(settings)
        if token:
            os.environ["OPENMIND_SERVE_TOKEN"] = token
        else:
            os.environ.pop("OPENMIND_SERVE_TOKEN", None)
        config = uvicorn.Config("openmind.serve.runner:app_from_env", factory=True, workers=workers, **common)
    else:
        config = uvicorn.Config(make_app(token, **settings), **common)
    sockets = tornado.netutil.bind_sockets(port, address=host)  # every address of the name, v4 and v6
    bound = sockets[0].getsockname()[1]
    shown_host = f"[{host}]" if ":" in host else host
    print(f"openmind serve: listening on http://{shown_host}:{bound} "
          f"({'token required' if token else 'no token'}; models: {', '.join(Registry(models).names()) or 'none yet'})",
          flush=True)
    if ready is not None:
        ready(bound)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        Multiprocess(config, target=uvicorn.Server(config).run, sockets=sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)


SETTINGS_ENV = "OPENMIND_SERVE_SETTINGS"


def app_from_env() -> Starlette:
    """The app of one `openmind serve --workers N` process, from what the supervisor put in the
    environment (settings as JSON, the token in OPENMIND_SERVE_TOKEN)."""
    log_to_stderr()
    settings = json.loads(os.environ[SETTINGS_ENV])
    return make_app(os.environ.get("OPENMIND_SERVE_TOKEN") or None, **settings)


def log_to_stderr() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def trusted_hosts(host: str, allowed: list[str] | None) -> list[str]:
    """The Host names a server bound to `host` answers besides loopback: the address it was given
    (when it is one, not every interface) and the `allowed` ones ("*": any)."""
    out = [a.strip() for a in (allowed or []) if a.strip()]
    if host.strip("[]") not in ("", "0.0.0.0", "::"):
        out.append(host)
    return out


def check_bind(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve beyond loopback without a token unless the caller said --insecure."""
    if token or insecure or is_loopback(host):
        return
    shown = host if host else "'' (every interface)"
    raise BadInput(f"refusing to listen on {shown} without a token: anyone who can reach the port could "
                   f"query the models. Set OPENMIND_SERVE_TOKEN (or --token), listen on 127.0.0.1, or "
                   f"pass --insecure if you mean it")
