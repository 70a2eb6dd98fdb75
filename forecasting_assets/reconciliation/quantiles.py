"""Quantile forecasts around the chosen reconciled point forecast, from its own backtest errors.

Split-conformal style: for each series, the empirical quantiles of its backtest residuals
(y - forecast, pooled over the horizon steps of backtest windows 2..n) are added to the point
forecast. The result is clipped at zero (sales are non-negative) and sorted across quantile levels so
that it is monotone. The point forecasts stay coherent; the quantiles are per series.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

M5_QUANTILES = [0.005, 0.025, 0.165, 0.25, 0.5, 0.75, 0.835, 0.975, 0.995]


def quantile_column(q: float) -> str:
    return f"q{q:g}"


def conformal_quantiles(point: pd.DataFrame, backtest: pd.DataFrame, quantiles: list[float] = M5_QUANTILES) -> pd.DataFrame:
    """``point``: unique_id, ds, yhat. ``backtest``: unique_id, y, yhat of the same model in past windows.

    Returns unique_id, ds, yhat and one column per quantile (``q0.005`` …).
    """
    residuals = backtest.assign(residual=backtest["y"] - backtest["yhat"])
    offsets = residuals.groupby("unique_id")["residual"].quantile(quantiles).unstack()
    offsets.columns = [quantile_column(q) for q in quantiles]
    table = point[["unique_id", "ds", "yhat"]].merge(offsets, left_on="unique_id", right_index=True, how="left")
    columns = [quantile_column(q) for q in quantiles]
    values = table[columns].fillna(0.0).to_numpy() + table[["yhat"]].to_numpy()
    values = np.maximum.accumulate(np.clip(values, 0.0, None), axis=1)
    table[columns] = values
    return table.reset_index(drop=True)
