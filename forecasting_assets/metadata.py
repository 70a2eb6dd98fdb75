"""Metadata helpers shared by the assets: row counts, date ranges, previews and inline plots."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd


def frame_metadata(frame: pd.DataFrame) -> dict:
    meta: dict = {"dagster/row_count": len(frame)}
    if "unique_id" in frame.columns:
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


def forecast_plot_png(history: pd.DataFrame, forecast: pd.DataFrame, title: str, last_periods: int = 180) -> bytes:
    """History (grey) and forecast (blue) of one series as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recent = history.sort_values("ds").tail(last_periods)
    figure, axis = plt.subplots(figsize=(8, 3))
    axis.plot(recent["ds"], recent["y"], color="grey", linewidth=1, label="history")
    axis.plot(forecast["ds"], forecast["yhat"], color="tab:blue", linewidth=1.5, label="forecast")
    axis.set_title(title, fontsize=10, loc="left")
    axis.legend(loc="upper left", fontsize=8)
    figure.autofmt_xdate()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()
