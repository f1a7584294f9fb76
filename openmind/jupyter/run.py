"""`openmind run NOTEBOOK` and `openmind demo`: execute a notebook on a real kernel, print its decisions.

The notebook runs top to bottom on an ipykernel of this Python (nbclient). Afterwards one line per
openmind cell is printed from the journal rows that kernel wrote (cell, intent, pathway, decision,
time, reason). A cell that raises stops the run and makes the exit status non-zero.

`openmind run` remembers every code cell (`runplan`): `--resume` restores the cells a failed run
got through and runs from the one that failed, `-p NAME VALUE` injects parameters, `--replay RUN`
restores what a recorded run computed; each cell's outcome is kept in the executed notebook.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from openmind.errors import BadInput
from openmind.jupyter.runplan import (
    CellOutcome,
    CellTimer,
    Manifest,
    find_manifest,
    inject_parameters,
    keep_manifest,
    last_manifest,
    new_run_id,
    replay_note,
)
from openmind.units import parse_duration

KERNEL_NAME = "openmind-python"


@dataclass
class CellDecisions:
    """The decisions one notebook cell made, in order."""

    index: int  # position of the cell in the notebook (0-based)
    execution_count: int | None
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RunResult:
    """What `run_notebook` found: the executed notebook, its decisions and the first error."""

    notebook: Any
    cells: list[CellDecisions]
    error: str | None = None
    error_cell: int | None = None
    outcomes: list[CellOutcome] = field(default_factory=list)  # remembering runs: every code cell
    run: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def decisions(self) -> list[dict[str, Any]]:
        return [r for c in self.cells for r in c.records]

    def lines(self) -> list[str]:
        """One line per decision: cell, intent, pathway/decision, time, reason."""
        out = []
        for c in self.cells:
            for r in c.records:
                out.append(format_line(c, r))
        return out


def format_line(cell: CellDecisions, rec: Mapping[str, Any]) -> str:
    where = f"cell {cell.index + 1}" + (f" [{cell.execution_count}]" if cell.execution_count else "")
    what = f"{rec.get('intent')} {rec.get('name') or ''}".strip()
    how = f"{rec.get('pathway')}/{rec.get('decision')}" if rec.get("ok") else "FAILED"
    if rec.get("ok") and rec.get("degraded"):
        how += " DEGRADED"
    ms = float(rec.get("duration_ms") or 0.0)
    took = f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"
    reason = str(rec.get("reason") or rec.get("error") or "")
    return f"{where:<12} {what:<24} {how:<30} {took:>9}  {reason}"


def _kernel_manager(kernel: str | None, workdir: Path) -> Any:
    """A kernel manager for `kernel`, or for an ipykernel of this very Python (the default), so the
    notebook sees the openmind this command runs, whatever kernelspecs the user has."""
    from jupyter_client.kernelspec import KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager

    transport = "ipc" if os.name == "posix" else "tcp"  # ipc: no ports, nothing on the network
    if kernel:
        return AsyncKernelManager(kernel_name=kernel, transport=transport)
    spec_dir = workdir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True, exist_ok=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "openmind (this Python)", "language": "python",
    }))
    ksm = KernelSpecManager(kernel_dirs=[str(workdir / "kernels")])
    return AsyncKernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm, transport=transport,
                              ip=str(workdir / "kernel-ipc"))


@dataclass(frozen=True)
class Remember:
    """How a run uses memory: every plain code cell through the cell pathway; `fresh` runs them all
    anew (and keeps them), else exact hits are restored; `params` are injected (-p)."""

    fresh: bool = True
    params: tuple[tuple[str, str], ...] = ()


def run_notebook(path: str | os.PathLike, *, timeout: float = 600.0, kernel: str | None = None,
                 env: Mapping[str, str] | None = None, output: str | os.PathLike | None = None,
                 allow_errors: bool = False, remember: Remember | None = None) -> RunResult:
    """Execute the notebook at `path` on a fresh kernel and collect the decisions of each cell.

    `env` adds to this process's environment for the kernel. Never raises for
    an error in a cell: it is reported in the result (and the run stops there unless allow_errors).
    With `remember`, every code cell is a cell of the cell pathway and the run is kept in memory.
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    from openmind.flow.journal import journal, last_id

    nb_path = Path(path)
    if not nb_path.is_file():
        raise BadInput(f"no notebook at {str(nb_path)!r}: give the path of an .ipynb file")
    try:
        nb = nbformat.read(nb_path, as_version=4)
    except Exception as exc:
        raise BadInput(f"{str(nb_path)!r} is not a readable notebook ({type(exc).__name__}: {exc})") from None
    session_name = str(nb_path.resolve())
    timer = CellTimer(fresh=remember.fresh) if remember else None
    if remember:
        inject_parameters(nb, list(remember.params))
    kernel_env = {**os.environ, **(env or {}), "JPY_SESSION_NAME": session_name}
    if kernel_env.get("OPENMIND_HOME") != os.environ.get("OPENMIND_HOME"):
        raise BadInput("set OPENMIND_HOME in this process's environment, not only the kernel's: "
                       "the decisions are read back from the same journal")
    before = last_id()
    error = None
    with tempfile.TemporaryDirectory(prefix="openmind-run-") as work:
        km = _kernel_manager(kernel, Path(work))
        client = NotebookClient(nb, km=km, timeout=int(timeout), startup_timeout=120,
                                allow_errors=allow_errors, kernel_name=km.kernel_name,
                                resources={"metadata": {"path": str(nb_path.parent.resolve())}},
                                **(timer.hooks() if timer else {}))
        if timer:
            timer.client = client
        # The kernel's own stderr (e.g. its "parent exited" notice during shutdown) is not the
        # user's output: cells report through iopub. Keep it in a log shown only if the kernel dies.
        kernel_log = open(Path(work) / "kernel.log", "w+b")  # noqa: SIM115 (closed below)
        try:
            client.execute(env=kernel_env, stderr=kernel_log)
        except DeadKernelError as exc:
            kernel_log.seek(0)
            tail = kernel_log.read().decode(errors="replace").strip().splitlines()[-5:]
            error = f"the kernel died ({exc})" + ("".join(f"\n  {t}" for t in tail) if tail else "")
        except CellTimeoutError as exc:
            error = f"timed out after {timeout:g}s ({str(exc).splitlines()[0] if str(exc) else 'cell'})"
        except CellExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
        finally:
            kernel_log.close()
    rows = [r for r in journal(100000, after=before)
            if (r.get("cell") or {}).get("notebook") == session_name]
    cells, error_cell = _group(nb, rows)
    if error is None and allow_errors and error_cell is not None:
        error = _first_error(nb.cells[error_cell])
    result = RunResult(nb, cells, error, error_cell)
    if timer:
        _outcomes(result, timer, nb_path.name)
    if output is not None:
        nbformat.write(nb, str(output))
    return result


def _outcomes(result: RunResult, timer: CellTimer, name: str) -> None:
    """Each executed code cell's outcome, into the notebook's metadata and a manifest in memory."""
    import time

    by_index = {c.index: c.records for c in result.cells}
    for i, cell in enumerate(result.notebook.cells):
        if i not in timer.seconds:
            continue
        failed = _first_error(cell) if i == result.error_cell else None
        out = CellOutcome(i, timer.seconds[i], timer.routed.get(i, False), by_index.get(i, []),
                          error=failed)
        result.outcomes.append(out)
        cell.metadata["openmind"] = out.metadata()
    result.run = new_run_id()
    keep_manifest(Manifest(result.run, name, time.time(),
                           [{"index": o.index, **o.metadata()} for o in result.outcomes],
                           result.error_cell, result.error))


def _first_error(cell: Any) -> str | None:
    for out in cell.get("outputs", []):
        if out.get("output_type") == "error":
            return f"{out.get('ename')}: {out.get('evalue')}"
    return None


def _group(nb: Any, rows: list[dict[str, Any]]) -> tuple[list[CellDecisions], int | None]:
    """Journal rows -> the notebook cells that wrote them (by execution count)."""
    by_count: dict[int, CellDecisions] = {}
    cells: list[CellDecisions] = []
    error_cell = None
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if error_cell is None and _first_error(cell):
            error_cell = i
        if cell.get("execution_count") is not None:
            by_count[cell.execution_count] = CellDecisions(i, cell.execution_count)
    stray = CellDecisions(-1, None)
    for r in rows:
        count = (r.get("cell") or {}).get("execution_count")
        (by_count.get(count) or stray).records.append(r)
    cells = [c for c in by_count.values() if c.records]
    if stray.records:
        cells.append(stray)
    return sorted(cells, key=lambda c: (c.index < 0, c.index)), error_cell


def report(result: RunResult, name: str, out: TextIO | None = None) -> int:
    """Print the decision lines (and the error); the exit status of `openmind run`."""
    out = out or sys.stdout
    if result.outcomes:
        _report_cells(result, name, out)
    else:
        lines = result.lines()
        print(f"openmind run {name}: {_count(len(lines), 'decision')} in "
              f"{_count(len(result.cells), 'cell')}", file=out)
        for line in lines:
            print("  " + line, file=out)
    if result.error is not None:
        where = f"cell {result.error_cell + 1}" if result.error_cell is not None else "a cell"
        print(f"openmind run {name}: {where} raised {result.error}", file=out)
        return 1
    return 0


def _count(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _report_cells(result: RunResult, name: str, out: TextIO) -> None:
    """Remembering runs: a line per code cell (restored or ran, its time), the decisions of cells
    that made their own openmind calls under it, and why a replayed cell was not replayed."""
    restored = sum(o.restored for o in result.outcomes)
    print(f"openmind run {name} (run {result.run}): {_count(len(result.outcomes), 'cell')}, "
          f"{restored} restored, {len(result.outcomes) - restored} run", file=out)
    by_index = {c.index: c for c in result.cells}
    for o in result.outcomes:
        count = result.notebook.cells[o.index].get("execution_count")
        where = f"cell {o.index + 1}" + (f" [{count}]" if count else "")
        print(f"  {where:<12} {o.state:<9} {o.seconds:>8.2f} s" + (f"  {o.note}" if o.note else ""),
              file=out)
        if not o.routed and o.index in by_index:
            for r in by_index[o.index].records:
                print("      " + format_line(by_index[o.index], r), file=out)


def quickstart_path() -> Path:
    """The quickstart notebook: inside the installed package, else in the source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "notebooks" / "quickstart.ipynb",
                      here.parents[1] / "notebooks" / "quickstart.ipynb"):
        if candidate.is_file():
            return candidate
    raise BadInput("the quickstart notebook is not installed (expected notebooks/quickstart.ipynb "
                   "beside the openmind package); reinstall openmind-cells")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="execute a notebook on a real kernel, remembering every cell")
    p.add_argument("notebook", help="path of the .ipynb file")
    _common(p)
    p.add_argument("--resume", action="store_true",
                   help="restore the cells the last run got through (exact hits) and run from "
                        "the one that failed")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[],
                   metavar=("NAME", "VALUE"),
                   help="inject NAME = VALUE after the cell tagged 'parameters' (repeatable); "
                        "with --resume only the cells that read it run again")
    p.add_argument("--replay", metavar="RUN",
                   help="restore what a recorded run computed (from the memory this machine "
                        "shares with the one that ran it) and say which cells could not be")
    p.add_argument("--no-memory", action="store_true",
                   help="run the cells as they are, remembering nothing (no --resume later)")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("demo", help="run the quickstart notebook (run it twice to see muscle memory)")
    _common(p)
    p.set_defaults(func=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write the executed notebook (with its cards) here")
    p.add_argument("--timeout", default="10m", help="how long one cell may run (default 10m)")
    p.add_argument("--kernel", help="a kernelspec name (default: an ipykernel of this Python)")


def _run(path: Path, args: argparse.Namespace, remember: Remember | None = None,
         ) -> tuple[int, RunResult]:
    timeout = parse_duration(args.timeout, "timeout")
    result = run_notebook(path, timeout=timeout, kernel=args.kernel, output=args.output,
                          remember=remember)
    return report(result, path.name), result


def cmd_run(args: argparse.Namespace) -> int:
    path = Path(args.notebook)
    if args.no_memory:
        if args.resume or args.replay or args.parameter:
            raise BadInput("--no-memory remembers nothing: it cannot --resume or --replay")
        return _run(path, args)[0]
    recorded = None
    if args.replay:
        recorded = find_manifest(args.replay)
        if recorded is None:
            raise BadInput(f"no recorded run {args.replay!r} in this machine's memory (nor the "
                           "team's): `openmind memory ls --kind run` lists the runs it holds")
    elif args.resume:
        last = last_manifest(path.name)
        if last is not None and last.failed_cell is not None:
            print(f"openmind run {path.name}: resuming run {last.run}, which failed at cell "
                  f"{last.failed_cell + 1} ({last.error})")
    remember = Remember(fresh=not (args.resume or args.replay),
                        params=tuple((n, v) for n, v in args.parameter))
    if recorded is None:
        return _run(path, args, remember)[0]
    timeout = parse_duration(args.timeout, "timeout")
    result = run_notebook(path, timeout=timeout, kernel=args.kernel, output=None, remember=remember)
    cells = {c.get("index"): c for c in recorded.cells}
    for o in result.outcomes:
        o.note = replay_note(cells.get(o.index), o)
        if o.note:
            result.notebook.cells[o.index].metadata["openmind"]["note"] = o.note
    if args.output:
        import nbformat

        nbformat.write(result.notebook, str(args.output))
    return report(result, path.name)


def cmd_demo(args: argparse.Namespace) -> int:
    status, result = _run(quickstart_path(), args)
    trained = [r for r in result.decisions() if r.get("intent") == "train" and r.get("ok")]
    if status == 0 and trained and trained[0].get("decision") != "CACHED":
        print("run `openmind demo` again: the train cell is then a CACHED muscle-memory hit")
    return status
