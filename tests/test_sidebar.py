"""The sidebar in a real browser: `jupyter lab` on 127.0.0.1 with a token, headless Chromium.

Opens the openmind panel, runs a cell that makes a decision in a notebook (the `%%openmind` magic
once openmind/jupyter/magics.py exists, else the public Python API), and checks the decision shows
up in the panel within a few seconds and that clicking it selects its cell. Screenshots (light and
dark theme) go to test-artifacts/.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

CHROMIUM = "/usr/bin/chromium"
ROOT = Path(__file__).resolve().parents[1]
LABEXT = ROOT / "openmind" / "jupyter" / "labextension"
ARTIFACTS = ROOT / "test-artifacts"
# Flags that work for Debian's chromium in this sandbox (root, no GPU, no network but loopback).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# the theme's warning colour, as the browser computes it
WARN_COLOR = ("() => { const d = document.createElement('div'); d.style.color = "
              "'var(--jp-warn-color1)'; document.body.appendChild(d); "
              "const c = getComputedStyle(d).color; d.remove(); return c; }")
INTERVAL = 2  # the user setting under test (seconds between polls)
SETUP_CELL = "%load_ext openmind.jupyter"
# the cell magic journals the decision with the cell's id and execution count
DECISION_CELL = (
    "%%openmind sense\n"
    "import openmind\n"
    "openmind.sense_or_simulate('temperature', duration='5s', rate='1Hz')"
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(150),
    pytest.mark.skipif(not Path(CHROMIUM).exists(),
                       reason=f"{CHROMIUM} is absent: apt-get install -y chromium"),
    pytest.mark.skipif(not (LABEXT / "package.json").exists(),
                       reason="the labextension is not built: bash scripts/build_labextension.sh"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _make_notebook(path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SETUP_CELL), nbformat.v4.new_code_cell(DECISION_CELL)]
    # enough cells below that the decision cell scrolls out of view
    nb.cells += [nbformat.v4.new_markdown_cell(f"### filler {i}\n\ntext " * 3) for i in range(30)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def lab(tmp_path, openmind_home):
    """A `jupyter lab` on 127.0.0.1 with a token, private config/runtime dirs and OPENMIND_HOME."""
    token = "sidebar-test-" + os.urandom(8).hex()
    port = _free_port()
    root = tmp_path / "notebooks"
    root.mkdir()
    _make_notebook(root / "sidebar.ipynb")
    jpath = tmp_path / "jupyter-path"
    (jpath / "labextensions").mkdir(parents=True)
    # the labextension as built in this checkout (not a copy made at install time)
    (jpath / "labextensions" / "openmind-jupyterlab").symlink_to(LABEXT)
    news = tmp_path / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text('{"fetchNews": "false"}')
    ours = tmp_path / "settings" / "openmind-jupyterlab"
    ours.mkdir(parents=True)
    (ours / "plugin.jupyterlab-settings").write_text(json.dumps({"refreshInterval": INTERVAL}))
    config = tmp_path / "config"
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(json.dumps(
        {"ServerApp": {"jpserver_extensions": {"openmind.jupyter": True}}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    env.update(
        OPENMIND_HOME=str(openmind_home), JUPYTER_PATH=str(jpath), JUPYTER_CONFIG_DIR=str(config),
        JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_DATA_DIR=str(tmp_path / "data"),
        JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"),
        OPENMIND_ASSUME="api=off",  # nothing reaches for a network in this test
    )
    log = (tmp_path / "lab.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.port_retries=0", "--allow-root"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("jupyter lab did not start:\n" + (tmp_path / "lab.log").read_text()[-3000:])
            time.sleep(0.3)
        yield {"base": base, "token": token, "log": tmp_path / "lab.log"}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()


def test_decision_appears_in_sidebar(lab, tmp_path):
    pw = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    with pw.sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 800})
        try:
            page = ctx.pages[0] if ctx.pages else ctx.new_page()
            page.set_default_timeout(30_000)
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            polls: list[float] = []
            page.on("request", lambda r: polls.append(time.monotonic())
                    if "/openmind/api/journal" in r.url else None)
            page.goto(f"{lab['base']}/lab/tree/sidebar.ipynb?token={lab['token']}")

            # the panel: open it from its tab in the left sidebar
            tab = page.locator(".jp-SideBar [data-id='openmind-sidebar']")
            tab.click()
            panel = page.locator("#openmind-sidebar")
            panel.locator(".jp-openmind-badge[data-resource='gpu']").wait_for()
            badges = panel.locator(".jp-openmind-badge")
            assert sorted(badges.evaluate_all("els => els.map(e => e.dataset.resource)")) == sorted(
                ["gpu", "api", "infer", "serial", "memory", "host"])
            api = panel.locator(".jp-openmind-badge[data-resource='api']")
            assert "jp-mod-absent" in api.get_attribute("class")
            assert "masked" in api.inner_text()
            assert "OPENMIND_ASSUME" in api.get_attribute("title")
            host = panel.locator(".jp-openmind-badge[data-resource='host']")
            assert "jp-mod-available" in host.get_attribute("class")
            assert panel.locator(".jp-openmind-decision").count() == 0
            status = panel.locator(".jp-openmind-status")
            page.wait_for_function(f"el => el.textContent.includes('every {INTERVAL}s')",
                                   arg=status.element_handle(), timeout=10_000)

            # collapsed panel: no polling; shown again: it asks at once
            tab.click()
            panel.wait_for(state="hidden")
            page.wait_for_timeout(500)
            hidden_at = time.monotonic()
            page.wait_for_timeout(INTERVAL * 1000 * 2 + 500)
            assert [t for t in polls if t > hidden_at] == [], "polled while the panel was hidden"
            shown_at = time.monotonic()
            tab.click()
            panel.wait_for(state="visible")
            page.wait_for_timeout(1000)
            assert [t for t in polls if t > shown_at], "did not poll when shown again"

            # run the two cells like a person: click the first, Shift+Enter twice
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=45_000)
            cells = page.locator(".jp-NotebookPanel .jp-Cell")
            cells.nth(0).locator(".jp-InputArea-prompt").click()
            page.keyboard.press("Shift+Enter")
            page.keyboard.press("Shift+Enter")
            prompt = cells.nth(1).locator(".jp-InputArea-prompt")
            page.wait_for_function(
                "el => /\\[\\d+\\]/.test(el.textContent)", arg=prompt.element_handle(),
                timeout=30_000)
            done = time.monotonic()
            count = prompt.inner_text().strip().strip("[]:")
            output = cells.nth(1).locator(".jp-OutputArea").inner_text()
            assert "muscle_memory" in output or "HYBRID" in output or "temperature" in output

            item = panel.locator(".jp-openmind-decision").first
            item.wait_for(timeout=10_000)
            seen_after = time.monotonic() - done
            assert seen_after < 8, f"the decision took {seen_after:.1f}s to reach the panel"
            text = item.inner_text()
            assert "sense temperature" in text
            assert "muscle_memory" in text and "HYBRID" in text
            assert "sidebar.ipynb" in text and f"[{count}]" in text
            assert "prior" in item.locator(".jp-openmind-reason").inner_text()

            # clicking the decision goes to its cell, even when scrolled out of view
            cell_id = item.get_attribute("data-cell-id")
            assert cell_id, "the journal has no cell id for the decision"
            cells.last.scroll_into_view_if_needed()
            cells.last.click()
            item.click()
            active = page.locator(".jp-NotebookPanel .jp-Cell.jp-mod-active")
            page.wait_for_function(
                "id => { const a = document.querySelector('.jp-NotebookPanel .jp-Cell.jp-mod-active');"
                " return a && a.dataset.windowedListIndex === '1'; }", arg=cell_id, timeout=5_000)
            assert active.count() == 1
            assert active.evaluate("e => { const r = e.getBoundingClientRect();"
                                   " return r.bottom > 0 && r.top < window.innerHeight; }")

            light = panel.evaluate("e => getComputedStyle(e).backgroundColor")
            # a simulated signal from the built-in prior is degraded: its card says so in the
            # theme's warning colour (issue 11), in both themes
            card = cells.nth(1).locator(".openmind-card[data-degraded='1']")
            card.wait_for(timeout=10_000)
            assert "degraded: synthetic: built-in prior" in card.inner_text()
            assert card.evaluate("e => getComputedStyle(e).borderLeftColor") == page.evaluate(WARN_COLOR)
            card.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "sidebar-light.png"))
            card.screenshot(path=str(ARTIFACTS / "card-degraded-light.png"))
            # dark theme, after a reload: the panel comes back with the journal's history
            page.evaluate("() => window.jupyterapp.commands.execute('apputils:change-theme',"
                          " {theme: 'JupyterLab Dark'})")
            page.wait_for_function("() => document.body.dataset.jpThemeName === 'JupyterLab Dark'")
            page.wait_for_timeout(1000)  # the settings write
            assert card.evaluate("e => getComputedStyle(e).borderLeftColor") == page.evaluate(WARN_COLOR)
            card.screenshot(path=str(ARTIFACTS / "card-degraded-dark.png"))
            page.reload()
            page.wait_for_function("() => document.body.dataset.jpThemeLight === 'false'")
            page.locator(".jp-NotebookPanel").wait_for()  # the layout is restored by now
            if "lm-mod-current" not in (tab.get_attribute("class") or ""):
                tab.click()
            panel.locator(".jp-openmind-decision").first.wait_for(timeout=10_000)
            assert panel.locator(".jp-openmind-decision").count() == 1
            dark = panel.evaluate("e => getComputedStyle(e).backgroundColor")
            assert dark != light, "the panel does not follow the theme"
            page.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=30_000)
            page.wait_for_timeout(500)
            page.screenshot(path=str(ARTIFACTS / "sidebar-dark.png"))
            bad = [e for e in errors if "openmind" in e.lower()]
            assert not bad, bad
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "sidebar-failure.png"))
            raise
        finally:
            ctx.close()
            shutil.copy(lab["log"], ARTIFACTS / "sidebar-lab.log")
