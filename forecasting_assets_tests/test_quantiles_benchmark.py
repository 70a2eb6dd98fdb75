"""Quantile forecasts (conformal and AutoETS intervals), M5 keys and the benchmark's forecast table."""

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.benchmarks.m5_accuracy import forecasts_table, main, summarize
from forecasting_assets.benchmarks.measure import MemorySampler
from forecasting_assets.evaluation.metrics import m5_keys
from forecasting_assets.models.statistical import forecast_ets_quantiles
from forecasting_assets.reconciliation.quantiles import M5_QUANTILES, conformal_quantiles, normal_quantiles, quantile_forecasts

Q_COLS = [f"q{q:g}" for q in M5_QUANTILES]


def test_conformal_quantiles_follow_the_residual_distribution():
    rng = np.random.default_rng(0)
    backtest = pd.DataFrame({"unique_id": "a", "yhat": 100.0, "y": 100.0 + rng.normal(5.0, 10.0, 20_000)})
    point = pd.DataFrame({"unique_id": ["a"] * 3, "ds": pd.date_range("2024-01-01", periods=3), "yhat": [50.0, 60.0, 70.0]})
    table = conformal_quantiles(point, backtest)
    # the median is shifted by the median residual (+5); the 97.5 % quantile by 5 + 1.96 sd
    np.testing.assert_allclose(table["q0.5"] - table["yhat"], 5.0, atol=0.5)
    np.testing.assert_allclose(table["q0.975"] - table["yhat"], 5.0 + 1.96 * 10.0, atol=1.0)
    assert (np.diff(table[Q_COLS].to_numpy(), axis=1) >= 0).all()


def test_normal_quantiles_are_centred_with_the_rms_of_the_residuals():
    rng = np.random.default_rng(0)
    errors = rng.normal(0.0, 10.0, 20_000)
    backtest = pd.DataFrame({"unique_id": "a", "yhat": 100.0, "y": 100.0 + errors})
    point = pd.DataFrame({"unique_id": ["a"] * 3 + ["new"], "ds": list(pd.date_range("2024-01-01", periods=3)) + [pd.Timestamp("2024-01-01")], "yhat": [50.0, 60.0, 70.0, 5.0]})
    table = normal_quantiles(point, backtest)
    rms = float(np.sqrt(np.mean(errors**2)))
    a = table[table["unique_id"] == "a"]
    np.testing.assert_allclose(a["q0.5"], a["yhat"])  # centred on the point forecast
    np.testing.assert_allclose(a["q0.975"] - a["yhat"], 1.959964 * rms, rtol=1e-5)
    np.testing.assert_allclose(a["yhat"] - a["q0.025"], 1.959964 * rms, rtol=1e-5)
    # a series without backtest errors gets a zero-width interval; the table is monotone and non-negative
    assert (table.loc[table["unique_id"] == "new", Q_COLS].to_numpy() == 5.0).all()
    assert (np.diff(table[Q_COLS].to_numpy(), axis=1) >= 0).all()
    # empirical coverage on fresh draws from the same error distribution is the nominal one
    fresh = 60.0 + rng.normal(0.0, 10.0, 20_000)
    row = a.iloc[1]
    for q in (0.025, 0.25, 0.75, 0.975):
        assert abs(np.mean(fresh <= row[f"q{q:g}"]) - q) < 0.01
    pd.testing.assert_frame_equal(quantile_forecasts(point, backtest, "normal"), table)
    pd.testing.assert_frame_equal(quantile_forecasts(point, backtest, "empirical"), conformal_quantiles(point, backtest))
    with pytest.raises(ValueError, match="unknown quantile method"):
        quantile_forecasts(point, backtest, "bootstrap")


@pytest.mark.parametrize("method", ["normal", "empirical"])
def test_quantiles_are_non_negative_and_monotone_for_small_series(method):
    backtest = pd.DataFrame({"unique_id": "b", "yhat": [1.0, 2.0, 0.5, 3.0], "y": [0.0, 5.0, 0.0, 0.0]})
    point = pd.DataFrame({"unique_id": ["b"], "ds": [pd.Timestamp("2024-01-01")], "yhat": [0.4]})
    values = quantile_forecasts(point, backtest, method)[Q_COLS].to_numpy()
    assert (values >= 0).all() and (np.diff(values, axis=1) >= 0).all()


def test_ets_interval_quantiles_are_centered_on_the_point_forecast():
    rng = np.random.default_rng(1)
    ds = pd.date_range("2020-01-01", periods=300)
    series = pd.DataFrame({"unique_id": "s", "ds": ds, "y": 50 + 10 * np.sin(2 * np.pi * np.arange(300) / 7) + rng.normal(0, 2, 300)})
    table = forecast_ets_quantiles(series, 7, "D", 7, M5_QUANTILES)
    values = table[Q_COLS].to_numpy()
    assert (np.diff(values, axis=1) > 0).all()
    lower, upper = table["q0.025"], table["q0.975"]
    assert ((upper - lower) > 4 * 1.5).all() and ((upper - lower) < 4 * 4).all()  # roughly ±1.96 sd of noise 2


def test_m5_keys_follow_the_weights_file_layout():
    keys = pd.DataFrame(
        {
            "unique_id": ["Total", "CA", "CA/FOODS_1", "CA_1/FOODS_1", "X1"],
            "level": ["total", "state_id", "state_id/dept_id", "store_id/dept_id", "region"],
            "level_order": [0, 1, 2, 3, 4],
            "state_id": ["CA"] * 4 + [None], "store_id": [None, None, None, "CA_1", None], "dept_id": [None, None, "FOODS_1", "FOODS_1", None],
            "region": [None] * 4 + ["X1"],
        }
    )
    table = m5_keys(keys).set_index("unique_id")
    assert "X1" not in table.index  # not an M5 level
    assert tuple(table.loc["Total"]) == ("Level1", "Total", "X")
    assert tuple(table.loc["CA"]) == ("Level2", "CA", "X")
    assert tuple(table.loc["CA/FOODS_1"]) == ("Level7", "CA", "FOODS_1")
    assert tuple(table.loc["CA_1/FOODS_1"]) == ("Level9", "CA_1", "FOODS_1")


def test_memory_sampler_sees_an_allocation():
    import time

    with MemorySampler(interval=0.01) as sampler:
        start = time.time()
        block = np.ones(50_000_000 // 8)  # 50 MB
        time.sleep(0.1)
        end = time.time()
        del block
    assert sampler.peak_between(start, end) > 50_000_000


def test_summary_checks_the_bar():
    wrmsse = pd.DataFrame(
        {"level": ["__overall__"] * 3, "model": ["SeasonalNaive", "AutoETS/BottomUp", "LightGBM/BottomUp"], "wrmsse": [1.0, 0.8, 0.5]}
    )
    wspl_table = pd.DataFrame({"level": ["__overall__"] * 2, "model": ["chosen", "AutoETS intervals"], "wspl": [0.3, 0.5]})
    summary = summarize(wrmsse, "LightGBM/BottomUp", wspl_table)
    assert summary["bar"] == {"wrmsse <= 0.65 x ES bottom-up": True, "wrmsse <= 0.60 x seasonal naive": True, "wspl <= 0.75 x AutoETS intervals": True}
    worse = summarize(wrmsse.assign(wrmsse=[1.0, 0.8, 0.7]), "LightGBM/BottomUp", wspl_table)
    assert not worse["bar"]["wrmsse <= 0.60 x seasonal naive"]


def test_benchmark_refuses_fewer_than_three_backtest_windows():
    # the first window only supplies residuals to reconcile the second: with two, one window would choose
    with pytest.raises(SystemExit, match="--windows 2: at least 3"):
        main(["--windows", "2"])


@pytest.mark.slow
def test_forecasts_table_has_m5_keys_and_monotone_quantiles(tiny_project):
    table = forecasts_table(tiny_project["home"], tiny_project["source"] / "calendar.csv")
    assert set(table["Level_id"]) == {f"Level{i}" for i in range(1, 13)}
    assert len(table) == 75 * 28
    assert table["d"].str.match(r"^d_\d+$").all()
    assert (np.diff(table[Q_COLS].to_numpy(), axis=1) >= 0).all() and (table[Q_COLS] >= 0).all().all()
    total = table[table["Level_id"] == "Level1"]
    assert (total["Agg_Level_1"] == "Total").all() and (total["Agg_Level_2"] == "X").all()
