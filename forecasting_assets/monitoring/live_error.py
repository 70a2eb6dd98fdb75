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
from forecasting_assets.storage.files import read_parquet, write_parquet

HISTORY_FOLDER = "forecast_history"


def archive_forecast(final_forecasts: pd.DataFrame, outputs: Path) -> Path:
    """Store a served forecast by its origin (the day before its first date); re-runs overwrite, never duplicate."""
    first = pd.Timestamp(final_forecasts["ds"].min())
    dates = sorted(final_forecasts["ds"].unique())
    step = (pd.Timestamp(dates[1]) - first) if len(dates) > 1 else pd.Timedelta(days=1)
    origin = (first - step).date().isoformat()
    table = final_forecasts.assign(origin=pd.Timestamp(origin))
    return write_parquet(table, Path(outputs) / HISTORY_FOLDER / f"origin_{origin}.parquet")


def served_forecasts(outputs: Path) -> list[Path]:
    """The archived served forecasts (one file per origin), newest origin first; read lazily by ``live_error``."""
    folder = Path(outputs) / HISTORY_FOLDER
    return sorted(folder.glob("origin_*.parquet"), reverse=True) if folder.is_dir() else []


def _origin(served: pd.DataFrame | Path) -> pd.Timestamp:
    if isinstance(served, pd.DataFrame):
        return pd.Timestamp(served["origin"].iloc[0])
    return pd.Timestamp(Path(served).stem.removeprefix("origin_"))


def live_error(
    history: list[pd.DataFrame | Path], series: pd.DataFrame, series_keys: pd.DataFrame, weights: pd.DataFrame
) -> tuple[pd.DataFrame, dict]:
    """Score the newest served forecast that has actuals. Returns (per-level table, summary).

    ``history``: served forecasts (frames, or files of ``served_forecasts`` read only as far as needed: a year
    of nightly refreshes is a year of files). The summary holds ``origin``, ``days_scored`` and
    ``recent_wrmsse`` (mean WRMSSE over levels), or ``days_scored = 0`` when no served forecast has actuals yet.
    """
    last_actual = series["ds"].max()
    for item in sorted(history, key=_origin, reverse=True):
        origin = _origin(item)
        if origin >= last_actual:
            continue  # nothing has arrived after this origin yet
        served = item if isinstance(item, pd.DataFrame) else read_parquet(item)
        arrived = served[(served["ds"] > origin) & (served["ds"] <= last_actual)]
        if arrived.empty:
            continue
        actuals = series[series["ds"].isin(arrived["ds"].unique())]
        wide = arrived[["unique_id", "ds", "yhat"]].rename(columns={"yhat": "served"})
        # the whole series as the history: the scores use only the days before each series' first forecast
        # day (a copy of the history up to the origin would be the size of the hierarchy: 83 M rows at M5 size)
        _, per_level = score_forecasts(wide, actuals, series, series_keys, weights, models=["served"])
        overall = per_level.loc[per_level["level"] == OVERALL_LEVEL, "wrmsse"]
        summary = {
            "origin": str(origin.date()),
            "model": str(served["model"].iloc[0]),
            "days_scored": int(arrived["ds"].nunique()),
            "recent_wrmsse": float(overall.iloc[0]) if len(overall) else float("nan"),
        }
        return per_level.assign(origin=origin, days_scored=summary["days_scored"]), summary
    return pd.DataFrame(columns=["level", "model", "wrmsse", "origin", "days_scored"]), {"days_scored": 0}
