"""Evaluation: RMSSE, MASE and WRMSSE per level for every base model and reconciliation method."""


from typing import Any

import dagster as dg
import pandas as pd

from forecasting_assets.evaluation.metrics import (
    OVERALL_LEVEL,
    accuracy_table_markdown,
    closed_days,
    without_days,
    m5_weights,
    sales_share_weights,
    score_forecasts,
)
from forecasting_assets.reconciliation.reconcile import BASE_METHOD, to_wide
from forecasting_assets.resources import ForecastSettings
from forecasting_assets.spec import SourceSpec

BASELINE = "SeasonalNaive"


def level_weights(settings: ForecastSettings, train: pd.DataFrame, series_keys: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Official M5 weights when a weights file is configured, else each series' share of recent sales."""
    path = settings.weights_path()
    if path is not None:
        return m5_weights(path, series_keys), f"M5 weights file {path.name}"
    return sales_share_weights(train, series_keys, settings.weights_window), f"share of sales over the last {settings.weights_window} periods"


def _annotate(per_level: pd.DataFrame, evaluation: str) -> pd.DataFrame:
    table = per_level.copy()
    parts = table["model"].str.split("/", n=1, expand=True)
    table["base_model"] = parts[0]
    table["method"] = parts[1].fillna(BASE_METHOD) if parts.shape[1] > 1 else BASE_METHOD
    table.insert(0, "evaluation", evaluation)
    return table


@dg.multi_asset(
    outs={
        "backtest_metrics": dg.AssetOut(description="Per level and overall (level '__overall__'): WRMSSE, mean RMSSE and MASE of every base model and reconciliation on backtest windows 2..n, without the days the business was closed (ForecastSettings.closed_day_share).", group_name="evaluation"),
        "backtest_series_metrics": dg.AssetOut(description="Per series: RMSSE, MASE, MAE, RMSE of every forecast on backtest windows 2..n (averaged over windows).", group_name="evaluation"),
    },
)
def backtest_metrics(
    context: dg.AssetExecutionContext,
    reconciled_backtest: pd.DataFrame,
    hierarchical_series: pd.DataFrame,
    series_keys: pd.DataFrame,
    settings: ForecastSettings,
):
    train = settings.training_part(hierarchical_series)
    closed = closed_days(train, series_keys, settings.closed_day_share)
    wide = without_days(to_wide(reconciled_backtest, ["unique_id", "ds", "cutoff", "y"]), closed)
    # the actuals from the wide rows, not from the long ones (at M5 size 2.4 M instead of 29 M rows to deduplicate)
    actuals = wide[["unique_id", "ds", "y"]].drop_duplicates(["unique_id", "ds"])
    wide = wide.drop(columns="y")
    weights, weights_source = level_weights(settings, train, series_keys)
    models = [c for c in wide.columns if c not in ("unique_id", "ds", "cutoff")]
    per_series, per_level = score_forecasts(wide, actuals, train, series_keys, weights, models=models)
    per_level = _annotate(per_level, "backtest")
    yield dg.Output(
        per_level,
        output_name="backtest_metrics",
        metadata={
            "weights": weights_source,
            "windows_scored": int(reconciled_backtest["cutoff"].nunique()),
            "closed_days_left_out": ", ".join(str(day.date()) for day in closed.intersection(pd.DatetimeIndex(reconciled_backtest["ds"].unique()))) or "none",
            "wrmsse_by_level": dg.MetadataValue.md(accuracy_table_markdown(per_level.drop(columns=["evaluation", "base_model", "method"]), baseline=BASELINE)),
        },
    )
    yield dg.Output(per_series, output_name="backtest_series_metrics", metadata={"dagster/row_count": len(per_series)})


@dg.asset(
    group_name="evaluation",
    description=(
        "The accuracy table users read: backtest metrics of every forecast, plus holdout metrics when "
        "actuals exist after train_end; is_chosen marks the forecast in final_forecasts."
    ),
)
def forecast_metrics(
    context: dg.AssetExecutionContext,
    backtest_metrics: pd.DataFrame,
    reconciled_forecasts: pd.DataFrame,
    hierarchical_series: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
    mlflow: dg.ResourceParam[Any],
) -> pd.DataFrame:
    spec = SourceSpec.from_dict(source_spec)
    chosen = str(reconciled_forecasts.loc[reconciled_forecasts["is_chosen"], "model"].iloc[0])
    tables = [backtest_metrics]
    holdout = settings.holdout_part(hierarchical_series, settings.horizon_for(spec))
    if len(holdout):
        train = settings.training_part(hierarchical_series)
        weights, _ = level_weights(settings, train, series_keys)
        wide = to_wide(reconciled_forecasts, ["unique_id", "ds"])
        wide = wide[wide["ds"].isin(holdout["ds"].unique())]
        models = [c for c in wide.columns if c not in ("unique_id", "ds")]
        _, per_level = score_forecasts(wide, holdout, train, series_keys, weights, models=models)
        tables.append(_annotate(per_level, "holdout"))
    metrics = pd.concat(tables, ignore_index=True)
    metrics["is_chosen"] = metrics["model"] == chosen
    shown = metrics[metrics["model"].isin([BASELINE, "AutoETS", "LightGBM", chosen])]
    meta = {"chosen": chosen, "dagster/row_count": len(metrics)}
    for evaluation, table in shown.groupby("evaluation"):
        meta[f"{evaluation}_wrmsse_by_level"] = dg.MetadataValue.md(accuracy_table_markdown(table.drop(columns=["evaluation", "base_model", "method", "is_chosen"]), baseline=BASELINE))
        overall = table[table["level"] == OVERALL_LEVEL].set_index("model")["wrmsse"]
        meta[f"{evaluation}_chosen_wrmsse"] = float(overall.get(chosen, float("nan")))
        meta[f"{evaluation}_seasonal_naive_wrmsse"] = float(overall.get(BASELINE, float("nan")))
    log_metrics_to_mlflow(mlflow, metrics, chosen)
    context.add_output_metadata(meta)
    return metrics


def log_metrics_to_mlflow(mlflow, metrics: pd.DataFrame, chosen: str) -> None:
    """Per-level WRMSSE of the chosen forecast and the baseline, per evaluation."""
    import re

    values = {}
    for row in metrics[metrics["model"].isin([chosen, BASELINE, "LightGBM"])].itertuples():
        if pd.notna(row.wrmsse):
            name = re.sub(r"[^A-Za-z0-9_\-./ ]", "_", f"{row.evaluation}_wrmsse_{row.level}_{row.model}")
            values[name] = float(row.wrmsse)
    mlflow.log_metrics(values)
    mlflow.set_tag("chosen_forecast", chosen)


@dg.asset_check(asset=forecast_metrics, description="The chosen forecast beats seasonal naive (mean WRMSSE over levels) in the backtest and, when present, the holdout.")
def chosen_forecast_beats_seasonal_naive(forecast_metrics: pd.DataFrame) -> dg.AssetCheckResult:
    overall = forecast_metrics[forecast_metrics["level"] == OVERALL_LEVEL]
    results = {}
    for evaluation, table in overall.groupby("evaluation"):
        chosen = float(table.loc[table["is_chosen"], "wrmsse"].iloc[0])
        naive = float(table.loc[table["model"] == BASELINE, "wrmsse"].iloc[0])
        results[evaluation] = {"chosen": round(chosen, 4), "seasonal_naive": round(naive, 4), "ratio": round(chosen / naive, 4)}
    passed = all(r["chosen"] < r["seasonal_naive"] for r in results.values())
    return dg.AssetCheckResult(passed=passed, metadata={"wrmsse": dg.MetadataValue.json(results)})
