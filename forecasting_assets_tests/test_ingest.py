"""Tests of the ingest stage: spec inference, raw readers, source errors, validation and an M5 smoke test."""

from __future__ import annotations

import gzip
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.ingest.sources import (
    SourceError,
    concat_raw_sales,
    infer_frequency,
    load_source_spec,
    read_calendar,
    read_raw_sales,
)
from forecasting_assets.ingest.validation import bottom_key_columns, validate_sales
from forecasting_assets.paths import shared_m5_folder
from forecasting_assets.spec import M5_LEVELS, SourceSpec

# ------------------------------------------------------------------------------------------------------------
# Small input files
# ------------------------------------------------------------------------------------------------------------

ITEMS = [("FOODS_1_001", "FOODS_1", "FOODS"), ("HOBBIES_1_001", "HOBBIES_1", "HOBBIES")]
STORES = [("CA_1", "CA"), ("TX_1", "TX")]
N_DAYS = 10
CAL_START = "2020-01-04"  # not the M5 start: proves the calendar is used


def _write(path: Path, text: str | bytes) -> Path:
    data = text.encode("utf-8") if isinstance(text, str) else text
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)
    return path


def _m5_value(row: int, day: int) -> int:
    """Sales of wide row ``row`` (0-based) on day ``d_<day>``."""
    return row * 100 + day


def _write_m5_folder(folder: Path, items: bool = True, prices: bool = True, calendar: bool = True) -> Path:
    """A tiny M5-format folder: 4 wide rows (2 items × 2 stores) × 10 days, a 14-day calendar, weekly prices."""
    folder.mkdir(parents=True, exist_ok=True)
    days = [f"d_{k}" for k in range(1, N_DAYS + 1)]
    if items:
        header = ["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"] + days
        rows = [
            [f"{item}_{store}_validation", item, dept, cat, store, state]
            for store, state in STORES
            for item, dept, cat in ITEMS
        ]
    else:
        header = ["store_id", "dept_id", "cat_id", "state_id"] + days
        rows = [[store, dept, cat, state] for store, state in STORES for _, dept, cat in ITEMS]
    lines = [",".join(header)]
    for r, ids in enumerate(rows):
        lines.append(",".join(ids + [str(_m5_value(r, k)) for k in range(1, N_DAYS + 1)]))
    _write(folder / "sales_train.csv.gz", "\n".join(lines) + "\n")
    if calendar:
        dates = pd.date_range(CAL_START, periods=N_DAYS + 4, freq="D")
        cal = pd.DataFrame(
            {
                "date": dates.strftime("%Y-%m-%d"),
                "wm_yr_wk": [11101 + i // 7 for i in range(len(dates))],
                "weekday": dates.day_name(),
                "d": [f"d_{k}" for k in range(1, len(dates) + 1)],
                "event_name_1": [""] * len(dates),
                "event_type_1": [""] * len(dates),
                "event_name_2": [""] * len(dates),
                "event_type_2": [""] * len(dates),
                "snap_CA": [i % 2 for i in range(len(dates))],
                "snap_TX": [0] * len(dates),
            }
        )
        cal.loc[1, ["event_name_1", "event_type_1"]] = ["SuperBowl", "Sporting"]
        cal.loc[3, ["event_name_1", "event_type_1", "event_name_2", "event_type_2"]] = [
            "Easter",
            "Cultural",
            "OrthodoxEaster",
            "Religious",
        ]
        cal.to_csv(folder / "calendar.csv", index=False)
    if prices and items:
        # week 11101 and 11102 for FOODS_1_001 in CA_1; only week 11102 for HOBBIES_1_001 in TX_1
        _write(
            folder / "sell_prices.csv",
            "store_id,item_id,wm_yr_wk,sell_price\n"
            "CA_1,FOODS_1_001,11101,2.5\nCA_1,FOODS_1_001,11102,2.75\nTX_1,HOBBIES_1_001,11102,9.99\n",
        )
    return folder


def _long_frame(freq: str, periods: int = 8, start: str = "2024-01-05") -> pd.DataFrame:
    dates = pd.date_range(start, periods=periods, freq=freq)
    rows = [
        {"date": d.strftime("%Y-%m-%d"), "region": region, "store": store, "sales": float(i + j)}
        for j, (region, store) in enumerate([("north", "n1"), ("north", "n2"), ("south", "s1")])
        for i, d in enumerate(dates)
    ]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------------------------
# Spec inference and source.yaml
# ------------------------------------------------------------------------------------------------------------


def test_infer_spec_m5_wide(tmp_path: Path) -> None:
    folder = _write_m5_folder(tmp_path / "m5")
    spec = load_source_spec(folder)
    assert spec.format == "m5"
    assert spec.files == ["sales_train.csv.gz"]  # calendar and prices are not sales files
    assert spec.frequency == "D" and spec.season_length == 7 and spec.horizon == 28
    assert spec.levels == [list(v) for v in M5_LEVELS.values()]
    assert spec.calendar_file == "calendar.csv" and spec.prices_file == "sell_prices.csv"
    assert spec.price_column == "sell_price"
    assert {"format", "files", "frequency", "levels", "season_length", "horizon"} <= set(spec.inferred)
    assert bottom_key_columns(spec) == ["store_id", "item_id"]


def test_infer_spec_m5_store_dept_levels(tmp_path: Path) -> None:
    folder = _write_m5_folder(tmp_path / "m5", items=False)
    spec = load_source_spec(folder)
    assert spec.levels == [M5_LEVELS[f"Level{i}"] for i in range(1, 10)]
    assert spec.prices_file is None and spec.price_column is None
    assert bottom_key_columns(spec) == ["store_id", "dept_id"]


@pytest.mark.parametrize(
    ("freq", "start", "expected", "season"),
    [("D", "2024-01-01", "D", 7), ("W-FRI", "2024-01-05", "W-FRI", 52), ("MS", "2024-01-01", "MS", 12)],
)
def test_infer_spec_long(tmp_path: Path, freq: str, start: str, expected: str, season: int) -> None:
    frame = _long_frame(freq, start=start)
    frame.to_csv(tmp_path / "sales.csv", index=False)
    spec = load_source_spec(tmp_path)
    assert spec.format == "long" and spec.files == ["sales.csv"]
    assert spec.frequency == expected and spec.season_length == season
    assert (spec.date_column, spec.target_column, spec.price_column) == ("date", "sales", None)
    assert spec.levels == [[], ["region"], ["store"], ["region", "store"]]
    assert "frequency" in spec.inferred and "levels" in spec.inferred


def test_infer_frequency_with_gaps() -> None:
    fridays = pd.date_range("2024-01-05", periods=20, freq="W-FRI").delete([3, 4, 10])
    assert infer_frequency(fridays) == "W-FRI"
    months = pd.date_range("2024-01-01", periods=12, freq="MS").delete([2, 7])
    assert infer_frequency(months) == "MS"
    quarters = pd.date_range("2023-01-01", periods=8, freq="QS-JAN").delete([2])
    assert infer_frequency(quarters).startswith("QS-")
    assert infer_frequency(pd.date_range("2024-01-01", periods=30, freq="D").delete([5])) == "D"


def test_infer_long_with_m5_ids_and_price(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "date": ["2024-01-01", "2024-01-02"] * 2,
            "item_id": ["A_1_001"] * 2 + ["A_1_002"] * 2,
            "dept_id": ["A_1"] * 4,
            "store_id": ["S1"] * 4,
            "units": [1, 2, 3, 4],
            "price": [1.5, 1.5, 2.0, 2.0],
        }
    )
    frame.to_csv(tmp_path / "sales.csv", index=False)
    spec = load_source_spec(tmp_path)
    assert spec.target_column == "units" and spec.price_column == "price"
    assert spec.levels == [[], ["store_id"], ["dept_id"], ["store_id", "dept_id"], ["item_id"], ["item_id", "store_id"]]
    assert bottom_key_columns(spec) == ["store_id", "item_id"]


def test_long_folder_skips_lookup_tables(tmp_path: Path) -> None:
    _long_frame("D").to_csv(tmp_path / "sales.csv", index=False)
    pd.DataFrame({"store": ["n1", "n2", "s1"], "size": [1, 2, 3]}).to_csv(tmp_path / "stores.csv", index=False)
    pd.DataFrame({"date": ["2024-01-01"], "holiday": ["New year"]}).to_csv(tmp_path / "holidays.csv", index=False)
    spec = load_source_spec(tmp_path)
    assert spec.files == ["sales.csv"] and spec.calendar_file is None
    assert spec.levels == [[], ["region"], ["store"], ["region", "store"]]


def test_source_yaml_is_read(tmp_path: Path) -> None:
    frame = _long_frame("W-FRI").rename(columns={"date": "week", "sales": "qty_sold"})
    frame.to_csv(tmp_path / "weekly.csv", index=False)
    frame.iloc[:2].to_csv(tmp_path / "ignored.csv", index=False)
    (tmp_path / "source.yaml").write_text(
        "format: long\nfile: weekly.csv\ndate_column: week\ntarget_column: qty_sold\n"
        "frequency: W-FRI\nlevels: [[], [region], [region, store]]\nhorizon: 8\n"
    )
    spec = load_source_spec(tmp_path)
    assert spec.files == ["weekly.csv"] and spec.frequency == "W-FRI" and spec.horizon == 8
    assert spec.levels == [[], ["region"], ["region", "store"]]
    assert spec.season_length == 52
    assert set(spec.inferred) == {"season_length", "price_column", "calendar_file", "prices_file"}
    raw = read_raw_sales(tmp_path, spec)
    assert list(raw.columns) == ["region", "store", "ds", "y", "source_file", "source_row"]
    assert len(raw) == 24


def test_source_yaml_unknown_keys_rejected(tmp_path: Path) -> None:
    _long_frame("D").to_csv(tmp_path / "sales.csv", index=False)
    (tmp_path / "source.yaml").write_text("freq: D\ntarget: sales\nformat: long\n")
    with pytest.raises(SourceError, match="unknown keys freq, target"):
        load_source_spec(tmp_path)


# ------------------------------------------------------------------------------------------------------------
# Readers
# ------------------------------------------------------------------------------------------------------------


def test_read_m5_wide_melts_with_calendar_and_prices(tmp_path: Path) -> None:
    folder = _write_m5_folder(tmp_path / "m5")
    spec = load_source_spec(folder)
    raw = read_raw_sales(folder, spec)
    assert len(raw) == 4 * N_DAYS
    assert list(raw.columns) == spec.hierarchy_columns + ["ds", "y", "price", "source_file", "source_row"]
    assert raw["y"].dtype == np.float64
    # wide row 2 (0-based) is CA... no: rows are store-major: (CA_1, FOODS), (CA_1, HOBBIES), (TX_1, FOODS), ...
    row = raw[(raw["item_id"] == "HOBBIES_1_001") & (raw["store_id"] == "TX_1")].reset_index(drop=True)
    assert row["y"].tolist() == [float(_m5_value(3, k)) for k in range(1, N_DAYS + 1)]
    assert row["ds"].astype(str).tolist() == pd.date_range(CAL_START, periods=N_DAYS).strftime("%Y-%m-%d").tolist()
    assert set(row["source_row"]) == {5}  # header is line 1, the 4th wide row is line 5
    # prices: TX_1 HOBBIES only in week 11102 (days 8..10)
    assert row["price"].iloc[:7].isna().all() and (row["price"].iloc[7:] == 9.99).all()
    foods = raw[(raw["item_id"] == "FOODS_1_001") & (raw["store_id"] == "CA_1")]["price"].tolist()
    assert foods == [2.5] * 7 + [2.75] * 3
    validated, quarantine = validate_sales(raw, spec)
    assert len(quarantine) == 0 and len(validated) == len(raw)
    assert validated["ds"].min() == pd.Timestamp(CAL_START)


def test_m5_wide_bad_cells_are_quarantined_with_their_wide_row(tmp_path: Path) -> None:
    folder = _write_m5_folder(tmp_path / "m5", prices=False)
    path = folder / "sales_train.csv.gz"
    lines = gzip.decompress(path.read_bytes()).decode().splitlines()
    cells = lines[2].split(",")  # line 3: CA_1 HOBBIES_1_001
    cells[6 + 1], cells[6 + 4] = "x", "-5"  # d_2 and d_5
    lines[2] = ",".join(cells)
    _write(path, "\n".join(lines) + "\n")
    spec = load_source_spec(folder)
    raw = read_raw_sales(folder, spec)
    assert raw["y"].dtype == object
    validated, quarantine = validate_sales(raw, spec)
    assert len(validated) == 4 * N_DAYS - 2
    assert quarantine[["source_row", "item_id", "store_id", "ds", "y"]].values.tolist() == [
        [3, "HOBBIES_1_001", "CA_1", "2020-01-05", "x"],
        [3, "HOBBIES_1_001", "CA_1", "2020-01-08", "-5"],
    ]
    assert quarantine["reason"].tolist() == ["y 'x' is not a number", "y -5 is negative"]
    # the raw frame stores as Parquet (the IO manager's format) and validates the same after a round trip
    raw.to_parquet(tmp_path / "raw.parquet", index=False)
    _, again = validate_sales(pd.read_parquet(tmp_path / "raw.parquet"), spec)
    pd.testing.assert_frame_equal(again, quarantine)


def test_concat_raw_sales_keeps_the_contract(tmp_path: Path) -> None:
    clean = pd.DataFrame({"date": ["2024-01-01", "2024-01-02"], "store": ["a", "b"], "sales": [1, 2]})
    dirty = pd.DataFrame({"date": ["2024-01-03", "2024-01-04"], "store": ["b", "a"], "sales": ["3", "oops"]})
    (tmp_path / "src").mkdir()
    (tmp_path / "landing").mkdir()
    clean.to_csv(tmp_path / "src" / "sales.csv", index=False)
    dirty.to_csv(tmp_path / "landing" / "new.csv", index=False)
    spec = load_source_spec(tmp_path / "src")
    landing_spec = replace(spec, files=["new.csv"])
    parts = [read_raw_sales(tmp_path / "src", spec), read_raw_sales(tmp_path / "landing", landing_spec)]
    raw = concat_raw_sales(parts)
    assert isinstance(raw["store"].dtype, pd.CategoricalDtype) and list(raw["store"].cat.categories) == ["a", "b"]
    assert raw["y"].tolist() == ["1", "2", "3", "oops"]
    assert raw["source_file"].astype(str).tolist() == ["sales.csv"] * 2 + ["new.csv"] * 2
    raw.to_parquet(tmp_path / "raw.parquet", index=False)
    validated, quarantine = validate_sales(raw, spec)
    assert validated["y"].tolist() == [1.0, 2.0, 3.0] and quarantine["reason"].tolist() == ["y 'oops' is not a number"]
    assert concat_raw_sales(parts[:1] * 2)["y"].dtype == np.float64


def test_read_m5_wide_without_calendar_starts_2011_01_29(tmp_path: Path) -> None:
    folder = _write_m5_folder(tmp_path / "m5", calendar=False, prices=False)
    spec = load_source_spec(folder)
    raw = read_raw_sales(folder, spec)
    assert raw["ds"].astype(str).iloc[0] == "2011-01-29" and raw["ds"].astype(str).iloc[N_DAYS - 1] == "2011-02-07"
    assert read_calendar(folder, spec) is None


def test_read_long_csv_and_parquet_agree(tmp_path: Path) -> None:
    frame = _long_frame("W-FRI").rename(columns={"sales": "units"})
    frame["price"] = 3.0
    (tmp_path / "csv").mkdir()
    (tmp_path / "pq").mkdir()
    frame.iloc[:12].to_csv(tmp_path / "csv" / "part1.csv.gz", index=False, compression="gzip")
    frame.iloc[12:].to_csv(tmp_path / "csv" / "part2.csv", index=False)
    parquet = frame.assign(date=pd.to_datetime(frame["date"]))  # a real date column in Parquet
    parquet.to_parquet(tmp_path / "pq" / "sales.parquet", index=False)

    spec_csv = load_source_spec(tmp_path / "csv")
    spec_pq = load_source_spec(tmp_path / "pq")
    assert spec_csv.files == ["part1.csv.gz", "part2.csv"] and spec_pq.files == ["sales.parquet"]
    assert spec_csv.frequency == spec_pq.frequency == "W-FRI"
    raw_csv = read_raw_sales(tmp_path / "csv", spec_csv)
    raw_pq = read_raw_sales(tmp_path / "pq", spec_pq)
    assert raw_csv["source_row"].tolist() == list(range(2, 14)) + list(range(2, 14))
    assert raw_csv["source_file"].astype(str).tolist() == ["part1.csv.gz"] * 12 + ["part2.csv"] * 12
    assert raw_pq["ds"].astype(str).tolist() == frame["date"].tolist()
    v_csv, q_csv = validate_sales(raw_csv, spec_csv)
    v_pq, q_pq = validate_sales(raw_pq, spec_pq)
    assert len(q_csv) == len(q_pq) == 0
    cols = ["region", "store", "ds", "y", "price"]
    pd.testing.assert_frame_equal(v_csv[cols], v_pq[cols])
    assert v_csv["y"].sum() == frame["units"].sum()


def test_read_calendar(tmp_path: Path) -> None:
    folder = _write_m5_folder(tmp_path / "m5")
    cal = read_calendar(folder, load_source_spec(folder))
    assert cal is not None
    assert list(cal.columns) == ["ds", "event_name", "event_type", "snap_CA", "snap_TX"]
    assert cal["ds"].dtype == "datetime64[ns]" and cal["snap_CA"].dtype == np.int8
    assert len(cal) == N_DAYS + 4  # the known future is kept
    assert cal["event_name"].tolist()[:4] == ["", "SuperBowl", "", "Easter|OrthodoxEaster"]
    assert cal["event_type"].iloc[3] == "Cultural|Religious"


# ------------------------------------------------------------------------------------------------------------
# Source errors
# ------------------------------------------------------------------------------------------------------------

_GOOD = "date,store,sales\n2024-01-01,s1,1\n2024-01-02,s1,2\n2024-01-03,s1,3\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", ["sales.csv", "empty"]),
        (b"date,store,sales\n", ["sales.csv", "no data rows", "line 1: date,store,sales"]),
        (b"date;store;sales\n2024-01-01;s1;1\n", ["sales.csv", "column 'date;store;sales'", "';'", "line 2"]),
        (
            _GOOD.encode() + b"2024-01-04,s\xe9,4\n",
            ["sales.csv", "line 5 is not valid UTF-8", "byte 0xe9", "line 2: 2024-01-01,s1,1"],
        ),
    ],
    ids=["empty", "header-only", "wrong-delimiter", "non-utf8"],
)
def test_source_errors(tmp_path: Path, content: bytes, expected: list[str]) -> None:
    (tmp_path / "sales.csv").write_bytes(content)
    spec = SourceSpec(format="long", files=["sales.csv"], frequency="D", levels=[[], ["store"]], season_length=7,
                      horizon=28)
    with pytest.raises(SourceError) as info:
        read_raw_sales(tmp_path, spec)
    for text in expected:
        assert text in str(info.value)
    with pytest.raises(SourceError):  # inference hits the same error
        load_source_spec(tmp_path)


def test_non_utf8_past_the_first_lines(tmp_path: Path) -> None:
    body = "".join(f"2024-01-{d:02d},s1,{d}\n" for d in range(1, 29))
    (tmp_path / "sales.csv").write_bytes(b"date,store,sales\n" + body.encode() + b"2024-01-29,s\xff,1\n")
    spec = SourceSpec(format="long", files=["sales.csv"], frequency="D", levels=[[], ["store"]], season_length=7,
                      horizon=28)
    with pytest.raises(SourceError, match=r"sales.csv: line 30 is not valid UTF-8: byte 0xff"):
        read_raw_sales(tmp_path, spec)


def test_missing_column(tmp_path: Path) -> None:
    _write(tmp_path / "sales.csv", _GOOD.replace("sales", "units"))
    (tmp_path / "source.yaml").write_text("target_column: sales\n")
    with pytest.raises(SourceError) as info:
        read_raw_sales(tmp_path, load_source_spec(tmp_path))
    message = str(info.value)
    assert "sales.csv, column 'sales'" in message and "columns found: date, store, units" in message
    assert "line 4: 2024-01-03,s1,3" in message  # 3 example rows
    spec = SourceSpec(format="long", files=["sales.csv"], frequency="D", levels=[[], ["shop"]], season_length=7,
                      horizon=28, target_column="units")
    with pytest.raises(SourceError, match="sales.csv, column 'shop'"):
        read_raw_sales(tmp_path, spec)


# ------------------------------------------------------------------------------------------------------------
# Validation
# ------------------------------------------------------------------------------------------------------------


def test_validation_quarantines_seeded_bad_rows(tmp_path: Path) -> None:
    fridays = pd.date_range("2024-01-05", periods=6, freq="W-FRI").strftime("%Y-%m-%d").tolist()
    lines = ["date,store_id,item_id,dept_id,sales"]
    for store in ("S1", "S2"):
        for item, dept in (("A_1_001", "A_1"), ("B_1_001", "B_1")):
            for d in fridays:
                lines.append(f"{d},{store},{item},{dept},5")
    good = len(lines) - 1  # 24 good rows so far: lines 2..25
    bad = {
        26: ("2024-02-16,S1,A_1_001,A_1,-3", "y_non_negative", "y -3 is negative"),
        27: ("2024-02-23,S1,A_1_001,A_1,abc", "y_is_number", "y 'abc' is not a number"),
        28: ("2024-03-01,S1,A_1_001,A_1,", "y_is_number", "y is missing"),
        29: ("2024-13-45,S1,A_1_001,A_1,4", "ds_is_date", "ds '2024-13-45' is not a date in the format %Y-%m-%d"),
        30: (f"{fridays[0]},S1,A_1_001,A_1,7", "unique_key", "duplicate of sales.csv row 2"),
        31: ("2024-03-09,S1,A_1_001,A_1,4", "on_frequency", "ds 2024-03-09 (Saturday) is not on the W-FRI"),
        32: ("2024-03-15,S2,A_1_001,B_1,4", "consistent_hierarchy", "dept_id 'B_1' but item_id 'A_1_001' is in "
             "dept_id 'A_1'"),
        33: ("2024-03-22,,A_1_001,A_1,4", "id_not_empty", "store_id is missing or empty"),
        34: ("2024-03-30,S2,B_1_001,B_1,-1", "y_non_negative; on_frequency", "y -1 is negative; ds 2024-03-30"),
    }
    lines += [bad[k][0] for k in sorted(bad)]
    lines.append("2024-04-05,S2,B_1_001,B_1,NaN")  # line 35: NaN
    _write(tmp_path / "sales.csv", "\n".join(lines) + "\n")
    (tmp_path / "source.yaml").write_text("frequency: W-FRI\n")

    spec = load_source_spec(tmp_path)
    raw = read_raw_sales(tmp_path, spec)
    assert raw["y"].dtype == object  # 'abc' keeps the column raw
    validated, quarantine = validate_sales(raw, spec)

    assert len(validated) + len(quarantine) == len(raw) == good + len(bad) + 1
    assert len(validated) == good
    assert list(quarantine.columns) == [
        "source_file", "source_row", "store_id", "dept_id", "item_id", "ds", "y", "check", "column", "reason"
    ]
    by_line = quarantine.set_index("source_row")
    assert sorted(by_line.index) == sorted(bad) + [35]
    for line, (_, check, reason) in bad.items():
        assert by_line.loc[line, "check"] == check, line
        assert reason in by_line.loc[line, "reason"], (line, by_line.loc[line, "reason"])
    assert by_line.loc[35, "reason"] == "y is missing (empty or NaN)"
    assert by_line.loc[27, "y"] == "abc" and by_line.loc[29, "ds"] == "2024-13-45"
    assert by_line.loc[30, "column"] == "store_id/item_id/ds"

    assert validated.dtypes.astype(str).to_dict() == {
        "store_id": "category", "dept_id": "category", "item_id": "category", "ds": "datetime64[ns]", "y": "float64",
        "source_file": "category",
    }
    expected_order = validated.sort_values(["store_id", "dept_id", "item_id", "ds"]).index.tolist()
    assert validated.index.tolist() == expected_order == list(range(good))
    assert (validated["y"] == 5).all()


def test_validation_price_checks_and_clean_quarantine(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "store": ["a", "a", "a", "b"],
            "ds": ["01/02/2024", "01/03/2024", "01/04/2024", "01/02/2024"],
            "y": [1.0, 2.0, 3.0, 4.0],
            "price": ["1.5", "", "x", "-2"],
        }
    )
    spec = SourceSpec(format="long", files=["f.csv"], frequency="D", levels=[[], ["store"]], season_length=7,
                      horizon=28)
    validated, quarantine = validate_sales(raw, spec)
    assert validated["price"].iloc[0] == 1.5 and np.isnan(validated["price"].iloc[1])  # empty price is allowed
    assert validated["ds"].tolist()[:2] == [pd.Timestamp("2024-01-02"), pd.Timestamp("2024-01-03")]
    assert quarantine["reason"].tolist() == ["price 'x' is not a number", "price -2 is negative"]
    assert quarantine["source_row"].tolist() == [3, 4] and quarantine["source_file"].tolist() == ["<frame>"] * 2

    clean, empty = validate_sales(raw.iloc[:2], spec)
    assert len(clean) == 2 and empty.empty
    assert list(empty.columns) == ["source_file", "source_row", "store", "ds", "y", "price", "check", "column",
                                   "reason"]


def test_validation_of_parsed_frames_with_missing_ids() -> None:
    """A frame built in memory (numeric ids with a null, dates already parsed, no source columns)."""
    spec = SourceSpec(format="long", files=["f"], frequency="MS", levels=[[], ["store"]], season_length=12,
                      horizon=12)
    raw = pd.DataFrame(
        {
            "store": [1, 1, 2, 2, None],
            "ds": pd.to_datetime(["2024-01-01", "2024-02-01", "2024-01-01", "2024-02-15", "2024-03-01"]),
            "y": [1, 2, 3, np.inf, 4],
        }
    )
    validated, quarantine = validate_sales(raw, spec)
    assert validated["store"].tolist() == ["1", "1", "2"]
    assert quarantine["check"].tolist() == ["y_is_number; on_frequency", "id_not_empty"]
    assert quarantine["reason"].iloc[0] == (
        "y 'inf' is not finite; ds 2024-02-15 (Thursday) is not on the MS frequency; the previous MS date is 2024-02-01"
    )
    assert quarantine["reason"].iloc[1] == "store is missing or empty"
    assert quarantine["source_row"].tolist() == [4, 5]


def test_validation_of_an_empty_frame() -> None:
    spec = SourceSpec(format="long", files=["f.csv"], frequency="W-FRI", levels=[[], ["store"]], season_length=52,
                      horizon=13)
    raw = pd.DataFrame({"store": pd.Series([], dtype=object), "ds": pd.Series([], dtype=object), "y": []})
    validated, quarantine = validate_sales(raw, spec)
    assert validated.empty and quarantine.empty
    assert list(validated.columns) == ["store", "ds", "y", "source_file"]
    assert validated["ds"].dtype == "datetime64[ns]" and validated["y"].dtype == np.float64


# ------------------------------------------------------------------------------------------------------------
# Real M5 data (store × dept) and an opt-in benchmark at M5 item scale
# ------------------------------------------------------------------------------------------------------------


@pytest.mark.m5
def test_m5_store_dept_smoke() -> None:
    folder = shared_m5_folder()
    if not (folder / "store_dept_sales_d1_d1941.csv.gz").is_file():
        pytest.skip(f"real M5 data not found at {folder} (../shared/data/m5 beside the repository)")
    start = time.perf_counter()
    spec = load_source_spec(folder)
    raw = read_raw_sales(folder, spec)
    validated, quarantine = validate_sales(raw, spec)
    elapsed = time.perf_counter() - start
    assert spec.format == "m5" and spec.frequency == "D"
    assert spec.files == ["store_dept_sales_d1_d1941.csv.gz"]  # weights_validation.csv.gz is not a sales file
    assert len(spec.levels) == 9
    assert len(quarantine) == 0 and len(validated) == 70 * 1941
    assert validated.groupby(["store_id", "dept_id"]).ngroups == 70
    assert validated["ds"].nunique() == 1941
    assert validated["ds"].min() == pd.Timestamp("2011-01-29") and validated["ds"].max() == pd.Timestamp("2016-05-22")
    calendar = read_calendar(folder, spec)
    assert calendar is not None and len(calendar) == 1969
    assert elapsed < 30


def _m5_item_scale_folder(folder: Path, n_days: int) -> Path:
    """An M5-item-shaped wide CSV: 30,490 rows (3,049 items × 10 stores) × ``n_days`` day columns."""
    rng = np.random.default_rng(0)
    depts = ["FOODS_1", "FOODS_2", "FOODS_3", "HOBBIES_1", "HOBBIES_2", "HOUSEHOLD_1", "HOUSEHOLD_2"]
    items = [f"{depts[i % 7]}_{i // 7 + 1:03d}" for i in range(3049)]
    stores = ["CA_1", "CA_2", "CA_3", "CA_4", "TX_1", "TX_2", "TX_3", "WI_1", "WI_2", "WI_3"]
    ids = pd.DataFrame([(it, it.rsplit("_", 1)[0], it.split("_")[0], st, st[:2]) for st in stores for it in items],
                       columns=["item_id", "dept_id", "cat_id", "store_id", "state_id"])
    values = pd.DataFrame(rng.poisson(1.0, (len(ids), n_days)), columns=[f"d_{k}" for k in range(1, n_days + 1)])
    folder.mkdir(parents=True, exist_ok=True)
    pd.concat([ids, values], axis=1).to_csv(folder / "sales_train.csv", index=False)
    return folder


@pytest.mark.slow
@pytest.mark.skipif(not os.environ.get("INGEST_BENCHMARK_DAYS"), reason="set INGEST_BENCHMARK_DAYS=400 to run")
def test_benchmark_m5_item_scale(tmp_path: Path) -> None:
    n_days = int(os.environ["INGEST_BENCHMARK_DAYS"])
    folder = _m5_item_scale_folder(tmp_path / "m5_items", n_days)
    t0 = time.perf_counter()
    spec = load_source_spec(folder)
    raw = read_raw_sales(folder, spec)
    t1 = time.perf_counter()
    validated, quarantine = validate_sales(raw, spec)
    t2 = time.perf_counter()
    print(f"\n{len(raw):,} rows: read {t1 - t0:.1f} s, validate {t2 - t1:.1f} s")
    assert len(quarantine) == 0 and len(validated) == 30490 * n_days




def test_latest_day_coverage_flags_a_missing_store():
    from forecasting_assets.ingest.assets import latest_day_coverage

    days = pd.date_range("2024-01-01", periods=9, freq="D")
    full = pd.DataFrame([(d, s, dpt) for d in days for s in ("CA_1", "CA_2", "TX_1") for dpt in ("F1", "F2")], columns=["ds", "store_id", "dept_id"])
    coverage, facts = latest_day_coverage(full, ["store_id", "dept_id"])
    assert coverage == 1.0 and facts["latest_day"] == "2024-01-09"
    partial = full[~((full["ds"] == days[-1]) & (full["store_id"] == "TX_1"))]  # one store's file did not arrive
    coverage, facts = latest_day_coverage(partial, ["store_id", "dept_id"])
    assert coverage == pytest.approx(4 / 6) and facts["series_on_latest_day"] == 4


def test_parsed_sales_files_are_cached_until_a_file_changes(tmp_path: Path, monkeypatch) -> None:
    """read_raw_sales(cached=True), as raw_sales reads the source, keeps each parsed file as Parquet (data/.cache/sources): the next read gives the same
    frame from there; a changed sales file or calendar is parsed again; a file with text in its values is
    never cached."""
    from forecasting_assets.paths import data_dir

    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tmp_path / "home"))  # an empty cache

    folder = _write_m5_folder(tmp_path / "m5")
    spec = load_source_spec(folder)
    cache = data_dir() / ".cache" / "sources"
    first = read_raw_sales(folder, spec, cached=True)
    entries = sorted(cache.glob("*.parquet"))
    assert len(entries) == 1
    pd.testing.assert_frame_equal(read_raw_sales(folder, spec, cached=True), first)

    def edit(path: Path, old: str, new: str) -> None:
        text = (gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()).decode()
        assert old in text
        _write(path, text.replace(old, new, 1))

    sales = folder / spec.files[0]
    edit(sales, ",101,", ",999,")  # one value changes (row 2, day 1)
    changed = read_raw_sales(folder, spec, cached=True)
    assert (changed["y"] == 999).sum() == 1 and not (first["y"] == 999).any()
    assert sorted(cache.glob("*.parquet")) != entries and len(list(cache.glob("*.parquet"))) == 1

    calendar = folder / str(spec.calendar_file)
    edit(calendar, "2020-01-04", "2020-01-03")  # d_1 moves a day
    assert str(read_raw_sales(folder, spec, cached=True)["ds"].astype(str).min()) == "2020-01-03"

    edit(sales, ",999,", ",n/a?,")
    texts = read_raw_sales(folder, spec, cached=True)
    assert texts["y"].dtype == object and not list(cache.glob("*.parquet"))

    edit(sales, ",n/a?,", ",7,")
    read_raw_sales(folder, spec, cached=True)
    read_raw_sales(folder, replace(spec, prices_file=None), cached=True)  # another way of reading the same file (the demo's)
    assert len(list(cache.glob("*.parquet"))) == 2  # the two do not evict each other
    pd.testing.assert_frame_equal(read_raw_sales(folder, spec, cached=True), read_raw_sales(folder, spec, cached=True))
