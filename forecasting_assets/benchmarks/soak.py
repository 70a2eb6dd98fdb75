"""Soak: N back-to-back nightly refreshes on demo data, and whether anything grows without bound.

``make bench-soak`` (``python -m forecasting_assets.benchmarks.soak --refreshes 20``) builds a fresh project
under ``data/bench/soak`` (tiny demo data, one full run), then N times: lands the next demo day in the
landing folder, lets ``landing_folder_sensor`` take it in, materializes its ``landed_sales`` partition
(``landing_ingest_job``) and runs the nightly ``refresh_forecasts_job`` — all in this one process, so a
leak shows in its memory. After each refresh it records wall time, the process's resident memory, files
and bytes per folder, leftover temp files and row counts of the main tables, and prints a table.

What should grow, and what must not: the sales history (``raw_sales``, ``validated_sales``: one day of
rows per refresh), the landing archive (one file per refresh), the served-forecast history (one file per
origin), the event logs (Dagster's run storage and compute logs, ``automation_decisions``, MLflow's runs
and the SHAP plots each run logs there). The forecasts, the
quarantine, the warehouse catalog, temp files and the process's memory must stay flat. The last lines
say which grew, per refresh, as a least-squares slope over the second half of the refreshes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import time
from pathlib import Path

TABLES = ("raw_sales", "validated_sales", "sales_quarantine", "final_forecasts", "reconciled_forecasts", "automation_decisions")
FOLDERS = ("outputs", "landing", "dagster_home", "mlartifacts")
STORES = ("warehouse.duckdb", "mlflow.db", "optuna.db")
BOUNDED = ("final_forecasts", "reconciled_forecasts", "sales_quarantine", "temp_files", "rss_mb", "warehouse_kb")
RSS_NOISE_MB = 5.0  # resident memory moves by a few MB between refreshes (allocator, caches): a leak is more


def _folder_stats(folder: Path) -> tuple[int, int]:
    files = [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
    return len(files), sum(p.stat().st_size for p in files)


def _rows(outputs: Path, table: str) -> int:
    import pyarrow.parquet as pq

    path = outputs / f"{table}.parquet"
    return pq.ParquetFile(path).metadata.num_rows if path.exists() else 0


def snapshot(data: Path) -> dict:
    """Sizes that must stay flat or grow by a known amount per refresh."""
    import psutil

    gc.collect()
    row = {"rss_mb": round(psutil.Process().memory_info().rss / 2**20, 1)}
    for name in FOLDERS:
        count, size = _folder_stats(data / name)
        row[f"{name}_files"], row[f"{name}_mb"] = count, round(size / 2**20, 2)
    row["temp_files"] = sum(1 for p in data.rglob(".*.tmp-*")) + sum(1 for p in data.rglob("*.tmp") if p.is_file())
    for store in STORES:
        path = data / store
        row[store.split(".")[0] + "_kb"] = round(path.stat().st_size / 1024, 1) if path.exists() else 0
    for table in TABLES:
        row[table] = _rows(data / "outputs", table)
    return row


def slope(values: list[float]) -> float:
    """Least-squares growth per refresh."""
    import numpy as np

    if len(values) < 2:
        return 0.0
    x = np.arange(len(values), dtype=float)
    return float(np.polyfit(x, np.asarray(values, dtype=float), 1)[0])


def run_soak(home: Path, refreshes: int, size: str, trials: int) -> list[dict]:
    os.environ["FORECASTING_ASSETS_HOME"] = str(home)
    os.environ["DAGSTER_HOME"] = str(home / "data" / "dagster_home")
    os.environ.setdefault("FORECASTING_EXECUTOR", "in_process")
    os.environ.setdefault("FORECASTING_LANDING_SETTLE_SECONDS", "0")  # read when the sensors module loads
    (home / "data" / "dagster_home").mkdir(parents=True, exist_ok=True)
    from forecasting_assets.paths import REPO_ROOT

    shutil.copy(REPO_ROOT / "dagster.yaml", home / "data" / "dagster_home" / "dagster.yaml")  # telemetry off
    import dagster as dg

    from forecasting_assets.automation.sensors import landing_folder_sensor
    from forecasting_assets.definitions import build_definitions
    from forecasting_assets.demo_data import write_demo, write_next_days
    from forecasting_assets.resources import SalesSource

    data = home / "data"
    source = data / "demo"
    write_demo(source, shape=size, seed=7)
    resources = {"source": SalesSource(folder=str(source), landing_folder=str(data / "landing"))}
    defs = build_definitions(resources)
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    history = []
    with dg.DagsterInstance.get() as instance:
        start = time.perf_counter()
        defs.resolve_job_def("full_pipeline_job").execute_in_process(
            instance=instance, run_config={**quiet, "ops": {"lightgbm_tuning": {"config": {"n_trials": trials}}}}
        )
        print(f"full run: {time.perf_counter() - start:.1f} s", flush=True)
        history.append({"refresh": 0, "seconds": round(time.perf_counter() - start, 1), **snapshot(data)})
        cursor = None
        for k in range(1, refreshes + 1):
            start = time.perf_counter()
            write_next_days(source, data / "landing", 1, seed=k)
            context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources, definitions=defs)
            result = landing_folder_sensor(context)
            if not isinstance(result, dg.SensorResult):
                raise RuntimeError(f"refresh {k}: the landing file was not taken in: {result}")
            cursor = result.cursor
            instance.add_dynamic_partitions("landing_batches", [r.partition_key for r in result.run_requests])
            for request in result.run_requests:
                defs.resolve_job_def("landing_ingest_job").execute_in_process(instance=instance, partition_key=request.partition_key, run_config=quiet)
            defs.resolve_job_def("refresh_forecasts_job").execute_in_process(instance=instance, run_config=quiet)
            row = {"refresh": k, "seconds": round(time.perf_counter() - start, 1), **snapshot(data)}
            history.append(row)
            print(
                f"refresh {k:2d}: {row['seconds']:5.1f} s  rss {row['rss_mb']:7.1f} MB  raw_sales {row['raw_sales']:7d}  "
                f"final_forecasts {row['final_forecasts']:6d}  outputs {row['outputs_files']:4d} files  temp {row['temp_files']}",
                flush=True,
            )
    return history


def growth_report(history: list[dict]) -> dict[str, float]:
    """Per-refresh growth of every measured quantity over the second half of the refreshes."""
    refreshes = [h for h in history if h["refresh"] > 0]
    tail = refreshes[len(refreshes) // 2:]
    keys = [k for k in tail[0] if k not in ("refresh",)] if tail else []
    return {k: round(slope([h[k] for h in tail]), 3) for k in keys}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refreshes", type=int, default=20)
    parser.add_argument("--size", default="tiny", help="demo size (tiny, small, ...)")
    parser.add_argument("--trials", type=int, default=2, help="Optuna trials of the first full run")
    parser.add_argument("--out", default="data/bench/soak", help="the soak project's home (wiped first)")
    args = parser.parse_args(argv)
    home = Path(args.out).resolve()
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    start = time.perf_counter()
    history = run_soak(home, args.refreshes, args.size, args.trials)
    growth = growth_report(history)
    first, last = history[1], history[-1]
    print(f"\n{args.refreshes} refreshes in {time.perf_counter() - start:.0f} s (median refresh "
          f"{sorted(h['seconds'] for h in history[1:])[len(history[1:]) // 2]} s)")
    print(f"{'quantity':28s} {'after 1st':>12s} {'after last':>12s} {'per refresh':>12s}")
    for key, per_refresh in growth.items():
        limit = RSS_NOISE_MB if key == "rss_mb" else 0.0
        flag = "  <- must stay flat" if key in BOUNDED and abs(per_refresh) > limit else ""
        print(f"{key:28s} {first[key]:>12} {last[key]:>12} {per_refresh:>12}{flag}")
    unbounded = [k for k in BOUNDED if growth.get(k, 0) > (RSS_NOISE_MB if k == "rss_mb" else 0.0)]
    rss_growth = growth.get("rss_mb", 0.0)
    print(f"\nbounded quantities that grew: {', '.join(unbounded) or 'none'}; "
          f"memory {rss_growth:+.1f} MB per refresh over the second half")
    out = home.parent / "soak.json"
    out.write_text(json.dumps({"history": history, "growth_per_refresh": growth}, indent=2))
    print(f"figures: {out}")


if __name__ == "__main__":
    main()
