"""The DuckDB warehouse: a small catalog file of views over the per-asset Parquet files.

Why views over files instead of tables inside the database:

* the pipeline never holds ``warehouse.duckdb`` open for writing, so a reader that keeps it open
  (a notebook, the DuckDB CLI) can never make a run fail with "Could not set lock on file";
* each asset's Parquet file is replaced atomically, and the catalog itself is rebuilt in a temporary
  file and moved into place, so a crash never leaves a half-written table or catalog;
* a reader that holds the old catalog open still sees fresh data (views read the files by path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from forecasting_assets.storage.files import atomic_write, exclusive_lock

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


def table_files(outputs_dir: Path) -> dict[str, str | list[str]]:
    """Every ``<table>.parquet`` in ``outputs_dir`` whose name is a plain SQL identifier, every segmented table
    (``<table>.segments/``: the files its manifest names) and every folder of Parquet files (a partitioned
    asset, the forecast history) as ``<folder>/*.parquet``."""
    from forecasting_assets.storage import segments

    outputs_dir = Path(outputs_dir)
    tables: dict[str, str | list[str]] = {path.stem: str(path.resolve()) for path in sorted(outputs_dir.glob("*.parquet")) if _IDENTIFIER.match(path.stem)}
    for folder in sorted(outputs_dir.glob(f"*{segments.SUFFIX}")):
        name = folder.name.removesuffix(segments.SUFFIX)
        stored = segments.read_manifest(folder) if _IDENTIFIER.match(name) else None
        single = outputs_dir / f"{name}.parquet"
        if stored is not None and stored.segments and not (single.exists() and single.stat().st_mtime_ns > (folder / segments.MANIFEST).stat().st_mtime_ns):
            tables[name] = [str(p.resolve()) for p in stored.paths()]
    for folder in sorted(p for p in outputs_dir.glob("*") if p.is_dir() and _IDENTIFIER.match(p.name)):
        if folder.name not in tables and any(folder.glob("*.parquet")):
            tables[folder.name] = str(folder.resolve() / "*.parquet")
    return tables


def _sql_paths(path: str | list[str]) -> str:
    """One path, or a list of them, as a SQL literal for ``read_parquet``."""
    quoted = ["'" + str(p).replace("'", "''") + "'" for p in ([path] if isinstance(path, str) else path)]
    return quoted[0] if isinstance(path, str) else "[" + ", ".join(quoted) + "]"


def rebuild_catalog(outputs_dir: Path, warehouse: Path) -> list[str]:
    """Write a fresh catalog with one view per Parquet file and move it onto ``warehouse`` atomically."""
    import duckdb

    warehouse = Path(warehouse)
    with exclusive_lock(warehouse):  # serialize catalog rebuilds between processes
        tables = table_files(outputs_dir)

        def _write(tmp: Path) -> None:
            con = duckdb.connect(str(tmp))
            try:
                for name, path in tables.items():
                    con.execute(f"CREATE OR REPLACE VIEW {name} AS SELECT * FROM read_parquet({_sql_paths(path)}, union_by_name = true)")
                con.execute("CHECKPOINT")
            finally:
                con.close()

        atomic_write(warehouse, _write)
        wal = warehouse.with_name(warehouse.name + ".wal")
        if wal.exists() and not os.path.getsize(wal):
            wal.unlink(missing_ok=True)
    return list(tables)


def connect(warehouse: Path | None = None):
    """A read-only DuckDB connection to the warehouse (safe while the pipeline runs)."""
    import duckdb

    from forecasting_assets.paths import warehouse_path

    return duckdb.connect(str(warehouse or warehouse_path()), read_only=True)


def query(sql: str, params: list | None = None, warehouse: Path | None = None):
    """Run a (parameterized) query on the warehouse and return a pandas DataFrame."""
    con = connect(warehouse)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()
