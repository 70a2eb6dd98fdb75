"""Exogenous features per series and period, all known over the forecast horizon: events and SNAP days (from
the calendar, :func:`calendar_exogenous`), the price against its recent regular price (:func:`price_exogenous`)
and how the sales of the series' store and department have been moving (:func:`parent_change_exogenous`).

For a series inside one state, ``snap`` is that state's SNAP flag; for a series spanning several states
(the total, a category) it is the share of states with SNAP that day. Event columns are the same for
every series: ``is_event``, one ``event_<type>`` flag per event type in the calendar, and which event it
is and how near the previous and the next one are (:func:`event_proximity`): a store's sales move on the
days around an event (the Friday before Easter, New Year's Eve) as much as on the event itself, and each
event its own way (Christmas: stores closed).
"""

from __future__ import annotations

import re
import zlib

import numpy as np
import pandas as pd

from forecasting_assets.hierarchy.aggregation import key_hierarchy_columns
from forecasting_assets.schedule import periods_per_year


def _snap_columns(calendar: pd.DataFrame) -> dict[str, str]:
    return {col[len("snap_"):]: col for col in calendar.columns if col.startswith("snap_")}


def _snap_owner_column(series_keys: pd.DataFrame, members: list[str]) -> str | None:
    """The hierarchy column whose values are the SNAP suffixes (e.g. state_id for snap_CA)."""
    for col in key_hierarchy_columns(series_keys):
        values = set(series_keys[col].dropna().astype(str))
        if values and values <= set(members):
            return col
    return None


EVENT_WINDOW = 7  # periods before and after an event that its proximity features see


def event_code(names: pd.Series) -> np.ndarray:
    """A number per event name (0: no event), the same for a name in every calendar and run: a hash of the
    names, sorted ("Easter|OrthodoxEaster" and "OrthodoxEaster|Easter" are one), so that a model trained on
    one calendar reads the codes of a longer one the same way."""
    def code(joined: str) -> int:
        parts = sorted(p.strip() for p in joined.split("|") if p.strip())
        return zlib.crc32("|".join(parts).encode()) % (2**23) + 1 if parts else 0  # exact in float32

    return np.array([code(n) for n in names.fillna("").astype(str)], dtype=np.float32)


def event_proximity(codes: np.ndarray, window: int = EVENT_WINDOW) -> dict[str, np.ndarray]:
    """Per period of a calendar (in order, one row per period), from its event codes:

    * ``event_code``: the event of the period (0: none);
    * ``periods_to_event`` / ``next_event_code``: periods until the next event (1 = the next period), and
      which one, within ``window`` (beyond: ``window + 1`` and 0);
    * ``periods_since_event`` / ``last_event_code``: the same for the previous event.
    """
    position = np.arange(len(codes))
    events = position[codes > 0]
    if len(events):  # the first event after each period, and the last one before it (-1: none)
        after = np.searchsorted(events, position, side="right")
        before = np.searchsorted(events, position, side="left") - 1
        next_pos = np.where(after < len(events), events[np.minimum(after, len(events) - 1)], -1)
        last_pos = np.where(before >= 0, events[np.maximum(before, 0)], -1)
    else:
        next_pos = last_pos = np.full(len(codes), -1)
    to_next = np.where(next_pos >= 0, next_pos - position, window + 1)
    since_last = np.where(last_pos >= 0, position - last_pos, window + 1)
    near_next, near_last = to_next <= window, since_last <= window
    return {
        "event_code": codes.astype(np.float32),
        "periods_to_event": np.minimum(to_next, window + 1).astype(np.float32),
        "next_event_code": np.where(near_next, codes[np.clip(next_pos, 0, None)], 0).astype(np.float32),
        "periods_since_event": np.minimum(since_last, window + 1).astype(np.float32),
        "last_event_code": np.where(near_last, codes[np.clip(last_pos, 0, None)], 0).astype(np.float32),
    }


def calendar_exogenous(series_keys: pd.DataFrame, calendar: pd.DataFrame | None) -> pd.DataFrame | None:
    """unique_id, ds, is_event, event_<type>..., event_code, periods_to_event, next_event_code,
    periods_since_event, last_event_code (:func:`event_proximity`), snap — for every series and calendar day
    (history + future)."""
    if calendar is None or calendar.empty:
        return None
    calendar = calendar.sort_values("ds", kind="stable").reset_index(drop=True)
    per_day = pd.DataFrame({"ds": pd.to_datetime(calendar["ds"])})
    names = calendar.get("event_name", pd.Series("", index=calendar.index)).fillna("").astype(str)
    types = calendar.get("event_type", pd.Series("", index=calendar.index)).fillna("").astype(str)
    per_day["is_event"] = (names != "").astype(np.float32).to_numpy()
    for event_type in sorted({t for joined in types for t in joined.split("|") if t}):
        slug = re.sub(r"[^a-z0-9]+", "_", event_type.lower()).strip("_")
        per_day[f"event_{slug}"] = types.str.split("|").apply(lambda ts, e=event_type: e in ts).astype(np.float32).to_numpy()
    for column, values in event_proximity(event_code(names)).items():
        per_day[column] = values

    ids = series_keys["unique_id"].to_numpy()
    # every series' copy of the calendar, column by column (a concat of one frame per series took seconds at
    # M5 size: 42,840 series)
    frame = pd.DataFrame({"unique_id": np.repeat(ids, len(per_day)), **{c: np.tile(per_day[c].to_numpy(), len(ids)) for c in per_day.columns}})

    snaps = _snap_columns(calendar)
    if snaps:
        owner = _snap_owner_column(series_keys, list(snaps))
        snap_matrix = calendar[list(snaps.values())].to_numpy(dtype=np.float32)  # days x members
        member_index = {member: i for i, member in enumerate(snaps)}
        if owner is not None:
            owned = series_keys[owner].astype("string").map(member_index)
            column_for_series = owned.fillna(-1).astype(int).to_numpy()
        else:
            column_for_series = np.full(len(ids), -1)
        share = snap_matrix.mean(axis=1)
        values = np.where(
            column_for_series[:, None] >= 0,
            snap_matrix[:, np.clip(column_for_series, 0, None)].T,
            share[None, :],
        )
        frame["snap"] = values.reshape(-1).astype(np.float32)
    return frame


def price_exogenous(
    sales: pd.DataFrame,
    bottom_columns: list[str],
    structure: pd.DataFrame,
    season_length: int,
    horizon: int,
    freq: str,
) -> pd.DataFrame | None:
    """unique_id, ds, price_ratio for every series: the price relative to its recent regular price.

    Bottom series: price / rolling max of the price over the last 8 seasons (a promotion shows as < 1,
    a permanent change fades out). Parent series: the mean ratio of their members. Missing prices
    (before launch) count as regular (1.0). Beyond the last known price the ratio is carried forward
    over the horizon. None when the source has no price.

    Vectorized over a members × periods matrix: the parents' means are one sparse product with the
    summing structure, so the cost is linear in the number of series.
    """
    from scipy import sparse

    from forecasting_assets.hierarchy.aggregation import bottom_matrix

    if "price" not in sales.columns or sales["price"].notna().sum() == 0:
        return None
    dates = pd.date_range(sales["ds"].min(), sales["ds"].max(), freq=freq)
    bottom_ids, prices = bottom_matrix(sales, bottom_columns, "price", dates, fill=np.nan)
    window = max(2, 8 * max(season_length, 1))
    regular = pd.DataFrame(prices.T).rolling(window, min_periods=1).max().to_numpy().T  # NaN prices are skipped
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.clip(np.nan_to_num(prices / regular, nan=1.0, posinf=1.0), 0.0, 2.0)
    future_dates = pd.date_range(dates[-1], periods=horizon + 1, freq=freq)[1:]
    ratios = np.hstack([ratios, np.repeat(ratios[:, -1:], len(future_dates), axis=1)])

    series_ids = pd.Index(structure["unique_id"].drop_duplicates())
    rows = series_ids.get_indexer(structure["unique_id"])
    cols = pd.Index(bottom_ids).get_indexer(structure["bottom_id"])
    known = cols >= 0
    summing = sparse.csr_matrix((np.ones(known.sum()), (rows[known], cols[known])), shape=(len(series_ids), len(bottom_ids)))
    counts = np.asarray(summing.sum(axis=1)).reshape(-1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(counts > 0, (summing @ ratios) / counts, 1.0)
    all_dates = dates.append(future_dates)
    return pd.DataFrame(
        {
            "unique_id": np.repeat(series_ids.to_numpy(dtype=object), len(all_dates)),
            "ds": np.tile(all_dates.to_numpy(), len(series_ids)),
            "price_ratio": means.reshape(-1).astype(np.float32),
        }
    )


def parent_change_exogenous(
    sales: pd.DataFrame,
    series_keys: pd.DataFrame,
    bottom_columns: list[str],
    season_length: int,
    horizon: int,
    freq: str,
    start: pd.Timestamp | None = None,
) -> pd.DataFrame | None:
    """unique_id, ds and two features per bottom-level column (a store, a department, …) that tell a series how
    the sales it belongs to have been moving: ``<column>_recent_change`` and ``<column>_yearly_change``.

    For ``store_id`` they are read from the series' store's total sales (every department), for ``dept_id`` from
    its department's total (every store); a series spanning several values of the column (a department over
    every store) reads the grand total. Both look only at periods at least ``horizon`` back, so they are known
    over the whole horizon and a backtest window never sees its own sales:

    * ``recent_change``: log of the mean of the last season (7 days) over the mean of the last four seasons;
    * ``yearly_change``: log of the mean of the last four seasons over the same periods a year before.

    Logs of ``1 + sales``, so zero-sale periods stay finite; 0 where the history is too short. None when the
    bottom level has no key columns. Rows from ``start`` (default: the first sale; the changes are computed
    on all the sales either way) to ``horizon`` periods after the last sale.
    """
    columns = [c for c in bottom_columns if c in sales.columns and c in series_keys.columns]
    if not columns or sales.empty:
        return None
    s = max(season_length, 1)
    year = max(s, round(periods_per_year(freq) / s) * s)
    step = pd.tseries.frequencies.to_offset(freq)
    dates = pd.date_range(sales["ds"].min(), sales["ds"].max() + step * horizon, freq=freq)
    total = sales.groupby("ds", observed=True)["y"].sum()
    kept = dates >= start if start is not None else np.ones(len(dates), dtype=bool)
    n_series, n_dates = len(series_keys), int(kept.sum())
    out = pd.DataFrame({"unique_id": np.repeat(series_keys["unique_id"].to_numpy(), n_dates), "ds": np.tile(dates[kept], n_series)})
    for column in columns:
        totals = sales.groupby([column, "ds"], observed=True)["y"].sum().unstack(column)
        totals.columns = totals.columns.astype(str)
        totals["__total__"] = total
        known = totals.reindex(dates).fillna(0.0).shift(horizon)  # at t: the sales of t - horizon
        short, long = (np.log1p(known.rolling(w, min_periods=1).mean()) for w in (s, 4 * s))
        recent = (short - long).fillna(0.0)
        yearly = (long - long.shift(year)).fillna(0.0)
        owner = series_keys[column].astype("string").fillna("__total__").to_numpy()
        index = recent.columns.get_indexer(owner)
        index = np.where(index >= 0, index, recent.columns.get_loc("__total__"))  # a value without sales: the total's
        out[f"{column}_recent_change"] = recent.to_numpy(np.float32)[kept][:, index].T.reshape(-1)
        out[f"{column}_yearly_change"] = yearly.to_numpy(np.float32)[kept][:, index].T.reshape(-1)
    return out
