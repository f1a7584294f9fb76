"""`openmind memory ls|show|rm|gc`: list, inspect and evict muscle-memory entries;
`openmind key`: this machine's public signing key, for teammates' trust files."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import re

from openmind.errors import BadInput

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_size(text: str) -> int:
    """Bytes from '500MB', '2GiB', '1000'."""
    m = _SIZE.match(str(text))
    unit = (m.group(2) or "").lower().rstrip("b") if m else None
    if not m or unit not in _UNITS:
        raise BadInput(f"cannot read size {text!r}: use bytes or forms like '500MB', '2GiB'")
    return int(float(m.group(1)) * _UNITS[unit])


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("key", help="this machine's public signing key, one line for a trust file")
    p.set_defaults(func=cmd_key)
    p = sub.add_parser("memory", help="muscle memory: list, inspect and evict cached entries")
    msub = p.add_subparsers(dest="memory_command", required=True)
    from openmind.memory.catalog import kinds

    q = msub.add_parser("ls", help="what is remembered, newest first (models with their versions, "
                                   "cells with the names they bind, signals, ingested sources)")
    q.add_argument("--kind", choices=(*kinds(), "pattern"))
    q.add_argument("--name")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q.set_defaults(func=cmd_ls)
    q = msub.add_parser("show", help="one entry's metadata (by key prefix)")
    q.add_argument("key")
    q.set_defaults(func=cmd_show)
    q = msub.add_parser("rm", help="forget a name (every version; a cell: those that bind it), "
                                   "or remove entries by key prefix (6+ characters)")
    q.add_argument("key", metavar="NAME_OR_KEY")
    q.set_defaults(func=cmd_rm)
    q = msub.add_parser("gc", help="evict old/least-used/broken entries and orphan blobs")
    q.add_argument("--max-bytes", help="keep at most this much, e.g. 500MB (least recently used go first)")
    q.add_argument("--older-than", help="evict entries unused for this long, e.g. 30d")
    q.add_argument("--keep-broken", action="store_true",
                   help="keep entries whose blob is missing or truncated")
    q.add_argument("--verify", action="store_true",
                   help="also read every blob and evict entries whose content does not match its "
                        "hash, or that no trusted key signed (e.g. kept before entries were signed)")
    q.add_argument("--team", action="store_true",
                   help="gc the team's memory (OPENMIND_REMOTE; on a machine that publishes): "
                        "--older-than evicts by publish time, then unreferenced blobs go")
    q.set_defaults(func=cmd_gc)


def cmd_key(args: argparse.Namespace) -> int:
    """Print `ed25519 <base64> <key id> <user@host>`: append it to a teammate's OPENMIND_TRUST
    file and their machine restores what this one publishes."""
    from openmind.memory.keys import public_line

    print(public_line())
    return 0


def _when(ts: float) -> str:
    return _dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def _info(m) -> str:
    """One line of what a memory holds, for `memory ls` (and whose key published it, when it came
    from the team's memory)."""
    text = _what(m)
    e = m.versions[0]
    if getattr(e, "origin", None):
        text = (text + f"  from the team, published by {e.signer}").strip()
    return text


def _what(m) -> str:
    d, e = m.detail, m.versions[0]
    if m.kind == "cell":  # the cell pathway: which names it binds, and when it last served a hit
        return f"binds {', '.join(d.get('binds') or []) or '-'}  last use {_when(m.used)}"
    if m.kind == "ingest":
        size = f"{d.get('rows')} rows" if d.get("rows") is not None else f"shape {d.get('shape')}"
        return f"{d.get('source')} ({d.get('format')}, {size}), checked {_when(d.get('checked') or e.created)}"
    acc = d.get("val_accuracy")
    extra = f"val acc {acc:.3f}" if isinstance(acc, (int, float)) else ""
    if e.meta.get("complete") is False:
        extra = (extra + f"  partial ({e.meta.get('stopped')} after {e.meta.get('epochs_done')}"
                 f" of {e.meta.get('epochs')} epochs)").strip()
    return extra


def cmd_ls(args: argparse.Namespace) -> int:
    from openmind.memory.catalog import memories

    kind = "signal" if args.kind == "pattern" else args.kind
    rows = [m for m in memories(kind) if args.name is None or m.name == args.name]
    if args.json:
        print(json.dumps([m.to_dict() for m in rows], indent=2, default=str))
        return 0
    if not rows:
        print("muscle memory is empty" if not (args.kind or args.name) else "no matching entries")
        return 0
    print(f"{'key':<12} {'kind':<11} {'name':<24} {'vers':>4} {'size':>9} {'hits':>5}  "
          f"{'created':<16}  info")
    for m in rows:
        print(f"{m.key[:12]:<12} {m.kind:<11} {m.name[:24]:<24} {len(m.versions):>4} {m.size:>9} "
              f"{m.hits:>5}  {_when(m.created):<16}  {_info(m)}")
    count = sum(len(m.versions) for m in rows)
    print(f"{count} entries, {sum(m.size for m in rows)} bytes")
    return 0


def _one(prefix: str):
    from openmind.memory.blobs import find

    found = find(prefix)
    if not found:
        raise BadInput(f"no entry with a key starting {prefix!r} (see `openmind memory ls`)")
    if len(found) > 1:
        raise BadInput(f"{len(found)} entries start with {prefix!r}; give more characters: "
                       + ", ".join(e.key[:12] for e in found[:5]))
    return found[0]


def cmd_show(args: argparse.Namespace) -> int:
    print(json.dumps(_one(args.key).to_dict(), indent=2, default=str))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    from openmind.memory.blobs import remove
    from openmind.memory.catalog import forget, matching

    if matching(args.key):  # a name first: `openmind memory rm digits` forgets every version
        n = forget(args.key)
        print(f"forgot '{args.key}': removed {n} entr{'y' if n == 1 else 'ies'}")
        return 0
    n = remove(args.key)
    if n == 0:
        raise BadInput(f"no entry with a key starting {args.key!r} (see `openmind memory ls`)")
    print(f"removed {n} entr{'y' if n == 1 else 'ies'}")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from openmind.memory.blobs import gc
    from openmind.units import parse_duration

    if args.team:
        from openmind.memory import team

        done = team.gc(parse_duration(args.older_than, "--older-than") if args.older_than else None)
        print(f"team memory: evicted {done['entries']} entries, deleted {done['blobs']} blobs")
        return 0
    n = gc(max_bytes=parse_size(args.max_bytes) if args.max_bytes else None,
           older_than=parse_duration(args.older_than, "--older-than") if args.older_than else None,
           broken=not args.keep_broken, verify=args.verify)
    print(f"evicted {n} entr{'y' if n == 1 else 'ies'}")
    return 0
