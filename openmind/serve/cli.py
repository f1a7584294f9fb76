"""`openmind serve` on the command line: its arguments, checked, and the server run with them."""

from __future__ import annotations

import argparse
import os
import sys

from openmind.errors import BadInput
from openmind.serve.routes import DEFAULT_BODY_TIMEOUT, DEFAULT_MAX_BODY
from openmind.serve.runner import check_bind, is_loopback, log_to_stderr, serve


def register(sub: argparse._SubParsersAction) -> None:
    """Add `openmind serve` to the CLI's sub-commands (the CLI calls this for every command module)."""
    p = sub.add_parser("serve", help="serve the models in muscle memory over the Open Inference Protocol v2")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--token", default=None,
                   help="require 'Authorization: Bearer <token>' (default: $OPENMIND_SERVE_TOKEN)")
    p.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY,
                   help=f"largest request body in bytes (default {DEFAULT_MAX_BODY})")
    p.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT,
                   help=f"seconds a request body may take to arrive (default {DEFAULT_BODY_TIMEOUT:g}); "
                        "a stalled client gets 408")
    p.add_argument("--workers", type=int, default=1,
                   help="processes answering on the port (default 1; one per core the server may use)")
    p.add_argument("--model", action="append", dest="models", help="serve only this model (repeatable)")
    p.add_argument("--allowed-hosts", default="", metavar="NAME[,NAME]",
                   help="Host header names answered besides loopback ones and --host (e.g. the "
                        "machine's DNS name; '*' for any); others get 403 (DNS rebinding)")
    p.add_argument("--insecure", action="store_true",
                   help="allow listening beyond loopback without a token (anyone who reaches the port can query)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    """Check the arguments (a clear BadInput for each wrong one), then serve until interrupted."""
    token = args.token or os.environ.get("OPENMIND_SERVE_TOKEN") or None
    if not 0 <= args.port <= 65535:
        raise BadInput(f"--port {args.port} is not a TCP port; give 0-65535 (0 = any free port)")
    if args.max_body < 1024:
        raise BadInput(f"--max-body {args.max_body} is too small; give at least 1024 bytes")
    if not 1 <= args.workers <= 256:
        raise BadInput(f"--workers {args.workers}: give 1-256 processes (one per core to spare)")
    if not args.body_timeout > 0:
        raise BadInput(f"--body-timeout {args.body_timeout} must be a positive number of seconds")
    insecure = bool(getattr(args, "insecure", False))
    check_bind(args.host, token, insecure)
    if insecure and not token and not is_loopback(args.host):
        print("openmind serve: warning: listening beyond loopback without a token (--insecure); anyone "
              "who can reach this port can query the models", file=sys.stderr, flush=True)
    log_to_stderr()
    try:
        serve(args.host, args.port, token, max_body=args.max_body, models=args.models, insecure=insecure,
              body_timeout=args.body_timeout, workers=args.workers,
              allowed_hosts=[h for h in args.allowed_hosts.split(",") if h.strip()])
    except OSError as exc:
        raise BadInput(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc}); "
                       "pick another --port or 0 for any free one") from None
    return 0
