"""Sensors: new landing files, drift or live error → retrain, run failures → alert, declarative automation."""


import json
import os
import dagster as dg

from forecasting_assets.automation.alerts import send_alert
from forecasting_assets.automation.jobs import landing_ingest_job, retrain_job
from forecasting_assets.ingest.assets import landing_batches
from forecasting_assets.resources import AutomationSettings, SalesSource

# a file modified more recently than this is assumed to be still being written
SETTLE_SECONDS = float(os.environ.get("FORECASTING_LANDING_SETTLE_SECONDS", "5"))
SENSOR_INTERVAL_S = int(os.environ.get("FORECASTING_SENSOR_INTERVAL_SECONDS", "30"))


@dg.sensor(
    job=landing_ingest_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Takes in each new sales file in the landing folder exactly once: settled files (untouched for 5 s; "
        "hidden/.tmp/.part names ignored) are archived by content hash, or rejected with a reason file; each "
        "accepted file becomes a landed_sales partition and one run. Ingest and aggregation follow on their own."
    ),
)
def landing_folder_sensor(context: dg.SensorEvaluationContext, source: SalesSource):
    from forecasting_assets.automation.decisions import record_decision
    from forecasting_assets.ingest.landing import UNUSUALLY_LARGE, read_manifest, scan_landing, source_spec_for_landing
    from forecasting_assets.ingest.sources import SourceError

    folder = source.landing_path()
    try:
        spec = source_spec_for_landing(source.folder_path())
    except (SourceError, OSError) as error:
        return dg.SkipReason(f"cannot read the source folder, landing files wait: {error}")
    scan = scan_landing(folder, spec, SETTLE_SECONDS)
    for batch in scan.accepted:
        notes = f" ({batch.notes})" if batch.notes else ""
        record_decision("landing_folder_sensor", "accepted", f"{batch.original_name}: {batch.rows} rows, {batch.first_day}..{batch.last_day}{notes}", batch.to_dict())
        if UNUSUALLY_LARGE in batch.notes:
            send_alert("landing_unusual", f"landing file {batch.original_name} accepted but {batch.notes}", batch.to_dict())
    for name, reason in scan.rejected:
        record_decision("landing_folder_sensor", "rejected", reason, {"file": name, "folder": str(folder / "rejected")})
        send_alert("landing_rejected", f"landing file {name} rejected: {reason}", {"file": name})
    # every accepted batch not yet requested (also ones archived by a tick that crashed before returning)
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    pending = [b for b in read_manifest(folder) if b.key not in requested]
    if not pending:
        waiting = f"; still being written: {', '.join(scan.waiting)}" if scan.waiting else ""
        return dg.SkipReason(f"no new files in {folder}{waiting}")
    keys = [b.key for b in pending]
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(run_key=f"landing:{b.key}", partition_key=b.key, tags={"trigger": "landing_folder", "file": b.original_name[:200]})
            for b in pending
        ],
        dynamic_partitions_requests=[landing_batches.build_add_request(keys)],
        cursor=json.dumps(sorted(requested | set(keys))),
    )


def _latest(context: dg.SensorEvaluationContext, asset: str, key: str) -> tuple[int | None, float | None]:
    """(storage id, metadata value) of the latest materialization of ``asset``."""
    records = context.instance.fetch_materializations(dg.AssetKey(asset), limit=1, ascending=False).records
    if not records or records[0].asset_materialization is None:
        return None, None
    value = records[0].asset_materialization.metadata.get(key)
    return records[0].storage_id, (float(value.value) if value is not None else None)


@dg.sensor(
    job=retrain_job,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description=(
        "Launches retrain_job when the latest drift_report's drift share or live_forecast_error's recent "
        "WRMSSE reaches its threshold (AutomationSettings); every evaluation is logged in automation_decisions."
    ),
)
def drift_retrain_sensor(context: dg.SensorEvaluationContext, automation: AutomationSettings):
    from forecasting_assets.automation.decisions import record_decision

    drift_id, drift_share = _latest(context, "drift_report", "drift_share")
    error_id, recent_wrmsse = _latest(context, "live_forecast_error", "recent_wrmsse")
    if drift_id is None and error_id is None:
        return dg.SkipReason("neither drift_report nor live_forecast_error has been materialized yet")
    marker = f"{drift_id}:{error_id}"
    if context.cursor == marker:
        return dg.SkipReason(f"materializations {marker} already evaluated")
    context.update_cursor(marker)
    reasons = automation.retrain_reasons(drift_share, recent_wrmsse)
    details = {
        "drift_share": drift_share,
        "drift_threshold": automation.drift_threshold,
        "recent_wrmsse": recent_wrmsse,
        "error_threshold": automation.error_threshold,
        "evaluated": marker,
    }
    if not reasons:
        record_decision("drift_retrain_sensor", "no_retrain", "below both thresholds", details)
        return dg.SkipReason(f"no retrain: drift share {drift_share}, recent WRMSSE {recent_wrmsse} below the thresholds")
    reason = "; ".join(reasons)
    record_decision("drift_retrain_sensor", "retrain_launched", reason, details)
    send_alert("retrain", f"retrain launched: {reason}", details)
    tags = {"trigger": "drift_or_error", "reason": reason[:200], **{k: f"{v}" for k, v in details.items() if k != "evaluated"}}
    return dg.RunRequest(run_key=f"retrain:{marker}", run_config=automation.retrain_run_config(), tags=tags)


@dg.run_failure_sensor(
    name="run_failure_alert_sensor",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    description="Posts every failed run (job, run id, the error) to the webhook ($FORECASTING_WEBHOOK_URL; off when unset).",
)
def run_failure_alert_sensor(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    error = context.failure_event.message if context.failure_event else "unknown error"
    send_alert("run_failure", f"run {run.run_id[:8]} of {run.job_name} failed: {error}"[:500], {"job": run.job_name, "run_id": run.run_id, "tags": dict(run.tags)})


# evaluates the AutomationConditions (ingest, aggregation, drift and live error follow new data)
automation_condition_sensor = dg.AutomationConditionSensorDefinition(
    "automation_condition_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=SENSOR_INTERVAL_S,
    description="Materializes ingest, aggregation, drift_report and live_forecast_error when new data lands.",
)
