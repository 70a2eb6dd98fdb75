"""What loading the code location costs on top of ``import dagster``, measured side by side.

``make bench-load`` (``python -m forecasting_assets.benchmarks.load_time --repeats 7``) starts fresh Python
processes, alternating between one that only imports dagster and one that loads the code location the
way every UI reload, run and sensor tick does (``import forecasting_assets.definitions`` and resolving the
asset graph), and prints the median wall time of each and their difference. The target: at most 1.5 s
more than ``import dagster`` alone.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

DAGSTER_ONLY = "import dagster"
CODE_LOCATION = (
    "import dagster\n"
    "from forecasting_assets.definitions import defs\n"
    "defs.resolve_asset_graph()\n"
    "defs.resolve_all_job_defs()\n"
)
TARGET_S = 1.5


def time_process(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    return time.perf_counter() - start


def measure(repeats: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {"import dagster": [], "code location": []}
    time_process(CODE_LOCATION)  # warm the OS file cache (and .pyc files where they can be written)
    for _ in range(repeats):
        times["import dagster"].append(time_process(DAGSTER_ONLY))
        times["code location"].append(time_process(CODE_LOCATION))
    return times


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args(argv)
    times = measure(args.repeats)
    medians = {name: statistics.median(values) for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:15s} median {medians[name]:.2f} s  (runs: {', '.join(f'{v:.2f}' for v in values)})")
    extra = medians["code location"] - medians["import dagster"]
    verdict = "within" if extra <= TARGET_S else "OVER"
    print(f"loading the code location costs {extra:.2f} s more than import dagster ({verdict} the {TARGET_S} s target)")


if __name__ == "__main__":
    main()
