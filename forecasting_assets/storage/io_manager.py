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
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from forecasting_assets.paths import outputs_dir, warehouse_path
from forecasting_assets.storage import files, segments
from forecasting_assets.storage.warehouse import rebuild_catalog

_SUFFIXES = (".parquet", ".json", ".pkl")


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
            return stored if lazy else stored.read()
        for suffix in _SUFFIXES:
            path = stem.with_suffix(suffix)
            if path.exists():
                if suffix == ".parquet":
                    return files.read_parquet(path)
                if suffix == ".json":
                    return json.loads(path.read_text())
                with open(path, "rb") as handle:
                    return pickle.load(handle)
        raise FileNotFoundError(
            f"No stored output for asset {context.asset_key.to_user_string() if context is not None else stem.name} under {stem.parent}: "
            "materialize it first."
        )
