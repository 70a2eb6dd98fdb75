"""Tests of SHAP explanations (explain/shap_values.py), Evidently drift (monitoring/drift.py) and the
calendar features (features/exogenous.py), on small synthetic data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.explain.shap_values import explain, global_importance, sample_series, summary_plot_png, top_drivers
from forecasting_assets.features.exogenous import calendar_exogenous, event_code, event_proximity
from forecasting_assets.hierarchy.aggregation import build_hierarchy
from forecasting_assets.models import lightgbm_global as lgbm
from forecasting_assets.monitoring.drift import drift_frame, drift_report, split_windows, standardize
from forecasting_assets.spec import TOTAL_ID
from forecasting_assets.storage.files import read_parquet, write_parquet

WEEKLY_PROFILE = np.array([1.3, 1.2, 0.9, 0.8, 0.8, 0.9, 1.1])
HORIZON = 28
# hierarchy-like ids: mlforecast sorts them, and "Total" does not sort first
SERIES_IDS = ["CA", "CA_1", "TX", TOTAL_ID]

# --------------------------------------------------------------------------------------------------
# SHAP
# --------------------------------------------------------------------------------------------------


@pytest.fixture(
    scope="module",
    params=[([lgbm.RECURSIVE], 1, lgbm.NO_PARTITION), (list(lgbm.STRATEGIES), 1, lgbm.NO_PARTITION), (list(lgbm.STRATEGIES), 2, lgbm.NO_PARTITION), (list(lgbm.STRATEGIES), 1, lgbm.BOTTOM_PARTITION)],
    ids=["recursive", "ensemble", "ensemble-of-2-models", "partitioned"],
)
def explained(request, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A small global model whose series double on event days; a pure-noise exogenous column beside it.
    Once recursive alone, once the mean of every strategy (SHAP values of the members' mean), once each
    strategy the mean of two LightGBM models (other parameters, other seed), once partitioned (a model for
    the bottom level's series, one for the others': each explained with its own models)."""
    strategies, n_models, partition = request.param
    params = [{"n_estimators": 150, "num_leaves": 15, "min_child_samples": 10}, {"n_estimators": 100, "num_leaves": 7, "min_child_samples": 5}][:n_models]
    rng = np.random.default_rng(1)
    n = 300
    dates = pd.date_range("2023-01-01", periods=n + HORIZON, freq="D")
    event = (rng.random(n + HORIZON) < 0.1).astype(float)
    series, exog = [], []
    for i, uid in enumerate(SERIES_IDS):
        level = 20 + 15 * i
        y = level * WEEKLY_PROFILE[np.arange(n) % 7] * (1 + event[:n]) + rng.normal(0, 0.05 * level, n)
        series.append(pd.DataFrame({"unique_id": uid, "ds": dates[:n], "y": y}))
        exog.append(pd.DataFrame({"unique_id": uid, "ds": dates, "event": event, "noise": rng.normal(size=n + HORIZON)}))
    series, exog = pd.concat(series, ignore_index=True), pd.concat(exog, ignore_index=True)
    # with hierarchy columns, so that the models have the categorical hierarchy codes among their features
    keys = pd.DataFrame({"unique_id": SERIES_IDS, "level_order": [1, 2, 1, 0], "state_id": ["CA", "CA", "TX", None], "store_id": [None, "CA_1", None, None]})
    frame, static_cols, exog_cols = lgbm.training_frame(series, exog, lgbm.static_table(None, keys))
    setup = lgbm.feature_setup("D", 7, n, HORIZON)
    setup.static_features, setup.exogenous = static_cols, exog_cols
    model = lgbm.fit_global_model(frame, setup, params if n_models > 1 else params[0], strategies=strategies, partition=partition)
    forecasts, features = lgbm.predict_global_model(model, HORIZON, exog, capture_features=True)
    # explained as the shap_values asset explains them: the feature rows read back from storage, where the
    # categorical codes come back as integers
    stored = tmp_path_factory.mktemp("features") / "forecast_features.parquet"
    features = read_parquet(write_parquet(features, stored))
    assert features["code_store_id"].dtype == np.int64
    shap_long, base_value = explain(model, features)
    return {"model": model, "forecasts": forecasts, "features": features, "shap": shap_long, "base": base_value}


def test_explain_long_table_shape(explained: dict) -> None:
    shap_long, features = explained["shap"], explained["features"]
    names = {name for _, mlf in explained["model"].members() for name in mlf.models_[lgbm.MODEL_NAME].feature_name_}
    assert list(shap_long.columns) == ["unique_id", "ds", "feature", "feature_value", "shap_value", "shap_units", "base_value"]
    assert set(features["strategy"]) == set(explained["model"].strategies())  # each member's rows are stored
    forecast_rows = features[["unique_id", "ds"]].drop_duplicates()
    assert len(shap_long) == len(forecast_rows) * len(names)
    assert set(shap_long["feature"]) == names
    assert not shap_long.duplicated(["unique_id", "ds", "feature"]).any()
    # feature_value is the value a member saw for that row (members that share a feature see the same value)
    seen = features.drop(columns="strategy").groupby(["unique_id", "ds"]).first()
    sample = shap_long.sample(50, random_state=0)
    expected = [seen.at[(u, d), f] for u, d, f in zip(sample["unique_id"], sample["ds"], sample["feature"])]
    np.testing.assert_allclose(sample["feature_value"], expected)
    assert np.isfinite(explained["base"])


def test_shap_additivity_reproduces_the_forecast(explained: dict) -> None:
    """The module's claim: forecast = trend * (mean + std * (base_value + Σ shap_value)), per series and period
    (trend 1 without detrending), with the base value of the model (part) that made the forecast."""
    model, shap_long = explained["model"], explained["shap"]
    forecasts = explained["forecasts"]
    assert (forecasts[lgbm.MODEL_NAME] > 0).all()  # no clipping at 0 in play: the identity must be exact
    assert model.setup.detrend  # the default: the line is taken out of the target
    parts = model.parts if isinstance(model, lgbm.PartitionedGlobalModel) else [model]
    totals = shap_long.groupby(["unique_id", "ds"], as_index=False).agg(shap=("shap_value", "sum"), units=("shap_units", "sum"), base=("base_value", "first"))
    scored = totals.merge(forecasts, on=["unique_id", "ds"], validate="1:1")
    assert len(scored) == len(forecasts)
    if len(parts) == 1:
        assert (scored["base"] == explained["base"]).all()
    else:  # each part has its own expected value
        assert scored.groupby("unique_id")["base"].first().nunique() == len(parts)
    for part in parts:
        stats = np.asarray(part._scaler().scaler_.stats_)
        uids = np.asarray(part.mlf.ts.uids)
        mean, std = pd.Series(stats[:, 0], index=uids), pd.Series(stats[:, 1], index=uids)
        rows = scored[scored["unique_id"].isin(uids)]
        assert len(rows) == len(uids) * HORIZON
        trend = part._detrend().trend(rows["unique_id"], rows["ds"])
        rebuilt = trend * (rows["unique_id"].map(mean) + rows["unique_id"].map(std) * (rows["base"] + rows["shap"]))
        np.testing.assert_allclose(rebuilt, rows[lgbm.MODEL_NAME], rtol=1e-6)
        # shap_units are the same contributions in sales units
        rebuilt_units = trend * (rows["unique_id"].map(mean) + rows["unique_id"].map(std) * rows["base"]) + rows["units"]
        np.testing.assert_allclose(rebuilt_units, rows[lgbm.MODEL_NAME], rtol=1e-6)


def test_global_importance_ranks_the_event_high(explained: dict) -> None:
    importance = global_importance(explained["shap"])
    assert list(importance.columns) == ["feature", "mean_abs_shap", "mean_abs_shap_units", "rank"]
    assert list(importance["rank"]) == list(range(1, len(importance) + 1))
    assert importance["mean_abs_shap"].is_monotonic_decreasing
    ranks = importance.set_index("feature")["rank"]
    assert ranks["event"] <= 3
    assert ranks["event"] < ranks["noise"]
    expected = explained["shap"].assign(a=lambda f: f["shap_value"].abs()).groupby("feature")["a"].mean()
    np.testing.assert_allclose(importance.set_index("feature")["mean_abs_shap"], expected.reindex(importance["feature"]))


@pytest.mark.parametrize("n", [1, 3, 5])
def test_top_drivers_has_n_per_series(explained: dict, n: int) -> None:
    drivers = top_drivers(explained["shap"], n=n)
    assert drivers.groupby("unique_id").size().to_dict() == {uid: n for uid in SERIES_IDS}
    for uid, group in drivers.groupby("unique_id"):
        assert list(group["rank"]) == list(range(1, n + 1))
        assert group["mean_abs_shap_units"].is_monotonic_decreasing
        assert not group["feature"].duplicated().any()
        # rank 1 really is the series' strongest driver
        own = explained["shap"][explained["shap"]["unique_id"] == uid]
        strongest = own.assign(a=own["shap_units"].abs()).groupby("feature")["a"].mean().idxmax()
        assert group["feature"].iloc[0] == strongest


def test_summary_plot_png_returns_png_bytes(explained: dict) -> None:
    png = summary_plot_png(explained["shap"], max_display=5)
    assert isinstance(png, bytes)
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(png) > 2000


def test_summary_plot_matrices_reshape_explains_layout_as_a_pivot_would(explained: dict) -> None:
    """The plot's matrices come from a reshape of explain's long table (no pivot of ~1 M rows); any other
    row order goes through the pivot, with the same numbers per feature."""
    from forecasting_assets.explain.shap_values import _as_matrices

    names, values, data = _as_matrices(explained["shap"])
    pivot_names, pivot_values, pivot_data = _as_matrices(explained["shap"].sample(frac=1.0, random_state=0))
    assert sorted(names) == pivot_names and values.shape == pivot_values.shape == data.shape
    order = [names.index(name) for name in pivot_names]
    keys = explained["shap"][["unique_id", "ds"]].drop_duplicates()
    rows = np.lexsort([keys["ds"].to_numpy(), keys["unique_id"].to_numpy()])  # the pivot's row order
    np.testing.assert_allclose(values[rows][:, order], pivot_values)
    np.testing.assert_allclose(data[rows][:, order], pivot_data)


def test_sample_series_keeps_whole_series(explained: dict) -> None:
    features = explained["features"]
    same, n = sample_series(features, max_rows=10_000)
    assert n == len(SERIES_IDS) and len(same) == len(features)
    sample, n = sample_series(features, max_rows=2 * HORIZON)
    assert n == sample["unique_id"].nunique() and 2 <= n <= 3
    members = len(explained["model"].members())
    assert (sample.groupby("unique_id").size() == HORIZON * members).all()  # all horizon steps (of every member) of a kept series


def test_sample_series_does_not_depend_on_the_row_order(explained: dict) -> None:
    features = explained["features"]
    shuffled = features.sample(frac=1.0, random_state=3)
    assert shuffled["unique_id"].drop_duplicates().tolist() != features["unique_id"].drop_duplicates().tolist()
    kept = lambda frame: set(sample_series(frame, max_rows=2 * HORIZON)[0]["unique_id"])  # noqa: E731
    assert kept(shuffled) == kept(features)


def test_sample_series_always_keeps_the_top_level_series(explained: dict) -> None:
    features = explained["features"]
    assert features["unique_id"].iloc[0] != TOTAL_ID  # how the model orders the rows
    for seed in range(10):
        sample, _ = sample_series(features, max_rows=HORIZON, seed=seed)
        assert TOTAL_ID in set(sample["unique_id"]), f"seed {seed}"


# --------------------------------------------------------------------------------------------------
# Drift
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seasonal_panel() -> pd.DataFrame:
    """30 series × 500 days: weekly and mild yearly seasonality, a 10 %/year trend, log-normal noise."""
    rng = np.random.default_rng(3)
    n = 500
    dates = pd.date_range("2022-01-01", periods=n, freq="D")
    t = np.arange(n)
    frames = []
    for i in range(30):
        level = rng.uniform(10, 100)
        y = (
            level
            * (1 + 0.1 * t / 365)
            * WEEKLY_PROFILE[(t + i) % 7]
            * (1 + 0.05 * np.sin(2 * np.pi * t / 365.25 + i))
            * np.exp(rng.normal(0, 0.1, n))
        )
        frames.append(pd.DataFrame({"unique_id": f"s{i:02d}", "ds": dates, "y": y}))
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def drift_results(seasonal_panel: pd.DataFrame) -> dict:
    shifted = seasonal_panel.copy()
    last = shifted["ds"] > shifted["ds"].max() - pd.Timedelta(days=28)
    shifted.loc[last, "y"] *= 1.5
    return {
        "stable": drift_report(seasonal_panel, 7, current_periods=28, reference_periods=364),
        "shifted": drift_report(shifted, 7, current_periods=28, reference_periods=364),
    }


def test_drift_report_stable_data_is_not_dataset_drift(drift_results: dict) -> None:
    result = drift_results["stable"]
    assert list(result.columns.columns) == ["column", "method", "threshold", "score", "drifted"]
    assert list(result.columns["column"]) == ["target", "lag_1", "lag_7"]
    assert (result.columns["threshold"] == 0.5).all()
    assert not result.dataset_drift
    assert result.drift_share < 0.5
    assert result.drift_share == pytest.approx(result.columns["drifted"].mean())
    # the target itself is well within the threshold
    assert result.columns.set_index("column").at["target", "score"] < 0.5
    assert result.reference_rows == 30 * 364 and result.current_rows == 30 * 28
    assert "<html" in result.html.lower()


def test_drift_report_level_shift_is_dataset_drift(drift_results: dict) -> None:
    result, stable = drift_results["shifted"], drift_results["stable"]
    assert result.dataset_drift
    assert result.drift_share >= 0.5
    scores = result.columns.set_index("column")["score"]
    assert scores["target"] >= 0.5
    assert (scores > stable.columns.set_index("column")["score"]).all()


def test_drift_frame_and_windows() -> None:
    series = pd.DataFrame({"unique_id": ["a"] * 10 + ["b"] * 10, "ds": list(pd.date_range("2024-01-01", periods=10)) * 2,
                           "y": list(range(10)) + list(range(100, 110))}).sample(frac=1.0, random_state=0)
    frame = drift_frame(series, season_length=3)
    assert list(frame.columns) == ["unique_id", "ds", "target", "lag_1", "lag_3"]
    assert len(frame) == 2 * 7  # the first 3 periods of each series lack lags
    row = frame[(frame["unique_id"] == "b") & (frame["ds"] == pd.Timestamp("2024-01-06"))].iloc[0]
    assert (row["target"], row["lag_1"], row["lag_3"]) == (105, 104, 102)  # no mixing of series
    reference, current = split_windows(frame, current_periods=2, reference_periods=3)
    assert sorted(current["ds"].unique()) == list(pd.date_range("2024-01-09", periods=2))
    assert sorted(reference["ds"].unique()) == list(pd.date_range("2024-01-06", periods=3))
    ref_scaled, cur_scaled = standardize(reference, current, ["target"])
    np.testing.assert_allclose(ref_scaled.groupby("unique_id")["target"].mean(), 0.0, atol=1e-12)
    # reference targets of "a" are 5, 6, 7 (mean 6, std 1): the current 8 and 9 are 2 and 3 std above
    np.testing.assert_allclose(cur_scaled.sort_values(["unique_id", "ds"])["target"], [2.0, 3.0, 2.0, 3.0])


# --------------------------------------------------------------------------------------------------
# Calendar exogenous features
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calendar_case() -> dict:
    stores = {"CA_1": "CA", "CA_2": "CA", "TX_1": "TX", "WI_1": "WI"}
    days = pd.date_range("2024-02-01", periods=6, freq="D")
    sales = pd.DataFrame(
        [{"state_id": st, "store_id": s, "cat_id": c, "ds": d, "y": 1.0} for s, st in stores.items() for c in ("FOODS", "HOBBIES") for d in days[:4]]
    )
    hierarchy = build_hierarchy(sales, [[], ["state_id"], ["store_id"], ["cat_id"], ["state_id", "cat_id"], ["store_id", "cat_id"]], "D")
    calendar = pd.DataFrame(
        {
            "ds": days,  # two days beyond the sales: the known future
            "event_name": ["", "SuperBowl", "", "Valentine|Easter", "", ""],
            "event_type": ["", "Sporting", "", "Cultural|Religious", "", "National"],
            "snap_CA": [1, 1, 0, 0, 1, 0],
            "snap_TX": [0, 1, 1, 0, 1, 0],
            "snap_WI": [0, 1, 0, 1, 0, 0],
        }
    )
    exog = calendar_exogenous(hierarchy.series_keys, calendar)
    return {"keys": hierarchy.series_keys, "calendar": calendar, "exog": exog, "days": days}


def _snap(case: dict, uid: str) -> list[float]:
    exog = case["exog"]
    return exog.loc[exog["unique_id"] == uid].sort_values("ds")["snap"].tolist()


def test_calendar_exogenous_shape_and_event_columns(calendar_case: dict) -> None:
    exog, keys, days = calendar_case["exog"], calendar_case["keys"], calendar_case["days"]
    assert list(exog.columns) == ["unique_id", "ds", "is_event", "event_cultural", "event_national", "event_religious", "event_sporting", "event_code", "periods_to_event", "next_event_code", "periods_since_event", "last_event_code", "snap"]
    assert len(exog) == len(keys) * len(days)
    assert not exog.duplicated(["unique_id", "ds"]).any()
    assert set(exog["unique_id"]) == set(keys["unique_id"])
    total = exog[exog["unique_id"] == TOTAL_ID].sort_values("ds")
    assert total["is_event"].tolist() == [0, 1, 0, 1, 0, 0]  # only named events count
    assert total["event_sporting"].tolist() == [0, 1, 0, 0, 0, 0]
    assert total["event_cultural"].tolist() == [0, 0, 0, 1, 0, 0]
    assert total["event_religious"].tolist() == [0, 0, 0, 1, 0, 0]
    assert total["event_national"].tolist() == [0, 0, 0, 0, 0, 1]
    # event flags are the same for every series
    per_day = exog.groupby("ds")[["is_event", "event_sporting"]].nunique()
    assert (per_day == 1).all().all()


def test_event_proximity_counts_periods_to_the_next_and_since_the_last_event() -> None:
    codes = np.array([0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0], dtype=np.float32)
    near = event_proximity(codes, window=3)
    assert near["event_code"].tolist() == codes.tolist()
    assert near["periods_to_event"].tolist() == [2, 1, 4, 4, 4, 4, 4, 4, 3, 2, 1, 4, 4]  # 4 = beyond the window
    assert near["next_event_code"].tolist() == [5, 5, 0, 0, 0, 0, 0, 0, 3, 3, 3, 0, 0]
    assert near["periods_since_event"].tolist() == [4, 4, 4, 1, 2, 3, 4, 4, 4, 4, 4, 4, 1]
    assert near["last_event_code"].tolist() == [0, 0, 0, 5, 5, 5, 0, 0, 0, 0, 0, 0, 3]
    quiet = event_proximity(np.zeros(4, dtype=np.float32), window=3)
    assert quiet["periods_to_event"].tolist() == [4] * 4 and quiet["last_event_code"].tolist() == [0] * 4


def test_event_codes_are_stable_per_name_and_order_free() -> None:
    codes = event_code(pd.Series(["", "Easter|OrthodoxEaster", "OrthodoxEaster|Easter", None, "Christmas", "Easter"]))
    assert codes[0] == 0 and codes[3] == 0
    assert codes[1] == codes[2]  # the same events, listed in another order
    assert len({codes[1], codes[4], codes[5]}) == 3 and (codes[[1, 4, 5]] > 0).all()
    # the same in a calendar that has other events: a code depends on its name only
    assert event_code(pd.Series(["Christmas"]))[0] == codes[4]


def test_calendar_exogenous_event_proximity_follows_the_calendar_order(calendar_case: dict) -> None:
    exog = calendar_case["exog"]
    total = exog[exog["unique_id"] == TOTAL_ID].sort_values("ds")
    events = total["event_code"].to_numpy()
    assert (events > 0).tolist() == total["is_event"].astype(bool).tolist()
    # shuffled calendar rows give the same features
    shuffled = calendar_exogenous(calendar_case["keys"], calendar_case["calendar"].sample(frac=1.0, random_state=1))
    pd.testing.assert_frame_equal(
        shuffled.sort_values(["unique_id", "ds"]).reset_index(drop=True), exog.sort_values(["unique_id", "ds"]).reset_index(drop=True)
    )


def test_calendar_exogenous_snap_per_state_and_share_for_aggregates(calendar_case: dict) -> None:
    cal = calendar_case["calendar"]
    ca, tx, wi = (cal[f"snap_{s}"].astype(float).tolist() for s in ("CA", "TX", "WI"))
    for uid, expected in [("CA", ca), ("TX", tx), ("WI", wi), ("CA_2", ca), ("TX_1", tx), ("CA/HOBBIES", ca), ("WI_1/FOODS", wi)]:
        assert _snap(calendar_case, uid) == expected, uid
    share = cal[["snap_CA", "snap_TX", "snap_WI"]].mean(axis=1).tolist()
    for uid in (TOTAL_ID, "FOODS", "HOBBIES"):  # span all three states
        np.testing.assert_allclose(_snap(calendar_case, uid), share, rtol=1e-6)


def test_calendar_exogenous_without_calendar_or_snap() -> None:
    keys = pd.DataFrame({"unique_id": [TOTAL_ID, "A"], "level": ["total", "store_id"], "level_order": [0, 1], "store_id": [None, "A"]})
    assert calendar_exogenous(keys, None) is None
    assert calendar_exogenous(keys, pd.DataFrame(columns=["ds"])) is None
    calendar = pd.DataFrame({"ds": pd.date_range("2024-01-01", periods=3), "event_name": ["", "X", ""], "event_type": ["", "Sporting", ""]})
    exog = calendar_exogenous(keys, calendar)
    assert list(exog.columns) == ["unique_id", "ds", "is_event", "event_sporting", "event_code", "periods_to_event", "next_event_code", "periods_since_event", "last_event_code"]
    assert len(exog) == 6

