"""Ingest: read the source folder (and the landing folder), validate, quarantine bad rows."""


from dataclasses import replace
from pathlib import Path

import dagster as dg
import pandas as pd

from forecasting_assets.ingest.sources import concat_raw_sales, load_source_spec, read_calendar, read_raw_sales
from forecasting_assets.ingest.validation import validate_sales
from forecasting_assets.metadata import frame_metadata, table_preview
from forecasting_assets.resources import SalesSource
from forecasting_assets.spec import SourceSpec

LANDING_SUFFIXES = (".csv", ".csv.gz", ".parquet")


def landing_files(folder: Path) -> list[Path]:
    """Complete sales files in the landing folder (hidden and ``.tmp`` files are still being written)."""
    if not folder.exists():
        return []
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.name.endswith(LANDING_SUFFIXES)
    )


def read_landing(folder: Path, spec: SourceSpec) -> pd.DataFrame | None:
    """Landing files are long-format rows with the source's column names (``date``/``sales`` for M5)."""
    files = landing_files(folder)
    if not files:
        return None
    landing_spec = replace(
        spec,
        format="long",
        files=[p.name for p in files],
        date_column=spec.date_column if spec.format == "long" else "date",
        target_column=spec.target_column if spec.format == "long" else "sales",
        price_column=spec.price_column if spec.format == "long" else None,
    )
    return read_raw_sales(folder, landing_spec)


@dg.multi_asset(
    outs={
        "raw_sales": dg.AssetOut(description="Bottom-level sales rows as read (long; values unparsed).", group_name="ingest"),
        "source_spec": dg.AssetOut(description="The source's format, frequency, levels, season length and horizon (read or inferred).", group_name="ingest"),
        "sales_calendar": dg.AssetOut(description="Calendar: events and SNAP flags per day, including known future days.", group_name="ingest"),
    },
)
def raw_sales(context: dg.AssetExecutionContext, source: SalesSource):
    folder = source.folder_path()
    spec = load_source_spec(folder)
    rows = read_raw_sales(folder, spec)
    landing = read_landing(source.landing_path(), spec)
    if landing is not None:
        rows = concat_raw_sales([rows, landing])
    calendar = read_calendar(folder, spec)
    if calendar is None:
        calendar = pd.DataFrame({"ds": pd.Series(dtype="datetime64[ns]")})
    yield dg.Output(
        rows,
        output_name="raw_sales",
        metadata={
            "source_folder": dg.MetadataValue.path(str(folder)),
            "files": ", ".join(spec.files),
            "landing_rows": 0 if landing is None else len(landing),
            **frame_metadata(rows),
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
        "validated_sales": dg.AssetOut(description="Typed, checked bottom-level sales (pandera schema).", group_name="ingest"),
        "sales_quarantine": dg.AssetOut(description="Rows that failed validation, with the failed check and the reason.", group_name="ingest"),
    },
    ins={"raw_sales": dg.AssetIn(), "source_spec": dg.AssetIn()},
)
def validated_sales(context: dg.AssetExecutionContext, raw_sales: pd.DataFrame, source_spec: dict):
    spec = SourceSpec.from_dict(source_spec)
    valid, quarantine = validate_sales(raw_sales, spec)
    reasons = quarantine.groupby("check").size().to_dict() if len(quarantine) else {}
    yield dg.Output(valid, output_name="validated_sales", metadata={**frame_metadata(valid), "quarantined_rows": len(quarantine)})
    yield dg.Output(
        quarantine,
        output_name="sales_quarantine",
        metadata={
            "dagster/row_count": len(quarantine),
            "rows_by_check": dg.MetadataValue.json(reasons),
            "examples": table_preview(quarantine, 10),
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
