"""Fixtures for the team tier: moto's standalone S3 server on 127.0.0.1 (a real S3-protocol HTTP
server, as s3fs's own suite uses), a shared directory, and machines as separate processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).parent
ROOT = HERE.parent
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Any, timeout: float = 60.0, what: str = "a condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="session")
def moto_endpoint(tmp_path_factory) -> Any:
    """http://127.0.0.1:<port> of a moto S3 server started for the session."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                                 str(port)], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url + "/", timeout=2) as r:
                return r.status == 200
        except OSError:
            if proc.poll() is not None:
                raise AssertionError(f"moto_server exited: {log.read_text()[-2000:]}") from None
            return False

    wait_until(answers, 90, "moto_server to answer")
    yield url
    proc.terminate()
    proc.wait(timeout=30)


def s3_env(endpoint: str) -> dict[str, str]:
    return {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint}


def make_bucket(endpoint: str) -> str:
    import boto3

    name = f"team-{uuid.uuid4().hex[:12]}"
    env = s3_env(endpoint)
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                 aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                 aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"]).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["s3", "dir"])
def team_remote(request, tmp_path) -> dict[str, str]:
    """The environment that names a team store: a fresh bucket on moto, or a shared directory."""
    if request.param == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        return {**s3_env(endpoint), "OPENMIND_REMOTE": f"s3://{make_bucket(endpoint)}/team"}
    shared = tmp_path / "shared"
    shared.mkdir()
    return {"OPENMIND_REMOTE": shared.as_uri()}


@dataclass
class Machine:
    """A simulated machine: its own home and key directory; runs actions in a fresh process."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def keys(self) -> Path:
        return self.root / "keys"

    def environ(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENMIND_", "AWS_"))}
        env.update(OPENMIND_HOME=str(self.home), OPENMIND_KEY_DIR=str(self.keys),
                   PYTHONPATH=str(ROOT), OPENMIND_ASSUME="gpu=off,api=off,infer=off,serial=off")
        env.update(self.env)
        return env

    def start(self, actions: list[dict[str, Any]]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(HERE / "team_machine.py"), json.dumps(actions)],
                                env=self.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    def run(self, actions: list[dict[str, Any]], timeout: float = 300) -> dict[str, Any]:
        return self.result(self.start(actions), timeout)

    @staticmethod
    def result(proc: subprocess.Popen, timeout: float = 300) -> dict[str, Any]:
        out, err = proc.communicate(timeout=timeout)
        line = next((ln for ln in out.splitlines() if ln.startswith("RESULT ")), None)
        assert proc.returncode == 0 and line, f"machine failed ({proc.returncode}): {err[-3000:]}"
        return json.loads(line[len("RESULT "):])

    def trust(self, *lines: str) -> None:
        self.keys.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.root / "trust"
        path.write_text("".join(line + "\n" for line in lines))
        self.env["OPENMIND_TRUST"] = str(path)


@pytest.fixture
def machines(tmp_path, team_remote) -> Any:
    """machines("a", write=True) -> a Machine on the team store of this test."""

    def make(name: str, *, write: bool = False) -> Machine:
        env = dict(team_remote)
        if write:
            env["OPENMIND_REMOTE_WRITE"] = "1"
        return Machine(tmp_path / name, env)

    return make
