"""A per-series linear trend taken out of the target before the global model sees it.

Trees cannot extrapolate: a series that grew for five years has its newest values (and weekend peaks) at
the top of everything it was trained on, and the model forecasts it too low. ``LocalLinearDetrend`` divides
each series by its least-squares line over its history (``y / (a + b·t)``, the line floored at a tenth of
the series' mean level so that a falling series never divides by ~0), and multiplies the forecasts by the
line extended over the horizon. What the model then learns (after the per-series standardization that
follows) is the seasonal and event pattern around the trend.

On M5 store × department data, over six 28-day windows inside the training data, the mean of the two
LightGBM strategies scored a mean WRMSSE of 0.529 with the detrended target against 0.544 without
(the lags ≥ horizon model alone: 0.518 against 0.537 on four of them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlforecast.target_transforms import BaseTargetTransform

EPOCH = np.datetime64("1970-01-01")


class LocalLinearDetrend(BaseTargetTransform):
    """``y / trend`` per series, ``trend = max(a + b·t, floor · |mean y|)`` fitted by least squares (t in days)."""

    def __init__(self, floor: float = 0.1):
        self.floor = floor

    def _days(self, df: pd.DataFrame) -> np.ndarray:
        return (df[self.time_col].to_numpy(dtype="datetime64[ns]") - EPOCH) / np.timedelta64(1, "D")

    def fit_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        codes, ids = pd.factorize(df[self.id_col], sort=False)
        t = self._days(df)
        y = df[self.target_col].to_numpy(dtype=np.float64)
        known = np.isfinite(y)
        codes_k, t_k, y_k = codes[known], t[known], y[known]
        n = np.bincount(codes_k, minlength=len(ids)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            t_mean = np.bincount(codes_k, weights=t_k, minlength=len(ids)) / n
            y_mean = np.bincount(codes_k, weights=y_k, minlength=len(ids)) / n
            dt = t_k - t_mean[codes_k]
            slope = np.bincount(codes_k, weights=dt * (y_k - y_mean[codes_k]), minlength=len(ids)) / np.bincount(codes_k, weights=dt * dt, minlength=len(ids))
        slope = np.where(np.isfinite(slope), slope, 0.0)
        y_mean = np.where(np.isfinite(y_mean), y_mean, 0.0)
        t_mean = np.where(np.isfinite(t_mean), t_mean, 0.0)
        floor = np.maximum(self.floor * np.abs(y_mean), 1e-6)
        self.params_ = pd.DataFrame({"t_mean": t_mean, "level": y_mean, "slope": slope, "floor": floor}, index=pd.Index(ids, name=self.id_col))
        return self._divide(df)

    def trend(self, ids, ds) -> np.ndarray:
        """The fitted trend of each series ``ids[i]`` on day ``ds[i]``."""
        params = self.params_.reindex(np.asarray(ids))
        t = (np.asarray(ds, dtype="datetime64[ns]") - EPOCH) / np.timedelta64(1, "D")
        line = params["level"].to_numpy() + params["slope"].to_numpy() * (t - params["t_mean"].to_numpy())
        return np.maximum(line, params["floor"].to_numpy())

    def _divide(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy(deep=False)
        df[self.target_col] = df[self.target_col].to_numpy(dtype=np.float64) / self.trend(df[self.id_col], df[self.time_col])
        return df

    def update(self, df: pd.DataFrame) -> pd.DataFrame:
        return self._divide(df)

    def inverse_transform(self, df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy(deep=False)
        trend = self.trend(df[self.id_col], df[self.time_col])
        for column in [c for c in df.columns if c not in (self.id_col, self.time_col)]:
            df[column] = df[column].to_numpy(dtype=np.float64) * trend
        return df

    @staticmethod
    def stack(transforms):
        stacked = transforms[0]
        stacked.params_ = pd.concat([t.params_ for t in transforms])
        return stacked
