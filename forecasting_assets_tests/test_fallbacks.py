"""A failing stage fails a series (or a method), not the run: statistical-model fallbacks and reconciliation
fallbacks on degenerate series and residuals.

The failures are real ones of statsforecast 2.1 / hierarchicalforecast 1.5, not mocks, except where a
model is made to raise on one chosen series to check that exactly that series falls back:

* AutoETS raises on fewer than 7 observations ("tiny datasets") and, as a multiplicative model (MNM), on
  a series containing a zero; SeasonalNaive forecasts NaN on a history shorter than one season;
* MinTrace mint_shrink raises on all-zero residuals (all-zero or constant series forecast exactly) and on
  residuals of a single period (singular covariance); every method raises on a NaN base forecast.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.evaluation.metrics import OVERALL_LEVEL
from forecasting_assets.hierarchy.aggregation import build_hierarchy, check_coherence
from forecasting_assets.models.statistical import (
    FALLBACK_COLUMNS,
    FORECAST_KEYS,
    LEFT_OUT,
    NON_FINITE,
    STAT_MODELS,
    backtest_statistical_with_fallbacks,
    clip_negative,
    fallbacks_markdown,
    forecast_statistical,
    forecast_statistical_with_fallbacks,
    run_by_halves,
    run_with_fallbacks,
    statistical_models,
)
from forecasting_assets.reconciliation.reconcile import BASE_METHOD, reconcile, reconcile_backtest, to_long
from forecasting_assets.resources import ForecastSettings

pytestmark = [
    pytest.mark.filterwarnings("ignore:Converted matrix:Warning"),
    pytest.mark.filterwarnings("ignore:Historical data:UserWarning"),  # statsforecast: shorter than one season
]

SEASON, HORIZON = 7, 7
MINT_SHRINK = "MinTrace_method-mint_shrink"
WLS = "MinTrace_method-wls_struct"


def _daily(values: dict[str, np.ndarray], start: str = "2023-01-02") -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(y), freq="D"), "y": np.asarray(y, dtype=float)}) for uid, y in values.items()],
        ignore_index=True,
    )


def _healthy(n: int = 6, length: int = 70, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    weekly = np.array([1.3, 1.2, 0.9, 0.8, 0.8, 0.9, 1.1])
    return {f"item_{i}": (20 + 5 * i) * weekly[np.arange(length) % 7] + rng.normal(0, 1.5, length) for i in range(n)}


def _without(frame: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    return frame[~frame["unique_id"].isin(ids)].reset_index(drop=True)


def _listed(fallbacks: pd.DataFrame) -> dict[tuple[str, str], pd.Series]:
    return {(row.unique_id, row.model): row for row in fallbacks.itertuples(index=False)}


# --------------------------------------------------------------------------------------------------
# Statistical models
# --------------------------------------------------------------------------------------------------


def test_nothing_fails_statsforecasts_own_output_and_an_empty_table() -> None:
    from statsforecast import StatsForecast
    from statsforecast.models import SeasonalNaive

    series = _daily(_healthy())
    forecasts, fallbacks = forecast_statistical_with_fallbacks(series, HORIZON, "D", SEASON)
    assert fallbacks.empty and list(fallbacks.columns) == FALLBACK_COLUMNS
    # identical to the former implementation (statsforecast's silent fallback_model, which never fired here)
    before = StatsForecast(models=statistical_models(SEASON), freq="D", n_jobs=1, fallback_model=SeasonalNaive(season_length=SEASON))
    expected = clip_negative(before.forecast(df=series, h=HORIZON).reset_index(drop=True), STAT_MODELS)
    pd.testing.assert_frame_equal(forecasts, expected)
    pd.testing.assert_frame_equal(forecast_statistical(series, HORIZON, "D", SEASON), expected)


def test_a_series_too_short_for_autoets_falls_back_alone() -> None:
    healthy = _healthy()
    series = _daily({**healthy, "new_item": [3.0, 4.0, 5.0, 4.0, 3.0]})  # 5 days: AutoETS raises, SeasonalNaive gives NaN
    forecasts, fallbacks = forecast_statistical_with_fallbacks(series, HORIZON, "D", SEASON)  # does not raise

    listed = _listed(fallbacks)
    assert set(listed) == {("new_item", "AutoETS"), ("new_item", "SeasonalNaive")}  # Croston works on it: not listed
    assert "NotImplementedError: tiny datasets" in listed["new_item", "AutoETS"].error
    assert listed["new_item", "AutoETS"].fallback == "Naive"  # SeasonalNaive, the first fallback, forecasts NaN
    assert NON_FINITE in listed["new_item", "AutoETS"].error
    assert listed["new_item", "SeasonalNaive"].error == NON_FINITE and listed["new_item", "SeasonalNaive"].fallback == "Naive"

    new = forecasts[forecasts["unique_id"] == "new_item"]
    assert len(new) == HORIZON
    assert (new["AutoETS"] == 3.0).all() and (new["SeasonalNaive"] == 3.0).all()  # Naive: the last value
    from statsforecast.models import CrostonOptimized

    croston = CrostonOptimized().forecast(h=HORIZON, y=np.array([3.0, 4.0, 5.0, 4.0, 3.0]))["mean"]
    np.testing.assert_array_equal(new["CrostonOptimized"].to_numpy(), croston)  # its own forecast, untouched

    alone, alone_fallbacks = forecast_statistical_with_fallbacks(_daily(healthy), HORIZON, "D", SEASON)
    assert alone_fallbacks.empty
    pd.testing.assert_frame_equal(_without(forecasts, ["new_item"]), alone)  # the others are exactly as without it
    assert list(forecasts.columns) == ["unique_id", "ds", *STAT_MODELS]
    assert np.isfinite(forecasts[STAT_MODELS].to_numpy()).all() and (forecasts[STAT_MODELS] >= 0).all().all()


def test_a_silent_nan_forecast_falls_back_too() -> None:
    # a season of 14 and a series of 10 days: no model raises, but SeasonalNaive forecasts NaN (as weekly
    # data with a 52-week season does on a series younger than a year)
    healthy = _healthy(length=42)
    young = 2.0 + np.arange(10.0) % 4
    forecasts, fallbacks = forecast_statistical_with_fallbacks(_daily({**healthy, "young": young}), HORIZON, "D", season_length=14)
    assert fallbacks.values.tolist() == [["young", "SeasonalNaive", NON_FINITE, "Naive"]]
    row = forecasts[forecasts["unique_id"] == "young"]
    assert (row["SeasonalNaive"] == young[-1]).all() and np.isfinite(row[STAT_MODELS].to_numpy()).all()
    alone, _ = forecast_statistical_with_fallbacks(_daily(healthy), HORIZON, "D", season_length=14)
    pd.testing.assert_frame_equal(_without(forecasts, ["young"]), alone)


def test_multiplicative_ets_on_a_series_with_a_zero_falls_back_to_seasonal_naive() -> None:
    healthy = _healthy()
    one_empty_day = np.r_[np.full(40, 5.0), 0.0, np.full(29, 5.0)] + np.tile([0.0, 1.0], 35)
    series = _daily({**healthy, "one_empty_day": one_empty_day})
    forecasts, fallbacks = forecast_statistical_with_fallbacks(series, HORIZON, "D", SEASON, ets_model="MNM")

    assert fallbacks[["unique_id", "model", "fallback"]].values.tolist() == [["one_empty_day", "AutoETS", "SeasonalNaive"]]
    assert "Inappropriate model for data with negative or zero values" in fallbacks["error"].iloc[0]
    row = forecasts[forecasts["unique_id"] == "one_empty_day"]
    np.testing.assert_array_equal(row["AutoETS"], row["SeasonalNaive"])
    alone, _ = forecast_statistical_with_fallbacks(_daily(healthy), HORIZON, "D", SEASON, ets_model="MNM")
    pd.testing.assert_frame_equal(_without(forecasts, ["one_empty_day"]), alone)


def test_cross_validation_falls_back_per_series_and_keeps_the_windows() -> None:
    healthy = _healthy(length=60)
    n_windows = 3
    one_empty_day = np.r_[np.full(30, 5.0), 0.0, np.full(29, 5.0)] + np.tile([0.0, 1.0], 30)
    series = _daily({**healthy, "one_empty_day": one_empty_day})
    backtest, fallbacks = backtest_statistical_with_fallbacks(series, HORIZON, n_windows, "D", SEASON, ets_model="MNM")

    assert fallbacks[["unique_id", "model", "fallback"]].values.tolist() == [["one_empty_day", "AutoETS", "SeasonalNaive"]]
    assert "Inappropriate model" in fallbacks["error"].iloc[0]
    assert list(backtest.columns) == ["unique_id", "ds", "cutoff", "y", *STAT_MODELS]
    assert backtest.groupby("unique_id").size().to_dict() == {uid: HORIZON * n_windows for uid in series["unique_id"].unique()}
    row = backtest[backtest["unique_id"] == "one_empty_day"]
    np.testing.assert_array_equal(row["AutoETS"], row["SeasonalNaive"])
    alone, alone_fallbacks = backtest_statistical_with_fallbacks(_daily(healthy), HORIZON, n_windows, "D", SEASON, ets_model="MNM")
    assert alone_fallbacks.empty
    pd.testing.assert_frame_equal(_without(backtest, ["one_empty_day"]), alone)


def test_cross_validation_a_series_failing_in_its_first_window_and_one_too_short_for_the_windows() -> None:
    healthy = _healthy(length=40)
    # 20 days, 2 windows of 7: the first window trains on 6 days (AutoETS: tiny datasets; SeasonalNaive: NaN)
    young = 5.0 + np.tile([0.0, 2.0, 1.0, 3.0], 5)
    series = _daily({**healthy, "young": young, "too_short": np.ones(10)})
    backtest, fallbacks = backtest_statistical_with_fallbacks(series, HORIZON, 2, "D", SEASON)  # does not raise

    listed = _listed(fallbacks)
    assert listed["young", "AutoETS"].fallback == "Naive" and "tiny datasets" in listed["young", "AutoETS"].error
    assert ("young", "CrostonOptimized") not in listed
    assert {model for uid, model in listed if uid == "too_short"} == set(STAT_MODELS)
    assert all(listed["too_short", m].fallback == LEFT_OUT and "too short for the cross validation" in listed["too_short", m].error for m in STAT_MODELS)
    assert "too_short" not in set(backtest["unique_id"])  # no window exists for it
    young_rows = backtest[backtest["unique_id"] == "young"]
    assert len(young_rows) == 2 * HORIZON and np.isfinite(young_rows[STAT_MODELS].to_numpy()).all()
    alone, _ = backtest_statistical_with_fallbacks(_daily(healthy), HORIZON, 2, "D", SEASON)
    pd.testing.assert_frame_equal(_without(backtest, ["young", "too_short"]), alone)


def test_a_model_raising_on_one_series_of_many_is_isolated(monkeypatch: pytest.MonkeyPatch) -> None:
    from statsforecast.models import AutoETS

    marker = 777.0
    original = AutoETS.forecast

    def raising(self, y, h, *args, **kwargs):
        if y[0] == marker:
            raise RuntimeError("ETS exploded on this series")
        return original(self, y, h, *args, **kwargs)

    monkeypatch.setattr(AutoETS, "forecast", raising)
    healthy = _healthy(n=11)
    poisoned = healthy["item_5"].copy()
    poisoned[0] = marker
    series = _daily({**healthy, "item_5": poisoned})

    forecasts, fallbacks = forecast_statistical_with_fallbacks(series, HORIZON, "D", SEASON)
    assert fallbacks.values.tolist() == [["item_5", "AutoETS", "RuntimeError: ETS exploded on this series", "SeasonalNaive"]]
    row = forecasts[forecasts["unique_id"] == "item_5"]
    np.testing.assert_array_equal(row["AutoETS"], row["SeasonalNaive"])
    others = {k: v for k, v in healthy.items() if k != "item_5"}
    alone, _ = forecast_statistical_with_fallbacks(_daily(others), HORIZON, "D", SEASON)
    pd.testing.assert_frame_equal(_without(forecasts, ["item_5"]), alone)


def test_finding_the_failing_series_costs_a_logarithmic_number_of_runs() -> None:
    series = _daily({f"s{i:02d}": np.arange(5.0) + i for i in range(32)})
    calls: list[int] = []

    def run(models: list, batch: pd.DataFrame, n_jobs: int) -> pd.DataFrame:
        ids = sorted(batch["unique_id"].unique())
        calls.append(len(ids))
        if "s13" in ids:
            raise ValueError("s13 is degenerate")
        return batch.groupby("unique_id", as_index=False)["y"].last().rename(columns={"y": "Model"}).assign(ds=pd.Timestamp("2030-01-01"))

    outputs, errors = run_by_halves(run, [], series)
    assert errors == {"s13": "ValueError: s13 is degenerate"}
    assert sorted(pd.concat(outputs)["unique_id"]) == [f"s{i:02d}" for i in range(32) if i != 13]
    assert len(calls) == 1 + 2 * 5  # the failing batch, then both halves at each of log2(32) levels
    calls.clear()
    run_by_halves(run, [], series[series["unique_id"] != "s13"])
    assert calls == [31]  # nothing fails: one run, nothing extra


def test_run_with_fallbacks_raises_only_when_nothing_at_all_can_run() -> None:
    from statsforecast.models import Naive

    def run(models: list, batch: pd.DataFrame, n_jobs: int) -> pd.DataFrame:
        raise ValueError("no data can be forecast here")

    with pytest.raises(RuntimeError, match="no model nor fallback"):
        run_with_fallbacks(run, _daily({"a": np.ones(10)}), [Naive()], SEASON, FORECAST_KEYS)


def test_fallbacks_markdown_shows_up_to_max_rows() -> None:
    assert "No series fell back" in fallbacks_markdown(pd.DataFrame(columns=FALLBACK_COLUMNS))
    rows = pd.DataFrame([{"unique_id": f"s{i}", "model": "AutoETS", "error": "ValueError: a | b", "fallback": "SeasonalNaive"} for i in range(25)])
    text = fallbacks_markdown(rows, max_rows=20)
    assert "s19" in text and "s20" not in text and "5 more" in text
    assert "a / b" in text  # a pipe in an error does not break the table


# --------------------------------------------------------------------------------------------------
# Reconciliation on degenerate series and residuals
# --------------------------------------------------------------------------------------------------

DATES = pd.date_range("2024-01-01", periods=35, freq="D")
MODELS = ["ModelA", "ModelB"]


def _hierarchy(levels_by_bottom: dict[tuple[str, str], float]):
    """Store → department tree whose bottom series are constant (0 for an all-zero series)."""
    sales = pd.DataFrame([{"store_id": s, "dept_id": d, "ds": ds, "y": level} for (s, d), level in levels_by_bottom.items() for ds in DATES])
    return build_hierarchy(sales, [[], ["store_id"], ["store_id", "dept_id"]], "D")


DEGENERATE = {
    "all_zero": {("S1", "D1"): 0.0, ("S1", "D2"): 0.0, ("S2", "D1"): 0.0, ("S2", "D2"): 0.0},
    "constant": {("S1", "D1"): 3.0, ("S1", "D2"): 0.0, ("S2", "D1"): 5.0, ("S2", "D2"): 2.0},
}


def _exact_forecasts(hierarchy, dates, models: list[str]) -> pd.DataFrame:
    frame = hierarchy.series[hierarchy.series["ds"].isin(dates)].reset_index(drop=True)
    return frame.assign(**{m: frame["y"] for m in models})


def _incoherent(frame: pd.DataFrame, models: list[str], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return frame.assign(**{m: frame["y"] * rng.uniform(0.7, 1.3, len(frame)) + rng.uniform(0, 1, len(frame)) for m in models})


def _assert_coherent_finite_non_negative(wide: pd.DataFrame, hierarchy) -> list[str]:
    columns = [c for c in wide.columns if "/" in c]
    assert columns
    values = wide[columns].to_numpy(dtype=float)
    assert np.isfinite(values).all() and (values >= -1e-9).all()
    assert (check_coherence(wide, hierarchy.structure, columns)["max_abs_gap"] <= 1e-6).all()
    return columns


@pytest.mark.parametrize("case", sorted(DEGENERATE))
def test_mint_shrink_on_zero_residuals_is_skipped_with_the_reason(case: str) -> None:
    hierarchy = _hierarchy(DEGENERATE[case])
    residuals = _exact_forecasts(hierarchy, DATES[:-HORIZON], MODELS)  # y - forecast = 0 everywhere
    base = _incoherent(_exact_forecasts(hierarchy, DATES[-HORIZON:], MODELS), MODELS)[["unique_id", "ds", *MODELS]]
    wide, skipped = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure, residuals=residuals)  # does not raise

    assert "Insample residuals close to 0" in skipped[MINT_SHRINK]
    columns = _assert_coherent_finite_non_negative(wide, hierarchy)
    assert {f"{m}/{method}" for m in MODELS for method in ("BottomUp", WLS)} <= set(columns)
    assert not any(MINT_SHRINK in c for c in columns)


def test_mint_shrink_on_a_single_period_of_residuals_singular_covariance() -> None:
    hierarchy = _hierarchy(DEGENERATE["constant"])
    residuals = _incoherent(_exact_forecasts(hierarchy, DATES[:1], MODELS), MODELS, seed=3)
    base = _incoherent(_exact_forecasts(hierarchy, DATES[-HORIZON:], MODELS), MODELS)[["unique_id", "ds", *MODELS]]
    wide, skipped = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure, residuals=residuals)
    assert skipped[MINT_SHRINK].startswith("failed: LinAlgError")
    _assert_coherent_finite_non_negative(wide, hierarchy)


def test_one_models_degenerate_residuals_do_not_cost_the_other_model_the_method() -> None:
    hierarchy = _hierarchy({("S1", "D1"): 3.0, ("S1", "D2"): 1.0, ("S2", "D1"): 5.0, ("S2", "D2"): 2.0})
    residuals = _exact_forecasts(hierarchy, DATES[:-HORIZON], MODELS)
    residuals["ModelB"] = _incoherent(residuals, ["ModelB"], seed=5)["ModelB"]  # ModelB has real errors
    base = _incoherent(_exact_forecasts(hierarchy, DATES[-HORIZON:], MODELS), MODELS)[["unique_id", "ds", *MODELS]]
    wide, skipped = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure, residuals=residuals)

    assert f"ModelB/{MINT_SHRINK}" in wide.columns and f"ModelA/{MINT_SHRINK}" not in wide.columns
    assert "Insample residuals close to 0" in skipped[f"ModelA/{MINT_SHRINK}"]
    assert MINT_SHRINK not in skipped
    _assert_coherent_finite_non_negative(wide, hierarchy)


def test_a_base_model_with_a_nan_forecast_is_not_reconciled_the_others_are() -> None:
    hierarchy = _hierarchy(DEGENERATE["constant"])
    base = _incoherent(_exact_forecasts(hierarchy, DATES[-HORIZON:], MODELS), MODELS)[["unique_id", "ds", *MODELS]]
    base.loc[3, "ModelA"] = np.nan  # hierarchicalforecast rejects the whole frame for every method
    wide, skipped = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure)
    assert "not finite" in skipped["ModelA"]
    columns = _assert_coherent_finite_non_negative(wide, hierarchy)
    assert {c.split("/")[0] for c in columns} == {"ModelB"}


def test_reconciled_backtest_drops_a_method_that_fails_in_one_window_from_every_window() -> None:
    hierarchy = _hierarchy({("S1", "D1"): 3.0, ("S1", "D2"): 1.0, ("S2", "D1"): 5.0, ("S2", "D2"): 2.0})
    cutoffs = [DATES[-22], DATES[-15], DATES[-8]]
    windows = []
    for k, cutoff in enumerate(cutoffs):
        dates = pd.date_range(cutoff + pd.Timedelta(days=1), periods=HORIZON, freq="D")
        window = _exact_forecasts(hierarchy, dates, MODELS)
        if k > 0:  # window 1 is forecast exactly: window 2's residuals are all zero, window 3's are not
            window = _incoherent(window, MODELS, seed=k)
        windows.append(window.assign(cutoff=cutoff))
    backtest = pd.concat(windows, ignore_index=True)[["unique_id", "ds", "cutoff", "y", *MODELS]]

    wide, skipped = reconcile_backtest(backtest, MODELS, hierarchy.series_keys, hierarchy.structure)
    assert not any(MINT_SHRINK in c for c in wide.columns)  # left out of window 3 too, where it worked
    assert "Insample residuals close to 0" in skipped[MINT_SHRINK] and str(cutoffs[1].date()) in skipped[MINT_SHRINK]
    for _, window in wide.groupby("cutoff"):
        _assert_coherent_finite_non_negative(window, hierarchy)


# --------------------------------------------------------------------------------------------------
# Asset level: the metadata says what fell back
# --------------------------------------------------------------------------------------------------


def _metrics(scores: dict[str, float]) -> pd.DataFrame:
    rows = [{"level": OVERALL_LEVEL, "model": m, "method": m.split("/", 1)[1] if "/" in m else BASE_METHOD, "wrmsse": w} for m, w in scores.items()]
    return pd.DataFrame(rows)


@pytest.fixture()
def degenerate_reconciliation_inputs():
    from forecasting_assets.models.assets import BASE_MODELS

    hierarchy = _hierarchy(DEGENERATE["constant"])
    cutoffs = [DATES[-22], DATES[-15], DATES[-8]]
    backtest = pd.concat(
        [_exact_forecasts(hierarchy, pd.date_range(c + pd.Timedelta(days=1), periods=HORIZON), BASE_MODELS).assign(cutoff=c) for c in cutoffs],
        ignore_index=True,
    )[["unique_id", "ds", "cutoff", "y", *BASE_MODELS]]
    future = pd.date_range(DATES[-1] + pd.Timedelta(days=1), periods=HORIZON)
    base = _incoherent(hierarchy.series[hierarchy.series["ds"] >= DATES[-HORIZON]].assign(ds=lambda f: f["ds"] + pd.Timedelta(days=HORIZON)), BASE_MODELS)
    assert (base["ds"].unique() == future).all()
    return hierarchy, backtest, base[["unique_id", "ds", *BASE_MODELS]]


def test_reconciled_forecasts_fall_back_when_the_chosen_method_fails(degenerate_reconciliation_inputs) -> None:
    import dagster as dg

    from forecasting_assets.reconciliation.assets import QuantileConfig, final_forecasts, forecast_quantiles, reconciled_forecasts

    hierarchy, backtest, base = degenerate_reconciliation_inputs
    # the backtest ranked mint_shrink first; on the future its residuals (every window, all zero) break it
    metrics = _metrics({f"LightGBM/{MINT_SHRINK}": 0.5, f"LightGBM/{WLS}": 0.6, "LightGBM/BottomUp": 0.7, "LightGBM": 0.8, "SeasonalNaive": 1.0})
    context = dg.build_asset_context()
    long = reconciled_forecasts(context, base, backtest, metrics, hierarchy.series_keys, hierarchy.structure, hierarchy.series, ForecastSettings())

    meta = context.get_output_metadata("result")
    assert meta["chosen"] == f"LightGBM/{WLS}" and meta["intended"] == f"LightGBM/{MINT_SHRINK}"
    assert f"LightGBM/{MINT_SHRINK} failed" in meta["reconciliation_fallback"]
    assert "Insample residuals close to 0" in meta["reconciliation_fallback"]
    assert set(long.loc[long["is_chosen"], "model"]) == {f"LightGBM/{WLS}"}
    chosen_wide = long[long["is_chosen"]].pivot_table(index=["unique_id", "ds"], values="yhat").reset_index().rename(columns={"yhat": "x/chosen"})
    _assert_coherent_finite_non_negative(chosen_wide, hierarchy)

    final_context = dg.build_asset_context()
    final = final_forecasts(final_context, long, hierarchy.series_keys, hierarchy.series)
    assert (final["model"] == f"LightGBM/{WLS}").all() and len(final) == len(base)

    reconciled_bt, _ = reconcile_backtest(backtest, ["LightGBM"], hierarchy.series_keys, hierarchy.structure)
    quantile_context = dg.build_asset_context()
    quantiles = forecast_quantiles(quantile_context, QuantileConfig(), final, to_long(reconciled_bt, ["unique_id", "ds", "cutoff", "y"]), hierarchy.series, hierarchy.series_keys, ForecastSettings())
    assert quantile_context.get_output_metadata("result")["residuals_from"] == f"LightGBM/{WLS}"
    assert np.isfinite(quantiles.drop(columns=["unique_id", "ds"]).to_numpy(dtype=float)).all()


def test_every_method_but_bottom_up_failing_falls_back_to_bottom_up(degenerate_reconciliation_inputs) -> None:
    import dagster as dg

    from forecasting_assets.reconciliation.assets import choose_produced_forecast, reconciled_forecasts

    hierarchy, backtest, base = degenerate_reconciliation_inputs
    metrics = _metrics({f"AutoETS/{MINT_SHRINK}": 0.5, f"LightGBM/{MINT_SHRINK}": 0.55, "AutoETS": 0.9})
    context = dg.build_asset_context()
    long = reconciled_forecasts(context, base, backtest, metrics, hierarchy.series_keys, hierarchy.structure, hierarchy.series, ForecastSettings())
    meta = context.get_output_metadata("result")
    assert meta["chosen"] == "AutoETS/BottomUp"
    assert "BottomUp, which needs neither residuals nor a solver" in meta["reconciliation_fallback"]
    assert long["is_chosen"].any()

    produced = choose_produced_forecast(_metrics({"AutoETS/BottomUp": 0.5}), ["AutoETS/BottomUp"], {})
    assert produced.used == produced.intended == "AutoETS/BottomUp" and produced.fallback == ""


def test_quantiles_use_bottom_up_errors_when_the_chosen_forecast_has_no_backtest(degenerate_reconciliation_inputs) -> None:
    import dagster as dg

    from forecasting_assets.reconciliation.assets import QuantileConfig, forecast_quantiles

    hierarchy, backtest, base = degenerate_reconciliation_inputs
    reconciled_bt, skipped = reconcile_backtest(backtest, ["LightGBM"], hierarchy.series_keys, hierarchy.structure)
    assert MINT_SHRINK in skipped
    # mint_shrink worked on the future horizon but in no backtest window: no errors of its own
    final = base[["unique_id", "ds"]].assign(yhat=base["LightGBM"], model=f"LightGBM/{MINT_SHRINK}", level="x")
    context = dg.build_asset_context()
    quantiles = forecast_quantiles(context, QuantileConfig(), final, to_long(reconciled_bt, ["unique_id", "ds", "cutoff", "y"]), hierarchy.series, hierarchy.series_keys, ForecastSettings())
    meta = context.get_output_metadata("result")
    assert meta["model"] == f"LightGBM/{MINT_SHRINK}" and meta["residuals_from"] == "LightGBM/BottomUp"
    assert len(quantiles) == len(final) and np.isfinite(quantiles["q0.975"]).all()


def test_quantile_residuals_leave_out_closed_days_of_the_model_they_come_from() -> None:
    from forecasting_assets.reconciliation.assets import quantile_residual_source

    days = pd.date_range("2024-01-01", periods=4, freq="D")
    rows = pd.DataFrame(
        {
            "unique_id": "a",
            "ds": np.tile(days, 2),
            "cutoff": days[0],
            "y": 10.0,
            "yhat": [11.0, 9.0, 100.0, 10.5, 12.0, 8.0, 50.0, 10.0],
            "model": ["LightGBM/BottomUp"] * 4 + ["LightGBM"] * 4,
        }
    )
    closed = pd.DatetimeIndex([days[2]])
    source, residuals = quantile_residual_source(rows, "LightGBM/BottomUp", closed)
    assert source == "LightGBM/BottomUp" and list(residuals["ds"]) == [days[0], days[1], days[3]]
    assert quantile_residual_source(rows, "LightGBM/BottomUp")[1]["yhat"].max() == 100.0  # no closed days: every row
    # only the closed days go: a model whose every row is on a closed day has none, and the next candidate stands in
    only_closed = rows[(rows["model"] == "LightGBM") | (rows["ds"] == days[2])]
    assert quantile_residual_source(only_closed, "LightGBM/BottomUp", closed)[0] == "LightGBM"


def test_backtest_forecasts_metadata_lists_the_series_that_fell_back(monkeypatch: pytest.MonkeyPatch) -> None:
    import dagster as dg

    from forecasting_assets.models import assets as model_assets
    from forecasting_assets.models import lightgbm_global as lgbm
    from forecasting_assets.schedule import backtest_cutoffs
    from forecasting_assets.spec import SourceSpec

    def global_backtest(frame, setup, params, horizon, n_windows, **kwargs) -> pd.DataFrame:  # LightGBM is not under test
        rows = [
            {"unique_id": uid, "ds": cutoff + pd.Timedelta(days=step), "cutoff": cutoff, lgbm.MODEL_NAME: 1.0}
            for cutoff in backtest_cutoffs(frame, horizon, n_windows)
            for uid in frame["unique_id"].unique()
            for step in range(1, horizon + 1)
        ]
        return pd.DataFrame(rows)

    monkeypatch.setattr(model_assets, "_global_inputs", lambda series, *args: (series, None))
    monkeypatch.setattr(lgbm, "backtest_global_model", global_backtest)
    one_empty_day = np.r_[np.full(40, 5.0), 0.0, np.full(29, 5.0)]
    series = _daily({**_healthy(n=3), "one_empty_day": one_empty_day})
    spec = SourceSpec(format="long", files=[], frequency="D", levels=[[]], season_length=SEASON, horizon=HORIZON)
    context = dg.build_asset_context()
    outputs = model_assets.backtest_forecasts(
        context,
        config=model_assets.BacktestConfig(strategies=[lgbm.RECURSIVE]),
        lightgbm_tuning={"best_params": {}},
        hierarchical_series=series,
        exogenous_features=pd.DataFrame(),
        series_features=pd.DataFrame(),
        series_keys=pd.DataFrame(),
        source_spec=spec.to_dict(),
        settings=ForecastSettings(ets_model="MNM", n_windows=3, n_jobs=1),
    )
    backtest_output, strategy_output = list(outputs)
    backtest = backtest_output.value
    assert strategy_output.value["strategies"] == [lgbm.RECURSIVE]
    meta = {key: value.value for key, value in backtest_output.metadata.items()}
    assert meta["statistical_fallback_series"] == 1
    table = meta["statistical_fallbacks"]
    assert "one_empty_day" in table and "AutoETS" in table and "Inappropriate model" in table and "SeasonalNaive" in table
    assert backtest["unique_id"].nunique() == 4 and np.isfinite(backtest[STAT_MODELS].to_numpy()).all()
