"""Hierarchy: every level's series, the summing structure and the series keys."""


import dagster as dg
import pandas as pd

from forecasting_assets.hierarchy.aggregation import build_hierarchy
from forecasting_assets.ingest.assets import FOLLOWS_NEW_DATA
from forecasting_assets.metadata import frame_metadata
from forecasting_assets.spec import SourceSpec


@dg.multi_asset(
    outs={
        "hierarchical_series": dg.AssetOut(description="unique_id, ds, y for every series of every level (hierarchicalforecast aggregate).", group_name="hierarchy", automation_condition=FOLLOWS_NEW_DATA),
        "hierarchy_structure": dg.AssetOut(description="The summing matrix S as pairs (unique_id, bottom_id).", group_name="hierarchy", automation_condition=FOLLOWS_NEW_DATA),
        "series_keys": dg.AssetOut(description="One row per series: unique_id, level, level_order and its hierarchy column values.", group_name="hierarchy", automation_condition=FOLLOWS_NEW_DATA),
    },
    ins={"validated_sales": dg.AssetIn(), "source_spec": dg.AssetIn()},
)
def hierarchical_series(context: dg.AssetExecutionContext, validated_sales: pd.DataFrame, source_spec: dict):
    spec = SourceSpec.from_dict(source_spec)
    hierarchy = build_hierarchy(validated_sales, spec.levels, spec.frequency)
    per_level = hierarchy.series_keys.groupby("level", sort=False).size()
    yield dg.Output(
        hierarchy.series,
        output_name="hierarchical_series",
        metadata={
            **frame_metadata(hierarchy.series, n_series=len(hierarchy.series_keys)),  # every series has a row per day
            "levels": len(per_level),
            "series_per_level": dg.MetadataValue.md(per_level.rename("series").to_frame().to_markdown()),
            "filled_gaps": hierarchy.filled_gaps,
        },
    )
    yield dg.Output(hierarchy.structure, output_name="hierarchy_structure", metadata={"dagster/row_count": len(hierarchy.structure), "bottom_series": len(hierarchy.bottom_ids)})
    yield dg.Output(hierarchy.series_keys, output_name="series_keys", metadata={"dagster/row_count": len(hierarchy.series_keys)})
