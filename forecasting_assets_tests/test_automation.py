"""Definitions load fast and light; the schedule and the sensors evaluate as intended."""

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
from forecasting_assets.resources import AutomationSettings, SalesSource

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


def test_jobs_split_training_from_the_nightly_refresh():
    graph = defs.resolve_asset_graph()
    refresh = defs.resolve_job_def("refresh_forecasts_job").asset_layer.selected_asset_keys
    retrain = defs.resolve_job_def("retrain_job").asset_layer.selected_asset_keys
    full = defs.resolve_job_def("full_pipeline_job").asset_layer.selected_asset_keys
    # the nightly refresh reuses the champion: no tuning, no refit, no backtest, no promotion
    for training in ["lightgbm_tuning", "lightgbm_model", "backtest_forecasts", "model_promotion"]:
        assert dg.AssetKey(training) not in refresh
    for serving in ["raw_sales", "base_forecasts", "reconciled_forecasts", "forecast_metrics", "drift_report", "live_forecast_error"]:
        assert dg.AssetKey(serving) in refresh
    assert {dg.AssetKey(k) for k in ["lightgbm_tuning", "backtest_forecasts", "model_promotion", "final_forecasts"]} <= retrain
    assert dg.AssetKey("raw_sales") not in retrain and dg.AssetKey("model_approval") not in retrain
    # everything but the partitioned landing batches and the human approval is in the full run
    assert full == graph.get_all_asset_keys() - {dg.AssetKey("landed_sales"), dg.AssetKey("model_approval")}
    assert defs.resolve_job_def("landing_ingest_job").asset_layer.selected_asset_keys == {dg.AssetKey("landed_sales")}


def test_new_data_flows_through_ingest_declaratively():
    graph = defs.resolve_asset_graph()
    for key in ["raw_sales", "validated_sales", "hierarchical_series", "drift_report", "live_forecast_error"]:
        assert graph.get(dg.AssetKey(key)).automation_condition is not None, key
    for key in ["lightgbm_tuning", "lightgbm_model", "base_forecasts", "model_approval"]:
        assert graph.get(dg.AssetKey(key)).automation_condition is None, key
    sensors_by_name = {s.name for s in defs.sensors}
    assert {"automation_condition_sensor", "landing_folder_sensor", "drift_retrain_sensor", "run_failure_alert_sensor"} <= sensors_by_name


def test_nightly_schedule_requests_the_refresh_at_two():
    assert nightly_refresh_schedule.cron_schedule == "0 2 * * *"
    context = dg.build_schedule_context(scheduled_execution_time=datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc))
    requests = list(nightly_refresh_schedule.evaluate_tick(context).run_requests)
    assert len(requests) == 1
    assert nightly_refresh_schedule.job_name == "refresh_forecasts_job"


LANDING_HEADER = "date,store_id,dept_id,sales\n"


def _write(path, text=LANDING_HEADER + "2016-05-23,CA_1,FOODS_1,3\n", age_s=60.0):
    path.write_text(text)
    past = time.time() - age_s
    os.utime(path, (past, past))


@pytest.fixture
def long_source(tmp_path):
    """A long-format source (store_id, dept_id) and an empty landing folder."""
    source = tmp_path / "source"
    source.mkdir()
    rows = ["date,store_id,dept_id,sales"] + [f"2016-05-{d:02d},{s},FOODS_1,{d}" for d in range(1, 23) for s in ("CA_1", "CA_2")]
    (source / "sales.csv").write_text("\n".join(rows) + "\n")
    landing = tmp_path / "landing"
    landing.mkdir()
    return SalesSource(folder=str(source), landing_folder=str(landing)), landing


def _tick(instance, source, cursor=None):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"source": source})
    return sensors.landing_folder_sensor(context), context


def test_landing_sensor_takes_each_file_exactly_once_and_archives_it(long_source):
    source, landing = long_source
    _write(landing / "sales_2016-05-23.csv")
    (landing / ".sales_2016-05-24.csv.tmp").write_text("partial")  # still being written: ignored
    (landing / "sales_2016-05-25.csv.part").write_text("partial")
    with dg.instance_for_test() as instance:
        result, context = _tick(instance, source)
        assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1
        request = result.run_requests[0]
        assert request.partition_key.startswith("2016-05-23_2016-05-23_") and request.run_key == f"landing:{request.partition_key}"
        assert result.dynamic_partitions_requests[0].partition_keys == [request.partition_key]
        assert not (landing / "sales_2016-05-23.csv").exists()
        archived = list((landing / "archive").glob("*__sales_2016-05-23.csv"))
        assert len(archived) == 1
        assert (landing / ".sales_2016-05-24.csv.tmp").exists() and (landing / "sales_2016-05-25.csv.part").exists()

        # the cursor survives: the next tick (a restarted daemon) requests nothing again
        again, _ = _tick(instance, source, result.cursor)
        assert isinstance(again, dg.SkipReason)

        # the same content dropped again is a duplicate: rejected with a reason, never ingested twice
        _write(landing / "copy_of_sales.csv")
        duplicate, _ = _tick(instance, source, result.cursor)
        assert isinstance(duplicate, dg.SkipReason)
        reason = (landing / "rejected" / "copy_of_sales.csv.reason.txt").read_text()
        assert "duplicate" in reason and archived[0].name in reason

        # a corrected file for the same day is a new batch
        _write(landing / "sales_2016-05-23_fix.csv", LANDING_HEADER + "2016-05-23,CA_1,FOODS_1,4\n")
        fixed, _ = _tick(instance, source, result.cursor)
        assert len(fixed.run_requests) == 1 and fixed.run_requests[0].partition_key != request.partition_key


def test_landing_sensor_rejects_unreadable_files_and_symlinks_with_a_reason(long_source, tmp_path):
    source, landing = long_source
    _write(landing / "wrong_columns.csv", "day,shop,units\n2016-05-23,CA_1,3\n")
    outside = tmp_path / "secret.csv"
    outside.write_text(LANDING_HEADER + "2016-05-23,CA_1,FOODS_1,3\n")
    (landing / "link.csv").symlink_to(outside)
    with dg.instance_for_test() as instance:
        result, _ = _tick(instance, source)
    assert isinstance(result, dg.SkipReason)
    rejected = landing / "rejected"
    assert "wrong_columns.csv" in (rejected / "wrong_columns.csv.reason.txt").read_text() or "date" in (rejected / "wrong_columns.csv.reason.txt").read_text()
    assert (rejected / "wrong_columns.csv").exists()
    assert "symbolic link" in (rejected / "link.csv.reason.txt").read_text()
    assert outside.exists() and not (landing / "link.csv").exists()  # the link was removed, its target untouched


def test_landing_sensor_waits_for_a_file_still_being_written(long_source):
    source, landing = long_source
    _write(landing / "sales_new.csv", age_s=0.0)
    with dg.instance_for_test() as instance:
        result, _ = _tick(instance, source)
    assert isinstance(result, dg.SkipReason) and "still being written" in result.skip_message
    assert (landing / "sales_new.csv").exists()


def test_landing_sensor_recovers_a_batch_archived_by_a_crashed_tick(long_source):
    """A tick that archived a file but crashed before returning: the next tick still requests its run."""
    from forecasting_assets.ingest.landing import scan_landing
    from forecasting_assets.ingest.sources import load_source_spec

    source, landing = long_source
    _write(landing / "sales_2016-05-23.csv")
    scan_landing(landing, load_source_spec(source.folder_path()), settle_seconds=0)  # archived, no run requested
    with dg.instance_for_test() as instance:
        result, _ = _tick(instance, source)
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1


def _materialize(instance, asset, **metadata):
    instance.report_runless_asset_event(dg.AssetMaterialization(asset, metadata=metadata))


@pytest.mark.parametrize(
    "drift_share, recent_wrmsse, expect_run",
    [(0.75, 0.6, True), (0.25, 0.6, False), (0.25, 2.5, True)],
)
def test_retrain_sensor_launches_on_drift_or_error_and_logs_the_decision(drift_share, recent_wrmsse, expect_run):
    from forecasting_assets.automation.decisions import read_decisions

    automation = AutomationSettings(drift_threshold=0.5, error_threshold=1.5, retrain_trials=3)
    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, resources={"automation": automation})
        assert isinstance(sensors.drift_retrain_sensor(context), dg.SkipReason)  # nothing materialized yet
        _materialize(instance, "drift_report", drift_share=drift_share)
        _materialize(instance, "live_forecast_error", recent_wrmsse=recent_wrmsse)
        context = dg.build_sensor_context(instance=instance, resources={"automation": automation})
        result = sensors.drift_retrain_sensor(context)
        assert isinstance(result, dg.RunRequest) is expect_run
        decisions = read_decisions()
        assert decisions["decision"].iloc[-1] == ("retrain_launched" if expect_run else "no_retrain")
        if expect_run:
            assert float(result.tags["drift_share"]) == drift_share and float(result.tags["recent_wrmsse"]) == recent_wrmsse
            assert result.run_config["ops"]["lightgbm_tuning"]["config"]["n_trials"] == 3
        # the same materializations are not acted on twice
        again = dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"automation": automation})
        assert isinstance(sensors.drift_retrain_sensor(again), dg.SkipReason)


def test_landing_sensor_takes_a_wide_m5_fragment_with_the_source_calendar(tmp_path):
    """Either input format: a file with d_N columns is read with the source's calendar."""
    import pandas as pd

    from forecasting_assets.demo_data import write_demo
    from forecasting_assets.ingest.landing import ARCHIVE, find_batch, read_landing_file, source_spec_for_landing

    source_folder, landing = tmp_path / "demo", tmp_path / "landing"
    write_demo(source_folder, shape="tiny", seed=7)
    landing.mkdir()
    sales = pd.read_csv(source_folder / "sales.csv")
    last = max(int(c[2:]) for c in sales.columns if c.startswith("d_"))
    fragment = sales[[c for c in sales.columns if not c.startswith("d_")]].assign(**{f"d_{last + 1}": 3, f"d_{last + 2}": 4})
    fragment.to_csv(landing / "wide_fragment.csv", index=False)
    past = time.time() - 60
    os.utime(landing / "wide_fragment.csv", (past, past))
    calendar = pd.read_csv(source_folder / "calendar.csv").set_index("d")["date"]

    source = SalesSource(folder=str(source_folder), landing_folder=str(landing))
    with dg.instance_for_test() as instance:
        result, _ = _tick(instance, source)
    assert isinstance(result, dg.SensorResult) and len(result.run_requests) == 1
    batch = find_batch(landing, result.run_requests[0].partition_key)
    assert (batch.first_day, batch.last_day) == (calendar[f"d_{last + 1}"], calendar[f"d_{last + 2}"])
    rows = read_landing_file(landing / ARCHIVE, batch.archived_name, source_spec_for_landing(source_folder))
    assert len(rows) == 2 * len(sales) and sorted(rows["y"].unique()) == [3.0, 4.0]
