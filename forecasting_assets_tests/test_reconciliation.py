"""Tests of forecasting_assets.reconciliation.reconcile on two tiny hierarchies.

* strict: Total → 2 stores → 2 departments each (7 series, a tree);
* grouped (M5-like): Total, 2 states, 2 categories, state × category (9 series, not a tree).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.hierarchy.aggregation import build_hierarchy, check_coherence
from forecasting_assets.reconciliation.reconcile import (
    BASE_METHOD,
    is_strictly_hierarchical,
    reconcile,
    reconcile_backtest,
    reconcilers,
    to_long,
    to_wide,
)
from forecasting_assets.spec import TOTAL_ID

DATES = pd.date_range("2024-01-01", periods=40, freq="D")
MODELS = ["ModelA", "ModelB"]
TOPDOWN = "TopDown_method-forecast_proportions"
# qpsolvers (non-negative MinTrace) warns that it converts dense matrices to sparse: harmless here
pytestmark = pytest.mark.filterwarnings("ignore:Converted matrix:Warning")
ALWAYS = ["BottomUp", "MinTrace_method-ols", "MinTrace_method-wls_struct"]


def _strict():
    rng = np.random.default_rng(0)
    sales = pd.DataFrame(
        [
            {"store_id": store, "dept_id": dept, "ds": ds, "y": float(rng.poisson(8 + 4 * i))}
            for i, (store, dept) in enumerate([("S1", "D1"), ("S1", "D2"), ("S2", "D1"), ("S2", "D2")])
            for ds in DATES
        ]
    )
    return build_hierarchy(sales, [[], ["store_id"], ["store_id", "dept_id"]], "D")


def _grouped():
    rng = np.random.default_rng(1)
    sales = pd.DataFrame(
        [
            {"state_id": state, "cat_id": cat, "ds": ds, "y": float(rng.poisson(20 + 5 * i))}
            for i, (state, cat) in enumerate([("CA", "FOODS"), ("CA", "HOBBIES"), ("TX", "FOODS"), ("TX", "HOBBIES")])
            for ds in DATES
        ]
    )
    return build_hierarchy(sales, [[], ["state_id"], ["cat_id"], ["state_id", "cat_id"]], "D")


HIERARCHIES = {"strict": _strict(), "grouped": _grouped()}


def incoherent_forecasts(hierarchy, dates: pd.DatetimeIndex, seed: int) -> pd.DataFrame:
    """Base forecasts = actuals × noise: incoherent, positive; one bottom forecast is 0 and its parent far
    too low, so unconstrained MinTrace would go negative."""
    rng = np.random.default_rng(seed)
    frame = hierarchy.series[hierarchy.series["ds"].isin(dates)].reset_index(drop=True)
    for i, model in enumerate(MODELS):
        frame[model] = frame["y"] * rng.uniform(0.6, 1.4, len(frame)) + i
    first_bottom = hierarchy.bottom_ids[0]
    parent = hierarchy.structure.loc[
        (hierarchy.structure["bottom_id"] == first_bottom) & (hierarchy.structure["unique_id"] != first_bottom)
        & (hierarchy.structure["unique_id"] != TOTAL_ID),
        "unique_id",
    ].iloc[0]
    frame.loc[frame["unique_id"] == first_bottom, "ModelA"] = 0.0
    frame.loc[frame["unique_id"] == parent, "ModelA"] = 0.5
    return frame


def _split(hierarchy, horizon: int = 7, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = incoherent_forecasts(hierarchy, DATES[-horizon:], seed)
    residuals = incoherent_forecasts(hierarchy, DATES[:-horizon], seed + 10)  # earlier periods, with y
    return base[["unique_id", "ds", *MODELS]], residuals


def _gaps(frame: pd.DataFrame, hierarchy, columns: list[str]) -> pd.Series:
    return check_coherence(frame, hierarchy.structure, columns).set_index("column")["max_abs_gap"]


def test_strictness_detection() -> None:
    strict, grouped = HIERARCHIES["strict"], HIERARCHIES["grouped"]
    assert is_strictly_hierarchical(strict.series_keys, strict.structure)
    assert not is_strictly_hierarchical(grouped.series_keys, grouped.structure)


def test_base_forecasts_are_incoherent() -> None:
    # sanity of the fixture: otherwise the coherence tests below could not fail
    for hierarchy in HIERARCHIES.values():
        base, _ = _split(hierarchy)
        assert (_gaps(base, hierarchy, MODELS) > 1.0).all()


@pytest.mark.parametrize("name", ["strict", "grouped"])
@pytest.mark.parametrize("with_residuals", [False, True])
def test_reconcile_is_coherent_and_non_negative(name: str, with_residuals: bool) -> None:
    hierarchy = HIERARCHIES[name]
    base, residuals = _split(hierarchy)
    out, skipped = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure, residuals=residuals if with_residuals else None)

    methods = list(ALWAYS)
    if name == "strict":
        methods.append(TOPDOWN)
    if with_residuals:
        methods.append("MinTrace_method-mint_shrink")
    expected = {f"{model}/{method}" for model in MODELS for method in methods}
    columns = [c for c in out.columns if "/" in c]
    assert set(columns) == expected, skipped
    assert not any("nonnegative" in c for c in out.columns)

    # one row per input row, base columns untouched
    assert len(out) == len(base)
    merged = base.merge(out, on=["unique_id", "ds"], suffixes=("", "_out"))
    for model in MODELS:
        np.testing.assert_array_equal(merged[model], merged[f"{model}_out"])

    assert out[columns].notna().all().all()
    assert (_gaps(out, hierarchy, columns) <= 1e-6).all()
    assert not (out[columns] < -1e-9).to_numpy().any()
    assert out[columns].min().min() >= -1e-9

    if name == "grouped":
        assert "TopDown" in skipped and "grouped" in skipped["TopDown"]
    else:
        assert "TopDown" not in skipped
    if with_residuals:
        assert "MinTrace_method-mint_shrink" not in skipped
    else:
        assert "no residuals" in skipped["MinTrace_method-mint_shrink"]


def test_bottom_up_keeps_bottom_forecasts_and_top_down_keeps_the_total() -> None:
    hierarchy = HIERARCHIES["strict"]
    base, _ = _split(hierarchy)
    out, _ = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure)
    bottom = out["unique_id"].isin(hierarchy.bottom_ids)
    for model in MODELS:
        np.testing.assert_allclose(out.loc[bottom, f"{model}/BottomUp"], out.loc[bottom, model], rtol=0, atol=1e-9)
        total = out["unique_id"] == TOTAL_ID
        np.testing.assert_allclose(out.loc[total, f"{model}/{TOPDOWN}"], out.loc[total, model], rtol=1e-9)


@pytest.mark.parametrize("name", ["strict", "grouped"])
def test_coherent_base_forecasts_are_left_alone(name: str) -> None:
    hierarchy = HIERARCHIES[name]
    base = hierarchy.series[hierarchy.series["ds"].isin(DATES[-5:])].rename(columns={"y": "ModelA"})
    base["ModelB"] = base["ModelA"] * 1.1
    assert (_gaps(base, hierarchy, MODELS) <= 1e-9).all()
    out, _ = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure)
    for model in MODELS:
        np.testing.assert_allclose(out[f"{model}/BottomUp"], out[model], rtol=1e-12, atol=1e-9)
        # a coherent forecast is its own projection for MinTrace too
        np.testing.assert_allclose(out[f"{model}/MinTrace_method-ols"], out[model], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(out[f"{model}/MinTrace_method-wls_struct"], out[model], rtol=1e-6, atol=1e-6)


def test_reconcilers_choice() -> None:
    chosen, skipped = reconcilers(10, strictly_hierarchical=True, with_residuals=True)
    assert [c.name for c in chosen] == ["BottomUp", TOPDOWN, "MinTrace_method-ols", "MinTrace_method-wls_struct", "MinTrace_method-mint_shrink"]
    assert [c.needs_residuals for c in chosen] == [False, False, False, False, True]
    assert skipped == {}
    chosen, skipped = reconcilers(5000, strictly_hierarchical=False, with_residuals=True, dense_limit=3000)
    assert [c.name for c in chosen] == ["BottomUp", "MinTraceSparse_method-wls_struct"]
    assert set(skipped) == {"TopDown", "MinTrace"}
    assert "5000" in skipped["MinTrace"]


@pytest.mark.parametrize("name", ["strict", "grouped"])
def test_reconcile_backtest_returns_windows_after_the_first(name: str) -> None:
    hierarchy = HIERARCHIES[name]
    horizon, cutoffs = 5, [DATES[-16], DATES[-11], DATES[-6]]
    windows = []
    for k, cutoff in enumerate(cutoffs):
        dates = pd.date_range(cutoff + pd.Timedelta(days=1), periods=horizon, freq="D")
        window = incoherent_forecasts(hierarchy, dates, seed=k)
        windows.append(window.assign(cutoff=cutoff)[["unique_id", "ds", "cutoff", "y", *MODELS]])
    backtest = pd.concat(windows, ignore_index=True)

    out, skipped = reconcile_backtest(backtest, MODELS, hierarchy.series_keys, hierarchy.structure)
    assert sorted(out["cutoff"].unique()) == cutoffs[1:]
    n_series = hierarchy.series["unique_id"].nunique()
    assert len(out) == 2 * horizon * n_series
    assert {"unique_id", "ds", "cutoff", "y", *MODELS} <= set(out.columns)
    # y and the base columns are the backtest's own
    check = out.merge(backtest, on=["unique_id", "ds", "cutoff"], suffixes=("", "_bt"))
    assert len(check) == len(out)
    for col in ["y", *MODELS]:
        np.testing.assert_array_equal(check[col], check[f"{col}_bt"])
    columns = [c for c in out.columns if "/" in c]
    assert {f"{m}/MinTrace_method-mint_shrink" for m in MODELS} <= set(columns)  # residuals from earlier windows
    assert (name == "strict") == any(TOPDOWN in c for c in columns)
    for _, window in out.groupby("cutoff"):
        assert (_gaps(window, hierarchy, columns) <= 1e-6).all()
    assert not (out[columns] < -1e-9).to_numpy().any()
    assert ("TopDown" in skipped) == (name == "grouped")


def test_mint_shrink_residuals_leave_out_the_closed_days() -> None:
    """A closed day in an earlier window (every store shut, y = 0, the forecasts as usual) is not a forecast
    error: mint_shrink reconciles later windows as if the day were not in the residuals, and the methods that
    read no residuals are unchanged."""
    hierarchy = HIERARCHIES["grouped"]
    horizon, cutoffs = 5, [DATES[-16], DATES[-11], DATES[-6]]
    windows = []
    for k, cutoff in enumerate(cutoffs):
        dates = pd.date_range(cutoff + pd.Timedelta(days=1), periods=horizon, freq="D")
        windows.append(incoherent_forecasts(hierarchy, dates, seed=k).assign(cutoff=cutoff)[["unique_id", "ds", "cutoff", "y", *MODELS]])
    backtest = pd.concat(windows, ignore_index=True)
    closed_day = cutoffs[0] + pd.Timedelta(days=2)
    on_closed = backtest["ds"] == closed_day
    backtest.loc[on_closed, "y"] = 0.0
    closed = pd.DatetimeIndex([closed_day])

    with_closed, _ = reconcile_backtest(backtest, MODELS, hierarchy.series_keys, hierarchy.structure)
    without_closed, _ = reconcile_backtest(backtest, MODELS, hierarchy.series_keys, hierarchy.structure, closed=closed)
    mint = [f"{m}/MinTrace_method-mint_shrink" for m in MODELS]
    keys = ["unique_id", "ds", "cutoff"]
    with_closed, without_closed = (f.sort_values(keys).reset_index(drop=True) for f in (with_closed, without_closed))
    others = [c for c in with_closed.columns if "/" in c and c not in mint]
    pd.testing.assert_frame_equal(with_closed[keys + others], without_closed[keys + others])
    assert not np.allclose(with_closed[mint].to_numpy(), without_closed[mint].to_numpy())
    # the same as reconciling each window with the earlier windows' rows on open days only
    for cutoff, window in without_closed.groupby("cutoff"):
        earlier = backtest[(backtest["cutoff"] < cutoff) & ~on_closed]
        expected, _ = reconcile(backtest[backtest["cutoff"] == cutoff], MODELS, hierarchy.series_keys, hierarchy.structure, residuals=earlier)
        merged = window.merge(expected, on=["unique_id", "ds"], suffixes=("", "_expected"))
        assert len(merged) == len(window)
        for column in mint:
            np.testing.assert_allclose(merged[column], merged[f"{column}_expected"], rtol=1e-9, atol=1e-9)
        assert (_gaps(window, hierarchy, mint) <= 1e-6).all()


def test_to_long_and_to_wide_round_trip() -> None:
    hierarchy = HIERARCHIES["grouped"]
    base, _ = _split(hierarchy)
    wide, _ = reconcile(base, MODELS, hierarchy.series_keys, hierarchy.structure)
    ids = ["unique_id", "ds"]
    long = to_long(wide, ids)
    value_cols = [c for c in wide.columns if c not in ids]
    assert len(long) == len(wide) * len(value_cols)
    assert set(long.columns) == {*ids, "model", "base_model", "method", "yhat"}
    parsed = long.drop_duplicates("model").set_index("model")
    assert parsed.loc["ModelA", "base_model"] == "ModelA" and parsed.loc["ModelA", "method"] == BASE_METHOD
    assert parsed.loc["ModelB/BottomUp", "base_model"] == "ModelB"
    assert parsed.loc["ModelB/BottomUp", "method"] == "BottomUp"
    assert parsed.loc["ModelA/MinTrace_method-ols", "method"] == "MinTrace_method-ols"

    back = to_wide(long, ids)
    assert set(back.columns) == set(wide.columns)
    left = wide.sort_values(ids).reset_index(drop=True)
    right = back[list(wide.columns)].sort_values(ids).reset_index(drop=True)
    pd.testing.assert_frame_equal(left, right, check_dtype=False)


def test_to_long_without_reconciled_columns_marks_everything_base() -> None:
    wide = pd.DataFrame({"unique_id": ["a", "b"], "ds": pd.to_datetime(["2024-01-01"] * 2), "ETS": [1.0, 2.0], "Naive": [3.0, 4.0]})
    long = to_long(wide, ["unique_id", "ds"])
    assert (long["method"] == BASE_METHOD).all()
    assert list(long["base_model"]) == list(long["model"])
    back = to_wide(long, ["unique_id", "ds"])
    pd.testing.assert_frame_equal(back[list(wide.columns)], wide)


@pytest.mark.parametrize("layout", ["as to_long writes it", "shuffled rows"])
def test_to_wide_equals_a_pivot(layout: str) -> None:
    """to_wide slices to_long's blocks instead of pivoting (at M5 size the pivot took 20 s and 5 GB more): the
    result is the pivot's, NaN cells, an all-NaN model and an id row without any value included."""
    rng = np.random.default_rng(0)
    ids = [f"s{i}" for i in rng.permutation(30)]
    wide = pd.DataFrame({"unique_id": np.repeat(ids, 6), "ds": np.tile(pd.date_range("2024-01-01", periods=6), 30), "y": rng.random(180)})
    for model in ["ModelB/BottomUp", "ModelA", "ModelC"]:
        wide[model] = rng.random(180)
    wide.loc[3, ["ModelB/BottomUp", "ModelA", "ModelC"]] = np.nan
    wide.loc[7, "ModelA"] = np.nan
    wide["ModelC"] = np.nan
    long = to_long(wide, ["unique_id", "ds", "y"])
    if layout == "shuffled rows":
        long = long.sample(frac=1.0, random_state=1)
    pivot = long.pivot_table(index=["unique_id", "ds"], columns="model", values="yhat", aggfunc="first", observed=True)
    pivot.columns.name = None
    pd.testing.assert_frame_equal(to_wide(long, ["unique_id", "ds"]), pivot.reset_index())
