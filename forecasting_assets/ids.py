"""Series ids over long frames: categorical codes found through runs of equal ids.

Every history here is stored in blocks, one per series (``hierarchical_series``: 42,840 blocks of 1,941
rows at M5 size). ``pd.Categorical`` of its 83 M string ids hashes every row (about 4 s); comparing each
row with the next one finds the blocks in a fraction of that, and only one id per block is looked up.
Frames that are not in blocks give the same result, at about the plain cost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def as_categorical(values: pd.Series | np.ndarray, dtype: pd.CategoricalDtype | None = None) -> pd.Categorical:
    """``pd.Categorical(values, dtype=dtype)``, found through runs of equal values (see the module docstring)."""
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        return pd.Categorical(values, dtype=dtype) if dtype is not None else pd.Categorical(values)
    array = np.asarray(values, dtype=object)
    if len(array) < 2:
        return pd.Categorical(array, dtype=dtype)
    starts = np.flatnonzero(np.r_[True, array[1:] != array[:-1]])
    if len(starts) * 4 > len(array):  # short runs: nothing to gain
        return pd.Categorical(array, dtype=dtype)
    run_values = array[starts]
    if dtype is None:
        dtype = pd.Categorical(run_values).dtype  # sorted categories, as pd.Categorical(values) gives
    run_codes = pd.Categorical(run_values, dtype=dtype).codes
    lengths = np.diff(np.r_[starts, len(array)])
    return pd.Categorical.from_codes(np.repeat(run_codes, lengths), dtype=dtype)


def ids_in(values: pd.Series | np.ndarray, wanted) -> np.ndarray:
    """``pd.Series(values).isin(wanted)`` as a boolean array, through runs of equal values."""
    category = as_categorical(values)
    hit = np.append(np.asarray(pd.Index(category.categories).isin(list(wanted)), dtype=bool), False)  # code -1: missing
    return hit[category.codes]


def merge_on_ids(left: pd.DataFrame, right: pd.DataFrame, on: list[str], how: str = "left", id_column: str = "unique_id") -> pd.DataFrame:
    """``left.merge(right, on=on, how=how)`` with the string id column joined as integer codes.

    pandas hashes both frames' ids on every merge (at M5 size 17 M rows of exogenous features: ~10 s). Here
    each side's ids become codes over their sorted union through runs (:func:`as_categorical`), the merge
    runs on integers, and the ids are put back: the same rows in the same order (sorted categories keep the
    lexicographic key order of an outer merge) and the same columns.
    """
    if id_column not in on or left[id_column].dtype != object or right[id_column].dtype != object:
        return left.merge(right, on=on, how=how)
    left_ids, right_ids = as_categorical(left[id_column]), as_categorical(right[id_column])
    categories = left_ids.categories.union(right_ids.categories)  # sorted
    dtype = pd.CategoricalDtype(categories)
    if how in ("left", "outer") and set(on) == {id_column, "ds"}:
        joined = _lookup_join(left, right, pd.Categorical(left_ids, dtype=dtype).codes, pd.Categorical(right_ids, dtype=dtype).codes, id_column, how)
        if joined is not None:
            return joined
    code = "__id_code__"
    left_coded = left.assign(**{id_column: pd.Categorical(left_ids, dtype=dtype).codes}).rename(columns={id_column: code})
    right_coded = right.assign(**{id_column: pd.Categorical(right_ids, dtype=dtype).codes}).rename(columns={id_column: code})
    merged = left_coded.merge(right_coded, on=[code if c == id_column else c for c in on], how=how)
    values = np.append(categories.to_numpy(dtype=object), None)
    merged[code] = values[merged[code].to_numpy()]
    return merged.rename(columns={code: id_column})


def _lookup_join(left: pd.DataFrame, right: pd.DataFrame, left_codes: np.ndarray, right_codes: np.ndarray, id_column: str, how: str) -> pd.DataFrame | None:
    """A join on (id, ds) as one int64 key per row and a hash lookup of the right rows, when the right keys
    are unique (a feature table) and the missing values need no new dtype; for ``outer``, only when both sides
    hold the same keys (the result is then the left rows in key order). None: not such a case."""
    if not (pd.api.types.is_datetime64_dtype(left["ds"]) and pd.api.types.is_datetime64_dtype(right["ds"])):
        return None
    left_days, right_days = left["ds"].to_numpy(), right["ds"].to_numpy()
    days = np.unique(np.concatenate([pd.unique(left_days), pd.unique(right_days)]))
    if np.isnat(days).any():
        return None
    left_key = left_codes.astype(np.int64) * len(days) + np.searchsorted(days, left_days)
    right_key = right_codes.astype(np.int64) * len(days) + np.searchsorted(days, right_days)
    right_index = pd.Index(right_key)
    if not right_index.is_unique:
        return None
    at = right_index.get_indexer(left_key)
    missing = at < 0
    others = [c for c in right.columns if c not in (id_column, "ds")]
    if how == "outer":
        if len(left_key) != len(right_key) or missing.any() or pd.Index(left_key).has_duplicates:
            return None
        order = np.argsort(left_key, kind="stable")
        left, at = left.iloc[order].reset_index(drop=True), at[order]
        missing = np.zeros(len(at), dtype=bool)
    if missing.any() and not all(pd.api.types.is_float_dtype(right[c]) for c in others):
        return None
    out = {c: left[c].to_numpy() for c in left.columns}
    take = np.where(missing, 0, at)
    for c in others:
        values = right[c].to_numpy()[take]
        if missing.any():
            values[missing] = np.nan
        out[c] = values
    return pd.DataFrame(out, columns=[*left.columns, *others], copy=False)
