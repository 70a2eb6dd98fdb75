"""Features: TSFresh + intermittency per series, and calendar features per series and day."""


import dagster as dg
import pandas as pd

from forecasting_assets.features.exogenous import calendar_exogenous
from forecasting_assets.features.series_features import compute_series_features, intermittency_classes
from forecasting_assets.metadata import frame_metadata
from forecasting_assets.resources import ForecastSettings
from forecasting_assets.schedule import backtest_cutoffs
from forecasting_assets.spec import SourceSpec


@dg.asset(
    group_name="features",
    description=(
        "TSFresh features (curated set) and the Syntetos-Boylan intermittency class of every series, on the "
        "recent window that ends where the backtest begins, so that backtests stay out of sample."
    ),
)
def series_features(
    context: dg.AssetExecutionContext, hierarchical_series: pd.DataFrame, source_spec: dict, settings: ForecastSettings
) -> pd.DataFrame:
    spec = SourceSpec.from_dict(source_spec)
    train = settings.training_part(hierarchical_series)
    first_cutoff = backtest_cutoffs(train, settings.horizon_for(spec), settings.n_windows)[0]
    history = train[train["ds"] <= first_cutoff]
    features = compute_series_features(history, window=settings.feature_window, n_jobs=settings.n_jobs)
    classes = intermittency_classes(history, window=settings.feature_window)
    table = features.merge(classes, on="unique_id", how="left")
    context.add_output_metadata(
        {
            **frame_metadata(table),
            "features": len(features.columns) - 1,
            "window_end": str(pd.Timestamp(first_cutoff).date()),
            "demand_classes": dg.MetadataValue.json(classes["demand_class"].value_counts().to_dict()),
        }
    )
    return table


@dg.asset(
    group_name="features",
    description="Events and SNAP per series and day, over the history and the known future (from the calendar).",
)
def calendar_features(context: dg.AssetExecutionContext, series_keys: pd.DataFrame, sales_calendar: pd.DataFrame) -> pd.DataFrame:
    exogenous = calendar_exogenous(series_keys, sales_calendar if len(sales_calendar) else None)
    if exogenous is None:
        exogenous = pd.DataFrame({"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype="datetime64[ns]")})
    context.add_output_metadata({**frame_metadata(exogenous), "columns": ", ".join(exogenous.columns[2:]) or "none (no calendar)"})
    return exogenous
