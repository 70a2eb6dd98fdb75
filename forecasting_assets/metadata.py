"""Metadata helpers shared by the assets: row counts, date ranges, previews and inline plots."""

from __future__ import annotations

import base64

import dagster as dg
import pandas as pd


def frame_metadata(frame: pd.DataFrame) -> dict:
    meta: dict = {"dagster/row_count": len(frame)}
    if "unique_id" in frame.columns:
        meta["series"] = int(frame["unique_id"].nunique())
    if "ds" in frame.columns and len(frame) and pd.api.types.is_datetime64_any_dtype(frame["ds"]):
        meta["first_date"] = str(frame["ds"].min().date())
        meta["last_date"] = str(frame["ds"].max().date())
    return meta


def table_preview(frame: pd.DataFrame, rows: int = 10) -> dg.MetadataValue:
    if frame.empty:
        return dg.MetadataValue.md("_(empty)_")
    return dg.MetadataValue.md(frame.head(rows).to_markdown(index=False))


def png_markdown(png: bytes, title: str) -> dg.MetadataValue:
    """A PNG shown inline in the Dagster UI."""
    encoded = base64.b64encode(png).decode()
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")
