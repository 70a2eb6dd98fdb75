"""Per-series statistical models through statsforecast.

* ``SeasonalNaive`` — the baseline every other forecast must beat;
* ``AutoETS`` — exponential smoothing, by default restricted to no-trend models (``ZNZ``): on daily
  retail series the trend/damped candidates cost ~7x more (450 vs 69 ms a series on 700 days) and
  rarely win on a 28-day horizon;
* ``CrostonOptimized`` — for intermittent (sparse) series.

Failing series fall back, and are listed
----------------------------------------
The models run without statsforecast's ``fallback_model``, which falls back silently. When a batch
raises, the failing series are found by splitting the batch in halves (about 2·log2(n) extra runs per
failing series; nothing extra when nothing fails). For a series on which a model raises, or forecasts
NaN/inf, that model's column comes from the first of ``FALLBACK_MODELS`` that works on it:

1. ``SeasonalNaive`` — the last season repeated;
2. ``Naive`` — the last value repeated (e.g. a history shorter than one season, where SeasonalNaive
   forecasts NaN);
3. ``ZeroModel`` — zero (no usable history at all).

The other models keep their own forecasts of that series, and the other series are untouched. Each
fallback is a row of a table ``unique_id, model, error, fallback`` returned beside the forecasts. A series
no model can run on at all (in a backtest: shorter than the windows) is left out, with ``fallback`` =
``LEFT_OUT``.

Costly models within a budget
-----------------------------
AutoETS is fitted per series (~0.1–0.5 s each on 2 cores): at M5 size (42,840 series) that is hours.
``affordable_series`` picks whole levels from the top while their series fit a budget
(``ForecastSettings.ets_max_series``); on the other series (the item levels, where the global LightGBM
model is the affordable one) SeasonalNaive stands in for AutoETS and each such series is listed in the
fallback table with the reason, so nothing is hidden in the AutoETS column.

Degenerate series that really make AutoETS raise (statsforecast 2.1): fewer than 7 observations
("tiny datasets"), 1–3 constant observations (IndexError), NaN/inf in ``y``; with a multiplicative
``ets_model`` (e.g. ``MNM``) any series containing a zero. All-zero and constant series of a normal
length do not raise.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from forecasting_assets.ids import ids_in

STAT_MODELS = ["SeasonalNaive", "AutoETS", "CrostonOptimized"]
FALLBACK_MODELS = ["SeasonalNaive", "Naive", "ZeroModel"]  # in the order they are tried
FALLBACK_COLUMNS = ["unique_id", "model", "error", "fallback"]
LEFT_OUT = "none: series left out"
NON_FINITE = "non-finite forecast (NaN or inf), e.g. a history shorter than one season"
FORECAST_KEYS = ["unique_id", "ds"]
BACKTEST_KEYS = ["unique_id", "cutoff", "ds"]  # statsforecast's row order of a cross-validation
MAX_ERROR_CHARS = 300
COSTLY_MODELS = ["AutoETS"]  # fitted per series at ~0.1–0.5 s each: only on the series a budget affords
COST_STAND_IN = "SeasonalNaive"  # stands in for a costly model on the series beyond the budget
NOT_FITTED_FOR_COST = "not fitted (cost)"  # how the fallback table's error column starts for those series

# (models, long unique_id/ds/y frame, n_jobs) -> statsforecast output: key columns, one column per model
ModelRun = Callable[[list, pd.DataFrame, int], pd.DataFrame]


def statistical_models(season_length: int, ets_model: str = "ZNZ") -> list:
    from statsforecast.models import AutoETS, CrostonOptimized, SeasonalNaive

    return [
        SeasonalNaive(season_length=season_length),
        AutoETS(season_length=season_length, model=ets_model),
        CrostonOptimized(),
    ]


def fallback_models(model_name: str, season_length: int) -> list:
    """The fallback chain for ``model_name`` (itself excluded), each named as the model it stands in for."""
    from statsforecast.models import Naive, SeasonalNaive, ZeroModel

    build = {
        "SeasonalNaive": lambda: SeasonalNaive(season_length=season_length, alias=model_name),
        "Naive": lambda: Naive(alias=model_name),
        "ZeroModel": lambda: ZeroModel(alias=model_name),
    }
    return [build[name]() for name in FALLBACK_MODELS if name != model_name]


def clip_negative(forecasts: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Sales cannot be negative: clip model outputs at zero."""
    forecasts = forecasts.copy()
    forecasts[columns] = forecasts[columns].clip(lower=0.0)
    return forecasts


def empty_fallbacks() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in FALLBACK_COLUMNS})


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:MAX_ERROR_CHARS]


def _chain_error(errors_so_far: str, fallback_name: str, error: str) -> str:
    """The errors of a series so far, then the fallback's (``same`` when it failed as the model did)."""
    first = errors_so_far.split("; then ")[0]
    return f"{errors_so_far}; then {fallback_name}: {'same' if error == first else error}"[: 2 * MAX_ERROR_CHARS]


def run_by_halves(run: ModelRun, models: list, series: pd.DataFrame, n_jobs: int = 1) -> tuple[list[pd.DataFrame], dict[str, str]]:
    """Run ``models`` on ``series``; when that raises, split the series in halves and run each, recursively.

    Returns the outputs of the batches that ran, and {unique_id: error} of the series that raise alone.
    One run when nothing raises; about 2·log2(n) more per failing series.
    """
    try:
        return [run(models, series, n_jobs)], {}
    except Exception as error:  # a model raised on some series: find which
        if series.empty:
            raise
        first_error = error
    ordered = series.sort_values(["unique_id", "ds"], kind="stable")
    codes, ids = pd.factorize(ordered["unique_id"])
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    bounds = np.r_[starts, len(ordered)]  # rows of ids[k]: bounds[k]..bounds[k+1]
    outputs: list[pd.DataFrame] = []
    errors: dict[str, str] = {}

    def split(first: int, last: int, error: BaseException) -> None:  # ids[first:last] raised together
        if last - first == 1:
            errors[ids[first]] = _error_text(error)
            return
        middle = (first + last) // 2
        for lo, hi in ((first, middle), (middle, last)):
            try:
                outputs.append(run(models, ordered.iloc[bounds[lo] : bounds[hi]], n_jobs if hi - lo > 1 else 1))
            except Exception as half_error:
                split(lo, hi, half_error)

    split(0, len(ids), first_error)
    return outputs, errors


def _non_finite_ids(output: pd.DataFrame, columns: list[str]) -> set[str]:
    finite = np.isfinite(output[columns].to_numpy(dtype=float)).all(axis=1)
    return set(output.loc[~finite, "unique_id"].unique())


def _run_finite(run: ModelRun, model, series: pd.DataFrame, n_jobs: int) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """One model on ``series``: its finite output, and {unique_id: error} of the series it failed on."""
    outputs, errors = run_by_halves(run, [model], series, n_jobs)
    if not outputs:
        return None, errors
    output = pd.concat(outputs, ignore_index=True)
    non_finite = _non_finite_ids(output, [repr(model)])
    errors.update({uid: NON_FINITE for uid in non_finite})
    return output[~output["unique_id"].isin(non_finite)], errors


def _with_fallbacks(
    run: ModelRun, model, series: pd.DataFrame, season_length: int, n_jobs: int
) -> tuple[pd.DataFrame | None, list[dict[str, str]]]:
    """One model on ``series``, each failing series falling through the fallback chain; the rows listing them."""
    name = repr(model)
    output, errors = _run_finite(run, model, series, n_jobs)
    frames = [] if output is None else [output]
    listed: list[dict[str, str]] = []
    for fallback in fallback_models(name, season_length):
        if not errors:
            break
        fallback_output, fallback_errors = _run_finite(run, fallback, series[series["unique_id"].isin(errors)], n_jobs)
        if fallback_output is not None:
            frames.append(fallback_output)
        fallback_name = type(fallback).__name__
        listed += [{"unique_id": uid, "model": name, "error": errors[uid], "fallback": fallback_name} for uid in sorted(set(errors) - set(fallback_errors))]
        errors = {uid: _chain_error(errors[uid], fallback_name, error) for uid, error in fallback_errors.items()}
    listed += [{"unique_id": uid, "model": name, "error": error, "fallback": LEFT_OUT} for uid, error in sorted(errors.items())]
    return (pd.concat(frames, ignore_index=True) if frames else None), listed


def _merge_models(outputs: list[pd.DataFrame | None], names: list[str], keys: list[str]) -> pd.DataFrame | None:
    """One frame with a column per model, for the rows every model has (None when a model has none)."""
    if any(output is None for output in outputs):
        return None
    merged = outputs[0]
    for output, name in zip(outputs[1:], names[1:]):
        merged = merged.merge(output[[*keys, name]], on=keys, how="inner")
    return merged


def run_with_fallbacks(
    run: ModelRun, series: pd.DataFrame, models: list, season_length: int, keys: list[str], n_jobs: int = 1
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run ``models`` on every series; on a series where a model fails, that model's fallback stands in.

    ``keys``: the columns identifying an output row, in statsforecast's row order (``FORECAST_KEYS`` or
    ``BACKTEST_KEYS``). Returns the output (statsforecast's own when nothing fails; else in the same
    columns and row order) and the fallback table (``FALLBACK_COLUMNS``; empty when nothing failed).
    """
    series = series[["unique_id", "ds", "y"]]
    names = [repr(model) for model in models]
    outputs, errors = run_by_halves(run, models, series, n_jobs)
    healthy = (outputs[0] if len(outputs) == 1 else pd.concat(outputs, ignore_index=True)) if outputs else None
    failing_ids = set(errors) | (_non_finite_ids(healthy, names) if healthy is not None else set())
    if not failing_ids:  # the usual case: statsforecast's output as it is
        return healthy, empty_fallbacks()

    failing = series[series["unique_id"].isin(failing_ids)]
    repaired_by_model, listed = [], []
    for model in models:  # model by model: a model that works on a failing series keeps its forecasts
        output, rows = _with_fallbacks(run, model, failing, season_length, n_jobs)
        repaired_by_model.append(output)
        listed += rows
    repaired = _merge_models(repaired_by_model, names, keys)
    kept = None if healthy is None else healthy[~healthy["unique_id"].isin(failing_ids)]
    parts = [part for part in (kept, repaired) if part is not None]
    if not parts:
        raise RuntimeError(f"no model nor fallback could run on any series; first failure: {listed[0]}")
    columns = list(parts[0].columns)
    result = pd.concat([part[columns] for part in parts], ignore_index=True).sort_values(keys, kind="stable").reset_index(drop=True)

    fallbacks = pd.DataFrame(listed, columns=FALLBACK_COLUMNS)
    left_out = set(failing_ids) - set(result["unique_id"])
    fallbacks.loc[fallbacks["unique_id"].isin(left_out), "fallback"] = LEFT_OUT  # also when another model left it out
    return result, fallbacks


def affordable_series(series_keys: pd.DataFrame, max_series: int | None) -> list[str] | None:
    """The series a costly per-series model can afford: whole levels from the top while the count fits.

    None when every series fits (no limit). The top level is always included, so a forecast of the total
    always has every model.
    """
    if max_series is None or len(series_keys) <= max_series:
        return None
    sizes = series_keys.groupby("level_order")["unique_id"].size().sort_index()
    levels = [order for order, total in zip(sizes.index, sizes.cumsum()) if total <= max_series] or [sizes.index[0]]
    return series_keys.loc[series_keys["level_order"].isin(levels), "unique_id"].tolist()


def cost_budget_rows(ids: list[str], budget_note: str) -> pd.DataFrame:
    """Fallback rows for the series a costly model was not fitted on (listed like any other fallback)."""
    rows = [{"unique_id": uid, "model": model, "error": budget_note, "fallback": COST_STAND_IN} for model in COSTLY_MODELS for uid in ids]
    return pd.DataFrame(rows, columns=FALLBACK_COLUMNS)


def run_within_budget(
    run: ModelRun,
    series: pd.DataFrame,
    models: list,
    season_length: int,
    keys: list[str],
    n_jobs: int,
    affordable: list[str] | None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``run_with_fallbacks``, with the costly models only on the ``affordable`` series (None: all).

    On the other series the cheap models run as usual and each costly model's column is the
    ``COST_STAND_IN`` forecast, listed in the fallback table with the reason.
    """
    if affordable is None:
        return run_with_fallbacks(run, series, models, season_length, keys, n_jobs)
    chosen = ids_in(series["unique_id"], affordable)  # (through runs: the history is in blocks per series)
    full, full_fallbacks = run_with_fallbacks(run, series[chosen], models, season_length, keys, n_jobs)
    cheap_models = [model for model in models if repr(model) not in COSTLY_MODELS]
    rest, rest_fallbacks = run_with_fallbacks(run, series[~chosen], cheap_models, season_length, keys, n_jobs)
    for name in COSTLY_MODELS:
        rest[name] = rest[COST_STAND_IN]
    note = f"{NOT_FITTED_FOR_COST}: per-series {', '.join(COSTLY_MODELS)} runs on the {series.loc[chosen, 'unique_id'].nunique()} series of the top levels; {COST_STAND_IN} stands in"
    budget_rows = cost_budget_rows(sorted(rest["unique_id"].unique()), note)
    combined = pd.concat([full, rest[full.columns]], ignore_index=True).sort_values(keys, kind="stable").reset_index(drop=True)
    return combined, pd.concat([f for f in (full_fallbacks, rest_fallbacks, budget_rows) if len(f)] or [empty_fallbacks()], ignore_index=True)


def forecast_statistical_with_fallbacks(
    series: pd.DataFrame,
    horizon: int,
    freq: str,
    season_length: int,
    ets_model: str = "ZNZ",
    n_jobs: int = 1,
    affordable: list[str] | None = None,
    dask_scheduler: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Forecast ``horizon`` periods after each series' last date: unique_id, ds, one column per model.

    Also returns the fallback table (unique_id, model, error, fallback): the series a model failed on,
    and the series beyond ``affordable`` (see ``run_within_budget``). With ``dask_scheduler``
    (``tcp://host:8786``) the models run on that Dask cluster (statsforecast's Dask backend).
    """

    def run(models: list, batch: pd.DataFrame, jobs: int) -> pd.DataFrame:
        if dask_scheduler:
            from forecasting_assets.models.distributed import connect_dask, forecast_statistical_dask

            with connect_dask(dask_scheduler) as client:
                return forecast_statistical_dask(batch, models, freq, horizon, client)
        from statsforecast import StatsForecast

        return StatsForecast(models=models, freq=freq, n_jobs=jobs).forecast(df=batch, h=horizon)

    models = statistical_models(season_length, ets_model)
    forecasts, fallbacks = run_within_budget(run, series, models, season_length, FORECAST_KEYS, n_jobs, affordable)
    return clip_negative(forecasts.reset_index(drop=True), STAT_MODELS), fallbacks


def backtest_statistical_with_fallbacks(
    series: pd.DataFrame,
    horizon: int,
    n_windows: int,
    freq: str,
    season_length: int,
    ets_model: str = "ZNZ",
    n_jobs: int = 1,
    affordable: list[str] | None = None,
    dask_scheduler: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rolling-origin backtest: ``n_windows`` windows of ``horizon`` periods, step = horizon.

    Returns unique_id, ds, cutoff, y, one column per model; and the fallback table. A model that fails on
    a series in any window is replaced by its fallback in every window of that series. With
    ``dask_scheduler`` the models run on that Dask cluster.
    """

    def run(models: list, batch: pd.DataFrame, jobs: int) -> pd.DataFrame:
        if dask_scheduler:
            from forecasting_assets.models.distributed import backtest_statistical_dask, connect_dask

            with connect_dask(dask_scheduler) as client:
                return backtest_statistical_dask(batch, models, freq, horizon, n_windows, client)
        from statsforecast import StatsForecast

        return StatsForecast(models=models, freq=freq, n_jobs=jobs).cross_validation(df=batch, h=horizon, n_windows=n_windows, step_size=horizon)

    models = statistical_models(season_length, ets_model)
    backtest, fallbacks = run_within_budget(run, series, models, season_length, BACKTEST_KEYS, n_jobs, affordable)
    return clip_negative(backtest.reset_index(drop=True), STAT_MODELS), fallbacks


def forecast_statistical(
    series: pd.DataFrame, horizon: int, freq: str, season_length: int, ets_model: str = "ZNZ", n_jobs: int = 1
) -> pd.DataFrame:
    """``forecast_statistical_with_fallbacks`` without the fallback table."""
    return forecast_statistical_with_fallbacks(series, horizon, freq, season_length, ets_model, n_jobs)[0]


def fallbacks_markdown(fallbacks: pd.DataFrame, max_rows: int = 20) -> str:
    """The fallback table as markdown (the first ``max_rows`` rows, and how many more there are)."""
    if fallbacks.empty:
        return "_No series fell back: every model ran on every series._"
    table = fallbacks.head(max_rows).assign(error=fallbacks["error"].head(max_rows).str.replace("|", "/", regex=False).str.replace("\n", " ", regex=False))
    text = table.to_markdown(index=False)
    if len(fallbacks) > max_rows:
        text += f"\n\n… and {len(fallbacks) - max_rows} more (model, series) fallbacks."
    return text


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
