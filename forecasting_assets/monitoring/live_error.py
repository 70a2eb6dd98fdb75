"""Live accuracy: the forecasts already served, scored on the actuals that have arrived since.

Every ``final_forecasts`` materialization is archived under ``data/outputs/forecast_history/`` as
``origin_<last training day>.parquet`` (DuckDB view ``forecast_history``). When new sales land, the latest
origin with arrived actuals is scored with the M5 RMSSE (scale from the history up to the origin), per series
and weighted per level. The retrain sensor compares the mean WRMSSE over levels with its error threshold.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from forecasting_assets.evaluation.metrics import OVERALL_LEVEL, score_forecasts
from forecasting_assets.storage.files import write_parquet

HISTORY_FOLDER = "forecast_history"


def archive_forecast(final_forecasts: pd.DataFrame, outputs: Path) -> Path:
    """Store a served forecast by its origin (the day before its first date); re-runs overwrite, never duplicate."""
    first = pd.Timestamp(final_forecasts["ds"].min())
    dates = sorted(final_forecasts["ds"].unique())
    step = (pd.Timestamp(dates[1]) - first) if len(dates) > 1 else pd.Timedelta(days=1)
    origin = (first - step).date().isoformat()
    table = final_forecasts.assign(origin=pd.Timestamp(origin))
    return write_parquet(table, Path(outputs) / HISTORY_FOLDER / f"origin_{origin}.parquet")


def served_forecasts(outputs: Path) -> list[pd.DataFrame]:
    folder = Path(outputs) / HISTORY_FOLDER
    return [pd.read_parquet(p) for p in sorted(folder.glob("origin_*.parquet"))] if folder.is_dir() else []


def live_error(
    history: list[pd.DataFrame], series: pd.DataFrame, series_keys: pd.DataFrame, weights: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    """Score the newest served forecast that has actuals. Returns (per-level table, summary).

    The summary holds ``origin``, ``days_scored`` and ``recent_wrmsse`` (mean WRMSSE over levels), or
    ``days_scored = 0`` when no served forecast has actuals yet.
    """
    last_actual = series["ds"].max()
    for served in sorted(history, key=lambda f: f["origin"].iloc[0], reverse=True):
        origin = served["origin"].iloc[0]
        arrived = served[(served["ds"] > origin) & (served["ds"] <= last_actual)]
        if arrived.empty:
            continue
        actuals = series[series["ds"].isin(arrived["ds"].unique())]
        wide = arrived[["unique_id", "ds", "yhat"]].rename(columns={"yhat": "served"})
        _, per_level = score_forecasts(wide, actuals, series[series["ds"] <= origin], series_keys, weights, models=["served"])
        overall = per_level.loc[per_level["level"] == OVERALL_LEVEL, "wrmsse"]
        summary = {
            "origin": str(pd.Timestamp(origin).date()),
            "model": str(served["model"].iloc[0]),
            "days_scored": int(arrived["ds"].nunique()),
            "recent_wrmsse": float(overall.iloc[0]) if len(overall) else float("nan"),
        }
        return per_level.assign(origin=pd.Timestamp(origin), days_scored=summary["days_scored"]), summary
    return pd.DataFrame(columns=["level", "model", "wrmsse", "origin", "days_scored"]), {"days_scored": 0}
