"""Definitions load fast and light; the schedule and the sensors evaluate as intended."""

import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone

import dagster as dg
import pytest

from forecasting_assets.automation import sensors
from forecasting_assets.automation.schedules import nightly_refresh_schedule
from forecasting_assets.definitions import defs

HEAVY = ["tsfresh", "evidently", "shap", "mlflow", "dagster_mlflow", "lightgbm", "statsforecast", "hierarchicalforecast", "optuna", "mlforecast", "pandera"]


def test_definitions_validate_and_hold_every_stage():
    dg.Definitions.validate_loadable(defs)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    for name in ["raw_sales", "validated_sales", "sales_quarantine", "hierarchical_series", "series_features", "lightgbm_tuning", "lightgbm_model", "base_forecasts", "backtest_forecasts", "reconciled_forecasts", "final_forecasts", "forecast_metrics", "shap_values", "drift_report"]:
        assert name in keys
    assert {j.name for j in defs.jobs} >= {"full_pipeline_job", "refresh_forecasts_job", "retrain_job"}


def test_loading_the_code_location_imports_no_heavy_library():
    code = "import sys, forecasting_assets.definitions; print(','.join(m for m in %r if m in sys.modules))" % HEAVY
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ.copy())
    assert out.stdout.strip() == ""


def test_jobs_split_tuning_from_the_nightly_refresh():
    graph = defs.resolve_asset_graph()
    refresh = defs.resolve_job_def("refresh_forecasts_job").asset_layer.selected_asset_keys
    retrain = defs.resolve_job_def("retrain_job").asset_layer.selected_asset_keys
    assert dg.AssetKey("lightgbm_tuning") not in refresh and dg.AssetKey("raw_sales") in refresh
    assert dg.AssetKey("lightgbm_tuning") in retrain and dg.AssetKey("raw_sales") not in retrain
    assert dg.AssetKey("final_forecasts") in retrain
    assert len(graph.get_all_asset_keys()) == len(defs.resolve_job_def("full_pipeline_job").asset_layer.selected_asset_keys)


def test_nightly_schedule_requests_the_refresh_at_two():
    assert nightly_refresh_schedule.cron_schedule == "0 2 * * *"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc))
    requests = list(nightly_refresh_schedule.evaluate_tick(context).run_requests)
    assert len(requests) == 1
    assert nightly_refresh_schedule.job_name == "refresh_forecasts_job"


def _write(path, text="date,store_id,dept_id,sales\n2016-05-23,CA_1,FOODS_1,3\n", age_s=60.0):
    path.write_text(text)
    past = time.time() - age_s
    os.utime(path, (past, past))


def test_landing_sensor_requests_one_run_per_new_file_and_remembers_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECASTING_LANDING", str(tmp_path))
    _write(tmp_path / "sales_2016-05-23.csv")
    (tmp_path / ".sales_2016-05-24.csv.tmp").write_text("partial")  # still being written: ignored
    context = dg.build_sensor_context(cursor=None)
    result = sensors.landing_folder_sensor(context)
    assert isinstance(result, dg.RunRequest) and "sales_2016-05-23.csv" in result.run_key
    cursor = json.loads(context.cursor)
    assert list(cursor) == ["sales_2016-05-23.csv"]

    again = sensors.landing_folder_sensor(dg.build_sensor_context(cursor=context.cursor))
    assert isinstance(again, dg.SkipReason)

    _write(tmp_path / "sales_2016-05-23.csv", "date,store_id,dept_id,sales\n2016-05-23,CA_1,FOODS_1,4\n2016-05-23,CA_2,FOODS_1,5\n")
    changed = sensors.landing_folder_sensor(dg.build_sensor_context(cursor=context.cursor))
    assert isinstance(changed, dg.RunRequest) and changed.run_key != result.run_key


def test_landing_sensor_waits_for_a_file_still_being_written(tmp_path, monkeypatch):
    monkeypatch.setenv("FORECASTING_LANDING", str(tmp_path))
    _write(tmp_path / "sales_new.csv", age_s=0.0)
    assert isinstance(sensors.landing_folder_sensor(dg.build_sensor_context()), dg.SkipReason)


@pytest.mark.parametrize("share, expect_run", [(0.75, True), (0.25, False)])
def test_drift_sensor_launches_retrain_only_above_the_threshold(share, expect_run):
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance)
        assert isinstance(sensors.drift_retrain_sensor(context), dg.SkipReason)  # nothing materialized yet
        instance.report_runless_asset_event(dg.AssetMaterialization("drift_report", metadata={"drift_share": share}))
        context = dg.build_sensor_context(instance=instance)
        result = sensors.drift_retrain_sensor(context)
        assert isinstance(result, dg.RunRequest) is expect_run
        if expect_run:
            assert result.tags["trigger"] == "drift" and float(result.tags["drift_share"]) == share
        # the same materialization is not acted on twice
        assert isinstance(sensors.drift_retrain_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor)), dg.SkipReason)
