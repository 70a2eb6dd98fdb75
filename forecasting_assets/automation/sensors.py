"""Sensors: new sales files in the landing folder, and drift above a threshold."""


import json
import os
import time
from pathlib import Path

import dagster as dg

from forecasting_assets.automation.jobs import refresh_forecasts_job, retrain_job
from forecasting_assets.ingest.assets import landing_files
from forecasting_assets.paths import landing_dir

# a file modified more recently than this is assumed to be still being written
SETTLE_SECONDS = float(os.environ.get("FORECASTING_LANDING_SETTLE_SECONDS", "5"))
DRIFT_THRESHOLD = float(os.environ.get("FORECASTING_DRIFT_THRESHOLD", "0.5"))


def file_fingerprint(path: Path) -> str:
    stat = path.stat()
    return f"{stat.st_size}:{int(stat.st_mtime_ns)}"


def new_landing_files(folder: Path, seen: dict[str, str], now: float, settle_seconds: float) -> list[Path]:
    """Files that are new or changed since the cursor and have not been modified for ``settle_seconds``."""
    fresh = []
    for path in landing_files(folder):
        if now - path.stat().st_mtime < settle_seconds:
            continue
        if seen.get(path.name) != file_fingerprint(path):
            fresh.append(path)
    return fresh


@dg.sensor(
    job=refresh_forecasts_job,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts a refresh when a new (or changed) sales file lands in data/landing (settled for 5 s; hidden files are ignored).",
)
def landing_folder_sensor(context: dg.SensorEvaluationContext):
    folder = Path(os.environ.get("FORECASTING_LANDING", "")) if os.environ.get("FORECASTING_LANDING") else landing_dir()
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    fresh = new_landing_files(folder, seen, time.time(), SETTLE_SECONDS)
    if not fresh:
        return dg.SkipReason(f"no new settled files in {folder}")
    for path in fresh:
        seen[path.name] = file_fingerprint(path)
    names = ", ".join(p.name for p in fresh)
    context.update_cursor(json.dumps(seen, sort_keys=True))
    run_key = "landing:" + ";".join(f"{p.name}@{seen[p.name]}" for p in fresh)
    return dg.RunRequest(run_key=run_key, tags={"trigger": "landing_folder", "files": names[:200]})


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Launches the retrain job when the latest drift_report's drift share reaches the threshold ($FORECASTING_DRIFT_THRESHOLD, default 0.5).",
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext):
    records = context.instance.fetch_materializations(dg.AssetKey("drift_report"), limit=1, ascending=False).records
    if not records or records[0].asset_materialization is None:
        return dg.SkipReason("drift_report has not been materialized yet")
    record = records[0]
    metadata = record.asset_materialization.metadata
    share_value = metadata.get("drift_share")
    if share_value is None:
        return dg.SkipReason("the latest drift_report has no drift_share")
    share = float(share_value.value)
    marker = str(record.storage_id)
    if context.cursor == marker:
        return dg.SkipReason(f"drift_report materialization {marker} already evaluated")
    context.update_cursor(marker)
    if share < DRIFT_THRESHOLD:
        return dg.SkipReason(f"drift share {share:.2f} below the threshold {DRIFT_THRESHOLD:.2f}")
    return dg.RunRequest(
        run_key=f"drift:{marker}",
        tags={"trigger": "drift", "drift_share": f"{share:.3f}", "drift_threshold": f"{DRIFT_THRESHOLD:.3f}"},
    )
