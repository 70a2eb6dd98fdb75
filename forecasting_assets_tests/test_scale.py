"""What keeps each stage's cost linear in the number of series (issue: scale and speed).

* the hierarchy is one sparse product S · Y, and equals hierarchicalforecast's own ``aggregate``;
* parent price ratios are the mean of their members' (a sparse product, no bottom × level join);
* AutoETS runs only on the series a budget affords (whole levels from the top); elsewhere SeasonalNaive
  stands in and every such series is listed in the fallback table;
* the global LightGBM model learns from the most recent days that fit its row budget;
* the scale benchmark's helpers: the M5 shape scaled to a size, the growth exponents.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.features.exogenous import price_exogenous
from forecasting_assets.hierarchy.aggregation import build_hierarchy
from forecasting_assets.models.statistical import (
    COST_STAND_IN,
    FORECAST_KEYS,
    affordable_series,
    backtest_statistical_with_fallbacks,
    forecast_statistical_with_fallbacks,
)
from forecasting_assets.resources import MIN_GLOBAL_DAYS, ForecastSettings
from forecasting_assets.spec import TOTAL_ID

STORES = {"CA_1": "CA", "CA_2": "CA", "TX_1": "TX"}
ITEMS = {"FOODS_1_001": "FOODS_1", "FOODS_1_002": "FOODS_1", "HOBBIES_1_001": "HOBBIES_1"}
LEVELS = [[], ["state_id"], ["store_id"], ["dept_id"], ["item_id"], ["item_id", "store_id"]]


def item_sales(days: int = 70, seed: int = 0) -> pd.DataFrame:
    """3 stores × 3 items, daily, weekly seasonality, with prices (a 30 % promotion on one item)."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range("2024-01-01", periods=days, freq="D")
    weekly = np.array([1.4, 1.2, 0.9, 0.8, 0.8, 0.9, 1.0])
    frames = []
    for k, (store, state) in enumerate(STORES.items()):
        for j, (item, dept) in enumerate(ITEMS.items()):
            price = np.full(days, 2.0 + j)
            if item == "FOODS_1_002" and store == "CA_1":
                price[40:47] *= 0.7
            frames.append(
                pd.DataFrame(
                    {
                        "state_id": state, "store_id": store, "dept_id": dept, "item_id": item, "ds": dates,
                        "y": rng.poisson((4 + 2 * k + j) * weekly[np.arange(days) % 7]).astype(float), "price": price,
                    }
                )
            )
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return item_sales()


@pytest.fixture(scope="module")
def hierarchy(sales: pd.DataFrame):
    return build_hierarchy(sales, LEVELS, "D")


def test_hierarchy_equals_hierarchicalforecast_aggregate(sales: pd.DataFrame, hierarchy) -> None:
    from hierarchicalforecast.utils import aggregate

    frame = sales.assign(total=TOTAL_ID)
    spec = [["total"], ["total", "state_id"], ["total", "store_id"], ["total", "dept_id"], ["total", "item_id"], ["total", "state_id", "store_id", "dept_id", "item_id"]]
    expected, s_df, _ = aggregate(frame[["total", "state_id", "store_id", "dept_id", "item_id", "ds", "y"]], spec)
    # hierarchicalforecast names series by the joined columns of its spec; map to ours through S
    theirs = expected.pivot(index="unique_id", columns="ds", values="y")
    ours = hierarchy.series.pivot(index="unique_id", columns="ds", values="y")
    assert len(ours) == len(theirs) == 1 + 2 + 3 + 2 + 3 + 9
    # every one of our series equals exactly one of theirs, day by day
    theirs_rows = {tuple(row) for row in theirs.to_numpy()}
    assert all(tuple(row) in theirs_rows for row in ours.to_numpy())
    np.testing.assert_allclose(np.sort(ours.sum(axis=1).to_numpy()), np.sort(theirs.sum(axis=1).to_numpy()))


def test_hierarchy_structure_is_the_summing_matrix(hierarchy, sales: pd.DataFrame) -> None:
    structure = hierarchy.structure
    assert len(structure) == 9 * len(LEVELS)  # each bottom member once per level
    members = structure[structure["unique_id"] == "CA"]["bottom_id"]
    assert sorted(members) == sorted(f"{item}/{store}" for store in ("CA_1", "CA_2") for item in ITEMS)
    series = hierarchy.series.set_index(["unique_id", "ds"])["y"]
    day = sales["ds"].iloc[5]
    assert series[("HOBBIES_1_001", day)] == sales.loc[(sales["item_id"] == "HOBBIES_1_001") & (sales["ds"] == day), "y"].sum()


def test_parent_price_ratio_is_the_mean_of_its_members(sales: pd.DataFrame, hierarchy) -> None:
    ratios = price_exogenous(sales, ["item_id", "store_id"], hierarchy.structure, 7, 14, "D").set_index(["unique_id", "ds"])["price_ratio"]
    dates = pd.date_range("2024-01-01", periods=70 + 14, freq="D")
    promo_day, normal_day = dates[42], dates[30]
    assert ratios[("FOODS_1_002/CA_1", promo_day)] == pytest.approx(0.7)
    assert ratios[("FOODS_1_002/CA_1", normal_day)] == pytest.approx(1.0)
    # the item over its 3 stores, the store over its 3 items, the total over all 9
    assert ratios[("FOODS_1_002", promo_day)] == pytest.approx((0.7 + 1 + 1) / 3, rel=1e-6)
    assert ratios[("CA_1", promo_day)] == pytest.approx((0.7 + 1 + 1) / 3, rel=1e-6)
    assert ratios[(TOTAL_ID, promo_day)] == pytest.approx((0.7 + 8) / 9, rel=1e-6)
    # every series has every history day and the horizon (last ratio carried forward)
    assert len(ratios) == hierarchy.series_keys.shape[0] * len(dates)
    assert ratios[("FOODS_1_002/CA_1", dates[-1])] == pytest.approx(1.0)


def test_affordable_series_takes_whole_levels_from_the_top(hierarchy) -> None:
    keys = hierarchy.series_keys
    assert affordable_series(keys, None) is None
    assert affordable_series(keys, len(keys)) is None
    top = affordable_series(keys, 8)  # total 1 + state 2 + store 3 (+ dept 2 = 8)
    assert sorted(top) == sorted([TOTAL_ID, "CA", "TX", "CA_1", "CA_2", "TX_1", "FOODS_1", "HOBBIES_1"])
    assert affordable_series(keys, 0) == [TOTAL_ID]  # the total always has every model


@pytest.mark.filterwarnings("ignore:Historical data:UserWarning")
def test_autoets_only_within_the_budget_and_the_rest_listed(hierarchy) -> None:
    series = hierarchy.series
    affordable = affordable_series(hierarchy.series_keys, 8)
    budgeted, fallbacks = forecast_statistical_with_fallbacks(series, 7, "D", 7, affordable=affordable)
    unlimited, _ = forecast_statistical_with_fallbacks(series, 7, "D", 7)
    assert list(budgeted.columns) == list(unlimited.columns)
    assert len(budgeted) == len(unlimited)
    merged = budgeted.merge(unlimited, on=FORECAST_KEYS, suffixes=("", "_all"))
    inside = merged["unique_id"].isin(affordable)
    # within the budget: exactly the unlimited forecasts; beyond it: SeasonalNaive in the AutoETS column
    np.testing.assert_allclose(merged.loc[inside, "AutoETS"], merged.loc[inside, "AutoETS_all"])
    np.testing.assert_allclose(merged.loc[~inside, "AutoETS"], merged.loc[~inside, COST_STAND_IN])
    assert not np.allclose(merged.loc[~inside, "AutoETS_all"], merged.loc[~inside, COST_STAND_IN])  # so the check can fail
    np.testing.assert_allclose(merged["CrostonOptimized"], merged["CrostonOptimized_all"])
    listed = fallbacks[fallbacks["model"] == "AutoETS"]
    assert set(listed["unique_id"]) == set(series["unique_id"]) - set(affordable)
    assert (listed["fallback"] == COST_STAND_IN).all() and listed["error"].str.contains("cost").all()

    backtest, backtest_fallbacks = backtest_statistical_with_fallbacks(series, 7, 2, "D", 7, affordable=affordable)
    assert backtest["unique_id"].nunique() == series["unique_id"].nunique()
    beyond = ~backtest["unique_id"].isin(affordable)
    np.testing.assert_allclose(backtest.loc[beyond, "AutoETS"], backtest.loc[beyond, COST_STAND_IN])
    assert set(backtest_fallbacks["unique_id"]) == set(listed["unique_id"])


def test_global_model_start_fits_the_row_budget() -> None:
    dates = pd.date_range("2020-01-01", periods=1000, freq="D")
    series = pd.DataFrame({"unique_id": np.repeat([f"s{i}" for i in range(50)], len(dates)), "ds": np.tile(dates, 50), "y": 1.0})
    assert ForecastSettings().global_model_start(series) is None  # 50,000 rows fit
    start = ForecastSettings(lightgbm_max_rows=50 * 300).global_model_start(series)
    assert start == dates[-300]
    assert ForecastSettings(lightgbm_max_rows=10).global_model_start(series) == dates[-MIN_GLOBAL_DAYS]


def test_scale_shapes_follow_m5() -> None:
    from forecasting_assets.benchmarks.scale import growth_exponents, shape_for
    from forecasting_assets.demo_data import PRESETS

    assert shape_for(30490, 1941).n_series == PRESETS["m5"].n_series == 30490
    for size in (1000, 5000):
        shape = shape_for(size, 400)
        assert abs(shape.n_series - size) / size < 0.05
        assert shape.n_stores == 10 and len(shape.items()) == 7 and shape.days == 400
    results = {
        "1000": {"total_seconds": 10.0, "steps": {"a": {"seconds": 2.0}, "b": {"seconds": 4.0}}},
        "4000": {"total_seconds": 40.0, "steps": {"a": {"seconds": 8.0}, "b": {"seconds": 64.0}}},
    }
    exponents = growth_exponents(results)
    assert exponents["a"]["1000→4000"] == pytest.approx(1.0)
    assert exponents["b"]["1000→4000"] == pytest.approx(2.0)
    assert exponents["total"]["1000→4000"] == pytest.approx(1.0)


def test_stratified_sample_gives_every_level_its_share(hierarchy) -> None:
    from forecasting_assets.hierarchy.aggregation import stratified_series_sample

    keys = hierarchy.series_keys  # levels of 1, 2, 3, 2, 3 and 9 series (20)
    assert stratified_series_sample(keys, 20) is None
    sample = stratified_series_sample(keys, 12, seed=1)
    assert len(sample) == 12 and len(set(sample)) == 12
    per_level = keys.set_index("unique_id").loc[sample].groupby("level").size().to_dict()
    # 12 over 6 levels: the small levels are taken whole (1 + 2 + 2), the rest share 7 (2, 2 and 3)
    assert per_level["total"] == 1 and per_level["state_id"] == 2 and per_level["dept_id"] == 2
    assert per_level["item_id/store_id"] <= 3 and sum(per_level.values()) == 12
    assert stratified_series_sample(keys, 12, seed=1) == sample  # reproducible
    assert stratified_series_sample(keys, 12, seed=2) != sample


def test_summing_matrix_columns_follow_the_bottom_rows() -> None:
    """Rows of sales in any order: S's columns must still follow the bottom series' rows (else BottomUp
    would add up the wrong series)."""
    from forecasting_assets.hierarchy.aggregation import summing_matrix, summing_smatrix

    shuffled = item_sales(days=14).sample(frac=1.0, random_state=4)
    h = build_hierarchy(shuffled, LEVELS, "D")
    order = list(h.series_keys["unique_id"])
    s_df = summing_matrix(h.structure, order)
    bottom_rows = order[-(len(s_df.columns) - 1):]
    assert list(s_df.columns[1:]) == bottom_rows
    np.testing.assert_array_equal(s_df.iloc[-len(bottom_rows):, 1:].to_numpy(), np.eye(len(bottom_rows)))
    smatrix = summing_smatrix(h.structure, order)
    np.testing.assert_array_equal(smatrix.to_dense(), s_df.iloc[:, 1:].to_numpy())
    assert list(smatrix.col_labels) == bottom_rows


def test_large_hierarchies_reconcile_with_sparse_methods_only(hierarchy, monkeypatch) -> None:
    """Above the dense limit: BottomUpSparse (named BottomUp, same numbers), MinTraceSparse, no dense MinTrace,
    and S is never made dense."""
    from hierarchicalforecast.utils import SMatrix

    from forecasting_assets.hierarchy.aggregation import check_coherence
    from forecasting_assets.reconciliation import reconcile as rec

    series = hierarchy.series
    base, _ = forecast_statistical_with_fallbacks(series, 7, "D", 7)
    models = ["SeasonalNaive", "AutoETS"]
    dense, _ = rec.reconcile(base, models, hierarchy.series_keys, hierarchy.structure)
    monkeypatch.setattr(rec, "DENSE_LIMIT", 5)
    monkeypatch.setattr(SMatrix, "to_dense", lambda self: (_ for _ in ()).throw(AssertionError("dense S")))
    sparse_out, skipped = rec.reconcile(base, models, hierarchy.series_keys, hierarchy.structure)
    assert "MinTrace" in skipped and "MinTrace_method-ols" not in " ".join(sparse_out.columns)
    for model in models:
        pd.testing.assert_series_equal(sparse_out[f"{model}/BottomUp"], dense[f"{model}/BottomUp"], check_exact=False)
    columns = [c for c in sparse_out.columns if "/" in c]
    assert f"AutoETS/MinTraceSparse_method-wls_struct" in columns
    gaps = check_coherence(sparse_out, hierarchy.structure, columns)
    assert gaps["max_abs_gap"].max() < 1e-6
    # non-negative even where the base forecasts of a slow series are 0 and its parents' are not
    slow = base.copy()
    bottom = hierarchy.series_keys.loc[hierarchy.series_keys["level_order"].idxmax(), "level"]
    slow_ids = hierarchy.series_keys.loc[hierarchy.series_keys["level"] == bottom, "unique_id"].head(4)
    slow.loc[slow["unique_id"].isin(slow_ids), models] = 0.0
    slow.loc[slow["unique_id"] == TOTAL_ID, models] *= 0.5  # a total below the sum of its parts
    out, _ = rec.reconcile(slow, models, hierarchy.series_keys, hierarchy.structure)
    reconciled = [c for c in out.columns if "/" in c]
    assert (out[reconciled].to_numpy() >= -1e-9).all()
    assert check_coherence(out, hierarchy.structure, reconciled)["max_abs_gap"].max() < 1e-6


def test_budget_rows_are_counted_apart_from_failures() -> None:
    """The series AutoETS was not fitted on by budget are expected: counted in their own metadata, not as
    failures, and no warning."""
    import dagster as dg

    from forecasting_assets.models.assets import statistical_fallback_metadata
    from forecasting_assets.models.statistical import cost_budget_rows

    budget = cost_budget_rows(["a/1", "a/2"], "not fitted (cost): per-series AutoETS runs on the 3 series of the top levels")
    failed = pd.DataFrame([{"unique_id": "b", "model": "AutoETS", "error": "ValueError: tiny datasets", "fallback": "SeasonalNaive"}])
    meta = statistical_fallback_metadata(dg.build_asset_context(), pd.concat([budget, failed], ignore_index=True), "base_forecasts")
    assert meta["statistical_fallback_series"] == 1 and meta["series_without_autoets_by_budget"] == 2
    assert "tiny datasets" in meta["statistical_fallbacks"].value and "a/1" not in meta["statistical_fallbacks"].value


def test_cost_budgets_come_from_the_environment(monkeypatch) -> None:
    from forecasting_assets.definitions import build_resources

    assert build_resources()["settings"].ets_max_series == ForecastSettings().ets_max_series
    monkeypatch.setenv("FORECASTING_ETS_MAX_SERIES", "42")
    monkeypatch.setenv("FORECASTING_LIGHTGBM_MAX_ROWS", "1000")
    monkeypatch.setenv("FORECASTING_REFIT_MAX_ROWS", "10")
    monkeypatch.setenv("FORECASTING_BACKTEST_WINDOWS", "6")
    monkeypatch.setenv("FORECASTING_LIGHTGBM_MODELS", "5")
    monkeypatch.setenv("FORECASTING_ENSEMBLE_MAX_ROWS", "20")
    settings = build_resources()["settings"]
    assert (settings.ets_max_series, settings.lightgbm_max_rows, settings.refit_max_rows) == (42, 1000, 10)
    assert (settings.n_windows, settings.lightgbm_models) == (6, 5)
    assert (settings.models_for(20), settings.models_for(21)) == (5, 1)  # the ensemble within its row budget only
    with pytest.raises(ValueError, match="FORECASTING_LIGHTGBM_MODELS, make run MODELS=\\) is 0: it must be at least 1"):
        ForecastSettings(lightgbm_models=0)
    with pytest.raises(ValueError, match="FORECASTING_ENSEMBLE_TRIALS\\) is 0: it must be at least 1"):
        ForecastSettings(ensemble_trials=0)
    assert settings.lightgbm_partition == "bottom"  # the default: one model on the bottom level, one on the rest
    monkeypatch.setenv("FORECASTING_LIGHTGBM_PARTITION", "none")
    assert build_resources()["settings"].lightgbm_partition == "none"
    with pytest.raises(ValueError, match="FORECASTING_LIGHTGBM_PARTITION\\) is 'levels': choose from none, bottom"):
        ForecastSettings(lightgbm_partition="levels")
    tuning = {"best_params": {"num_leaves": 15}, "top_params": [{"num_leaves": 15}, {"num_leaves": 31}]}
    assert settings.model_parameters(tuning, 20) == [{"num_leaves": 15}] * 5 and settings.model_parameters(tuning, 21) == [{"num_leaves": 15}]
    assert ForecastSettings(ensemble_trials=2).model_parameters(tuning, 1) == [{"num_leaves": 15}, {"num_leaves": 31}, {"num_leaves": 15}]
    monkeypatch.setenv("FORECASTING_BACKTEST_WINDOWS", "2")
    with pytest.raises(ValueError, match="FORECASTING_BACKTEST_WINDOWS, make run WINDOWS=\\) is 2: it must be at least 3"):
        build_resources()
    assert settings.refit_windows(10) and not settings.refit_windows(11)


def test_statistical_history_keeps_two_years_at_least_within_its_budget() -> None:
    from forecasting_assets.resources import MIN_STATISTICAL_DAYS

    dates = pd.date_range("2018-01-01", periods=1000, freq="D")
    series = pd.DataFrame({"unique_id": np.repeat(["a", "b"], len(dates)), "ds": np.tile(dates, 2), "y": 1.0})
    assert ForecastSettings().statistical_history(series, 2) is series  # 2,000 rows fit: untouched
    recent = ForecastSettings(statistical_max_rows=100).statistical_history(series, 2)
    assert recent["ds"].min() == dates[-MIN_STATISTICAL_DAYS] and len(recent) == 2 * MIN_STATISTICAL_DAYS
    assert ForecastSettings(statistical_max_rows=2 * 900).statistical_history(series, 2)["ds"].min() == dates[-900]
