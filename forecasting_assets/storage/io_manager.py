"""The IO manager every asset uses: one atomic file per asset under ``data/outputs``.

DataFrames become ``<asset>.parquet`` and a view of the same name in ``data/warehouse.duckdb``;
dicts/lists become ``<asset>.json``; anything else (fitted models) ``<asset>.pkl``.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd

from forecasting_assets.paths import outputs_dir, warehouse_path
from forecasting_assets.storage import files
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

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        stem = self._stem(context)
        if isinstance(obj, pd.DataFrame):
            path = files.write_parquet(obj, stem.with_suffix(".parquet"))
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

    def _load(self, stem: Path, context: dg.InputContext) -> Any:
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
            f"No stored output for asset {context.asset_key.to_user_string()} under {stem.parent}: "
            "materialize it first."
        )
