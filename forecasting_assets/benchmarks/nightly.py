"""Nightly refresh benchmark: one new day of sales into a materialized project, refreshed as at night.

    python -m forecasting_assets.benchmarks.nightly [--size 30490]

It needs the project that ``make bench-scale`` materialized for that size (``data/bench/scale/n<size>/``).
It writes the next demo day (every bottom series) into that project's landing folder, and then does what
the nightly automation does, timing each part:

1. ``landing_folder_sensor`` takes the file in (a new ``landing_batches`` partition);
2. ``landing_ingest_job`` materializes that partition of ``landed_sales``;
3. ``refresh_forecasts_job`` (the 02:00 schedule's job): ingest, validation, hierarchy, features, the
   base forecasts from the registered champion (no refit, no tuning, no backtest), reconciliation with
   the methods chosen at the last full run, quantiles, final forecasts, metrics, SHAP and drift.

It prints per-step wall time and peak memory (this process and its children) and adds the figures to
``data/bench/scale.json`` under ``nightly``. Each run lands one more day.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from forecasting_assets.benchmarks.scale import M5_SIZE, RESULTS, SCALE_DIR, execute_job, project_definitions, use_home


def refresh_one_day(home: Path, source: Path, seed: int) -> dict:
    import os

    # the file is written whole before the sensor looks (the settle time guards files still being copied in)
    os.environ.setdefault("FORECASTING_LANDING_SETTLE_SECONDS", "0")  # read when the sensors module loads
    import dagster as dg

    from forecasting_assets.automation.sensors import landing_folder_sensor
    from forecasting_assets.demo_data import write_next_days
    from forecasting_assets.resources import SalesSource

    landing = home / "data" / "landing"
    start = time.perf_counter()
    written = write_next_days(source, landing, 1, seed=seed)
    landed_seconds = time.perf_counter() - start
    defs = project_definitions(home, source)
    resources = {"source": SalesSource(folder=str(source.resolve()), landing_folder=str(landing.resolve()))}
    figures: dict = {"landing_file": str(written), "write_landing_file_seconds": round(landed_seconds, 1)}
    with dg.DagsterInstance.get() as instance:
        start = time.perf_counter()
        context = dg.build_sensor_context(instance=instance, resources=resources, definitions=defs)
        result = landing_folder_sensor(context)
        if not isinstance(result, dg.SensorResult) or not result.run_requests:
            raise SystemExit(f"the landing sensor did not take {written} in: {result}")
        instance.add_dynamic_partitions("landing_batches", [r.partition_key for r in result.run_requests])
        figures["sensor_seconds"] = round(time.perf_counter() - start, 1)
        ingest = [execute_job(defs, instance, "landing_ingest_job", partition_key=r.partition_key) for r in result.run_requests]
        refresh = execute_job(defs, instance, "refresh_forecasts_job")
    figures["landing_ingest_job"] = ingest
    figures["refresh_forecasts_job"] = refresh
    figures["total_seconds"] = round(figures["sensor_seconds"] + sum(run["total_seconds"] for run in ingest) + refresh["total_seconds"], 1)
    figures["peak_gb"] = max([refresh["peak_gb"], *(run["peak_gb"] for run in ingest)])
    figures["success"] = refresh["success"] and all(run["success"] for run in ingest)
    figures["measured"] = time.strftime("%Y-%m-%d %H:%M")
    return figures


def print_report(size: int, figures: dict) -> None:
    refresh = figures["refresh_forecasts_job"]
    print(f"\nnightly refresh at n={size:,} bottom series (one new day):")
    print(f"  {'landing sensor':40s} {figures['sensor_seconds']:8.1f} s")
    for run in figures["landing_ingest_job"]:
        print(f"  {'landing_ingest_job':40s} {run['total_seconds']:8.1f} s  peak {run['peak_gb']:.2f} GiB")
    print(f"  {'refresh_forecasts_job':40s} {refresh['total_seconds']:8.1f} s  peak {refresh['peak_gb']:.2f} GiB")
    for step, step_figures in sorted(refresh["steps"].items(), key=lambda kv: -kv[1]["seconds"]):
        print(f"    {step:38s} {step_figures['seconds']:8.1f} s  peak {step_figures['peak_gb']:.2f} GiB")
    verdict = "meets" if figures["success"] and figures["total_seconds"] < 180 else "misses"
    print(f"  total {figures['total_seconds']:.1f} s ({figures['total_seconds'] / 60:.1f} min) — {verdict} the bar (3 min)"
          + ("" if figures["success"] else f"; FAILED: {refresh['failed_steps']}"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=M5_SIZE, help="bottom-series count of a project bench-scale materialized")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    folder = SCALE_DIR / f"n{args.size}"
    home, source = folder / "home", folder / "source"
    if not (home / "data" / "outputs" / "final_forecasts.parquet").exists():
        raise SystemExit(f"{home} has no materialized project: run `make bench-scale SIZES={args.size}` first")
    use_home(home)
    runs = len(list((home / "data" / "landing" / "archive").glob("*"))) if (home / "data" / "landing" / "archive").exists() else 0
    figures = refresh_one_day(home, source, seed=100 + runs)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results.setdefault("nightly", {})[str(args.size)] = figures
    args.out.write_text(json.dumps(results, indent=2))
    print_report(args.size, figures)
    print(f"\nfigures: {args.out}")


if __name__ == "__main__":
    main()
