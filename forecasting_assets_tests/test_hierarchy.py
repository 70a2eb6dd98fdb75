"""Tests of forecasting_assets.hierarchy.aggregation on a tiny hand-built M5-like bottom frame.

2 states (CA with stores CA_1, CA_2; TX with TX_1), 2 categories (FOODS, HOBBIES) with 2 departments
each, 5 days; the bottom level is store × department (12 series).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from forecasting_assets.hierarchy.aggregation import (
    _bottom_attributes,
    build_hierarchy,
    check_coherence,
    summing_matrix,
    tags_from_keys,
)
from forecasting_assets.spec import M5_LEVELS, TOTAL_ID

STORES = {"CA_1": "CA", "CA_2": "CA", "TX_1": "TX"}
DEPTS = {"FOODS_1": "FOODS", "FOODS_2": "FOODS", "HOBBIES_1": "HOBBIES", "HOBBIES_2": "HOBBIES"}
DATES = pd.date_range("2024-03-01", periods=5, freq="D")
# M5 levels 1-9 (no items): total, state, store, cat, dept, state×cat, state×dept, store×cat, store×dept
LEVELS = [cols for cols in M5_LEVELS.values() if "item_id" not in cols]
HIER_COLS = ["state_id", "store_id", "cat_id", "dept_id"]


def bottom_frame(seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = [
        {"state_id": state, "store_id": store, "cat_id": cat, "dept_id": dept, "ds": ds, "y": float(rng.integers(0, 20))}
        for store, state in STORES.items()
        for dept, cat in DEPTS.items()
        for ds in DATES
    ]
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def sales() -> pd.DataFrame:
    return bottom_frame()


@pytest.fixture(scope="module")
def hierarchy(sales: pd.DataFrame):
    # shuffled rows and the coarser levels in a scrambled order (the finest level is listed last; see
    # test_bottom_level_does_not_depend_on_the_order_of_equally_long_levels for the other case)
    levels = [*reversed(LEVELS[:-1]), LEVELS[-1]]
    return build_hierarchy(sales.sample(frac=1.0, random_state=1), levels, "D")


def test_level_order_does_not_depend_on_the_order_of_levels(sales: pd.DataFrame, hierarchy) -> None:
    other = build_hierarchy(sales, list(reversed(LEVELS)), "D")
    mine = hierarchy.series_keys.sort_values("unique_id").reset_index(drop=True)
    theirs = other.series_keys.sort_values("unique_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(mine[["unique_id", "level"]], theirs[["unique_id", "level"]])
    assert sorted(other.bottom_ids) == sorted(hierarchy.bottom_ids)
    # coarse to fine: a level never comes after a level with more series
    sizes = other.series_keys.groupby("level_order")["unique_id"].nunique()
    assert sizes.is_monotonic_increasing


def _expected_id(row: pd.Series, cols: list[str]) -> str:
    return "/".join(row[c] for c in cols) if cols else TOTAL_ID


def test_series_counts_per_level(hierarchy) -> None:
    counts = hierarchy.series_keys.groupby("level")["unique_id"].nunique().to_dict()
    assert counts == {
        "total": 1,
        "state_id": 2,
        "store_id": 3,
        "cat_id": 2,
        "dept_id": 4,
        "state_id/cat_id": 4,
        "state_id/dept_id": 8,
        "store_id/cat_id": 6,
        "store_id/dept_id": 12,
    }
    assert hierarchy.series["unique_id"].nunique() == 42
    assert len(hierarchy.series) == 42 * len(DATES)
    assert not hierarchy.series.duplicated(["unique_id", "ds"]).any()
    assert len(hierarchy.bottom_ids) == 12
    assert hierarchy.filled_gaps == 0


def test_series_ids(hierarchy) -> None:
    ids = set(hierarchy.series["unique_id"])
    assert {TOTAL_ID, "CA", "TX", "CA_1", "TX_1", "FOODS", "HOBBIES_2", "CA/FOODS", "TX/HOBBIES_1", "CA_2/HOBBIES",
            "CA_1/FOODS_1", "TX_1/HOBBIES_2"} <= ids
    # ids follow the level's column order, never the reversed one
    assert "FOODS/CA" not in ids and "FOODS_1/CA_1" not in ids
    # the bottom ids keep only the bottom columns (no "Total/..." prefix, no state or category)
    assert sorted(hierarchy.bottom_ids) == sorted(f"{s}/{d}" for s in STORES for d in DEPTS)
    assert set(hierarchy.series_keys["unique_id"]) == ids


def test_levels_are_ordered_top_to_bottom(hierarchy) -> None:
    keys = hierarchy.series_keys
    assert keys.loc[keys["unique_id"] == TOTAL_ID, "level_order"].item() == 0
    assert keys["level_order"].max() == keys.loc[keys["level"] == "store_id/dept_id", "level_order"].iloc[0]
    tags = hierarchy.tags
    assert list(tags)[0] == "total" and list(tags)[-1] == "store_id/dept_id"
    assert list(tags["store_id"]) == ["CA_1", "CA_2", "TX_1"]
    # every series appears in exactly one level
    assert sorted(np.concatenate(list(tags.values()))) == sorted(keys["unique_id"])
    assert tags_from_keys(keys.sample(frac=1.0, random_state=3)).keys() == tags.keys()


def test_every_parent_equals_the_sum_of_its_children(hierarchy, sales: pd.DataFrame) -> None:
    series = hierarchy.series.set_index(["unique_id", "ds"])["y"]
    for cols in LEVELS:
        if cols:
            expected = sales.groupby([*cols, "ds"])["y"].sum().reset_index()
            expected["unique_id"] = expected[cols].agg("/".join, axis=1)
        else:
            expected = sales.groupby("ds")["y"].sum().reset_index().assign(unique_id=TOTAL_ID)
        got = series.reindex(pd.MultiIndex.from_frame(expected[["unique_id", "ds"]])).to_numpy()
        np.testing.assert_array_equal(got, expected["y"].to_numpy(), err_msg=f"level {cols}")
    # and the structure table says which bottoms make up each parent
    ca = hierarchy.structure.loc[hierarchy.structure["unique_id"] == "CA", "bottom_id"]
    assert sorted(ca) == sorted(f"{s}/{d}" for s in ("CA_1", "CA_2") for d in DEPTS)
    bottom_rows = hierarchy.structure[hierarchy.structure["unique_id"] == hierarchy.structure["bottom_id"]]
    assert len(bottom_rows) == 12


def test_series_keys_fill_determined_columns_and_leave_others_null(hierarchy) -> None:
    keys = hierarchy.series_keys.set_index("unique_id")
    assert sorted(keys.columns[-4:]) == sorted(HIER_COLS)  # hierarchy columns (first-mention order)
    assert list(keys.columns[:2]) == ["level", "level_order"]
    assert all(str(keys[c].dtype) == "string" for c in HIER_COLS)

    store = keys.loc["CA_1"]
    assert (store["state_id"], store["store_id"]) == ("CA", "CA_1")
    assert pd.isna(store["cat_id"]) and pd.isna(store["dept_id"])

    dept = keys.loc["HOBBIES_2"]
    assert (dept["cat_id"], dept["dept_id"]) == ("HOBBIES", "HOBBIES_2")
    assert pd.isna(dept["state_id"]) and pd.isna(dept["store_id"])

    state_cat = keys.loc["CA/FOODS"]
    assert (state_cat["state_id"], state_cat["cat_id"]) == ("CA", "FOODS")
    assert pd.isna(state_cat["store_id"]) and pd.isna(state_cat["dept_id"])  # two stores, two depts

    # TX has a single store, so that store is shared by every TX member and is filled in
    assert keys.loc["TX", "store_id"] == "TX_1"
    assert pd.isna(keys.loc["CA", "store_id"])

    assert keys.loc[TOTAL_ID, HIER_COLS].isna().all()
    bottom = keys.loc["TX_1/FOODS_2"]
    assert list(bottom[HIER_COLS]) == ["TX", "TX_1", "FOODS", "FOODS_2"]


def test_gaps_are_filled_with_zero_and_counted(sales: pd.DataFrame) -> None:
    drop = (
        ((sales["store_id"] == "CA_2") & (sales["dept_id"] == "FOODS_1") & (sales["ds"] == DATES[2]))
        | ((sales["store_id"] == "TX_1") & (sales["dept_id"] == "HOBBIES_2") & (sales["ds"].isin(DATES[[0, 4]])))
    )
    assert drop.sum() == 3
    h = build_hierarchy(sales[~drop], LEVELS, "D")
    assert h.filled_gaps == 3
    series = h.series.set_index(["unique_id", "ds"])["y"]
    assert series[("CA_2/FOODS_1", DATES[2])] == 0.0
    assert series[("TX_1/HOBBIES_2", DATES[0])] == 0.0
    assert series[("TX_1/HOBBIES_2", DATES[4])] == 0.0
    assert len(h.series) == 42 * len(DATES)  # every series still has every day
    dropped_total = sales.loc[drop & (sales["ds"] == DATES[2]), "y"].sum()
    full_total = sales.loc[sales["ds"] == DATES[2], "y"].sum()
    assert series[(TOTAL_ID, DATES[2])] == full_total - dropped_total


def test_weekly_gaps_follow_the_frequency() -> None:
    weeks = pd.date_range("2024-01-07", periods=4, freq="W-SUN")
    sales = pd.DataFrame({"store_id": ["A"] * 4 + ["B"] * 3, "ds": list(weeks) + list(weeks[[0, 1, 3]]), "y": 1.0})
    h = build_hierarchy(sales, [[], ["store_id"]], "W-SUN")
    assert h.filled_gaps == 1
    total = h.series[h.series["unique_id"] == TOTAL_ID].sort_values("ds")["y"].tolist()
    assert total == [2.0, 2.0, 1.0, 2.0]


def test_a_store_in_two_states_raises(sales: pd.DataFrame) -> None:
    broken = sales.copy()
    # on one day the bottom member CA_2/FOODS_1 is recorded under TX: CA_2 is in two states
    moved = (broken["store_id"] == "CA_2") & (broken["dept_id"] == "FOODS_1") & (broken["ds"] == DATES[3])
    broken.loc[moved, "state_id"] = "TX"
    with pytest.raises(ValueError, match="does not determine"):
        build_hierarchy(broken, LEVELS, "D")


def test_a_department_in_two_categories_raises(sales: pd.DataFrame) -> None:
    broken = sales.copy()
    broken.loc[(broken["store_id"] == "TX_1") & (broken["dept_id"] == "FOODS_2"), "cat_id"] = "HOBBIES"
    broken = pd.concat([broken, sales[(sales["store_id"] == "TX_1") & (sales["dept_id"] == "FOODS_2")]])
    broken = broken.drop_duplicates(["store_id", "dept_id", "cat_id", "ds"])
    with pytest.raises(ValueError, match="does not determine"):
        build_hierarchy(broken, LEVELS, "D")


def test_bottom_level_does_not_depend_on_the_order_of_equally_long_levels(sales: pd.DataFrame) -> None:
    # Regression: the bottom used to be the LAST of the longest levels (stable sort by length), so with
    # several 2-column levels (as in M5) it depended on the order of ``levels`` and this valid hierarchy
    # raised "The bottom level ['state_id', 'cat_id'] does not determine ['dept_id', 'store_id']".
    levels = [[], ["store_id", "dept_id"], ["state_id", "cat_id"]]
    h = build_hierarchy(sales, levels, "D")
    assert sorted(h.bottom_ids) == sorted(f"{s}/{d}" for s in STORES for d in DEPTS)
    assert h.series["unique_id"].nunique() == 1 + 12 + 4
    same = build_hierarchy(sales, list(reversed(levels)), "D")
    pd.testing.assert_frame_equal(
        h.series.sort_values(["unique_id", "ds"]).reset_index(drop=True),
        same.series.sort_values(["unique_id", "ds"]).reset_index(drop=True),
    )
    assert sorted(same.bottom_ids) == sorted(h.bottom_ids)


def test_clashing_ids_across_levels_raise() -> None:
    sales = pd.DataFrame(
        {"state_id": ["X", "X"], "store_id": ["X", "Y"], "ds": pd.to_datetime(["2024-01-01"] * 2), "y": [1.0, 2.0]}
    )
    with pytest.raises(ValueError, match="clash"):
        build_hierarchy(sales, [[], ["state_id"], ["store_id"]], "D")


def test_check_coherence_zero_for_coherent_and_positive_for_perturbed(hierarchy) -> None:
    coherent = hierarchy.series.assign(model_a=hierarchy.series["y"] * 2.0)
    gaps = check_coherence(coherent, hierarchy.structure, ["y", "model_a"]).set_index("column")["max_abs_gap"]
    assert list(gaps.index) == ["y", "model_a"]
    assert gaps.max() == 0.0

    perturbed = coherent.copy()
    hit = (perturbed["unique_id"] == "CA/FOODS") & (perturbed["ds"] == DATES[1])
    perturbed.loc[hit, "model_a"] += 0.75
    gaps = check_coherence(perturbed, hierarchy.structure, ["y", "model_a"]).set_index("column")["max_abs_gap"]
    assert gaps["y"] == 0.0
    assert gaps["model_a"] == pytest.approx(0.75)

    # a perturbed bottom series breaks every one of its parents
    bottom_hit = perturbed.copy()
    bottom_hit.loc[(bottom_hit["unique_id"] == "TX_1/FOODS_1") & (bottom_hit["ds"] == DATES[0]), "y"] -= 2.0
    assert check_coherence(bottom_hit, hierarchy.structure, ["y"])["max_abs_gap"].item() == pytest.approx(2.0)


def test_summing_matrix_shape_and_sums(hierarchy) -> None:
    order = list(hierarchy.series_keys["unique_id"])
    s_df = summing_matrix(hierarchy.structure, order)
    assert s_df.shape == (42, 1 + 12)
    assert list(s_df["unique_id"]) == order
    assert list(s_df.columns[1:]) == hierarchy.bottom_ids
    matrix = s_df.drop(columns="unique_id").to_numpy()
    assert set(np.unique(matrix)) == {0.0, 1.0}
    # every bottom series is counted once per level
    np.testing.assert_array_equal(matrix.sum(axis=0), np.full(12, len(LEVELS)))
    rows = s_df.set_index("unique_id").sum(axis=1)
    assert rows[TOTAL_ID] == 12
    assert rows["CA"] == 8 and rows["TX"] == 4
    assert rows["FOODS_1"] == 3 and rows["CA/HOBBIES"] == 4
    # the bottom block is the identity
    bottom = s_df.set_index("unique_id").loc[hierarchy.bottom_ids, hierarchy.bottom_ids].to_numpy()
    np.testing.assert_array_equal(bottom, np.eye(12))
    # S times the bottom values gives every series
    y = hierarchy.series.pivot(index="unique_id", columns="ds", values="y")
    np.testing.assert_array_equal(matrix @ y.loc[hierarchy.bottom_ids].to_numpy(), y.loc[order].to_numpy())


def test_bottom_attributes_are_drop_duplicates_of_the_hierarchy_columns() -> None:
    """The integer-key shortcut returns exactly what ``drop_duplicates`` does: first appearances in row order,
    over categorical, string and integer columns, missing values included."""
    rng = np.random.default_rng(3)
    n = 5_000
    sales = pd.DataFrame(
        {
            "state_id": pd.Categorical(rng.choice(["CA", "TX", "WI"], n)),
            "store_id": rng.choice(["s1", "s2", None], n),
            "dept_id": pd.Categorical(rng.choice(["FOODS_1", np.nan], n).astype(object)),
            "item_id": rng.integers(0, 40, n),
            "y": rng.poisson(3.0, n).astype(float),
        }
    )
    for columns in (["state_id", "store_id", "dept_id", "item_id"], ["store_id"], ["item_id", "state_id"]):
        expected = sales[columns].drop_duplicates().reset_index(drop=True)
        pd.testing.assert_frame_equal(_bottom_attributes(sales, columns), expected)
