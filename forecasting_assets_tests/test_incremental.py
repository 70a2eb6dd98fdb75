"""Incremental ingest: segmented tables, and extended validation / aggregation equal to a full recomputation."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.storage import segments

INGEST = ["raw_sales", "source_spec", "sales_calendar", "validated_sales", "sales_quarantine", "hierarchical_series", "hierarchy_structure", "series_keys"]
STORED = ["raw_sales", "validated_sales", "sales_quarantine", "hierarchical_series", "hierarchy_structure", "series_keys"]


# ----------------------------------------------------------------------------------------------------------------
# segmented tables
# ----------------------------------------------------------------------------------------------------------------


def _grid(ids: list[str], days: int, start: str = "2020-01-01") -> pd.DataFrame:
    dates = pd.date_range(start, periods=days)
    return pd.DataFrame({"unique_id": np.repeat(np.array(ids, dtype=object), days), "ds": np.tile(dates, len(ids)), "y": np.arange(len(ids) * days, dtype=float)})


def test_series_major_segments_read_back_as_the_single_frame(tmp_path: Path) -> None:
    full = _grid(["Total", "CA", "TX", "CA_1"], 10)
    parts = [full[full["ds"] < "2020-01-06"], full[full["ds"].between("2020-01-06", "2020-01-08")], full[full["ds"] > "2020-01-08"]]
    table = segments.SegmentedFrame("series_major", [(f"p{i}", p.reset_index(drop=True)) for i, p in enumerate(parts)], series_columns=["unique_id"])
    stored = segments.write_segments(table, tmp_path / "t.segments")
    pd.testing.assert_frame_equal(stored.read(), full, check_exact=True)
    assert stored.rows == len(full) and len(stored.segments) == 3
    # categorical series columns (several), a reused segment and a new one
    sales = pd.DataFrame({
        "store": pd.Categorical(np.repeat(["A", "A", "B"], 6), categories=["A", "B", "C"]),
        "item": pd.Categorical(np.repeat(["x", "y", "x"], 6)),
        "ds": np.tile(pd.date_range("2020-01-01", periods=6), 3),
        "y": np.arange(18.0),
    })
    first, second = sales[sales["ds"] < "2020-01-05"].reset_index(drop=True), sales[sales["ds"] >= "2020-01-05"].reset_index(drop=True)
    stored = segments.write_segments(segments.SegmentedFrame("series_major", [("a", first)], series_columns=["store", "item"]), tmp_path / "s.segments")
    files_before = {p.name for p in stored.folder.iterdir()}
    extended = segments.write_segments(segments.SegmentedFrame("series_major", [("a", None), ("b", second)], stored=stored, series_columns=["store", "item"]), stored.folder)
    pd.testing.assert_frame_equal(extended.read(), sales, check_exact=True)
    assert stored.segments[0].file in {p.name for p in extended.folder.iterdir()} and files_before <= {p.name for p in extended.folder.iterdir()}


def test_series_major_segments_refuse_what_they_cannot_interleave(tmp_path: Path) -> None:
    full = _grid(["A", "B"], 4)
    with pytest.raises(ValueError, match="does not"):
        segments.combine("series_major", [full, _grid(["C"], 2, "2020-02-01")], ["unique_id"])
    with pytest.raises(ValueError, match="not in the order"):
        segments.combine("series_major", [full, _grid(["B", "A"], 2, "2020-02-01")], ["unique_id"])
    with pytest.raises(ValueError, match="reused but not stored"):
        segments.SegmentedFrame("concat", [("missing", None)])


def test_a_crash_before_the_manifest_leaves_the_stored_table(tmp_path: Path, monkeypatch) -> None:
    stored = segments.write_segments(segments.SegmentedFrame("concat", [("a", _grid(["A"], 3))]), tmp_path / "t.segments")
    real = segments.files.write_text

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(segments.files, "write_text", crash)
    with pytest.raises(OSError):
        segments.write_segments(segments.SegmentedFrame("concat", [("b", _grid(["B"], 3)), ("a", None)], stored=stored), stored.folder)
    monkeypatch.setattr(segments.files, "write_text", real)
    pd.testing.assert_frame_equal(segments.read_manifest(stored.folder).read(), _grid(["A"], 3))


# ----------------------------------------------------------------------------------------------------------------
# the ingest assets, extended vs recomputed
# ----------------------------------------------------------------------------------------------------------------


@pytest.fixture()
def tiny_source(tmp_path: Path, monkeypatch) -> dict:
    from forecasting_assets.demo_data import write_demo

    home = tmp_path / "home"
    source = home / "data" / "demo"
    write_demo(source, shape="tiny", seed=7)
    return {"home": home, "source": source, "landing": home / "data" / "landing"}


class Project:
    """The ingest and hierarchy assets of one project home, with the landing sensor, run in-process."""

    def __init__(self, home: Path, source: Path, landing: Path, min_rows: int) -> None:
        import dagster as dg

        from forecasting_assets.definitions import build_definitions
        from forecasting_assets.resources import ForecastSettings, SalesSource

        self.home, self.dg, self.landing = home, dg, landing
        os.environ["FORECASTING_ASSETS_HOME"] = str(home)
        self.resources = {"source": SalesSource(folder=str(source), landing_folder=str(landing))}
        defs = build_definitions({**self.resources, "settings": ForecastSettings(n_jobs=1, incremental_min_rows=min_rows, lightgbm_models=1)})
        self.job = defs.resolve_implicit_global_asset_job_def()
        self.instance = dg.DagsterInstance.ephemeral(tempdir=str(home / "dagster_home"))
        self.cursor = None

    def ingest(self) -> dict[str, dict]:
        os.environ["FORECASTING_ASSETS_HOME"] = str(self.home)
        result = self.job.execute_in_process(instance=self.instance, asset_selection=[self.dg.AssetKey(k) for k in INGEST])
        return {e.asset_key.to_user_string(): {k: v.value for k, v in e.materialization.metadata.items()} for e in result.get_asset_materialization_events()}

    def land(self, partition_key: str | None = None) -> str:
        from forecasting_assets.automation.sensors import landing_folder_sensor

        os.environ["FORECASTING_ASSETS_HOME"] = str(self.home)
        if partition_key is None:
            past = time.time() - 3600  # written long ago: past the sensor's settle time (files still being copied)
            for path in self.landing.glob("*.csv"):
                os.utime(path, (past, past))
            tick = landing_folder_sensor(self.dg.build_sensor_context(instance=self.instance, cursor=self.cursor, resources=self.resources))
            self.cursor = tick.cursor
            (request,) = tick.run_requests
            partition_key = request.partition_key
        self.instance.add_dynamic_partitions("landing_batches", [partition_key])
        self.job.execute_in_process(instance=self.instance, asset_selection=[self.dg.AssetKey("landed_sales")], partition_key=partition_key)
        return partition_key

    def stored(self) -> dict[str, pd.DataFrame]:
        from forecasting_assets.storage.io_manager import WarehouseIOManager

        os.environ["FORECASTING_ASSETS_HOME"] = str(self.home)
        return {name: WarehouseIOManager().load_asset(name) for name in STORED}

    def close(self) -> None:
        self.instance.dispose()


def _recomputed(tiny: dict, batches: list[str], tmp: Path) -> dict[str, pd.DataFrame]:
    """The same ingest from scratch, every table in one file (below the incremental threshold)."""
    home = tmp / "full_home"
    shutil.rmtree(home, ignore_errors=True)
    project = Project(home, tiny["source"], tiny["landing"], min_rows=10**12)
    try:
        for key in batches:
            project.land(key)
        project.ingest()
        return project.stored()
    finally:
        project.close()


def _assert_same(got: dict[str, pd.DataFrame], want: dict[str, pd.DataFrame]) -> None:
    for name in STORED:
        pd.testing.assert_frame_equal(got[name], want[name], check_exact=True, obj=name)


def test_nightly_batches_extend_the_stored_history_exactly(tiny_source: dict, tmp_path: Path, monkeypatch) -> None:
    from forecasting_assets.demo_data import next_days_frame, write_next_days_frame

    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_source["home"]))
    project = Project(tiny_source["home"], tiny_source["source"], tiny_source["landing"], min_rows=0)
    try:
        first = project.ingest()
        assert first["validated_sales"]["validated"].startswith("in full") and first["raw_sales"]["stored_as"].startswith("segments")
        batches = []
        for day in range(2):
            frame = next_days_frame(tiny_source["source"], tiny_source["landing"], 1, seed=day)
            if day == 1:  # a bad row in the second batch: quarantined by the incremental validation
                frame.loc[frame.index[0], "sales"] = -3
            write_next_days_frame(frame, tiny_source["landing"])
            batches.append(project.land())
            meta = project.ingest()
            assert meta["validated_sales"]["validated"].startswith("incremental"), meta["validated_sales"]["validated"]
            assert meta["hierarchical_series"]["aggregated"].startswith("incremental"), meta["hierarchical_series"]["aggregated"]
        got = project.stored()
        stored_files = sorted(p.name for p in (tiny_source["home"] / "data" / "outputs").iterdir())
        counts = {}
        from forecasting_assets.storage.warehouse import query

        for name in ("raw_sales", "validated_sales", "hierarchical_series", "sales_quarantine"):
            counts[name] = int(query(f"SELECT count(*) AS n FROM {name}")["n"].iloc[0])
    finally:
        project.close()
    assert {"raw_sales.segments", "validated_sales.segments", "hierarchical_series.segments"} <= set(stored_files)
    assert len(got["sales_quarantine"]) == 1 and got["sales_quarantine"]["check"].iloc[0] == "y_non_negative"
    assert counts == {name: len(got[name]) for name in counts}  # the DuckDB views read the same rows
    _assert_same(got, _recomputed(tiny_source, batches, tmp_path))


def test_a_correction_of_a_stored_day_or_a_new_series_is_validated_in_full(tiny_source: dict, tmp_path: Path, monkeypatch) -> None:
    from forecasting_assets.demo_data import next_days_frame, write_next_days_frame

    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_source["home"]))
    project = Project(tiny_source["home"], tiny_source["source"], tiny_source["landing"], min_rows=0)
    try:
        project.ingest()
        batches = []
        # the next day, with one row re-dated to the last stored day: it supersedes a stored row
        frame = next_days_frame(tiny_source["source"], tiny_source["landing"], 1, seed=1)
        last = pd.Timestamp(frame["date"].iloc[0]) - pd.Timedelta(days=1)
        frame.loc[frame.index[0], "date"] = last.strftime("%Y-%m-%d")
        write_next_days_frame(frame, tiny_source["landing"])
        batches.append(project.land())
        corrected = project.ingest()
        # then a day with a series the history does not have (it is quarantined as unknown)
        frame = next_days_frame(tiny_source["source"], tiny_source["landing"], 1, seed=2)
        frame.loc[frame.index[0], "item_id"] = "FOODS_1_999"
        write_next_days_frame(frame, tiny_source["landing"])
        batches.append(project.land())
        new_item = project.ingest()
        got = project.stored()
    finally:
        project.close()
    assert "on or before a stored day" in corrected["validated_sales"]["validated"]
    assert corrected["hierarchical_series"]["aggregated"].startswith("in full")
    assert "a series" in new_item["validated_sales"]["validated"]
    assert {"unique_key", "known_id"} <= set(got["sales_quarantine"]["check"].str.split("; ").explode())
    _assert_same(got, _recomputed(tiny_source, batches, tmp_path))


def test_below_the_threshold_every_table_is_one_file(tiny_source: dict, monkeypatch) -> None:
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tiny_source["home"]))
    project = Project(tiny_source["home"], tiny_source["source"], tiny_source["landing"], min_rows=10**12)
    try:
        meta = project.ingest()
    finally:
        project.close()
    outputs = {p.name for p in (tiny_source["home"] / "data" / "outputs").iterdir()}
    assert {"raw_sales.parquet", "validated_sales.parquet", "hierarchical_series.parquet"} <= outputs
    assert not any(name.endswith(segments.SUFFIX) for name in outputs)
    assert meta["raw_sales"]["stored_as"] == "one file"


# ----------------------------------------------------------------------------------------------------------------
# ids through runs (the histories' ids, without hashing every row)
# ----------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["blocks", "shuffled", "with_missing"])
def test_categorical_ids_through_runs_equal_pandas(layout: str) -> None:
    from forecasting_assets.ids import as_categorical, ids_in

    rng = np.random.default_rng(0)
    ids = np.repeat(np.array(["b", "a", "CA_1/FOODS_1", "c"], dtype=object), 50)
    if layout == "shuffled":
        ids = ids[rng.permutation(len(ids))]
    if layout == "with_missing":
        ids = ids.copy()
        ids[10:20] = None
        ids[60] = np.nan
    expected = pd.Categorical(ids)
    got = as_categorical(pd.Series(ids))
    pd.testing.assert_extension_array_equal(got, expected)
    dtype = pd.CategoricalDtype(["c", "a", "b", "CA_1/FOODS_1", "unused"])
    pd.testing.assert_extension_array_equal(as_categorical(ids, dtype), pd.Categorical(ids, dtype=dtype))
    np.testing.assert_array_equal(ids_in(ids, {"a", "c"}), pd.Series(ids).isin({"a", "c"}).to_numpy())


@pytest.mark.parametrize("how", ["left", "outer", "inner"])
def test_merge_on_ids_equals_pandas_merge(how: str) -> None:
    from forecasting_assets.ids import merge_on_ids

    dates = pd.date_range("2021-01-01", periods=5)
    left = pd.DataFrame({"unique_id": np.repeat(np.array(["b", "a", "c"], dtype=object), 5), "ds": np.tile(dates, 3), "y": np.arange(15.0)})
    right = pd.DataFrame({"unique_id": np.repeat(np.array(["a", "d", "b"], dtype=object), 4), "ds": np.tile(dates[1:], 3), "x": np.arange(12, dtype=np.float32)})
    statics = pd.DataFrame({"unique_id": np.array(["c", "a"], dtype=object), "s": [1.0, 2.0]})
    pd.testing.assert_frame_equal(merge_on_ids(left, right, ["unique_id", "ds"], how), left.merge(right, on=["unique_id", "ds"], how=how))
    pd.testing.assert_frame_equal(merge_on_ids(left, statics, ["unique_id"], how), left.merge(statics, on="unique_id", how=how))
    # the same keys on both sides, in another order (the lookup join's outer case), and integer features
    same = left[["unique_id", "ds"]].iloc[::-1].assign(x=np.arange(15, dtype=np.float32), k=np.arange(15)).reset_index(drop=True)
    pd.testing.assert_frame_equal(merge_on_ids(left, same, ["unique_id", "ds"], how), left.merge(same, on=["unique_id", "ds"], how=how))
    pd.testing.assert_frame_equal(merge_on_ids(left, right.assign(k=1), ["unique_id", "ds"], how), left.merge(right.assign(k=1), on=["unique_id", "ds"], how=how))


def test_a_dead_writers_segment_temp_is_removed_by_the_next_write(tmp_path: Path) -> None:
    folder = tmp_path / "t.segments"
    stored = segments.write_segments(segments.SegmentedFrame("concat", [("a", _grid(["A"], 3))]), folder)
    dead = folder / ".seg-0000-dead.parquet.tmp-999999999-abcdef01"  # no such process
    dead.write_bytes(b"half a segment")
    segments.write_segments(segments.SegmentedFrame("concat", [("b", _grid(["B"], 2)), ("a", None)], stored=stored), folder)
    assert not dead.exists()
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith("seg-")) == ["manifest.json"]
