"""Incremental ingest: raw and validated sales extended by the newly landed batches, not redone from scratch.

At M5 size the nightly refresh read, validated and rewrote 59 M rows twice to add one day of 30,490. Once
the raw sales reach ``ForecastSettings.incremental_min_rows`` they are stored as segments (see
``storage/segments.py``): one per landed batch and one per source file, newest first, as ``raw_sales``
always ordered them. The validated sales then extend their stored rows with the validation of the new
batches alone, **only where that gives exactly what validating everything again would**: every new row
dated after every stored row, its ids (and their parents) already known, the stored quarantine free of rows
whose verdict can change (rows dated in the future, minority hierarchy mappings), the same spec, calendar
and date format. Anything else (a late correction of a past day, a new item, a changed source file) is
validated in full, as before; the reason is in the run's metadata.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting_assets.ingest.sources import parse_cache_key, read_parsed, _read_long_file, _read_m5_file
from forecasting_assets.ingest.validation import parse_date_strings, validate_sales
from forecasting_assets.spec import SourceSpec
from forecasting_assets.storage.segments import SegmentedFrame, StoredTable, combine

RAW_COLUMNS_TAIL = ["source_file", "source_row"]
# quarantine checks whose verdict on a stored row can change when rows are added or days pass
UNSTABLE_CHECKS = ("ds_not_in_future", "consistent_hierarchy")


def spec_fingerprint(spec: SourceSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True, default=str).encode()).hexdigest()[:16]


def _numeric(frame: pd.DataFrame) -> bool:
    return all(frame[c].dtype == np.float64 for c in ("y", "price") if c in frame.columns)


def source_segment_keys(folder: Path, spec: SourceSpec) -> list[str]:
    """One key per source file: the parse cache's key (the file, the spec, the parser and the file's version)."""
    return [f"source:{name}:{':'.join(parse_cache_key(folder, name, spec))}" for name in spec.files]


def raw_columns(spec: SourceSpec, has_price: bool) -> list[str]:
    return spec.hierarchy_columns + ["ds", "y"] + (["price"] if has_price else []) + RAW_COLUMNS_TAIL


def raw_sales_segments(
    folder: Path,
    spec: SourceSpec,
    batches: list[tuple[str, pd.DataFrame]],
    stored: StoredTable | None,
    min_rows: int,
) -> SegmentedFrame | None:
    """``raw_sales`` as segments: the landed batches (newest first) then the source files, each stored once.

    ``batches``: (partition key, rows) newest first. ``stored``: the segmented ``raw_sales`` stored before (its
    source segments are reused without reading the source again). None when the table is better stored as one
    frame: fewer than ``min_rows`` rows, or values that are not all numbers (their text is kept, see
    ``concat_raw_sales``), or landed columns the source lacks.
    """
    source_keys = source_segment_keys(folder, spec)
    reuse_source = stored is not None and stored.layout == "concat" and all(stored.segment(k) is not None for k in source_keys)
    if reuse_source:
        columns = stored.state.get("columns", [])
        source_parts: list[tuple[str, pd.DataFrame | None]] = [(k, None) for k in source_keys]
        source_rows = sum(stored.segment(k).rows for k in source_keys)
    else:
        reader = _read_m5_file if spec.format == "m5" else _read_long_file
        frames = [read_parsed(folder, name, spec, reader) for name in spec.files]
        if not all(_numeric(f) for f in frames) or len({tuple(sorted(f.columns)) for f in frames}) != 1:
            return None
        columns = raw_columns(spec, "price" in frames[0].columns)
        source_parts = [(k, f[columns]) for k, f in zip(source_keys, frames)]
        source_rows = sum(len(f) for f in frames)
    if source_rows + sum(len(b) for _, b in batches) < min_rows:
        return None
    batch_parts: list[tuple[str, pd.DataFrame | None]] = []
    for key, rows in batches:
        segment_key = f"landed:{key}"
        if stored is not None and reuse_source and stored.segment(segment_key) is not None:
            batch_parts.append((segment_key, None))
            continue
        if not _numeric(rows) or not set(rows.columns) <= set(columns):
            return None
        aligned = rows.reindex(columns=columns)
        if "price" in columns and "price" not in rows.columns:
            aligned["price"] = np.nan
        batch_parts.append((segment_key, aligned.reset_index(drop=True)))
    return SegmentedFrame(
        layout="concat",
        segments=[*batch_parts, *source_parts],
        stored=stored if reuse_source else None,
        state={"columns": columns, "source_rows": source_rows},
    )


# --------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------


def _calendar_start(calendar: pd.DataFrame | None) -> int | None:
    return None if calendar is None or calendar.empty else int(pd.Timestamp(calendar["ds"].min()).normalize().value)


def _members(valid: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    """The distinct combinations of the hierarchy columns among validated rows, column by column."""
    from forecasting_assets.hierarchy.aggregation import _bottom_attributes

    members = _bottom_attributes(valid, columns) if len(valid) else pd.DataFrame(columns=columns)
    return {c: members[c].astype(str).tolist() for c in columns}


def _date_categories(raw_ds: pd.Series) -> list[str] | None:
    return [str(c) for c in raw_ds.cat.categories] if isinstance(raw_ds.dtype, pd.CategoricalDtype) else None


def _last_date(categories: list[str], used: np.ndarray | None = None) -> tuple[int | None, str | None]:
    """The latest parseable date among date texts (int64 ns) and the format they parse with."""
    parsed, fmt = parse_date_strings(np.asarray(categories, dtype=object))
    values = parsed.asi8 if used is None else parsed.asi8[used]
    values = values[values != np.iinfo(np.int64).min]
    return (int(values.max()) if len(values) else None), fmt


def validation_state(raw: pd.DataFrame, raw_keys: list[str], valid: pd.DataFrame, quarantine: pd.DataFrame, spec: SourceSpec, today: pd.Timestamp, calendar: pd.DataFrame | None) -> dict:
    """What a validation was computed from, kept with its output so the next run can extend it."""
    categories = _date_categories(raw["ds"])
    last = None
    fmt = None
    if categories is not None:
        used = np.unique(raw["ds"].cat.codes.to_numpy())
        last, fmt = _last_date(categories, used[used >= 0])
    return {
        "raw_keys": raw_keys,
        "spec": spec_fingerprint(spec),
        "calendar_start": _calendar_start(calendar),
        "today": int(pd.Timestamp(today).normalize().value),
        "has_price": "price" in raw.columns,
        "ds_categories": categories,
        "last_raw_date": last,
        "date_format": fmt,
        "quarantine_checks": sorted({c for joined in quarantine["check"].dropna().unique() for c in str(joined).split("; ")}) if len(quarantine) else [],
        "members": _members(valid, spec.hierarchy_columns),
        "valid_days": _days(valid),
        "fractional_rows": _fractional_rows(valid),
    }


def _days(valid: pd.DataFrame) -> list[int]:
    return [int(d) for d in np.unique(valid["ds"].to_numpy(dtype="datetime64[ns]").view(np.int64))] if len(valid) else []


def _fractional_rows(valid: pd.DataFrame) -> int:
    from forecasting_assets.ingest.validation import fractional_sales_rows

    return fractional_sales_rows(valid) if len(valid) else 0


def table_facts(state: dict, calendar: pd.DataFrame | None) -> dict:
    """first_date, last_date, days_after_calendar and fractional_sales_rows of a segmented validation."""
    days = pd.DatetimeIndex(np.asarray(state.get("valid_days", []), dtype=np.int64).view("datetime64[ns]"))
    after = 0 if calendar is None or calendar.empty or not len(days) else int((days > calendar["ds"].max()).sum())
    facts: dict = {"days_after_calendar": after, "fractional_sales_rows": int(state.get("fractional_rows", 0))}
    if len(days):
        facts.update({"first_date": str(days.min().date()), "last_date": str(days.max().date())})
    return facts


def full_validation_segments(raw: pd.DataFrame, raw_keys: list[str], spec: SourceSpec, today: pd.Timestamp, calendar: pd.DataFrame | None) -> tuple[SegmentedFrame, SegmentedFrame, pd.DataFrame, pd.DataFrame]:
    """Validate every raw row and store the result as one segment each, with the state to extend it later."""
    valid, quarantine = validate_sales(raw, spec, today=today, calendar=calendar)
    state = validation_state(raw, raw_keys, valid, quarantine, spec, today, calendar)
    key = "validated:" + hashlib.sha256("|".join(raw_keys).encode()).hexdigest()[:16]
    valid_table = SegmentedFrame("series_major", [(key, valid)], series_columns=spec.hierarchy_columns, state=state)
    quarantine_table = SegmentedFrame("concat", [(key, quarantine)], state={"raw_keys": raw_keys})
    return valid_table, quarantine_table, valid, quarantine


def why_not_extend(raw: StoredTable, valid: StoredTable | None, quarantine: StoredTable | None, spec: SourceSpec, today: pd.Timestamp, calendar: pd.DataFrame | None) -> str | None:
    """Why the stored validation cannot be extended by the new raw segments (None: it can be)."""
    if valid is None or quarantine is None:
        return "no segmented validation stored yet"
    state = valid.state
    done = state.get("raw_keys", [])
    if quarantine.state.get("raw_keys") != done:
        return "the stored quarantine is from another run than the stored validated sales"
    if len(raw.keys) < len(done) or raw.keys[len(raw.keys) - len(done):] != done:
        return "the stored raw segments changed (a source file or a landed batch was replaced)"
    checks = {
        "the spec changed": state.get("spec") != spec_fingerprint(spec),
        "the calendar's first day changed": state.get("calendar_start") != _calendar_start(calendar),
        "today is before the day of the stored validation": int(pd.Timestamp(today).normalize().value) < int(state.get("today", 0)),
        "the stored quarantine holds rows whose verdict can change": bool(set(state.get("quarantine_checks", [])) & set(UNSTABLE_CHECKS)),
        "the stored raw dates are not text": state.get("ds_categories") is None,
    }
    return next((reason for reason, failed in checks.items() if failed), None)


def extend_validation(raw: StoredTable, valid: StoredTable, quarantine: StoredTable, spec: SourceSpec, today: pd.Timestamp, calendar: pd.DataFrame | None) -> tuple[SegmentedFrame, SegmentedFrame, pd.DataFrame, pd.DataFrame] | str:
    """The stored validation extended by the validation of the new raw segments alone, or the reason it
    would differ from validating every row again (then the caller validates in full)."""
    reason = why_not_extend(raw, valid, quarantine, spec, today, calendar)
    if reason:
        return reason
    state = valid.state
    new_keys = raw.keys[: len(raw.keys) - len(state["raw_keys"])]
    if not new_keys:
        return "no new raw rows"  # nothing to extend (validated in full: e.g. the validation was asked for again)
    new_raw = combine("concat", [raw.read_segment(k) for k in new_keys])
    if ("price" in new_raw.columns) != state["has_price"]:
        return "the new rows have a price column the stored ones have not (or the reverse)"
    if not isinstance(new_raw["ds"].dtype, pd.CategoricalDtype):
        return "the new rows' dates are not text"
    # the date format is detected over every date text; it must be the stored one
    union = sorted(set(state["ds_categories"]) | {str(c) for c in new_raw["ds"].cat.categories})
    _, fmt = _last_date(union)
    if fmt != state["date_format"]:
        return f"the date format over all rows would be {fmt!r}, not the stored {state['date_format']!r}"
    new_categories = pd.Index(new_raw["ds"].cat.categories.astype(str))
    used = np.unique(new_raw["ds"].cat.codes.to_numpy())
    parsed = pd.to_datetime(pd.Series(new_categories[used[used >= 0]]).str.strip(), format=fmt, errors="coerce") if fmt else pd.Series([], dtype="datetime64[ns]")
    stamps = parsed.dropna().astype("datetime64[ns]").astype(np.int64).to_numpy()
    if state["last_raw_date"] is not None and len(stamps) and int(stamps.min()) <= int(state["last_raw_date"]):
        return "new rows are dated on or before a stored day (a correction): duplicates must be resolved across all rows"
    columns = spec.hierarchy_columns
    known = pd.MultiIndex.from_arrays([state["members"][c] for c in columns]) if columns else None
    if columns:
        ids = new_raw[columns].astype(object)
        if ids.isna().any().any():
            return "new rows with a missing id"
        combos = pd.MultiIndex.from_frame(ids.astype(str))
        if not combos.isin(known).all():
            return "new rows name a series (or a parent of one) the stored rows do not"
    new_valid, new_quarantine = validate_sales(new_raw, spec, today=today, calendar=calendar)
    raw_keys = raw.keys
    next_state = {**state, "raw_keys": raw_keys, "today": int(pd.Timestamp(today).normalize().value), "ds_categories": union,
                  "last_raw_date": int(stamps.max()) if len(stamps) else state["last_raw_date"],
                  "valid_days": sorted(set(state.get("valid_days", [])) | set(_days(new_valid))),
                  "fractional_rows": int(state.get("fractional_rows", 0)) + _fractional_rows(new_valid),
                  "quarantine_checks": sorted(set(state["quarantine_checks"]) | {c for joined in new_quarantine["check"].dropna().unique() for c in str(joined).split("; ")})}
    key = "validated:" + hashlib.sha256("|".join(new_keys).encode()).hexdigest()[:16]
    valid_parts = ([(key, new_valid)] if len(new_valid) else [])
    quarantine_parts = ([(key, new_quarantine)] if len(new_quarantine) else [])
    return (
        SegmentedFrame("series_major", [(k, None) for k in valid.keys] + valid_parts, stored=valid, series_columns=valid.series_columns, state=next_state),
        SegmentedFrame("concat", quarantine_parts + [(k, None) for k in quarantine.keys], stored=quarantine, state={"raw_keys": raw_keys}),
        new_valid,
        new_quarantine,
    )
