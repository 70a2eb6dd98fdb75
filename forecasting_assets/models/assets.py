"""Base forecasts: Optuna-tuned global LightGBM, statsforecast models, and their rolling-origin backtests."""


import re

from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from forecasting_assets.metadata import frame_metadata
from forecasting_assets.models import lightgbm_global as lgbm
from forecasting_assets.models.statistical import (
    NOT_FITTED_FOR_COST,
    STAT_MODELS,
    affordable_series,
    backtest_statistical_with_fallbacks,
    fallbacks_markdown,
    forecast_statistical_with_fallbacks,
)
from forecasting_assets.models.tuning import tune
from forecasting_assets.paths import data_dir
from forecasting_assets.ingest.assets import TRANSIENT_RETRY
from forecasting_assets.models.promotion import AWAITING_APPROVAL, PROMOTED, decide_promotion
from forecasting_assets.resources import AutomationSettings, ForecastSettings, SalesSource
from forecasting_assets.schedule import backtest_cutoffs
from forecasting_assets.spec import SourceSpec

BASE_MODELS = [*STAT_MODELS, lgbm.MODEL_NAME]


class TuningConfig(dg.Config):
    """Bounded Optuna budget per run; the study persists in data/optuna.db and resumes."""

    n_trials: int = 8
    timeout_s: float = 180.0
    cv_windows: int = 2
    study_name: str = ""  # default: lightgbm_<source folder>_<frequency>


class BacktestConfig(dg.Config):
    """The LightGBM multi-horizon strategies the backtest chooses from: each alone, or the mean of all."""

    strategies: list[str] = list(lgbm.STRATEGIES)  # "recursive", "lags_ge_horizon"
    # the choice is scored on the series of the top levels up to this many (whole levels), as WRMSSE
    choice_max_series: int = 5_000


def source_slug(source: SalesSource) -> str:
    """A name for the source (its folder), used for the Optuna study and the registered model."""
    return re.sub(r"[^a-z0-9]+", "_", source.folder_path().name.lower()).strip("_") or "source"


def _exogenous_or_none(exogenous_features: pd.DataFrame) -> pd.DataFrame | None:
    """The exogenous table, or None when the source has neither a calendar nor prices."""
    return exogenous_features if len(exogenous_features.columns) > 2 else None


def statistical_fallback_metadata(context: dg.AssetExecutionContext, fallbacks: pd.DataFrame, stage: str) -> dict:
    """Metadata listing the series a statistical model failed on (and the fallback used), with a warning in
    the log, and how many series a costly model was not fitted on by its budget (expected, no warning)."""
    by_budget = fallbacks["error"].str.startswith(NOT_FITTED_FOR_COST)
    failed = fallbacks[~by_budget]
    n_series = int(failed["unique_id"].nunique())
    if n_series:
        shown = ", ".join(map(str, failed["unique_id"].drop_duplicates().head(10)))
        context.log.warning(f"{stage}: {n_series} series fell back to a simpler model for {len(failed)} (series, model) pairs: {shown}{' …' if n_series > 10 else ''}")
    return {
        "statistical_fallback_series": n_series,
        "statistical_fallbacks": dg.MetadataValue.md(fallbacks_markdown(failed)),
        "series_without_autoets_by_budget": int(fallbacks.loc[by_budget, "unique_id"].nunique()),
    }


def recent_history(frame: pd.DataFrame, start: pd.Timestamp | None) -> pd.DataFrame:
    """The rows from ``start`` on (all of them when start is None)."""
    return frame if start is None or frame is None else frame[frame["ds"] >= start].reset_index(drop=True)


def _global_inputs(series, exogenous_features, series_features, series_keys, spec, settings, until=None):
    """Training frame and feature setup for the global model, on the recent history (up to ``until``) that
    fits its row budget. One mask over the history: at M5 size a copy of it up to ``until`` alone is 2 GB."""
    dates = np.sort(series["ds"].unique())
    if until is not None:
        dates = dates[dates <= np.datetime64(until)]
    n_series = len(series_keys) or series["unique_id"].nunique()
    start = settings.global_start_for(n_series, dates)
    if until is not None or start is not None:
        keep = series["ds"] <= dates[-1]
        if start is not None:
            keep &= series["ds"] >= start
        series = series[keep].reset_index(drop=True)
    statics = lgbm.static_table(series_features, series_keys, with_series_code=settings.with_series_code(n_series))
    frame, static_cols, exog_cols = lgbm.training_frame(series, recent_history(_exogenous_or_none(exogenous_features), start), statics)
    horizon = settings.horizon_for(spec)
    setup = lgbm.feature_setup(spec.frequency, spec.season_length, series["ds"].nunique(), horizon)
    setup.static_features = static_cols
    setup.exogenous = exog_cols
    return frame, setup


@dg.asset(
    group_name="models",
    description="Optuna study of LightGBM hyperparameters on rolling-origin CV before the backtest windows (SQLite, resumed across runs), with its best trials ranked.",
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
    frame, setup = _global_inputs(train, exogenous_features, series_features, series_keys, spec, settings, until=first_cutoff)
    study_name = config.study_name or f"lightgbm_{source_slug(source)}_{re.sub('[^A-Za-z0-9]+', '_', spec.frequency)}"
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
        refit=settings.refit_windows(len(frame)),
    )
    context.add_output_metadata(
        {
            "training_rows": len(frame),
            "refit_per_window": settings.refit_windows(len(frame)),
            "best_cv_rmsse": summary["best_value"],
            "trials_total": summary["n_trials_total"],
            "trials_this_run": summary["n_trials_this_run"],
            "best_params": dg.MetadataValue.json(summary["best_params"]),
            "models_averaged": f"{settings.lightgbm_models} per strategy, the best {settings.ensemble_trials} trials' parameters in turn (up to {settings.ensemble_max_rows:,} training rows; above, one)",
            "best_trials": dg.MetadataValue.md(
                pd.DataFrame({"trial": summary["top_trials"], "cv_rmsse": summary["top_values"]}).head(5).to_markdown(index=False, floatfmt=".4f")
            ),
            "study": f"{study_name} in data/optuna.db",
        }
    )
    return summary


@dg.asset(
    group_name="models",
    description=(
        "The candidate global LightGBM (mlforecast): one model on the bottom level's series and one on the aggregated levels' "
        "(ForecastSettings.lightgbm_partition 'bottom', the default), or with 'none' one model over every series; per strategy, the mean of "
        "ForecastSettings.lightgbm_models (3) models with the best Optuna parameters and their own seeds; "
        "logged to MLflow and registered as a new version of lightgbm_<source> (it serves only once promoted)."
    ),
    retry_policy=TRANSIENT_RETRY,
)
def lightgbm_model(
    context: dg.AssetExecutionContext,
    lightgbm_tuning: dict,
    lightgbm_strategy: dict,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
    source: SalesSource,
    mlflow: dg.ResourceParam[Any],
) -> lgbm.GlobalModel:
    from forecasting_assets.models import registry

    spec = SourceSpec.from_dict(source_spec)
    train = settings.training_part(hierarchical_series)
    frame, setup = _global_inputs(train, exogenous_features, series_features, series_keys, spec, settings)
    params = settings.model_parameters(lightgbm_tuning, len(frame))
    model = lgbm.fit_global_model(
        frame, setup, params, seed=settings.seed, n_jobs=settings.n_jobs, strategies=lightgbm_strategy["strategies"], partition=settings.lightgbm_partition
    )
    run_id = log_model_to_mlflow(mlflow, model, lightgbm_tuning, lightgbm_strategy, len(frame), settings.seed)
    model.registered_name = registry.registered_model_name(source_slug(source))
    model.registered_version = registry.register(model, model.registered_name)
    context.add_output_metadata(
        {
            "registered_model": f"{model.registered_name} version {model.registered_version}",
            "training_rows": len(frame),
            "series": int(frame["unique_id"].nunique()),
            "strategies": ", ".join(model.strategies()),
            "partition": model.partition,
            "series_per_part": ", ".join(str(len(ids)) for ids in model.part_ids()),
            "models_per_strategy": len(params),
            "features": len({name for _, mlf in model.members() for name in mlf.models_[lgbm.MODEL_NAME].feature_name_}),
            "params": dg.MetadataValue.json(params),
            "mlflow_run_id": run_id,
        }
    )
    return model


def log_model_to_mlflow(mlflow, model: lgbm.GlobalModel, tuning: dict, strategy: dict, training_rows: int, seed: int = 0) -> str:
    """Parameters, the Optuna best trial, and the LightGBM model itself."""
    import lightgbm
    import mlflow.lightgbm as mlflow_lightgbm

    parameter_sets = model.parameter_sets()
    mlflow.log_params({f"lgbm_{k}": v for k, v in parameter_sets[0].items()})  # the best trial's
    mlflow.log_params(
        {
            "strategies": ",".join(model.strategies()),
            "partition": model.partition,
            "lightgbm_models_per_strategy": len(parameter_sets),
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
    # MLflow metric names take no "+": "recursive+lags_ge_horizon" is logged as "recursive_and_lags_ge_horizon"
    mlflow.log_metrics({f"strategy_backtest_wrmsse_{name.replace('+', '_and_')}": score for name, score in strategy["backtest_wrmsse"].items() if score == score})
    mlflow.log_dict(tuning, "optuna_best_trial.json")
    mlflow.log_dict({"parameter_sets": parameter_sets, "seeds": [seed + k for k in range(len(parameter_sets))]}, "lightgbm_models.json")
    # the first strategy's first model (of the first part, when partitioned), for LightGBM's own tools; the
    # model that serves (every part, strategy and model) is the registered pyfunc "global_model"
    mlflow_lightgbm.log_model(
        lgbm.boosters(model.mlf.models_[lgbm.MODEL_NAME])[0],
        name="lightgbm_model",
        pip_requirements=[f"lightgbm=={lightgbm.__version__}"],
    )
    return mlflow.active_run().info.run_id


@dg.multi_asset(
    outs={
        "base_forecasts": dg.AssetOut(description="Forecasts of every base model for every series over the horizon from the latest data (wide: one column per model); LightGBM is the champion.", group_name="models"),
        "forecast_features": dg.AssetOut(description="The feature rows the LightGBM model saw at each forecast step (input to SHAP).", group_name="models"),
        "champion_model": dg.AssetOut(description="The global model that made base_forecasts: the MLflow registered version with alias 'champion' (reused, not refit, by nightly refreshes).", group_name="models"),
    },
    deps=["model_promotion"],
    retry_policy=TRANSIENT_RETRY,
)
def base_forecasts(
    context: dg.AssetExecutionContext,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
    source: SalesSource,
):
    from forecasting_assets.models import registry

    spec = SourceSpec.from_dict(source_spec)
    horizon = settings.horizon_for(spec)
    train = settings.training_part(hierarchical_series)
    name = registry.registered_model_name(source_slug(source))
    champion = registry.version_by_alias(name, registry.CHAMPION)
    if champion is None:
        raise dg.Failure(f"No champion model for {name} in the MLflow registry: run full_pipeline_job (or retrain_job) first.", allow_retries=False)
    model = registry.load_version(name, champion.version)
    if model.trained_past(train):
        raise dg.Failure(
            f"The champion {name} v{champion.version} was trained to {pd.Timestamp(model.last_date).date()}, after the "
            f"training data of this run (to {train['ds'].max().date()}): forecasting with it would leak the future. "
            "Run retrain_job (or full_pipeline_job) for this training end.",
            allow_retries=False,
        )
    exogenous = _exogenous_or_none(exogenous_features)
    start = settings.global_start_for(len(series_keys), train["ds"].unique())  # every series has a row per day
    history, _, _ = lgbm.training_frame(recent_history(train, start), recent_history(exogenous, start), model.statics())
    statistical, statistical_fallbacks = forecast_statistical_with_fallbacks(
        settings.statistical_history(train, len(series_keys)), horizon, spec.frequency, spec.season_length, settings.ets_model, settings.n_jobs, affordable_series(series_keys, settings.ets_max_series), settings.dask_scheduler
    )
    global_forecasts, features = lgbm.predict_global_model(model, horizon, exogenous, capture_features=True, history=history)
    forecasts = statistical.merge(global_forecasts, on=["unique_id", "ds"], how="inner")
    if len(forecasts) != len(statistical):
        raise RuntimeError("statistical and LightGBM forecasts do not cover the same series and dates")
    served = f"{name} version {champion.version} (trained to {pd.Timestamp(model.last_date).date()})"
    fallbacks = statistical_fallback_metadata(context, statistical_fallbacks, "base_forecasts")
    yield dg.Output(forecasts, output_name="base_forecasts", metadata={**frame_metadata(forecasts), "models": ", ".join(BASE_MODELS), "horizon": horizon, "lightgbm": served, **fallbacks})
    yield dg.Output(features, output_name="forecast_features", metadata=frame_metadata(features))
    yield dg.Output(model, output_name="champion_model", metadata={"registered_model": served, "mlflow_run_id": champion.run_id})


@dg.multi_asset(
    outs={
        "backtest_forecasts": dg.AssetOut(
            description="Rolling-origin backtest (n_windows windows of the horizon, step = horizon) of every base model: unique_id, ds, cutoff, y, one column per model (LightGBM: the chosen strategies).",
            group_name="models",
        ),
        "lightgbm_strategy": dg.AssetOut(
            description="The LightGBM multi-horizon strategies that serve (one alone, or the mean of several), chosen by backtest mean WRMSSE, with every option's score.",
            group_name="models",
        ),
    },
)
def backtest_forecasts(
    context: dg.AssetExecutionContext,
    config: BacktestConfig,
    lightgbm_tuning: dict,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
):
    spec = SourceSpec.from_dict(source_spec)
    horizon = settings.horizon_for(spec)
    train = settings.training_part(hierarchical_series)
    statistical, statistical_fallbacks = backtest_statistical_with_fallbacks(
        settings.statistical_history(train, len(series_keys) or train["unique_id"].nunique()), horizon, settings.n_windows, spec.frequency, spec.season_length, settings.ets_model, settings.n_jobs, affordable_series(series_keys, settings.ets_max_series), settings.dask_scheduler
    )
    frame, setup = _global_inputs(train, exogenous_features, series_features, series_keys, spec, settings)
    refit = settings.refit_windows(len(frame))
    global_backtest = lgbm.backtest_global_model(
        frame, setup, settings.model_parameters(lightgbm_tuning, len(frame)), horizon, settings.n_windows,
        seed=settings.seed, n_jobs=settings.n_jobs, refit=refit, strategies=config.strategies, keep_members=True, partition=settings.lightgbm_partition,
    )
    training_rows = len(frame)
    del frame
    choice_ids = affordable_series(series_keys, config.choice_max_series) if len(series_keys) else None
    strategies, choice_scores = lgbm.choose_strategies(
        global_backtest, config.strategies, lambda scored, columns: backtest_wrmsse(scored, train, series_keys, settings, columns, choice_ids)
    )
    chosen_column = lgbm.strategy_options(config.strategies)["+".join(strategies)][1]
    global_backtest[lgbm.MODEL_NAME] = global_backtest[chosen_column]
    backtest = statistical.merge(global_backtest[["unique_id", "ds", "cutoff", lgbm.MODEL_NAME]], on=["unique_id", "ds", "cutoff"], how="inner")
    if len(backtest) != len(statistical):
        raise RuntimeError("statistical and LightGBM backtests do not cover the same windows")
    fallbacks = statistical_fallback_metadata(context, statistical_fallbacks, "backtest_forecasts")
    scored_on = f"{len(choice_ids)} series of the top levels" if choice_ids is not None else "every series"
    yield dg.Output(
        backtest,
        output_name="backtest_forecasts",
        metadata={**frame_metadata(backtest), "windows": settings.n_windows, "lightgbm_training_rows": training_rows, "lightgbm_refit_per_window": refit, "lightgbm_models_per_strategy": settings.models_for(training_rows), "lightgbm_strategies": ", ".join(strategies), "lightgbm_partition": settings.lightgbm_partition, "cutoffs": ", ".join(str(pd.Timestamp(c).date()) for c in sorted(backtest["cutoff"].unique())), **fallbacks},
    )
    choice = {"strategies": strategies, "backtest_wrmsse": {name: round(score, 6) for name, score in choice_scores.items()}, "scored_on": scored_on, "windows": settings.n_windows}
    ranking = pd.DataFrame({"option": list(choice_scores), "backtest mean WRMSSE": list(choice_scores.values())}).sort_values("backtest mean WRMSSE")
    yield dg.Output(
        choice,
        output_name="lightgbm_strategy",
        metadata={"strategies": ", ".join(strategies), "options": dg.MetadataValue.md(ranking.to_markdown(index=False, floatfmt=".4f")), "scored_on": scored_on},
    )


@dg.asset(
    group_name="models",
    description=(
        "The promotion gate: the candidate lightgbm_model becomes the champion (MLflow alias) only if its "
        "backtest WRMSSE beats the champion's on the same windows; above the approval drift threshold it "
        "waits for model_approval. The decision also goes to automation_decisions and the webhook."
    ),
    retry_policy=TRANSIENT_RETRY,
)
def model_promotion(
    context: dg.AssetExecutionContext,
    lightgbm_model: lgbm.GlobalModel,
    backtest_forecasts: pd.DataFrame,
    drift_report: pd.DataFrame,
    hierarchical_series: pd.DataFrame,
    exogenous_features: pd.DataFrame,
    series_features: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
    automation: AutomationSettings,
) -> dict:
    from forecasting_assets.automation.alerts import send_alert
    from forecasting_assets.automation.decisions import record_decision
    from forecasting_assets.models import registry

    spec = SourceSpec.from_dict(source_spec)
    name, version = lightgbm_model.registered_name, lightgbm_model.registered_version
    champion = registry.version_by_alias(name, registry.CHAMPION)
    champion_model = registry.load_version(name, champion.version) if champion else None
    train = settings.training_part(hierarchical_series)
    ineligible = ""
    if champion_model is not None and champion_model.trained_past(train):
        # trained on days this run must not see (an earlier train_end): it cannot be compared, nor serve
        ineligible = f"the champion v{champion.version} (trained to {pd.Timestamp(champion_model.last_date).date()})"
        champion, champion_model = None, None
    scored = backtest_forecasts[["unique_id", "ds", "cutoff", "y"]].assign(candidate=backtest_forecasts[lgbm.MODEL_NAME])
    same_configuration = champion_model is not None and (champion_model.parameter_sets(), champion_model.strategies(), champion_model.partition) == (
        lightgbm_model.parameter_sets(), lightgbm_model.strategies(), lightgbm_model.partition
    )
    if champion_model is not None:
        if same_configuration:
            scored["champion"] = scored["candidate"]
        else:
            frame, setup = _global_inputs(train, exogenous_features, series_features, series_keys, spec, settings)
            rerun = lgbm.backtest_global_model(
                frame, setup, champion_model.params, settings.horizon_for(spec), settings.n_windows, seed=settings.seed, n_jobs=settings.n_jobs, refit=settings.refit_windows(len(frame)), strategies=champion_model.strategies(),
                partition=champion_model.partition,
            )
            scored = scored.merge(rerun[["unique_id", "ds", "cutoff", lgbm.MODEL_NAME]].rename(columns={lgbm.MODEL_NAME: "champion"}), on=["unique_id", "ds", "cutoff"], how="left")
    scores = backtest_wrmsse(scored, train, series_keys, settings)
    drift_share = float(drift_report["drift_share"].iloc[0]) if len(drift_report) else 0.0
    decision = decide_promotion(scores["candidate"], scores.get("champion"), same_configuration, drift_share, automation.approval_drift_threshold, ineligible)
    if decision.decision == PROMOTED:
        registry.set_alias(name, registry.CHAMPION, version)
        registry.remove_alias(name, registry.CHALLENGER)
    elif decision.decision == AWAITING_APPROVAL:
        registry.set_alias(name, registry.CHALLENGER, version)
    registry.tag_version(name, version, {"promotion": decision.decision, "promotion_reason": decision.reason, "backtest_wrmsse": f"{scores['candidate']:.6f}"})
    details = {**decision.to_dict(), "registered_model": name, "candidate_version": version, "champion_version": champion.version if champion else None}
    record_decision("model_promotion", decision.decision, decision.reason, details, run_id=context.run_id)
    alert = send_alert("model_promotion", f"{name} v{version}: {decision.decision} — {decision.reason}", details)
    serving = version if decision.decision == PROMOTED else (champion.version if champion else None)
    context.add_output_metadata(
        {
            "decision": decision.decision,
            "reason": decision.reason,
            "candidate": f"{name} version {version}",
            "champion_after": f"{name} version {serving}",
            "candidate_backtest_wrmsse": scores["candidate"],
            "champion_backtest_wrmsse": scores.get("champion", float("nan")),
            "drift_share": drift_share,
            "alert": alert,
        }
    )
    return {**details, "serving_version": serving}


def backtest_wrmsse(
    scored: pd.DataFrame, train: pd.DataFrame, series_keys: pd.DataFrame, settings: ForecastSettings, models: list[str] | None = None, ids: list[str] | None = None
) -> dict[str, float]:
    """Mean WRMSSE over levels of each forecast column of a backtest (all windows; default columns
    candidate/champion), on the series ``ids`` only when given, without the closed days (``closed_days``)."""
    from forecasting_assets.evaluation.assets import level_weights
    from forecasting_assets.evaluation.metrics import OVERALL_LEVEL, closed_days, score_forecasts, without_days

    models = models or [c for c in ("candidate", "champion") if c in scored.columns]
    scored = without_days(scored, closed_days(train, series_keys, settings.closed_day_share))
    if ids is not None:
        keep = set(ids)
        scored, train, series_keys = scored[scored["unique_id"].isin(keep)], train[train["unique_id"].isin(keep)], series_keys[series_keys["unique_id"].isin(keep)]
    weights, _ = level_weights(settings, train, series_keys)
    actuals = scored[["unique_id", "ds", "y"]].drop_duplicates(["unique_id", "ds"])
    _, per_level = score_forecasts(scored[["unique_id", "ds", "cutoff", *models]], actuals, train, series_keys, weights, models=models)
    overall = per_level[per_level["level"] == OVERALL_LEVEL].set_index("model")["wrmsse"]
    return {m: float(overall.get(m, float("nan"))) for m in models}


@dg.asset(
    group_name="models",
    description=(
        "A human approval: promotes the registered version waiting with alias 'challenger' to 'champion'. "
        "Materialize it (or run approve_model_job) after reviewing model_promotion; the next refresh serves it."
    ),
    deps=["model_promotion"],
)
def model_approval(context: dg.AssetExecutionContext, source: SalesSource) -> dict:
    from forecasting_assets.automation.alerts import send_alert
    from forecasting_assets.automation.decisions import record_decision
    from forecasting_assets.models import registry

    name = registry.registered_model_name(source_slug(source))
    challenger = registry.version_by_alias(name, registry.CHALLENGER)
    if challenger is None:
        raise dg.Failure(f"No model of {name} waits for approval (no 'challenger' alias): nothing to approve.", allow_retries=False)
    previous = registry.version_by_alias(name, registry.CHAMPION)
    registry.set_alias(name, registry.CHAMPION, challenger.version)
    registry.remove_alias(name, registry.CHALLENGER)
    registry.tag_version(name, challenger.version, {"promotion": "approved", "approved_in_run": context.run_id})
    reason = f"approved by a human in run {context.run_id}"
    details = {"registered_model": name, "approved_version": challenger.version, "previous_champion": previous.version if previous else None}
    record_decision("model_approval", "approved", reason, details, run_id=context.run_id)
    alert = send_alert("model_approval", f"{name} v{challenger.version} approved and promoted to champion", details)
    context.add_output_metadata({"champion": f"{name} version {challenger.version}", "previous_champion": str(details["previous_champion"]), "alert": alert})
    return details
