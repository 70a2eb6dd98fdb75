"""The nightly refresh at 02:00 (timezone from $FORECASTING_TIMEZONE, default UTC)."""


import os

import dagster as dg

from forecasting_assets.automation.jobs import refresh_forecasts_job

nightly_refresh_schedule = dg.ScheduleDefinition(
    name="nightly_refresh_schedule",
    job=refresh_forecasts_job,
    cron_schedule="0 2 * * *",
    execution_timezone=os.environ.get("FORECASTING_TIMEZONE", "UTC"),
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every night at 02:00: ingest the latest sales and refresh forecasts with the current model.",
)
