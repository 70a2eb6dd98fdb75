"""Reconciliation: coherent forecasts for every base model and method; the method is chosen by backtest."""


from dataclasses import dataclass

import dagster as dg
import numpy as np
import pandas as pd

from forecasting_assets.evaluation.metrics import OVERALL_LEVEL, closed_days, top_level_rows, without_days
from forecasting_assets.hierarchy.aggregation import check_coherence
from forecasting_assets.ids import ids_in
from forecasting_assets.metadata import forecast_panel_png, frame_metadata, largest_series, png_markdown
from forecasting_assets.models.assets import BASE_MODELS
from forecasting_assets.monitoring.live_error import archive_forecast
from forecasting_assets.paths import outputs_dir
from forecasting_assets.reconciliation.quantiles import M5_QUANTILES, quantile_forecasts
from forecasting_assets.reconciliation.reconcile import BASE_METHOD, reconcile, reconcile_backtest, skip_reason, to_long, to_wide
from forecasting_assets.resources import ForecastSettings

COHERENCE_TOLERANCE = 1e-6
NO_FALLBACK = "none: the backtest-chosen forecast was produced"


def business_closed_days(hierarchical_series: pd.DataFrame, series_keys: pd.DataFrame, settings: ForecastSettings) -> pd.DatetimeIndex:
    """``closed_days`` of the training part, read from the top level's rows only (at M5 item level the whole
    history is 83 M rows, the top level 1,941)."""
    return closed_days(settings.training_part(top_level_rows(hierarchical_series, series_keys)), series_keys, settings.closed_day_share)


@dg.asset(
    group_name="reconciliation",
    description=(
        "Backtest windows 2..n reconciled with every method, each using residuals of the windows before it, "
        "without the days the business was closed (long: unique_id, ds, cutoff, y, model, base_model, method, yhat). "
        "Used to choose the method."
    ),
)
def reconciled_backtest(
    context: dg.AssetExecutionContext,
    backtest_forecasts: pd.DataFrame,
    series_keys: pd.DataFrame,
    hierarchy_structure: pd.DataFrame,
    hierarchical_series: pd.DataFrame,
    settings: ForecastSettings,
) -> pd.DataFrame:
    closed = business_closed_days(hierarchical_series, series_keys, settings)
    wide, skipped = reconcile_backtest(backtest_forecasts, BASE_MODELS, series_keys, hierarchy_structure, closed=closed)
    long = to_long(wide, ["unique_id", "ds", "cutoff", "y"])
    context.add_output_metadata(
        {
            **frame_metadata(long),
            "methods": ", ".join(sorted(long["method"].unique())),
            "residuals_without_days": ", ".join(str(day.date()) for day in closed) or "none",
            "skipped": dg.MetadataValue.json(skipped),
        }
    )
    return long


@dg.asset(
    group_name="reconciliation",
    description=(
        "Future forecasts reconciled with every method (BottomUp, TopDown where the hierarchy is a tree, "
        "MinTrace ols/wls_struct/mint_shrink, non-negative; mint_shrink's residuals are the backtest's without the days "
        "the business was closed); the backtest-chosen one is flagged is_chosen. "
        "A method that fails here is skipped; if it was the chosen one, the best-ranked forecast that was "
        "produced stands in (metadata: reconciliation_fallback)."
    ),
)
def reconciled_forecasts(
    context: dg.AssetExecutionContext,
    base_forecasts: pd.DataFrame,
    backtest_forecasts: pd.DataFrame,
    backtest_metrics: pd.DataFrame,
    series_keys: pd.DataFrame,
    hierarchy_structure: pd.DataFrame,
    hierarchical_series: pd.DataFrame,
    settings: ForecastSettings,
) -> pd.DataFrame:
    closed = business_closed_days(hierarchical_series, series_keys, settings)
    wide, skipped = reconcile(base_forecasts, BASE_MODELS, series_keys, hierarchy_structure, residuals=backtest_forecasts, closed=closed)
    long = to_long(wide, ["unique_id", "ds"])
    choice = choose_produced_forecast(backtest_metrics, produced=[c for c in wide.columns if "/" in c], skipped=skipped)
    chosen = choice.used
    long["is_chosen"] = long["model"] == chosen
    if choice.fallback:
        context.log.warning(f"reconciliation fallback: {choice.fallback}")
    shown = largest_series(series_keys, hierarchical_series)
    lines = list(dict.fromkeys([chosen, "LightGBM", "SeasonalNaive"]))
    plot = forecast_panel_png(hierarchical_series, wide, shown, [c for c in lines if c in wide.columns])
    context.add_output_metadata(
        {
            **frame_metadata(long),
            "chosen": chosen,
            "why": choice.why,
            "intended": choice.intended,
            "reconciliation_fallback": choice.fallback or NO_FALLBACK,
            "backtest_scores": dg.MetadataValue.md(method_ranking(backtest_metrics, chosen, intended=choice.intended)),
            "forecast_plot": png_markdown(plot, "chosen forecast vs LightGBM and seasonal naive"),
            "skipped": dg.MetadataValue.json(skipped),
        }
    )
    return long


def method_ranking(backtest_metrics: pd.DataFrame, chosen: str, top: int = 8, baseline: str = "SeasonalNaive", intended: str | None = None) -> str:
    """Markdown: the forecasts ranked by backtest mean WRMSSE (the best ``top`` and the baseline), chosen marked
    (and the ``intended`` one when it failed on the future horizon and ``chosen`` stands in for it)."""
    overall = backtest_metrics[backtest_metrics["level"] == OVERALL_LEVEL].sort_values("wrmsse").reset_index(drop=True)
    shown = overall[(overall.index < top) | (overall["model"] == baseline) | (overall["model"] == intended)]

    def note(model: str) -> str:
        if model == chosen:
            return "chosen"
        if model == intended:
            return "intended (failed on the future horizon)"
        return "baseline" if model == baseline else ""

    table = shown[["model", "wrmsse"]].assign(rank=shown.index + 1, note=shown["model"].map(note))
    return table[["rank", "model", "wrmsse", "note"]].round(4).to_markdown(index=False)


def ranked_reconciled(backtest_metrics: pd.DataFrame) -> pd.DataFrame:
    """The reconciled forecasts with a finite backtest mean WRMSSE over levels, best first (model, wrmsse)."""
    overall = backtest_metrics[(backtest_metrics["level"] == OVERALL_LEVEL) & (backtest_metrics["method"] != BASE_METHOD)]
    overall = overall[np.isfinite(overall["wrmsse"].to_numpy(dtype=float))]
    return overall.sort_values("wrmsse", kind="stable").reset_index(drop=True)[["model", "wrmsse"]]


def choose_forecast(backtest_metrics: pd.DataFrame) -> tuple[str, str]:
    """The coherent (reconciled) forecast with the lowest mean WRMSSE over levels in the backtest.

    Without any scored reconciled forecast: BottomUp of the best-scored base model.
    """
    ranked = ranked_reconciled(backtest_metrics)
    if ranked.empty:
        overall = backtest_metrics[(backtest_metrics["level"] == OVERALL_LEVEL) & (backtest_metrics["method"] == BASE_METHOD)]
        scored = overall[np.isfinite(overall["wrmsse"].to_numpy(dtype=float))].sort_values("wrmsse", kind="stable")
        if scored.empty:
            raise dg.Failure("No forecast has a finite backtest score: nothing to choose the forecast by.", allow_retries=False)
        best_base = str(scored["model"].iloc[0])
        return f"{best_base}/BottomUp", f"no reconciled forecast was scored in the backtest: BottomUp of the best base model {best_base}"
    best = ranked.iloc[0]
    runner_up = ranked.iloc[1] if len(ranked) > 1 else None
    reason = f"lowest backtest mean WRMSSE over levels: {best['wrmsse']:.4f}"
    if runner_up is not None:
        reason += f" (next: {runner_up['model']} {runner_up['wrmsse']:.4f})"
    return str(best["model"]), reason


@dataclass(frozen=True)
class ForecastChoice:
    used: str  # the reconciled forecast in final_forecasts
    intended: str  # the one the backtest chose
    why: str  # why the backtest chose it
    fallback: str = ""  # why ``used`` is not ``intended`` (empty when they are the same)


def choose_produced_forecast(backtest_metrics: pd.DataFrame, produced: list[str], skipped: dict[str, str]) -> ForecastChoice:
    """The backtest-chosen forecast, or when it was not produced on the future horizon (its method failed
    there) the best-ranked one that was, else BottomUp (of the intended base model first)."""
    intended, why = choose_forecast(backtest_metrics)
    if intended in produced:
        return ForecastChoice(intended, intended, why)
    base_model = intended.split("/", 1)[0]
    ranked = list(ranked_reconciled(backtest_metrics)["model"])
    candidates = [*ranked, f"{base_model}/BottomUp", *sorted(c for c in produced if c.endswith("/BottomUp"))]
    used = next((c for c in candidates if c in produced), None)
    failure = skip_reason(skipped, intended) or "not produced"
    if used is None:
        raise dg.Failure(f"No reconciled forecast was produced on the future horizon (intended {intended}; {failure}). Skipped: {skipped}", allow_retries=False)
    instead = "the best-ranked forecast in the backtest that was produced" if used in ranked else "BottomUp, which needs neither residuals nor a solver"
    fallback = f"{intended} failed on the future horizon ({failure}); using {used}, {instead}"
    return ForecastChoice(used, intended, why, fallback)


@dg.asset_check(
    asset=reconciled_forecasts,
    additional_ins={"hierarchy_structure": dg.AssetIn("hierarchy_structure")},
    description="Every parent equals the sum of its bottom series within 1e-6, for every reconciled forecast.",
    blocking=True,
)
def reconciled_forecasts_are_coherent(reconciled_forecasts: pd.DataFrame, hierarchy_structure: pd.DataFrame) -> dg.AssetCheckResult:
    reconciled = reconciled_forecasts[reconciled_forecasts["method"] != BASE_METHOD]
    wide = to_wide(reconciled, ["unique_id", "ds"])
    gaps = check_coherence(wide, hierarchy_structure, [c for c in wide.columns if c not in ("unique_id", "ds")])
    worst = float(gaps["max_abs_gap"].max())
    return dg.AssetCheckResult(
        passed=worst <= COHERENCE_TOLERANCE,
        metadata={"max_abs_gap": worst, "per_model": dg.MetadataValue.md(gaps.to_markdown(index=False))},
    )


@dg.asset_check(asset=reconciled_forecasts, description="No reconciled forecast is negative.", blocking=True)
def reconciled_forecasts_are_non_negative(reconciled_forecasts: pd.DataFrame) -> dg.AssetCheckResult:
    negatives = reconciled_forecasts[reconciled_forecasts["yhat"] < -COHERENCE_TOLERANCE]
    return dg.AssetCheckResult(passed=negatives.empty, metadata={"negative_values": len(negatives), "min": float(reconciled_forecasts["yhat"].min())})


@dg.asset(
    group_name="reconciliation",
    description="The forecast to use: the chosen reconciled forecast per series and period, with its level (unique_id, level, ds, yhat, model). Each one is also archived in forecast_history by its origin.",
)
def final_forecasts(
    context: dg.AssetExecutionContext, reconciled_forecasts: pd.DataFrame, series_keys: pd.DataFrame, hierarchical_series: pd.DataFrame
) -> pd.DataFrame:
    chosen = reconciled_forecasts[reconciled_forecasts["is_chosen"]]
    table = chosen.merge(series_keys[["unique_id", "level"]], on="unique_id")[["unique_id", "level", "ds", "yhat", "model"]]
    table = table.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    top = series_keys.sort_values("level_order")["unique_id"].iloc[0]
    history = hierarchical_series[ids_in(hierarchical_series["unique_id"], [top]) & (hierarchical_series["ds"] < table["ds"].min())]
    png = forecast_panel_png(history, table, [top], ["yhat"])
    archived = archive_forecast(table, outputs_dir())
    context.add_output_metadata({**frame_metadata(table), "model": str(table["model"].iloc[0]), "top_level_plot": png_markdown(png, top), "archived_as": dg.MetadataValue.path(str(archived))})
    return table


class QuantileConfig(dg.Config):
    """How the quantiles are set from the backtest errors: "normal" (forecast ± z·RMS of the errors) or
    "empirical" (the errors' own quantiles, split-conformal)."""

    method: str = "normal"


@dg.asset(
    group_name="reconciliation",
    description=(
        "Quantiles (0.5 %–99.5 %, the M5 levels) around final_forecasts from the chosen forecast's own "
        "backtest errors (normal with their RMS, or their empirical quantiles; the days the business was closed left out); non-negative and monotone in the quantile level."
    ),
)
def forecast_quantiles(
    context: dg.AssetExecutionContext,
    config: QuantileConfig,
    final_forecasts: pd.DataFrame,
    reconciled_backtest: pd.DataFrame,
    hierarchical_series: pd.DataFrame,
    series_keys: pd.DataFrame,
    settings: ForecastSettings,
) -> pd.DataFrame:
    chosen = str(final_forecasts["model"].iloc[0])
    closed = business_closed_days(hierarchical_series, series_keys, settings)
    # the closed days are dropped from the chosen model's rows only: a copy of the whole long backtest without them
    # (29 M rows at M5 item level) made forecast_quantiles the nightly refresh's peak, 12.0 GiB
    residuals_from, backtest = quantile_residual_source(reconciled_backtest, chosen, closed)
    if backtest.empty:  # no usable backtest errors at all: a zero-width interval, and the metadata says so
        backtest = final_forecasts[["unique_id"]].drop_duplicates().assign(y=0.0, yhat=0.0)
        residuals_from = "none: no usable backtest errors, the quantiles equal the point forecast"
    elif residuals_from != chosen:
        context.log.warning(f"forecast_quantiles: no usable backtest errors of {chosen}; the quantiles use those of {residuals_from}")
    table = quantile_forecasts(final_forecasts, backtest, config.method, M5_QUANTILES)
    shown = largest_series(series_keys, hierarchical_series)
    history = hierarchical_series[ids_in(hierarchical_series["unique_id"], shown)]
    plot = forecast_panel_png(history[history["ds"] < table["ds"].min()], table, shown, ["yhat"], band=("q0.025", "q0.975"))
    context.add_output_metadata(
        {
            **frame_metadata(table),
            "model": chosen,
            "method": config.method,
            "residuals_from": residuals_from,
            "residuals_per_series": int(len(backtest) / max(1, backtest["unique_id"].nunique())),
            "forecast_plot": png_markdown(plot, "forecast with the 95 % interval"),
        }
    )
    return table


def quantile_residual_source(
    reconciled_backtest: pd.DataFrame, chosen: str, closed: pd.DatetimeIndex | None = None
) -> tuple[str, pd.DataFrame]:
    """The backtest rows (finite y and yhat, none on the ``closed`` days) whose errors set the quantiles of
    ``chosen``: its own; when it has none (its method failed in the backtest), those of BottomUp of its base
    model, else of the base model itself. Returns the model used and its rows (empty when none has any)."""
    base_model = chosen.split("/", 1)[0]
    closed = pd.DatetimeIndex([]) if closed is None else closed
    for candidate in dict.fromkeys([chosen, f"{base_model}/BottomUp", base_model]):
        rows = without_days(reconciled_backtest[reconciled_backtest["model"] == candidate], closed)
        rows = rows[np.isfinite(rows["y"].to_numpy(dtype=float)) & np.isfinite(rows["yhat"].to_numpy(dtype=float))]
        if len(rows):
            return candidate, rows
    return chosen, reconciled_backtest.iloc[0:0]
