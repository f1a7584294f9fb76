"""Resuming a notebook run that failed against running it again, in one run.

A 10-cell notebook: each cell does about `--work` seconds of numpy work on what the cell before
it made; cell 9 fails until its input file is fixed. The failed run is kept (`openmind run`
remembers every cell); then the file is fixed and the notebook is run again two ways, each from the
same state of memory:

  1. `--resume`: cells 1-8 restored from memory (exact hits), 9 and 10 run
  2. run again from the top (what papermill offers), every cell run

Both include starting a kernel. Run: .venv/bin/python bench/resume_bench.py [--work 1.0]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import machine  # noqa: E402

WORK = """import time
t0 = time.perf_counter()
while time.perf_counter() - t0 < {work}:
    v{i} = np.sort(np.random.default_rng({i}).random(20_000) + v{prev}.mean())
print("cell {i}", round(float(v{i}.sum()), 3))"""


def notebook(path: Path, work: float) -> None:
    import nbformat as nbf

    nb = nbf.v4.new_notebook()
    cells = ["import numpy as np, pathlib\nv0 = np.arange(10.0)"]
    cells += [WORK.format(i=i, prev=i - 1, work=work) for i in range(1, 8)]
    cells += ["k = int(pathlib.Path('input.txt').read_text())\nv8 = v7 * k\nprint('cell 9', k)",
              "print('done', float(v8.sum()))"]
    nb.cells = [nbf.v4.new_code_cell(c) for c in cells]
    nbf.write(nb, path)


def timed(path: Path, *, fresh: bool) -> float:
    from openmind.jupyter.run import Remember, run_notebook

    t0 = time.perf_counter()
    result = run_notebook(path, timeout=600, remember=Remember(fresh=fresh))
    took = time.perf_counter() - t0
    assert result.ok, result.error
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=float, default=1.0, help="seconds of work a cell (default 1)")
    args = ap.parse_args()
    print(machine())
    with tempfile.TemporaryDirectory(prefix="openmind-resume-bench-") as tmp:
        root = Path(tmp)
        os.environ["OPENMIND_HOME"] = str(root / "home")
        os.environ.setdefault("OPENMIND_KEY_DIR", str(root / "keys"))
        os.chdir(root)
        path = root / "ten.ipynb"
        notebook(path, args.work)
        (root / "input.txt").write_text("oops")
        from openmind.jupyter.run import Remember, run_notebook

        t0 = time.perf_counter()
        failed = run_notebook(path, timeout=600, remember=Remember(fresh=True))
        first = time.perf_counter() - t0
        assert failed.error_cell == 8, failed.error
        (root / "input.txt").write_text("3")
        shutil.copytree(root / "home", root / "home-kept")
        resumed = timed(path, fresh=False)
        shutil.rmtree(root / "home")
        shutil.copytree(root / "home-kept", root / "home")
        again = timed(path, fresh=True)
    print(f"the failed run (cells 1-9, failing at 9): {first:6.2f} s")
    print(f"run again from the top:                   {again:6.2f} s   (anchor)")
    print(f"--resume (1-8 restored, 9-10 run):        {resumed:6.2f} s   "
          f"{again / resumed:.1f}x faster ({resumed / again:.2f} of the time)")


if __name__ == "__main__":
    main()
