"""One simulated machine of a team, run as its own process (its own OPENMIND_HOME, key directory,
trust file and remote settings come from the environment the test gives it).

    python tests/team_machine.py '[{"do": "cell", "code": "..."}, {"do": "model", "name": "m"}]'

prints one line `RESULT <json>`: per action, whether it was a hit, the route's decision and
reason, and the warnings it raised; plus this machine's public key line.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def data() -> tuple[np.ndarray, np.ndarray]:
    """Small, fixed two-class data: the same bytes on every machine."""
    rng = np.random.default_rng(7)
    X = rng.normal(size=(80, 4)).astype(np.float32)
    return X, (X[:, 0] + X[:, 1] > 0).astype(np.int64)


def stall_uploads(flag: Path) -> None:
    """Make this machine's blob uploads stop halfway (after half the bytes went out, for real)
    and hang there, having touched `flag`: the test then kills the process."""
    from openmind.memory import remote

    def hang() -> None:
        flag.write_text("half")
        while True:
            time.sleep(1)

    class Half:
        def __init__(self, data: bytes) -> None:
            self.data, self.pos = data, 0

        def read(self, n: int = -1) -> bytes:
            if self.pos >= len(self.data) // 2:
                hang()
            n = len(self.data) - self.pos if n is None or n < 0 else n
            n = min(n, len(self.data) // 2 - self.pos) or 1
            chunk = self.data[self.pos:self.pos + n]
            self.pos += len(chunk)
            return chunk

    s3_put, dir_put = remote.S3Remote.put, remote.DirRemote.put

    def s3(self: Any, path: str, payload: bytes) -> None:
        if not path.startswith("blobs/"):
            return s3_put(self, path, payload)
        self.client.upload_fileobj(Half(payload), self.bucket, self._key(path), Config=self.transfer)

    def local(self: Any, path: str, payload: bytes) -> None:
        if not path.startswith("blobs/"):
            return dir_put(self, path, payload)
        target = self._at(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.with_name(".tmp-stalled"), "wb") as f:
            f.write(payload[:len(payload) // 2])
            f.flush()
        hang()

    remote.S3Remote.put, remote.DirRemote.put = s3, local
    threading.excepthook = lambda args: None


def gate_manifests(flag: Path, go: Path) -> None:
    """Stop this machine's publishing after its blob is up, before its manifest: touch `flag`,
    then wait for `go` (a team gc runs in between)."""
    from openmind.memory import remote

    def gated(put: Any) -> Any:
        def inner(self: Any, path: str, payload: bytes) -> None:
            if path.startswith("entries/") and not go.exists():
                flag.write_text("blob up")
                while not go.exists():
                    time.sleep(0.02)
            return put(self, path, payload)
        return inner

    remote.S3Remote.put = gated(remote.S3Remote.put)
    remote.DirRemote.put = gated(remote.DirRemote.put)


def act(spec: dict[str, Any]) -> dict[str, Any]:
    import openmind

    if spec["do"] == "cell":
        ns: dict[str, Any] = {"np": np}
        r = openmind.run_cell(spec["code"], ns)
        show = spec.get("show")
        value = ns.get(show) if show else None
        if isinstance(value, np.ndarray):
            value = [float(value.sum()), list(value.shape)]
        return {"cached": r.cached, "decision": r.route.decision.value, "reason": r.route.reason,
                "value": value}
    if spec["do"] == "model":
        X, y = data()
        m = openmind.train_or_load(spec["name"], X, y, epochs=2, hidden=[8], progress=False)
        return {"cached": bool(m.info.get("cached")), "decision": m.route.decision.value,
                "reason": m.route.reason, "value": float(m.predict(X[:8]).sum())}
    if spec["do"] == "gated":
        gate_manifests(Path(spec["flag"]), Path(spec["go"]))
        return act({"do": "cell", "code": spec["code"]})
    if spec["do"] == "stall":
        stall_uploads(Path(spec["flag"]))
        return act({"do": "cell", "code": spec["code"]})
    raise SystemExit(f"unknown action {spec!r}")


def main() -> None:
    from openmind.memory.keys import public_line

    out = []
    for spec in json.loads(sys.argv[1]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = act(spec)
        result["warnings"] = [str(w.message) for w in caught]
        out.append(result)
    print("RESULT " + json.dumps({"key": public_line(), "results": out}), flush=True)


if __name__ == "__main__":
    main()
