"""Tests of forecasting_assets.features.series_features on small synthetic series (a few seconds)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.features.series_features import (
    CURATED_FC_PARAMETERS,
    MAX_NAME_LENGTH,
    compute_series_features,
    curated_fc_parameters,
    default_chunk_size,
    intermittency_classes,
    is_sparse,
    longest_zero_run,
    recent_window,
    seasonal_amplitude,
    sql_friendly_names,
    share_of_zeros,
)

SQL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def long_frame(values: dict[str, list[float] | np.ndarray], start: str = "2024-01-01") -> pd.DataFrame:
    """A long series frame from {unique_id: values}; every series starts on ``start`` (daily)."""
    frames = [
        pd.DataFrame(
            {
                "unique_id": uid,
                "ds": pd.date_range(start, periods=len(ys), freq="D"),
                "y": np.asarray(ys, dtype="float64"),
            }
        )
        for uid, ys in values.items()
    ]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture(scope="module")
def synthetic() -> pd.DataFrame:
    """Four 140-day series: a strong weekly cycle, white noise, sparse demand and a trend."""
    rng = np.random.default_rng(42)
    t = np.arange(140)
    return long_frame(
        {
            "weekly": 20 + 8 * np.sin(2 * np.pi * t / 7) + rng.normal(0, 1, t.size),
            "noise": 20 + rng.normal(0, 4, t.size),
            "sparse": rng.poisson(0.15, t.size) * rng.integers(1, 5, t.size),
            "trend": 5 + 0.2 * t + rng.normal(0, 1, t.size),
        }
    ).sample(frac=1.0, random_state=0)  # rows shuffled on purpose


@pytest.fixture(scope="module")
def features(synthetic: pd.DataFrame) -> pd.DataFrame:
    return compute_series_features(synthetic, window=112, n_jobs=1)


# ---------------------------------------------------------------------------------------------- window


def test_recent_window_keeps_exactly_the_last_n_points() -> None:
    frame = long_frame({"b": np.arange(10.0), "a": [1.0, 2.0, 3.0]}).sample(frac=1.0, random_state=1)
    out = recent_window(frame, 5)
    assert list(out["unique_id"]) == ["a"] * 3 + ["b"] * 5  # short series kept whole, sorted by id
    assert list(out.loc[out.unique_id == "b", "y"]) == [5.0, 6.0, 7.0, 8.0, 9.0]
    assert list(out.loc[out.unique_id == "b", "ds"]) == list(pd.date_range("2024-01-06", periods=5))
    assert out.index.equals(pd.RangeIndex(len(out)))
    with pytest.raises(ValueError):
        recent_window(frame, 0)


# -------------------------------------------------------------------------------------------- features


def test_one_finite_row_per_series_in_sorted_order(features: pd.DataFrame) -> None:
    assert list(features["unique_id"]) == ["noise", "sparse", "trend", "weekly"]
    values = features.drop(columns="unique_id")
    assert values.shape[1] >= 20
    assert (values.dtypes == "float64").all()
    assert np.isfinite(values.to_numpy()).all()


def test_feature_names_are_sql_friendly_and_queryable(features: pd.DataFrame) -> None:
    import duckdb

    names = list(features.columns)
    assert names[0] == "unique_id"
    assert len(set(names)) == len(names)
    assert all(SQL_NAME.match(n) and len(n) <= MAX_NAME_LENGTH for n in names), names
    con = duckdb.connect()
    con.register("features", features)
    rows = con.execute(f"SELECT {', '.join(names)} FROM features ORDER BY unique_id").fetchall()  # unquoted
    assert len(rows) == 4


def test_features_merge_with_intermittency_classes_without_clashes(
    synthetic: pd.DataFrame, features: pd.DataFrame
) -> None:
    classes = intermittency_classes(synthetic, window=112)
    assert set(features.columns) & set(classes.columns) == {"unique_id"}
    merged = features.merge(classes, on="unique_id", how="left", validate="one_to_one")
    assert merged.shape[1] == features.shape[1] + classes.shape[1] - 1


def test_window_is_applied(features: pd.DataFrame) -> None:
    assert (features["length"] == 112).all()
    # "s": 50 zeros then 50 ones, so its last 50 points hold no zero. "t" alternates 1, 0: its zero
    # share is 0.5 in any window (and keeps the share_of_zeros column from being all zero, hence dropped).
    frame = long_frame({"s": [0.0] * 50 + [1.0] * 50, "t": [1.0, 0.0] * 50})
    out = compute_series_features(frame, window=50).set_index("unique_id")
    assert out.loc["s", "share_of_zeros"] == 0.0
    whole = compute_series_features(frame, window=100).set_index("unique_id")
    assert whole.loc["s", "share_of_zeros"] == 0.5


def test_weekly_features_detect_a_weekly_cycle(features: pd.DataFrame) -> None:
    f = features.set_index("unique_id")
    assert f.loc["weekly", "acf_lag_7"] > 0.8 > 0.3 > f.loc["noise", "acf_lag_7"]
    assert f.loc["weekly", "acf_lag_14"] > f.loc["noise", "acf_lag_14"]
    assert f.loc["weekly", "seasonal_amplitude_period_7"] > 0.3 > f.loc["noise", "seasonal_amplitude_period_7"]


def test_sparse_and_trend_features(features: pd.DataFrame) -> None:
    f = features.set_index("unique_id")
    assert f.loc["sparse", "share_of_zeros"] > 0.7 > f.loc["noise", "share_of_zeros"]
    assert f.loc["sparse", "longest_zero_run"] >= 5
    assert f.loc["trend", "linear_trend_slope"] == pytest.approx(0.2, abs=0.02)
    assert f.loc["trend", "linear_trend_rvalue"] > 0.95


def test_short_series_do_not_crash() -> None:
    frame = long_frame({"one": [3.0], "two": [1.0, 0.0], "three": [0.0, 0.0, 0.0], "long": np.arange(40.0)})
    frame = pd.concat([frame, long_frame({"nan": [np.nan, np.nan]})], ignore_index=True)
    out = compute_series_features(frame, window=30)
    assert list(out["unique_id"]) == ["long", "nan", "one", "three", "two"]
    assert np.isfinite(out.drop(columns="unique_id").to_numpy()).all()
    only_short = compute_series_features(long_frame({"x": [1.0], "y": [0.0]}))
    assert list(only_short["unique_id"]) == ["x", "y"]
    empty = compute_series_features(long_frame({"z": [np.nan]}))
    assert list(empty.columns) == ["unique_id"]


def test_parallel_extraction_and_other_parameter_sets(synthetic: pd.DataFrame) -> None:
    from tsfresh.feature_extraction import MinimalFCParameters

    parallel = compute_series_features(synthetic, window=112, n_jobs=2)
    serial = compute_series_features(synthetic, window=112, n_jobs=1)
    pd.testing.assert_frame_equal(parallel, serial)  # custom calculators survive the worker processes
    minimal = compute_series_features(synthetic, window=112, fc_parameters=MinimalFCParameters())
    assert {"mean", "std", "maximum", "length"} <= set(minimal.columns)


def test_custom_calculators() -> None:
    assert share_of_zeros(np.array([0.0, 1.0, 0.0, 2.0])) == 0.5
    assert longest_zero_run(np.array([0.0, 1.0, 0.0, 0.0, 0.0, 2.0, 0.0])) == 3
    assert longest_zero_run(np.array([1.0, 2.0])) == 0
    t = np.arange(70)
    # 10 + 5 sin(2πt/7) over 10 full weeks: amplitude 5, mean |x| = 10 -> 5 / 10 = 0.5
    assert seasonal_amplitude(10 + 5 * np.sin(2 * np.pi * t / 7), 7) == pytest.approx(0.5)
    assert seasonal_amplitude(np.ones(70), 7) == pytest.approx(0.0)
    assert np.isnan(seasonal_amplitude(np.ones(10), 7))  # fewer than two cycles


def test_curated_parameters_follow_the_season_length() -> None:
    assert CURATED_FC_PARAMETERS["autocorrelation"] == [{"lag": lag} for lag in (1, 7, 14, 28)]
    weekly_data = curated_fc_parameters(52)
    assert weekly_data["autocorrelation"] == [{"lag": lag} for lag in (1, 52, 104, 208)]
    assert seasonal_amplitude not in curated_fc_parameters(1)


def test_sql_friendly_names() -> None:
    raw = [
        "y__autocorrelation__lag_7",
        "y__quantile__q_0.1",
        'y__linear_trend__attr_"slope"',
        'y__agg_autocorrelation__f_agg_"mean"__maxlag_28',
        "y__order",
        "y__1st",
        "y__" + "very_long_name_" * 10 + "a",
        "y__" + "very_long_name_" * 10 + "b",
        "y__Mean",
        "y__mean",
        "y__unique_id",
    ]
    names = sql_friendly_names(raw, reserved={"unique_id"})
    assert names[:6] == ["acf_lag_7", "quantile_q_0_1", "linear_trend_slope", "acf_agg_mean_maxlag_28",
                         "order_value", "f_1st"]
    assert names[8:] == ["mean", "mean_2", "unique_id_2"]
    assert names[6] != names[7]
    assert all(SQL_NAME.match(n) and len(n) <= MAX_NAME_LENGTH for n in names)


def test_default_chunk_size() -> None:
    assert default_chunk_size(200, 2) == 10
    assert default_chunk_size(5_000, 2) == 250
    assert default_chunk_size(42_840, 2) == 500


# -------------------------------------------------------------------------------------- intermittency


@pytest.fixture(scope="module")
def hand_built() -> pd.DataFrame:
    return long_frame(
        {
            # every period sells: ADI = 8 periods / 8 demands = 1
            # sizes 10,12 alternating: mean 11, population std 1 -> CV² = (1/11)² = 0.00826
            "smooth": [10, 12, 10, 12, 10, 12, 10, 12],
            # ADI = 8 / 8 = 1; sizes 1,9: mean 5, std 4 -> CV² = (4/5)² = 0.64
            "erratic": [1, 9, 1, 9, 1, 9, 1, 9],
            # first demand at period 2: 7 periods / 4 demands -> ADI = 1.75; sizes all 5 -> CV² = 0
            "intermittent": [0, 5, 0, 5, 0, 5, 0, 5],
            # first demand at period 3: 10 periods / 4 demands -> ADI = 2.5; sizes 1,9,1,9 -> CV² = 0.64
            "lumpy": [0, 0, 1, 0, 0, 9, 0, 0, 1, 0, 0, 9],
            # never sells
            "none": [0, 0, 0, 0, 0, 0],
            # ADI counts from the first demand: 4 periods / 4 demands = 1 (leading zeros ignored),
            # CV² = 0 -> smooth, although half of the periods are zero
            "late_start": [0, 0, 0, 0, 3, 3, 3, 3],
        }
    )


def test_intermittency_classes_by_hand(hand_built: pd.DataFrame) -> None:
    out = intermittency_classes(hand_built)
    assert list(out.columns) == ["unique_id", "adi", "cv2", "demand_class", "zero_share"]
    assert list(out["unique_id"]) == sorted(out["unique_id"])
    c = out.set_index("unique_id")
    expected = {
        # id: (adi, cv2, class, zero_share)
        "smooth": (1.0, (1 / 11) ** 2, "smooth", 0.0),
        "erratic": (1.0, 0.64, "erratic", 0.0),
        "intermittent": (1.75, 0.0, "intermittent", 4 / 8),
        "lumpy": (2.5, 0.64, "lumpy", 8 / 12),
        "late_start": (1.0, 0.0, "smooth", 4 / 8),
    }
    for uid, (adi, cv2, cls, zeros) in expected.items():
        assert c.loc[uid, "adi"] == pytest.approx(adi), uid
        assert c.loc[uid, "cv2"] == pytest.approx(cv2), uid
        assert c.loc[uid, "demand_class"] == cls, uid
        assert c.loc[uid, "zero_share"] == pytest.approx(zeros), uid
    assert c.loc["none", "demand_class"] == "no_demand"
    assert np.isnan(c.loc["none", "adi"]) and np.isnan(c.loc["none", "cv2"])
    assert c.loc["none", "zero_share"] == 1.0


def test_intermittency_on_a_recent_window(hand_built: pd.DataFrame) -> None:
    c = intermittency_classes(hand_built, window=3).set_index("unique_id")
    # intermittent, last 3 = [5, 0, 5]: 3 periods from the first demand / 2 demands = 1.5 -> intermittent
    assert c.loc["intermittent", "adi"] == pytest.approx(1.5)
    assert c.loc["intermittent", "demand_class"] == "intermittent"
    # lumpy, last 3 = [0, 0, 9]: 1 period from the first demand / 1 demand = 1; a single size has
    # population std 0 -> CV² = 0 -> smooth; 2 of 3 periods are zero
    assert c.loc["lumpy", "adi"] == pytest.approx(1.0)
    assert c.loc["lumpy", "cv2"] == pytest.approx(0.0)
    assert c.loc["lumpy", "demand_class"] == "smooth"
    assert c.loc["lumpy", "zero_share"] == pytest.approx(2 / 3)


def test_is_sparse(hand_built: pd.DataFrame) -> None:
    flags = is_sparse(intermittency_classes(hand_built))
    assert flags.dtype == bool
    assert flags.index.name == "unique_id"
    assert flags.to_dict() == {
        "erratic": False,
        "intermittent": True,
        "late_start": False,
        "lumpy": True,
        "none": True,
        "smooth": False,
    }


@pytest.mark.parametrize(
    "ignored",
    [
        "before_import",  # as inherited from such a parent
        "after_import",  # as Dagster leaves it where SIGINT is ignored: every execution maps SIGTERM to SIGINT's handler
    ],
)
def test_parallel_extraction_finishes_when_the_parent_ignored_sigterm(ignored: str) -> None:
    """A CI runner or a shell's background job may start us with SIGTERM ignored. multiprocessing stops its
    pool workers with SIGTERM, so tsfresh's ``Pool.terminate()`` then waited forever on a worker (seen on CI).
    Importing forecasting_assets restores the default action, in this process and in the forkserver that
    forks the workers; without that, this child process hangs."""
    import os
    import signal
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(
        f"""
        import signal
        if "{ignored}" == "before_import":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        import numpy as np, pandas as pd
        from forecasting_assets.features.series_features import compute_series_features
        if "{ignored}" == "after_import":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        rng = np.random.default_rng(0)
        frame = pd.concat([
            pd.DataFrame({{"unique_id": f"s{{i}}", "ds": pd.date_range("2020-01-01", periods=200), "y": rng.poisson(5, 200).astype(float)}})
            for i in range(12)
        ])
        for _ in range(8):
            compute_series_features(frame, window=112, n_jobs=2)
        print("finished")
        """
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = child.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)  # SIGTERM would be ignored
        child.communicate()
        pytest.fail("parallel extraction hung: a pool worker ignored SIGTERM")
    assert child.returncode == 0 and "finished" in out, err[-2000:]


# ---- how the sales of a series' store and department have been moving (features/exogenous.py)


def _two_stores_two_departments(days: int = 500, doubled_from: int = 430) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bottom sales of stores S1, S2 × departments D1, D2, 10 a day each; S2's double from day ``doubled_from``."""
    dates = pd.date_range("2022-01-01", periods=days, freq="D")
    rows = []
    for store in ("S1", "S2"):
        for dept in ("D1", "D2"):
            y = np.full(days, 10.0)
            if store == "S2":
                y[doubled_from:] = 20.0
            rows.append(pd.DataFrame({"store_id": store, "dept_id": dept, "ds": dates, "y": y}))
    keys = pd.DataFrame(
        {
            "unique_id": ["Total", "S1", "S2", "D1", "D2", "S1/D1", "S1/D2", "S2/D1", "S2/D2"],
            "level": ["total", "store_id", "store_id", "dept_id", "dept_id", *["store_id/dept_id"] * 4],
            "level_order": [0, 1, 1, 1, 1, 2, 2, 2, 2],
            "store_id": [None, "S1", "S2", None, None, "S1", "S1", "S2", "S2"],
            "dept_id": [None, None, None, "D1", "D2", "D1", "D2", "D1", "D2"],
        }
    )
    return pd.concat(rows, ignore_index=True), keys


def test_parent_changes_by_hand() -> None:
    from forecasting_assets.features.exogenous import parent_change_exogenous

    sales, keys = _two_stores_two_departments()
    changes = parent_change_exogenous(sales, keys, ["store_id", "dept_id"], season_length=7, horizon=3, freq="D")
    assert list(changes.columns) == ["unique_id", "ds", "store_id_recent_change", "store_id_yearly_change", "dept_id_recent_change", "dept_id_yearly_change"]
    at = changes.set_index(["unique_id", "ds"])
    day = pd.Timestamp("2022-01-01") + pd.Timedelta(days=439)  # the known days (3 back): the last 7 doubled, 21 of 28 not
    expected = {
        ("S2/D1", "store_id_recent_change"): np.log(41) - np.log(26),  # store S2: 20 → 40 a day
        ("S1/D1", "store_id_recent_change"): 0.0,
        ("D1", "store_id_recent_change"): np.log(61) - np.log(46),  # no store: the total, 40 → 60
        ("S2/D1", "dept_id_recent_change"): np.log(31) - np.log(23.5),  # department D1 over both stores: 20 → 30
        ("S2", "dept_id_recent_change"): np.log(61) - np.log(46),  # no department: the total
    }
    for (uid, column), value in expected.items():
        assert at.loc[(uid, day), column] == pytest.approx(value, abs=1e-5), (uid, column)
    later = pd.Timestamp("2022-01-01") + pd.Timedelta(days=470)  # the last 28 known days doubled; a year before, not
    assert at.loc[("S2/D2", later), "store_id_recent_change"] == pytest.approx(0.0, abs=1e-6)
    assert at.loc[("S2/D2", later), "store_id_yearly_change"] == pytest.approx(np.log(41) - np.log(21), abs=1e-5)
    assert at.loc[("S1/D2", later), "store_id_yearly_change"] == pytest.approx(0.0, abs=1e-6)


def test_parent_changes_are_known_over_the_horizon_and_read_nothing_newer() -> None:
    """Rows run to the horizon's last day, and a day's sales move no feature before that day + horizon."""
    from forecasting_assets.features.exogenous import parent_change_exogenous

    sales, keys = _two_stores_two_departments(days=120, doubled_from=60)
    args = (keys, ["store_id", "dept_id"], 7, 5, "D")
    changes = parent_change_exogenous(sales, *args)
    last = sales["ds"].max()
    assert changes["ds"].max() == last + pd.Timedelta(days=5)
    assert len(changes) == len(keys) * (120 + 5) and changes.drop(columns=["unique_id", "ds"]).notna().all().all()
    moved = sales.copy()
    moved.loc[moved["ds"] == last, "y"] *= 10  # the last day's sales
    again = parent_change_exogenous(moved, *args)
    before = changes["ds"] < last + pd.Timedelta(days=5)
    pd.testing.assert_frame_equal(again[before], changes[before])
    assert not again[~before].equals(changes[~before])
    assert parent_change_exogenous(sales, keys, [], 7, 5, "D") is None  # a bottom level without key columns
    start = last - pd.Timedelta(days=9)
    cut = parent_change_exogenous(sales, *args, start=start)
    pd.testing.assert_frame_equal(cut.reset_index(drop=True), changes[changes["ds"] >= start].reset_index(drop=True))
