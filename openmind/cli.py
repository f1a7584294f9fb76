"""`openmind` on the command line: a thin adapter over the same functions a notebook calls.

Each command is registered by a module that owns it (`commands()`), so new intents add a line here
and keep their argument parsing next to their code. The modules are imported by name, not by
strings, so the import contract sees them; each keeps its heavy imports inside its commands, so
`openmind --help` stays quick.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from openmind import serve  # a module or a package: either way it exposes `register`
from openmind.errors import OpenmindError
from openmind.intents import deploy, federate, sense
from openmind.jupyter import run as notebook
from openmind.memory import cli as memory_cli

Register = Callable[[argparse._SubParsersAction], None]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="what resources this machine has right now")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--refresh", action="store_true", help="re-probe instead of using the cache")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("log", help="the latest decisions from the journal")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("-n", type=int, default=20, help="how many records (default 20)")
    p.set_defaults(func=cmd_log)


def cmd_status(args: argparse.Namespace) -> int:
    from openmind.flow.resources import probe

    res = probe(refresh=args.refresh)
    if args.json:
        print(json.dumps(res.to_dict(), indent=2, default=str))
    else:
        print(res)
    return 0


def cmd_log(args: argparse.Namespace) -> int:
    from openmind.flow.journal import format_records, journal

    records = journal(args.n)
    if args.json:
        print(json.dumps(records, indent=2, default=str))
    elif not records:
        print("the journal is empty")
    else:
        print(format_records(records))
    return 0


def commands() -> tuple[Register, ...]:
    """Each module's `register(subparsers)`, in the order `openmind --help` lists them."""
    return (register, sense.register, deploy.register, serve.register, memory_cli.register,
            notebook.register, federate.register)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="openmind", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in commands():
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except OpenmindError as exc:
        print(f"openmind: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return _reader_left()


def _reader_left() -> int:
    """The reader of our output went away (`openmind log --json | head -1`): stop quietly, as a
    command killed by SIGPIPE does (status 141), with no traceback from the exit's flush."""
    import os

    try:
        fd = sys.stdout.fileno()
    except (OSError, ValueError):  # not a real file (captured): nothing to flush at exit
        return 128 + 13
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return 128 + 13


if __name__ == "__main__":
    sys.exit(main())
