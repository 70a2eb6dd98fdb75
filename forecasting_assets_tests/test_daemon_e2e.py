"""The UI and the automation proven with Dagster's own webserver and daemon (``pytest -m daemon``).

A temporary project home is materialized once; then ``dagster-daemon`` and ``dagster-webserver`` are started
on 127.0.0.1 against it. A headless Chromium opens the asset graph and the reconciled-forecasts page. Then a
sales file is dropped in the landing folder and the test waits for the landing run and the declarative ingest
run to put the new day in the warehouse; then drifted days are dropped and it waits for the drift sensor's
retrain run and the promotion decision, and checks that a local webhook receiver got the retrain and
promotion alerts. Every process the module starts is stopped at the end.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from forecasting_assets.paths import REPO_ROOT

pytestmark = [pytest.mark.daemon, pytest.mark.slow]

BIN = Path(sys.executable).parent
WAIT_S = 240  # the bound on each wait (typically 20–120 s; a busy CI machine took up to 2 min for the retrain)


class _Receiver(BaseHTTPRequestHandler):
    messages: list[dict] = []

    def do_POST(self):  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        type(self).messages.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(what: str, condition, timeout_s: float = WAIT_S, every_s: float = 2.0, logs: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(every_s)
    tail = ""
    if logs is not None:
        tail = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}\n{tail}")


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    # SIGTERM back to its default: a CI runner may start us with it ignored, and the servers inherit that
    return subprocess.Popen(
        args, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO_ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGTERM, signal.SIG_DFL),
    )


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left in it (the code servers the daemon and the
    webserver started live in the same group and may outlive them)."""
    group = process.pid  # start_new_session: the process leads its own group
    if process.poll() is None:
        os.killpg(group, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(group, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=10)


def _runs(instance, job_name: str, status=None):
    import dagster as dg

    statuses = [status] if status is not None else None
    return instance.get_runs(filters=dg.RunsFilter(job_name=job_name, statuses=statuses))


CHROMIUM = Path(os.environ.get("FORECASTING_CHROMIUM", "/usr/bin/chromium"))


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A tiny demo project materialized once, with dagster-daemon and dagster-webserver running on it."""
    import dagster as dg

    from forecasting_assets.demo_data import write_demo

    home = tmp_path_factory.mktemp("served") / "project"
    dagster_home = home / "data" / "dagster_home"
    logs = home / "logs"
    for folder in (dagster_home, logs):
        folder.mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    demo = home / "data" / "demo"
    write_demo(demo, shape="tiny", seed=7)

    _Receiver.messages = []
    receiver = HTTPServer(("127.0.0.1", _free_port()), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    env = {
        **os.environ,
        "FORECASTING_ASSETS_HOME": str(home),
        "DAGSTER_HOME": str(dagster_home),
        "FORECASTING_SOURCE": str(demo),
        "FORECASTING_LANDING": str(home / "data" / "landing"),
        "FORECASTING_EXECUTOR": "in_process",
        "FORECASTING_SENSOR_INTERVAL_SECONDS": "5",
        "FORECASTING_LANDING_SETTLE_SECONDS": "1",
        "FORECASTING_RETRAIN_TRIALS": "1",
        "FORECASTING_LIGHTGBM_MODELS": "1",  # one model per strategy, for test time (two: tiny_project)
        "FORECASTING_APPROVAL_DRIFT_THRESHOLD": "1.01",  # the test wants an automatic decision
        "FORECASTING_ERROR_THRESHOLD": "1000",  # only the injected drift may launch the retrain
        "FORECASTING_WEBHOOK_URL": f"http://127.0.0.1:{receiver.server_port}/hook",
    }
    timings: dict[str, float] = {}
    started = time.monotonic()
    config = home / "first_run.yaml"
    config.write_text("ops:\n  lightgbm_tuning:\n    config:\n      n_trials: 1\n")
    subprocess.run(
        [str(BIN / "dagster"), "job", "execute", "-m", "forecasting_assets.definitions", "-j", "full_pipeline_job", "-c", str(config)],
        env=env, cwd=REPO_ROOT, check=True, capture_output=True, timeout=600,
    )
    timings["first full run"] = time.monotonic() - started

    port = _free_port()
    daemon = _start([str(BIN / "dagster-daemon"), "run", "-m", "forecasting_assets.definitions"], env, logs / "daemon.log")
    webserver = _start([str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port), "-m", "forecasting_assets.definitions"], env, logs / "webserver.log")
    previous_home = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    instance = None
    try:
        def _server_up():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        _wait_for("the webserver on 127.0.0.1", _server_up, logs=logs)
        instance = dg.DagsterInstance.get()
        yield {"home": home, "demo": demo, "landing": home / "data" / "landing", "port": port, "logs": logs, "instance": instance, "timings": timings, "url": f"http://127.0.0.1:{port}"}
    finally:
        for process in (webserver, daemon):
            _stop(process)
        receiver.shutdown()
        if instance is not None:
            instance.dispose()
        if previous_home is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous_home
        print("daemon end-to-end timings (s):", json.dumps({k: round(v, 1) for k, v in timings.items()}))
    assert daemon.poll() is not None and webserver.poll() is not None


def _skip_onboarding(page) -> None:
    """Dismiss Dagster's one-time "Join the community" dialog if it is showing."""
    page.wait_for_timeout(1_000)
    skip = page.get_by_role("button", name="Skip")
    if skip.count():
        skip.first.click()


def test_ui_shows_the_graph_and_the_reconciled_forecasts_page(served, request, monkeypatch):
    """Headless Debian Chromium (driven by Playwright) on the real webserver: the asset graph, and the
    reconciled-forecasts page with its plot and backtest table. Screenshots go to data/screenshots/."""
    if not CHROMIUM.exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium with apt-get where it can (set FORECASTING_CHROMIUM to another binary)")
    from playwright.sync_api import sync_playwright

    shots = REPO_ROOT / "data" / "screenshots"  # gitignored
    # the browser profile (Playwright's driver puts it in $TMPDIR) and Chromium's own files ($HOME/.config,
    # $HOME/.cache) stay inside the project, never in /tmp or $HOME. Short path: Chromium puts a Unix socket in
    # $TMPDIR, and a socket path may not exceed 107 characters (pytest's tmp_path is too deep for it).
    scratch = REPO_ROOT / "data" / ".tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    browser_tmp = Path(tempfile.mkdtemp(prefix="ui", dir=scratch))
    request.addfinalizer(lambda: shutil.rmtree(browser_tmp, ignore_errors=True))
    browser_home = browser_tmp / "home"
    browser_home.mkdir()
    monkeypatch.setenv("TMPDIR", str(browser_tmp))
    browser_env = {**os.environ, "HOME": str(browser_home), "XDG_CONFIG_HOME": str(browser_home / ".config"), "XDG_CACHE_HOME": str(browser_home / ".cache"), "TMPDIR": str(browser_tmp)}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"], env=browser_env)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{served['url']}/asset-groups", timeout=60_000)
            for group in ("ingest", "models", "reconciliation", "monitoring"):
                page.get_by_text(group, exact=True).first.wait_for(timeout=60_000)
            _skip_onboarding(page)
            page.screenshot(path=str(shots / "asset_graph.png"))

            page.goto(f"{served['url']}/assets/reconciled_forecasts", timeout=60_000)
            page.get_by_text("backtest_scores").first.wait_for(timeout=60_000)
            _skip_onboarding(page)
            # the per-method backtest table is rendered inline
            assert page.locator("table").filter(has_text="wrmsse").filter(has_text="SeasonalNaive").count() >= 1
            # the forecast plot is an inline PNG behind the metadata row's "Show Markdown"
            page.locator("tr").filter(has_text="forecast_plot").get_by_text("Show Markdown").click(timeout=30_000)
            plot = page.locator("img[src^='data:image/png']").first
            plot.wait_for(timeout=30_000)
            box = plot.bounding_box()
            assert box is not None and box["width"] > 200 and box["height"] > 200
            page.wait_for_timeout(1_000)  # let the dialog finish fading in
            page.screenshot(path=str(shots / "reconciled_forecasts.png"))
        finally:
            browser.close()
    assert (shots / "reconciled_forecasts.png").stat().st_size > 10_000


def test_daemon_ingests_a_landed_file_and_retrains_on_drift(served):
    import dagster as dg

    from forecasting_assets.demo_data import write_next_days

    home, demo, landing, logs, instance, timings = (served[k] for k in ("home", "demo", "landing", "logs", "instance", "timings"))

    # 1. a new day lands: the sensor's run, then the declarative ingest, put it in the warehouse
    step = time.monotonic()
    landed = write_next_days(demo, landing, 1)
    day = landed.name.split("_")[1]
    _wait_for("the landing run", lambda: _runs(instance, "landing_ingest_job", dg.DagsterRunStatus.SUCCESS), logs=logs)
    timings["file landed -> landing run succeeded"] = time.monotonic() - step
    assert (landing / "archive").is_dir() and not landed.exists()

    def _warehouse_has_day():
        import duckdb

        try:
            with duckdb.connect(str(home / "data" / "warehouse.duckdb"), read_only=True) as con:
                return str(con.execute("SELECT max(ds) FROM validated_sales").fetchone()[0])[:10] == day
        except duckdb.Error:
            return False

    _wait_for(f"validated_sales to reach {day} in the warehouse", _warehouse_has_day, logs=logs)
    timings["file landed -> new day in the warehouse"] = time.monotonic() - step

    # 2. drifted days land: drift_report follows, the drift sensor launches the retrain, the gate decides
    step = time.monotonic()
    write_next_days(demo, landing, 28, drift=True)
    retrain = _wait_for("the retrain run to start", lambda: _runs(instance, "retrain_job"), logs=logs)[0]
    timings["drifted file landed -> retrain started"] = time.monotonic() - step
    assert retrain.tags["trigger"] == "drift_or_error"
    assert float(retrain.tags["drift_share"]) >= 0.5

    def _promotion_recorded():
        import pandas as pd

        path = home / "data" / "outputs" / "automation_decisions.parquet"
        if not path.exists():
            return None
        table = pd.read_parquet(path)
        decided = table[(table["actor"] == "model_promotion") & (table["run_id"] == retrain.run_id)]
        return decided.to_dict("records") if len(decided) else None

    decision = _wait_for("the promotion decision of the retrain run", _promotion_recorded, logs=logs)[0]
    timings["drifted file landed -> promotion decided"] = time.monotonic() - step
    assert decision["decision"] in {"promoted", "kept_champion"}

    # 3. the webhook got the retrain and promotion alerts
    events = {m["event"] for m in _wait_for("webhook alerts", lambda: _Receiver.messages if {"retrain", "model_promotion"} <= {m["event"] for m in _Receiver.messages} else None, timeout_s=30)}
    assert {"retrain", "model_promotion"} <= events
    assert all(m["text"].startswith("[forecasting_assets]") for m in _Receiver.messages)
