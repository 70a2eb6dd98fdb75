"""Tests of forecasting_assets.storage: atomic files, the DuckDB catalog of views, the IO manager.

Everything is written under pytest's tmp_path; FORECASTING_ASSETS_HOME points there too, so nothing
can land in the project's data folder.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from forecasting_assets.storage import files
from forecasting_assets.storage.warehouse import connect, query, rebuild_catalog, table_files


@pytest.fixture(autouse=True)
def _home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORECASTING_ASSETS_HOME", str(tmp_path))


def _temps(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f".{path.name}.tmp-*"))


def _dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _views(con) -> set[str]:
    return set(con.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchdf()["view_name"])


# --------------------------------------------------------------------------------------------------
# Atomic files
# --------------------------------------------------------------------------------------------------


def test_atomic_write_keeps_old_file_when_writer_raises(tmp_path: Path) -> None:
    target = tmp_path / "out" / "table.parquet"
    old = pd.DataFrame({"a": [1, 2, 3]})
    files.write_parquet(old, target)
    seen_tmp: list[Path] = []

    def broken(tmp: Path) -> None:
        seen_tmp.append(tmp)
        tmp.write_bytes(b"PAR1 half a file")  # partial content on disk, then the writer dies
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        files.atomic_write(target, broken)

    pd.testing.assert_frame_equal(pd.read_parquet(target), old)
    assert seen_tmp and seen_tmp[0].parent == target.parent  # same folder, so os.replace is atomic
    assert seen_tmp[0] != target
    assert not seen_tmp[0].exists()
    assert _temps(target) == []
    assert sorted(p.name for p in target.parent.iterdir()) == ["table.parquet"]


def test_atomic_write_of_new_file_leaves_nothing_when_writer_raises(tmp_path: Path) -> None:
    target = tmp_path / "fresh.json"

    def broken(tmp: Path) -> None:
        tmp.write_text("{")
        raise KeyboardInterrupt  # even BaseException must not leave a temp file

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, broken)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("writer", "obj", "reader"),
    [
        (files.write_json, {"a": [1, 2], "b": "x"}, lambda p: __import__("json").loads(p.read_text())),
        (files.write_pickle, {"f": Fraction(1, 3)}, lambda p: pickle.loads(p.read_bytes())),
        (files.write_bytes, b"\x00\x01binary", lambda p: p.read_bytes()),
        (files.write_text, "héllo\nworld", lambda p: p.read_text()),
    ],
)
def test_writers_replace_content_and_leave_no_temp(tmp_path: Path, writer, obj, reader) -> None:
    target = tmp_path / "sub" / "thing.bin"
    (tmp_path / "sub").mkdir()
    target.write_bytes(b"previous version")
    assert writer(obj, target) == target
    assert reader(target) == obj
    assert _temps(target) == []


def test_read_parquet_returns_what_pandas_reads_with_shared_strings(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "unique_id": ["CA/FOODS", "TX/HOBBIES", "CA/FOODS", None],
            "ds": pd.date_range("2024-01-01", periods=4),
            "y": [1.0, 2.0, np.nan, 4.0],
            "model": pd.Categorical(["AutoETS", "LightGBM", "AutoETS", "LightGBM"]),
            "label": pd.Series(["a", None, "b", "a"], dtype="string"),
            "flag": [True, False, True, False],
        }
    )
    path = files.write_parquet(frame, tmp_path / "frame.parquet")
    read = files.read_parquet(path)
    pd.testing.assert_frame_equal(read, pd.read_parquet(path))
    pd.testing.assert_frame_equal(read, frame)
    assert read["unique_id"].iloc[3] is None  # nulls stay None, as pandas reads them
    assert read["unique_id"].iloc[0] is read["unique_id"].iloc[2]  # one string object per distinct id
    pd.testing.assert_frame_equal(files.read_parquet(path, columns=["y", "unique_id"]), frame[["y", "unique_id"]])
    empty = files.write_parquet(frame.iloc[:0], tmp_path / "empty.parquet")
    pd.testing.assert_frame_equal(files.read_parquet(empty), pd.read_parquet(empty))


def test_remove_stale_temps_removes_only_dead_writers_of_that_file(tmp_path: Path) -> None:
    target = tmp_path / "model.pkl"
    dead = _dead_pid()
    stale = tmp_path / f".model.pkl.tmp-{dead}-deadbeef"
    mine = tmp_path / f".model.pkl.tmp-{os.getpid()}-0000abcd"  # this process may still be writing it
    live_child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".model.pkl.tmp-{live_child.pid}-cafef00d"
        other_file = tmp_path / f".other.pkl.tmp-{dead}-deadbeef"  # another output's leftover
        for path in (stale, mine, live, other_file):
            path.write_bytes(b"partial")

        files.remove_stale_temps(target)

        assert not stale.exists()
        assert mine.exists()
        assert live.exists()
        assert other_file.exists()
    finally:
        live_child.kill()
        live_child.wait()


def test_next_write_cleans_up_a_crashed_writers_temp(tmp_path: Path) -> None:
    target = tmp_path / "forecasts.parquet"
    files.write_parquet(pd.DataFrame({"x": [1.0]}), target)
    stale = tmp_path / f".forecasts.parquet.tmp-{_dead_pid()}-12345678"
    stale.write_bytes(b"killed mid-write")

    files.write_parquet(pd.DataFrame({"x": [2.0]}), target)

    assert not stale.exists()
    assert _temps(target) == []
    assert pd.read_parquet(target)["x"].tolist() == [2.0]


# --------------------------------------------------------------------------------------------------
# DuckDB catalog
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    out = tmp_path / "outputs"
    files.write_parquet(pd.DataFrame({"unique_id": ["a", "b"], "y": [1.5, 2.5]}), out / "sales.parquet")
    files.write_parquet(pd.DataFrame({"k": [1, 2, 3]}), out / "forecasts.parquet")
    files.write_parquet(pd.DataFrame({"k": [9]}), out / "Not-An-Identifier.parquet")
    files.write_json({"not": "a table"}, out / "summary.json")
    return out


def test_rebuild_catalog_creates_one_view_per_parquet(tmp_path: Path, outputs: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    names = rebuild_catalog(outputs, warehouse)

    assert sorted(names) == ["forecasts", "sales"]
    assert set(table_files(outputs)) == {"forecasts", "sales"}
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert _views(con) == {"forecasts", "sales"}
        sales = con.execute("SELECT unique_id, y FROM sales ORDER BY unique_id").fetchdf()
        assert sales["y"].tolist() == [1.5, 2.5]
        assert con.execute("SELECT sum(k) FROM forecasts").fetchone()[0] == 6
    finally:
        con.close()
    # the catalog was written through a temp file: nothing left behind beside it
    assert _temps(warehouse) == []
    assert not warehouse.with_name(warehouse.name + ".wal").exists()
    # the module's own read-only helpers agree
    assert query("SELECT count(*) AS n FROM sales", warehouse=warehouse)["n"].iloc[0] == 2
    con = connect(warehouse)
    try:
        with pytest.raises(duckdb.Error):  # read-only
            con.execute("CREATE TABLE t (x INT)")
    finally:
        con.close()


def test_rebuild_catalog_drops_views_of_removed_files(tmp_path: Path, outputs: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    rebuild_catalog(outputs, warehouse)
    (outputs / "forecasts.parquet").unlink()
    assert rebuild_catalog(outputs, warehouse) == ["sales"]
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert _views(con) == {"sales"}
    finally:
        con.close()


_READER = r"""
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
print(con.execute("SELECT count(*) FROM sales").fetchone()[0], flush=True)
sys.stdin.readline()   # hold the catalog open until told
print(con.execute("SELECT sum(y) FROM sales").fetchone()[0], flush=True)
con.close()
"""


def test_rebuild_while_another_process_holds_the_warehouse_open(tmp_path: Path, outputs: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    rebuild_catalog(outputs, warehouse)
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, str(warehouse)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert reader.stdout.readline().strip() == "2"  # the reader is connected and holds the file

        files.write_parquet(pd.DataFrame({"metric": ["rmse"], "value": [0.25]}), outputs / "metrics.parquet")
        files.write_parquet(pd.DataFrame({"unique_id": ["a", "b"], "y": [10.0, 20.0]}), outputs / "sales.parquet")
        done: list[list[str]] = []
        errors: list[BaseException] = []

        def _rebuild() -> None:
            try:
                done.append(rebuild_catalog(outputs, warehouse))
            except BaseException as error:  # noqa: BLE001 - reported below
                errors.append(error)

        worker = threading.Thread(target=_rebuild, daemon=True)
        worker.start()
        worker.join(timeout=60)
        assert not worker.is_alive(), "rebuild_catalog blocked while a reader held the warehouse open"
        assert errors == []
        assert sorted(done[0]) == ["forecasts", "metrics", "sales"]

        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            assert "metrics" in _views(con)
            assert con.execute("SELECT value FROM metrics").fetchone()[0] == 0.25
        finally:
            con.close()

        # the old reader still works, and its views read the replaced file by path: fresh data
        reader.stdin.write("\n")
        reader.stdin.flush()
        assert float(reader.stdout.readline().strip()) == 30.0
        assert reader.wait(timeout=30) == 0
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def test_views_see_fresh_data_after_parquet_is_replaced(tmp_path: Path, outputs: Path) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    rebuild_catalog(outputs, warehouse)
    held = duckdb.connect(str(warehouse), read_only=True)
    try:
        assert held.execute("SELECT sum(y) FROM sales").fetchone()[0] == 4.0
        files.write_parquet(pd.DataFrame({"unique_id": ["a", "b", "c"], "y": [1.0, 1.0, 5.0]}), outputs / "sales.parquet")
        # no catalog rebuild: the view reads the file by path
        assert held.execute("SELECT sum(y), count(*) FROM sales").fetchone() == (7.0, 3)
    finally:
        held.close()
    assert query("SELECT max(y) AS m FROM sales", warehouse=warehouse)["m"].iloc[0] == 5.0


# --------------------------------------------------------------------------------------------------
# IO manager
# --------------------------------------------------------------------------------------------------


@dataclass
class FittedThing:
    """A stand-in for a fitted model: picklable, neither a DataFrame nor a dict."""

    coef: np.ndarray
    name: str


def _contexts(key: str | list[str]):
    import dagster as dg

    asset_key = dg.AssetKey(key if isinstance(key, list) else [key])
    out = dg.build_output_context(asset_key=asset_key)
    return out, dg.build_input_context(asset_key=asset_key, upstream_output=out)


@pytest.fixture
def io_manager(tmp_path: Path):
    from forecasting_assets.storage.io_manager import WarehouseIOManager

    return WarehouseIOManager(base_dir=str(tmp_path / "out"), warehouse=str(tmp_path / "wh.duckdb"))


def test_io_manager_round_trips_a_dataframe_and_registers_a_view(tmp_path: Path, io_manager) -> None:
    frame = pd.DataFrame(
        {
            "unique_id": pd.Series(["CA", "TX"], dtype="string"),
            "ds": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "y": [1.25, np.nan],
            "n": np.array([3, 4], dtype="int32"),
        }
    )
    out, inp = _contexts("hierarchical_series")
    io_manager.handle_output(out, frame)

    assert (tmp_path / "out" / "hierarchical_series.parquet").exists()
    pd.testing.assert_frame_equal(io_manager.load_input(inp), frame)
    assert out.get_logged_metadata()["path"].value == str(tmp_path / "out" / "hierarchical_series.parquet")
    con = duckdb.connect(str(tmp_path / "wh.duckdb"), read_only=True)
    try:
        assert _views(con) == {"hierarchical_series"}
        assert con.execute("SELECT y FROM hierarchical_series WHERE unique_id = 'CA'").fetchone()[0] == 1.25
    finally:
        con.close()


def test_io_manager_round_trips_a_dict_as_json(tmp_path: Path, io_manager) -> None:
    obj = {"best_params": {"num_leaves": 31, "learning_rate": 0.05}, "levels": [["state_id"], []], "ok": True}
    out, inp = _contexts("lightgbm_tuning")
    io_manager.handle_output(out, obj)
    assert (tmp_path / "out" / "lightgbm_tuning.json").exists()
    assert io_manager.load_input(inp) == obj


def test_io_manager_round_trips_a_picklable_object(tmp_path: Path, io_manager) -> None:
    obj = FittedThing(coef=np.array([0.5, -1.0, 2.0]), name="lgbm")
    out, inp = _contexts(["models", "lightgbm_model"])  # multi-part keys join with "__"
    io_manager.handle_output(out, obj)
    assert (tmp_path / "out" / "models__lightgbm_model.pkl").exists()
    loaded = io_manager.load_input(inp)
    assert isinstance(loaded, FittedThing)
    assert loaded.name == "lgbm"
    np.testing.assert_array_equal(loaded.coef, obj.coef)


def test_io_manager_format_change_removes_the_older_file(tmp_path: Path, io_manager) -> None:
    out, inp = _contexts("thing")
    io_manager.handle_output(out, pd.DataFrame({"a": [1]}))
    out2, inp2 = _contexts("thing")
    io_manager.handle_output(out2, {"now": "a dict"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["thing.json"]
    assert io_manager.load_input(inp2) == {"now": "a dict"}


def test_io_manager_none_writes_nothing_and_missing_input_raises(tmp_path: Path, io_manager) -> None:
    out, inp = _contexts("nothing")
    io_manager.handle_output(out, None)
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    with pytest.raises(FileNotFoundError, match="nothing"):
        io_manager.load_input(inp)


def test_io_manager_defaults_to_the_project_home(tmp_path: Path) -> None:
    from forecasting_assets.storage.io_manager import WarehouseIOManager

    manager = WarehouseIOManager()
    out, inp = _contexts("daily")
    manager.handle_output(out, pd.DataFrame({"v": [1.0, 2.0]}))
    assert (tmp_path / "data" / "outputs" / "daily.parquet").exists()
    assert (tmp_path / "data" / "warehouse.duckdb").exists()
    assert manager.load_input(inp)["v"].tolist() == [1.0, 2.0]


def test_io_manager_partitioned_asset_gets_a_file_per_partition(tmp_path: Path, io_manager) -> None:
    import dagster as dg

    partitions = dg.StaticPartitionsDefinition(["CA", "TX"])
    key = dg.AssetKey(["sales_by_state"])
    for state, value in (("CA", 1.0), ("TX", 2.0)):
        out = dg.build_output_context(asset_key=key, partition_key=state, asset_partitions_def=partitions)
        io_manager.handle_output(out, pd.DataFrame({"y": [value]}))
    assert (tmp_path / "out" / "sales_by_state" / "CA.parquet").exists()
    assert (tmp_path / "out" / "sales_by_state" / "TX.parquet").exists()
    inp = dg.build_input_context(asset_key=key, partition_key="TX", asset_partitions_def=partitions)
    assert io_manager.load_input(inp)["y"].tolist() == [2.0]


def test_io_manager_gives_an_unpartitioned_reader_every_stored_partition_and_a_view(tmp_path: Path, io_manager) -> None:
    import dagster as dg

    from forecasting_assets.storage.warehouse import connect

    partitions = dg.StaticPartitionsDefinition(["b1", "b2", "b3"])
    key = dg.AssetKey(["landed"])
    for batch, value in (("b1", 1.0), ("b2", 2.0)):  # b3 not materialized yet
        io_manager.handle_output(dg.build_output_context(asset_key=key, partition_key=batch, asset_partitions_def=partitions), pd.DataFrame({"y": [value]}))
    inp = dg.build_input_context(
        asset_key=key, asset_partitions_def=partitions, asset_partition_key_range=dg.PartitionKeyRange("b1", "b3")
    )
    stored = io_manager.load_input(inp)
    assert sorted(stored) == ["b1", "b2"] and stored["b2"]["y"].tolist() == [2.0]
    # the folder of partitions is one view in the warehouse
    with connect(tmp_path / "wh.duckdb") as con:
        assert con.execute("SELECT sum(y) FROM landed").fetchone()[0] == 3.0
