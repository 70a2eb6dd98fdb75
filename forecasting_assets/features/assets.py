"""Features: TSFresh + intermittency per series, and calendar features per series and day."""


import dagster as dg
import numpy as np
import pandas as pd

from forecasting_assets.features.exogenous import calendar_exogenous, parent_change_exogenous, price_exogenous
from forecasting_assets.features.series_features import compute_series_features, intermittency_classes
from forecasting_assets.ids import merge_on_ids
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
    # the window's days only (every series has every day): at M5 size, copying and sorting the whole history
    # (83 M rows) to keep its last year took more memory than the machine has
    dates = np.sort(train.loc[train["ds"] <= first_cutoff, "ds"].unique())
    history = train[(train["ds"] <= first_cutoff) & (train["ds"] >= dates[-min(len(dates), settings.feature_window)])]
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
    description=(
        "Exogenous features per series and day, over the history and the horizon: calendar events (which "
        "event, and the periods to the next and since the last one) and SNAP (known in advance), the price "
        "relative to the recent regular price where the source has prices, and how the sales of the series' "
        "store and department (each bottom-level column) have been moving, from sales at least a horizon back "
        "(<column>_recent_change, <column>_yearly_change)."
    ),
)
def exogenous_features(
    context: dg.AssetExecutionContext,
    series_keys: pd.DataFrame,
    sales_calendar: pd.DataFrame,
    validated_sales: pd.DataFrame,
    hierarchy_structure: pd.DataFrame,
    source_spec: dict,
    settings: ForecastSettings,
) -> pd.DataFrame:
    spec = SourceSpec.from_dict(source_spec)
    horizon = settings.horizon_for(spec)
    # only the days the global model can see (its row budget): at M5 size every day of every series would be
    # 84 M rows, 10× what the models read
    start = settings.global_start_for(len(series_keys), settings.training_part(validated_sales[["ds"]])["ds"].unique())
    first_day = None if start is None else start - pd.tseries.frequencies.to_offset(spec.frequency) * (settings.n_windows * horizon)
    calendar_days = sales_calendar if first_day is None or not len(sales_calendar) else sales_calendar[pd.to_datetime(sales_calendar["ds"]) >= first_day]
    calendar = calendar_exogenous(series_keys, calendar_days if len(calendar_days) else None)
    bottom_level = series_keys.loc[series_keys["level_order"].idxmax(), "level"]
    bottom_columns = [] if bottom_level == "total" else bottom_level.split("/")
    # the training days only (days after train_end are the holdout's truth), of the columns the prices and the
    # sales changes read: one copy of the history, not one per feature
    wanted = [c for c in bottom_columns if c in validated_sales] + ["ds", "y"] + (["price"] if "price" in validated_sales else [])
    training_sales = settings.training_part(validated_sales[wanted])
    priced = training_sales
    if first_day is not None and "price" in priced:  # and the weeks the regular price looks back over
        priced = priced[priced["ds"] >= first_day - pd.tseries.frequencies.to_offset(spec.frequency) * (8 * max(spec.season_length, 1))]
    prices = price_exogenous(
        priced,
        bottom_columns,
        hierarchy_structure,
        spec.season_length,
        horizon,
        spec.frequency,
    )
    if prices is not None and first_day is not None:
        prices = prices[prices["ds"] >= first_day].reset_index(drop=True)
    changes = parent_change_exogenous(training_sales, series_keys, bottom_columns, spec.season_length, horizon, spec.frequency, start=first_day)
    exogenous = None
    for frame in (calendar, prices, changes):
        if frame is not None:
            exogenous = frame if exogenous is None else merge_on_ids(exogenous, frame, ["unique_id", "ds"], how="outer")
    if exogenous is None:
        exogenous = pd.DataFrame({"unique_id": pd.Series(dtype=str), "ds": pd.Series(dtype="datetime64[ns]")})
    if prices is not None:
        exogenous["price_ratio"] = exogenous["price_ratio"].fillna(1.0)
    if changes is not None:  # the calendar's days past the horizon
        change_columns = list(changes.columns[2:])
        exogenous[change_columns] = exogenous[change_columns].fillna(0.0)
    context.add_output_metadata(
        {
            **frame_metadata(exogenous),
            "columns": ", ".join(exogenous.columns[2:]) or "none (no calendar, no prices)",
            "first_day": "the calendar's first" if first_day is None else f"{first_day.date()} (the global model's row budget)",
        }
    )
    return exogenous
