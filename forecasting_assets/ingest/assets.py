"""Ingest: read the source folder and the landed batches, validate, quarantine bad rows."""


import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import dagster as dg
import numpy as np
import pandas as pd

from forecasting_assets.ingest.incremental import extend_validation, full_validation_segments, raw_columns, raw_sales_segments, table_facts
from forecasting_assets.ingest.landing import ARCHIVE, find_batch, read_landing_file, read_manifest, source_spec_for_landing
from forecasting_assets.ingest.sources import SourceError, concat_raw_sales, load_source_spec, read_calendar, read_raw_sales
from forecasting_assets.ingest.validation import days_after_calendar, fractional_sales_rows, validate_sales
from forecasting_assets.metadata import frame_metadata, table_preview
from forecasting_assets.resources import ForecastSettings, SalesSource
from forecasting_assets.storage.io_manager import WarehouseIOManager
from forecasting_assets.storage.segments import SegmentedFrame, StoredTable
from forecasting_assets.spec import SourceSpec

# one partition per accepted landing file (see ingest/landing.py); added by the landing-folder sensor
landing_batches = dg.DynamicPartitionsDefinition(name="landing_batches")

# file reads and MLflow calls can fail transiently (NFS hiccup, a locked SQLite store): retry, with backoff
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=2, delay=5, backoff=dg.Backoff.EXPONENTIAL)

# the latest sales are expected every night: stale after 26 hours (shown as asset health in the UI)
NIGHTLY_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=26), warn_window=timedelta(hours=25))

# ingest and aggregation follow new landed batches on their own (the automation-condition sensor)
FOLLOWS_NEW_DATA = dg.AutomationCondition.eager()


@contextmanager
def bad_input_fails_at_once(what: str) -> Iterator[None]:
    """A ``SourceError`` (bad input) is not transient: fail the step at once, past TRANSIENT_RETRY; the stored
    outputs stay as they were."""
    try:
        yield
    except SourceError as error:
        raise dg.Failure(description=f"{what}: {error}", allow_retries=False) from error


@dg.asset(
    partitions_def=landing_batches,
    group_name="ingest",
    retry_policy=TRANSIENT_RETRY,
    description=(
        "One accepted landing file per partition (key: first day_last day_hash), read from "
        "data/landing/archive in the raw-sales contract. Partitions are added by landing_folder_sensor."
    ),
)
def landed_sales(context: dg.AssetExecutionContext, source: SalesSource) -> pd.DataFrame:
    folder = source.landing_path()
    spec = source_spec_for_landing(source.folder_path())
    batch = find_batch(folder, context.partition_key)
    with bad_input_fails_at_once(f"Cannot read the landed file {batch.archived_name}"):
        rows = read_landing_file(folder / ARCHIVE, batch.archived_name, spec)
    context.add_output_metadata(
        {
            "dagster/row_count": len(rows),
            "file": dg.MetadataValue.path(str(folder / ARCHIVE / batch.archived_name)),
            "first_day": batch.first_day,
            "last_day": batch.last_day,
            "notes": batch.notes or "none",
        }
    )
    return rows


def local_today() -> pd.Timestamp:
    """Today's date where the sales happen ($FORECASTING_TIMEZONE, default UTC), as a naive day."""
    return pd.Timestamp.now(tz=os.environ.get("FORECASTING_TIMEZONE", "UTC")).tz_localize(None).normalize()


def newest_first_keys(batches: dict[str, pd.DataFrame], order: list[str]) -> list[str]:
    """Landed batch keys from the most recently accepted to the oldest (validation keeps the first of
    duplicate keys, so a later file supersedes earlier rows; the superseded rows are quarantined)."""
    rank = {key: i for i, key in enumerate(order)}
    return sorted(batches, key=lambda k: rank.get(k, -1), reverse=True)


def newest_first(batches: dict[str, pd.DataFrame], order: list[str]) -> list[pd.DataFrame]:
    """The landed batches in the order of :func:`newest_first_keys`."""
    return [batches[k] for k in newest_first_keys(batches, order)]


@dg.multi_asset(
    outs={
        "raw_sales": dg.AssetOut(description="Bottom-level sales rows as read from the source folder and every landed batch (long; values unparsed; newest batch first). A large history is stored as one segment per source file and landed batch (metadata: stored_as).", group_name="ingest", automation_condition=FOLLOWS_NEW_DATA),
        "source_spec": dg.AssetOut(description="The source's format, frequency, levels, season length and horizon (read or inferred).", group_name="ingest", automation_condition=FOLLOWS_NEW_DATA),
        "sales_calendar": dg.AssetOut(description="Calendar: events and SNAP flags per day, including known future days.", group_name="ingest", automation_condition=FOLLOWS_NEW_DATA),
    },
    ins={"landed_sales": dg.AssetIn(partition_mapping=dg.AllPartitionMapping())},
    retry_policy=TRANSIENT_RETRY,
)
def raw_sales(context: dg.AssetExecutionContext, source: SalesSource, settings: ForecastSettings, io_manager: dg.ResourceParam[WarehouseIOManager], landed_sales: dict[str, pd.DataFrame]):
    folder = source.folder_path()
    accepted = [b.key for b in read_manifest(source.landing_path())]
    batch_keys = newest_first_keys(landed_sales or {}, accepted)
    with bad_input_fails_at_once("Cannot read the source folder"):
        spec = load_source_spec(folder)
        # a large history is stored as segments: the source files' segments are kept, each new batch added
        rows = raw_sales_segments(folder, spec, [(k, landed_sales[k]) for k in batch_keys], io_manager.stored_table("raw_sales"), settings.incremental_min_rows)
        if rows is None:
            base_rows = read_raw_sales(folder, spec, cached=True)
            rows = concat_raw_sales([*(landed_sales[k] for k in batch_keys), base_rows])
            rows = rows[[c for c in raw_columns(spec, "price" in rows.columns) if c in rows.columns]]  # the contract's order
            landing_rows = len(rows) - len(base_rows)
            shape = frame_metadata(rows)
        else:
            landing_rows = rows.rows - rows.state["source_rows"]
            shape = {"dagster/row_count": rows.rows, "new_rows_written": rows.new_rows}
    pending = [k for k in accepted if k not in (landed_sales or {})]
    calendar = read_calendar(folder, spec)
    if calendar is None:
        calendar = pd.DataFrame({"ds": pd.Series(dtype="datetime64[ns]")})
    yield dg.Output(
        rows,
        output_name="raw_sales",
        metadata={
            "source_folder": dg.MetadataValue.path(str(folder)),
            "files": ", ".join(spec.files),
            "landing_batches": len(batch_keys),
            "landing_rows": landing_rows,
            "landing_batches_not_yet_materialized": ", ".join(pending) or "none",
            "stored_as": "segments (one per source file and landed batch)" if isinstance(rows, SegmentedFrame) else "one file",
            **shape,
        },
    )
    yield dg.Output(
        spec.to_dict(),
        output_name="source_spec",
        metadata={
            "format": spec.format,
            "frequency": spec.frequency,
            "season_length": spec.season_length,
            "horizon": spec.horizon,
            "levels": dg.MetadataValue.json(spec.levels),
            "inferred": ", ".join(spec.inferred) or "nothing (all from source.yaml)",
        },
    )
    yield dg.Output(calendar, output_name="sales_calendar", metadata=frame_metadata(calendar))


@dg.multi_asset(
    outs={
        "validated_sales": dg.AssetOut(description="Typed, checked bottom-level sales (pandera schema). A large history is stored as segments and a new batch is validated and appended alone where that equals validating everything again (metadata: validated).", group_name="ingest", automation_condition=FOLLOWS_NEW_DATA, freshness_policy=NIGHTLY_FRESHNESS),
        "sales_quarantine": dg.AssetOut(description="Rows that failed validation, with the failed check and the reason.", group_name="ingest", automation_condition=FOLLOWS_NEW_DATA),
    },
    # a segmented raw_sales arrives as its stored table: only the new batches' rows are read when they extend
    # the stored validation (see ingest/incremental.py)
    ins={"raw_sales": dg.AssetIn(metadata={"lazy": True}, dagster_type=dg.Any), "source_spec": dg.AssetIn(), "sales_calendar": dg.AssetIn()},
)
def validated_sales(context: dg.AssetExecutionContext, io_manager: dg.ResourceParam[WarehouseIOManager], raw_sales: pd.DataFrame | StoredTable, source_spec: dict, sales_calendar: pd.DataFrame):
    spec = SourceSpec.from_dict(source_spec)
    calendar = sales_calendar if len(sales_calendar) else None
    today = local_today()
    if isinstance(raw_sales, StoredTable):
        extended = extend_validation(raw_sales, io_manager.stored_table("validated_sales"), io_manager.stored_table("sales_quarantine"), spec, today, calendar)
        if isinstance(extended, str):
            context.log.info(f"validating every raw row: {extended}")
            valid_out, quarantine_out, valid, quarantine = full_validation_segments(raw_sales.read(), raw_sales.keys, spec, today, calendar)
            mode = f"in full ({extended})"
        else:
            valid_out, quarantine_out, valid, quarantine = extended
            mode = f"incremental: {len(valid) + len(quarantine)} new raw rows validated, {valid_out.rows - len(valid)} stored rows kept"
        quarantine_all = quarantine_out.frame() if quarantine_out.rows <= 100_000 else quarantine
        facts = {"dagster/row_count": valid_out.rows, **table_facts(valid_out.state, calendar)}
    else:
        valid_out, quarantine_out = validate_sales(raw_sales, spec, today=today, calendar=calendar)
        quarantine_all, mode = quarantine_out, "in full"
        facts = {**frame_metadata(valid_out), "days_after_calendar": days_after_calendar(valid_out, calendar), "fractional_sales_rows": fractional_sales_rows(valid_out)}
    quarantined_rows = quarantine_out.rows if isinstance(quarantine_out, SegmentedFrame) else len(quarantine_out)
    reasons = quarantine_all.groupby("check").size().to_dict() if len(quarantine_all) else {}
    after_calendar = facts["days_after_calendar"]
    if after_calendar:
        context.log.warning(
            f"{after_calendar} sales day(s) after the calendar's last day: their event/SNAP features read as 0; "
            "extend the calendar file"
        )
    yield dg.Output(
        valid_out,
        output_name="validated_sales",
        metadata={**facts, "quarantined_rows": quarantined_rows, "validated": mode},
    )
    yield dg.Output(
        quarantine_out,
        output_name="sales_quarantine",
        metadata={
            "dagster/row_count": quarantined_rows,
            "rows_by_check": dg.MetadataValue.json(reasons),
            "examples": table_preview(quarantine_all, 10),
        },
    )


@dg.asset_check(asset="sales_quarantine", description="Warns when validation quarantined rows (see the reasons in the table).")
def quarantine_is_empty(sales_quarantine: pd.DataFrame) -> dg.AssetCheckResult:
    count = len(sales_quarantine)
    by_check = sales_quarantine.groupby("check").size().to_dict() if count else {}
    return dg.AssetCheckResult(
        passed=count == 0,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"quarantined_rows": count, "rows_by_check": dg.MetadataValue.json(by_check)},
    )


def latest_day_coverage(validated_sales: pd.DataFrame, id_columns: list[str], lookback: int = 7) -> tuple[float, dict]:
    """Bottom series with a row on the latest day, relative to the mean of the ``lookback`` days before."""
    dates = np.sort(validated_sales["ds"].unique())
    recent = validated_sales[validated_sales["ds"] >= dates[-min(len(dates), lookback + 1)]] if len(dates) else validated_sales
    keys = (
        recent.groupby(id_columns, sort=False, observed=True, dropna=False).ngroup()
        if id_columns
        else pd.Series(0, index=recent.index)
    )
    per_day = keys.groupby(recent["ds"]).nunique().sort_index()
    if len(per_day) < 2:
        return 1.0, {"latest_day": str(per_day.index.max().date()) if len(per_day) else "none"}
    latest = per_day.iloc[-1]
    before = per_day.iloc[-1 - lookback:-1].mean()
    coverage = float(latest / before) if before else 1.0
    return coverage, {"latest_day": str(per_day.index[-1].date()), "series_on_latest_day": int(latest), "mean_series_per_day_before": round(float(before), 1)}


@dg.asset_check(
    asset="validated_sales",
    additional_ins={"source_spec": dg.AssetIn()},
    blocking=True,
    description=(
        "The latest day is complete: at least 80 % as many bottom series have a row on it as on the week "
        "before (a store's missing file would otherwise read as zero sales and bend every total)."
    ),
)
def latest_day_is_complete(validated_sales: pd.DataFrame, source_spec: dict) -> dg.AssetCheckResult:
    spec = SourceSpec.from_dict(source_spec)
    coverage, facts = latest_day_coverage(validated_sales, [c for c in spec.hierarchy_columns if c in validated_sales.columns])
    return dg.AssetCheckResult(passed=coverage >= 0.8, metadata={"coverage": round(coverage, 3), **facts})
