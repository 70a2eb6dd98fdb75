"""M5 accuracy metrics of hierarchical forecasts: RMSSE, MASE, WRMSSE and WSPL.

Definitions (M5 Competitors' Guide, 2020):

* The **scale** of a series is computed on its training history *from its first non-zero sale on*:
  ``rmsse_scale`` = mean of the squared one-step differences (RMSSE denominator),
  ``mae_scale`` = mean of the absolute one-step differences (MASE and WSPL denominator).
* ``RMSSE = sqrt(mean_h (y - ŷ)² / rmsse_scale)``, ``MASE = mean_h |y - ŷ| / mae_scale``.
* ``WRMSSE`` of a level = Σ weight · RMSSE over the level's series; the M5 score is the mean over levels.
* ``SPL(u) = mean_h pinball_u(y, q̂_u) / mae_scale``; ``WSPL`` of a level = Σ weight · mean_u SPL(u),
  and the M5 uncertainty score is the mean over levels.

The per-series losses come from ``utilsforecast.losses`` (``rmsse``, ``mase``, ``mae``, ``rmse``,
``scaled_mqloss``) with ``seasonality=1``, fed with the history trimmed of its leading zeros: that gives
exactly the M5 scales. This module only adds the trimming, the weights and the per-level sums.

**Undefined scales.** A series whose trimmed history is empty (it never sold), has a single observation, or
is constant (scale 0) has no scaled error. Its scale is NaN (never 0), its RMSSE/MASE/SPL are NaN (never
``inf``), and it is left out of the per-level sums and means. The same holds for a series/window whose
forecast has a missing value. Per-level tables count such series in ``n_excluded`` and report the weight
actually scored in ``weight_covered``; the weighted sum is divided by ``weight_covered``, so a level whose
weights sum to 1 and whose series are all scored gets exactly the M5 value Σ weight · RMSSE, and a level with
exclusions gets the weighted mean over the scored series instead of a silently smaller number.

**Several backtest windows.** When the forecasts carry a ``cutoff`` column, each window is scored with the
history ``ds <= cutoff`` of the ``train`` frame (pass the full history), then every per-series metric is
averaged over the windows where it is defined, and only then weighted into the per-level numbers.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from forecasting_assets.ids import as_categorical, ids_in
from forecasting_assets.spec import M5_LEVELS, m5_level_id

logger = logging.getLogger(__name__)

ID = "unique_id"
OVERALL_LEVEL = "__overall__"  # level name of the row that averages the levels
CUTOFF = "cutoff"
NON_MODEL_COLUMNS = frozenset({ID, "ds", CUTOFF, "y", "index", "level"})
SERIES_METRICS = ["rmsse", "mase", "mae", "rmse"]


# --------------------------------------------------------------------------------------------- helpers


def level_columns(level: str) -> list[str]:
    """Grouping columns of a level from its name: 'total' -> [], 'store_id/dept_id' -> ['store_id', 'dept_id']."""
    return [] if level == "total" else level.split("/")


def _level_order(series_keys: pd.DataFrame) -> list[str]:
    """The levels in the order they first appear in ``series_keys``."""
    return list(pd.unique(series_keys["level"]))


def _undefined_to_nan(values: pd.Series) -> pd.Series:
    """Replace zero, negative-zero and non-finite values by NaN."""
    return values.where(np.isfinite(values) & (values != 0))


def _finite_or_nan(values: pd.DataFrame | pd.Series) -> pd.DataFrame | pd.Series:
    """Replace ±inf (a loss divided by a zero scale) by NaN."""
    return values.where(np.isfinite(values))


def _model_columns(forecasts: pd.DataFrame, models: list[str] | None) -> list[str]:
    """The model columns to score: ``models`` (checked) or every non-key column of ``forecasts``."""
    if models is None:
        models = [c for c in forecasts.columns if c not in NON_MODEL_COLUMNS]
    missing = [m for m in models if m not in forecasts.columns]
    if missing:
        raise ValueError(f"forecast columns not found: {missing}")
    if not models:
        raise ValueError("no model columns to score")
    return list(models)


def _evaluation_frame(
    forecasts: pd.DataFrame, actuals: pd.DataFrame, series_keys: pd.DataFrame, columns: list[str]
) -> pd.DataFrame:
    """Forecast rows joined with their actual ``y``; checks every row has an actual and a known series."""
    keys = [ID, "ds", *([CUTOFF] if CUTOFF in forecasts.columns else [])]
    frame = forecasts[keys + columns].merge(
        actuals[[ID, "ds", "y"]], on=[ID, "ds"], how="left", validate="many_to_one"
    )
    n_missing = int(frame["y"].isna().sum())
    if n_missing:
        raise ValueError(f"{n_missing} forecast rows have no actual value in `actuals`")
    unknown = set(frame[ID].unique()) - set(series_keys[ID])
    if unknown:
        raise ValueError(f"{len(unknown)} forecast series are not in series_keys, e.g. {sorted(unknown)[:5]}")
    return frame


def _history(train: pd.DataFrame, frame: pd.DataFrame, n_series: int | None = None) -> pd.DataFrame:
    """The history used for the scales, trimmed of leading zeros and sorted by series and time.

    Without a ``cutoff`` column, rows of a series at or after its first forecast date are dropped (a no-op
    when ``train`` really is the history before the window). With a ``cutoff`` column, utilsforecast keeps
    ``ds <= cutoff`` for each window itself. ``n_series``: how many series there are (the frame's series are
    among them); when the frame has them all, no history row needs to be looked up.
    """
    history = train if list(train.columns) == [ID, "ds", "y"] else train[[ID, "ds", "y"]]  # (a selection copies)
    if CUTOFF in frame.columns:
        scored = frame[ID].unique()
        if n_series is None or len(scored) < n_series:  # (an isin over M5-size string ids costs 7 s)
            history = history[history[ID].isin(scored)]
    else:
        first = frame.groupby(ID, observed=True)["ds"].min().rename("_first")
        if isinstance(history[ID].dtype, pd.CategoricalDtype):  # each row's limit looked up by its id's code
            limits = np.append(first.reindex(history[ID].cat.categories).to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT"))
            history = history[history["ds"].to_numpy() < limits[history[ID].cat.codes.to_numpy()]]  # NaT: not scored
        else:
            history = history.merge(first, left_on=ID, right_index=True, how="inner")
            history = history.loc[history["ds"] < history["_first"], [ID, "ds", "y"]]
    return trim_leading_zeros(history)


def _history_rows(train: pd.DataFrame, frame: pd.DataFrame, n_series: int | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows :func:`_history` keeps, as (the history in blocks per series in time order, a mask of those
    rows), without copying the history: ``train`` has categorical ids. At M5 size (83 M rows) the copies
    of the cut and of the trim took ~10 s each in every step that scores forecasts."""
    history = train if list(train.columns) == [ID, "ds", "y"] else train[[ID, "ds", "y"]]
    blocks, _ = pd.factorize(history[ID])  # numbered by first appearance: ascending in a block layout
    step, dates = np.diff(blocks), history["ds"].to_numpy()
    if len(history) and not bool(np.all((step > 0) | ((step == 0) & (dates[1:] > dates[:-1])))):
        history = history.sort_values([ID, "ds"], kind="stable").reset_index(drop=True)
        blocks, _ = pd.factorize(history[ID])
    del step, dates
    codes = history[ID].cat.codes.to_numpy()
    if CUTOFF in frame.columns:
        scored = frame[ID].unique()
        keep = np.asarray(history[ID].isin(scored)) if n_series is None or len(scored) < n_series else np.ones(len(history), dtype=bool)
    else:
        first = frame.groupby(ID, observed=True)["ds"].min()
        limits = np.append(first.reindex(history[ID].cat.categories).to_numpy(dtype="datetime64[ns]"), np.datetime64("NaT"))
        keep = history["ds"].to_numpy() < limits[codes]  # NaT (a series not scored): nothing kept
    # from each block's first sale among the kept rows on (the kept rows of a block are one run: whole series
    # dropped, or the days from the first forecast date on)
    keep &= _started(blocks, history["y"].to_numpy(dtype=np.float64), keep)
    return history, keep


def _group_columns(frame: pd.DataFrame) -> list[str]:
    """Columns that identify one scored unit: the series, and the window if there are several."""
    return [CUTOFF, ID] if CUTOFF in frame.columns else [ID]


def _long(result: pd.DataFrame, group_cols: list[str], models: list[str], name: str) -> pd.DataFrame:
    """utilsforecast's wide result (one column per model) to long ``group_cols, model, <name>``."""
    return result.melt(id_vars=group_cols, value_vars=models, var_name="model", value_name=name)


def _incomplete(frame: pd.DataFrame, group_cols: list[str], columns_by_model: dict[str, list[str]]) -> pd.DataFrame:
    """Long ``group_cols, model, _incomplete``: True where some forecast of that unit is missing."""
    flags = pd.DataFrame({m: frame[cols].isna().any(axis=1) for m, cols in columns_by_model.items()})
    flags[group_cols] = frame[group_cols]
    per_unit = flags.groupby(group_cols, as_index=False, observed=True)[list(columns_by_model)].any()
    return _long(per_unit, group_cols, list(columns_by_model), "_incomplete")


def _average_windows(long: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Average per-window metrics over windows (NaN windows skipped); a no-op without a cutoff column."""
    if CUTOFF not in long.columns:
        return long[[ID, "model", *metrics]]
    return long.groupby([ID, "model"], as_index=False, sort=False, observed=True)[metrics].mean()


def _weighted_levels(
    per_series: pd.DataFrame,
    series_keys: pd.DataFrame,
    weights: pd.DataFrame,
    metric: str,
    weighted_name: str,
    means: dict[str, str],
) -> pd.DataFrame:
    """Per ``level, model``: weighted sum of ``metric`` (renormalised by the scored weight), plain means of
    ``means`` (source column -> output column), counts; then one ``__overall__`` row per model averaging
    the levels (NaN levels skipped)."""
    frame = per_series.merge(weights[[ID, "weight"]], on=ID, how="left")
    scored = frame[metric].notna()
    frame["_w"] = frame["weight"].where(scored)
    frame["_wx"] = frame["_w"] * frame[metric]
    frame["_excluded"] = ~scored
    grouped = frame.groupby(["level", "model"], sort=False)
    table = pd.DataFrame(
        {
            "_wx": grouped["_wx"].sum(min_count=1),
            "weight_covered": grouped["_w"].sum(min_count=1),
            **{out: grouped[src].mean() for src, out in means.items()},
            "n_series": grouped[ID].size(),
            "n_excluded": grouped["_excluded"].sum(),
        }
    )
    table.insert(0, weighted_name, table["_wx"] / table["weight_covered"].where(table["weight_covered"] > 0))
    table = table.drop(columns="_wx").reset_index()
    order = {level: i for i, level in enumerate(_level_order(series_keys))}
    models = {m: i for i, m in enumerate(pd.unique(per_series["model"]))}
    table = table.sort_values(
        ["level", "model"], key=lambda s: s.map(order if s.name == "level" else models), kind="stable"
    )
    overall = table.groupby("model", as_index=False, sort=False).agg(
        {weighted_name: "mean", **{out: "mean" for out in means.values()}, "n_series": "sum",
         "n_excluded": "sum", "weight_covered": "mean"}
    )
    overall.insert(0, "level", OVERALL_LEVEL)
    columns = ["level", "model", weighted_name, *means.values(), "n_series", "n_excluded", "weight_covered"]
    result = pd.concat([table[columns], overall[columns]], ignore_index=True)
    result[["n_series", "n_excluded"]] = result[["n_series", "n_excluded"]].astype("int64")
    n_excluded = int(table["n_excluded"].sum())
    if n_excluded:
        logger.warning("%d (series, model) pairs have an undefined %s and were left out", n_excluded, metric)
    return result


# ---------------------------------------------------------------------------------------------- scales


def top_level_rows(history: pd.DataFrame, series_keys: pd.DataFrame) -> pd.DataFrame:
    """The rows of the top level's series (the lowest ``level_order``); every row without keys."""
    if not len(series_keys) or "level_order" not in series_keys.columns:
        return history
    top = series_keys.loc[series_keys["level_order"] == series_keys["level_order"].min(), "unique_id"]
    return history[ids_in(history["unique_id"], set(top))]


def closed_days(history: pd.DataFrame, series_keys: pd.DataFrame, share: float) -> pd.DatetimeIndex:
    """The days the whole business was closed: the top level's sales (the sum of its series, or of every
    series without keys) below ``share`` of their median day. M5: each Christmas Day, 14 units against a
    median of about 33,000. ``share`` 0: none.

    Backtest scores leave these days out (``without_days``): nothing is forecast for a closed day, and one
    such day's errors, hundreds of times a normal day's, would otherwise decide which model or method wins."""
    if share <= 0 or history.empty:
        return pd.DatetimeIndex([])
    daily = top_level_rows(history, series_keys).groupby("ds", observed=True)["y"].sum()
    return pd.DatetimeIndex(daily.index[daily < share * daily.median()]).sort_values()


def without_days(frame: pd.DataFrame, days: pd.DatetimeIndex) -> pd.DataFrame:
    """``frame`` without its rows on ``days`` (itself when there are none)."""
    return frame if len(days) == 0 else frame[~frame["ds"].isin(days)]


def trim_leading_zeros(train: pd.DataFrame) -> pd.DataFrame:
    """Drop each series' rows before its first non-zero ``y`` (a series that never sold disappears).

    Returns the remaining rows, one block per series in time order (sorted by ``unique_id, ds`` unless the
    input already came in such blocks), with a fresh index; missing ``y`` counts as no sale.
    """
    codes, _ = pd.factorize(train[ID])
    step, dates = np.diff(codes), train["ds"].to_numpy()
    in_blocks = len(train) and bool(np.all((step > 0) | ((step == 0) & (dates[1:] > dates[:-1]))))
    del step, dates
    if in_blocks:
        frame = train  # already one block per series in time order (the hierarchy's series are): no string sort
    else:
        frame = train.sort_values([ID, "ds"], kind="stable")
        codes, _ = pd.factorize(frame[ID])
    # the blocks' codes ascend (factorize numbers ids by first appearance): a row is kept from the first sale
    # of its block on, found with array operations (a groupby over M5-size string ids took 20 s and 3 GB)
    started = _started(codes, frame["y"].to_numpy(dtype=np.float64))
    del codes
    if started.all():
        return frame.reset_index(drop=True) if frame is not train else frame.set_axis(pd.RangeIndex(len(frame)), copy=False)
    return frame[started].reset_index(drop=True)


def _started(blocks: np.ndarray, y: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """Rows at or after their block's first sale (non-zero ``y``) among the ``keep`` rows (all when None).

    ``blocks``: a block number per row, ascending (one block per series in time order). Array operations
    only: a groupby over M5-size string ids took 20 s and 3 GB."""
    position = np.int32 if len(blocks) < 2**31 else np.int64  # half the memory of int64 on M5-size histories
    blocks = blocks.astype(position)
    sold_mask = np.nan_to_num(y) != 0
    sold = np.flatnonzero(sold_mask if keep is None else keep & sold_mask).astype(position)
    sold_blocks = blocks[sold]
    first = np.flatnonzero(np.diff(sold_blocks, prepend=-1) != 0)
    first_sale = np.full(int(blocks.max()) + 1 if len(blocks) else 0, len(blocks), dtype=position)
    first_sale[sold_blocks[first]] = sold[first]
    return np.arange(len(blocks), dtype=position) >= first_sale[blocks]


def _with_categorical_ids(train: pd.DataFrame, ids: pd.CategoricalDtype) -> pd.DataFrame:
    """``unique_id, ds, y`` of ``train`` with categorical ids; only the ids are converted (ds and y not copied)."""
    return pd.DataFrame({ID: as_categorical(train[ID], ids), "ds": train["ds"].to_numpy(), "y": train["y"].to_numpy()}, copy=False)


def _one_step_scale(train: pd.DataFrame, squared: bool, name: str) -> pd.Series:
    """Mean squared (else absolute) one-step difference per series from its first non-zero sale (the scales
    the scores use, :func:`_one_step_scales`); 0/undefined -> NaN."""
    ids = pd.Index(pd.unique(train[ID]), name=ID)
    history = _with_categorical_ids(train, pd.CategoricalDtype(ids))
    mean_squared, mean_absolute = _one_step_scales(trim_leading_zeros(history), [None])[None]
    scale = (mean_squared if squared else mean_absolute).rename_axis(ID)
    return _undefined_to_nan(scale.reindex(ids)).rename(name)


def rmsse_scale(train: pd.DataFrame) -> pd.Series:
    """M5 RMSSE denominator per series (index ``unique_id``): mean squared one-step difference of the history
    from the first non-zero sale on.

    NaN where it is undefined (never sold, a single observation) or 0 (constant after the first sale): such a
    series gets no RMSSE and is excluded from the level sums (see the module docstring).
    """
    return _one_step_scale(train, True, "rmsse_scale")


def mae_scale(train: pd.DataFrame) -> pd.Series:
    """M5 WSPL / MASE denominator per series (index ``unique_id``): mean absolute one-step difference of the
    history from the first non-zero sale on. NaN where undefined or 0, like :func:`rmsse_scale`."""
    return _one_step_scale(train, False, "mae_scale")


# --------------------------------------------------------------------------------------------- weights


def sales_share_weights(train: pd.DataFrame, series_keys: pd.DataFrame, window: int) -> pd.DataFrame:
    """Weights ``unique_id, level, weight``: each series' share of its level's total sales over the last
    ``window`` periods of ``train`` (the last ``window`` dates present, common to all series).

    Used when no official weights file is given. The M5 weights are shares of *dollar* sales (units × sell
    price) over the last 28 days; these are shares of the ``y`` units, the best available without prices.
    Within each level the weights sum to 1; a series absent from the window weighs 0, and a level with no
    sales at all in the window gets equal weights.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    last_dates = np.sort(train["ds"].unique())[-window:]
    recent = train.loc[train["ds"].isin(last_dates)].groupby(ID)["y"].sum()
    keys = series_keys[[ID, "level"]].copy()
    sales = keys[ID].map(recent).fillna(0.0).astype("float64")
    total = sales.groupby(keys["level"]).transform("sum")
    size = keys.groupby("level")[ID].transform("size")
    keys["weight"] = np.where(total > 0, sales / total.where(total > 0, 1.0), 1.0 / size)
    return keys.reset_index(drop=True)


def _weight_key_columns(keys: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The ``Agg_Level_1, Agg_Level_2`` keys of our series for value columns in file order."""
    first = keys[columns[0]] if columns else pd.Series("Total", index=keys.index)
    second = keys[columns[1]] if len(columns) > 1 else pd.Series("X", index=keys.index)
    return pd.DataFrame({ID: keys[ID], "Agg_Level_1": first.astype(str), "Agg_Level_2": second.astype(str)})


def m5_keys(series_keys: pd.DataFrame) -> pd.DataFrame:
    """``unique_id, Level_id, Agg_Level_1, Agg_Level_2``: each series of an M5 level keyed like the M5 files
    (``Level1, Total, X``; ``Level7, CA, FOODS_1``). Series of levels that are not M5 levels are left out."""
    pieces = []
    for level in _level_order(series_keys):
        level_id = m5_level_id(level_columns(level))
        if level_id is not None:
            keys = _weight_key_columns(series_keys.loc[series_keys["level"] == level], M5_LEVELS[level_id])
            pieces.append(keys.assign(Level_id=level_id)[[ID, "Level_id", "Agg_Level_1", "Agg_Level_2"]])
    columns = [ID, "Level_id", "Agg_Level_1", "Agg_Level_2"]
    return pd.concat(pieces, ignore_index=True) if pieces else pd.DataFrame(columns=columns)


def m5_weights(weights_file: Path, series_keys: pd.DataFrame) -> pd.DataFrame:
    """Read the official M5 weights CSV (``Level_id, Agg_Level_1, Agg_Level_2, Weight``) as
    ``unique_id, level, weight`` for our series.

    Each of our levels is mapped to its M5 ``Level_id`` with :func:`m5_level_id` (order-insensitive); levels
    that are not M5 levels are absent from the result. Level1 is keyed ``Total, X``, one-column levels
    ``<value>, X``, two-column levels hold the values in ``M5_LEVELS`` column order — except that the official
    file stores Level11 as ``state_id, item_id`` (e.g. ``CA, FOODS_1_001``), the reverse of ``M5_LEVELS``; so
    for two-column levels both orders are tried and the one matching more series is used.

    Raises ``ValueError`` naming the level and example ids if some series of an M5 level has no weight.
    Weights are returned as stored: on a subset of the M5 data they sum to less than 1 within a level.
    """
    table = pd.read_csv(weights_file, dtype=str, keep_default_na=False)
    table["Weight"] = table["Weight"].astype("float64")
    pieces = []
    for level in _level_order(series_keys):
        level_id = m5_level_id(level_columns(level))
        if level_id is None:
            continue
        keys = series_keys.loc[series_keys["level"] == level]
        rows = table.loc[table["Level_id"] == level_id, ["Agg_Level_1", "Agg_Level_2", "Weight"]]
        file_cols = M5_LEVELS[level_id]
        orders = [file_cols, file_cols[::-1]] if len(file_cols) == 2 else [file_cols]
        candidates = [
            _weight_key_columns(keys, cols).merge(
                rows, on=["Agg_Level_1", "Agg_Level_2"], how="left", validate="many_to_one"
            )
            for cols in orders
        ]
        best = max(candidates, key=lambda c: int(c["Weight"].notna().sum()))
        missing = best.loc[best["Weight"].isna(), ID].tolist()
        if missing:
            raise ValueError(
                f"{Path(weights_file).name}: {len(missing)} of {len(best)} series of level {level!r} "
                f"({level_id}) have no weight, e.g. {missing[:5]}"
            )
        pieces.append(pd.DataFrame({ID: best[ID].values, "level": level, "weight": best["Weight"].values}))
    if not pieces:
        return pd.DataFrame({ID: pd.Series(dtype=str), "level": pd.Series(dtype=str), "weight": pd.Series(dtype=float)})
    return pd.concat(pieces, ignore_index=True)


# --------------------------------------------------------------------------------------------- scoring


def _one_step_scales(history: pd.DataFrame, cutoffs: list, rows: np.ndarray | None = None) -> dict:
    """Per window (``cutoff``; None: the whole history): the mean squared and the mean absolute one-step
    difference of each series' history up to it — utilsforecast's RMSSE and MASE denominators (seasonality 1).

    ``history``: categorical ids, one block per series in time order (:func:`trim_leading_zeros`). One pass of
    array operations for every window: utilsforecast's own rmsse/mase each joined and grouped the whole
    history again per window, 6 GB above the history itself at M5 size (83 M rows). ``rows``: a mask of the
    history's rows to use (:func:`_history_rows`; each series' used rows one run), else every row.
    """
    codes = history[ID].cat.codes.to_numpy()
    ids = history[ID].cat.categories
    y = history["y"].to_numpy(dtype=np.float64)
    step = np.diff(y)
    usable = (codes[1:] == codes[:-1]) & np.isfinite(step)  # within one series, both values known
    if rows is not None:
        usable &= rows[1:] & rows[:-1]
    owner, step, ends = codes[1:][usable], step[usable], history["ds"].to_numpy()[1:][usable]
    scales = {}
    for cutoff in cutoffs:
        keep = slice(None) if cutoff is None else ends <= np.datetime64(cutoff)
        count = np.bincount(owner[keep], minlength=len(ids)).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            squared = np.bincount(owner[keep], weights=np.square(step[keep]), minlength=len(ids)) / count
            absolute = np.bincount(owner[keep], weights=np.abs(step[keep]), minlength=len(ids)) / count
        scales[cutoff] = (pd.Series(squared, index=ids), pd.Series(absolute, index=ids))  # NaN: no difference
    return scales


def _per_window_losses(frame: pd.DataFrame, history: pd.DataFrame, models: list[str], rows: np.ndarray | None = None) -> dict[str, pd.DataFrame]:
    """mae, rmse, rmsse and mase (seasonality 1) of ``frame``, one window (cutoff) at a time with the history
    up to that cutoff: utilsforecast's mae, rmse and mse, scaled by :func:`_one_step_scales` (the numbers of
    utilsforecast's rmsse and mase, which are ``sqrt(mse / mean squared step)`` and ``mae / mean |step|``)."""
    from utilsforecast import losses

    cutoffs = [None] if CUTOFF not in frame.columns else list(np.sort(frame[CUTOFF].unique()))
    scales = _one_step_scales(history, cutoffs, rows)
    out: dict[str, list[pd.DataFrame]] = {name: [] for name in ("mae", "rmse", "rmsse", "mase")}
    for cutoff in cutoffs:
        window = frame if cutoff is None else frame[frame[CUTOFF] == cutoff].drop(columns=CUTOFF)
        squared, absolute = scales[cutoff]
        mae = losses.mae(window, models=models)
        mse = losses.mse(window, models=models)
        with np.errstate(invalid="ignore", divide="ignore"):  # a zero scale gives inf, made NaN by the caller
            scores = {
                "mae": mae,
                "rmse": losses.rmse(window, models=models),
                "rmsse": mse.assign(**{m: np.sqrt(mse[m].to_numpy() / squared.reindex(mse[ID]).to_numpy()) for m in models}),
                "mase": mae.assign(**{m: mae[m].to_numpy() / absolute.reindex(mae[ID]).to_numpy() for m in models}),
            }
        for name, table in scores.items():
            out[name].append(table if cutoff is None else table.assign(**{CUTOFF: cutoff}))
    return {name: pd.concat(parts, ignore_index=True) for name, parts in out.items()}


def score_forecasts(
    forecasts: pd.DataFrame,
    actuals: pd.DataFrame,
    train: pd.DataFrame,
    series_keys: pd.DataFrame,
    weights: pd.DataFrame,
    models: list[str] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score point forecasts the M5 way; returns ``(per_series, per_level)``.

    ``forecasts``: wide ``unique_id, ds[, cutoff]`` + one column per model (``models`` defaults to every other
    column). ``actuals``: long true ``y`` over the forecast window(s). ``train``: the history before the window
    (rows of a series at or after its first forecast date are ignored); with a ``cutoff`` column pass the full
    history, each window is scored with ``ds <= cutoff`` and the per-series metrics are averaged over windows
    (NaN windows skipped) before weighting.
    ``weights``: ``unique_id, level, weight`` (:func:`m5_weights` or :func:`sales_share_weights`).

    * per_series: ``unique_id, level, model, rmsse, mase, mae, rmse`` — RMSSE/MASE with the M5 scales
      (history from the first non-zero sale, one-step differences); NaN where the scale is 0/undefined or a
      forecast is missing.
    * per_level: ``level, model, wrmsse, mean_rmsse, mean_mase, n_series, n_excluded, weight_covered``, with
      ``wrmsse = Σ weight·RMSSE / Σ weight`` over the level's scored series (= Σ weight·RMSSE when all are
      scored and the level's weights sum to 1; NaN for a level without weights), then one ``__overall__`` row
      per model whose wrmsse (and means) are the mean over the levels that have one.
    """
    models = _model_columns(forecasts, models)
    frame = _evaluation_frame(forecasts, actuals, series_keys, models)
    # categorical ids (codes) rather than strings, from the start: utilsforecast groups and joins by id, and the
    # history is trimmed and cut per window; on M5-size histories (83 M rows) that is several times faster
    # and gigabytes lighter
    ids = pd.CategoricalDtype(pd.unique(series_keys[ID]))
    frame = frame.astype({ID: ids})
    history, rows = _history_rows(_with_categorical_ids(train, ids), frame, n_series=len(series_keys))
    group_cols = _group_columns(frame)
    long = _incomplete(frame, group_cols, {m: [m] for m in models})
    for name, scores in _per_window_losses(frame, history, models, rows).items():
        long = long.merge(_long(scores, group_cols, models, name), on=[*group_cols, "model"], how="left")
    long.loc[long["_incomplete"], SERIES_METRICS] = np.nan
    long[["rmsse", "mase"]] = _finite_or_nan(long[["rmsse", "mase"]])
    per_series = _average_windows(long, SERIES_METRICS)
    per_series = per_series.assign(**{ID: per_series[ID].astype(object)})
    per_series = per_series.merge(series_keys[[ID, "level"]], on=ID, how="left")
    per_series = _sort_series(per_series, series_keys)[[ID, "level", "model", *SERIES_METRICS]]
    per_level = _weighted_levels(
        per_series, series_keys, weights, "rmsse", "wrmsse", {"rmsse": "mean_rmsse", "mase": "mean_mase"}
    )
    return per_series, per_level


def _sort_series(per_series: pd.DataFrame, series_keys: pd.DataFrame) -> pd.DataFrame:
    """Rows in series_keys order of series, then model order."""
    position = pd.Series(np.arange(len(series_keys)), index=series_keys[ID].values)
    models = {m: i for i, m in enumerate(pd.unique(per_series["model"]))}
    return (
        per_series.assign(_pos=per_series[ID].map(position), _model=per_series["model"].map(models))
        .sort_values(["_pos", "_model"], kind="stable")
        .drop(columns=["_pos", "_model"])
        .reset_index(drop=True)
    )


def _quantile_columns(frame: pd.DataFrame, quantiles: list[float]) -> list[str]:
    """The column of each quantile: named ``q<value>`` (``q0.025``, ``q0.5`` …), matched numerically."""
    found: dict[float, str] = {}
    for column in frame.columns:
        if isinstance(column, str) and column.startswith("q"):
            try:
                found[float(column[1:])] = column
            except ValueError:
                continue
    columns = []
    for q in quantiles:
        match = [c for value, c in found.items() if np.isclose(value, q, rtol=0, atol=1e-12)]
        if not match:
            raise ValueError(f"no column for quantile {q} (expected a column named like 'q{q}')")
        columns.append(match[0])
    return columns


def wspl(
    quantile_forecasts: pd.DataFrame,
    actuals: pd.DataFrame,
    train: pd.DataFrame,
    series_keys: pd.DataFrame,
    weights: pd.DataFrame,
    quantiles: list[float],
) -> pd.DataFrame:
    """M5 weighted scaled pinball loss per level and overall.

    ``quantile_forecasts``: ``unique_id, ds[, cutoff]`` + one column per quantile named like ``q0.025``.
    Per series, the pinball loss is averaged over the horizon and the quantiles and divided by
    :func:`mae_scale` (utilsforecast ``scaled_mqloss`` with seasonality 1 on the trimmed history); windows
    (``cutoff``) are averaged per series as in :func:`score_forecasts`.

    Returns ``level, wspl, mean_spl, n_series, n_excluded, weight_covered``: ``wspl = Σ weight·SPL / Σ weight``
    over the level's scored series, and a last ``__overall__`` row whose wspl is the mean over levels.
    """
    from utilsforecast import losses

    columns = _quantile_columns(quantile_forecasts, quantiles)
    frame = _evaluation_frame(quantile_forecasts, actuals, series_keys, columns)
    history = _history(train, frame, n_series=len(series_keys))
    group_cols = _group_columns(frame)
    model = "quantiles"
    result = losses.scaled_mqloss(
        frame, models={model: columns}, quantiles=np.asarray(quantiles, dtype=float), seasonality=1,
        train_df=history,
    )
    long = _incomplete(frame, group_cols, {model: columns}).merge(
        _long(result, group_cols, [model], "spl"), on=[*group_cols, "model"], how="left"
    )
    long["spl"] = _finite_or_nan(long["spl"]).where(~long["_incomplete"])
    per_series = _average_windows(long, ["spl"]).merge(series_keys[[ID, "level"]], on=ID, how="left")
    table = _weighted_levels(per_series, series_keys, weights, "spl", "wspl", {"spl": "mean_spl"})
    return table.drop(columns="model")


# ------------------------------------------------------------------------------------------- reporting


def _format(value: float, digits: int) -> str:
    """A table cell: fixed decimals, or 'n/a' for a missing value."""
    return "n/a" if pd.isna(value) else f"{value:.{digits}f}"


def accuracy_table_markdown(
    per_level: pd.DataFrame, baseline: str = "SeasonalNaive", value: str = "wrmsse", digits: int = 4
) -> str:
    """A markdown table of ``value`` (default WRMSSE): one row per level in ``per_level`` order (series_keys
    order as produced by :func:`score_forecasts`), the ``__overall__`` row last, one column per model with the
    ``baseline`` column first. Raises ``ValueError`` if the baseline was not scored."""
    models = list(pd.unique(per_level["model"]))
    if baseline not in models:
        raise ValueError(f"baseline model {baseline!r} is not in per_level (models: {models})")
    models = [baseline, *[m for m in models if m != baseline]]
    levels = [lv for lv in pd.unique(per_level["level"]) if lv != OVERALL_LEVEL]
    if (per_level["level"] == OVERALL_LEVEL).any():
        levels.append(OVERALL_LEVEL)
    table = per_level.pivot(index="level", columns="model", values=value).reindex(index=levels, columns=models)
    lines = [
        "| level | " + " | ".join(models) + " |",
        "|---|" + "---:|" * len(models),
    ]
    for level, row in table.iterrows():
        lines.append(f"| {level} | " + " | ".join(_format(v, digits) for v in row) + " |")
    return "\n".join(lines) + "\n"
