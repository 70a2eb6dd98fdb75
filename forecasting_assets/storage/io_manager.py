"""The IO manager every asset uses: one atomic file per asset under ``data/outputs``.

DataFrames become ``<asset>.parquet`` and a view of the same name in ``data/warehouse.duckdb``;
dicts/lists become ``<asset>.json``; anything else (fitted models) ``<asset>.pkl``. A ``SegmentedFrame`` (an
asset that extends a large stored table instead of rewriting it) becomes ``<asset>.segments/`` (see
``storage/segments.py``), read back as the one frame it stands for. An input declared with
``dg.AssetIn(metadata={"lazy": True})`` receives the stored table (``StoredTable``) instead of its rows, when
the upstream asset is segmented.
"""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd

from forecasting_assets.paths import outputs_dir, warehouse_path
from forecasting_assets.storage import files, segments
from forecasting_assets.storage.warehouse import rebuild_catalog

_SUFFIXES = (".parquet", ".json", ".pkl")


class _FrameCache:
    """Large stored frames kept after a load, for the next steps of the same process.

    The nightly refresh runs every step in one process (in_process executor), and seven of its steps read the
    whole history (83 M rows at M5 size, 4–8 s a read). A frame of at least ``min_rows`` rows is kept with the
    identity of its file (inode, size, modification time) and handed out as a shallow copy whose arrays are
    read-only: a step that modified its input in place would fail loudly, never change another step's input.
    Entries beyond ``max_bytes`` are dropped, oldest first. Other executors (a process per step) start empty.
    """

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tuple, pd.DataFrame]] = {}

    @staticmethod
    def min_rows() -> int:
        return int(os.environ.get("FORECASTING_IO_CACHE_MIN_ROWS", "5000000"))

    @staticmethod
    def max_bytes() -> int:
        return int(float(os.environ.get("FORECASTING_IO_CACHE_GB", "6")) * 2**30)

    def get(self, path: Path, identity: tuple, read) -> pd.DataFrame:
        hit = self.entries.get(str(path))
        if hit is not None and hit[0] == identity:
            return hit[1].copy(deep=False)
        frame = read()
        self.entries.pop(str(path), None)
        if self.max_bytes() > 0 and len(frame) >= self.min_rows():
            _read_only(frame)
            self.entries[str(path)] = (identity, frame)
            while len(self.entries) > 1 and sum(f.memory_usage(index=False, deep=False).sum() for _, f in self.entries.values()) > self.max_bytes():
                self.entries.pop(next(iter(self.entries)))
            return frame.copy(deep=False)
        return frame

    def forget(self, path: Path) -> None:
        self.entries.pop(str(path), None)


def _read_only(frame: pd.DataFrame) -> None:
    """Make every array behind ``frame`` read-only (categorical codes and datetimes included)."""
    for block in frame._mgr.blocks:
        array = getattr(block.values, "_ndarray", block.values)
        if isinstance(array, np.ndarray):
            array.flags.writeable = False


def _identity(path: Path) -> tuple:
    stat = path.stat()
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


FRAME_CACHE = _FrameCache()


class WarehouseIOManager(dg.ConfigurableIOManager):
    """Atomic Parquet/JSON/pickle files per asset, with DuckDB views over the Parquet ones."""

    base_dir: str = ""  # default: <project home>/data/outputs
    warehouse: str = ""  # default: <project home>/data/warehouse.duckdb

    def _base(self) -> Path:
        return Path(self.base_dir) if self.base_dir else outputs_dir()

    def _warehouse(self) -> Path:
        return Path(self.warehouse) if self.warehouse else warehouse_path()

    def _stem(self, context: dg.OutputContext | dg.InputContext, partition: str | None = None) -> Path:
        key = context.asset_key.path if context.has_asset_key else [context.name]
        name = "__".join(key)
        if partition is not None:
            return self._base() / name / partition
        if context.has_asset_partitions:
            return self._base() / name / "__".join(context.asset_partition_keys)
        return self._base() / name

    def stored_table(self, asset: str) -> segments.StoredTable | None:
        """The segmented table stored for an (unpartitioned) asset, None when it is stored as one file or not at all."""
        return self._segmented(self._base() / asset)

    def _segmented(self, stem: Path) -> segments.StoredTable | None:
        """The segmented table at ``stem`` when it is the newer of the two forms (a crash between writing one
        form and removing the other can leave both)."""
        folder = segments.folder_for(stem)
        manifest = folder / segments.MANIFEST
        if not manifest.exists():
            return None
        single = stem.with_suffix(".parquet")
        if single.exists() and single.stat().st_mtime_ns > manifest.stat().st_mtime_ns:
            return None
        return segments.read_manifest(folder)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        stem = self._stem(context)
        if isinstance(obj, segments.SegmentedFrame):
            stored = segments.write_segments(obj, segments.folder_for(stem))
            stem.with_suffix(".parquet").unlink(missing_ok=True)
            rebuild_catalog(self._base(), self._warehouse())
            context.add_output_metadata({"path": dg.MetadataValue.path(str(stored.folder)), "segments": len(stored.segments)})
            return
        if isinstance(obj, pd.DataFrame):
            path = files.write_parquet(obj, stem.with_suffix(".parquet"))
            segments.remove(segments.folder_for(stem))  # a table stored as segments before
            rebuild_catalog(self._base(), self._warehouse())
        elif isinstance(obj, (dict, list)):
            path = files.write_json(obj, stem.with_suffix(".json"))
        else:
            path = files.write_pickle(obj, stem.with_suffix(".pkl"))
        # remove an older file of the same asset in another format (missing_ok: a concurrent run may have
        # removed it between the check and the unlink)
        for suffix in _SUFFIXES:
            other = stem.with_suffix(suffix)
            if other != path and other.exists():
                other.unlink(missing_ok=True)
                if suffix == ".parquet":  # its view would now read a missing file
                    rebuild_catalog(self._base(), self._warehouse())
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> Any:
        if context.has_asset_partitions and not (context.has_partition_key and len(context.asset_partition_keys) == 1):
            # an unpartitioned asset reading a partitioned one: {partition key: value} of the stored partitions
            stored = {}
            for partition in context.asset_partition_keys:
                stem = self._stem(context, partition)
                if any(stem.with_suffix(s).exists() for s in _SUFFIXES):
                    stored[partition] = self._load(stem, context)
            return stored
        return self._load(self._stem(context), context)

    def load_asset(self, asset: str) -> Any:
        """The stored value of an (unpartitioned) asset, as an input would receive it."""
        return self._load(self._base() / asset)

    def _load(self, stem: Path, context: dg.InputContext | None = None) -> Any:
        stored = self._segmented(stem)
        if stored is not None:
            lazy = context is not None and bool((context.definition_metadata or {}).get("lazy"))
            if lazy:
                return stored
            manifest = stored.folder / segments.MANIFEST
            return FRAME_CACHE.get(manifest, _identity(manifest), stored.read)
        for suffix in _SUFFIXES:
            path = stem.with_suffix(suffix)
            if path.exists():
                if suffix == ".parquet":
                    return FRAME_CACHE.get(path, _identity(path), lambda: files.read_parquet(path))
                if suffix == ".json":
                    return json.loads(path.read_text())
                with open(path, "rb") as handle:
                    return pickle.load(handle)
        raise FileNotFoundError(
            f"No stored output for asset {context.asset_key.to_user_string() if context is not None else stem.name} under {stem.parent}: "
            "materialize it first."
        )
