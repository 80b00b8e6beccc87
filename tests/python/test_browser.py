"""The quickstart in a real browser: JupyterLab (PyPI) on 127.0.0.1, Debian's chromium
driven headless by selenium. Runs every cell, waits, screenshots the backfill display
and checks what it shows."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ray_head import free_port

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
ARTIFACTS = REPO / "build" / "test-output" / "browser"


@pytest.fixture
def lab(tmp_path):
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(
            "the browser test needs Debian's chromium and chromium-driver: "
            "apt-get install chromium chromium-driver (make test does it as root)"
        )
    root = tmp_path / "lab"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", root)
    port, token = free_port(), "geneva-test-token"
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "rt"),
    }
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate", "--allow-root",
        ],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2) as r:
                json.load(r)
            break
        except OSError:
            if proc.poll() is not None:
                pytest.fail(f"jupyter lab exited: {(tmp_path / 'lab.log').read_text()[-2000:]}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail(f"jupyter lab did not answer: {(tmp_path / 'lab.log').read_text()[-2000:]}")
    yield base, token
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}",
        "--window-size=1400,1000",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    yield driver
    driver.quit()


def test_quickstart_runs_in_jupyterlab_and_the_widget_shows_the_result(lab, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, token = lab
    browser.get(f"{base}/lab/tree/quickstart.ipynb?token={token}")
    wait = WebDriverWait(browser, 120)
    # The notebook is open and its kernel idle.
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".jp-NotebookPanel .jp-Cell")))
    wait.until(lambda d: d.execute_script(
        "const s = document.querySelector('.jp-Notebook-ExecutionIndicator, .jp-KernelStatus');"
        "return s !== null;"
    ))  # fmt: skip
    time.sleep(2)
    # Run → Run All Cells, through the menus as a user does.
    run_menu = next(e for e in browser.find_elements(By.CSS_SELECTOR, ".lm-MenuBar-itemLabel") if e.text == "Run")
    run_menu.click()
    item = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "li.lm-Menu-item[data-command='runmenu:run-all']")))
    item.click()

    # The last cell (%geneva_cluster exit) renders "exited" when every cell has run.
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        WebDriverWait(browser, 300).until(
            lambda d: d.execute_script(
                "return document.querySelector(\".geneva-cluster[data-state='exited']\") !== null"
            )
        )
    except Exception:
        browser.save_screenshot(str(ARTIFACTS / "timeout.png"))
        (ARTIFACTS / "timeout.html").write_text(browser.page_source)
        raise
    stderr = browser.find_elements(
        By.CSS_SELECTOR, ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"
    )
    assert not [e.text for e in stderr if "Traceback" in e.text or "Error" in e.text]
    displays = browser.find_elements(By.CSS_SELECTOR, ".geneva-backfill")
    assert len(displays) >= 3, [d.text for d in displays]
    first = displays[0]
    browser.execute_script("arguments[0].scrollIntoView()", first)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    first.screenshot(str(ARTIFACTS / "backfill-widget.png"))
    browser.save_screenshot(str(ARTIFACTS / "quickstart.png"))
    text = first.text
    assert "100 %" in text and "done" in text, text
    assert "100,000 / 100,000 rows" in text, text
    assert (ARTIFACTS / "backfill-widget.png").stat().st_size > 1000
