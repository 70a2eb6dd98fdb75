"""The global LightGBM model over every series of every level, through mlforecast.

* target normalized per series (``LocalStandardScaler``) so that one model serves the total and the
  smallest department alike;
* lags and rolling means derived from the season length, date features from the frequency;
* calendar events and SNAP as dynamic exogenous features (known in advance), TSFresh features and the
  intermittency statistics as static features;
* recursive multi-step forecasting; hyperparameters from an Optuna study (see ``tuning.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from forecasting_assets.spec import freq_family

MODEL_NAME = "LightGBM"

DEFAULT_PARAMS: dict = {
    "n_estimators": 300,
    "learning_rate": 0.05,
    "num_leaves": 63,
    "min_child_samples": 20,
    "colsample_bytree": 0.8,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 0.1,
}


@dataclass
class FeatureSetup:
    """What the global model sees, derived from the frequency and the history length."""

    freq: str
    lags: list[int]
    rolling_windows: list[int]
    date_features: list[str]
    static_features: list[str] = field(default_factory=list)
    exogenous: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "freq": self.freq,
            "lags": self.lags,
            "rolling_windows": self.rolling_windows,
            "date_features": self.date_features,
            "static_features": self.static_features,
            "exogenous": self.exogenous,
        }


def feature_setup(freq: str, season_length: int, history_length: int, horizon: int) -> FeatureSetup:
    """Lags 1–3 plus season multiples; rolling means over one and four seasons (bounded by the history)."""
    s = max(season_length, 1)
    candidate_lags = sorted({1, 2, 3, s, 2 * s, 3 * s, 4 * s})
    max_lag = max(1, history_length // 3)
    lags = [lag for lag in candidate_lags if lag <= max_lag]
    windows = [w for w in sorted({s, 4 * s}) if w > 1 and w + 1 <= max_lag] or [2]
    family = freq_family(freq)
    date_features = {
        "D": ["dayofweek", "day", "month", "dayofyear"],
        "B": ["dayofweek", "day", "month"],
        "W": ["week", "month"],
        "Q": ["quarter"],
        "QS": ["quarter"],
        "QE": ["quarter"],
    }.get(family, ["month"])
    return FeatureSetup(freq=freq, lags=lags, rolling_windows=windows, date_features=date_features)


def make_mlforecast(setup: FeatureSetup, params: dict, seed: int = 0, n_jobs: int = 1):
    import lightgbm as lgb
    from mlforecast import MLForecast
    from mlforecast.lag_transforms import RollingMean
    from mlforecast.target_transforms import LocalStandardScaler

    model = lgb.LGBMRegressor(**{**DEFAULT_PARAMS, **params}, random_state=seed, n_jobs=n_jobs, verbosity=-1)
    lag_transforms = {1: [RollingMean(window_size=w) for w in setup.rolling_windows]}
    return MLForecast(
        models={MODEL_NAME: model},
        freq=setup.freq,
        lags=setup.lags,
        lag_transforms=lag_transforms,
        date_features=setup.date_features,
        target_transforms=[LocalStandardScaler()],
        num_threads=1,
    )


def static_table(series_features: pd.DataFrame | None, series_keys: pd.DataFrame) -> pd.DataFrame:
    """unique_id + numeric static features (TSFresh, intermittency, level order), prefixed ``ts_``."""
    table = series_keys[["unique_id", "level_order"]].copy()
    if series_features is not None and len(series_features):
        numeric = series_features.select_dtypes("number")
        renamed = numeric.rename(columns={c: f"ts_{c}" for c in numeric.columns})
        renamed.insert(0, "unique_id", series_features["unique_id"].to_numpy())
        table = table.merge(renamed, on="unique_id", how="left")
    return table


def training_frame(
    series: pd.DataFrame, exogenous: pd.DataFrame | None, statics: pd.DataFrame
) -> tuple[pd.DataFrame, list[str], list[str]]:
    """Join history with exogenous and static features. Returns (frame, static columns, exogenous columns)."""
    frame = series[["unique_id", "ds", "y"]]
    exog_cols: list[str] = []
    if exogenous is not None:
        exog_cols = [c for c in exogenous.columns if c not in ("unique_id", "ds")]
        frame = frame.merge(exogenous, on=["unique_id", "ds"], how="left")
        frame[exog_cols] = frame[exog_cols].fillna(0.0)
    static_cols = [c for c in statics.columns if c != "unique_id"]
    # float32 features: half the memory of float64 at M5 size (millions of rows), and LightGBM bins them anyway
    frame = frame.merge(statics.astype({c: np.float32 for c in static_cols}), on="unique_id", how="left")
    if exog_cols:
        frame = frame.astype({c: np.float32 for c in exog_cols})
    return frame, static_cols, exog_cols


def future_exogenous(
    exogenous: pd.DataFrame | None, ids: np.ndarray, last_date: pd.Timestamp, horizon: int, freq: str
) -> pd.DataFrame | None:
    """The exogenous rows of the forecast horizon (0 where the calendar ends early)."""
    if exogenous is None:
        return None
    dates = pd.date_range(last_date, periods=horizon + 1, freq=freq)[1:]
    grid = pd.DataFrame({"unique_id": np.repeat(ids, len(dates)), "ds": np.tile(dates, len(ids))})
    future = grid.merge(exogenous, on=["unique_id", "ds"], how="left")
    exog_cols = [c for c in exogenous.columns if c not in ("unique_id", "ds")]
    future[exog_cols] = future[exog_cols].fillna(0.0)
    return future


@dataclass
class FittedGlobalModel:
    """A fitted MLForecast plus what is needed to forecast again (picklable)."""

    mlf: object
    setup: FeatureSetup
    params: dict
    last_date: pd.Timestamp
    registered_name: str = ""  # MLflow registered model and version, once registered
    registered_version: str = ""
    serving_std: pd.Series | None = None  # per-series std of the history the last forecast started from

    def trained_past(self, history: pd.DataFrame) -> bool:
        """Whether the model saw days after the end of ``history`` (it would leak them into a forecast)."""
        return pd.Timestamp(self.last_date) > history["ds"].max()

    def target_std(self) -> pd.Series:
        """Per-series std of the target normalization (LocalStandardScaler) behind the latest forecast."""
        if self.serving_std is not None:
            return self.serving_std
        stats = np.asarray(self.mlf.ts.target_transforms[0].scaler_.stats_)  # mean, std per series
        return pd.Series(stats[:, 1], index=np.asarray(self.mlf.ts.uids))

    def statics(self) -> pd.DataFrame:
        """The static features the model was trained with (unique_id + columns)."""
        return self.mlf.ts.static_features_.reset_index(drop=True)


def fit_global_model(
    frame: pd.DataFrame, setup: FeatureSetup, params: dict, seed: int = 0, n_jobs: int = 1
) -> FittedGlobalModel:
    mlf = make_mlforecast(setup, params, seed=seed, n_jobs=n_jobs)
    mlf.fit(frame, static_features=setup.static_features)
    return FittedGlobalModel(mlf=mlf, setup=setup, params=params, last_date=frame["ds"].max())


def predict_global_model(
    model: FittedGlobalModel,
    horizon: int,
    exogenous: pd.DataFrame | None,
    capture_features: bool = False,
    history: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Forecast ``horizon`` steps after the training data, or after ``history`` when given (the latest
    data, as built by ``training_frame``: a refresh without refitting). Optionally return the feature rows
    the model saw at each step (the input of SHAP)."""
    if history is not None:
        ids = np.sort(history["unique_id"].unique())
        last_date = pd.Timestamp(history["ds"].max())
        # mlforecast re-fits the per-series scaler on ``history`` (population std, as LocalStandardScaler)
        model.serving_std = history.groupby("unique_id")["y"].std(ddof=0).reindex(ids)
    else:
        ids = np.asarray(model.mlf.ts.uids)
        last_date = model.last_date
    x_df = future_exogenous(exogenous, ids, last_date, horizon, model.setup.freq) if model.setup.exogenous else None
    captured: list[pd.DataFrame] = []

    def _capture(features: pd.DataFrame) -> pd.DataFrame:
        captured.append(features.copy())
        return features

    forecasts = model.mlf.predict(
        horizon, new_df=history, X_df=x_df, before_predict_callback=_capture if capture_features else None
    )
    forecasts[MODEL_NAME] = forecasts[MODEL_NAME].clip(lower=0.0)
    features = None
    if capture_features:
        dates = pd.date_range(last_date, periods=horizon + 1, freq=model.setup.freq)[1:]
        for step, frame in enumerate(captured):
            frame.insert(0, "ds", dates[step])
            frame.insert(0, "unique_id", ids)
        features = pd.concat(captured, ignore_index=True)
    return forecasts.reset_index(drop=True), features


def backtest_global_model(
    frame: pd.DataFrame,
    setup: FeatureSetup,
    params: dict,
    horizon: int,
    n_windows: int,
    seed: int = 0,
    n_jobs: int = 1,
    refit: bool = True,
) -> pd.DataFrame:
    """Rolling-origin backtest: unique_id, ds, cutoff, y, LightGBM.

    ``refit``: the model is refit on the data before each window; False fits it once, before the first
    window, and forecasts every window with it (on the actuals up to each cutoff): ``n_windows`` times
    cheaper, and a little pessimistic for the later windows (their model is older).
    """
    mlf = make_mlforecast(setup, params, seed=seed, n_jobs=n_jobs)
    backtest = mlf.cross_validation(
        frame, n_windows=n_windows, h=horizon, step_size=horizon, static_features=setup.static_features, refit=refit
    )
    backtest[MODEL_NAME] = backtest[MODEL_NAME].clip(lower=0.0)
    return backtest.reset_index(drop=True)
