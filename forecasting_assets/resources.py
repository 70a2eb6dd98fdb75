"""Resources: where the sales come from, how forecasts are made, and MLflow (chosen per environment)."""


import os
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import field_validator

from forecasting_assets.models.lightgbm_global import BOTTOM_PARTITION, PARTITIONS
from forecasting_assets.paths import data_dir, default_demo_folder, landing_dir, project_home
from forecasting_assets.spec import SourceSpec


class SalesSource(dg.ConfigurableResource):
    """The source folder (M5 wide or long format, optional ``source.yaml``) and the landing folder."""

    folder: str = ""  # default: data/demo (the demo data)
    landing_folder: str = ""  # default: data/landing

    def folder_path(self) -> Path:
        return _resolve(self.folder) if self.folder else default_demo_folder()

    def landing_path(self) -> Path:
        return _resolve(self.landing_folder) if self.landing_folder else landing_dir()


MIN_GLOBAL_DAYS = 140  # the global model always sees at least 5 × 28 days
MIN_STATISTICAL_DAYS = 730  # the statistical models always see at least two years


class ForecastSettings(dg.ConfigurableResource):
    """How forecasts are made and scored. Defaults suit daily retail data."""

    train_end: str | None = None  # last date used for training; later data is held out and scored
    horizon: int | None = None  # periods ahead; default from source.yaml or the frequency
    n_windows: int = 3  # rolling-origin backtest windows (step = horizon); >= 3
    ets_model: str = "ZNZ"  # AutoETS model string (error/trend/season; Z = chosen by AICc)
    feature_window: int = 365  # periods of recent history for TSFresh features
    weights_file: str | None = None  # an M5 weights CSV (Level_id, Agg_Level_1, Agg_Level_2, Weight)
    weights_window: int = 28  # periods of recent sales for share-of-sales weights (no weights file)
    n_jobs: int = 2
    seed: int = 0
    # LightGBM models per strategy, seeded seed, seed + 1, …: the global model forecasts their mean (in the
    # backtest and the final fit; Optuna's trials fit one), while its training frame has at most
    # ensemble_max_rows rows. Above, one model per strategy: at M5 item level three would triple the
    # longest steps of a run that is already near its 30-minute budget. 1: one model, a third of the time.
    # The models take the parameters of the ensemble_trials best Optuna trials in turn (default: the best)
    lightgbm_models: int = 3
    # one global model on the bottom level's series and one on the aggregated levels' ("bottom", the default:
    # better on the M5 backtest windows, see README "Accuracy benchmark"), or one over every series ("none")
    lightgbm_partition: str = BOTTOM_PARTITION
    # backtest scores (the choices of strategy, reconciliation and champion; the quantiles' width) leave out the
    # days the business was closed: the top level's sales below this share of their median day (M5: Christmas)
    closed_day_share: float = 0.01
    ensemble_trials: int = 1
    ensemble_max_rows: int = 3_000_000
    # the global model sees each series' own categorical code (lightgbm_global.series_code) up to this many
    # series; above, only the hierarchy codes (at M5 item level 42,840 categories would be sorted at every
    # split, and store × item already names a bottom series); 0: never
    series_code_max_series: int = 1_000
    # cost budgets for large hierarchies (see README "Scale"): per-series AutoETS on at most this many
    # series (whole levels from the top); the global LightGBM model on at most this many rows (series ×
    # days: the history is cut to the most recent days that fit)
    ets_max_series: int = 500
    lightgbm_max_rows: int = 6_000_000
    # the global model is refit for every backtest / CV window while its training frame has at most this
    # many rows; above, it is fit once before the first window and forecasts them all (n_windows× cheaper)
    refit_max_rows: int = 3_000_000
    # the per-series statistical models see the most recent days that fit this many rows (series × days),
    # never fewer than two years: at M5 size all 1,941 days are 83 M rows, and their backtest held more memory
    # than the machine has
    statistical_max_rows: int = 20_000_000
    # from this many raw sales rows on, raw_sales, validated_sales and hierarchical_series are stored as
    # segments and a refresh only adds the new batches' rows (see ingest/incremental.py); below, one file
    # each, rewritten every run (cheap at that size)
    incremental_min_rows: int = 5_000_000
    # a Dask scheduler (tcp://host:8786): the statistical models of base_forecasts and backtest_forecasts
    # run there, through statsforecast's Dask backend (FORECASTING_DASK_SCHEDULER)
    dask_scheduler: str | None = None

    def horizon_for(self, spec: SourceSpec) -> int:
        return int(self.horizon or spec.horizon)

    @field_validator("n_windows")
    @classmethod
    def _three_windows_at_least(cls, value: int) -> int:
        # the first window only supplies the residuals that reconcile the second: fewer than three would choose
        # the reconciliation on one window (or none)
        if value < 3:
            raise ValueError(f"n_windows (FORECASTING_BACKTEST_WINDOWS, make run WINDOWS=) is {value}: it must be at least 3")
        return value

    @field_validator("lightgbm_partition")
    @classmethod
    def _known_partition(cls, value: str) -> str:
        if value not in PARTITIONS:
            raise ValueError(f"lightgbm_partition (FORECASTING_LIGHTGBM_PARTITION) is {value!r}: choose from {', '.join(PARTITIONS)}")
        return value

    @field_validator("lightgbm_models", "ensemble_trials")
    @classmethod
    def _one_at_least(cls, value: int, info) -> int:
        if value < 1:
            names = {"lightgbm_models": "lightgbm_models (FORECASTING_LIGHTGBM_MODELS, make run MODELS=)", "ensemble_trials": "ensemble_trials (FORECASTING_ENSEMBLE_TRIALS)"}
            raise ValueError(f"{names[info.field_name]} is {value}: it must be at least 1")
        return value

    def training_part(self, series: pd.DataFrame) -> pd.DataFrame:
        """The history the models may learn from (up to ``train_end``)."""
        if self.train_end is None:
            return series
        return series[series["ds"] <= pd.Timestamp(self.train_end)].reset_index(drop=True)

    def holdout_part(self, series: pd.DataFrame, horizon: int) -> pd.DataFrame:
        """The actuals after ``train_end`` within the horizon (empty without ``train_end``)."""
        if self.train_end is None:
            return series.iloc[0:0]
        after = series[series["ds"] > pd.Timestamp(self.train_end)]
        dates = sorted(after["ds"].unique())[:horizon]
        return after[after["ds"].isin(dates)].reset_index(drop=True)

    def global_model_start(self, series: pd.DataFrame) -> pd.Timestamp | None:
        """The first date the global model learns from: the most recent days whose rows (series × days)
        fit ``lightgbm_max_rows``, never fewer than ``MIN_GLOBAL_DAYS``; None when the whole history fits."""
        return self.global_start_for(series["unique_id"].nunique(), series["ds"].unique())

    def global_start_for(self, n_series: int, dates) -> pd.Timestamp | None:
        """``global_model_start`` for ``n_series`` series over ``dates``."""
        dates = np.sort(np.asarray(dates))
        days = max(self.lightgbm_max_rows // max(n_series, 1), MIN_GLOBAL_DAYS)
        return None if days >= len(dates) else pd.Timestamp(dates[-days])

    def statistical_history(self, series: pd.DataFrame, n_series: int) -> pd.DataFrame:
        """The recent part of ``series`` the statistical models fit on (see ``statistical_max_rows``)."""
        dates = np.sort(series["ds"].unique())
        days = max(self.statistical_max_rows // max(n_series, 1), MIN_STATISTICAL_DAYS)
        return series if days >= len(dates) else series[series["ds"] >= dates[-days]].reset_index(drop=True)

    def models_for(self, training_rows: int) -> int:
        """LightGBM models averaged per strategy for a training frame of ``training_rows`` rows (see
        ``lightgbm_models``, ``ensemble_max_rows``)."""
        return self.lightgbm_models if training_rows <= self.ensemble_max_rows else 1

    def model_parameters(self, tuning: dict, training_rows: int) -> list[dict]:
        """The parameter sets of the LightGBM models averaged per strategy (see ``lightgbm_models``)."""
        from forecasting_assets.models.tuning import ensemble_params

        return ensemble_params(tuning, self.models_for(training_rows), self.ensemble_trials)

    def with_series_code(self, n_series: int) -> bool:
        """Whether the global model sees each series' own code (see ``series_code_max_series``)."""
        return 0 < n_series <= self.series_code_max_series

    def refit_windows(self, training_rows: int) -> bool:
        """Whether backtests refit the global model per window (see ``refit_max_rows``)."""
        return training_rows <= self.refit_max_rows

    def weights_path(self) -> Path | None:
        return _resolve(self.weights_file) if self.weights_file else None


class AutomationSettings(dg.ConfigurableResource):
    """Thresholds of the drift/error → retrain sensor and of the promotion gate.

    Environment overrides (see ``definitions.build_resources``): FORECASTING_DRIFT_THRESHOLD,
    FORECASTING_ERROR_THRESHOLD, FORECASTING_APPROVAL_DRIFT_THRESHOLD, FORECASTING_RETRAIN_TRIALS,
    FORECASTING_RETRAIN_TIMEOUT_S.
    """

    drift_threshold: float = 0.5  # drift share (Evidently, drift_report) that launches a retrain
    error_threshold: float = 1.5  # mean RMSSE of the latest forecast on the actuals that arrived since
    approval_drift_threshold: float = 0.8  # above this drift share a better model waits for approval
    retrain_trials: int = 8  # Optuna trials a sensor-launched retrain adds to the study
    retrain_timeout_s: float = 180.0  # and its time budget

    def retrain_run_config(self) -> dict:
        return {"ops": {"lightgbm_tuning": {"config": {"n_trials": self.retrain_trials, "timeout_s": self.retrain_timeout_s}}}}

    def retrain_reasons(self, drift_share: float | None, recent_rmsse: float | None) -> list[str]:
        """Why a retrain is due (empty: it is not)."""
        reasons = []
        if drift_share is not None and drift_share >= self.drift_threshold:
            reasons.append(f"drift share {drift_share:.2f} >= {self.drift_threshold:.2f}")
        if recent_rmsse is not None and recent_rmsse >= self.error_threshold:
            reasons.append(f"recent forecast RMSSE {recent_rmsse:.2f} >= {self.error_threshold:.2f}")
        return reasons


def _resolve(path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (project_home() / candidate).resolve()


def mlflow_tracking_uri() -> str:
    return f"sqlite:///{data_dir() / 'mlflow.db'}"


def mlflow_artifact_root() -> Path:
    return data_dir() / "mlartifacts"


@dg.resource(
    config_schema={
        "experiment_name": dg.Field(str, default_value="forecasting_assets"),
        "mlflow_tracking_uri": dg.Field(dg.Noneable(str), default_value=None),
    },
    description="dagster-mlflow's MlFlow resource, imported lazily; the run is ended when the step ends.",
)
def mlflow_tracking(init_context):
    """One MLflow run per Dagster run (dagster-mlflow tags it with the Dagster run id).

    dagster-mlflow and mlflow are imported here, not at module level (~3 s), so the code location loads
    fast. Artifacts go to ``data/mlartifacts``; the run is ended at step teardown so that an in-process
    materialization never leaves it RUNNING.
    """
    import mlflow
    from dagster_mlflow.resources import MlFlow

    from forecasting_assets.storage.files import exclusive_lock

    uri = init_context.resource_config.get("mlflow_tracking_uri") or mlflow_tracking_uri()
    data_dir().mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    name = init_context.resource_config["experiment_name"]
    # MLflow creates and migrates a new mlflow.db on first use; two processes doing that at once can leave
    # it half-migrated for good, so the first use (and the experiment's creation) happens under a lock
    with exclusive_lock(data_dir() / "mlflow.db"):
        if mlflow.get_experiment_by_name(name) is None:
            mlflow.create_experiment(name, artifact_location=mlflow_artifact_root().as_uri())
    context = _ConfiguredContext(init_context, {"experiment_name": name, "mlflow_tracking_uri": uri})
    tracker = MlFlow(context)
    try:
        yield tracker
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()


class _ConfiguredContext:
    """The init context with a completed resource_config (MlFlow reads ``context.resource_config``)."""

    def __init__(self, init_context, resource_config: dict):
        self._inner = init_context
        self.resource_config = resource_config

    def __getattr__(self, name):
        return getattr(self._inner, name)


def env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default
