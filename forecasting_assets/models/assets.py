"""Base forecasts: Optuna-tuned global LightGBM, statsforecast models, and their rolling-origin backtests."""


import re

from typing import Any

import dagster as dg
import pandas as pd

from forecasting_assets.metadata import frame_metadata
from forecasting_assets.models import lightgbm_global as lgbm
from forecasting_assets.models.statistical import STAT_MODELS, backtest_statistical, forecast_statistical
from forecasting_assets.models.tuning import tune
from forecasting_assets.paths import data_dir
from forecasting_assets.resources import ForecastSettings, SalesSource
from forecasting_assets.schedule import backtest_cutoffs
from forecasting_assets.spec import SourceSpec

BASE_MODELS = [*STAT_MODELS, lgbm.MODEL_NAME]


class TuningConfig(dg.Config):
    """Bounded Optuna budget per run; the study persists in data/optuna.db and resumes."""

    n_trials: int = 8
    timeout_s: float = 180.0
    cv_windows: int = 2
    study_name: str = ""  # default: lightgbm_<source folder>_<frequency>


def _exogenous_or_none(exogenous_features: pd.DataFrame) -> pd.DataFrame | None:
    """The exogenous table, or None when the source has neither a calendar nor prices."""
    return exogenous_features if len(exogenous_features.columns) > 2 else None


def _global_inputs(series, exogenous_features, series_features, series_keys, spec, settings):
    """Training frame and feature setup for the global model."""
    statics = lgbm.static_table(series_features, series_keys)
    frame, static_cols, exog_cols = lgbm.training_frame(series, _exogenous_or_none(exogenous_features), statics)
    horizon = settings.horizon_for(spec)
    setup = lgbm.feature_setup(spec.frequency, spec.season_length, series["ds"].nunique(), horizon)
    setup.static_features = static_cols
    setup.exogenous = exog_cols
    return frame, setup


@dg.asset(
    group_name="models",
    description="Optuna study of LightGBM hyperparameters on rolling-origin CV before the backtest windows (SQLite, resumed across runs).",
)
def lightgbm_tuning(
    context: dg.AssetExecutionContext,
    config: TuningConfig,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
    source: SalesSource,
) -> dict:
    spec = SourceSpec.from_dict(source_spec)
    horizon = settings.horizon_for(spec)
    train = settings.training_part(hierarchical_series)
    first_cutoff = backtest_cutoffs(train, horizon, settings.n_windows)[0]
    frame, setup = _global_inputs(train[train["ds"] <= first_cutoff], exogenous_features, series_features, series_keys, spec, settings)
    slug = re.sub(r"[^a-z0-9]+", "_", source.folder_path().name.lower()).strip("_") or "source"
    study_name = config.study_name or f"lightgbm_{slug}_{re.sub('[^A-Za-z0-9]+', '_', spec.frequency)}"
    data_dir().mkdir(parents=True, exist_ok=True)
    summary = tune(
        frame,
        setup,
        horizon=horizon,
        n_windows=config.cv_windows,
        n_trials=config.n_trials,
        timeout_s=config.timeout_s,
        storage_url=f"sqlite:///{data_dir() / 'optuna.db'}",
        study_name=study_name,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
    )
    context.add_output_metadata(
        {
            "best_cv_rmsse": summary["best_value"],
            "trials_total": summary["n_trials_total"],
            "trials_this_run": summary["n_trials_this_run"],
            "best_params": dg.MetadataValue.json(summary["best_params"]),
            "study": f"{study_name} in data/optuna.db",
        }
    )
    return summary


@dg.asset(
    group_name="models",
    description="The global LightGBM (mlforecast) fitted on every series with the best Optuna parameters; logged to MLflow.",
)
def lightgbm_model(
    context: dg.AssetExecutionContext,
    lightgbm_tuning: dict,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
    mlflow: dg.ResourceParam[Any],
) -> lgbm.FittedGlobalModel:
    spec = SourceSpec.from_dict(source_spec)
    train = settings.training_part(hierarchical_series)
    frame, setup = _global_inputs(train, exogenous_features, series_features, series_keys, spec, settings)
    params = lightgbm_tuning["best_params"]
    model = lgbm.fit_global_model(frame, setup, params, seed=settings.seed, n_jobs=settings.n_jobs)
    run_id = log_model_to_mlflow(mlflow, model, lightgbm_tuning, len(frame))
    context.add_output_metadata(
        {
            "training_rows": len(frame),
            "series": int(frame["unique_id"].nunique()),
            "features": len(model.mlf.models_[lgbm.MODEL_NAME].feature_name_),
            "params": dg.MetadataValue.json(params),
            "mlflow_run_id": run_id,
        }
    )
    return model


def log_model_to_mlflow(mlflow, model: lgbm.FittedGlobalModel, tuning: dict, training_rows: int) -> str:
    """Parameters, the Optuna best trial, and the LightGBM model itself."""
    import lightgbm
    import mlflow.lightgbm as mlflow_lightgbm

    mlflow.log_params({f"lgbm_{k}": v for k, v in model.params.items()})
    mlflow.log_params(
        {
            "lags": str(model.setup.lags),
            "rolling_windows": str(model.setup.rolling_windows),
            "date_features": ",".join(model.setup.date_features),
            "n_static_features": len(model.setup.static_features),
            "exogenous": ",".join(model.setup.exogenous) or "none",
            "optuna_study": tuning["study_name"],
            "optuna_best_trial": tuning["best_trial"],
        }
    )
    mlflow.log_metrics({"optuna_best_cv_rmsse": tuning["best_value"], "optuna_trials_total": tuning["n_trials_total"], "training_rows": training_rows})
    mlflow.log_dict(tuning, "optuna_best_trial.json")
    mlflow_lightgbm.log_model(
        model.mlf.models_[lgbm.MODEL_NAME],
        name="lightgbm_model",
        pip_requirements=[f"lightgbm=={lightgbm.__version__}"],
    )
    return mlflow.active_run().info.run_id


@dg.multi_asset(
    outs={
        "base_forecasts": dg.AssetOut(description="Forecasts of every base model for every series over the horizon (wide: one column per model).", group_name="models"),
        "forecast_features": dg.AssetOut(description="The feature rows the LightGBM model saw at each forecast step (input to SHAP).", group_name="models"),
    },
)
def base_forecasts(
    context: dg.AssetExecutionContext,
    lightgbm_model: lgbm.FittedGlobalModel,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
):
    spec = SourceSpec.from_dict(source_spec)
    horizon = settings.horizon_for(spec)
    train = settings.training_part(hierarchical_series)
    statistical = forecast_statistical(train, horizon, spec.frequency, spec.season_length, settings.ets_model, settings.n_jobs)
    global_forecasts, features = lgbm.predict_global_model(
        lightgbm_model, horizon, _exogenous_or_none(exogenous_features), capture_features=True
    )
    forecasts = statistical.merge(global_forecasts, on=["unique_id", "ds"], how="inner")
    if len(forecasts) != len(statistical):
        raise RuntimeError("statistical and LightGBM forecasts do not cover the same series and dates")
    yield dg.Output(forecasts, output_name="base_forecasts", metadata={**frame_metadata(forecasts), "models": ", ".join(BASE_MODELS), "horizon": horizon})
    yield dg.Output(features, output_name="forecast_features", metadata=frame_metadata(features))


@dg.asset(
    group_name="models",
    description="Rolling-origin backtest (n_windows windows of the horizon, step = horizon) of every base model: unique_id, ds, cutoff, y, one column per model.",
)
def backtest_forecasts(
    context: dg.AssetExecutionContext,
    lightgbm_tuning: dict,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
) -> pd.DataFrame:
    spec = SourceSpec.from_dict(source_spec)
    horizon = settings.horizon_for(spec)
    train = settings.training_part(hierarchical_series)
    statistical = backtest_statistical(train, horizon, settings.n_windows, spec.frequency, spec.season_length, settings.ets_model, settings.n_jobs)
    frame, setup = _global_inputs(train, exogenous_features, series_features, series_keys, spec, settings)
    global_backtest = lgbm.backtest_global_model(frame, setup, lightgbm_tuning["best_params"], horizon, settings.n_windows, seed=settings.seed, n_jobs=settings.n_jobs)
    backtest = statistical.merge(global_backtest[["unique_id", "ds", "cutoff", lgbm.MODEL_NAME]], on=["unique_id", "ds", "cutoff"], how="inner")
    if len(backtest) != len(statistical):
        raise RuntimeError("statistical and LightGBM backtests do not cover the same windows")
    context.add_output_metadata({**frame_metadata(backtest), "windows": settings.n_windows, "cutoffs": ", ".join(str(pd.Timestamp(c).date()) for c in sorted(backtest["cutoff"].unique()))})
    return backtest
