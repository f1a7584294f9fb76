"""`openmind run NOTEBOOK` and `openmind demo`: execute a notebook on a real kernel, print its decisions.

The notebook runs top to bottom on an ipykernel of this Python (nbclient). Afterwards one line per
openmind cell is printed from the journal rows that kernel wrote (cell, intent, pathway, decision,
time, reason). A cell that raises stops the run and makes the exit status non-zero.
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


def run_notebook(path: str | os.PathLike, *, timeout: float = 600.0, kernel: str | None = None,
                 env: Mapping[str, str] | None = None, output: str | os.PathLike | None = None,
                 allow_errors: bool = False) -> RunResult:
    """Execute the notebook at `path` on a fresh kernel and collect the decisions of each cell.

    `env` adds to this process's environment for the kernel. Never raises for
    an error in a cell: it is reported in the result (and the run stops there unless allow_errors).
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
                                resources={"metadata": {"path": str(nb_path.parent.resolve())}})
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
    if output is not None:
        nbformat.write(nb, str(output))
    cells, error_cell = _group(nb, rows)
    if error is None and allow_errors and error_cell is not None:
        error = _first_error(nb.cells[error_cell])
    return RunResult(nb, cells, error, error_cell)


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
    lines = result.lines()
    from openmind.jupyter.words import plural

    print(f"openmind run {name}: {plural(len(lines), 'decision')} in {plural(len(result.cells), 'cell')}",
          file=out)
    for line in lines:
        print("  " + line, file=out)
    if result.error is not None:
        where = f"cell {result.error_cell + 1}" if result.error_cell is not None else "a cell"
        print(f"openmind run {name}: {where} raised {result.error}", file=out)
        return 1
    return 0


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
    p = sub.add_parser("run", help="execute a notebook on a real kernel and print each decision")
    p.add_argument("notebook", help="path of the .ipynb file")
    _common(p)
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("demo", help="run the quickstart notebook (run it twice to see muscle memory)")
    _common(p)
    p.set_defaults(func=cmd_demo)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", help="write the executed notebook (with its cards) here")
    p.add_argument("--timeout", default="10m", help="how long one cell may run (default 10m)")
    p.add_argument("--kernel", help="a kernelspec name (default: an ipykernel of this Python)")


def _run(path: Path, args: argparse.Namespace) -> tuple[int, RunResult]:
    timeout = parse_duration(args.timeout, "timeout")
    result = run_notebook(path, timeout=timeout, kernel=args.kernel, output=args.output)
    return report(result, path.name), result


def cmd_run(args: argparse.Namespace) -> int:
    return _run(Path(args.notebook), args)[0]


def cmd_demo(args: argparse.Namespace) -> int:
    status, result = _run(quickstart_path(), args)
    trained = [r for r in result.decisions() if r.get("intent") == "train" and r.get("ok")]
    if status == 0 and trained and trained[0].get("decision") != "CACHED":
        print("run `openmind demo` again: the train cell is then a CACHED muscle-memory hit")
    return status
