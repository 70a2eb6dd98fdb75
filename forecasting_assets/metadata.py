"""Metadata helpers shared by the assets: row counts, date ranges, previews and inline plots."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd

from forecasting_assets.ids import ids_in


def frame_metadata(frame: pd.DataFrame, n_series: int | None = None) -> dict:
    """Row count, series count and date range. ``n_series``: the series count when the caller knows it (a
    count of the distinct ids of an M5-size history hashes 83 M strings: 6 s)."""
    meta: dict = {"dagster/row_count": len(frame)}
    if n_series is not None:
        meta["series"] = int(n_series)
    elif "unique_id" in frame.columns:
        meta["series"] = int(frame["unique_id"].nunique())
    if "ds" in frame.columns and len(frame) and pd.api.types.is_datetime64_any_dtype(frame["ds"]):
        meta["first_date"] = str(frame["ds"].min().date())
        meta["last_date"] = str(frame["ds"].max().date())
    return meta


def table_preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_(empty)_")
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False))


def png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI."""
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def forecast_panel_png(
    history: pd.DataFrame,
    forecasts: pd.DataFrame,
    series: list[str],
    lines: list[str],
    band: tuple[str, str] | None = None,
    last_periods: int = 120,
) -> bytes:
    """One small chart per series: recent history (grey), forecast ``lines`` (wide columns of ``forecasts``)
    and, with ``band`` = (lower, upper) columns, the prediction interval shaded. PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    history = history[ids_in(history["unique_id"], series)]  # one pass over a long history, not one per series
    figure, axes = plt.subplots(len(series), 1, figsize=(8, 2.3 * len(series)), squeeze=False)
    for axis, uid in zip(axes[:, 0], series):
        past = history[history["unique_id"] == uid].sort_values("ds").tail(last_periods)
        future = forecasts[forecasts["unique_id"] == uid].sort_values("ds")
        axis.plot(past["ds"], past["y"], color="grey", linewidth=1, label="history")
        if band is not None:
            axis.fill_between(future["ds"], future[band[0]], future[band[1]], color="tab:blue", alpha=0.2, label=f"interval {band[0]}–{band[1]}")
        for i, column in enumerate(lines):
            axis.plot(future["ds"], future[column], linewidth=1.5 if i == 0 else 1, label=column)
        axis.set_title(uid, fontsize=9, loc="left")
        axis.legend(loc="upper left", fontsize=7)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=72, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def largest_series(series_keys: pd.DataFrame, history: pd.DataFrame, per_level: int = 1, levels: int = 3) -> list[str]:
    """The top-level series, then the largest series (recent sales) of the finest ``levels - 1`` levels."""
    order = series_keys.sort_values("level_order")
    chosen = [order["unique_id"].iloc[0]]
    recent = history[history["ds"] > history["ds"].max() - pd.Timedelta(days=28)].groupby("unique_id")["y"].sum()
    finest = order.drop_duplicates("level").sort_values("level_order", ascending=False)["level"]
    for level in finest.iloc[: levels - 1]:
        ids = order.loc[order["level"] == level, "unique_id"]
        chosen += list(recent.reindex(ids).fillna(0).sort_values(ascending=False).index[:per_level])
    return list(dict.fromkeys(chosen))
