"""Tests of the M5 accuracy metrics: hand-computed cases and the official M5 benchmarks (levels 1–9)."""

from __future__ import annotations

from functools import partial
from math import sqrt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.evaluation.metrics import (
    OVERALL_LEVEL,
    accuracy_table_markdown,
    m5_weights,
    mae_scale,
    rmsse_scale,
    score_forecasts,
    sales_share_weights,
    trim_leading_zeros,
    wspl,
)
from forecasting_assets.paths import shared_m5_folder
from forecasting_assets.spec import M5_LEVELS, TOTAL_ID, level_name

TOL = 1e-9
DAYS = pd.date_range("2020-01-01", periods=6, freq="D")

# A tiny hierarchy: Total and three stores. Train = days 1-4, forecast window = days 5-6.
#   S1: 1 3 2 4 | 3 5        ordinary series
#   S2: 0 0 2 4 | 4 2        leading zeros: its scale starts at day 3
#   S3: 0 2 2 2 | 2 3        constant after its first sale: scale 0 -> undefined (NaN), excluded
#   Total = S1 + S2 + S3: 1 5 6 10 | 9 10
HISTORY = {
    "S1": [1, 3, 2, 4, 3, 5],
    "S2": [0, 0, 2, 4, 4, 2],
    "S3": [0, 2, 2, 2, 2, 3],
    TOTAL_ID: [1, 5, 6, 10, 9, 10],
}
WEIGHTS = {TOTAL_ID: 1.0, "S1": 0.5, "S2": 0.3, "S3": 0.2}


def _long(values: dict[str, list[float]], days: pd.DatetimeIndex = DAYS) -> pd.DataFrame:
    """Long ``unique_id, ds, y`` frame from lists of values per series."""
    return pd.DataFrame(
        [(uid, ds, float(y)) for uid, ys in values.items() for ds, y in zip(days, ys)],
        columns=["unique_id", "ds", "y"],
    )


@pytest.fixture
def series_keys() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "unique_id": [TOTAL_ID, "S1", "S2", "S3"],
            "level": ["total", "store_id", "store_id", "store_id"],
            "store_id": [None, "S1", "S2", "S3"],
        }
    )


@pytest.fixture
def weights(series_keys: pd.DataFrame) -> pd.DataFrame:
    return series_keys[["unique_id", "level"]].assign(weight=series_keys["unique_id"].map(WEIGHTS))


@pytest.fixture
def history() -> pd.DataFrame:
    return _long(HISTORY)


@pytest.fixture
def train(history: pd.DataFrame) -> pd.DataFrame:
    return history[history["ds"] <= DAYS[3]].reset_index(drop=True)


@pytest.fixture
def actuals(history: pd.DataFrame) -> pd.DataFrame:
    return history[history["ds"] > DAYS[3]].reset_index(drop=True)


@pytest.fixture
def forecasts(actuals: pd.DataFrame) -> pd.DataFrame:
    """Good: hand-chosen; Bad: Good + 3 everywhere; Perfect: the actuals."""
    good = {"S1": [4, 4], "S2": [4, 4], "S3": [2, 2], TOTAL_ID: [10, 10]}
    frame = _long(good, DAYS[4:]).rename(columns={"y": "Good"})
    frame["Bad"] = frame["Good"] + 3
    return frame.merge(actuals.rename(columns={"y": "Perfect"}), on=["unique_id", "ds"])


def _row(frame: pd.DataFrame, **where: object) -> pd.Series:
    """The single row of ``frame`` matching ``where``."""
    mask = np.logical_and.reduce([frame[k] == v for k, v in where.items()])
    rows = frame[mask]
    assert len(rows) == 1, where
    return rows.iloc[0]


# ------------------------------------------------------------------------------------------ scales


def test_trim_leading_zeros_starts_each_series_at_its_first_sale(history: pd.DataFrame) -> None:
    never_sold = _long({"S4": [0, 0, 0, 0, 0, 0]})
    trimmed = trim_leading_zeros(pd.concat([history, never_sold]).sample(frac=1, random_state=0))
    first = trimmed.groupby("unique_id")["ds"].min()
    assert first.to_dict() == {"S1": DAYS[0], "S2": DAYS[2], "S3": DAYS[1], TOTAL_ID: DAYS[0]}
    assert len(trimmed) == 6 + 4 + 5 + 6  # S4 disappears


def test_scales_start_at_first_sale_and_zero_scale_is_nan(train: pd.DataFrame) -> None:
    # S1 1 3 2 4 -> diffs 2 -1 2: squared mean (4+1+4)/3 = 3, absolute mean 5/3
    # S2 (0 0) 2 4 -> diff 2: 4 and 2 (with the zeros it would be 8/3 and 4/3)
    # S3 (0) 2 2 2 -> diffs 0 0: scale 0 -> NaN;  S4 never sold -> NaN
    # Total 1 5 6 10 -> diffs 4 1 4: (16+1+16)/3 = 11, 9/3 = 3
    train = pd.concat([train, _long({"S4": [0, 0, 0, 0]})])
    rmsse = rmsse_scale(train)
    mae = mae_scale(train)
    assert rmsse["S1"] == pytest.approx(3, abs=TOL) and mae["S1"] == pytest.approx(5 / 3, abs=TOL)
    assert rmsse["S2"] == pytest.approx(4, abs=TOL) and mae["S2"] == pytest.approx(2, abs=TOL)
    assert rmsse[TOTAL_ID] == pytest.approx(11, abs=TOL) and mae[TOTAL_ID] == pytest.approx(3, abs=TOL)
    assert np.isnan(rmsse["S3"]) and np.isnan(mae["S3"])
    assert np.isnan(rmsse["S4"]) and np.isnan(mae["S4"])
    assert not np.isinf(rmsse).any() and not np.isinf(mae).any()


# ----------------------------------------------------------------------------------------- weights


def test_sales_share_weights_sum_to_one_per_level(train: pd.DataFrame, series_keys: pd.DataFrame) -> None:
    # last 2 days (3, 4): S1 2+4 = 6, S2 2+4 = 6, S3 2+2 = 4 -> 6/16, 6/16, 4/16
    weights = sales_share_weights(train, series_keys, window=2)
    assert list(weights.columns) == ["unique_id", "level", "weight"]
    assert weights.set_index("unique_id")["weight"].to_dict() == pytest.approx(
        {TOTAL_ID: 1.0, "S1": 0.375, "S2": 0.375, "S3": 0.25}, abs=TOL
    )
    assert weights.groupby("level")["weight"].sum().to_numpy() == pytest.approx([1.0, 1.0], abs=TOL)


def test_sales_share_weights_equal_for_a_level_without_sales(series_keys: pd.DataFrame) -> None:
    train = _long({TOTAL_ID: [0, 0], "S1": [0, 0], "S2": [0, 0], "S3": [0, 0]}, DAYS[:2])
    weights = sales_share_weights(train, series_keys, window=28).set_index("unique_id")["weight"]
    assert weights[["S1", "S2", "S3"]].to_numpy() == pytest.approx([1 / 3] * 3, abs=TOL)


def _m5_keys() -> pd.DataFrame:
    """Our levels: total, state, store×dept in the reverse of M5's column order, item×state, and a non-M5 level."""
    rows = [
        (TOTAL_ID, "total", None, None, None, None),
        ("CA", "state_id", "CA", None, None, None),
        ("TX", "state_id", "TX", None, None, None),
        ("FOODS_1/CA_1", "dept_id/store_id", None, "CA_1", "FOODS_1", None),
        ("FOODS_2/CA_1", "dept_id/store_id", None, "CA_1", "FOODS_2", None),
        ("FOODS_1_001/CA", "item_id/state_id", "CA", None, None, "FOODS_1_001"),
        ("CA/CA_1", "state_id/store_id", "CA", "CA_1", None, None),
    ]
    return pd.DataFrame(rows, columns=["unique_id", "level", "state_id", "store_id", "dept_id", "item_id"])


M5_WEIGHTS_CSV = """Level_id,Agg_Level_1,Agg_Level_2,Weight
Level1,Total,X,1
Level2,CA,X,0.6
Level2,TX,X,0.4
Level9,CA_1,FOODS_1,0.25
Level9,CA_1,FOODS_2,0.75
Level11,CA,FOODS_1_001,5.80E-05
Level12,FOODS_1_001,CA_1,1.97E-05
"""


def test_m5_weights_maps_rows_to_our_ids(tmp_path: Path) -> None:
    path = tmp_path / "weights.csv"
    path.write_text(M5_WEIGHTS_CSV)
    weights = m5_weights(path, _m5_keys())
    assert list(weights.columns) == ["unique_id", "level", "weight"]
    assert weights.set_index("unique_id")["weight"].to_dict() == pytest.approx(
        {TOTAL_ID: 1.0, "CA": 0.6, "TX": 0.4, "FOODS_1/CA_1": 0.25, "FOODS_2/CA_1": 0.75, "FOODS_1_001/CA": 5.8e-5},
        abs=TOL,
    )
    # the level 'state_id/store_id' is no M5 level: absent
    assert "state_id/store_id" not in set(weights["level"])


def test_m5_weights_raises_when_a_series_has_no_weight(tmp_path: Path) -> None:
    path = tmp_path / "weights.csv"
    path.write_text(M5_WEIGHTS_CSV.replace("Level2,TX,X,0.4\n", ""))
    with pytest.raises(ValueError, match=r"level 'state_id' \(Level2\) have no weight.*TX"):
        m5_weights(path, _m5_keys())


# ----------------------------------------------------------------------------------------- scoring


def test_score_forecasts_hand_computed(forecasts, actuals, train, series_keys, weights) -> None:
    # Good, errors y - ŷ over days 5, 6:
    #   S1 (3-4, 5-4) = (-1, 1): MSE 1, MAE 1 -> RMSSE sqrt(1/3), MASE 1/(5/3) = 0.6, RMSE 1
    #   S2 (4-4, 2-4) = (0, -2): MSE 2, MAE 1 -> RMSSE sqrt(2/4),  MASE 1/2 = 0.5,    RMSE sqrt 2
    #   S3 (2-2, 3-2) = (0, 1):  MSE .5, MAE .5, scale 0 -> RMSSE, MASE NaN (excluded)
    #   Total (9-10, 10-10) = (-1, 0): MSE .5, MAE .5 -> RMSSE sqrt(.5/11), MASE .5/3
    # WRMSSE store_id = (.5 sqrt(1/3) + .3 sqrt(1/2)) / (.5 + .3)   (S3's weight .2 not scored)
    # WRMSSE total = sqrt(1/22); overall = mean of the two levels
    per_series, per_level = score_forecasts(forecasts, actuals, train, series_keys, weights, models=["Good", "Bad"])
    assert list(per_series.columns) == ["unique_id", "level", "model", "rmsse", "mase", "mae", "rmse"]
    expected = {
        "S1": (sqrt(1 / 3), 0.6, 1.0, 1.0),
        "S2": (sqrt(0.5), 0.5, 1.0, sqrt(2)),
        "S3": (np.nan, np.nan, 0.5, sqrt(0.5)),
        TOTAL_ID: (sqrt(0.5 / 11), 0.5 / 3, 0.5, sqrt(0.5)),
    }
    for uid, values in expected.items():
        row = _row(per_series, unique_id=uid, model="Good")
        np.testing.assert_allclose(row[["rmsse", "mase", "mae", "rmse"]].astype(float), values, atol=TOL)

    store = _row(per_level, level="store_id", model="Good")
    wrmsse_store = (0.5 * sqrt(1 / 3) + 0.3 * sqrt(0.5)) / 0.8
    assert store["wrmsse"] == pytest.approx(wrmsse_store, abs=TOL)
    assert store["mean_rmsse"] == pytest.approx((sqrt(1 / 3) + sqrt(0.5)) / 2, abs=TOL)
    assert store["mean_mase"] == pytest.approx(0.55, abs=TOL)
    assert (store["n_series"], store["n_excluded"]) == (3, 1)
    assert store["weight_covered"] == pytest.approx(0.8, abs=TOL)
    total = _row(per_level, level="total", model="Good")
    assert total["wrmsse"] == pytest.approx(sqrt(1 / 22), abs=TOL)
    overall = _row(per_level, level=OVERALL_LEVEL, model="Good")
    assert overall["wrmsse"] == pytest.approx((sqrt(1 / 22) + wrmsse_store) / 2, abs=TOL)
    assert list(per_level["level"].unique()) == ["total", "store_id", OVERALL_LEVEL]
    assert not np.isinf(per_series[["rmsse", "mase"]]).any().any()


def test_perfect_forecast_scores_zero_and_worse_scores_higher(forecasts, actuals, train, series_keys, weights) -> None:
    per_series, per_level = score_forecasts(forecasts, actuals, train, series_keys, weights)
    assert set(per_level["model"]) == {"Good", "Bad", "Perfect"}
    perfect = per_level[per_level["model"] == "Perfect"]
    assert perfect["wrmsse"].to_numpy() == pytest.approx([0.0, 0.0, 0.0], abs=TOL)
    scored = per_series[(per_series["model"] == "Perfect") & per_series["rmsse"].notna()]
    assert len(scored) == 3 and (scored[["rmsse", "mase", "mae", "rmse"]] == 0).all().all()
    wrmsse = per_level.set_index(["level", "model"])["wrmsse"]
    for level in ["total", "store_id", OVERALL_LEVEL]:
        assert wrmsse[(level, "Bad")] > wrmsse[(level, "Good")] > wrmsse[(level, "Perfect")]


def test_missing_forecast_values_exclude_the_series(forecasts, actuals, train, series_keys, weights) -> None:
    forecasts.loc[(forecasts["unique_id"] == "S1") & (forecasts["ds"] == DAYS[5]), "Good"] = np.nan
    per_series, per_level = score_forecasts(forecasts, actuals, train, series_keys, weights, models=["Good"])
    assert _row(per_series, unique_id="S1")[["rmsse", "mase", "mae", "rmse"]].isna().all()
    store = _row(per_level, level="store_id")
    assert store["n_excluded"] == 2
    assert store["wrmsse"] == pytest.approx(sqrt(0.5), abs=TOL)  # only S2 left: .3 sqrt(.5) / .3


def test_unknown_series_or_missing_actuals_raise(forecasts, actuals, train, series_keys, weights) -> None:
    with pytest.raises(ValueError, match="no actual value"):
        score_forecasts(forecasts, actuals.iloc[1:], train, series_keys, weights)
    with pytest.raises(ValueError, match="not in series_keys"):
        score_forecasts(forecasts, actuals, train, series_keys.iloc[1:], weights)


def test_multi_window_scores_are_averaged_over_windows(history, series_keys, weights) -> None:
    # Two one-day windows: cutoff day 4 forecasts day 5, cutoff day 5 forecasts day 6; history = ds <= cutoff.
    #   S1 window 1: scale 3 (1 3 2 4); ŷ 4, y 3 -> RMSSE sqrt(1/3)
    #      window 2: 1 3 2 4 3 -> diffs 2 -1 2 -1 -> scale 10/4; ŷ 4, y 5 -> RMSSE sqrt(1/2.5)
    #   S2 window 1: 2 4 -> scale 4; ŷ 3, y 4 -> RMSSE 1/2
    #      window 2: 2 4 4 -> diffs 2 0 -> scale 2; ŷ 3, y 2 -> RMSSE sqrt(1/2)
    #   S3 (0 2 2 2 5 5 here) window 1: 2 2 2 -> scale 0 -> excluded
    #      window 2: 2 2 2 5 -> diffs 0 0 3 -> scale 3; ŷ 2, y 5 -> RMSSE sqrt(9/3) = sqrt 3
    #   per-series averages over defined windows, then WRMSSE = .5 a1 + .3 a2 + .2 a3 (all scored)
    history = _long({**HISTORY, "S3": [0, 2, 2, 2, 5, 5]})
    forecasts = pd.DataFrame(
        {
            "unique_id": ["S1", "S1", "S2", "S2", "S3", "S3"],
            "ds": [DAYS[4], DAYS[5]] * 3,
            "cutoff": [DAYS[3], DAYS[4]] * 3,
            "Model": [4.0, 4.0, 3.0, 3.0, 2.0, 2.0],
        }
    )
    per_series, per_level = score_forecasts(forecasts, history, history, series_keys, weights)
    a1 = (sqrt(1 / 3) + sqrt(1 / 2.5)) / 2
    a2 = (0.5 + sqrt(0.5)) / 2
    a3 = sqrt(3)
    rmsse = per_series.set_index("unique_id")["rmsse"]
    assert rmsse[["S1", "S2", "S3"]].to_numpy() == pytest.approx([a1, a2, a3], abs=TOL)
    store = _row(per_level, level="store_id")
    assert store["wrmsse"] == pytest.approx(0.5 * a1 + 0.3 * a2 + 0.2 * a3, abs=TOL)
    assert store["n_excluded"] == 0
    # the total level has no forecasts: absent from per_level, overall = the store level
    assert _row(per_level, level=OVERALL_LEVEL)["wrmsse"] == pytest.approx(store["wrmsse"], abs=TOL)


def test_mean_rmsse_agrees_with_hierarchicalforecast_evaluate(forecasts, actuals, train, series_keys, weights) -> None:
    from hierarchicalforecast.evaluation import evaluate
    from utilsforecast.losses import rmsse

    _, per_level = score_forecasts(forecasts, actuals, train, series_keys, weights, models=["Good"])
    scored = forecasts[forecasts["unique_id"] != "S3"].merge(actuals, on=["unique_id", "ds"])
    tags = {"total": np.array([TOTAL_ID]), "store_id": np.array(["S1", "S2"])}
    theirs = evaluate(
        scored[["unique_id", "ds", "y", "Good"]],
        metrics=[partial(rmsse, seasonality=1)],
        tags=tags,
        train_df=trim_leading_zeros(train),
    ).set_index("level")["Good"]
    ours = per_level.set_index("level")["mean_rmsse"]
    for level in tags:
        assert ours[level] == pytest.approx(theirs[level], abs=TOL)


# -------------------------------------------------------------------------------------------- WSPL


def test_wspl_hand_computed(actuals, train, series_keys, weights) -> None:
    # pinball_u(y, q) = u (y - q) if y >= q else (1 - u)(q - y); quantiles .25 and .75
    #   S1 y (3, 5), q.25 (3, 3), q.75 (5, 5): u=.25: 0, .5 -> .25; u=.75: .5, 0 -> .25;
    #      mean .25 / mae_scale 5/3 = .15
    #   S2 y (4, 2), q.25 (2, 2), q.75 (4, 4): u=.25: .5, 0 -> .25; u=.75: 0, .5 -> .25; .25 / 2 = .125
    #   S3: mae_scale 0 -> excluded
    #   Total y (9, 10), q.25 (8, 8), q.75 (12, 12): u=.25: .25, .5 -> .375; u=.75: .75, .5 -> .625;
    #      mean .5 / 3 = 1/6
    # WSPL store_id = (.5 * .15 + .3 * .125) / .8 = .140625; total 1/6; overall mean
    quantiles = {
        "S1": ([3, 3], [5, 5]),
        "S2": ([2, 2], [4, 4]),
        "S3": ([2, 2], [3, 3]),
        TOTAL_ID: ([8, 8], [12, 12]),
    }
    frame = _long({k: v[0] for k, v in quantiles.items()}, DAYS[4:]).rename(columns={"y": "q0.25"})
    frame["q0.75"] = _long({k: v[1] for k, v in quantiles.items()}, DAYS[4:])["y"]
    table = wspl(frame, actuals, train, series_keys, weights, quantiles=[0.25, 0.75])
    assert list(table.columns) == ["level", "wspl", "mean_spl", "n_series", "n_excluded", "weight_covered"]
    result = table.set_index("level")
    assert result.loc["store_id", "wspl"] == pytest.approx(0.140625, abs=TOL)
    assert result.loc["store_id", "mean_spl"] == pytest.approx((0.15 + 0.125) / 2, abs=TOL)
    assert result.loc["store_id", "n_excluded"] == 1
    assert result.loc["total", "wspl"] == pytest.approx(1 / 6, abs=TOL)
    assert result.loc[OVERALL_LEVEL, "wspl"] == pytest.approx((1 / 6 + 0.140625) / 2, abs=TOL)
    assert list(result.index) == ["total", "store_id", OVERALL_LEVEL]

    exact = actuals.rename(columns={"y": "q0.25"}).assign(**{"q0.75": actuals["y"]})
    perfect = wspl(exact, actuals, train, series_keys, weights, quantiles=[0.25, 0.75])
    assert perfect["wspl"].to_numpy() == pytest.approx([0.0, 0.0, 0.0], abs=TOL)


# --------------------------------------------------------------------------------------- reporting


def test_accuracy_table_markdown_orders_levels_and_models(forecasts, actuals, train, series_keys, weights) -> None:
    _, per_level = score_forecasts(forecasts, actuals, train, series_keys, weights, models=["Good", "Bad"])
    table = accuracy_table_markdown(per_level, baseline="Bad")
    lines = table.strip().splitlines()
    assert lines[0] == "| level | Bad | Good |"
    assert [line.split("|")[1].strip() for line in lines[2:]] == ["total", "store_id", OVERALL_LEVEL]
    assert f"{sqrt(1 / 22):.4f}" in lines[2]
    with pytest.raises(ValueError, match="baseline"):
        accuracy_table_markdown(per_level)  # SeasonalNaive was not scored


# -------------------------------------------------------------------------------------------- M5

# Official M5 validation benchmarks (train d_1..d_1913, forecast d_1914..d_1941, weights_validation),
# WRMSSE per level 1-9 and their mean, as computed by this module and by an independent numpy check.
M5_BENCHMARKS = {
    "SeasonalNaive": [0.751430, 0.754396, 0.799304, 0.762047, 0.817086, 0.782983, 0.830436, 0.839263, 0.891855],
    "Naive": [1.487876, 1.517161, 1.534570, 1.519981, 1.605545, 1.540474, 1.614279, 1.538774, 1.561589],
}
M5_MEAN = {"SeasonalNaive": 0.803200, "Naive": 1.546694}
M5_HIERARCHY = ["state_id", "store_id", "cat_id", "dept_id"]


def _m5_levels_1_to_9(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The 154 series of M5 levels 1-9 (long) and their series_keys, by plain pandas groupbys."""
    wide = pd.read_csv(folder / "store_dept_sales_d1_d1941.csv.gz")
    calendar = pd.read_csv(folder / "calendar.csv.gz", usecols=["date", "d"])
    day_columns = [c for c in wide.columns if c.startswith("d_")]
    bottom = wide.melt(id_vars=M5_HIERARCHY, value_vars=day_columns, var_name="d", value_name="y")
    bottom["ds"] = pd.to_datetime(bottom["d"].map(dict(zip(calendar["d"], calendar["date"]))))
    series, keys = [], []
    for level_id in [f"Level{i}" for i in range(1, 10)]:
        columns = M5_LEVELS[level_id]
        if columns:
            grouped = bottom.groupby([*columns, "ds"], as_index=False)["y"].sum()
            grouped["unique_id"] = grouped[columns].astype(str).agg("/".join, axis=1)
        else:
            grouped = bottom.groupby("ds", as_index=False)["y"].sum().assign(unique_id=TOTAL_ID)
        key = grouped.drop_duplicates("unique_id")[["unique_id", *columns]].assign(level=level_name(columns))
        series.append(grouped[["unique_id", "ds", "y"]])
        keys.append(key)
    y = pd.concat(series, ignore_index=True).astype({"y": "float64"})
    series_keys = pd.concat(keys, ignore_index=True).reindex(columns=["unique_id", "level", *M5_HIERARCHY])
    return y, series_keys


def _naive_benchmarks(history: pd.DataFrame, cutoff: pd.Timestamp, horizon: int, season: int = 7) -> pd.DataFrame:
    """Naive (last value repeated) and SeasonalNaive (last ``season`` values repeated) after ``cutoff``."""
    train = history[history["ds"] <= cutoff]
    steps = np.arange(1, horizon + 1)
    ids = train["unique_id"].unique()
    frame = pd.DataFrame(
        {"unique_id": np.repeat(ids, horizon), "ds": np.tile(cutoff + pd.to_timedelta(steps, "D"), len(ids))}
    )
    last = train[train["ds"] == cutoff].set_index("unique_id")["y"]
    frame["Naive"] = frame["unique_id"].map(last)
    # step h repeats the value of day cutoff - season + ((h - 1) mod season) + 1
    source_day = cutoff - pd.to_timedelta(season - 1 - (np.tile(steps, len(ids)) - 1) % season, "D")
    lookup = train.set_index(["unique_id", "ds"])["y"]
    frame["SeasonalNaive"] = lookup.reindex(pd.MultiIndex.from_arrays([frame["unique_id"], source_day])).to_numpy()
    return frame


@pytest.mark.m5
def test_m5_validation_benchmarks_levels_1_to_9() -> None:
    folder = shared_m5_folder()
    if not (folder / "store_dept_sales_d1_d1941.csv.gz").exists():
        pytest.skip(f"the real M5 data is absent ({folder}); it lives beside the repository, never inside it")
    history, series_keys = _m5_levels_1_to_9(folder)
    assert len(series_keys) == 154
    calendar = pd.read_csv(folder / "calendar.csv.gz", usecols=["date", "d"]).set_index("d")["date"]
    cutoff, horizon = pd.Timestamp(calendar["d_1913"]), 28
    train = history[history["ds"] <= cutoff]
    actuals = history[(history["ds"] > cutoff) & (history["ds"] <= cutoff + pd.Timedelta(days=horizon))]
    forecasts = _naive_benchmarks(history, cutoff, horizon)

    weights = m5_weights(folder / "weights_validation.csv.gz", series_keys)
    assert len(weights) == 154
    assert weights.groupby("level")["weight"].sum().to_numpy() == pytest.approx([1.0] * 9, abs=1e-6)

    _, per_level = score_forecasts(forecasts, actuals, train, series_keys, weights)
    print("\n" + accuracy_table_markdown(per_level, baseline="SeasonalNaive", digits=6))
    assert per_level["n_excluded"].sum() == 0
    levels = [level_name(M5_LEVELS[f"Level{i}"]) for i in range(1, 10)]
    wrmsse = per_level.set_index(["level", "model"])["wrmsse"]
    for model, values in M5_BENCHMARKS.items():
        ours = [wrmsse[(level, model)] for level in levels]
        np.testing.assert_allclose(ours, values, atol=1e-4, err_msg=model)
        assert wrmsse[(OVERALL_LEVEL, model)] == pytest.approx(M5_MEAN[model], abs=1e-4)


def test_window_losses_equal_utilsforecasts_rmsse_and_mase() -> None:
    """The scales come from one pass over the history for every window; the numbers are utilsforecast's
    rmsse and mase with the history up to each cutoff (a constant series, scale 0, included)."""
    from utilsforecast import losses

    from forecasting_assets.evaluation.metrics import _per_window_losses

    rng = np.random.default_rng(3)
    dates = pd.date_range("2024-01-01", periods=60)
    ids = pd.CategoricalDtype(["a", "b", "flat"])
    history = pd.DataFrame({"unique_id": np.repeat(["a", "b", "flat"], 60), "ds": np.tile(dates, 3), "y": np.r_[rng.poisson(5, 60), rng.poisson(50, 60), np.full(60, 4.0)].astype(float)})
    history["unique_id"] = history["unique_id"].astype(ids)
    cutoffs = [dates[39], dates[49]]
    frame = pd.concat(
        [history[(history["ds"] > c) & (history["ds"] <= c + pd.Timedelta(days=7))].assign(cutoff=c) for c in cutoffs], ignore_index=True
    )
    frame["m"] = frame["y"] + rng.normal(0, 2, len(frame))
    ours = _per_window_losses(frame[["unique_id", "ds", "cutoff", "y", "m"]], history, ["m"])
    for name, reference in (("rmsse", losses.rmsse), ("mase", losses.mase)):
        for cutoff in cutoffs:
            window = frame[frame["cutoff"] == cutoff].drop(columns="cutoff")[["unique_id", "ds", "y", "m"]]
            theirs = reference(window, models=["m"], seasonality=1, train_df=history[history["ds"] <= cutoff]).set_index("unique_id")["m"]
            mine = ours[name][ours[name]["cutoff"] == cutoff].set_index("unique_id")["m"]
            np.testing.assert_allclose(mine.loc[["a", "b"]].to_numpy(), theirs.loc[["a", "b"]].to_numpy(), rtol=1e-12)
            assert not np.isfinite(mine.loc["flat"])


@pytest.mark.parametrize("windows", [False, True])
@pytest.mark.parametrize("shuffled", [False, True])
def test_history_masks_give_the_scales_of_the_trimmed_copy(windows: bool, shuffled: bool) -> None:
    """The scores' scales from a mask over the history equal those of the cut and trimmed copy of it."""
    from forecasting_assets.evaluation.metrics import _history, _history_rows, _one_step_scales, _with_categorical_ids

    rng = np.random.default_rng(3)
    ids = [f"s{i}" for i in range(6)]
    dates = pd.date_range("2021-01-01", periods=40)
    train = pd.DataFrame({"unique_id": np.repeat(ids, len(dates)), "ds": np.tile(dates, len(ids)), "y": rng.poisson(2, len(ids) * len(dates)).astype(float)})
    train.loc[train["unique_id"] == "s1", "y"] = 0.0  # never sold
    train.loc[(train["unique_id"] == "s2") & (train["ds"] < "2021-01-20"), "y"] = 0.0  # leading zeros
    train.loc[(train["unique_id"] == "s3") & (train["ds"] < "2021-02-05"), "y"] = 0.0  # first sale after the cut
    train.loc[5, "y"] = np.nan
    if shuffled:
        train = train.iloc[rng.permutation(len(train))].reset_index(drop=True)
    if windows:
        frame = pd.DataFrame({"unique_id": ids[:4] * 2, "ds": [dates[30]] * 4 + [dates[35]] * 4, "cutoff": [dates[29]] * 4 + [dates[34]] * 4})
        cutoffs = [dates[29], dates[34]]
    else:
        frame = pd.DataFrame({"unique_id": ids[:5], "ds": [dates[30], dates[30], dates[25], dates[33], dates[30]]})
        cutoffs = [None]
    dtype = pd.CategoricalDtype(ids)
    frame = frame.astype({"unique_id": dtype})
    history = _with_categorical_ids(train, dtype)
    expected = _one_step_scales(_history(history, frame, n_series=len(ids)), cutoffs)
    rows_history, rows = _history_rows(history, frame, n_series=len(ids))
    got = _one_step_scales(rows_history, cutoffs, rows)
    for cutoff in cutoffs:
        for want, have in zip(expected[cutoff], got[cutoff]):
            pd.testing.assert_series_equal(have, want)
