"""Monitoring: Evidently data drift, and the served forecasts' error on the actuals that arrived since."""


import dagster as dg
import numpy as np
import pandas as pd

from forecasting_assets.ids import ids_in
from forecasting_assets.ingest.assets import FOLLOWS_NEW_DATA
from forecasting_assets.metadata import table_preview
from forecasting_assets.monitoring.drift import drift_report as compute_drift
from forecasting_assets.paths import outputs_dir
from forecasting_assets.resources import ForecastSettings
from forecasting_assets.schedule import periods_per_year
from forecasting_assets.spec import SourceSpec
from forecasting_assets.storage.files import write_text


class DriftConfig(dg.Config):
    current_periods: int = 0  # default: the horizon
    reference_periods: int = 0  # default: one year
    column_threshold: float = 0.5  # normed Wasserstein distance at which a column counts as drifted
    drift_share: float = 0.5  # share of drifted columns at which the dataset counts as drifted
    max_series: int = 2000  # series compared (a sample with an equal share per level beyond this)


@dg.asset(
    group_name="monitoring",
    automation_condition=FOLLOWS_NEW_DATA,
    description="Evidently drift of the target and lag features (per-series standardized): latest window vs the year before. Per-column table; HTML report beside it.",
)
def drift_report(
    context: dg.AssetExecutionContext,
    config: DriftConfig,
    hierarchical_series: pd.DataFrame,
    series_keys: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
) -> pd.DataFrame:
    from forecasting_assets.hierarchy.aggregation import stratified_series_sample

    spec = SourceSpec.from_dict(source_spec)
    series = settings.training_part(hierarchical_series)
    current = config.current_periods or settings.horizon_for(spec)
    dates = np.sort(series["ds"].unique())
    available = len(dates) - current - 2 * spec.season_length
    reference = min(config.reference_periods or periods_per_year(spec.frequency), max(available, current))
    sample = stratified_series_sample(series_keys, config.max_series, seed=settings.seed)
    needed = dates[-min(len(dates), current + reference + spec.season_length + 1):][0]  # the windows and their lags
    recent = series[(series["ds"] >= needed) & (ids_in(series["unique_id"], sample) if sample is not None else True)]
    result = compute_drift(recent, spec.season_length, current, reference, config.drift_share, config.column_threshold)
    report_path = write_text(result.html, outputs_dir() / "reports" / "drift_report.html")
    table = result.columns.assign(drift_share=result.drift_share, dataset_drift=result.dataset_drift)
    context.add_output_metadata(
        {
            "drift_share": result.drift_share,
            "dataset_drift": result.dataset_drift,
            "drifted_columns": ", ".join(result.columns.loc[result.columns["drifted"], "column"]) or "none",
            "series_compared": f"{len(sample)} of {len(series_keys)} (an equal share per level, seed {settings.seed})" if sample is not None else f"all {len(series_keys)}",
            "reference_rows": result.reference_rows,
            "current_rows": result.current_rows,
            "windows": f"current: last {current} periods; reference: the {reference} before",
            "columns": table_preview(result.columns, 20),
            "report": dg.MetadataValue.path(str(report_path)),
        }
    )
    return table


@dg.asset(
    group_name="monitoring",
    automation_condition=FOLLOWS_NEW_DATA,
    description=(
        "The newest served forecast (data/outputs/forecast_history) scored on the actuals that arrived since: "
        "WRMSSE per level; metadata recent_wrmsse (mean over levels) feeds the retrain sensor."
    ),
)
def live_forecast_error(
    context: dg.AssetExecutionContext, hierarchical_series: pd.DataFrame, series_keys: pd.DataFrame, settings: ForecastSettings
) -> pd.DataFrame:
    from forecasting_assets.evaluation.assets import level_weights
    from forecasting_assets.monitoring.live_error import live_error, served_forecasts

    weights, weights_source = level_weights(settings, hierarchical_series, series_keys)
    table, summary = live_error(served_forecasts(outputs_dir()), hierarchical_series, series_keys, weights)
    metadata = {"days_scored": summary["days_scored"], "weights": weights_source, "dagster/row_count": len(table)}
    if summary["days_scored"]:
        metadata.update({"recent_wrmsse": summary["recent_wrmsse"], "origin": summary["origin"], "model": summary["model"], "wrmsse_by_level": table_preview(table[["level", "wrmsse", "n_series"]], 20)})
    context.add_output_metadata(metadata)
    return table
