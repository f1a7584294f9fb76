"""`%load_ext openmind.jupyter`: the `%%openmind` cell magic and the `%openmind` line magics.

The magic is a thin adapter over the Python API. `%%openmind train|sense|infer [options]` runs the
cell body with the options as the active `openmind.policy(...)` scope, so plain
`openmind.train_or_load(...)` calls in it obey them; it does not care which intent function runs.
A body that makes no such call is itself routed (the cell pathway: `openmind.run_cell`). The body
runs through the shell's own transformations and compiler (magics, top-level `await`).
Afterwards it shows one decision card per journal record the cell wrote. Errors in the body are
raised as usual.

Defaults for every option are traits: `%config OpenmindMagics.fallback = "cached"`. The policy
options, their help and their traits are generated from `openmind.flow.policy.OPTIONS`.
"""

from __future__ import annotations

import ast
import contextlib
import sys
import time
import warnings
from typing import Any

import IPython
from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class
from IPython.display import display
from traitlets import Bool, Integer, TraitError, TraitType, Unicode, validate

from openmind.errors import BadInput
from openmind.flow.context import current_cell, in_cell, reset_cell, session_id, set_cell
from openmind.flow.journal import journal
from openmind.flow.policy import OPTIONS, Option, make_policy, policy
from openmind.jupyter.card import DecisionCard, JournalTable, Shown, register_display
from openmind.jupyter.options import (
    INTENTS,
    LINE_COMMANDS,
    cell_parser,
    did_you_mean,
    log_parser,
    parse_options,
    status_parser,
    usage,
)
from openmind.memory.store import db_path
from openmind.vocab import IntentKind


class OpenmindCellWarning(UserWarning):
    """A `%%openmind` cell whose body did not do what its intent word said."""


# --------------------------------------------------------------------------- magics


def _trait(opt: Option) -> TraitType:
    """The %config trait holding a policy option's default for every cell (unset: the policy's)."""
    text = f"default --{opt.name}: {opt.help}"
    if opt.kind == "flag":
        return Bool(False, help=text).tag(config=True)
    if opt.kind == "count":
        return Integer(None, allow_none=True, help=text).tag(config=True)
    return Unicode(None, allow_none=True, help=text).tag(config=True)


# A base holding one trait per policy option, so `%config OpenmindMagics.<option>` sets its default.
_PolicyTraits = type(Magics)("_PolicyTraits", (Magics,), {o.name: _trait(o) for o in OPTIONS})


@magics_class
class OpenmindMagics(_PolicyTraits):
    """The openmind magics; each policy trait is the default of the cell option with the same name."""

    show_card = Bool(True, help="show a decision card after each %%openmind cell").tag(config=True)
    warn_mismatch = Bool(True, help="warn when a cell's body did not run the intent it names").tag(config=True)
    max_cards = Integer(20, help="at most this many cards per cell (the rest go to %openmind log)").tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._seen: tuple[str, int] | None = None  # (database, newest journal id accounted for)
        self._body_ms = 0.0
        # the last %%openmind cell: total, body and magic overhead in ms (bench/magic_bench.py)
        self.last_timing: dict[str, float] = {}

    @validate(*(o.name for o in OPTIONS if o.kind != "flag"))
    def _check_option(self, proposal: dict[str, Any]) -> Any:
        value = proposal["value"]
        if value is not None:
            try:
                make_policy(**{proposal["trait"].name: value})
            except BadInput as exc:
                raise TraitError(f"OpenmindMagics.{proposal['trait'].name}: {exc}") from None
        return value

    # ------------------------------------------------------------------ dispatch

    @line_cell_magic
    def openmind(self, line: str, cell: str | None = None) -> Any:
        """openmind magics (`%openmind?` for every option)."""
        if cell is not None:
            return self.run_intent_cell(line, cell)
        word, _, rest = line.strip().partition(" ")
        if word in INTENTS:
            raise UsageError(f"'{word}' is a cell magic: start the cell with %%openmind {word} (two %)")
        if word == "status":
            return self.status(rest)
        if word == "log":
            return self.log(rest)
        if word == "assume":
            return self.assume(rest)
        raise UsageError(f"unknown %openmind command {word!r}{did_you_mean(word, LINE_COMMANDS)}; "
                         f"valid: {', '.join(LINE_COMMANDS)} (and %%openmind {{{','.join(INTENTS)}}} "
                         f"for cells); see %openmind?")

    # ------------------------------------------------------------------ cell

    def policy_options(self, args: Any) -> dict[str, Any]:
        """Trait defaults overlaid by the cell's options: exactly the keywords of `openmind.policy`."""
        opts: dict[str, Any] = {}
        for opt in OPTIONS:
            cli = getattr(args, opt.name, None)
            value = cli if cli is not None else getattr(self, opt.name)
            if opt.kind == "flag" and not value:
                continue
            if value is not None:
                opts[opt.name] = value
        return opts

    def run_intent_cell(self, line: str, cell: str) -> Any:
        start = time.perf_counter()
        try:
            return self._run_intent_cell(line, cell)
        finally:
            total = (time.perf_counter() - start) * 1000
            self.last_timing = {"total_ms": total, "body_ms": self._body_ms,
                                "overhead_ms": total - self._body_ms}

    def _run_intent_cell(self, line: str, cell: str) -> Any:
        self._body_ms = 0.0
        args = parse_options(cell_parser, line)
        try:
            intent = IntentKind.parse(args.intent, "intent").value
        except BadInput as exc:
            raise UsageError(f"%%openmind: {exc}{did_you_mean(args.intent, INTENTS)}; "
                             f"see %openmind?") from None
        opts = self.policy_options(args)
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(policy(**opts))
            except BadInput as exc:  # a bad --budget etc.: the user's input, before any work
                raise UsageError(f"%%openmind: {exc}") from None
            here = current_cell()
            count = here.execution_count
            if count is None:  # no pre_run_cell hook (e.g. run_cell_magic)
                count = self.shell.execution_count
                stack.enter_context(in_cell(here.cell_id, count, here.notebook))
            db = str(db_path())
            if self._seen is None or self._seen[0] != db:  # first cell, or OPENMIND_HOME changed
                self._seen = (db, _last_id())
            t0 = time.perf_counter()
            try:
                value = self._execute(cell, intent)
            except BaseException:
                self._body_ms = (time.perf_counter() - t0) * 1000  # the user's error: show what was decided, then raise it as is
                self._report_safely(intent, args, count, failed=True)
                raise
            self._body_ms = (time.perf_counter() - t0) * 1000
            self._report_safely(intent, args, count, failed=False)
            return value

    def _records(self, count: int | None) -> list[dict[str, Any]]:
        """This session's journal records since the last cell, of this cell (its execution count).

        Remembering the last id seen saves a journal query per cell; the count keeps out records
        that plain (non-magic) cells wrote in between."""
        db, seen = self._seen or ("", 0)
        rows = journal(1000, after=seen, session=session_id())
        if rows:
            self._seen = (db, max(seen, *(int(r["id"]) for r in rows)))
        return [r for r in rows if (r.get("cell") or {}).get("execution_count") == count]

    def _report_safely(self, intent: str, args: Any, count: int | None, failed: bool) -> None:
        try:
            self._report(intent, args, self._records(count), failed)
        except Exception as exc:  # a card must never cost the user the cell
            _warn(f"%%openmind: could not show the decision card ({type(exc).__name__}: {exc})")

    def _execute(self, cell: str, intent: str = "train") -> Any:
        """Run the body as IPython runs a cell (its transformations, magics, top-level `await`);
        the last expression is the value. A body that makes no openmind call is itself routed:
        the cell pathway (`openmind.run_cell`)."""
        from openmind.intents.cell import run_cell, run_tree

        shell = self.shell
        source = shell.transform_cell(cell)
        filename = shell.compile.cache(source, shell.execution_count, raw_code=cell)
        compiler = _shell_compiler(shell)
        tree = shell.compile.ast_parse(source)
        if _calls_openmind(tree, shell.user_ns):
            return run_tree(shell.transform_ast(tree), shell.user_ns, filename, compiler,
                            silent=source.rstrip().endswith(";"))
        from openmind.intents.cellkey import first_line

        return run_cell(source, shell.user_ns, intent, compiler=compiler, filename=filename,
                        label=first_line(cell)).value

    def _report(self, intent: str, args: Any, records: list[dict[str, Any]], failed: bool) -> None:
        note = None
        if records and not any(r.get("intent") == intent for r in records):
            ran = sorted({str(r.get("intent")) for r in records})
            note = f"the cell is marked '{intent}' but ran {', '.join(ran)}"
        if self.warn_mismatch and not failed:
            if not records:
                _warn(f"%%openmind {intent}: the cell made no openmind call, so nothing was routed "
                      f"(call e.g. openmind.{_API[intent]}(...) in the cell)")
            elif note:
                _warn(f"%%openmind {intent}: {note}")
        if not self.show_card or args.quiet:
            return
        from openmind.config import assumed

        off = [k for k, v in assumed().items() if v == "off"]
        for rec in records[: self.max_cards]:
            display(DecisionCard(rec, label=args.model, assumed=off,
                                 note=note if rec.get("intent") != intent else None))
        if len(records) > self.max_cards:
            print(f"openmind: {len(records) - self.max_cards} more decisions in this cell: %openmind log")

    # ------------------------------------------------------------------ line

    def status(self, rest: str) -> Shown:
        args = parse_options(status_parser, rest)
        from openmind.flow.resources import probe

        res = probe(refresh=args.refresh)
        return Shown(res._repr_html_(), str(res))

    def log(self, rest: str) -> JournalTable:
        args = parse_options(log_parser, rest)
        if args.n < 1:
            raise UsageError(f"%openmind log: -n must be a positive number of records, got {args.n}")
        return JournalTable(journal(args.n, session=None if args.all else session_id()))

    def assume(self, rest: str) -> Shown:
        from openmind.config import MASKABLE, assume, assumed

        spec = rest.strip()
        try:
            if not spec:
                mask = assumed()
            elif spec == "reset":
                mask = assume("reset")
            else:
                mask = assume(spec)
        except BadInput as exc:
            raise UsageError(f"%openmind assume: {exc} (e.g. %openmind assume gpu=off api=off; "
                             f"resources: {', '.join(MASKABLE)})") from None
        off = [k for k, v in mask.items() if v == "off"]
        text = ("assuming absent: " + ", ".join(off) + " (until %openmind assume reset)") if off \
            else "assuming nothing: every resource is probed for real"
        from html import escape

        return Shown(f"<div class='openmind-assume'>{escape(text)}</div>", text)


_API = {"train": "train_or_load", "sense": "sense_or_simulate", "infer": "infer_adaptive",
        "validate": "validate", "monitor": "monitor", "deploy": "deploy", "ingest": "ingest"}


# What a cell of the user's own code may use of openmind and still be routed as a cell.
CELL_API = frozenset({"device", "budget"})


def _calls_openmind(tree: ast.Module, ns: dict[str, Any]) -> bool:
    """Does the body use openmind beyond `openmind.device()` / `openmind.budget()`? Then its
    calls are routed one by one, as before; else the cell itself is the routed unit."""
    aliases = {a.asname or a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
               for a in node.names if a.name.split(".")[0] == "openmind"}

    def ours(value: Any) -> bool:
        module = value.__name__ if type(value).__name__ == "module" else getattr(value, "__module__", "")
        return str(module or "").split(".")[0] == "openmind"

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "openmind":
            if any(a.name not in CELL_API for a in node.names):
                return True
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            base = ns.get(node.value.id)
            is_module = (base is None and node.value.id in aliases) or \
                (type(base).__name__ == "module" and ours(base))
            if is_module and node.attr not in CELL_API:
                return True
        elif isinstance(node, ast.Name) and node.id in ns and type(ns[node.id]).__name__ != "module":
            value = ns[node.id]
            if callable(value) and ours(value) and getattr(value, "__name__", "") not in CELL_API:
                return True
    return False


def _shell_compiler(shell: Any) -> Any:
    """Compile with the shell's compiler (its __future__ flags, its AST transformers, tracebacks
    that show the cell's lines) and top-level `await` allowed, as IPython compiles a cell."""
    from ast import PyCF_ALLOW_TOP_LEVEL_AWAIT

    def compile_(tree: Any, filename: str, mode: str) -> Any:
        if mode == "exec":
            tree = shell.transform_ast(tree)
        with shell.compile.extra_flags(PyCF_ALLOW_TOP_LEVEL_AWAIT):
            return shell.compile(tree, filename, mode)

    return compile_


def _short_warning(showwarning: Any) -> Any:
    """warnings.showwarning that prints openmind's own warnings as one line: no internal file
    path, no source line (other warnings go to the previous `showwarning` unchanged)."""

    def show(message: Any, category: type, filename: str, lineno: int, file: Any = None,
             line: str | None = None) -> None:
        text = str(message)
        if issubclass(category, OpenmindCellWarning) or text.startswith("openmind:"):
            head = "" if text.startswith(("openmind", "%%openmind")) else "openmind: "
            print(f"{head}{text}", file=file or sys.stderr)
            return
        showwarning(message, category, filename, lineno, file, line)

    show.openmind_previous = showwarning  # type: ignore[attr-defined]
    return show


def _user_line(shell: Any, tb: Any) -> str:
    """Where in the user's own code the error came from: 'line 2: x = f(...)'."""
    import linecache
    import os

    import openmind

    ours = os.path.dirname(os.path.abspath(openmind.__file__))
    cells = getattr(shell.compile, "_filename_map", {})
    found = ""
    while tb is not None:
        code = tb.tb_frame.f_code
        name, lineno = code.co_filename, tb.tb_lineno
        if name in cells or not (os.path.abspath(name).startswith(ours) or "site-packages" in name):
            # a cell's file name maps to a prompt number that is off by one on some IPython
            # versions, so a cell is named by its line only
            where = f"line {lineno}" if name in cells else f"{os.path.basename(name)}, line {lineno}"
            src = linecache.getline(name, lineno).strip()
            found = f"{where}: {src}" if src else where
        tb = tb.tb_next
    return found


def show_bad_input(shell: Any, etype: type, value: BaseException, tb: Any,
                   tb_offset: int | None = None) -> list[str]:
    """IPython's custom exception handler for BadInput: the message and the user's line that
    led to it, not a traceback through openmind's own frames (`%xmode verbose` + %tb for those)."""
    stb = [f"\x1b[0;31m{etype.__name__}\x1b[0m: {value}"]
    where = _user_line(shell, tb)
    if where:
        stb.append(f"  from {where}")
    shell._showtraceback(etype, value, stb)
    return stb


def _warn(message: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("always", OpenmindCellWarning)
        warnings.warn(message, OpenmindCellWarning, stacklevel=3)


def _last_id() -> int:
    """The newest journal id, so the cell can collect exactly the records it wrote."""
    from openmind.flow.journal import last_id

    return last_id()


# --------------------------------------------------------------------------- hooks


# IPython 9.8 increments `execution_count` before `pre_run_cell` (earlier versions after the cell).
_COUNTS_BEFORE_PRE_RUN_CELL = IPython.version_info >= (9, 8)


class _CellHooks:
    """pre/post_run_cell: the cell's id and execution count go into every journal record."""

    def __init__(self, shell: Any) -> None:
        self.shell = shell
        self.token = None

    def pre(self, info: Any) -> None:
        count = self.shell.execution_count
        if _COUNTS_BEFORE_PRE_RUN_CELL and getattr(info, "store_history", False):
            count -= 1  # IPython >= 9.8 has already moved on to the next cell's number
        self.token = set_cell(getattr(info, "cell_id", None), count)

    def post(self, result: Any) -> None:
        from openmind.flow.journal import flush

        flush()  # the cell's deferred records are in the store before the kernel says it is done
        token, self.token = self.token, None
        if token is None:
            return
        try:
            reset_cell(token)
        except ValueError:  # set in another context (the kernel ran the cell elsewhere)
            set_cell(None, None)


def load_ipython_extension(ip: Any) -> None:
    """Register the magics, their %config traits and the cell hooks (idempotent)."""
    if getattr(ip, "_openmind_magics", None) is not None:
        return
    magics = OpenmindMagics(shell=ip, parent=ip)
    ip.register_magics(magics)
    register_display(ip)
    if magics not in ip.configurables:
        ip.configurables.append(magics)
    hooks = _CellHooks(ip)
    ip.events.register("pre_run_cell", hooks.pre)
    ip.events.register("post_run_cell", hooks.post)
    ip._openmind_magics = (magics, hooks)
    if not hasattr(warnings.showwarning, "openmind_previous"):
        warnings.showwarning = _short_warning(warnings.showwarning)
    if not ip.custom_exceptions:  # never replace a handler someone else set
        ip.set_custom_exc((BadInput,), show_bad_input)


def unload_ipython_extension(ip: Any) -> None:
    """Remove the hooks (the magics stay registered, as IPython has no unregister)."""
    state = getattr(ip, "_openmind_magics", None)
    if state is None:
        return
    magics, hooks = state
    ip.events.unregister("pre_run_cell", hooks.pre)
    ip.events.unregister("post_run_cell", hooks.post)
    if magics in ip.configurables:
        ip.configurables.remove(magics)
    ip._openmind_magics = None
    previous = getattr(warnings.showwarning, "openmind_previous", None)
    if previous is not None:
        warnings.showwarning = previous
    if ip.custom_exceptions == (BadInput,):
        ip.set_custom_exc((), None)


OpenmindMagics.openmind.__doc__ = usage()

__all__ = ["OpenmindCellWarning", "OpenmindMagics", "load_ipython_extension"]
