"""Time arithmetic shared by the stages: backtest cutoffs and one year in periods."""

from __future__ import annotations

import pandas as pd

from forecasting_assets.spec import freq_family

PERIODS_PER_YEAR = {"D": 364, "B": 260, "W": 52, "M": 12, "MS": 12, "ME": 12, "Q": 4, "QS": 4, "QE": 4}


def backtest_cutoffs(series: pd.DataFrame, horizon: int, n_windows: int) -> list[pd.Timestamp]:
    """The last training date of each rolling-origin window (step = horizon), oldest first."""
    dates = pd.Series(sorted(series["ds"].unique()))
    if len(dates) <= horizon * n_windows + 1:
        raise ValueError(
            f"{len(dates)} periods of history are too few for {n_windows} backtest windows of {horizon} periods"
        )
    return [pd.Timestamp(dates.iloc[-1 - horizon * k]) for k in range(n_windows, 0, -1)]


def periods_per_year(freq: str) -> int:
    return PERIODS_PER_YEAR.get(freq_family(freq), 52)
