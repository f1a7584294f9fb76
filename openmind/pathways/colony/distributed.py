"""Data-parallel training on torch.distributed (DDP): N local processes, or the ranks of torchrun.

Two ways in, one training loop (`fit` with `Replicas`):

- `fit_local` (train_or_load(..., workers=N) in a notebook or script): starts N worker processes
  on this machine that meet through a rendezvous file in a temporary folder (no network setup;
  gloo talks over loopback, `GLOO_SOCKET_IFNAME=lo`). It forks only while CUDA is not initialised
  in the parent, else it spawns; the worker is `_worker` in this module (importable, never
  `__main__`). The parent watches the workers: one that dies stops the others and the run ends
  with one clear error within seconds; the process group has a timeout, so nothing waits forever.
- `Joined` (the script runs under torchrun: RANK and WORLD_SIZE set): the same train_or_load call
  joins the existing group. Rank 0 looks up memory, routes and journals; when it trains, it sends
  the job to the other ranks, which train with it; in the end every rank returns rank 0's model.
  Only rank 0 writes muscle memory and the journal.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from openmind.errors import OpenmindError, PathwayUnavailable
from openmind.pathways.ternary.fit import FitJob, FitOutcome, Replicas, fit

ENV_TIMEOUT = "OPENMIND_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0  # a collective that waits longer than this ends the run
STOP_GRACE_S = 5.0         # how long a stopped worker gets before it is killed


def timeout_s() -> float:
    """Seconds a collective may wait (OPENMIND_DIST_TIMEOUT, default 300)."""
    try:
        return max(1.0, float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT_S)))
    except ValueError:
        return DEFAULT_TIMEOUT_S


def backend_for(device: str) -> str:
    """NCCL for CUDA devices, gloo on the CPU."""
    return "nccl" if str(device).startswith("cuda") else "gloo"


def start_method() -> str:
    """fork while CUDA is not initialised in this process (cheap, no re-import); else spawn,
    because a forked child cannot use a CUDA context its parent made."""
    if "fork" in mp.get_all_start_methods() and not torch.cuda.is_initialized():
        return "fork"
    return "spawn"


def _replicas(rank: int, world: int, device: str) -> Replicas:
    """DDP around the net, and a MAX all-reduce as the vote that keeps ranks stopping together."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    def wrap(net: torch.nn.Module) -> torch.nn.Module:
        if device.startswith("cuda"):
            return DDP(net, device_ids=[torch.device(device).index or 0])
        return DDP(net)

    def vote(flag: bool) -> bool:
        t = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    return Replicas(rank=rank, world=world, wrap=wrap, vote=vote)


def _outcome_dict(out: FitOutcome) -> dict[str, Any]:
    d = {k: getattr(out, k) for k in FitOutcome.__dataclass_fields__ if k != "net"}
    d["net"] = out.net.cpu()  # the module itself: growth may have changed its widths
    return d


# --------------------------------------------------------------------------- N local processes


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    """Environment for the children (set before start, restored after)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fit_local(X: np.ndarray, y_idx: np.ndarray, job: FitJob, *, workers: int,
              backend: str = "gloo") -> FitOutcome:
    """`fit` over `workers` local processes with DDP; the same job and result as `fit`.

    A worker that dies (killed, out of memory, an error) stops the run: the others are stopped
    and PathwayUnavailable says which worker died and how, so the executor can fall back.
    """
    if workers < 2:
        return fit(X, y_idx, job)
    if backend == "nccl" and job.device.startswith("cuda") and torch.cuda.device_count() < workers:
        raise PathwayUnavailable(f"NCCL needs one GPU per process: {workers} processes, "
                                 f"{torch.cuda.device_count()} GPUs visible")
    start = time.perf_counter()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="openmind-ddp-") as tmp:
        folder = Path(tmp)
        np.save(folder / "X.npy", np.ascontiguousarray(X))
        np.save(folder / "y.npy", np.ascontiguousarray(y_idx))
        threads = max(1, cores // workers)
        (folder / "job.pkl").write_bytes(pickle.dumps({
            "fit": replace(job, progress=False), "backend": backend, "threads": threads,
            "timeout": timeout_s()}))
        method = start_method()
        ctx = mp.get_context(method)
        procs = [ctx.Process(target=_worker, args=(rank, workers, str(folder)), daemon=True,
                             name=f"openmind-ddp-{rank}") for rank in range(workers)]
        with _env(GLOO_SOCKET_IFNAME=os.environ.get("GLOO_SOCKET_IFNAME", "lo"),
                  OMP_NUM_THREADS=str(threads)):
            for p in procs:
                p.start()
        _watch(procs, folder, job.budget)
        result = pickle.loads((folder / "result.pkl").read_bytes())
    net = result.pop("net").eval()
    out = FitOutcome(net, **{k: v for k, v in result.items() if k in FitOutcome.__dataclass_fields__})
    out.seconds = time.perf_counter() - start
    out.colony = {"workers": workers, "backend": backend, "start_method": method,
                  "rendezvous": "file", "rendezvous_seconds": result.get("rendezvous_seconds")}
    return out


ROOT_CAUSE_GRACE_S = 0.5


def _watch(procs: list, folder: Path, budget: float | None) -> None:
    """Wait for every worker; the first that fails stops the rest and raises, within seconds."""
    # a hung worker trips the group's timeout in the others; with a budget, the parent also stops
    # waiting once budget + timeout have passed
    limit = None if budget is None else budget + timeout_s()
    t0 = time.perf_counter()
    try:
        while True:
            for p in procs:
                p.join(timeout=0.1)
            if any(p.exitcode not in (None, 0) for p in procs):
                # a killed worker makes its peers fail too (connection reset): give them a moment,
                # then name the root cause, a worker killed by a signal before one that exited
                time.sleep(ROOT_CAUSE_GRACE_S)
                failed = [(rank, p.exitcode) for rank, p in enumerate(procs)
                          if p.exitcode not in (None, 0)]
                rank, code = min(failed, key=lambda rc: (rc[1] > 0, rc[0]))
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                err = folder / f"error-{rank}.txt"
                detail = f": {err.read_text()[-500:].strip()}" if err.exists() else ""
                raise PathwayUnavailable(
                    f"data-parallel training stopped: worker {rank} of {len(procs)} died "
                    f"({how}) after {time.perf_counter() - t0:.1f}s{detail}; the other "
                    f"workers were stopped. Train again, or with workers=1")
            if all(p.exitcode == 0 for p in procs):
                if not (folder / "result.pkl").exists():
                    raise PathwayUnavailable("data-parallel training ended without a result from rank 0")
                return
            if limit is not None and time.perf_counter() - t0 > limit:
                raise PathwayUnavailable(f"data-parallel training took longer than {limit:.0f}s "
                                         f"(budget + process-group timeout); the workers were stopped")
    finally:
        _stop(procs)


def _stop(procs: list) -> None:
    alive = [p for p in procs if p.is_alive()]
    for p in alive:
        p.terminate()
    deadline = time.perf_counter() + STOP_GRACE_S
    for p in alive:
        p.join(timeout=max(0.0, deadline - time.perf_counter()))
        if p.is_alive():
            p.kill()
            p.join(timeout=1)


def _worker(rank: int, world: int, folder: str) -> None:
    """One local worker: join the group through the rendezvous file, train its shard, and (rank
    0) write the result. Errors are written next to the job for the parent's message."""
    path = Path(folder)
    try:
        job = pickle.loads((path / "job.pkl").read_bytes())
        torch.set_num_threads(job["threads"])
        work: FitJob = job["fit"]
        device = work.device
        if job["backend"] == "nccl":
            device = f"cuda:{rank}"
            torch.cuda.set_device(rank)
        t0 = time.perf_counter()
        dist.init_process_group(job["backend"], init_method=f"file://{path / 'rendezvous'}",
                                rank=rank, world_size=world,
                                timeout=datetime.timedelta(seconds=job["timeout"]))
        rendezvous = time.perf_counter() - t0
        try:
            X = np.load(path / "X.npy", mmap_mode="r")
            y = np.load(path / "y.npy")
            out = fit(np.asarray(X), y, replace(work, device=device),
                      _replicas(rank, world, device))
            if rank == 0:
                result = _outcome_dict(out)
                result["rendezvous_seconds"] = round(rendezvous, 4)
                tmp = path / "result.pkl.tmp"
                tmp.write_bytes(pickle.dumps(result))
                os.replace(tmp, path / "result.pkl")
        finally:
            dist.destroy_process_group()
    except BaseException as exc:
        with contextlib.suppress(OSError):
            (path / f"error-{rank}.txt").write_text(f"{type(exc).__name__}: {exc}")
        raise


# --------------------------------------------------------------------------- under torchrun


@dataclass(frozen=True)
class Joined:
    """This process's place in a torchrun group (RANK, WORLD_SIZE, LOCAL_RANK)."""

    rank: int
    world: int
    local_rank: int

    def ensure(self, backend: str = "gloo") -> None:
        """Join the default process group (env:// from torchrun) unless the script already did."""
        if dist.is_initialized():
            return
        if os.environ.get("MASTER_ADDR", "") in ("127.0.0.1", "localhost", "::1"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s()))

    def send(self, message: dict[str, Any]) -> None:
        dist.broadcast_object_list([message], src=0)

    def receive(self) -> dict[str, Any]:
        box: list[Any] = [None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def lead(self, work: Callable[[], Any]) -> Any:
        """Rank 0: run the call (route, execute, store, journal); then give every rank the model,
        or the error, so no rank waits for a message that never comes."""
        self.ensure()
        try:
            model = work()
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self.send({"do": "error", "text": f"{type(exc).__name__} on rank 0: {exc}"})
            raise
        arrays, meta = model.to_arrays()
        self.send({"do": "done", "arrays": arrays, "meta": meta})
        return model

    def follow(self, X: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Ranks > 0: train with rank 0 when it says so; return rank 0's model (arrays, meta)."""
        self.ensure()
        while True:
            msg = self.receive()
            if msg["do"] == "train":
                if len(X) != msg["rows"]:
                    raise OpenmindError(f"rank {self.rank} has {len(X)} rows, rank 0 has "
                                        f"{msg['rows']}: under torchrun every rank passes the same data")
                dev = self.device(msg["job"].device)
                fit(X, msg["y_idx"], replace(msg["job"], device=dev, progress=False),
                    _replicas(self.rank, self.world, dev))
            elif msg["do"] == "done":
                return msg["arrays"], msg["meta"]
            else:
                raise OpenmindError(f"the torchrun group's rank 0 failed: {msg.get('text')}")

    def device(self, device: str) -> str:
        return f"cuda:{self.local_rank}" if device.startswith("cuda") else "cpu"

    def fit(self, X: np.ndarray, y_idx: np.ndarray, job: FitJob) -> FitOutcome:
        """Rank 0's `fit`: send the job to the other ranks, then train its own shard with them."""
        # the other ranks draw no bar: the job travels without this process's progress view
        self.send({"do": "train", "rows": int(len(X)), "y_idx": y_idx, "job": replace(job, progress=False)})
        dev = self.device(job.device)
        out = fit(X, y_idx, replace(job, device=dev), _replicas(self.rank, self.world, dev))
        out.colony = {"workers": self.world, "backend": dist.get_backend(), "rendezvous": "torchrun"}
        return out


def joined() -> Joined | None:
    """The torchrun group this process was started in (RANK and WORLD_SIZE > 1), else None."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ["RANK"])
    except (KeyError, ValueError):
        return None
    if world < 2:
        return None
    return Joined(rank, world, int(os.environ.get("LOCAL_RANK", rank)))


def trainer(params: dict[str, Any]) -> Callable[[np.ndarray, np.ndarray, FitJob], FitOutcome]:
    """The `fit`-shaped trainer a route's candidate asks for: joined torchrun ranks or N local
    processes."""
    group = joined()
    if params.get("joined") and group is not None:
        group.ensure(params.get("backend", "gloo"))
        return group.fit
    workers, backend = int(params.get("workers", 1)), params.get("backend", "gloo")

    def run(X: np.ndarray, y_idx: np.ndarray, job: FitJob) -> FitOutcome:
        return fit_local(X, y_idx, job, workers=workers, backend=backend)

    return run
