"""`openmind serve` in a child process, for tests, benchmarks and notebooks serving their memory."""

from __future__ import annotations

import os
import sys
import time
from typing import Any


class ServeProcess:
    """`openmind serve` in a child process (tests, benchmarks, notebooks serving their memory).

    stdout is read only for the "listening on" line; the log goes to a file (`log_path`), so a
    chatty server can never block on a full pipe.
    """

    def __init__(self, *, home: str | None = None, token: str | None = None, port: int = 0,
                 max_body: int | None = None, body_timeout: float | None = None, workers: int = 1,
                 extra_env: dict[str, str] | None = None, allowed_hosts: str | None = None,
                 timeout: float = 60.0) -> None:
        import selectors
        import subprocess
        import tempfile

        env = dict(os.environ, **(extra_env or {}))
        if home is not None:
            env["OPENMIND_HOME"] = str(home)
        env.pop("OPENMIND_SERVE_TOKEN", None)
        if token:
            env["OPENMIND_SERVE_TOKEN"] = token  # not on the command line, where `ps` shows it
        cmd = [sys.executable, "-m", "openmind.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
        if max_body is not None:
            cmd += ["--max-body", str(max_body)]
        if body_timeout is not None:
            cmd += ["--body-timeout", str(body_timeout)]
        if workers != 1:
            cmd += ["--workers", str(workers)]
        if allowed_hosts is not None:
            cmd += ["--allowed-hosts", allowed_hosts]
        self._log = tempfile.NamedTemporaryFile("w+b", prefix="openmind-serve-", suffix=".log", delete=False)
        self.log_path = self._log.name
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=self._log,
                                     stdin=subprocess.DEVNULL)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + timeout
        line = b""
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready = sel.select(max(0.0, left)) if left > 0 else []
            if not ready:
                self.close()
                raise RuntimeError(f"openmind serve did not start within {timeout:g}s: {self.log()[-500:]}")
            chunk = os.read(self.proc.stdout.fileno(), 1)
            if not chunk:
                self.close()
                raise RuntimeError(f"openmind serve exited: {self.log()[-500:]}")
            line += chunk
        sel.close()
        self.banner = line.decode().strip()
        self.url = self.banner.split("listening on ", 1)[1].split()[0]

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()

    def __enter__(self) -> ServeProcess:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
