"""Hierarchy: every level's series, the summing structure and the series keys."""


import dagster as dg
import pandas as pd

from forecasting_assets.hierarchy.aggregation import build_hierarchy
from forecasting_assets.hierarchy.incremental import extend_stored_hierarchy, full_hierarchy_segments
from forecasting_assets.ingest.assets import FOLLOWS_NEW_DATA
from forecasting_assets.metadata import frame_metadata
from forecasting_assets.spec import SourceSpec
from forecasting_assets.storage.io_manager import WarehouseIOManager
from forecasting_assets.storage.segments import StoredTable


@dg.multi_asset(
    outs={
        "hierarchical_series": dg.AssetOut(description="unique_id, ds, y for every series of every level (hierarchicalforecast aggregate). A large history is stored as segments; new days are added with the stored summing structure (metadata: aggregated).", group_name="hierarchy", automation_condition=FOLLOWS_NEW_DATA),
        "hierarchy_structure": dg.AssetOut(description="The summing matrix S as pairs (unique_id, bottom_id).", group_name="hierarchy", automation_condition=FOLLOWS_NEW_DATA),
        "series_keys": dg.AssetOut(description="One row per series: unique_id, level, level_order and its hierarchy column values.", group_name="hierarchy", automation_condition=FOLLOWS_NEW_DATA),
    },
    # a segmented validated_sales arrives as its stored table: only its new segments are read when they extend
    # the stored hierarchy (see hierarchy/incremental.py)
    ins={"validated_sales": dg.AssetIn(metadata={"lazy": True}, dagster_type=dg.Any), "source_spec": dg.AssetIn()},
)
def hierarchical_series(context: dg.AssetExecutionContext, io_manager: dg.ResourceParam[WarehouseIOManager], validated_sales: pd.DataFrame | StoredTable, source_spec: dict):
    spec = SourceSpec.from_dict(source_spec)
    extended: tuple | str = "validated_sales is stored as one file"
    if isinstance(validated_sales, StoredTable):
        stored = io_manager.stored_table("hierarchical_series")
        stored_structure, stored_keys = (io_manager.load_asset(a) if stored is not None else None for a in ("hierarchy_structure", "series_keys"))
        extended = extend_stored_hierarchy(validated_sales, stored, stored_structure, stored_keys, spec)
    if isinstance(extended, tuple):
        series, _ = extended
        structure, series_keys = stored_structure, stored_keys
        filled_gaps, mode = series.state["filled_gaps"], f"incremental: {series.new_rows} new rows, {series.rows - series.new_rows} stored rows kept"
        shape = {"dagster/row_count": series.rows, "series": len(series_keys), "last_date": str(pd.Timestamp(series.state["last_date"]).date())}
    else:
        if isinstance(validated_sales, StoredTable):
            context.log.info(f"aggregating every validated row: {extended}")
            series, hierarchy = full_hierarchy_segments(validated_sales, spec)
            mode = f"in full ({extended})"
        else:
            hierarchy = build_hierarchy(validated_sales, spec.levels, spec.frequency)
            series, mode = hierarchy.series, "in full"
        structure, series_keys, filled_gaps = hierarchy.structure, hierarchy.series_keys, hierarchy.filled_gaps
        shape = frame_metadata(hierarchy.series, n_series=len(series_keys))  # every series has a row per day
    per_level = series_keys.groupby("level", sort=False).size()
    yield dg.Output(
        series,
        output_name="hierarchical_series",
        metadata={
            **shape,
            "levels": len(per_level),
            "series_per_level": dg.MetadataValue.md(per_level.rename("series").to_frame().to_markdown()),
            "filled_gaps": filled_gaps,
            "aggregated": mode,
        },
    )
    yield dg.Output(structure, output_name="hierarchy_structure", metadata={"dagster/row_count": len(structure), "bottom_series": int(structure["bottom_id"].nunique())})
    yield dg.Output(series_keys, output_name="series_keys", metadata={"dagster/row_count": len(series_keys)})
