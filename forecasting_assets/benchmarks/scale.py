"""Scale benchmark: the whole asset graph on M5-shaped demo data of a given number of bottom series.

    python -m forecasting_assets.benchmarks.scale --sizes 1000,5000,30490 [--days 1941] [--trials 0]

For each size it generates demo data with the M5 hierarchy (3 states, 10 stores, 3 categories,
7 departments; the items of each department scaled from M5's so that stores × items is about the size;
30490 is M5's exact shape: 12 levels, 42,840 series), then materializes ``full_pipeline_job``
in a fresh project home under ``data/bench/scale/n<size>/`` (as ``make run`` does: multiprocess executor, one step
at a time; ``--executor in_process`` runs every step in this process) and records, per asset step and
in total, the wall time and the peak resident memory of this process and its children (the statsforecast
and LightGBM worker pools). The figures of each size go into ``data/bench/scale.json`` (merged with the
sizes measured before), (key ``sizes``; ``make bench-nightly`` adds ``nightly``), and the table printed at the end gives how each stage's time grows with the
series count: the exponent b of time ∝ n^b between consecutive sizes (1 is linear).

The project homes stay on disk, so ``make bench-nightly`` can refresh the materialized M5-size project.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

from forecasting_assets.benchmarks.measure import TreeMemorySampler, step_timings

M5_SIZE = 30490
BENCH_DIR = Path("data") / "bench"
SCALE_DIR = BENCH_DIR / "scale"
RESULTS = BENCH_DIR / "scale.json"
SEED = 7


def shape_for(n_series: int, days: int):
    """The M5 demo shape with each department's item count scaled so stores × items ≈ n_series."""
    from dataclasses import replace

    from forecasting_assets.demo_data import PRESETS

    m5 = PRESETS["m5"]
    if n_series == m5.n_series:
        return replace(m5, days=days)
    factor = n_series / m5.n_series
    items = tuple(max(1, round(count * factor)) for count in m5.items())
    return replace(m5, items_per_dept=items, days=days)


def prepare_source(folder: Path, n_series: int, days: int) -> dict:
    """Demo data of that size in ``folder`` (kept and reused when its shape matches)."""
    from dataclasses import asdict

    from forecasting_assets.demo_data import write_demo

    shape = shape_for(n_series, days)
    marker = folder / ".shape.json"
    wanted = json.loads(json.dumps({"shape": asdict(shape), "seed": SEED}))  # as read back (tuples become lists)
    if not (marker.exists() and json.loads(marker.read_text()) == wanted):
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        write_demo(folder, shape=shape, seed=SEED)
        marker.write_text(json.dumps(wanted))
        print(f"  generated {shape.n_series:,} bottom series × {days} days in {time.perf_counter() - start:.0f} s", flush=True)
    return {"bottom_series": shape.n_series, "days": days}


def execute_job(defs, instance, job: str, run_config: dict | None = None, partition_key: str | None = None) -> dict:
    """Run one job in-process; per step: seconds and peak memory (GiB) of this process and its children."""
    run_config = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}, **(run_config or {})}
    steps: dict[str, dict] = {}
    with TreeMemorySampler(interval=0.5) as sampler:
        start = time.time()
        result = defs.resolve_job_def(job).execute_in_process(
            instance=instance, run_config=run_config, partition_key=partition_key, raise_on_error=False
        )
        end = time.time()
    steps = step_timings(instance, result.run_id, sampler)
    return {
        "job": job,
        "success": result.success,
        "failed_steps": [key for key, step in steps.items() if step.get("failed")],
        "total_seconds": round(end - start, 1),
        "peak_gb": round(sampler.peak_between(start, end) / 2**30, 2),
        "steps": steps,
    }


def project_definitions(home: Path, source: Path):
    """The code location with the source folder and the project home's landing folder."""
    from forecasting_assets.definitions import build_definitions
    from forecasting_assets.resources import SalesSource

    return build_definitions({"source": SalesSource(folder=str(source.resolve()), landing_folder=str((home / "data" / "landing").resolve()))})


def materialize(home: Path, source: Path, trials: int, executor: str = "multiprocess") -> dict:
    """``full_pipeline_job`` in the project home.

    ``multiprocess`` (the default, as ``make run``): ``dagster job execute`` in a child process with the
    multiprocess executor, one step at a time, each step in its own process: a step's memory is returned
    when it ends. ``in_process``: every step in this process (its memory high-water mark carries over from
    step to step, so later steps show the peak of earlier ones).
    """
    import subprocess
    import sys

    import dagster as dg
    import yaml

    run_config = {"ops": {"lightgbm_tuning": {"config": {"n_trials": trials}}}}
    if executor == "in_process":
        defs = project_definitions(home, source)
        with dg.DagsterInstance.get() as instance:
            return execute_job(defs, instance, "full_pipeline_job", run_config)
    config_file = home / "data" / "bench_run_config.yaml"
    config_file.write_text(yaml.safe_dump({**run_config, "execution": {"config": {"max_concurrent": 1}}}))
    environment = {
        **os.environ,
        "FORECASTING_SOURCE": str(source.resolve()),
        "FORECASTING_LANDING": str((home / "data" / "landing").resolve()),
        "FORECASTING_EXECUTOR": "multiprocess",
    }
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "forecasting_assets.definitions", "-j", "full_pipeline_job", "-c", str(config_file)]
    with TreeMemorySampler(interval=0.5) as sampler:
        start = time.time()
        finished = subprocess.run(command, env=environment, capture_output=True, text=True)
        end = time.time()
    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs(limit=1)
        if not runs:
            raise SystemExit(f"no run was recorded: {finished.stderr[-2000:]}")
        run = runs[0]
        steps = step_timings(instance, run.run_id, sampler)
    return {
        "job": "full_pipeline_job",
        "executor": "multiprocess (one step at a time, each in its own process)",
        "success": finished.returncode == 0 and run.status == dg.DagsterRunStatus.SUCCESS,
        "failed_steps": [key for key, step in steps.items() if step.get("failed")],
        "total_seconds": round(end - start, 1),
        "peak_gb": round(sampler.peak_between(start, end) / 2**30, 2),
        "steps": steps,
    }


def use_home(home: Path) -> None:
    """Point the project (outputs, Dagster instance, MLflow) at ``home``, with the project's dagster.yaml."""
    from forecasting_assets.paths import REPO_ROOT

    os.environ["FORECASTING_ASSETS_HOME"] = str(home.resolve())
    os.environ["DAGSTER_HOME"] = str((home / "data" / "dagster_home").resolve())
    os.environ["FORECASTING_EXECUTOR"] = "in_process"
    (home / "data" / "dagster_home").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "data" / "dagster_home" / "dagster.yaml")  # telemetry off


def table_sizes(home: Path) -> dict:
    """Row counts of the main outputs (how much data each size really moved)."""
    import pyarrow.parquet as pq

    from forecasting_assets.storage import segments

    outputs = home / "data" / "outputs"
    sizes = {}
    for name in ("raw_sales", "validated_sales", "hierarchical_series", "base_forecasts", "reconciled_forecasts", "final_forecasts"):
        path = outputs / f"{name}.parquet"
        stored = segments.read_manifest(segments.folder_for(outputs / name))
        if stored is not None:  # stored as segments (a large history)
            sizes[name] = stored.rows
        elif path.exists():
            sizes[name] = pq.ParquetFile(path).metadata.num_rows
    return sizes


def run_size(n_series: int, days: int, trials: int, executor: str = "multiprocess") -> dict:
    folder = SCALE_DIR / f"n{n_series}"
    print(f"size {n_series:,}: preparing data", flush=True)
    info = prepare_source(folder / "source", n_series, days)
    home = folder / "home"
    shutil.rmtree(home, ignore_errors=True)
    use_home(home)
    print(f"size {n_series:,}: materializing full_pipeline_job in {home}", flush=True)
    figures = materialize(home, folder / "source", trials, executor)
    figures.update(info)
    figures["rows"] = table_sizes(home)
    figures["measured"] = time.strftime("%Y-%m-%d %H:%M")
    figures["cores"] = os.cpu_count()
    return figures


def growth_exponents(results: dict) -> dict[str, dict[str, float]]:
    """Per step: b in time ∝ n^b between consecutive measured sizes ('a→b' keys)."""
    sizes = sorted(results, key=int)
    exponents: dict[str, dict[str, float]] = {}
    for small, large in zip(sizes, sizes[1:]):
        ratio = math.log(int(large) / int(small))
        label = f"{small}→{large}"
        for step, figures in results[large]["steps"].items():
            before = results[small]["steps"].get(step)
            if before and before["seconds"] > 0.5 and figures["seconds"] > 0:
                exponents.setdefault(step, {})[label] = round(math.log(figures["seconds"] / before["seconds"]) / ratio, 2)
        exponents.setdefault("total", {})[label] = round(math.log(results[large]["total_seconds"] / results[small]["total_seconds"]) / ratio, 2)
    return exponents


def markdown_table(results: dict) -> str:
    """The per-step table as Markdown (the README's Scale section): seconds and peak GiB per size, growth b."""
    sizes = sorted(results, key=int)
    exponents = growth_exponents(results)
    steps = sorted({s for size in sizes for s in results[size]["steps"]}, key=lambda s: -max(results[z]["steps"].get(s, {}).get("seconds", 0) for z in sizes))
    head = "| step | " + " | ".join(f"n={int(z):,}: s / GiB" for z in sizes) + " | growth b |"
    lines = [head, "|---|" + "---:|" * len(sizes) + "---|"]
    for step in steps:
        cells = [f"{results[z]['steps'][step]['seconds']:.0f} / {results[z]['steps'][step]['peak_gb']:.1f}" if step in results[z]["steps"] else "–" for z in sizes]
        lines.append(f"| {step} | " + " | ".join(cells) + " | " + ", ".join(f"{v}" for v in exponents.get(step, {}).values()) + " |")
    totals = [f"**{results[z]['total_seconds'] / 60:.1f} min / {results[z]['peak_gb']:.1f}**" for z in sizes]
    lines.append("| **whole graph** | " + " | ".join(totals) + " | " + ", ".join(f"{v}" for v in exponents.get("total", {}).values()) + " |")
    return "\n".join(lines)


def print_report(results: dict) -> None:
    sizes = sorted(results, key=int)
    steps = sorted({step for size in sizes for step in results[size]["steps"]}, key=lambda s: -max(results[z]["steps"].get(s, {}).get("seconds", 0) for z in sizes))
    exponents = growth_exponents(results)
    header = f"{'step':34s}" + "".join(f"{'n=' + size:>20s}" for size in sizes) + "   growth b (time ∝ n^b)"
    print("\n" + header)
    print(f"{'':34s}" + "".join(f"{'seconds  peak GiB':>20s}" for _ in sizes))
    for step in steps:
        cells = ""
        for size in sizes:
            figures = results[size]["steps"].get(step)
            cells += f"{figures['seconds']:>11.1f} {figures['peak_gb']:>8.2f}" if figures else f"{'-':>20s}"
        growth = ", ".join(f"{k}: {v}" for k, v in exponents.get(step, {}).items())
        print(f"{step:34s}{cells}   {growth}")
    cells = "".join(f"{results[s]['total_seconds']:>11.1f} {results[s]['peak_gb']:>8.2f}" for s in sizes)
    print(f"{'whole graph':34s}{cells}   " + ", ".join(f"{k}: {v}" for k, v in exponents.get("total", {}).items()))
    for size in sizes:
        figures = results[size]
        verdict = "meets" if figures["success"] and figures["total_seconds"] < 1800 and figures["peak_gb"] < 12 else "misses"
        print(
            f"n={size}: {figures['bottom_series']:,} bottom series × {figures['days']} days, "
            f"{figures['rows'].get('hierarchical_series', 0):,} hierarchical rows: {figures['total_seconds'] / 60:.1f} min, "
            f"peak {figures['peak_gb']:.2f} GiB — {verdict} the bar (30 min, 12 GiB)"
            + ("" if figures["success"] else f"; FAILED steps: {', '.join(figures['failed_steps'])}")
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,5000,30490", help="bottom-series counts, comma-separated")
    parser.add_argument("--days", type=int, default=1941)
    parser.add_argument("--trials", type=int, default=1, help="Optuna trials of lightgbm_tuning (1: the default parameters only)")
    parser.add_argument("--executor", choices=["multiprocess", "in_process"], default="multiprocess")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    sizes = results.setdefault("sizes", {})
    for n_series in [int(s) for s in args.sizes.split(",") if s.strip()]:
        figures = run_size(n_series, args.days, args.trials, args.executor)
        sizes[str(n_series)] = figures
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
        print(f"size {n_series:,}: {figures['total_seconds']:.0f} s, peak {figures['peak_gb']:.2f} GiB", flush=True)
    print_report(sizes)
    print("\n" + markdown_table(sizes))
    print(f"\nfigures: {args.out}")


if __name__ == "__main__":
    main()
