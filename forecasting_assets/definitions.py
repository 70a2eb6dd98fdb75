"""The code location: every stage's assets, checks, jobs, schedules, sensors and resources.

Environment (all optional): FORECASTING_SOURCE (source folder; default data/demo),
FORECASTING_TRAIN_END (last training date; later data is scored as a holdout), FORECASTING_HORIZON,
FORECASTING_BACKTEST_WINDOWS (rolling-origin backtest windows; default 3),
FORECASTING_LIGHTGBM_MODELS (LightGBM models averaged per strategy, each with its own seed; default 3, up to
FORECASTING_ENSEMBLE_MAX_ROWS training rows), FORECASTING_ENSEMBLE_TRIALS (their parameters: the best N trials'
in turn; default 1), FORECASTING_LIGHTGBM_PARTITION (``bottom``, the default: one LightGBM model for the bottom level's series and
one for the aggregated levels'; ``none``: one model over every series), FORECASTING_SERIES_CODE_MAX_SERIES (up to this
many series the global model sees each series' own code; default 1,000; 0: never),
FORECASTING_WEIGHTS (an M5 weights CSV), FORECASTING_LANDING (landing folder; default data/landing),
FORECASTING_DRIFT_THRESHOLD / FORECASTING_ERROR_THRESHOLD / FORECASTING_APPROVAL_DRIFT_THRESHOLD (automation),
FORECASTING_RETRAIN_TRIALS / FORECASTING_RETRAIN_TIMEOUT_S (the retrain's Optuna budget),
FORECASTING_WEBHOOK_URL (alerts), FORECASTING_TIMEZONE (the nightly schedule),
FORECASTING_EXECUTOR (``in_process``, ``celery``, ``k8s``; default multiprocess; see deploy/README.md), FORECASTING_SENSOR_INTERVAL_SECONDS (default 30),
FORECASTING_DASK_SCHEDULER (``tcp://host:8786``: the statistical models run on that Dask cluster),
FORECASTING_ETS_MAX_SERIES / FORECASTING_LIGHTGBM_MAX_ROWS / FORECASTING_REFIT_MAX_ROWS / FORECASTING_ENSEMBLE_MAX_ROWS /
FORECASTING_STATISTICAL_MAX_ROWS (cost budgets, README "Scale"), FORECASTING_INCREMENTAL_MIN_ROWS (from this many
raw rows on, the history is stored as segments and extended incrementally).
"""


import dagster as dg

from forecasting_assets.automation.jobs import (
    approve_model_job,
    full_pipeline_job,
    landing_ingest_job,
    refresh_forecasts_job,
    retrain_job,
)
from forecasting_assets.automation.schedules import nightly_refresh_schedule
from forecasting_assets.automation.sensors import (
    automation_condition_sensor,
    drift_retrain_sensor,
    landing_folder_sensor,
    run_failure_alert_sensor,
)
from forecasting_assets.evaluation import assets as evaluation
from forecasting_assets.explain import assets as explain
from forecasting_assets.features import assets as features
from forecasting_assets.hierarchy import assets as hierarchy
from forecasting_assets.ingest import assets as ingest
from forecasting_assets.models import assets as models
from forecasting_assets.monitoring import assets as monitoring
from forecasting_assets.reconciliation import assets as reconciliation
from forecasting_assets.resources import AutomationSettings, ForecastSettings, SalesSource, env, mlflow_tracking
from forecasting_assets.storage.io_manager import WarehouseIOManager

STAGES = [ingest, hierarchy, features, models, reconciliation, evaluation, explain, monitoring]


def build_resources() -> dict:
    horizon = env("FORECASTING_HORIZON")
    return {
        "io_manager": WarehouseIOManager(),
        "source": SalesSource(folder=env("FORECASTING_SOURCE", "") or "", landing_folder=env("FORECASTING_LANDING", "") or ""),
        "settings": ForecastSettings(
            train_end=env("FORECASTING_TRAIN_END"),
            horizon=int(horizon) if horizon else None,
            weights_file=env("FORECASTING_WEIGHTS"),
            dask_scheduler=env("FORECASTING_DASK_SCHEDULER"),
            **({"lightgbm_partition": partition} if (partition := env("FORECASTING_LIGHTGBM_PARTITION")) else {}),
            **{
                field: int(value)
                for field, name in [
                    ("n_windows", "FORECASTING_BACKTEST_WINDOWS"),
                    ("lightgbm_models", "FORECASTING_LIGHTGBM_MODELS"),
                    ("ets_max_series", "FORECASTING_ETS_MAX_SERIES"),
                    ("lightgbm_max_rows", "FORECASTING_LIGHTGBM_MAX_ROWS"),
                    ("refit_max_rows", "FORECASTING_REFIT_MAX_ROWS"),
                    ("ensemble_max_rows", "FORECASTING_ENSEMBLE_MAX_ROWS"),
                    ("ensemble_trials", "FORECASTING_ENSEMBLE_TRIALS"),
                    ("series_code_max_series", "FORECASTING_SERIES_CODE_MAX_SERIES"),
                    ("statistical_max_rows", "FORECASTING_STATISTICAL_MAX_ROWS"),
                    ("incremental_min_rows", "FORECASTING_INCREMENTAL_MIN_ROWS"),
                ]
                if (value := env(name)) is not None
            },
        ),
        "automation": AutomationSettings(
            **{
                field: kind(value)
                for field, name, kind in [
                    ("drift_threshold", "FORECASTING_DRIFT_THRESHOLD", float),
                    ("error_threshold", "FORECASTING_ERROR_THRESHOLD", float),
                    ("approval_drift_threshold", "FORECASTING_APPROVAL_DRIFT_THRESHOLD", float),
                    ("retrain_trials", "FORECASTING_RETRAIN_TRIALS", int),
                    ("retrain_timeout_s", "FORECASTING_RETRAIN_TIMEOUT_S", float),
                ]
                if (value := env(name)) is not None
            }
        ),
        "mlflow": mlflow_tracking.configured({"experiment_name": env("FORECASTING_EXPERIMENT", "forecasting_assets")}),
    }


def build_executor() -> dg.ExecutorDefinition:
    """The executor of the jobs without their own, from FORECASTING_EXECUTOR: ``in_process`` runs every step in
    the run's own process (small data, tests); ``celery`` (dagster-celery) and ``k8s`` (dagster-k8s) are the
    deployments of deploy/README.md, imported only when chosen; unset or ``multiprocess``: multiprocess."""
    choice = env("FORECASTING_EXECUTOR")
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "celery":
        from dagster_celery import celery_executor

        return celery_executor
    if choice == "k8s":
        from dagster_k8s import k8s_job_executor

        return k8s_job_executor
    if choice is None or choice == "multiprocess":
        return dg.multiprocess_executor
    raise ValueError(f"FORECASTING_EXECUTOR={choice!r}: expected in_process, multiprocess, celery or k8s")


def build_definitions(resources: dict | None = None) -> dg.Definitions:
    """The code location; tests pass their own resources (a temporary source folder, a train_end)."""
    return dg.Definitions(
        assets=dg.load_assets_from_modules(STAGES),
        asset_checks=dg.load_asset_checks_from_modules(STAGES),
        jobs=[full_pipeline_job, refresh_forecasts_job, retrain_job, landing_ingest_job, approve_model_job],
        schedules=[nightly_refresh_schedule],
        sensors=[
            landing_folder_sensor,
            drift_retrain_sensor,
            run_failure_alert_sensor,
            automation_condition_sensor,
                ],
        resources={**build_resources(), **(resources or {})},
        executor=build_executor(),
    )


defs = build_definitions()
