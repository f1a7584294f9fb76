"""The wheel ships the sidebar prebuilt: it installs into a clean venv with no Node.js on PATH and
JupyterLab then lists the extension as enabled and OK.

CI (scripts/test.sh) builds the wheel once and passes it in OPENMIND_WHEEL; without it the test
builds one (a few seconds: the labextension is committed prebuilt, so no Node is involved).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXT = ROOT / "jupyter_extension"
LABEXT = ROOT / "openmind" / "jupyter" / "labextension"
NAME = "openmind-jupyterlab"


def source_digest() -> str:
    """sha256 over the extension's sources, as jupyter_extension/stamp.mjs writes it at build."""
    files = []
    for root in ("package.json", "tsconfig.json", "src", "style", "schema"):
        path = EXT / root
        files += [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    h = hashlib.sha256()
    for rel in sorted(p.relative_to(EXT).as_posix() for p in files):
        h.update(rel.encode() + b"\0")
        h.update((EXT / rel).read_bytes())
        h.update(b"\0")
    return h.hexdigest()


def test_prebuilt_labextension_is_built_from_these_sources():
    stamp = (LABEXT / "source.sha256").read_text().strip()
    assert stamp == source_digest(), (
        "openmind/jupyter/labextension was built from other sources than jupyter_extension/: "
        "run `bash scripts/build_labextension.sh` and commit the result")


def _no_node_path() -> str:
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep)
            if d and not (Path(d) / "node").exists() and not (Path(d) / "nodejs").exists()]
    return os.pathsep.join(dirs)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    given = os.environ.get("OPENMIND_WHEEL")
    if given:
        path = Path(given)
        assert path.is_file(), f"OPENMIND_WHEEL={given} does not exist"
        return path
    out = tmp_path_factory.mktemp("wheel")
    env = {**os.environ, "PATH": _no_node_path()}
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(ROOT)], check=True, env=env, timeout=300)
    return next(out.glob("openmind_cells-*.whl"))


@pytest.mark.slow
def test_wheel_installs_without_node_and_lab_lists_it(wheel, tmp_path):
    clean = tmp_path / "clean"
    venv.EnvBuilder(with_pip=False).create(clean)
    py = clean / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    env["PATH"] = _no_node_path()
    assert shutil.which("node", path=env["PATH"]) is None
    # pip of this environment installs into the clean one; --no-deps: the deps are not under test
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, env=env, timeout=300)

    share = clean / "share" / "jupyter" / "labextensions" / NAME
    meta = json.loads((share / "package.json").read_text())
    assert meta["name"] == NAME
    assert (share / meta["jupyterlab"]["_build"]["load"]).is_file()  # the remoteEntry it loads
    assert (share / "static" / "style.js").is_file()
    assert json.loads((share / "schemas" / NAME / "plugin.json").read_text())["properties"][
        "refreshInterval"]["default"] > 0
    conf = clean / "etc" / "jupyter" / "jupyter_server_config.d" / "openmind.json"
    assert json.loads(conf.read_text())["ServerApp"]["jpserver_extensions"]["openmind.jupyter"]

    # JupyterLab (from this environment) looking only at the clean venv's data and config
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()
    assert (Path(site) / "openmind" / "jupyter" / "server.py").is_file()
    env.update(JUPYTER_PATH=str(clean / "share" / "jupyter"),
               JUPYTER_CONFIG_PATH=str(clean / "etc" / "jupyter"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "cfg"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
               PYTHONPATH=site)
    jupyter = [sys.executable, "-m", "jupyter"]
    # cwd: not this checkout, which `python -m` would put first on sys.path
    out = subprocess.run([*jupyter, "labextension", "list"], capture_output=True, text=True,
                         env=env, timeout=120, cwd=tmp_path)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    section = text.split(str(share.parent), 1)
    assert len(section) == 2, text
    ours = section[1].split("\n\n", 1)[0]
    assert re.search(rf"{NAME} v\S+ enabled\s+OK", ours), text

    out = subprocess.run([*jupyter, "server", "extension", "list"], capture_output=True,
                         text=True, env=env, timeout=120, cwd=tmp_path)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    assert re.search(r"openmind\.jupyter\s+enabled", text), text
    assert re.search(r"openmind\.jupyter\s+OK", text), text
    # the server extension that loaded is the wheel's copy, not this checkout
    where = subprocess.run([sys.executable, "-c", "import openmind.jupyter as m; print(m.__file__)"],
                           capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path).stdout
    assert where.startswith(site), where
    assert sysconfig.get_path("purelib") != site
