"""The chaos matrix: every resource × every fault it can show × every intent.

A scenario sets up one hostile resource (a fault HTTP server on 127.0.0.1 as the inference
endpoint or the language-model API, a hostile device on a real pty, a damaged store), calls the
real intent twice and reports what happened. `tests/test_chaos.py` asserts on every scenario;
`python -m tests.chaos [--full] [resource ...]` prints the table with the time each call cost.

What a scenario must show: each call ends in a result or one clear openmind error; each call
leaves a journal row (unless the store itself is the fault); the repeated call is cheap (the
broken resource is benched or its probe result cached, never paid for twice); the store passes
SQLite's integrity check afterwards; no configured secret appears in what the call returned,
raised or journaled.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests.fake_llm import Scripted, closed_port
from tests.hostile_device import FAULTS as DEVICE_FAULTS
from tests.hostile_device import HostileDevice

INTENTS = ("train", "infer", "infer_text", "sense")
INFER_FAULTS = ("healthy", "refused", "hang", "http500", "retry_after", "not_found", "garbage",
                "short", "wrong_dtype", "echo_auth", "reset")
API_FAULTS = ("healthy", "refused", "hang", "http500", "rate_limited", "bad_key", "garbage",
              "bad_plan", "reset")
MEMORY_FAULTS = ("corrupt_db", "home_is_file", "blob_garbage", "blob_gone")
RESOURCES = {"infer": INFER_FAULTS, "api": API_FAULTS, "serial": DEVICE_FAULTS, "memory": MEMORY_FAULTS}

SCENARIOS = [(r, f, i) for r, faults in RESOURCES.items() for f in faults for i in INTENTS]

TIMEOUT = 0.5          # every call's timeout (policy timeout, probe, language model)
STREAM_S = 0.2         # the sense intent's capture: 20 samples at 100 Hz


def repeat_bound(resource: str, intent: str) -> float:
    """What a repeated call may cost: less than one timeout (a broken resource must not be paid
    for twice), plus the capture itself when a device really streams."""
    return 0.9 * TIMEOUT + (STREAM_S + 0.3 if (resource, intent) == ("serial", "sense") else 0.0)
# unique values planted in every secret slot; none may come back
SECRET = {"key": "sk-chaos-KEY-5b1e9f", "token": "tok-chaos-TOKEN-77ad", "user": "chaosuser",
          "password": "pw-chaos-PASS-31c4", "serve": "srv-chaos-SERVE-09ee"}


def planted() -> list[str]:
    """Every planted secret and the forms a peer may echo (user:pass and its base64)."""
    import base64

    info = f"{SECRET['user']}:{SECRET['password']}"
    return [SECRET["key"], SECRET["token"], SECRET["password"], SECRET["serve"], info,
            base64.b64encode(info.encode()).decode()]


# --------------------------------------------------------------------------- fault servers


class FaultServer(Scripted):
    """An OIP endpoint or an OpenAI-compatible API on 127.0.0.1 that misbehaves as `fault` says."""

    def __init__(self, kind: str, fault: str) -> None:
        super().__init__()
        self.kind, self.fault = kind, fault

    def _rows(self) -> int:
        body = self.requests[-1]["body"] if self.requests else None
        try:
            return int(body["inputs"][0]["shape"][0])
        except (TypeError, KeyError, IndexError, ValueError):
            return 1

    def default_for(self, method: str, path: str, headers: dict[str, str]) -> tuple:
        return self._infer(path) if self.kind == "infer" else self._api(path, headers)

    def _infer(self, path: str) -> tuple:
        f = self.fault
        if not path.startswith("/v2/models/"):
            return ("json", 200, {"ready": True, "live": True})
        if f == "hang":
            return ("hang", 5)
        if f == "http500":
            return ("json", 500, {"error": "internal"})
        if f == "retry_after":
            return ("json", 503, {"error": "overloaded"}, {"Retry-After": "120"})
        if f == "not_found":
            return ("json", 404, {"error": "no such model"})
        if f == "garbage":
            return ("raw", 200, b"<html>\x00\xff not json")
        if f == "echo_auth":
            return ("echo_auth", 403)
        if f == "reset":
            return ("reset",)
        if path.endswith("/ready"):
            return ("json", 200, {"ready": True})
        if not path.endswith("/infer"):  # metadata
            return ("json", 200, {"name": "m", "platform": "chaos", "inputs": [],
                                  "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]}]})
        rows = self._rows()
        if f == "short":
            rows = 1 if rows != 1 else 2
        dtype, data = ("FP32", [0.5] * rows) if f == "wrong_dtype" else ("INT64", [1] * rows)
        return ("json", 200, {"model_name": "m", "outputs": [
            {"name": "label", "datatype": dtype, "shape": [rows], "data": data}]})

    def _api(self, path: str, headers: dict[str, str]) -> tuple:
        f = self.fault
        if f == "bad_key":
            return ("echo_auth", 401)
        if path.startswith("/v1/models"):
            return ("json", 200, {"object": "list", "data": [{"id": "chaos-model", "object": "model"}]})
        if f == "hang":
            return ("hang", 5)
        if f == "http500":
            return ("json", 500, {"error": {"message": "internal"}})
        if f == "rate_limited":
            return ("json", 429, {"error": {"message": "slow down"}}, {"Retry-After": "120"})
        if f == "garbage":
            return ("raw", 200, b"\x00\xffnot json at all")
        if f == "reset":
            return ("reset",)
        if f == "bad_plan":
            return ("reply", '{"pathway": "teleport", "epochs": "many"')
        return ("reply", json.dumps({"pathway": "full_train", "architecture": {"hidden": [8]},
                                     "epochs": 2, "reason": "chaos", "level": 23.0, "unit": "C",
                                     "labels": [1, -1]}))


# --------------------------------------------------------------------------- one scenario


@dataclass
class Outcome:
    """What one scenario did: per call, 'ok <pathway>' or '<Error>: message', and its seconds."""

    scenario: tuple[str, str, str]
    results: list[str] = field(default_factory=list)
    errors: list[BaseException | None] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    journal_rows: list[int] = field(default_factory=list)
    store_ok: bool | None = None
    leaks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _put(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def _env(values: dict[str, str | None]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    try:
        for k, v in values.items():
            _put(k, v)
        yield
    finally:
        for k, v in old.items():
            _put(k, v)


_DATA: dict[str, Any] = {}


def _data() -> dict[str, Any]:
    if not _DATA:
        rng = np.random.default_rng(7)
        X = rng.normal(size=(60, 2, 2)).astype(np.float32)  # not 2-D: a language model may plan it
        _DATA.update(X=X, y=(X[:, 0, 0] > 0).astype(np.int64), rows=rng.normal(size=(5, 4)))
    return _DATA


def call(intent: str) -> Any:
    """The real intent, as a notebook cell would call it, with short timeouts."""
    import openmind

    d = _data()
    if intent == "train":
        return openmind.train_or_load("chaos", d["X"], d["y"], epochs=2, hidden=[8], progress=False,
                                      timeout=TIMEOUT)
    if intent == "infer":
        return openmind.infer_adaptive("remote-model", d["rows"], timeout=TIMEOUT)
    if intent == "infer_text":
        return openmind.infer_adaptive("sentiment", ["great", "awful", "fine"], timeout=TIMEOUT)
    if intent == "sense":
        return openmind.sense_or_simulate("temperature", f"{STREAM_S}s", "100Hz", timeout=TIMEOUT, progress=False)
    raise ValueError(intent)


def _damage_memory(fault: str, home: str) -> None:
    if fault == "home_is_file":
        with open(home, "w") as f:
            f.write("not a folder")
        return
    os.makedirs(home, exist_ok=True)
    if fault == "corrupt_db":
        with open(os.path.join(home, "openmind.db"), "wb") as f:
            f.write(b"SQLite format 2\x00" + os.urandom(4096))
        return
    call("train")  # something in muscle memory to damage
    for root, _, files in os.walk(os.path.join(home, "blobs")):
        for name in files:
            path = os.path.join(root, name)
            if fault == "blob_gone":
                os.remove(path)
            else:
                with open(path, "wb") as f:
                    f.write(b"\x00garbage")


def _journal_count() -> int:
    from openmind.flow.journal import count

    try:
        return count()
    except Exception:
        return -1


def store_intact(home: str) -> bool:
    """SQLite's integrity check passes and the journal reads back."""
    path = os.path.join(home, "openmind.db")
    if not os.path.isfile(path):
        return True  # nothing was written: nothing damaged
    con = sqlite3.connect(path)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.execute("SELECT count(*) FROM journal").fetchone()
        return ok
    except sqlite3.Error:
        return False
    finally:
        con.close()


def _leaks(texts: list[str]) -> list[str]:
    blob = "\n".join(texts)
    return [s for s in planted() if s in blob]


def run(resource: str, fault: str, intent: str, workdir: str | None = None) -> Outcome:
    """Run one scenario in a fresh OPENMIND_HOME; two calls of `intent` with `resource` broken."""
    from openmind.flow.resources import invalidate
    from openmind.pathways.cloud import http
    from openmind.pathways.device import unbench

    out = Outcome((resource, fault, intent))
    base = workdir or tempfile.mkdtemp(prefix="om-chaos-")
    home = os.path.join(base, f"home-{resource}-{fault}-{intent}")
    env: dict[str, str | None] = {
        "OPENMIND_HOME": home, "OPENMIND_PROBE_TIMEOUT": str(TIMEOUT), "OPENMIND_LLM_TIMEOUT": str(TIMEOUT),
        "OPENMIND_ASSUME": "gpu=off", "OPENMIND_SERIAL_PORT": None, "OPENMIND_INFER_URL": None,
        "OPENMIND_INFER_TOKEN": SECRET["token"], "OPENMIND_API_BASE": None, "OPENMIND_API_KEY": None,
        "OPENAI_API_KEY": None, "OPENMIND_SERVE_TOKEN": SECRET["serve"],
    }
    with contextlib.ExitStack() as stack:
        if resource in ("infer", "api"):
            if fault == "refused":
                url = f"http://127.0.0.1:{closed_port()}"
            else:
                url = stack.enter_context(FaultServer(resource, fault)).url
            auth_url = url.replace("http://", f"http://{SECRET['user']}:{SECRET['password']}@")
            if resource == "infer":
                env["OPENMIND_INFER_URL"] = auth_url
            else:
                env.update(OPENMIND_API_BASE=auth_url + "/v1", OPENMIND_API_KEY=SECRET["key"])
        elif resource == "serial":
            env["OPENMIND_SERIAL_PORT"] = stack.enter_context(HostileDevice(fault)).port
        stack.enter_context(_env(env))
        http.reset()
        unbench()
        invalidate()
        if resource == "memory":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                _damage_memory(fault, home)
            invalidate()
        texts: list[str] = []
        for _ in range(2):
            before = _journal_count()
            t0 = time.perf_counter()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    result = call(intent)
                except Exception as exc:  # noqa: BLE001 - the scenario reports any exception
                    result, error = None, exc
                else:
                    error = None
            out.seconds.append(time.perf_counter() - t0)
            out.errors.append(error)
            out.warnings += [str(w.message) for w in caught]
            if error is None:
                route = getattr(result, "route", None)
                out.results.append(f"ok {route.pathway.value if route else '?'}")
                texts += [repr(result), json.dumps(route.to_dict() if route else {}, default=str)]
            else:
                out.results.append(f"{type(error).__name__}: {str(error).splitlines()[0][:90]}")
                texts.append(str(error))
            after = _journal_count()
            out.journal_rows.append(after - before if before >= 0 and after >= 0 else -1)
        if resource != "memory" or fault.startswith("blob"):
            out.store_ok = store_intact(home)
            from openmind.flow.journal import journal

            texts.append(json.dumps(journal(10), default=str))
        texts += out.warnings
        out.leaks = _leaks(texts)
        http.reset()
        unbench()
        invalidate()
    if workdir is None:
        shutil.rmtree(base, ignore_errors=True)
    return out


def clear(exc: BaseException | None) -> bool:
    """One clear error: an openmind error (never a raw Python one) with a message and no traceback."""
    from openmind.errors import OpenmindError

    if exc is None:
        return True
    text = str(exc)
    return isinstance(exc, OpenmindError) and bool(text.strip()) and "Traceback" not in text


def table(outcomes: list[Outcome]) -> str:
    """The chaos table for the note: one line per scenario, the time of each call."""
    lines = [f"{'resource':<8} {'fault':<12} {'intent':<10} {'1st s':>6} {'repeat s':>8}  outcome (repeat call)",
             "-" * 100]
    for o in outcomes:
        r, f, i = o.scenario
        lines.append(f"{r:<8} {f:<12} {i:<10} {o.seconds[0]:>6.2f} {o.seconds[1]:>8.2f}  {o.results[1][:60]}")
    ok = sum(1 for o in outcomes if all(clear(e) for e in o.errors))
    worst = max(outcomes, key=lambda o: o.seconds[1])
    lines += ["-" * 100,
              f"{len(outcomes)} scenarios; {ok} ended in a result or one clear error on every call; "
              f"repeated call: median {np.median([o.seconds[1] for o in outcomes]):.3f}s, "
              f"max {worst.seconds[1]:.3f}s ({'/'.join(worst.scenario)}); "
              f"secrets leaked: {sum(len(o.leaks) for o in outcomes)}"]
    return "\n".join(lines)


def summary(outcomes: list[Outcome]) -> str:
    """One line per resource × fault: each intent's first / repeated call in seconds."""
    by: dict[tuple[str, str], dict[str, Outcome]] = {}
    for o in outcomes:
        by.setdefault(o.scenario[:2], {})[o.scenario[2]] = o
    head = f"| resource | fault | {' | '.join(f'{i} 1st/repeat s' for i in INTENTS)} | outcome |"
    lines = [head, "|" + "---|" * (3 + len(INTENTS))]
    for (r, f), row in by.items():
        cells = [f"{row[i].seconds[0]:.2f} / {row[i].seconds[1]:.2f}" if i in row else "" for i in INTENTS]
        fine = all(clear(e) for o in row.values() for e in o.errors) and not any(o.leaks for o in row.values())
        lines.append(f"| {r} | {f} | {' | '.join(cells)} | {'ok' if fine else 'FAIL'} |")
    return "\n".join(lines)


def main() -> None:
    import sys

    args = sys.argv[1:]
    full = "--full" in args
    only = [a for a in args if a != "--full"]
    picked = [s for s in SCENARIOS if not only or s[0] in only]
    t0 = time.perf_counter()
    outcomes = [run(*s) for s in picked]
    print(table(outcomes) if full else summary(outcomes) + "\n" + table(outcomes).splitlines()[-1])
    print(f"total {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
