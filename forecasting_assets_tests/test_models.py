"""Tests of the forecasting models on small synthetic daily series.

statsforecast wrappers (``models/statistical.py``), the global LightGBM through mlforecast
(``models/lightgbm_global.py``), the Optuna study (``models/tuning.py``) and the backtest cutoffs
(``schedule.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.models import lightgbm_global as lgbm
from forecasting_assets.resources import ForecastSettings
from forecasting_assets.models.statistical import (
    STAT_MODELS,
    backtest_statistical_with_fallbacks,
    clip_negative,
    forecast_statistical,
)
from forecasting_assets.schedule import backtest_cutoffs, periods_per_year

WEEKLY_PROFILE = np.array([1.3, 1.2, 0.9, 0.8, 0.8, 0.9, 1.1])
NOISE_SD = 2.0
SMALL_LGBM = {"n_estimators": 150, "num_leaves": 15, "min_child_samples": 10}


def rmse(actual: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(actual) - np.asarray(predicted)) ** 2)))


def seasonal_naive(train: pd.DataFrame, test: pd.DataFrame, season: int = 7) -> np.ndarray:
    """Reference seasonal naive computed here, independently of statsforecast."""
    out = []
    for uid, ds in zip(test["unique_id"], test["ds"]):
        history = train[train["unique_id"] == uid].sort_values("ds")
        step = (ds - history["ds"].iloc[-1]).days  # 1..h
        out.append(history["y"].to_numpy()[-season:][(step - 1) % season])
    return np.asarray(out)


def _daily(values: dict[str, np.ndarray], start: str = "2023-01-02") -> pd.DataFrame:
    return pd.concat(
        [pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(y), freq="D"), "y": y}) for uid, y in values.items()],
        ignore_index=True,
    )


@pytest.fixture(scope="module")
def seasonal() -> pd.DataFrame:
    """Three strongly weekly-seasonal series (additive noise, sd 2) and one intermittent series; 224 days."""
    rng = np.random.default_rng(0)
    t = np.arange(224)
    values = {
        f"weekly_{i}": level + amp * (WEEKLY_PROFILE[t % 7] - 1) * 3 + rng.normal(0, NOISE_SD, t.size)
        for i, (level, amp) in enumerate([(40, 10), (60, 15), (100, 20)])
    }
    values["sparse"] = (rng.random(t.size) < 0.1) * rng.integers(1, 4, t.size).astype(float)
    return _daily(values)


# --------------------------------------------------------------------------------------------------
# Backtest cutoffs
# --------------------------------------------------------------------------------------------------


def test_backtest_cutoffs_step_back_by_the_horizon() -> None:
    series = _daily({"a": np.zeros(100), "b": np.ones(100)}).sample(frac=1.0, random_state=0)
    last = pd.Timestamp("2023-01-02") + pd.Timedelta(days=99)
    cutoffs = backtest_cutoffs(series, horizon=14, n_windows=3)
    assert cutoffs == [last - pd.Timedelta(days=d) for d in (42, 28, 14)]  # oldest first
    assert all(isinstance(c, pd.Timestamp) for c in cutoffs)
    assert backtest_cutoffs(series, horizon=7, n_windows=1) == [last - pd.Timedelta(days=7)]


def test_backtest_cutoffs_use_periods_not_days_for_weekly_data() -> None:
    weeks = pd.date_range("2022-01-07", periods=30, freq="W-FRI")
    series = pd.DataFrame({"unique_id": "w", "ds": weeks, "y": 1.0})
    assert backtest_cutoffs(series, horizon=4, n_windows=2) == [weeks[-9], weeks[-5]]


def test_backtest_cutoffs_reject_too_short_history() -> None:
    series = _daily({"a": np.zeros(29)})
    with pytest.raises(ValueError, match="too few"):
        backtest_cutoffs(series, horizon=14, n_windows=2)  # needs more than 14 * 2 + 1 periods
    assert len(backtest_cutoffs(_daily({"a": np.zeros(30)}), horizon=14, n_windows=2)) == 2


def test_periods_per_year() -> None:
    assert periods_per_year("D") == 364
    assert periods_per_year("W-SUN") == 52
    assert periods_per_year("MS") == 12


# --------------------------------------------------------------------------------------------------
# statsforecast wrappers
# --------------------------------------------------------------------------------------------------


def test_forecast_statistical_shape_and_no_negatives(seasonal: pd.DataFrame) -> None:
    horizon = 14
    forecasts = forecast_statistical(seasonal, horizon=horizon, freq="D", season_length=7)
    assert list(forecasts.columns) == ["unique_id", "ds", *STAT_MODELS]
    assert forecasts.groupby("unique_id").size().to_dict() == {uid: horizon for uid in seasonal["unique_id"].unique()}
    last = seasonal["ds"].max()
    expected_ds = pd.date_range(last + pd.Timedelta(days=1), periods=horizon, freq="D")
    for _, group in forecasts.groupby("unique_id"):
        assert list(group["ds"]) == list(expected_ds)
    assert forecasts[STAT_MODELS].notna().all().all()
    assert (forecasts[STAT_MODELS] >= 0).all().all()


def test_clip_negative_clips_only_the_given_columns() -> None:
    frame = pd.DataFrame({"unique_id": ["a", "b"], "A": [-1.0, 2.0], "B": [-3.0, 0.5], "keep": [-7.0, 1.0]})
    clipped = clip_negative(frame, ["A", "B"])
    assert clipped["A"].tolist() == [0.0, 2.0]
    assert clipped["B"].tolist() == [0.0, 0.5]
    assert clipped["keep"].tolist() == [-7.0, 1.0]
    assert frame["A"].tolist() == [-1.0, 2.0]  # the input is not modified


def test_forecast_statistical_clips_a_declining_series_at_zero() -> None:
    # a series that already went negative (returns exceeding sales): every model would forecast < 0
    y = np.r_[np.linspace(30, 5, 100), np.full(40, -4.0) + np.tile([0.0, -1.0], 20)]
    forecasts = forecast_statistical(_daily({"returns": y}), horizon=7, freq="D", season_length=7)
    assert (forecasts[STAT_MODELS] >= 0).all().all()
    assert (forecasts["SeasonalNaive"] == 0).all()


def test_seasonal_models_beat_a_naive_forecast_on_weekly_data(seasonal: pd.DataFrame) -> None:
    horizon = 28
    cut = seasonal["ds"].max() - pd.Timedelta(days=horizon)
    weekly = seasonal[seasonal["unique_id"].str.startswith("weekly")]
    train, test = weekly[weekly["ds"] <= cut], weekly[weekly["ds"] > cut]
    forecasts = forecast_statistical(train, horizon=horizon, freq="D", season_length=7)
    scored = test.merge(forecasts, on=["unique_id", "ds"], validate="1:1")
    assert len(scored) == len(test)

    last_value = train.sort_values("ds").groupby("unique_id")["y"].last()
    naive = scored["unique_id"].map(last_value)
    rmse_sn, rmse_naive = rmse(scored["y"], scored["SeasonalNaive"]), rmse(scored["y"], naive)
    rmse_ets = rmse(scored["y"], scored["AutoETS"])
    assert rmse_sn < 0.6 * rmse_naive
    # statsforecast's SeasonalNaive is the textbook one
    np.testing.assert_allclose(scored["SeasonalNaive"], seasonal_naive(train, scored), rtol=1e-9)
    # AutoETS averages the noise out: close to the noise level, better than seasonal naive (~sqrt(2) sd)
    assert rmse_ets < 1.5 * NOISE_SD
    assert rmse_ets < rmse_sn


def test_backtest_statistical_windows(seasonal: pd.DataFrame) -> None:
    horizon, n_windows = 14, 2
    backtest, fallbacks = backtest_statistical_with_fallbacks(seasonal, horizon=horizon, n_windows=n_windows, freq="D", season_length=7)
    assert fallbacks.empty
    assert list(backtest.columns) == ["unique_id", "ds", "cutoff", "y", *STAT_MODELS]
    assert sorted(backtest["cutoff"].unique()) == backtest_cutoffs(seasonal, horizon, n_windows)
    n_series = seasonal["unique_id"].nunique()
    assert len(backtest) == n_series * horizon * n_windows
    # the y column is the actual value, every forecast date is after its cutoff and within the horizon
    actual = backtest.merge(seasonal, on=["unique_id", "ds"], suffixes=("", "_true"))
    np.testing.assert_array_equal(actual["y"], actual["y_true"])
    lead = (backtest["ds"] - backtest["cutoff"]).dt.days
    assert lead.min() == 1 and lead.max() == horizon
    assert (backtest[STAT_MODELS] >= 0).all().all()


# --------------------------------------------------------------------------------------------------
# Global LightGBM
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("freq", "season", "history", "lags", "windows", "date_features"),
    [
        ("D", 7, 300, [1, 2, 3, 7, 14, 21, 28], [7, 28], ["dayofweek", "day", "month", "dayofyear"]),
        ("D", 7, 60, [1, 2, 3, 7, 14], [7], ["dayofweek", "day", "month", "dayofyear"]),
        ("W-SUN", 52, 104, [1, 2, 3], [2], ["week", "month"]),
        ("W", 52, 400, [1, 2, 3, 52, 104], [52], ["week", "month"]),
        ("MS", 12, 60, [1, 2, 3, 12], [12], ["month"]),
    ],
)
def test_feature_setup(freq, season, history, lags, windows, date_features) -> None:
    setup = lgbm.feature_setup(freq, season, history, horizon=13)
    assert setup.freq == freq
    assert setup.lags == lags
    assert setup.rolling_windows == windows
    assert setup.date_features == date_features
    assert max(setup.lags) <= max(1, history // 3)  # a lag never eats more than a third of the history
    assert setup.static_features == [] and setup.exogenous == []
    assert lgbm.FeatureSetup(**setup.to_dict()) == setup


@pytest.fixture(scope="module")
def event_data() -> dict:
    """Four weekly-seasonal series with a multiplicative event effect; events known 28 days ahead."""
    rng = np.random.default_rng(1)
    n, horizon = 300, 28
    dates = pd.date_range("2023-01-01", periods=n + horizon, freq="D")
    event = (rng.random(n + horizon) < 0.08).astype(float)
    event[n - horizon : n] = 0.0
    event[[n - horizon + k for k in (3, 11, 19, 20)]] = 1.0  # events inside the held-back window, 4 weekdays
    series, exog = [], []
    for i in range(4):
        level = 20 + 15 * i
        y = level * WEEKLY_PROFILE[np.arange(n) % 7] * (1 + 0.8 * event[:n]) + rng.normal(0, 0.05 * level, n)
        series.append(pd.DataFrame({"unique_id": f"s{i}", "ds": dates[:n], "y": y}))
        exog.append(pd.DataFrame({"unique_id": f"s{i}", "ds": dates, "event": event}))
    series = pd.concat(series, ignore_index=True)
    keys = pd.DataFrame({"unique_id": [f"s{i}" for i in range(4)], "level_order": [0, 1, 1, 2]})
    cut = dates[n - horizon - 1]
    train = series[series["ds"] <= cut]
    frame, static_cols, exog_cols = lgbm.training_frame(train, pd.concat(exog, ignore_index=True), lgbm.static_table(None, keys))
    setup = lgbm.feature_setup("D", 7, train["ds"].nunique(), horizon)
    setup.static_features, setup.exogenous = static_cols, exog_cols
    return {
        "series": series,
        "train": train,
        "test": series[series["ds"] > cut],
        "exog": pd.concat(exog, ignore_index=True),
        "frame": frame,
        "setup": setup,
        "horizon": horizon,
        "keys": keys,
    }


@pytest.fixture(scope="module")
def fitted(event_data: dict):
    model = lgbm.fit_global_model(event_data["frame"], event_data["setup"], SMALL_LGBM, seed=0)
    forecasts, features = lgbm.predict_global_model(model, event_data["horizon"], event_data["exog"], capture_features=True)
    return model, forecasts, features


def test_training_frame_joins_exogenous_and_statics(event_data: dict) -> None:
    frame, setup = event_data["frame"], event_data["setup"]
    assert setup.static_features == ["level_order"]
    assert setup.exogenous == ["event"]
    assert list(frame.columns) == ["unique_id", "ds", "y", "event", "level_order"]
    assert len(frame) == len(event_data["train"])
    assert frame["event"].notna().all()
    assert frame.groupby("unique_id")["level_order"].first().to_dict() == {"s0": 0, "s1": 1, "s2": 1, "s3": 2}


def test_static_table_prefixes_numeric_series_features() -> None:
    keys = pd.DataFrame({"unique_id": ["a", "b"], "level_order": [0, 1]})
    feats = pd.DataFrame({"unique_id": ["b", "a"], "mean": [2.0, 1.0], "label": ["x", "y"]})
    table = lgbm.static_table(feats, keys)
    assert list(table.columns) == ["unique_id", "level_order", "ts_mean"]
    assert table.set_index("unique_id")["ts_mean"].to_dict() == {"a": 1.0, "b": 2.0}


def test_hierarchy_codes_number_each_value_and_zero_where_a_series_spans_several() -> None:
    keys = pd.DataFrame(
        {
            "unique_id": ["Total", "CA", "TX", "CA_1", "CA_2/FOODS", "FOODS"],
            "level": ["total", "state_id", "state_id", "store_id", "store_id/cat_id", "cat_id"],
            "level_order": [0, 1, 1, 2, 3, 1],
            "state_id": [None, "CA", "TX", "CA", "CA", None],
            "store_id": [None, None, None, "CA_1", "CA_2", None],
            "cat_id": [None, None, None, None, "FOODS", "FOODS"],
        }
    )
    codes = lgbm.hierarchy_codes(keys).set_index("unique_id")
    assert list(codes.columns) == ["code_state_id", "code_store_id", "code_cat_id"]
    assert codes.astype(int).to_dict("list") == {
        "code_state_id": [0, 1, 2, 1, 1, 0],  # CA 1, TX 2 (sorted), 0 where a series spans every state
        "code_store_id": [0, 0, 0, 1, 2, 0],
        "code_cat_id": [0, 0, 0, 0, 1, 1],
    }
    for column in codes.columns:  # categories every code from 0: a category's code is its value
        assert isinstance(codes[column].dtype, pd.CategoricalDtype)
        assert list(codes[column].cat.categories) == list(range(len(codes[column].cat.categories)))
        np.testing.assert_array_equal(codes[column].cat.codes.to_numpy(), codes[column].astype(int).to_numpy())
    table = lgbm.static_table(pd.DataFrame({"unique_id": keys["unique_id"], "mean": 1.0}), keys)
    assert list(table.columns) == ["unique_id", "level_order", "ts_mean", "code_state_id", "code_store_id", "code_cat_id"]
    frame, static_cols, _ = lgbm.training_frame(pd.DataFrame({"unique_id": ["CA_1", "TX"], "ds": pd.Timestamp("2024-01-01"), "y": 1.0}), None, table)
    assert static_cols == list(table.columns[1:])
    assert frame["ts_mean"].dtype == np.float32 and isinstance(frame["code_store_id"].dtype, pd.CategoricalDtype)  # categories stay categories


def test_series_code_numbers_each_series_in_sorted_order() -> None:
    keys = pd.DataFrame({"unique_id": ["b", "Total", "a"], "level_order": [1, 0, 1], "dept_id": ["D", None, "D"]})
    codes = lgbm.series_code(keys).set_index("unique_id")["code_series"]
    assert codes.astype(int).to_dict() == {"b": 3, "Total": 1, "a": 2}  # sorted: Total, a, b
    assert isinstance(codes.dtype, pd.CategoricalDtype) and list(codes.cat.categories) == [0, 1, 2, 3]
    np.testing.assert_array_equal(codes.cat.codes.to_numpy(), codes.astype(int).to_numpy())
    assert list(lgbm.static_table(None, keys).columns) == ["unique_id", "level_order", "code_dept_id"]
    assert list(lgbm.static_table(None, keys, with_series_code=True).columns) == ["unique_id", "level_order", "code_dept_id", "code_series"]


def test_series_code_only_up_to_its_series_budget() -> None:
    assert ForecastSettings().with_series_code(154)  # M5 store × department
    assert not ForecastSettings().with_series_code(42_840)  # M5 item level
    assert not ForecastSettings(series_code_max_series=0).with_series_code(154)


def _two_departments(n: int = 300, horizon: int = 28, event_share: float = 0.08) -> dict:
    """Eight series of the same levels and weekly shape in two departments: A's sales double on event days,
    B's do not move. Nothing but the department tells the two apart ahead of an event."""
    rng = np.random.default_rng(3)
    dates = pd.date_range("2023-01-01", periods=n + horizon, freq="D")
    event = (rng.random(n + horizon) < event_share).astype(float)
    event[[n + k for k in (2, 9, 16, 23)]] = 1.0  # events inside the held-back window
    ids = [f"{dept}_{k}" for dept in "AB" for k in range(4)]
    series, exog = [], []
    for uid in ids:
        level = 30 + 10 * int(uid[-1])
        lift = 1.0 if uid.startswith("A") else 0.0
        y = level * WEEKLY_PROFILE[np.arange(n + horizon) % 7] * (1 + lift * event) + rng.normal(0, 0.05 * level, n + horizon)
        series.append(pd.DataFrame({"unique_id": uid, "ds": dates, "y": y}))
        exog.append(pd.DataFrame({"unique_id": uid, "ds": dates, "event": event}))
    series, exog = pd.concat(series, ignore_index=True), pd.concat(exog, ignore_index=True)
    keys = pd.DataFrame({"unique_id": ids, "level": "dept_id/item_id", "level_order": 1, "dept_id": [uid[0] for uid in ids]})
    cut = dates[n - 1]
    return {"train": series[series["ds"] <= cut], "test": series[series["ds"] > cut], "exog": exog, "keys": keys, "horizon": horizon}


def _fit_on_statics(data: dict, statics: pd.DataFrame):
    """The global model fitted on ``data``'s history with ``statics``: (model, forecasts, RMSE on the held-back days)."""
    frame, static_cols, exog_cols = lgbm.training_frame(data["train"], data["exog"], statics)
    setup = lgbm.feature_setup("D", 7, data["train"]["ds"].nunique(), data["horizon"])
    setup.static_features, setup.exogenous = static_cols, exog_cols
    model = lgbm.fit_global_model(frame, setup, SMALL_LGBM, seed=0)
    forecasts, _ = lgbm.predict_global_model(model, data["horizon"], data["exog"])
    scored = data["test"].merge(forecasts, on=["unique_id", "ds"], validate="1:1")
    return model, forecasts, rmse(scored["y"], scored[lgbm.MODEL_NAME])


def test_hierarchy_codes_let_one_model_learn_what_a_department_shares() -> None:
    """With the department's code the global model forecasts A's event-day peaks and B's flat days; without
    it, it blurs the two departments' responses."""
    data = _two_departments()
    errors = {}
    for name, keys in (("with codes", data["keys"]), ("without", data["keys"].drop(columns="dept_id"))):
        model, forecasts, errors[name] = _fit_on_statics(data, lgbm.static_table(None, keys))
        if name == "with codes":  # the nightly refresh reads the statics back from the model: the same forecast
            history, _, _ = lgbm.training_frame(data["train"], data["exog"], model.statics())
            again, _ = lgbm.predict_global_model(model, data["horizon"], data["exog"], history=history)
            pd.testing.assert_frame_equal(again, forecasts)
    assert errors["with codes"] < 0.5 * errors["without"], errors


def test_series_code_lets_one_model_learn_a_series_own_response() -> None:
    """A source without hierarchy columns: only the series' own code tells the series that double on event
    days from those that do not. (900 days with events on 15 % of them: LightGBM splits a categorical of more
    than four values only where each value has 100 rows, min_data_per_group; 2.8 against 5.5 when written.)"""
    data = _two_departments(n=900, event_share=0.15)
    flat = data["keys"].drop(columns="dept_id")
    errors = {name: _fit_on_statics(data, lgbm.static_table(None, flat, with_series_code=with_code))[2] for name, with_code in (("with series code", True), ("without", False))}
    assert errors["with series code"] < 0.7 * errors["without"], errors


def test_future_exogenous_fills_missing_calendar_with_zero() -> None:
    exog = pd.DataFrame({"unique_id": ["a", "a"], "ds": pd.to_datetime(["2024-01-02", "2024-01-03"]), "event": [1.0, 1.0]})
    future = lgbm.future_exogenous(exog, np.array(["a", "b"]), pd.Timestamp("2024-01-01"), 4, "D")
    assert len(future) == 8
    a = future[future["unique_id"] == "a"]["event"].tolist()
    assert a == [1.0, 1.0, 0.0, 0.0]
    assert (future[future["unique_id"] == "b"]["event"] == 0.0).all()
    assert lgbm.future_exogenous(None, np.array(["a"]), pd.Timestamp("2024-01-01"), 4, "D") is None


def test_global_model_forecast_shape(fitted, event_data: dict) -> None:
    model, forecasts, _ = fitted
    horizon = event_data["horizon"]
    assert list(forecasts.columns) == ["unique_id", "ds", lgbm.MODEL_NAME]
    assert forecasts.groupby("unique_id").size().to_dict() == {f"s{i}": horizon for i in range(4)}
    assert set(forecasts["ds"]) == set(event_data["test"]["ds"])
    assert (forecasts[lgbm.MODEL_NAME] >= 0).all()
    assert model.last_date == event_data["train"]["ds"].max()


def test_global_model_beats_seasonal_naive_with_events(fitted, event_data: dict) -> None:
    _, forecasts, _ = fitted
    test, train = event_data["test"], event_data["train"]
    scored = test.merge(forecasts, on=["unique_id", "ds"], validate="1:1")
    rmse_lgbm = rmse(scored["y"], scored[lgbm.MODEL_NAME])
    rmse_sn = rmse(scored["y"], seasonal_naive(train, scored))
    assert rmse_lgbm < 0.5 * rmse_sn
    # the event days are forecast higher than the same weekday without an event
    exog = event_data["exog"].drop_duplicates("ds").set_index("ds")["event"]
    scored["event"] = scored["ds"].map(exog)
    scored["dow"] = scored["ds"].dt.dayofweek
    lift = scored.groupby(["unique_id", "dow", "event"])[lgbm.MODEL_NAME].mean().unstack("event").dropna()
    assert len(lift) > 0 and (lift[1.0] > lift[0.0]).mean() >= 0.9


def test_captured_features_one_row_per_series_and_step(fitted, event_data: dict) -> None:
    model, forecasts, features = fitted
    horizon = event_data["horizon"]
    assert features is not None
    assert list(features.columns[:2]) == ["unique_id", "ds"]
    assert len(features) == 4 * horizon
    assert not features.duplicated(["unique_id", "ds"]).any()
    keys = features[["unique_id", "ds"]].sort_values(["unique_id", "ds"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(keys, forecasts[["unique_id", "ds"]].sort_values(["unique_id", "ds"]).reset_index(drop=True))
    booster = model.mlf.models_[lgbm.MODEL_NAME]
    assert set(booster.feature_name_) <= set(features.columns)
    assert {"event", "level_order", "lag1", "dayofweek"} <= set(features.columns)
    # the rows are aligned: the event flag and weekday seen at each step are those of that row's date
    exog = event_data["exog"].set_index(["unique_id", "ds"])["event"]
    seen = features.set_index(["unique_id", "ds"])["event"]
    np.testing.assert_array_equal(seen.to_numpy(), exog.reindex(seen.index).to_numpy())
    assert (features["dayofweek"].to_numpy() == pd.DatetimeIndex(features["ds"]).dayofweek).all()
    static = features.groupby("unique_id")["level_order"].unique().map(list).to_dict()
    assert static == {"s0": [0], "s1": [1], "s2": [1], "s3": [2]}


def test_predict_without_capture_returns_no_features(fitted, event_data: dict) -> None:
    model, forecasts, _ = fitted
    again, features = lgbm.predict_global_model(model, event_data["horizon"], event_data["exog"])
    assert features is None
    pd.testing.assert_frame_equal(again, forecasts)  # deterministic


def test_backtest_global_model_has_the_cutoffs(event_data: dict) -> None:
    horizon, n_windows = 14, 2
    backtest = lgbm.backtest_global_model(event_data["frame"], event_data["setup"], {"n_estimators": 40}, horizon, n_windows)
    assert list(backtest.columns) == ["unique_id", "ds", "cutoff", "y", lgbm.MODEL_NAME]
    assert sorted(backtest["cutoff"].unique()) == backtest_cutoffs(event_data["frame"], horizon, n_windows)
    assert len(backtest) == 4 * horizon * n_windows
    lead = (backtest["ds"] - backtest["cutoff"]).dt.days
    assert lead.min() == 1 and lead.max() == horizon
    assert (backtest[lgbm.MODEL_NAME] >= 0).all()


def test_lags_ge_horizon_setup_uses_only_lags_of_at_least_the_horizon(event_data: dict) -> None:
    setup = lgbm.strategy_setup(event_data["setup"], lgbm.LAGS_GE_HORIZON)
    horizon = event_data["horizon"]
    assert setup.strategy == lgbm.LAGS_GE_HORIZON and min(setup.lags) == horizon and setup.rolling_lag == horizon
    assert max(setup.lags) <= setup.history_length // 3
    assert setup.static_features == event_data["setup"].static_features and setup.exogenous == event_data["setup"].exogenous
    with pytest.raises(ValueError, match="unknown LightGBM strategy"):
        lgbm.strategy_setup(event_data["setup"], "direct-ish")


def test_lags_ge_horizon_forecasts_from_actuals_only_and_recursive_from_its_own_forecasts(event_data: dict) -> None:
    """What the strategies mean: at every step, the lags_ge_horizon member sees lags that are actuals; the
    recursive member's lag 1 at step 2 is its own step-1 forecast (standardized), not an actual."""
    model = lgbm.fit_global_model(event_data["frame"], event_data["setup"], SMALL_LGBM, strategies=list(lgbm.STRATEGIES))
    _, features = lgbm.predict_global_model(model, event_data["horizon"], event_data["exog"], capture_features=True)
    direct = features[features["strategy"] == lgbm.LAGS_GE_HORIZON]
    horizon = event_data["horizon"]
    train = event_data["train"].set_index(["unique_id", "ds"])["y"]
    mean_std = np.asarray(model._scaler().scaler_.stats_)
    stats = pd.DataFrame(mean_std, index=np.asarray(model.mlf.ts.uids), columns=["mean", "std"])
    lagged = direct.set_index(["unique_id", "ds"])[f"lag{horizon}"]
    source = [(u, d - pd.Timedelta(days=horizon)) for u, d in lagged.index]
    owners = lagged.index.get_level_values(0)
    detrended = train.reindex(source).to_numpy() / model._detrend().trend([u for u, _ in source], [d for _, d in source])
    actual = (detrended - stats["mean"].reindex(owners).to_numpy()) / stats["std"].reindex(owners).to_numpy()
    np.testing.assert_allclose(lagged.to_numpy(), actual, rtol=1e-6)  # every step: the actual of horizon days before
    recursive = features[features["strategy"] == lgbm.RECURSIVE]
    second_day = recursive["ds"].min() + pd.Timedelta(days=1)
    lag1 = recursive.loc[recursive["ds"] == second_day, "lag1"].to_numpy()
    last = train.groupby(level=0).tail(1)
    last_actual = (last.to_numpy() / model._detrend().trend(last.index.get_level_values(0), last.index.get_level_values(1)) - stats["mean"].reindex(last.index.get_level_values(0)).to_numpy()) / stats["std"].reindex(last.index.get_level_values(0)).to_numpy()
    last_actual = pd.Series(last_actual, index=last.index.get_level_values(0))
    assert not np.allclose(lag1, last_actual.sort_index().to_numpy())


def test_a_model_of_several_strategies_forecasts_their_mean(event_data: dict) -> None:
    both = lgbm.fit_global_model(event_data["frame"], event_data["setup"], SMALL_LGBM, strategies=list(lgbm.STRATEGIES))
    assert both.strategies() == list(lgbm.STRATEGIES)
    singles = [lgbm.predict_global_model(lgbm.fit_global_model(event_data["frame"], event_data["setup"], SMALL_LGBM, strategies=[s]), event_data["horizon"], event_data["exog"])[0] for s in lgbm.STRATEGIES]
    mean, _ = lgbm.predict_global_model(both, event_data["horizon"], event_data["exog"])
    np.testing.assert_allclose(mean[lgbm.MODEL_NAME], (singles[0][lgbm.MODEL_NAME] + singles[1][lgbm.MODEL_NAME]) / 2, rtol=1e-9)
    # the backtest of the mean keeps each member's column on request, and its mean is the model's column
    backtest = lgbm.backtest_global_model(event_data["frame"], event_data["setup"], {"n_estimators": 40}, 14, 2, strategies=list(lgbm.STRATEGIES), keep_members=True)
    members = [lgbm.member_column(s) for s in lgbm.STRATEGIES]
    np.testing.assert_allclose(backtest[lgbm.MODEL_NAME], backtest[members].mean(axis=1))
    # a model pickled before strategies existed has no extra_members attribute: it is one recursive member
    old = lgbm.fit_global_model(event_data["frame"], event_data["setup"], SMALL_LGBM)
    del old.__dict__["extra_members"]
    assert old.strategies() == [lgbm.RECURSIVE] and len(old.members()) == 1


def test_a_model_of_several_parameter_sets_forecasts_the_mean_of_their_models(event_data: dict) -> None:
    """A list of k parameter sets: k LightGBM models per strategy, seeded seed, seed + 1, …. A lags ≥ horizon
    member forecasts their mean; a recursive member forecasts step 1 as their mean and feeds that mean (not
    each model's own forecast) to the next step. Backtests the same way. The same parameters twice differ
    by their seed (row and column sampling), so the mean is not one model twice."""
    frame, setup, horizon, exog = event_data["frame"], event_data["setup"], event_data["horizon"], event_data["exog"]
    other = {"n_estimators": 100, "num_leaves": 7, "min_child_samples": 5}
    sets = [SMALL_LGBM, other, SMALL_LGBM]
    averaged = lgbm.fit_global_model(frame, setup, sets, seed=5, strategies=list(lgbm.STRATEGIES))
    assert averaged.parameter_sets() == sets
    assert [len(lgbm.boosters(mlf.models_[lgbm.MODEL_NAME])) for _, mlf in averaged.members()] == [3, 3]

    def forecast(strategy: str, params, seed: int) -> pd.DataFrame:
        model = lgbm.fit_global_model(frame, setup, params, seed=seed, strategies=[strategy])
        return lgbm.predict_global_model(model, horizon, exog)[0]

    direct = [forecast(lgbm.LAGS_GE_HORIZON, params, seed)[lgbm.MODEL_NAME].to_numpy() for params, seed in zip(sets, (5, 6, 7))]
    assert not np.allclose(direct[0], direct[2])  # the same parameters, another seed: another model
    assert min(single.min() for single in direct) > 0  # no clipping at 0 in play
    direct_mean = forecast(lgbm.LAGS_GE_HORIZON, sets, 5)[lgbm.MODEL_NAME]
    np.testing.assert_allclose(direct_mean, np.mean(direct, axis=0), rtol=1e-6)

    singles = [forecast(lgbm.RECURSIVE, params, seed) for params, seed in zip(sets, (5, 6, 7))]
    recursive = forecast(lgbm.RECURSIVE, sets, 5)
    first = recursive["ds"] == recursive["ds"].min()
    np.testing.assert_allclose(recursive.loc[first, lgbm.MODEL_NAME], np.mean([f.loc[first, lgbm.MODEL_NAME] for f in singles], axis=0), rtol=1e-6)
    later = np.mean([f.loc[~first, lgbm.MODEL_NAME] for f in singles], axis=0)
    assert not np.allclose(recursive.loc[~first, lgbm.MODEL_NAME], later, rtol=1e-6)
    # the model of both strategies averages its members as before, each member the mean of its models
    both, _ = lgbm.predict_global_model(averaged, horizon, exog)
    np.testing.assert_allclose(both[lgbm.MODEL_NAME], (recursive[lgbm.MODEL_NAME] + direct_mean) / 2, rtol=1e-6)

    small = {"n_estimators": 40}
    one, two = (lgbm.backtest_global_model(frame, setup, small, 14, 2, seed=seed, strategies=[lgbm.LAGS_GE_HORIZON]) for seed in (5, 6))
    pair = lgbm.backtest_global_model(frame, setup, [small, small], 14, 2, seed=5, strategies=[lgbm.LAGS_GE_HORIZON])
    np.testing.assert_allclose(pair[lgbm.MODEL_NAME], (one[lgbm.MODEL_NAME] + two[lgbm.MODEL_NAME]) / 2, rtol=1e-6)
    # one set in a list is one plain model; an empty list is refused
    assert lgbm.parameter_sets(SMALL_LGBM) == [SMALL_LGBM] == lgbm.parameter_sets([SMALL_LGBM])
    with pytest.raises(ValueError, match="at least one LightGBM parameter set"):
        lgbm.make_mlforecast(setup, [])


def test_choose_strategies_picks_the_option_with_the_best_backtest_score(event_data: dict) -> None:
    from forecasting_assets.models.assets import backtest_wrmsse
    from forecasting_assets.resources import ForecastSettings

    backtest = lgbm.backtest_global_model(event_data["frame"], event_data["setup"], {"n_estimators": 40}, 14, 2, strategies=list(lgbm.STRATEGIES), keep_members=True)
    keys = event_data["keys"].assign(level=lambda t: t["level_order"].map({0: "total", 1: "mid", 2: "bottom"}))
    score = lambda scored, columns: backtest_wrmsse(scored, event_data["train"], keys, ForecastSettings(), columns)  # noqa: E731
    chosen, scores = lgbm.choose_strategies(backtest, list(lgbm.STRATEGIES), score)
    options = lgbm.strategy_options(list(lgbm.STRATEGIES))
    assert set(scores) == {lgbm.RECURSIVE, lgbm.LAGS_GE_HORIZON, "+".join(lgbm.STRATEGIES)} == set(options)
    assert all(np.isfinite(v) and v > 0 for v in scores.values())
    assert chosen == options[min(scores, key=scores.get)][0]
    # a broken member loses: its forecasts doubled, it can only be chosen if it were better than the rest
    broken = backtest.assign(**{lgbm.member_column(lgbm.LAGS_GE_HORIZON): backtest[lgbm.member_column(lgbm.LAGS_GE_HORIZON)] * 3})
    broken[lgbm.MODEL_NAME] = broken[[lgbm.member_column(s) for s in lgbm.STRATEGIES]].mean(axis=1)
    assert lgbm.choose_strategies(broken, list(lgbm.STRATEGIES), score)[0] == [lgbm.RECURSIVE]
    # one strategy: nothing to choose, nothing scored
    assert lgbm.choose_strategies(backtest, [lgbm.RECURSIVE], score) == ([lgbm.RECURSIVE], {})


def test_closed_days_are_found_on_the_top_level_and_left_out_of_backtest_scores(event_data: dict) -> None:
    """A day the business was closed (every series sells 0) is found from the top level, not a weekday low;
    a forecast that is right on every open day wins the backtest score over one that is a little off every
    day, however wrong it was on the closed day (with the rule off, the closed day decides)."""
    from forecasting_assets.evaluation.metrics import closed_days, without_days
    from forecasting_assets.models.assets import backtest_wrmsse
    from forecasting_assets.resources import ForecastSettings

    keys = event_data["keys"].assign(level=lambda t: t["level_order"].map({0: "total", 1: "mid", 2: "bottom"}))
    series = event_data["series"].copy()
    closed = series["ds"].max() - pd.Timedelta(days=10)
    series.loc[series["ds"] == closed, "y"] = 0.0
    assert list(closed_days(series, keys, 0.01)) == [closed]
    assert list(closed_days(series, keys.iloc[0:0], 0.01)) == [closed]  # without keys: the sum of every series
    assert closed_days(series, keys, 0.0).empty
    assert closed_days(event_data["series"], keys, 0.01).empty  # weekly lows and event days are open days

    window = series[series["ds"] > series["ds"].max() - pd.Timedelta(days=14)].assign(cutoff=series["ds"].max() - pd.Timedelta(days=14))
    right_when_open = np.where(window["ds"] == closed, window.groupby("unique_id")["y"].transform("mean") * 3, window["y"])
    scored = window.assign(right_when_open=right_when_open, a_little_off=window["y"] * 1.15 + 1.0)
    assert len(without_days(scored, pd.DatetimeIndex([closed]))) == len(scored) - 4
    columns = ["right_when_open", "a_little_off"]
    with_rule = backtest_wrmsse(scored, series, keys, ForecastSettings(), columns)
    without_rule = backtest_wrmsse(scored, series, keys, ForecastSettings(closed_day_share=0.0), columns)
    assert with_rule["right_when_open"] == 0.0 < with_rule["a_little_off"]
    assert without_rule["right_when_open"] > without_rule["a_little_off"]


# --------------------------------------------------------------------------------------------------
# Optuna tuning
# --------------------------------------------------------------------------------------------------


def test_tune_persists_and_resumes_the_study(event_data: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optuna

    from forecasting_assets.models.tuning import _defaults_as_trial, tune

    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tmp_path))
    frame = event_data["frame"]
    frame = frame[frame["unique_id"].isin(["s0", "s3"]) & (frame["ds"] > frame["ds"].max() - pd.Timedelta(days=150))]
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    kwargs = dict(setup=event_data["setup"], horizon=7, n_windows=1, n_trials=2, timeout_s=120, storage_url=storage, study_name="lgbm-test")

    first = tune(frame, **kwargs)
    assert (tmp_path / "optuna.db").exists()
    assert first["n_trials_total"] == 2
    assert first["n_trials_this_run"] == 2
    assert first["n_trials_complete"] == 2
    assert np.isfinite(first["best_value"]) and first["best_value"] > 0

    second = tune(frame, **kwargs)
    assert second["n_trials_total"] == 4
    assert second["n_trials_this_run"] == 2
    assert second["best_value"] <= first["best_value"]
    assert second["study_name"] == "lgbm-test" and second["storage"] == storage

    study = optuna.load_study(study_name="lgbm-test", storage=storage)
    assert len(study.trials) == 4
    # the very first trial is the default parameter set (enqueued once, not on the resumed run)
    assert study.trials[0].params == _defaults_as_trial()
    assert study.trials[2].params != _defaults_as_trial()
    # the summary ranks every distinct trial, best first: the parameters the global model averages
    assert second["top_values"] == sorted(t.value for t in study.trials)
    assert second["top_params"][0] == second["best_params"] and second["top_trials"][0] == second["best_trial"]
    assert [study.trials[n].params for n in second["top_trials"]] == second["top_params"]


def test_ensemble_params_repeats_the_best_trial_or_takes_the_best_trials_in_turn() -> None:
    from types import SimpleNamespace

    from forecasting_assets.models.tuning import best_distinct_trials, ensemble_params

    a, b, c = {"num_leaves": 15}, {"num_leaves": 31}, {"num_leaves": 63}
    summary = {"best_params": a, "top_params": [a, b, c]}
    assert ensemble_params(summary, 1) == [a]
    assert ensemble_params(summary, 3) == [a, a, a]  # the default: the best parameters, one seed per model
    assert ensemble_params(summary, 2, n_trials=3) == [a, b]
    assert ensemble_params(summary, 5, n_trials=2) == [a, b, a, b, a]  # the best trials in turn
    assert ensemble_params(summary, 4, n_trials=9) == [a, b, c, a]  # fewer trials than asked: those there are
    assert ensemble_params({"best_params": b}, 2, n_trials=3) == [b, b]  # a summary from before top_params
    with pytest.raises(ValueError, match="n_models and n_trials must be at least 1"):
        ensemble_params(summary, 0)
    trials = [SimpleNamespace(value=v, number=n, params=p) for n, (v, p) in enumerate([(0.5, b), (0.4, a), (0.4, a), (0.6, c)])]
    assert [t.number for t in best_distinct_trials(trials, 10)] == [1, 0, 3]  # a duplicate of a set counts once
    assert [t.number for t in best_distinct_trials(trials, 2)] == [1, 0]


def test_predict_from_fresh_history_reuses_the_model_without_refitting(event_data: dict) -> None:
    """The nightly refresh: the fitted model forecasts after newer history, with the same scaler convention."""
    model = lgbm.fit_global_model(event_data["frame"], event_data["setup"], SMALL_LGBM, seed=0)
    trained_stats = np.asarray(model._scaler().scaler_.stats_)[:, 1]
    plain, _ = lgbm.predict_global_model(model, event_data["horizon"], event_data["exog"])
    same, _ = lgbm.predict_global_model(model, event_data["horizon"], event_data["exog"], history=event_data["frame"])
    pd.testing.assert_frame_equal(same, plain)  # the same history gives the same forecast
    np.testing.assert_allclose(model.target_std().to_numpy(), trained_stats, rtol=1e-9)  # SHAP's std convention

    newer_days = event_data["test"].groupby("unique_id").head(7)
    newer, _, _ = lgbm.training_frame(pd.concat([event_data["train"], newer_days]), event_data["exog"], model.statics())
    later, _ = lgbm.predict_global_model(model, 7, event_data["exog"], history=newer)
    assert later["ds"].min() == newer_days["ds"].max() + pd.Timedelta(days=1)
    assert model.last_date == event_data["train"]["ds"].max()  # the model itself was not refit
    scored = event_data["test"].merge(later, on=["unique_id", "ds"])
    assert len(scored) == 4 * 7 and rmse(scored["y"], scored[lgbm.MODEL_NAME]) < 0.5 * rmse(scored["y"], seasonal_naive(event_data["train"], scored))


def test_partition_ids_split_the_bottom_level_from_the_aggregated_levels(event_data: dict) -> None:
    frame = event_data["frame"]  # level orders 0, 1, 1, 2: s3 is the bottom level
    assert [list(ids) for ids in lgbm.partition_ids(frame, lgbm.BOTTOM_PARTITION)] == [["s0", "s1", "s2"], ["s3"]]
    assert [list(ids) for ids in lgbm.partition_ids(frame, lgbm.NO_PARTITION)] == [["s0", "s1", "s2", "s3"]]
    one_level = frame.assign(level_order=np.float32(0))
    assert len(lgbm.partition_ids(one_level, lgbm.BOTTOM_PARTITION)) == 1  # nothing to split
    with pytest.raises(ValueError, match="unknown LightGBM partition 'levels'"):
        lgbm.partition_ids(frame, "levels")
    with pytest.raises(ValueError, match="needs the level_order static column"):
        lgbm.partition_ids(frame.drop(columns="level_order"), lgbm.BOTTOM_PARTITION)


def test_a_partitioned_model_forecasts_each_group_with_a_model_of_its_own_series(event_data: dict) -> None:
    """Each part is the model fitted on its group's rows alone: its forecasts (and backtest) are that model's,
    not those of the model over every series; serving, statics and normalization cover every series."""
    frame, setup, exog, horizon = event_data["frame"], event_data["setup"], event_data["exog"], event_data["horizon"]
    strategies = list(lgbm.STRATEGIES)
    model = lgbm.fit_global_model(frame, setup, SMALL_LGBM, strategies=strategies, partition=lgbm.BOTTOM_PARTITION)
    assert isinstance(model, lgbm.PartitionedGlobalModel) and model.partition == lgbm.BOTTOM_PARTITION
    assert [list(ids) for ids in model.part_ids()] == [["s0", "s1", "s2"], ["s3"]]
    assert model.strategies() == strategies and model.last_date == frame["ds"].max()

    forecasts, features = lgbm.predict_global_model(model, horizon, exog, capture_features=True)
    assert len(forecasts) == 4 * horizon and not forecasts.duplicated(["unique_id", "ds"]).any()
    assert len(features) == 4 * horizon * len(strategies)
    alone = []
    for ids in model.part_ids():
        part_model = lgbm.fit_global_model(frame[frame["unique_id"].isin(ids)].reset_index(drop=True), setup, SMALL_LGBM, strategies=strategies)
        alone.append(lgbm.predict_global_model(part_model, horizon, exog)[0])
    expected = pd.concat(alone, ignore_index=True)
    pd.testing.assert_frame_equal(forecasts.sort_values(["unique_id", "ds"], ignore_index=True), expected.sort_values(["unique_id", "ds"], ignore_index=True))
    unpartitioned, _ = lgbm.predict_global_model(lgbm.fit_global_model(frame, setup, SMALL_LGBM, strategies=strategies), horizon, exog)
    assert not np.allclose(unpartitioned[lgbm.MODEL_NAME], expected.sort_values(["unique_id", "ds"])[lgbm.MODEL_NAME])

    # the nightly refresh: the same history gives the same forecast; statics and stds cover every series
    again, _ = lgbm.predict_global_model(model, horizon, exog, history=frame)
    pd.testing.assert_frame_equal(again, forecasts)
    assert sorted(model.statics()["unique_id"]) == ["s0", "s1", "s2", "s3"]
    assert sorted(model.target_std().index) == ["s0", "s1", "s2", "s3"]
    scale = model.sales_scale(np.array(["s3", "s0"]), np.array([frame["ds"].max()] * 2))
    np.testing.assert_allclose(scale, [model.parts[1].sales_scale(["s3"], [frame["ds"].max()])[0], model.parts[0].sales_scale(["s0"], [frame["ds"].max()])[0]])

    backtest = lgbm.backtest_global_model(frame, setup, {"n_estimators": 40}, 14, 2, strategies=strategies, keep_members=True, partition=lgbm.BOTTOM_PARTITION)
    per_group = pd.concat(
        [lgbm.backtest_global_model(frame[frame["unique_id"].isin(ids)], setup, {"n_estimators": 40}, 14, 2, strategies=strategies, keep_members=True) for ids in model.part_ids()],
        ignore_index=True,
    )
    pd.testing.assert_frame_equal(backtest, per_group)
    assert len(backtest) == 4 * 14 * 2


def test_a_partitioned_model_serves_the_same_after_a_round_trip_through_the_registry_wrapper(event_data: dict) -> None:
    """What MLflow stores: the pyfunc wrapper, cloudpickled; loaded back, it forecasts what the model did
    from a frame of history rows (with y) and future exogenous rows (without)."""
    import cloudpickle

    from forecasting_assets.models.registry import GlobalForecaster

    frame, horizon = event_data["frame"], event_data["horizon"]
    model = lgbm.fit_global_model(frame, event_data["setup"], SMALL_LGBM, partition=lgbm.BOTTOM_PARTITION)
    expected, _ = lgbm.predict_global_model(model, horizon, event_data["exog"], history=frame)
    loaded = cloudpickle.loads(cloudpickle.dumps(GlobalForecaster(model)))
    assert isinstance(loaded.model, lgbm.PartitionedGlobalModel) and loaded.model.partition == lgbm.BOTTOM_PARTITION
    future = lgbm.future_exogenous(event_data["exog"], np.array(["s0", "s1", "s2", "s3"]), frame["ds"].max(), horizon, "D")
    served = loaded.predict(None, pd.concat([frame, future.assign(y=np.nan)], ignore_index=True), params={"h": horizon})
    pd.testing.assert_frame_equal(served, expected)


def test_local_linear_detrend_takes_out_each_series_line_and_puts_it_back() -> None:
    from forecasting_assets.models.target_transforms import LocalLinearDetrend

    ds = pd.date_range("2024-01-01", periods=200, freq="D")
    t = np.arange(200, dtype=float)
    weekly = 1 + 0.3 * np.sin(2 * np.pi * t / 7)
    frame = pd.concat(
        [
            pd.DataFrame({"unique_id": "growing", "ds": ds, "y": (100 + 2 * t) * weekly}),
            pd.DataFrame({"unique_id": "falling", "ds": ds, "y": np.maximum(50 - 0.4 * t, 0.0)}),  # the line crosses 0
            pd.DataFrame({"unique_id": "flat_with_gap", "ds": ds, "y": np.where(t == 5, np.nan, 10.0)}),
        ],
        ignore_index=True,
    )
    detrend = LocalLinearDetrend()
    detrend.set_column_names("unique_id", "ds", "y")
    out = detrend.fit_transform(frame)
    growing = out[out["unique_id"] == "growing"]["y"].to_numpy()
    assert abs(growing.mean() - 1) < 0.02 and np.ptp(growing[:7]) == pytest.approx(np.ptp(growing[-7:]), rel=0.05)  # the level is gone, the weekly shape stays
    np.testing.assert_allclose(out[out["unique_id"] == "flat_with_gap"]["y"].dropna(), 1.0)
    falling = detrend.params_.loc["falling"]
    np.testing.assert_allclose(detrend.trend(["falling"] * 3, ds[-3:]), falling["floor"])  # floored, never ~0 or negative
    # the forecasts of the detrended target are multiplied back by the line extended over the horizon
    future = pd.DataFrame({"unique_id": ["growing"] * 2, "ds": [ds[-1] + pd.Timedelta(days=1), ds[-1] + pd.Timedelta(days=10)], "model": [1.0, 1.0]})
    back = detrend.inverse_transform(future)
    slope = detrend.params_.loc["growing", "slope"]
    assert slope == pytest.approx(2.0, rel=0.05)
    assert back["model"].iloc[1] - back["model"].iloc[0] == pytest.approx(9 * slope)
    np.testing.assert_allclose(detrend.inverse_transform(out.rename(columns={"y": "m"}))["m"], frame["y"], rtol=1e-12)
