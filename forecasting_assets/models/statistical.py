"""Per-series statistical models through statsforecast.

* ``SeasonalNaive`` — the baseline every other forecast must beat;
* ``AutoETS`` — exponential smoothing, by default restricted to no-trend models (``ZNZ``): on daily
  retail series the trend/damped candidates cost ~7x more (450 vs 69 ms a series on 700 days) and
  rarely win on a 28-day horizon;
* ``CrostonOptimized`` — for intermittent (sparse) series.
"""

from __future__ import annotations

import pandas as pd

STAT_MODELS = ["SeasonalNaive", "AutoETS", "CrostonOptimized"]


def statistical_models(season_length: int, ets_model: str = "ZNZ") -> list:
    from statsforecast.models import AutoETS, CrostonOptimized, SeasonalNaive

    return [
        SeasonalNaive(season_length=season_length),
        AutoETS(season_length=season_length, model=ets_model),
        CrostonOptimized(),
    ]


def _statsforecast(freq: str, season_length: int, ets_model: str, n_jobs: int):
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    return StatsForecast(
        models=statistical_models(season_length, ets_model),
        freq=freq,
        n_jobs=n_jobs,
        fallback_model=SeasonalNaive(season_length=season_length),
    )


def clip_negative(forecasts: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sales cannot be negative: clip model outputs at zero."""
    forecasts = forecasts.copy()
    forecasts[columns] = forecasts[columns].clip(lower=0.0)
    return forecasts


def forecast_statistical(
    series: pd.DataFrame, horizon: int, freq: str, season_length: int, ets_model: str = "ZNZ", n_jobs: int = 1
) -> pd.DataFrame:
    """Forecast ``horizon`` periods after each series' last date: unique_id, ds, one column per model."""
    sf = _statsforecast(freq, season_length, ets_model, n_jobs)
    forecasts = sf.forecast(df=series[["unique_id", "ds", "y"]], h=horizon)
    return clip_negative(forecasts.reset_index(drop=True), STAT_MODELS)


def backtest_statistical(
    series: pd.DataFrame,
    horizon: int,
    n_windows: int,
    freq: str,
    season_length: int,
    ets_model: str = "ZNZ",
    n_jobs: int = 1,
) -> pd.DataFrame:
    """Rolling-origin backtest: ``n_windows`` windows of ``horizon`` periods, step = horizon.

    Returns unique_id, ds, cutoff, y, one column per model.
    """
    sf = _statsforecast(freq, season_length, ets_model, n_jobs)
    backtest = sf.cross_validation(
        df=series[["unique_id", "ds", "y"]], h=horizon, n_windows=n_windows, step_size=horizon
    )
    return clip_negative(backtest.reset_index(drop=True), STAT_MODELS)


def forecast_ets_quantiles(
    series: pd.DataFrame, horizon: int, freq: str, season_length: int, quantiles: list[float], ets_model: str = "ZNZ", n_jobs: int = 1
) -> pd.DataFrame:
    """AutoETS point forecasts with its own (normal) prediction intervals turned into quantile columns.

    Quantile q < 0.5 is the lower bound of the 100·(1-2q) % interval, q > 0.5 the upper bound; 0.5 is the
    point forecast. Columns ``q0.005`` …, clipped at zero. The interval baseline of the M5 benchmark.
    """
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    levels = sorted({round(100 * (1 - 2 * min(q, 1 - q)), 6) for q in quantiles if q != 0.5})
    sf = StatsForecast(models=[AutoETS(season_length=season_length, model=ets_model)], freq=freq, n_jobs=n_jobs)
    raw = sf.forecast(df=series[["unique_id", "ds", "y"]], h=horizon, level=[lv for lv in levels if lv > 0])
    table = raw[["unique_id", "ds"]].copy()
    for q in quantiles:
        level = round(100 * (1 - 2 * min(q, 1 - q)), 6)
        if q == 0.5:
            column = "AutoETS"
        else:
            column = f"AutoETS-{'lo' if q < 0.5 else 'hi'}-{level}"  # statsforecast names it by the level as passed
        table[f"q{q:g}"] = raw[column].clip(lower=0.0).to_numpy()
    return table.reset_index(drop=True)
