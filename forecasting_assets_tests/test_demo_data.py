"""Tests of the deterministic M5-shaped demo data generator (tiny shapes, well under a second each)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from forecasting_assets import demo_data as dd
from forecasting_assets.paths import shared_m5_folder
from forecasting_assets.spec import M5_LEVELS

M5_CALENDAR_COLUMNS = [
    "date", "wm_yr_wk", "weekday", "wday", "month", "year", "d",
    "event_name_1", "event_type_1", "event_name_2", "event_type_2",
]  # fmt: skip
TINY = dd.PRESETS["tiny"]


@pytest.fixture(scope="module")
def tiny() -> dd.DemoData:
    return dd.generate_demo(TINY, seed=7)


def _matrix(data: dd.DemoData) -> np.ndarray:
    return data.sales[data.day_columns].to_numpy()


def _sales_calendar(data: dd.DemoData) -> pd.DataFrame:
    return data.calendar.iloc[: data.n_days]


def test_deterministic_for_a_seed_and_different_for_another(tiny: dd.DemoData) -> None:
    again = dd.generate_demo("tiny", seed=7)
    pd.testing.assert_frame_equal(tiny.sales, again.sales)
    pd.testing.assert_frame_equal(tiny.calendar, again.calendar)
    pd.testing.assert_frame_equal(tiny.prices, again.prices)
    other = dd.generate_demo("tiny", seed=8)
    assert not np.array_equal(_matrix(tiny), _matrix(other))
    assert not tiny.prices["sell_price"].equals(other.prices["sell_price"])


def test_shape_ids_and_calendar(tiny: dd.DemoData) -> None:
    assert tiny.n_series == 16 == TINY.n_series
    assert tiny.n_days == 420
    assert list(tiny.sales.columns) == dd.ID_COLUMNS + [f"d_{i}" for i in range(1, 421)]
    assert tiny.sales["id"].is_unique
    assert (tiny.sales["id"] == tiny.sales["item_id"] + "_" + tiny.sales["store_id"]).all()
    assert sorted(tiny.sales["state_id"].unique()) == ["CA", "TX"]
    assert sorted(tiny.sales["store_id"].unique()) == ["CA_1", "TX_1"]
    assert sorted(tiny.sales["cat_id"].unique()) == ["FOODS", "HOUSEHOLD"]
    assert "FOODS_1_001" in set(tiny.sales["item_id"])
    assert np.issubdtype(_matrix(tiny).dtype, np.integer) and _matrix(tiny).min() >= 0

    cal = tiny.calendar
    assert len(cal) == 420 + 28
    assert list(cal.columns) == M5_CALENDAR_COLUMNS + ["snap_CA", "snap_TX"]
    assert cal["date"].iloc[0] == "2011-01-29" and cal["d"].iloc[-1] == "d_448"
    assert cal["wm_yr_wk"].iloc[0] == 11101 and cal["wday"].iloc[0] == 1 and cal["weekday"].iloc[0] == "Saturday"
    assert set(cal["wday"]) == set(range(1, 8))
    assert list(tiny.prices.columns) == ["store_id", "item_id", "wm_yr_wk", "sell_price"]
    assert tiny.prices["wm_yr_wk"].max() == cal["wm_yr_wk"].iloc[-1]  # prices cover the known future


def test_walmart_weeks_and_events() -> None:
    dates = pd.to_datetime(["2011-01-29", "2011-02-04", "2012-01-28", "2013-01-26", "2014-02-01", "2016-01-02"])
    assert dd.wm_yr_wk(pd.DatetimeIndex(dates)).tolist() == [11101, 11101, 11201, 11301, 11401, 11549]
    cal = dd.make_calendar(1941, ["CA", "TX", "WI"])
    events = cal.set_index("date")
    assert events.loc["2011-12-25", "event_name_1"] == "Christmas"
    assert events.loc["2011-12-25", "event_type_1"] == "National"
    assert events.loc["2011-11-24", "event_name_1"] == "Thanksgiving"
    assert events.loc["2012-02-05", "event_name_1"] == "SuperBowl"
    assert events.loc["2011-04-24", "event_name_2"] != ""  # Easter and OrthodoxEaster on one day
    per_year = (cal["event_name_1"] != "").groupby(cal["year"]).sum()
    assert (per_year.loc[2012:2015] >= 8).all()
    assert set(cal["event_type_1"]) - {""} == {"Sporting", "Cultural", "National", "Religious"}
    assert cal["snap_CA"].sum() > 0 and cal["snap_WI"].sum() > 0


def test_presets() -> None:
    small, medium, m5 = dd.PRESETS["small"], dd.PRESETS["medium"], dd.PRESETS["m5"]
    assert (small.n_series, small.days) == (48, 760)
    assert (medium.n_series, medium.days) == (3 * 2 * 3 * 2 * 10, 1100)
    assert (m5.n_items, m5.n_series, m5.days) == (3049, 30490, 1941)
    h = dd.build_hierarchy(m5)
    assert h.stores == ["CA_1", "CA_2", "CA_3", "CA_4", "TX_1", "TX_2", "TX_3", "WI_1", "WI_2", "WI_3"]
    per_dept = pd.Series(np.array(h.depts)[h.item_dept]).value_counts().to_dict()
    assert per_dept == {
        "FOODS_1": 216, "FOODS_2": 398, "FOODS_3": 823, "HOBBIES_1": 416,
        "HOBBIES_2": 149, "HOUSEHOLD_1": 532, "HOUSEHOLD_2": 515,
    }  # fmt: skip
    assert dd.state_names(5) == ["CA", "TX", "WI", "S4", "S5"]


def test_items_are_intermittent_while_the_total_only_stops_when_closed(tiny: dd.DemoData) -> None:
    sales = _matrix(tiny)
    assert (sales == 0).mean() > 0.15  # many zero days at item level
    assert ((sales == 0).mean(axis=1) > 0.3).any()  # some slow items
    total = sales.sum(axis=0)
    cal = _sales_calendar(tiny)
    closed = (cal["event_name_1"] == "Christmas").to_numpy()
    assert closed.any() and (total[closed] == 0).all()
    assert (total[~closed] > 0).all()


def test_weekend_sells_more(tiny: dd.DemoData) -> None:
    total = _matrix(tiny).sum(axis=0)
    weekend = _sales_calendar(tiny)["wday"].isin([1, 2]).to_numpy()  # Saturday, Sunday
    assert total[weekend].mean() > 1.1 * total[~weekend].mean()


def test_snap_days_raise_foods_sales() -> None:
    # More items and days than tiny so that a ~10-15 % lift stands clearly above the noise.
    data = dd.generate_demo(replace(TINY, items_per_dept=25, days=1100), seed=7)
    sales, cal = _matrix(data), _sales_calendar(data)
    is_open = sales.sum(axis=0) > 0
    for state in ("CA", "TX"):
        in_state = (data.sales["state_id"] == state).to_numpy()
        foods = sales[in_state & (data.sales["cat_id"] == "FOODS").to_numpy()].sum(axis=0)
        other = sales[in_state & (data.sales["cat_id"] != "FOODS").to_numpy()].sum(axis=0)
        snap = (cal[f"snap_{state}"] == 1).to_numpy()
        a, b = snap & is_open, ~snap & is_open
        lift = (foods[a].mean() / foods[b].mean()) / (other[a].mean() / other[b].mean())
        assert lift > 1.04, (state, lift)


def _weekly(data: dd.DemoData) -> pd.DataFrame:
    """Weekly sales and price per series (full weeks only) with a promotion flag."""
    long = dd.long_frame(data)
    long["wm_yr_wk"] = np.tile(_sales_calendar(data)["wm_yr_wk"].to_numpy(), data.n_series)
    weekly = long.groupby(["store_id", "item_id", "wm_yr_wk"]).agg(
        sales=("sales", "sum"), price=("price", "first"), days=("sales", "size")
    )
    weekly = weekly[weekly["price"].notna() & (weekly["days"] == 7)].reset_index()
    by_series = weekly.groupby(["store_id", "item_id"])["price"]
    regular = by_series.transform(lambda p: p.rolling(9, center=True, min_periods=1).max())
    weekly["promo"] = weekly["price"] < 0.97 * regular
    return weekly


def test_promotions_raise_sales(tiny: dd.DemoData) -> None:
    weekly = _weekly(tiny)
    assert weekly["promo"].sum() >= 20
    means = weekly.groupby(["store_id", "item_id", "promo"])["sales"].agg(["mean", "size"]).unstack("promo").dropna()
    # Pooled over series: promotion-week sales against what the same weeks would sell at regular price.
    lift = (means[("mean", True)] * means[("size", True)]).sum() / (means[("mean", False)] * means[("size", True)]).sum()
    assert lift > 1.15, lift


def test_late_launches_have_leading_zeros_and_no_early_prices() -> None:
    data = dd.generate_demo(replace(TINY, late_launch_share=0.5, discontinued_share=0.0), seed=3)
    first_week = data.prices.groupby(["store_id", "item_id"])["wm_yr_wk"].min()
    weeks = _sales_calendar(data)["wm_yr_wk"].to_numpy()
    late = first_week[first_week > weeks[0]]
    assert len(late) >= 2
    indexed = data.sales.set_index(["store_id", "item_id"])[data.day_columns]
    for key, week in late.items():
        before = weeks < week
        assert before.sum() >= 28 and indexed.loc[key].to_numpy()[before].sum() == 0
    never_late = dd.generate_demo(replace(TINY, late_launch_share=0.0, discontinued_share=0.0), seed=3)
    assert (never_late.prices.groupby(["store_id", "item_id"])["wm_yr_wk"].min() == weeks[0]).all()


def test_discontinued_items_stop() -> None:
    data = dd.generate_demo(replace(TINY, late_launch_share=0.0, discontinued_share=0.3), seed=5)
    last_week = data.prices.groupby(["store_id", "item_id"])["wm_yr_wk"].max()
    weeks = _sales_calendar(data)["wm_yr_wk"].to_numpy()
    stopped = last_week[last_week < weeks[-1]]
    assert len(stopped) >= 2
    indexed = data.sales.set_index(["store_id", "item_id"])[data.day_columns]
    for key, week in stopped.items():
        after = weeks > week
        assert after.sum() >= 14 and indexed.loc[key].to_numpy()[after].sum() == 0


def test_long_format_round_trips_to_the_same_totals(tmp_path: Path, tiny: dd.DemoData) -> None:
    files = dd.write_demo(tmp_path, TINY, seed=7, fmt="long")
    assert sorted(p.name for p in files) == ["calendar.csv", "sales.csv", "source.yaml"]
    long = pd.read_csv(tmp_path / "sales.csv")
    assert list(long.columns) == dd.LONG_COLUMNS
    assert len(long) == 16 * 420
    totals = long.groupby("date")["sales"].sum()
    assert totals.index.tolist() == _sales_calendar(tiny)["date"].tolist()
    np.testing.assert_array_equal(totals.to_numpy(), _matrix(tiny).sum(axis=0))
    by_item = long.groupby(["item_id", "store_id"])["sales"].sum()
    wide = tiny.sales.set_index(["item_id", "store_id"])[tiny.day_columns].sum(axis=1)
    pd.testing.assert_series_equal(by_item.sort_index(), wide.sort_index(), check_names=False)
    assert (long.loc[long["price"].isna(), "sales"] == 0).all()  # no sales where there is no price

    source = yaml.safe_load((tmp_path / "source.yaml").read_text())
    assert source["format"] == "long" and source["file"] == "sales.csv"
    assert (source["date_column"], source["target_column"], source["price_column"]) == ("date", "sales", "price")
    assert (source["frequency"], source["season_length"], source["horizon"]) == ("D", 7, 28)
    assert source["levels"] == list(M5_LEVELS.values())
    assert len(pd.read_csv(tmp_path / "calendar.csv")) == 420 + 28


def test_m5_format_files_and_atomic_writes(tmp_path: Path, tiny: dd.DemoData) -> None:
    (tmp_path / "source.yaml").write_text("format: long\n")  # a stale long description is removed
    files = dd.write_demo(tmp_path, "tiny", seed=7)
    assert [p.name for p in files] == ["sales.csv", "calendar.csv", "sell_prices.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calendar.csv", "sales.csv", "sell_prices.csv"]
    sales = pd.read_csv(tmp_path / "sales.csv")
    pd.testing.assert_frame_equal(sales, tiny.sales, check_dtype=False)
    calendar = pd.read_csv(tmp_path / "calendar.csv", keep_default_na=False)
    assert list(calendar.columns) == list(tiny.calendar.columns)
    prices = pd.read_csv(tmp_path / "sell_prices.csv")
    pd.testing.assert_frame_equal(prices, tiny.prices, check_dtype=False)


def test_cli_writes_the_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    dd.main(["--out", str(out), "--size", "tiny", "--seed", "3"])
    assert {p.name for p in out.iterdir()} == {"sales.csv", "calendar.csv", "sell_prices.csv"}
    printed = capsys.readouterr().out
    assert "16 bottom series" in printed and "420 days" in printed and "2011-01-29" in printed
    assert "sales.csv" in printed
    expected = dd.generate_demo("tiny", seed=3).sales
    pd.testing.assert_frame_equal(pd.read_csv(out / "sales.csv"), expected, check_dtype=False)

    custom = tmp_path / "custom"
    args = ["--out", str(custom), "--size", "tiny", "--states", "3", "--stores-per-state", "2,1,1"]
    dd.main(args + ["--items-per-dept", "1", "--days", "60", "--format", "long"])
    long = pd.read_csv(custom / "sales.csv")
    assert long["store_id"].nunique() == 4 and long["item_id"].nunique() == 4
    assert long.groupby(["store_id", "item_id"]).size().eq(60).all()
    assert "snap_WI" in pd.read_csv(custom / "calendar.csv").columns


@pytest.mark.m5
def test_calendar_matches_the_real_m5_calendar() -> None:
    path = shared_m5_folder() / "calendar.csv.gz"
    if not path.exists():
        pytest.skip("real M5 data not available")
    real = pd.read_csv(path, keep_default_na=False)
    ours = dd.make_calendar(len(real) - dd.FUTURE_DAYS, ["CA", "TX", "WI"])
    for column in ["date", "wm_yr_wk", "weekday", "wday", "month", "year", "d"]:
        assert real[column].astype(str).tolist() == ours[column].astype(str).tolist(), column
    assert (real["event_name_1"] == ours["event_name_1"]).mean() > 0.95
    assert (real["snap_CA"] == ours["snap_CA"]).all()


# --------------------------------------------------------------------------------------------------
# Continuation (--next-days): the next days after the latest demo day, for the landing folder
# --------------------------------------------------------------------------------------------------

M5_LANDING_COLUMNS = ["item_id", "dept_id", "cat_id", "store_id", "state_id", "date", "sales"]


def _last_source_day(folder: Path) -> pd.Timestamp:
    """The last sales day of a generated folder (either layout)."""
    if (folder / "source.yaml").exists():
        return pd.Timestamp(pd.read_csv(folder / "sales.csv", usecols=["date"])["date"].max())
    n_days = sum(1 for c in pd.read_csv(folder / "sales.csv", nrows=1).columns if c.startswith("d_"))
    return pd.Timestamp(pd.read_csv(folder / "calendar.csv")["date"].iloc[n_days - 1])


def _days(frame: pd.DataFrame) -> list[pd.Timestamp]:
    return sorted(pd.to_datetime(frame["date"]).unique())


def _assert_no_temp_files(folder: Path) -> None:
    leftovers = [p for p in folder.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("fmt", ["m5", "long"])
def test_next_days_start_after_the_source_cover_every_series_and_read_as_landing(tmp_path: Path, fmt: str) -> None:
    from forecasting_assets.ingest.landing import read_landing
    from forecasting_assets.ingest.sources import concat_raw_sales, load_source_spec, read_raw_sales
    from forecasting_assets.ingest.validation import validate_sales

    source, landing = tmp_path / "demo", tmp_path / "landing"  # landing does not exist yet
    dd.write_demo(source, "tiny", seed=7, fmt=fmt)
    last = _last_source_day(source)
    path = dd.write_next_days(source, landing, 5, seed=1)

    first_new, last_new = last + pd.Timedelta(days=1), last + pd.Timedelta(days=5)
    assert path == landing / f"sales_{first_new:%Y-%m-%d}_{last_new:%Y-%m-%d}.csv"
    assert sorted(p.name for p in landing.iterdir()) == [path.name]
    frame = pd.read_csv(path)
    assert list(frame.columns) == (M5_LANDING_COLUMNS if fmt == "m5" else dd.LONG_COLUMNS)
    assert _days(frame) == list(pd.date_range(first_new, periods=5, freq="D"))
    assert len(frame) == 16 * 5
    assert frame.groupby(["store_id", "item_id"]).size().eq(5).all()
    assert frame.groupby(["store_id", "item_id"]).ngroups == 16
    assert pd.api.types.is_integer_dtype(frame["sales"]) and frame["sales"].min() >= 0
    assert frame["sales"].sum() > 0
    if fmt == "long":  # the latest price of each series is carried forward
        assert frame["price"].notna().any()
        assert frame.loc[frame["price"].isna(), "sales"].eq(0).all()

    spec = load_source_spec(source)
    landed = read_landing(landing, spec)
    assert landed is not None and len(landed) == 16 * 5
    assert set(landed["ds"].astype(str)) == {f"{d:%Y-%m-%d}" for d in _days(frame)}
    np.testing.assert_array_equal(landed["y"].to_numpy(), frame["sales"].to_numpy())
    valid, quarantine = validate_sales(concat_raw_sales([read_raw_sales(source, spec), landed]), spec)
    assert len(quarantine) == 0
    assert valid["ds"].max() == last_new

    again = dd.next_days_frame(source, tmp_path / "other_landing", 5, seed=1)
    pd.testing.assert_frame_equal(again, frame, check_dtype=False)  # deterministic for a seed and first day
    other = dd.next_days_frame(source, tmp_path / "other_landing", 5, seed=2)
    assert not np.array_equal(other["sales"].to_numpy(), frame["sales"].to_numpy())


def test_next_days_continue_after_landed_and_archived_files(tmp_path: Path) -> None:
    source, landing = tmp_path / "demo", tmp_path / "landing"
    dd.write_demo(source, "tiny", seed=7)
    last = _last_source_day(source)

    first = dd.write_next_days(source, landing, 3, seed=1)
    # The landing folder archives what it took in (in a sub-folder, under another name).
    (landing / "archive" / "2012").mkdir(parents=True)
    archived = landing / "archive" / "2012" / f"0123456789ab__{first.name}"
    first.rename(archived)
    # Files that are not landed sales must not move the latest day: hidden, in progress, rejected.
    future = pd.read_csv(archived).assign(date="2030-01-01")
    future.to_csv(landing / ".sales_2030.csv", index=False)
    future.to_csv(landing / "sales_2030.csv.tmp", index=False)
    (landing / "rejected").mkdir()
    future.to_csv(landing / "rejected" / "sales_2030.csv", index=False)

    second = dd.write_next_days(source, landing, 4, seed=1)
    third = dd.write_next_days(source, landing, 2, drift=True, seed=1)
    assert third.name.endswith("_drift.csv")
    days = [_days(pd.read_csv(p)) for p in (archived, second, third)]
    assert days[0][0] == last + pd.Timedelta(days=1)
    expected = list(pd.date_range(days[0][0], periods=3 + 4 + 2, freq="D"))
    assert days[0] + days[1] + days[2] == expected  # no overlap and no gap
    assert [len(d) for d in days] == [3, 4, 2]
    assert second.name == f"sales_{days[1][0]:%Y-%m-%d}_{days[1][-1]:%Y-%m-%d}.csv"
    assert dd.landed_files(landing) == [f"archive/2012/{archived.name}", second.name, third.name]


def test_next_days_look_like_the_recent_past_unless_drifted(tmp_path: Path) -> None:
    source, landing = tmp_path / "demo", tmp_path / "landing"
    dd.write_demo(source, "small", seed=7)
    wide = pd.read_csv(source / "sales.csv").set_index(["store_id", "item_id"])
    recent = wide[[c for c in wide.columns if c.startswith("d_")][-28:]]
    recent_mean = recent.mean(axis=1)  # per series, last 28 days
    calendar = pd.read_csv(source / "calendar.csv").set_index("d")
    weekend_day = pd.to_datetime(calendar.loc[recent.columns, "date"]).dt.dayofweek.to_numpy() >= 5
    recent_total = recent.sum(axis=0).to_numpy()
    recent_weekend = recent_total[weekend_day].mean() / recent_total[~weekend_day].mean()

    def summary(frame: pd.DataFrame) -> tuple[pd.Series, float, float]:
        per_series = frame.groupby(["store_id", "item_id"])["sales"].mean()
        total = frame.groupby("date")["sales"].sum()
        weekend = pd.to_datetime(total.index).dayofweek >= 5
        return per_series, total.mean() / recent_total.mean(), total[weekend].mean() / total[~weekend].mean()

    plain, plain_level, plain_weekend = summary(dd.next_days_frame(source, landing, 28, seed=3))
    drifted, drift_level, drift_weekend = summary(dd.next_days_frame(source, landing, 28, drift=True, seed=3))
    assert 0.75 < plain_level < 1.25, plain_level
    assert plain.index.equals(recent_mean.sort_index().index)
    assert np.corrcoef(plain.to_numpy(), recent_mean.sort_index().to_numpy())[0, 1] > 0.9
    assert recent_weekend > 1.1 and abs(plain_weekend / recent_weekend - 1) < 0.15, (plain_weekend, recent_weekend)
    assert drift_level > 1.8 * plain_level and drift_level > 1.8, drift_level
    assert drift_weekend < 0.85, drift_weekend  # the weekend peak is gone
    assert (drifted > plain).mean() > 0.8  # nearly every series rises


def test_next_days_errors_name_the_folder(tmp_path: Path) -> None:
    from forecasting_assets.ingest.sources import SourceError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no readable demo sales in .*empty"):
        dd.next_days_frame(empty, tmp_path / "landing", 3)
    with pytest.raises(SourceError, match="missing"):
        dd.next_days_frame(tmp_path / "missing", tmp_path / "landing", 3)
    assert not (tmp_path / "landing").exists()
    dd.write_demo(tmp_path / "demo", "tiny", seed=7)
    with pytest.raises(ValueError, match="n_days"):
        dd.next_days_frame(tmp_path / "demo", tmp_path / "landing", 0)


def test_next_days_cli(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    source, landing = tmp_path / "demo", tmp_path / "landing"
    dd.write_demo(source, "tiny", seed=7)
    last = _last_source_day(source)
    repo = Path(dd.__file__).resolve().parents[1]

    def run(*extra: str, source: Path = source) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "forecasting_assets.demo_data", "--next-days", "3"]
        command += ["--source", str(source), "--out", str(landing), *extra]
        return subprocess.run(command, cwd=repo, env=dict(os.environ), capture_output=True, text=True, timeout=120)

    done = run("--seed", "5")
    assert done.returncode == 0, done.stderr
    days = pd.date_range(last + pd.Timedelta(days=1), periods=3, freq="D")
    path = landing / f"sales_{days[0]:%Y-%m-%d}_{days[-1]:%Y-%m-%d}.csv"
    assert str(path) in done.stdout and "48 rows" in done.stdout
    frame = pd.read_csv(path)
    assert list(frame.columns) == M5_LANDING_COLUMNS and len(frame) == 48
    pd.testing.assert_frame_equal(frame, dd.next_days_frame(source, tmp_path / "elsewhere", 3, seed=5), check_dtype=False)

    drifted = run("--drift")
    assert drifted.returncode == 0, drifted.stderr
    names = sorted(p.name for p in landing.iterdir())
    later = pd.date_range(days[-1] + pd.Timedelta(days=1), periods=3, freq="D")
    assert names == [path.name, f"sales_{later[0]:%Y-%m-%d}_{later[-1]:%Y-%m-%d}_drift.csv"]
    _assert_no_temp_files(landing)

    mixed = run("--size", "tiny", "--days", "30")
    assert mixed.returncode == 2 and "--size" in mixed.stderr and "--days" in mixed.stderr
    missing = run(source=tmp_path / "nothing_here")
    assert missing.returncode != 0 and "nothing_here" in missing.stderr
    assert sorted(p.name for p in landing.iterdir()) == names
