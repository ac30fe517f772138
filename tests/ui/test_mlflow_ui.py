"""What a person sees after a sweep, checked in a real browser: a real `mlflow server` (SQLite
backend, a free port on 127.0.0.1), a tiny real sweep logged to it, and headless Chromium
(Debian's `chromium` and `chromium-driver`, driven by Selenium; nothing is downloaded).

Screenshots of every step go to $SCALESWEEP_TEST_ARTIFACTS/ui (default: test-artifacts/ui).
The browser tests skip, saying why, where Chromium, its driver or Selenium is missing;
`./scripts/test.sh` installs them (as root). The sweep-side checks run everywhere.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests
import yaml
from mlflow.tracking import MlflowClient

from scalesweep import metrics as m
from scalesweep import tracking
from scalesweep.cli import main
from scalesweep.tracking import ui as tracking_ui

pytestmark = pytest.mark.ray

ARTIFACTS = Path(os.environ.get("SCALESWEEP_TEST_ARTIFACTS", "test-artifacts")) / "ui"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SWEEP = "ui-sweep"
TINY = {
    "model": {"width": {"grid": [16, 32]}, "depth": 1, "head_dim": 16, "seq_len": 32},
    "optim": {"lr": {"grid": [0.01, 0.003]}},
    "schedule": {"type": "constant"},
    "train": {"steps": 20, "batch_size": 4, "eval_every": 10, "eval_batches": 1, "log_every": 5},
    "resources": {"cpus_per_worker": 1, "max_concurrent_trials": 2},
}
WAIT_S = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on 127.0.0.1, stopped with its worker children (its process group)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1",
               "--port", str(port), "--workers", "1",
               "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
               "--artifacts-destination", str(folder / "artifacts")]  # fmt: skip
    log = (folder / "server.log").open("w")
    # No job-execution workers (7 huey processes importing MLflow): the UI needs none of them.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env
    )
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(folder / 'server.log').read_text()}")
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
        with contextlib.suppress(ProcessLookupError):  # its huey workers outlive a SIGTERM
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


@pytest.fixture(scope="module")
def swept(server, ray_address, tmp_path_factory):
    """A 2 widths × 2 LRs sweep logged to the server: (stdout, experiment id, parent run id,
    {child run id: params})."""
    folder = tmp_path_factory.mktemp("ui-sweep")
    raw = {**TINY, "name": SWEEP, "storage_path": str(folder / "runs"),
           "tracking": {"uri": server, "log_every_s": 0.5}}  # fmt: skip
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    out = folder / "stdout.txt"
    with out.open("w") as stream:
        old, sys.stdout = sys.stdout, stream
        try:
            code = main(["sweep", str(path)])
        finally:
            sys.stdout = old
    assert code == 0, out.read_text()
    client = MlflowClient(server)
    experiment = client.get_experiment_by_name(SWEEP)
    parent = tracking.latest_parent_run_id(SWEEP, server)
    children = {r.info.run_id: r for r in tracking.child_runs(client, SWEEP, parent)}
    return out.read_text(), experiment.experiment_id, parent, children


def test_sweep_logs_its_report_and_prints_the_runs_view(swept, server):
    # Rule: a sweep ends by logging its own report (report.html and the LR-curve plot) to its
    # parent run, and its closing lines give the URL of the experiment's trials view, which
    # the experiment's tags define (model training, the trials view).
    stdout, experiment_id, parent, children = swept
    client = MlflowClient(server)
    logged = {a.path for a in client.list_artifacts(parent, "report")}
    assert {"report/report.html", "report/lr_sensitivity.png", "report/fit.json"} <= logged
    assert tracking_ui.runs_url(server, experiment_id) in stdout
    assert tracking_ui.report_url(server, experiment_id, parent) in stdout
    tags = client.get_experiment(experiment_id).tags
    assert tags[tracking_ui.EXPERIMENT_KIND_TAG] == tracking_ui.MODEL_TRAINING_KIND
    assert tracking_ui.VIEW_TAG_PREFIX + tracking_ui.TRIALS_VIEW in tags
    assert len(children) == 4


# --- in the browser --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        reason = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver"
        print(f"\nskipping the browser tests: {reason}", file=sys.stderr)
        pytest.skip(reason)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1600,1000"):  # fmt: skip
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-")
    options.add_argument(f"--user-data-dir={profile}")
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_S)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _wait(driver, condition, what: str, name: str):
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    # React re-renders the table while it loads: an element found a moment ago may be gone,
    # so the condition is simply asked again.
    wait = WebDriverWait(driver, WAIT_S, ignored_exceptions=(StaleElementReferenceException,))
    try:
        return wait.until(condition)
    except TimeoutException:
        driver.save_screenshot(str(ARTIFACTS / f"{name}-FAILED.png"))
        pytest.fail(f"{what} did not show within {WAIT_S} s (see {ARTIFACTS}/{name}-FAILED.png)")


def _click(driver, by: str, selector: str, *, text: str | None = None) -> bool:
    """Click the first displayed element matching (and reading `text`); False when none is
    there yet. Finding and clicking in one step leaves a re-render no gap to fall into."""
    for element in driver.find_elements(by, selector):
        if element.is_displayed() and (text is None or element.text == text):
            element.click()
            return True
    return False


def _rows(driver, run_id: str):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, f'[role="row"][row-id="{run_id}"]')


def test_experiment_lists_the_parent_with_its_children_nested(browser, swept, server):
    # Rule: the experiment named after the sweep shows the sweep's parent run, and expanding it
    # shows every trial's child run under it.
    from selenium.webdriver.common.by import By

    _, experiment_id, parent, children = swept
    browser.get(f"{server}/#/experiments/{experiment_id}/runs?workflowType=machine_learning")
    _wait(browser, lambda d: _rows(d, parent), "the parent run", "1-experiment")
    assert SWEEP in browser.title or SWEEP in browser.find_element(By.TAG_NAME, "body").text
    assert not any(_rows(browser, child) for child in children)  # nested: folded at first
    browser.save_screenshot(str(ARTIFACTS / "1-experiment.png"))

    def expand(driver) -> bool:  # the +/- button of the run name cell
        for row in _rows(driver, parent):
            for button in row.find_elements(By.TAG_NAME, "button"):
                if "runnamecell" in (button.get_attribute("data-component-id") or ""):
                    driver.execute_script("arguments[0].click()", button)
                    return True
        return False

    _wait(browser, expand, "the expand button on the parent run", "1-experiment")
    _wait(browser, lambda d: all(_rows(d, c) for c in children), "the child runs", "2-expanded")
    browser.save_screenshot(str(ARTIFACTS / "2-expanded.png"))


def test_trials_view_shows_the_swept_params_and_the_loss_of_every_child(browser, swept, server):
    # Rule: the URL the sweep prints opens the trials view: every child run with columns
    # model.width, optim.lr, final_val_loss and status, and their values in its row.
    _, experiment_id, parent, children = swept
    browser.get(tracking_ui.runs_url(server, experiment_id))
    _wait(browser, lambda d: all(_rows(d, c) for c in children), "the trials", "3-trials")
    headers = browser.execute_script(
        "return [...document.querySelectorAll('[role=columnheader]')].map(e => e.innerText)"
    )
    for column in ("model.width", "optim.lr", m.FINAL_VAL_LOSS, m.STATUS):
        assert any(column in h for h in headers), (column, headers)
    assert not _rows(browser, parent)  # the view lists trials only
    texts = _wait(browser, lambda d: {c: " ".join(r.text for r in _rows(d, c)) for c in children},
                  "the trials' cells", "3-trials")  # fmt: skip
    for run_id, run in children.items():
        text = texts[run_id]
        assert run.data.params["model.width"] in text and run.data.params["optim.lr"] in text
        assert run.data.tags[m.STATUS] in text
        loss = run.data.metrics[m.FINAL_VAL_LOSS]
        shown = [float(x) for x in re.findall(r"\d+\.\d+", text)]  # rounded or in full
        assert any(abs(x - loss) <= 1e-3 * loss for x in shown), (loss, text)
    browser.save_screenshot(str(ARTIFACTS / "3-trials.png"))


def test_compare_view_of_the_children_opens(browser, swept, server):
    # Rule: selecting every trial in the trials view and pressing Compare opens MLflow's
    # compare page for those runs.
    from selenium.webdriver.common.by import By

    _, experiment_id, _, children = swept
    browser.get(tracking_ui.runs_url(server, experiment_id))
    _wait(browser, lambda d: all(_rows(d, c) for c in children), "the trials", "4-compare")
    _wait(browser, lambda d: _click(d, By.CSS_SELECTOR, ".ag-header-select-all"),
          "the select-all checkbox of the runs table", "4-compare")  # fmt: skip
    _wait(browser, lambda d: _click(d, By.TAG_NAME, "button", text="Compare"),
          "the Compare button", "4-compare")  # fmt: skip
    _wait(browser, lambda d: "compare-runs" in d.current_url, "the compare page", "4-compare")
    _wait(browser, lambda d: f"Comparing {len(children)} Runs" in d.page_source, "the runs",
          "4-compare")  # fmt: skip
    assert all(run_id in browser.current_url for run_id in children)
    time.sleep(1)  # let the parallel-coordinates plot draw for the screenshot
    browser.save_screenshot(str(ARTIFACTS / "4-compare.png"))


def test_parent_run_report_renders_with_its_images(browser, swept, server):
    # Rule: the parent run's report.html opens in MLflow's artifact viewer, and every image in
    # it has loaded with a non-zero size.
    from selenium.webdriver.common.by import By

    _, experiment_id, parent, _ = swept
    browser.get(tracking_ui.report_url(server, experiment_id, parent))
    frame = _wait(browser, lambda d: d.find_elements(By.TAG_NAME, "iframe"), "the report", "5-r")
    browser.switch_to.frame(frame[0])
    try:
        _wait(browser, lambda d: d.find_elements(By.TAG_NAME, "img"), "the report's images",
              "5-report")  # fmt: skip
        sizes = browser.execute_script(
            "return [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])"
        )
        heading = browser.find_element(By.TAG_NAME, "h1").text
    finally:
        browser.switch_to.default_content()
    assert SWEEP in heading
    assert sizes and all(done and w > 0 and h > 0 for done, w, h in sizes), sizes
    browser.save_screenshot(str(ARTIFACTS / "5-report.png"))
