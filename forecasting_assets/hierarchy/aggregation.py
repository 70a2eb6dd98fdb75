"""Build every level's series from the bottom sales with hierarchicalforecast's ``aggregate``.

Series ids: ``Total`` for the grand total, otherwise the level's values joined by ``/`` in the level's
column order (``CA``, ``CA_1/FOODS_1``). The bottom level keeps only its own columns in its id even
though ``aggregate`` needs every hierarchy column there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from forecasting_assets.spec import TOTAL_ID, level_name

_TOTAL_COL = "_total"


@dataclass
class Hierarchy:
    """Every series of every level plus the structure that links them."""

    series: pd.DataFrame  # unique_id, ds, y  (every level)
    structure: pd.DataFrame  # unique_id, bottom_id: one row per non-zero of the summing matrix S
    series_keys: pd.DataFrame  # unique_id, level, level_order, <hierarchy column values or null>
    filled_gaps: int  # bottom periods that were missing and filled with 0

    @property
    def tags(self) -> dict[str, np.ndarray]:
        return tags_from_keys(self.series_keys)

    @property
    def bottom_ids(self) -> list[str]:
        return list(self.structure["bottom_id"].drop_duplicates())


def tags_from_keys(series_keys: pd.DataFrame) -> dict[str, np.ndarray]:
    """hierarchicalforecast tags ({level: ids}) from the series_keys table, levels top to bottom."""
    ordered = series_keys.sort_values(["level_order", "unique_id"], kind="stable")
    return {level: group["unique_id"].to_numpy() for level, group in ordered.groupby("level", sort=False)}


def summing_matrix(structure: pd.DataFrame, series_order: list[str]) -> pd.DataFrame:
    """Dense S (hierarchicalforecast ``S_df``: unique_id column + one column per bottom id)."""
    bottom = list(structure["bottom_id"].drop_duplicates())
    row = pd.Index(series_order).get_indexer(structure["unique_id"])
    col = pd.Index(bottom).get_indexer(structure["bottom_id"])
    dense = np.zeros((len(series_order), len(bottom)), dtype=np.float64)
    dense[row, col] = 1.0
    s_df = pd.DataFrame(dense, columns=bottom)
    s_df.insert(0, "unique_id", series_order)
    return s_df


def complete_bottom(sales: pd.DataFrame, bottom_columns: list[str], freq: str) -> tuple[pd.DataFrame, int]:
    """Give every bottom series a row for every period of the common date range (missing = 0 sales)."""
    start, end = sales["ds"].min(), sales["ds"].max()
    dates = pd.date_range(start, end, freq=freq)
    members = sales[bottom_columns].drop_duplicates().reset_index(drop=True)
    if len(members) * len(dates) == len(sales):
        return sales, 0
    grid = members.merge(pd.DataFrame({"ds": dates}), how="cross")
    completed = grid.merge(sales, on=[*bottom_columns, "ds"], how="left")
    filled = int(completed["y"].isna().sum())
    completed["y"] = completed["y"].fillna(0.0)
    return completed, filled


def _bottom_attributes(sales: pd.DataFrame, hierarchy_columns: list[str]) -> pd.DataFrame:
    return sales[hierarchy_columns].drop_duplicates().reset_index(drop=True)


def _series_keys(members: pd.DataFrame, levels: list[list[str]], hierarchy_columns: list[str]) -> pd.DataFrame:
    """One row per series: its id, level and every hierarchy column its members share (else null)."""
    frames = []
    for order, level in enumerate(levels):
        name = level_name(level)
        if level:
            grouped = members.groupby(level, sort=True, observed=True)
            shared = grouped.nunique(dropna=False)
            firsts = grouped.first()
            keys = firsts.where(shared == 1).reset_index() if len(shared.columns) else firsts.reset_index()
            keys["unique_id"] = keys[level].astype(str).agg("/".join, axis=1)
        else:
            shared = members.nunique(dropna=False)
            keys = pd.DataFrame([{c: members[c].iloc[0] if shared[c] == 1 else None for c in hierarchy_columns}])
            keys["unique_id"] = TOTAL_ID
        keys["level"] = name
        keys["level_order"] = order
        frames.append(keys.astype({c: "string" for c in hierarchy_columns}))  # all-NA columns concat with a stable dtype
    series_keys = pd.concat(frames, ignore_index=True)
    for col in hierarchy_columns:
        series_keys[col] = series_keys[col].astype("string")
    dupes = series_keys["unique_id"][series_keys["unique_id"].duplicated()]
    if len(dupes):
        raise ValueError(
            f"Series ids clash across levels (e.g. {list(dupes.unique()[:3])}): two levels produce the same "
            "id. Give the hierarchy members distinct names."
        )
    return series_keys[["unique_id", "level", "level_order", *hierarchy_columns]]


def build_hierarchy(sales: pd.DataFrame, levels: list[list[str]], freq: str) -> Hierarchy:
    """Aggregate bottom sales (hierarchy columns, ds, y) to every level.

    ``levels`` are lists of grouping columns; [] is the grand total. The finest level (most columns) is
    the bottom; every other hierarchy column must be determined by it (validation guarantees this).
    """
    from hierarchicalforecast.utils import aggregate

    user_levels = [list(level) for level in levels]
    hierarchy_columns = list(dict.fromkeys(col for level in user_levels for col in level))
    members = _bottom_attributes(sales, hierarchy_columns)
    # levels from the coarsest to the finest (by member count, ties in the given order); the finest is the
    # bottom. level_order in series_keys follows this order, whatever the order of ``levels``.
    sizes = [len(members[level].drop_duplicates()) if level else 1 for level in user_levels]
    levels = [level for _, _, level in sorted(zip(sizes, range(len(user_levels)), user_levels), key=lambda t: (t[0], t[1]))]
    bottom = levels[-1]
    bottom_columns = list(dict.fromkeys([*bottom, *hierarchy_columns]))
    completed, filled = complete_bottom(sales[[*hierarchy_columns, "ds", "y"]], bottom_columns, freq)

    if len(members) != len(members[bottom].drop_duplicates()):
        raise ValueError(
            f"The bottom level {bottom} does not determine {sorted(set(hierarchy_columns) - set(bottom))}: "
            "some bottom member belongs to two parents."
        )
    series_keys = _series_keys(members, levels, hierarchy_columns)

    frame = completed.assign(**{_TOTAL_COL: TOTAL_ID})
    for col in hierarchy_columns:
        frame[col] = frame[col].astype(str)
    spec = [[_TOTAL_COL] if not level else list(level) for level in levels[:-1]]
    spec.append([_TOTAL_COL, *bottom_columns])
    y_df, s_df, _ = aggregate(frame[[_TOTAL_COL, *bottom_columns, "ds", "y"]], spec)

    # rename the bottom ids "Total/<all columns>" to "<bottom columns>"
    bottom_members = members.assign(**{_TOTAL_COL: TOTAL_ID}).astype(str)
    long_ids = bottom_members[[_TOTAL_COL, *bottom_columns]].agg("/".join, axis=1)
    short_ids = bottom_members[bottom].agg("/".join, axis=1)
    rename = dict(zip(long_ids, short_ids))
    y_df["unique_id"] = y_df["unique_id"].replace(rename)
    s_df["unique_id"] = s_df["unique_id"].replace(rename)
    s_df = s_df.rename(columns=rename)

    structure = (
        s_df.melt(id_vars="unique_id", var_name="bottom_id", value_name="s")
        .query("s > 0")
        .drop(columns="s")
        .reset_index(drop=True)
    )
    order = pd.Index(series_keys["unique_id"])
    structure = structure.iloc[np.argsort(order.get_indexer(structure["unique_id"]), kind="stable")]
    series = y_df[["unique_id", "ds", "y"]].reset_index(drop=True)
    missing = set(series_keys["unique_id"]) ^ set(series["unique_id"].unique())
    if missing:
        raise AssertionError(f"aggregate and series_keys disagree on {sorted(missing)[:5]}")
    return Hierarchy(series=series, structure=structure.reset_index(drop=True), series_keys=series_keys, filled_gaps=filled)


def check_coherence(forecasts: pd.DataFrame, structure: pd.DataFrame, value_columns: list[str]) -> pd.DataFrame:
    """Max |parent - sum of its bottom members| per value column (forecasts: unique_id, ds, columns)."""
    bottom = forecasts.merge(
        structure.rename(columns={"unique_id": "parent", "bottom_id": "unique_id"}), on="unique_id"
    )
    sums = bottom.groupby(["parent", "ds"], observed=True)[value_columns].sum()
    parents = forecasts.set_index(["unique_id", "ds"])[value_columns]
    parents.index = parents.index.set_names(["parent", "ds"])
    gap = (parents.reindex(sums.index) - sums).abs()
    return gap.max().rename("max_abs_gap").to_frame().rename_axis("column").reset_index()
