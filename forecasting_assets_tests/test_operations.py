"""Operations: the promotion gate, human approval, the nightly refresh with the champion, live error,
alerts and the automation decisions table."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from forecasting_assets.automation.alerts import alert_payload, send_alert
from forecasting_assets.automation.decisions import read_decisions, record_decision
from forecasting_assets.models.promotion import AWAITING_APPROVAL, KEPT, PROMOTED, decide_promotion

# --- the promotion gate (plain function) -----------------------------------------------------------


def test_first_model_is_promoted():
    assert decide_promotion(0.7, None, False, 0.0, 0.8).decision == PROMOTED


def test_a_worse_or_equal_new_configuration_keeps_the_champion():
    worse = decide_promotion(0.71, 0.70, False, 0.0, 0.8)
    assert worse.decision == KEPT and "0.7100" in worse.reason and "0.7000" in worse.reason
    assert decide_promotion(0.70, 0.70, False, 0.0, 0.8).decision == KEPT  # must beat, not tie


def test_a_better_model_is_promoted_unless_drift_asks_for_a_human():
    assert decide_promotion(0.65, 0.70, False, 0.3, 0.8).decision == PROMOTED
    waiting = decide_promotion(0.65, 0.70, False, 0.9, 0.8)
    assert waiting.decision == AWAITING_APPROVAL and "model_approval" in waiting.reason
    # the same configuration refit on newer data scores the same on the same windows: it serves
    assert decide_promotion(0.70, 0.70, True, 0.0, 0.8).decision == PROMOTED
    assert decide_promotion(0.72, 0.70, True, 0.0, 0.8).decision == KEPT


def test_a_champion_trained_past_the_training_data_is_not_eligible():
    decision = decide_promotion(0.90, None, False, 0.95, 0.8, ineligible_champion="the champion v3 (trained to 2016-05-22)")
    assert decision.decision == PROMOTED and "not eligible" in decision.reason and "v3" in decision.reason


# --- alerts and the decisions table ----------------------------------------------------------------


class _Receiver(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        self.received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Receiver.received = []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Receiver.received
    server.shutdown()


def test_alert_posts_a_slack_compatible_json_message(webhook, monkeypatch):
    url, received = webhook
    monkeypatch.setenv("FORECASTING_WEBHOOK_URL", url)
    assert send_alert("retrain", "retrain launched", {"drift_share": 0.9}) == "sent"
    assert received == [alert_payload("retrain", "retrain launched", {"drift_share": 0.9})]
    assert received[0]["text"] == "[forecasting_assets] retrain launched"


def test_alerts_are_off_without_a_url_and_never_raise(monkeypatch):
    monkeypatch.delenv("FORECASTING_WEBHOOK_URL", raising=False)
    assert send_alert("retrain", "x") == "off"
    assert send_alert("retrain", "x", url="http://127.0.0.1:9/nothing-listens").startswith("failed:")
    assert send_alert("retrain", "x", url="file:///etc/passwd").startswith("failed:")


def test_decisions_are_appended_and_queryable_in_the_warehouse():
    from forecasting_assets.storage.warehouse import connect

    record_decision("test", "one", "first", {"a": 1})
    record_decision("test", "two", "second")
    table = read_decisions()
    assert table["decision"].tolist()[-2:] == ["one", "two"] and json.loads(table["details"].iloc[-2]) == {"a": 1}
    with connect() as con:
        assert con.execute("SELECT count(*) FROM automation_decisions WHERE actor = ?", ["test"]).fetchone()[0] == 2


# --- live error -------------------------------------------------------------------------------------


def test_live_error_scores_the_newest_forecast_on_arrived_actuals(tmp_path):
    from forecasting_assets.monitoring.live_error import archive_forecast, live_error, served_forecasts

    dates = pd.date_range("2024-01-01", periods=70, freq="D")
    rng = np.random.default_rng(0)
    series = pd.DataFrame({"unique_id": "Total", "ds": dates, "y": 100 + 10 * np.sin(np.arange(70)) + rng.normal(0, 1, 70)})
    keys = pd.DataFrame({"unique_id": ["Total"], "level": ["total"], "level_order": [0]})
    weights = pd.DataFrame({"unique_id": ["Total"], "level": ["total"], "weight": [1.0]})
    origin = dates[59]
    future = series[series["ds"] > origin].head(7)
    good = future.assign(yhat=future["y"] + 0.5, level="total", model="LightGBM/BottomUp")[["unique_id", "level", "ds", "yhat", "model"]]
    archive_forecast(good, tmp_path)
    _, summary = live_error(served_forecasts(tmp_path), series.head(63), keys, weights)
    assert summary["days_scored"] == 3 and summary["origin"] == str(origin.date()) and summary["recent_wrmsse"] < 0.2

    bad = good.assign(yhat=good["yhat"] * 3)
    archive_forecast(bad, tmp_path)  # the same origin again: replaced, not duplicated
    assert len(served_forecasts(tmp_path)) == 1
    _, worse = live_error(served_forecasts(tmp_path), series.head(63), keys, weights)
    assert worse["recent_wrmsse"] > 5 * summary["recent_wrmsse"]
    _, nothing = live_error(served_forecasts(tmp_path), series.head(60), keys, weights)
    assert nothing == {"days_scored": 0}


# --- the graph: champion, refresh and approval (on the tiny demo project) ----------------------------


def _registry(home):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{home / 'data' / 'mlflow.db'}"
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def test_first_model_is_registered_promoted_and_recorded(tiny_project):
    client = _registry(tiny_project["home"])
    champion = client.get_model_version_by_alias("lightgbm_demo", "champion")
    assert champion.tags["promotion"] == "promoted" and float(champion.tags["backtest_wrmsse"]) > 0
    decisions = pd.read_parquet(tiny_project["home"] / "data" / "outputs" / "automation_decisions.parquet")
    promotion = decisions[decisions["actor"] == "model_promotion"]
    assert promotion["decision"].tolist() == ["promoted"] and promotion["run_id"].iloc[0] == tiny_project["result"].run_id


def test_nightly_refresh_serves_the_champion_without_refitting(tiny_project, monkeypatch):
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_project["home"]))
    # every loaded frame is kept and handed out read-only, as the history is at M5 size: a step that changed
    # its input in place would fail here
    monkeypatch.setenv("FORECASTING_IO_CACHE_MIN_ROWS", "0")
    from forecasting_assets.storage.io_manager import FRAME_CACHE
    from forecasting_assets_tests.conftest import run_job, tiny_run_config

    client = _registry(tiny_project["home"])
    versions_before = len(client.search_model_versions("name='lightgbm_demo'"))
    champion = client.get_model_version_by_alias("lightgbm_demo", "champion")
    served_before = pd.read_parquet(tiny_project["home"] / "data" / "outputs" / "final_forecasts.parquet")
    try:
        job_assets = [key.to_user_string() for key in tiny_project["defs"].resolve_job_def("refresh_forecasts_job").asset_layer.executable_asset_keys]
        result = run_job(tiny_project["defs"], "refresh_forecasts_job", tiny_project["instance"], tiny_run_config(tiny_project, job_assets))
        assert FRAME_CACHE.entries  # the history was served from the cache to the later steps
    finally:
        FRAME_CACHE.entries.clear()
    # no new data, the same champion: the same forecasts as the full run made
    served_after = pd.read_parquet(tiny_project["home"] / "data" / "outputs" / "final_forecasts.parquet")
    pd.testing.assert_frame_equal(served_after, served_before, rtol=1e-9)
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert {"base_forecasts", "final_forecasts", "drift_report", "live_forecast_error"} <= materialized
    assert not materialized & {"lightgbm_tuning", "lightgbm_model", "backtest_forecasts", "model_promotion"}
    assert len(client.search_model_versions("name='lightgbm_demo'")) == versions_before
    served = result.asset_materializations_for_node("base_forecasts")[0].metadata["lightgbm"].value
    assert served.startswith(f"lightgbm_demo version {champion.version} ")


def test_approval_promotes_the_waiting_model_and_refuses_when_none_waits(tiny_project, monkeypatch):
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_project["home"]))
    from forecasting_assets_tests.conftest import run_job

    client = _registry(tiny_project["home"])
    champion = client.get_model_version_by_alias("lightgbm_demo", "champion")
    with pytest.raises(dg.Failure, match="nothing to approve"):
        run_job(tiny_project["defs"], "approve_model_job", tiny_project["instance"])
    client.set_registered_model_alias("lightgbm_demo", "challenger", champion.version)
    run_job(tiny_project["defs"], "approve_model_job", tiny_project["instance"])
    assert client.get_model_version_by_alias("lightgbm_demo", "champion").version == champion.version
    assert "challenger" not in client.get_registered_model("lightgbm_demo").aliases
    decisions = pd.read_parquet(tiny_project["home"] / "data" / "outputs" / "automation_decisions.parquet")
    assert decisions["decision"].iloc[-1] == "approved"
