"""Deterministic generator of realistic M5-shaped (Walmart-like) daily retail sales.

The hierarchy is states → stores and categories → departments → items; a bottom series is one
item in one store (``FOODS_1_001_CA_1``). Sales start on 2011-01-29 like M5. Everything is drawn
from ``numpy.random.default_rng`` streams derived from one seed, so a shape and a seed always give
the same data.

What makes the data realistic:

* item × store unit sales are negative-binomial counts around an item-specific rate: slow items are
  intermittent (mostly zeros), aggregates are smooth;
* weekly seasonality (weekends higher), yearly seasonality per category and per item, store and item
  trends, slow item-level drifts, day-level noise shared by a state and by a store;
* M5-like events (SuperBowl, ValentinesDay, Easter, Thanksgiving, Christmas …) with effects on the day
  and on the days before; stores are closed on Christmas (sales 0);
* SNAP days per state that raise FOODS sales in that state;
* weekly prices per item × store with occasional permanent price changes and temporary promotions that
  raise sales through a price elasticity;
* items launched after day 1 (leading zeros, no price before launch), discontinued items (trailing
  zeros, no price after), and occasional stock-outs.

Output layouts (``write_demo``):

* ``m5`` (default): ``sales.csv`` (wide: ``id, item_id, dept_id, cat_id, store_id, state_id, d_1 … d_N``),
  ``calendar.csv`` (the M5 calendar columns, N + 28 days) and ``sell_prices.csv``
  (``store_id, item_id, wm_yr_wk, sell_price``).
* ``long``: ``sales.csv`` (``date, state_id, store_id, cat_id, dept_id, item_id, sales, price``),
  ``calendar.csv`` and a ``source.yaml`` describing the folder.

Continuation (``next_days_frame`` / ``write_next_days``, to try the automation by hand): the N days after
the latest demo day — the last day of the source folder and of every sales file already in the landing
folder or under its ``archive/`` — as one long file ``sales_<first>_<last>[_drift].csv`` (days as
``YYYY-MM-DD``) in the landing folder, written under a hidden ``.tmp`` name and renamed. Columns: the
source's id columns, ``date`` and ``sales`` (a long source's own date/target/price columns). Every series
continues at its mean per weekday over the last 8 weeks, times a mild noise, as Poisson counts; with drift,
every series' level is multiplied by a factor drawn uniformly in 2–3 and its weekly pattern by
``DRIFT_WEEKLY`` (the weekend peak moves to Monday–Wednesday).

CLI: ``python -m forecasting_assets.demo_data --out FOLDER [--size tiny|small|medium|m5] [--seed N]
[--format m5|long] [--days N] [--states N] [--stores-per-state N[,N…]] [--categories N]
[--depts-per-cat N[,N…]] [--items-per-dept N[,N…]]``, or
``python -m forecasting_assets.demo_data --next-days N --out LANDING_FOLDER [--source SOURCE_FOLDER]
[--drift] [--seed S]``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

START_DATE = "2011-01-29"  # d_1 of M5, a Saturday (the first day of Walmart week 11101)
FUTURE_DAYS = 28  # the calendar covers this many days past the sales (the known future, like M5)
HORIZON = 28
SEASON_LENGTH = 7
FORMATS = ("m5", "long")

STATE_NAMES = ["CA", "TX", "WI"]  # then S4, S5, …
CATEGORY_NAMES = ["FOODS", "HOUSEHOLD", "HOBBIES"]  # then CAT4, CAT5, …
SNAP_CATEGORY = "FOODS"
# SNAP days of the month per state (M5-like); further states reuse these patterns in turn.
SNAP_PATTERNS: list[tuple[int, ...]] = [
    tuple(range(1, 11)),
    (1, 3, 5, 6, 7, 9, 11, 12, 15),
    (2, 3, 5, 6, 8, 9, 11, 12, 14, 15),
]
SNAP_LIFTS = [0.12, 0.16, 0.28]  # relative FOODS lift on SNAP days, per pattern slot

# Typical daily units of an item in a store, per category (M5 averages about 1.1 over all items).
CATEGORY_RATE = {"FOODS": 1.2, "HOUSEHOLD": 0.6, "HOBBIES": 0.45}
CATEGORY_PRICE = {"FOODS": 2.6, "HOUSEHOLD": 5.0, "HOBBIES": 5.5}  # median shelf price
CATEGORY_ELASTICITY = {"FOODS": 2.0, "HOUSEHOLD": 1.6, "HOBBIES": 1.3}
# Yearly seasonality per category: (amplitude in log units, day of year of the peak).
CATEGORY_YEARLY = {"FOODS": (0.04, 220), "HOUSEHOLD": (0.05, 200), "HOBBIES": (0.07, 350)}
# Day-of-week multipliers from M5's total, indexed from Saturday (wday 1) to Friday (wday 7).
WEEKLY_PROFILE = np.array([1.21, 1.20, 0.96, 0.88, 0.87, 0.88, 1.00])

SERIES_CHUNK = 4096  # series per block when drawing sales (bounds memory; fixed for determinism)
LONG_CHUNK = 2000  # series per block when writing the long format


# --------------------------------------------------------------------------------------------------
# Shapes
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoShape:
    """The size of a demo data set.

    ``stores_per_state`` has one entry per state, ``depts_per_cat`` one per category and
    ``items_per_dept`` one per department (in category order); a single int applies to all, and a
    tuple that is too short or too long is cycled / cut to fit.
    """

    states: int = 2
    stores_per_state: int | tuple[int, ...] = 1
    categories: int = 2
    depts_per_cat: int | tuple[int, ...] = 2
    items_per_dept: int | tuple[int, ...] = 2
    days: int = 420
    late_launch_share: float = 0.2  # share of items launched after day 1 (leading zeros)
    discontinued_share: float = 0.05  # share of items that stop selling (trailing zeros)
    volume: float = 1.0  # multiplies every sales rate (small shapes sell more per item)

    def stores(self) -> list[int]:
        """Stores per state, one entry per state."""
        return _fit(self.stores_per_state, self.states)

    def depts(self) -> list[int]:
        """Departments per category, one entry per category."""
        return _fit(self.depts_per_cat, self.categories)

    def items(self) -> list[int]:
        """Items per department, one entry per department."""
        return _fit(self.items_per_dept, sum(self.depts()))

    @property
    def n_stores(self) -> int:
        return sum(self.stores())

    @property
    def n_items(self) -> int:
        return sum(self.items())

    @property
    def n_series(self) -> int:
        """Number of bottom (item × store) series."""
        return self.n_stores * self.n_items


PRESETS: dict[str, DemoShape] = {
    "tiny": DemoShape(2, 1, 2, 2, 2, 420, late_launch_share=0.25, volume=5.0),
    "small": DemoShape(2, 2, 2, 2, 3, 760, late_launch_share=0.2, volume=2.5),
    "medium": DemoShape(3, 2, 3, 2, 10, 1100, late_launch_share=0.2, volume=1.5),
    "m5": DemoShape(
        states=3,
        stores_per_state=(4, 3, 3),
        categories=3,
        depts_per_cat=(3, 2, 2),  # FOODS, HOUSEHOLD, HOBBIES
        items_per_dept=(216, 398, 823, 532, 515, 416, 149),  # FOODS_1..3, HOUSEHOLD_1..2, HOBBIES_1..2
        days=1941,
        late_launch_share=0.3,
        discontinued_share=0.03,
        volume=1.0,
    ),
}
DEFAULT_SIZE = "small"


def _fit(value: int | Sequence[int], n: int) -> list[int]:
    """An int repeated n times, or a sequence cycled/cut to length n; every entry must be >= 1."""
    if n < 1:
        raise ValueError(f"need at least one entry, got n={n}")
    values = [int(value)] * n if isinstance(value, (int, np.integer)) else list(np.resize(list(value), n))
    if min(values) < 1:
        raise ValueError(f"counts must be >= 1, got {values}")
    return [int(v) for v in values]


def resolve_shape(shape: DemoShape | str) -> DemoShape:
    """A DemoShape, or the preset of that name."""
    if isinstance(shape, DemoShape):
        return shape
    if shape not in PRESETS:
        raise ValueError(f"unknown size {shape!r}; choose one of {sorted(PRESETS)}")
    return PRESETS[shape]


# --------------------------------------------------------------------------------------------------
# Hierarchy
# --------------------------------------------------------------------------------------------------


@dataclass
class Hierarchy:
    """Names and index maps of states, stores, categories, departments, items and bottom series."""

    states: list[str]
    stores: list[str]
    store_state: np.ndarray  # store -> state index
    categories: list[str]
    depts: list[str]
    dept_cat: np.ndarray  # dept -> category index
    items: list[str]
    item_dept: np.ndarray  # item -> dept index
    series_store: np.ndarray  # series -> store index (store-major order)
    series_item: np.ndarray  # series -> item index

    @property
    def item_cat(self) -> np.ndarray:
        return self.dept_cat[self.item_dept]

    @property
    def series_state(self) -> np.ndarray:
        return self.store_state[self.series_store]

    @property
    def series_cat(self) -> np.ndarray:
        return self.item_cat[self.series_item]


def state_names(n: int) -> list[str]:
    """CA, TX, WI, then S4, S5, …"""
    return [STATE_NAMES[i] if i < len(STATE_NAMES) else f"S{i + 1}" for i in range(n)]


def category_names(n: int) -> list[str]:
    """FOODS, HOUSEHOLD, HOBBIES, then CAT4, CAT5, …"""
    return [CATEGORY_NAMES[i] if i < len(CATEGORY_NAMES) else f"CAT{i + 1}" for i in range(n)]


def build_hierarchy(shape: DemoShape) -> Hierarchy:
    """The M5-style names of every level for a shape."""
    states = state_names(shape.states)
    stores_per_state = shape.stores()
    stores = [f"{st}_{k + 1}" for st, n in zip(states, stores_per_state) for k in range(n)]
    store_state = np.repeat(np.arange(len(states)), stores_per_state)

    categories = category_names(shape.categories)
    depts_per_cat = shape.depts()
    depts = [f"{cat}_{k + 1}" for cat, n in zip(categories, depts_per_cat) for k in range(n)]
    dept_cat = np.repeat(np.arange(len(categories)), depts_per_cat)

    items_per_dept = shape.items()
    width = max(3, len(str(max(items_per_dept))))
    items = [f"{dept}_{k + 1:0{width}d}" for dept, n in zip(depts, items_per_dept) for k in range(n)]
    item_dept = np.repeat(np.arange(len(depts)), items_per_dept)

    series_store = np.repeat(np.arange(len(stores)), len(items))
    series_item = np.tile(np.arange(len(items)), len(stores))
    return Hierarchy(states, stores, store_state, categories, depts, dept_cat, items, item_dept, series_store, series_item)


# --------------------------------------------------------------------------------------------------
# Calendar: Walmart weeks, events, SNAP
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EventRule:
    """An M5 event: its type, its sales multiplier on the day and on the ``lead`` days before.

    Effects map a category name (or ``"*"`` for every other category) to a multiplier.
    """

    event_type: str
    effect: dict[str, float]
    lead: int = 0
    lead_effect: dict[str, float] | None = None


EVENTS: dict[str, EventRule] = {
    "NewYear": EventRule("National", {"*": 0.78}),
    "OrthodoxChristmas": EventRule("Religious", {"*": 1.0}),
    "MartinLutherKingDay": EventRule("National", {"*": 1.0}),
    "SuperBowl": EventRule("Sporting", {"*": 1.05, "FOODS": 1.18}, 1, {"FOODS": 1.08}),
    "ValentinesDay": EventRule("Cultural", {"*": 0.95, "HOBBIES": 1.10}, 2, {"HOBBIES": 1.08}),
    "PresidentsDay": EventRule("National", {"*": 1.01}),
    "LentStart": EventRule("Religious", {"*": 0.96}),
    "LentWeek2": EventRule("Religious", {"*": 0.96}),
    "StPatricksDay": EventRule("Cultural", {"*": 0.99}),
    "Purim End": EventRule("Religious", {"*": 1.0}),
    "Easter": EventRule("Cultural", {"*": 1.03, "FOODS": 1.06}, 2, {"FOODS": 1.08}),
    "OrthodoxEaster": EventRule("Religious", {"*": 1.0}),
    "Pesach End": EventRule("Religious", {"*": 1.0}),
    "Cinco De Mayo": EventRule("Cultural", {"*": 0.97}),
    "Mother's day": EventRule("Cultural", {"*": 1.03}, 1, {"HOBBIES": 1.10}),
    "MemorialDay": EventRule("National", {"*": 1.05}),
    "NBAFinalsStart": EventRule("Sporting", {"*": 0.95}),
    "NBAFinalsEnd": EventRule("Sporting", {"*": 0.98}),
    "Father's day": EventRule("Cultural", {"*": 1.06}),
    "IndependenceDay": EventRule("National", {"*": 0.90}, 2, {"FOODS": 1.12}),
    "Ramadan starts": EventRule("Religious", {"*": 1.0}),
    "Eid al-Fitr": EventRule("Religious", {"*": 0.98}),
    "LaborDay": EventRule("National", {"*": 1.10}),
    "ColumbusDay": EventRule("National", {"*": 0.98}),
    "Halloween": EventRule("Cultural", {"*": 0.88, "HOBBIES": 1.05}, 4, {"HOBBIES": 1.15, "FOODS": 1.04}),
    "EidAlAdha": EventRule("Religious", {"*": 0.99}),
    "VeteransDay": EventRule("National", {"*": 1.0}),
    "Thanksgiving": EventRule("National", {"*": 0.70}, 2, {"FOODS": 1.20, "*": 1.05}),
    "Christmas": EventRule("National", {"*": 0.0}, 7, {"HOBBIES": 1.30, "HOUSEHOLD": 1.08, "FOODS": 1.06}),
    "Chanukah End": EventRule("Religious", {"*": 1.0}),
}
ISLAMIC_YEAR_DAYS = 354.36708
RAMADAN_ANCHOR = date(2011, 8, 1)


def _nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The n-th (n >= 1) or last (n = -1) given weekday (Monday = 0) of a month."""
    if n > 0:
        first = date(year, month, 1)
        return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))
    last = (date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)) - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _easter(year: int) -> tuple[date, date]:
    """Western Easter Sunday and the paschal full moon (Anonymous Gregorian computus)."""
    a = year % 19
    b, c = divmod(year, 100)
    d, e = divmod(b, 4)
    f = (b + 8) // 25
    g = (b - f + 1) // 3
    h = (19 * a + b - d - g + 15) % 30
    i, k = divmod(c, 4)
    l = (32 + 2 * e + 2 * i - h - k) % 7  # noqa: E741 (the algorithm's name)
    m = (a + 11 * h + 22 * l) // 451
    month, day = divmod(h + l - 7 * m + 114, 31)
    easter = date(year, month, day + 1)
    return easter, easter - timedelta(days=l + 1)


def _orthodox_easter(year: int) -> date:
    """Orthodox Easter Sunday (Meeus' Julian algorithm, + 13 days to Gregorian; 1900–2099)."""
    a, b, c = year % 4, year % 7, year % 19
    d = (19 * c + 15) % 30
    e = (2 * a + 4 * b - d + 34) % 7
    month, day = divmod(d + e + 114, 31)
    return date(year, month, day + 1) + timedelta(days=13)


def _year_events(year: int) -> list[tuple[date, str]]:
    """The dated events of one calendar year (lunar ones approximated), in EVENTS order."""
    easter, full_moon = _easter(year)
    nba_start = _nth_weekday(year, 6, 3, 1)
    mon, thu, sun = 0, 3, 6
    dates = {
        "NewYear": date(year, 1, 1),
        "OrthodoxChristmas": date(year, 1, 7),
        "MartinLutherKingDay": _nth_weekday(year, 1, mon, 3),
        "SuperBowl": _nth_weekday(year, 2, sun, 1),
        "ValentinesDay": date(year, 2, 14),
        "PresidentsDay": _nth_weekday(year, 2, mon, 3),
        "LentStart": easter - timedelta(days=46),
        "LentWeek2": easter - timedelta(days=39),
        "StPatricksDay": date(year, 3, 17),
        "Purim End": full_moon - timedelta(days=29),
        "Easter": easter,
        "OrthodoxEaster": _orthodox_easter(year),
        "Pesach End": full_moon + timedelta(days=8),
        "Cinco De Mayo": date(year, 5, 5),
        "Mother's day": _nth_weekday(year, 5, sun, 2),
        "MemorialDay": _nth_weekday(year, 5, mon, -1),
        "NBAFinalsStart": nba_start,
        "NBAFinalsEnd": nba_start + timedelta(days=17),
        "Father's day": _nth_weekday(year, 6, sun, 3),
        "IndependenceDay": date(year, 7, 4),
        "LaborDay": _nth_weekday(year, 9, mon, 1),
        "ColumbusDay": _nth_weekday(year, 10, mon, 2),
        "Halloween": date(year, 10, 31),
        "VeteransDay": date(year, 11, 11),
        "Thanksgiving": _nth_weekday(year, 11, thu, 4),
        "Christmas": date(year, 12, 25),
        "Chanukah End": full_moon + timedelta(days=254),
    }
    events = [(day, name) for name, day in dates.items() if day.year == year]
    for k in range(-40, 120):  # Islamic (lunar) events drift about 11 days a year
        ramadan = RAMADAN_ANCHOR + timedelta(days=round(k * ISLAMIC_YEAR_DAYS))
        for name, offset in (("Ramadan starts", 0), ("Eid al-Fitr", 30), ("EidAlAdha", 98)):
            day = ramadan + timedelta(days=offset)
            if day.year == year:
                events.append((day, name))
    order = {name: i for i, name in enumerate(EVENTS)}
    return sorted(events, key=lambda ev: (ev[0], order[ev[1]]))


def event_table(first: date, last: date) -> pd.DataFrame:
    """Every event between two dates (inclusive): ``date`` (Timestamp), ``event_name``, ``event_type``."""
    rows = [
        (pd.Timestamp(day), name, EVENTS[name].event_type)
        for year in range(first.year, last.year + 1)
        for day, name in _year_events(year)
        if first <= day <= last
    ]
    return pd.DataFrame(rows, columns=["date", "event_name", "event_type"])


def _fiscal_year_start(years: np.ndarray) -> np.ndarray:
    """Start of Walmart's fiscal year: the last Saturday on or before February 1 (datetime64[D])."""
    feb1 = (years - 1970).astype("datetime64[Y]").astype("datetime64[D]") + np.timedelta64(31, "D")
    weekday = (feb1.astype("int64") + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    return feb1 - ((weekday - 5) % 7).astype("timedelta64[D]")


def wm_yr_wk(dates: pd.DatetimeIndex) -> np.ndarray:
    """M5's Walmart week id, e.g. 11101 for the week starting Saturday 2011-01-29."""
    days = dates.values.astype("datetime64[D]")
    years = dates.year.to_numpy()
    fiscal = np.where(days >= _fiscal_year_start(years), years, years - 1)
    week = (days - _fiscal_year_start(fiscal)).astype("int64") // 7 + 1
    return 10000 + (fiscal % 100) * 100 + week


def snap_pattern(state_index: int) -> tuple[int, ...]:
    """SNAP days of the month of the i-th state."""
    return SNAP_PATTERNS[state_index % len(SNAP_PATTERNS)]


def make_calendar(n_days: int, states: list[str], start: str = START_DATE) -> pd.DataFrame:
    """The M5 calendar for n_days sales days plus FUTURE_DAYS known future days.

    Columns: ``date, wm_yr_wk, weekday, wday, month, year, d, event_name_1, event_type_1,
    event_name_2, event_type_2, snap_<STATE>…``; ``date`` is a ``YYYY-MM-DD`` string, wday 1 is
    Saturday and event columns are empty strings where there is no event.
    """
    dates = pd.date_range(start, periods=n_days + FUTURE_DAYS, freq="D")
    cal = pd.DataFrame(
        {
            "date": dates.strftime("%Y-%m-%d"),
            "wm_yr_wk": wm_yr_wk(dates),
            "weekday": dates.day_name(),
            "wday": (dates.dayofweek.to_numpy() + 2) % 7 + 1,
            "month": dates.month.to_numpy(),
            "year": dates.year.to_numpy(),
            "d": [f"d_{i + 1}" for i in range(len(dates))],
        }
    )
    events = event_table(dates[0].date(), dates[-1].date())
    slot = events.groupby("date").cumcount()
    for k in (1, 2):
        chosen = events[slot == k - 1].set_index("date")
        cal[f"event_name_{k}"] = chosen["event_name"].reindex(dates).fillna("").to_numpy()
        cal[f"event_type_{k}"] = chosen["event_type"].reindex(dates).fillna("").to_numpy()
    day_of_month = dates.day.to_numpy()
    for i, state in enumerate(states):
        cal[f"snap_{state}"] = np.isin(day_of_month, snap_pattern(i)).astype("int64")
    return cal


# --------------------------------------------------------------------------------------------------
# Random parameters
# --------------------------------------------------------------------------------------------------


@dataclass
class SeriesParams:
    """Per bottom series parameters (arrays of length n_series unless noted)."""

    log_base: np.ndarray  # log of the base daily rate
    slope: np.ndarray  # log-trend per year (item + store + own)
    dispersion: np.ndarray  # negative-binomial size (smaller = burstier)
    elasticity: np.ndarray  # price elasticity (> 0)
    launch_week: np.ndarray  # first week with a price and sales
    stop_week: np.ndarray  # first week without (n_weeks if never)
    ramp_days: np.ndarray  # time constant of the post-launch ramp-up (0 = none)
    stockout_start: np.ndarray  # first day of a stock-out (n_days = none)
    stockout_end: np.ndarray


def _cat_value(table: dict[str, float], names: list[str], default: float) -> np.ndarray:
    return np.array([table.get(name, default) for name in names], dtype=np.float64)


def _chosen(rng: np.random.Generator, n: int, share: float, exclude: np.ndarray | None = None) -> np.ndarray:
    """A random subset of ceil(share * n) indices (at least one when share > 0), avoiding ``exclude``."""
    pool = np.setdiff1d(np.arange(n), exclude if exclude is not None else [])
    k = min(len(pool), math.ceil(share * n)) if share > 0 else 0
    return np.sort(rng.choice(pool, size=k, replace=False)) if k else np.array([], dtype=np.int64)


def draw_series_params(h: Hierarchy, shape: DemoShape, rng: np.random.Generator) -> SeriesParams:
    """Rates, trends, dispersion, elasticity, launches, discontinuations and stock-outs."""
    n_series, n_items, n_days = len(h.series_item), len(h.items), shape.days
    sales_weeks = math.ceil(n_days / 7)
    n_weeks = math.ceil((n_days + FUTURE_DAYS) / 7)
    cat_of_dept = [h.categories[c] for c in h.dept_cat]

    dept_rate = _cat_value(CATEGORY_RATE, cat_of_dept, 0.8) * rng.lognormal(0.0, 0.4, len(h.depts))
    item_rate = dept_rate[h.item_dept] * rng.lognormal(-0.5, 1.0, n_items)
    store_factor = rng.lognormal(0.0, 0.25, len(h.stores))
    store_factor /= store_factor.mean()
    own = rng.lognormal(-0.045, 0.3, n_series)
    base = item_rate[h.series_item] * store_factor[h.series_store] * own * shape.volume
    log_base = np.log(np.clip(base, 0.005, 500.0))

    store_slope = rng.normal(0.045, 0.03, len(h.stores))
    item_slope = rng.normal(0.0, 0.08, n_items)
    slope = store_slope[h.series_store] + item_slope[h.series_item] + rng.normal(0.0, 0.03, n_series)

    # Negative-binomial size grows with the rate: slow items are bursty, fast ones closer to Poisson.
    dispersion = rng.lognormal(0.0, 0.4, n_items)[h.series_item] * np.exp(0.6 * np.clip(log_base, np.log(0.1), None))
    dispersion = np.clip(dispersion, 0.2, 30.0)
    item_cats = [h.categories[c] for c in h.series_cat]
    elasticity = np.clip(_cat_value(CATEGORY_ELASTICITY, item_cats, 1.5) + rng.normal(0.0, 0.3, n_series), 0.3, None)

    late = _chosen(rng, n_items, shape.late_launch_share)
    stopped = _chosen(rng, n_items, shape.discontinued_share, exclude=late)
    item_launch = np.zeros(n_items, dtype=np.int64)
    last_launch = max(sales_weeks - 4, 1)
    first_launch = min(4, last_launch - 1)
    item_launch[late] = rng.integers(first_launch, max(int(0.75 * sales_weeks), first_launch + 1), len(late))
    delay = np.where(rng.random(n_series) < 0.5, rng.integers(1, 13, n_series), 0)
    launch_week = item_launch[h.series_item] + np.where(item_launch[h.series_item] > 0, delay, 0)
    launch_week = np.minimum(launch_week, last_launch)
    item_stop = np.full(n_items, n_weeks, dtype=np.int64)
    item_stop[stopped] = rng.integers(sales_weeks // 2, max(sales_weeks - 2, sales_weeks // 2 + 1), len(stopped))
    stop_week = np.maximum(item_stop[h.series_item], launch_week + 1)
    ramp_days = np.where(launch_week > 0, rng.uniform(5.0, 30.0, n_series), 0.0)

    has_stockout = rng.random(n_series) < 0.15
    start = rng.integers(0, n_days, n_series)
    stockout_start = np.where(has_stockout, start, n_days)
    stockout_end = np.where(has_stockout, start + rng.integers(7, 36, n_series), n_days)
    return SeriesParams(log_base, slope, dispersion, elasticity, launch_week, stop_week, ramp_days, stockout_start, stockout_end)


def _shelf_price(price: np.ndarray) -> np.ndarray:
    """Round to a shelf price ending in 8 cents (2.53 -> 2.58), at least 0.18."""
    return np.maximum(np.floor(price * 10.0) / 10.0 + 0.08, 0.18)


def draw_prices(h: Hierarchy, params: SeriesParams, n_weeks: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Weekly shelf and regular prices (series × weeks, float64, NaN outside the selling weeks).

    Regular prices are per item (a few permanent changes, mostly increases) with small state
    differences; promotions are temporary discounts of 10–35 % lasting 1–3 weeks per item × store.
    """
    n_items, n_series = len(h.items), len(h.series_item)
    item_cats = [h.categories[c] for c in h.item_cat]
    base = _cat_value(CATEGORY_PRICE, item_cats, 4.0) * rng.lognormal(0.0, 0.6, n_items)
    changes = (rng.random((n_items, n_weeks)) < 1 / 90) * rng.normal(0.05, 0.07, (n_items, n_weeks))
    changes[:, 0] = 0.0
    item_regular = np.clip(base, 0.2, 60.0)[:, None] * np.exp(np.cumsum(changes, axis=1))
    state_diff = np.where(rng.random((n_items, len(h.states))) < 0.25, rng.lognormal(0.0, 0.04, (n_items, len(h.states))), 1.0)
    regular = _shelf_price(item_regular[h.series_item] * state_diff[h.series_item, h.series_state][:, None])

    starts = rng.random((n_series, n_weeks)) < rng.uniform(0.01, 0.06, n_series)[:, None]
    duration = np.where(starts, rng.integers(1, 4, (n_series, n_weeks)), 0)
    depth_at_start = np.where(starts, rng.uniform(0.10, 0.35, (n_series, n_weeks)), 0.0)
    depth = np.zeros((n_series, n_weeks))
    for lag in range(3):  # a promotion started `lag` weeks ago is still running if it lasts longer
        running = np.where(duration[:, : n_weeks - lag] > lag, depth_at_start[:, : n_weeks - lag], 0.0)
        depth[:, lag:] = np.maximum(depth[:, lag:], running)
    price = np.where(depth > 0, np.round(regular * (1.0 - depth), 2), regular)

    weeks = np.arange(n_weeks)[None, :]
    selling = (weeks >= params.launch_week[:, None]) & (weeks < params.stop_week[:, None])
    return np.where(selling, price, np.nan), np.where(selling, regular, np.nan)


def _price_effect(price: np.ndarray, regular: np.ndarray, elasticity: np.ndarray) -> np.ndarray:
    """Log demand multiplier per series × week: promotions (price below regular) raise sales, and
    permanent price increases lower them a little."""
    with np.errstate(invalid="ignore", divide="ignore"):
        first_regular = regular[np.arange(len(regular)), np.argmax(~np.isnan(regular), axis=1)]
        promo = np.log(price / regular)
        drift = np.log(regular / first_regular[:, None])
    effect = -elasticity[:, None] * (promo + 0.4 * drift)
    return np.nan_to_num(effect, nan=0.0).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Effects on the daily rate (in log units)
# --------------------------------------------------------------------------------------------------


def _category_multipliers(calendar: pd.DataFrame, categories: list[str], n_days: int) -> np.ndarray:
    """Event multipliers per category × day (0 on closed days), from the calendar's events."""
    factor = np.ones((len(categories), n_days))
    names = calendar["event_name_1"].to_numpy()[:n_days], calendar["event_name_2"].to_numpy()[:n_days]
    for column in names:
        for day in np.flatnonzero(column != ""):  # a few dozen events a year
            rule = EVENTS[column[day]]
            factor[:, day] *= [rule.effect.get(cat, rule.effect.get("*", 1.0)) for cat in categories]
            if rule.lead and rule.lead_effect:
                lead = [rule.lead_effect.get(cat, rule.lead_effect.get("*", 1.0)) for cat in categories]
                factor[:, max(day - rule.lead, 0) : day] *= np.array(lead)[:, None]
    return factor


def category_state_effects(h: Hierarchy, calendar: pd.DataFrame, n_days: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Log effects per (category, state) × day and the open-store mask per day.

    Weekly profile, yearly seasonality and events per category; SNAP days raise FOODS in the state;
    day-level noise shared by a state. Row ``c * n_states + s`` is category c in state s.
    """
    n_cat, n_state = len(h.categories), len(h.states)
    t = np.arange(n_days)
    doy = pd.to_datetime(calendar["date"].iloc[:n_days]).dt.dayofyear.to_numpy()
    strength = rng.uniform(0.8, 1.2, n_cat)  # how strong each category's weekend peak is
    weekly = np.log(WEEKLY_PROFILE)[None, :] * strength[:, None]
    weekly = weekly[:, t % 7]  # day 0 is a Saturday (wday 1)
    yearly_params = [CATEGORY_YEARLY.get(c) or (rng.uniform(0.02, 0.08), rng.uniform(0, 365)) for c in h.categories]
    amp, peak = (np.array(v) for v in zip(*yearly_params))
    yearly = amp[:, None] * np.cos(2 * np.pi * (doy[None, :] - peak[:, None]) / 365.25)
    multipliers = _category_multipliers(calendar, h.categories, n_days)
    open_days = (multipliers > 0).any(axis=0)
    events = np.log(np.where(multipliers > 0, multipliers, 1.0))
    per_cat = weekly + yearly + events  # n_cat × n_days

    effects = np.repeat(per_cat, n_state, axis=0)
    effects += np.tile(rng.normal(0.0, 0.03, (n_state, n_days)), (n_cat, 1))
    if SNAP_CATEGORY in h.categories:
        c = h.categories.index(SNAP_CATEGORY)
        for s, state in enumerate(h.states):  # one row per state
            lift = SNAP_LIFTS[s % len(SNAP_LIFTS)]
            effects[c * n_state + s] += np.log1p(lift) * calendar[f"snap_{state}"].to_numpy()[:n_days]
    return effects.astype(np.float32), open_days


def store_effects(h: Hierarchy, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Log effects per store × day: a small weekly tweak and day-level noise."""
    n_store = len(h.stores)
    t = np.arange(n_days)
    weekly = rng.normal(0.0, 0.03, (n_store, 7))[:, t % 7]
    return (weekly + rng.normal(0.0, 0.03, (n_store, n_days))).astype(np.float32)


def item_effects(h: Hierarchy, n_days: int, rng: np.random.Generator) -> np.ndarray:
    """Log effects per item × day: a slow AR(1) drift (weekly knots, interpolated) and yearly seasonality."""
    n_items = len(h.items)
    n_knots = n_days // 7 + 2
    phi, sd = 0.95, 0.04
    knots = np.empty((n_items, n_knots))
    knots[:, 0] = rng.normal(0.0, sd / math.sqrt(1 - phi**2), n_items)
    shocks = rng.normal(0.0, sd, (n_items, n_knots))
    for w in range(1, n_knots):  # a few hundred vector steps
        knots[:, w] = phi * knots[:, w - 1] + shocks[:, w]
    t = np.arange(n_days)
    w, frac = t // 7, (t % 7) / 7.0
    drift = knots[:, w] * (1 - frac) + knots[:, w + 1] * frac

    seasonal = rng.random(n_items) < 0.12
    amp = np.where(seasonal, rng.uniform(0.4, 1.0, n_items), np.abs(rng.normal(0.0, 0.08, n_items)))
    phase = rng.uniform(0.0, 2 * np.pi, n_items)
    angle = 2 * np.pi * t / 365.25
    yearly = np.outer(amp * np.cos(phase), np.cos(angle)) + np.outer(amp * np.sin(phase), np.sin(angle))
    return (drift + yearly).astype(np.float32)


def draw_sales(
    h: Hierarchy,
    params: SeriesParams,
    price_effect: np.ndarray,
    cs_effects: np.ndarray,
    open_days: np.ndarray,
    st_effects: np.ndarray,
    it_effects: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Negative-binomial unit sales (series × days, int32), block by block of SERIES_CHUNK series."""
    n_series, n_days = len(h.series_item), it_effects.shape[1]
    t = np.arange(n_days)
    years = (t / 365.25).astype(np.float32)
    week = t // 7
    cs_row = h.series_cat * len(h.states) + h.series_state
    sales = np.empty((n_series, n_days), dtype=np.int32)
    for lo in range(0, n_series, SERIES_CHUNK):
        s = slice(lo, min(lo + SERIES_CHUNK, n_series))
        log_rate = it_effects[h.series_item[s]]
        log_rate += cs_effects[cs_row[s]]
        log_rate += st_effects[h.series_store[s]]
        log_rate += price_effect[s][:, week]
        log_rate += params.log_base[s, None].astype(np.float32) + params.slope[s, None].astype(np.float32) * years
        rate = np.exp(log_rate, out=log_rate)
        age = t[None, :] - 7 * params.launch_week[s, None]
        with np.errstate(divide="ignore"):  # ramp_days 0 (no ramp) gives exp(-inf) = 0, a factor 1
            ramp = 1.0 - np.exp(-(np.maximum(age, 0) + 1) / params.ramp_days[s, None])
        active = (age >= 0) & (t[None, :] < 7 * params.stop_week[s, None]) & open_days[None, :]
        active &= ~((t[None, :] >= params.stockout_start[s, None]) & (t[None, :] < params.stockout_end[s, None]))
        rate *= np.where(active, ramp, 0.0).astype(np.float32)
        k = params.dispersion[s, None]
        sales[s] = rng.negative_binomial(k, k / (k + rate))
    return sales


# --------------------------------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------------------------------


@dataclass
class DemoData:
    """A generated data set in the M5 layout."""

    sales: pd.DataFrame  # wide: id, item_id, dept_id, cat_id, store_id, state_id, d_1 … d_N
    calendar: pd.DataFrame  # M5 calendar, N + FUTURE_DAYS rows
    prices: pd.DataFrame  # store_id, item_id, wm_yr_wk, sell_price (selling weeks only)
    shape: DemoShape
    seed: int

    @property
    def day_columns(self) -> list[str]:
        return [c for c in self.sales.columns if c.startswith("d_")]

    @property
    def n_days(self) -> int:
        return len(self.day_columns)

    @property
    def n_series(self) -> int:
        return len(self.sales)

    @property
    def dates(self) -> pd.DatetimeIndex:
        """The sales dates (without the future calendar days)."""
        return pd.DatetimeIndex(pd.to_datetime(self.calendar["date"].iloc[: self.n_days]))


ID_COLUMNS = ["id", "item_id", "dept_id", "cat_id", "store_id", "state_id"]
LONG_COLUMNS = ["date", "state_id", "store_id", "cat_id", "dept_id", "item_id", "sales", "price"]


def _streams(seed: int) -> dict[str, np.random.Generator]:
    """Independent generators per component, so that one component's size does not shift another's draws."""
    names = ["series", "prices", "days", "stores", "items", "sales"]
    children = np.random.SeedSequence(seed).spawn(len(names))
    return {name: np.random.default_rng(child) for name, child in zip(names, children)}


def _wide_frame(h: Hierarchy, sales: np.ndarray) -> pd.DataFrame:
    items, stores = np.array(h.items, dtype=object), np.array(h.stores, dtype=object)
    item_id, store_id = items[h.series_item], stores[h.series_store]
    ids = pd.DataFrame(
        {
            "id": [f"{i}_{s}" for i, s in zip(item_id, store_id)],
            "item_id": item_id,
            "dept_id": np.array(h.depts, dtype=object)[h.item_dept[h.series_item]],
            "cat_id": np.array(h.categories, dtype=object)[h.series_cat],
            "store_id": store_id,
            "state_id": np.array(h.states, dtype=object)[h.series_state],
        }
    )
    days = pd.DataFrame(sales, columns=[f"d_{i + 1}" for i in range(sales.shape[1])])
    return pd.concat([ids, days], axis=1)


def _prices_frame(h: Hierarchy, price: np.ndarray, calendar: pd.DataFrame) -> pd.DataFrame:
    s_idx, w_idx = np.nonzero(~np.isnan(price))
    week_ids = calendar["wm_yr_wk"].to_numpy()[::7]
    return pd.DataFrame(
        {
            "store_id": np.array(h.stores, dtype=object)[h.series_store[s_idx]],
            "item_id": np.array(h.items, dtype=object)[h.series_item[s_idx]],
            "wm_yr_wk": week_ids[w_idx],
            "sell_price": np.round(price[s_idx, w_idx], 2),
        }
    )


def generate_demo(shape: DemoShape | str = DEFAULT_SIZE, seed: int = 7) -> DemoData:
    """Generate a deterministic demo data set of the given shape (or preset name)."""
    shape = resolve_shape(shape)
    if shape.days < 1:
        raise ValueError("days must be >= 1")
    h = build_hierarchy(shape)
    calendar = make_calendar(shape.days, h.states)
    rngs = _streams(seed)
    n_weeks = math.ceil(len(calendar) / 7)
    params = draw_series_params(h, shape, rngs["series"])
    price, regular = draw_prices(h, params, n_weeks, rngs["prices"])
    cs_effects, open_days = category_state_effects(h, calendar, shape.days, rngs["days"])
    sales = draw_sales(
        h,
        params,
        _price_effect(price, regular, params.elasticity),
        cs_effects,
        open_days,
        store_effects(h, shape.days, rngs["stores"]),
        item_effects(h, shape.days, rngs["items"]),
        rngs["sales"],
    )
    return DemoData(_wide_frame(h, sales), calendar, _prices_frame(h, price, calendar), shape, seed)


def long_frame(data: DemoData, rows: slice | None = None) -> pd.DataFrame:
    """The long layout of (some rows of) the wide sales: one row per series and day, series-major.

    Columns ``date, state_id, store_id, cat_id, dept_id, item_id, sales, price``; ``price`` is the
    week's sell price, NaN where the item is not sold (before launch, after discontinuation).
    """
    wide = data.sales.iloc[rows if rows is not None else slice(None)]
    n, n_days = len(wide), data.n_days
    cal = data.calendar.iloc[:n_days]
    frame = pd.DataFrame({"date": np.tile(cal["date"].to_numpy(), n)})
    for col in LONG_COLUMNS[1:6]:
        frame[col] = np.repeat(wide[col].to_numpy(), n_days)
    frame["sales"] = wide[data.day_columns].to_numpy().reshape(-1)
    frame["wm_yr_wk"] = np.tile(cal["wm_yr_wk"].to_numpy(), n)
    frame = frame.merge(data.prices, on=["store_id", "item_id", "wm_yr_wk"], how="left")
    return frame.rename(columns={"sell_price": "price"})[LONG_COLUMNS]


def source_yaml(data_file: str = "sales.csv") -> dict[str, object]:
    """The ``source.yaml`` content describing a long-format demo folder."""
    return {
        "format": "long",
        "file": data_file,
        "calendar_file": "calendar.csv",
        "date_column": "date",
        "target_column": "sales",
        "price_column": "price",
        "frequency": "D",
        "season_length": SEASON_LENGTH,
        "horizon": HORIZON,
        "levels": [list(cols) for cols in _m5_levels().values()],
    }


def _m5_levels() -> dict[str, list[str]]:
    from forecasting_assets.spec import M5_LEVELS  # light, but keep module-level imports to numpy/pandas/yaml

    return M5_LEVELS


def _atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through a temporary file in the same folder, then rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _write_long_sales(data: DemoData, path: Path) -> None:
    """Stream the long layout to ``path`` in blocks of LONG_CHUNK series."""
    with open(path, "w", newline="") as handle:
        for lo in range(0, max(data.n_series, 1), LONG_CHUNK):
            block = long_frame(data, slice(lo, lo + LONG_CHUNK))
            block.to_csv(handle, index=False, header=(lo == 0))


def write_data(data: DemoData, folder: str | Path, fmt: str = "m5") -> list[Path]:
    """Write a generated data set into ``folder`` (created if needed) in the ``m5`` or ``long`` layout."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = [_atomic_write(folder / "calendar.csv", lambda p: data.calendar.to_csv(p, index=False))]
    source = folder / "source.yaml"
    if fmt == "m5":
        written.insert(0, _atomic_write(folder / "sales.csv", lambda p: data.sales.to_csv(p, index=False)))
        written.append(_atomic_write(folder / "sell_prices.csv", lambda p: data.prices.to_csv(p, index=False)))
        if source.exists() and (yaml.safe_load(source.read_text()) or {}).get("format") == "long":
            source.unlink()  # a stale long-format description would mislead readers of this folder
    else:
        written.insert(0, _atomic_write(folder / "sales.csv", lambda p: _write_long_sales(data, p)))
        text = yaml.safe_dump(source_yaml(), sort_keys=False, default_flow_style=None)
        written.append(_atomic_write(source, lambda p: p.write_text(text)))
    return written


def write_demo(folder: str | Path, shape: DemoShape | str = DEFAULT_SIZE, seed: int = 7, fmt: str = "m5") -> list[Path]:
    """Generate demo data and write it into ``folder``; returns the files written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {FORMATS}")
    return write_data(generate_demo(shape, seed), folder, fmt)


# --------------------------------------------------------------------------------------------------
# Continuation: the next days after the latest demo day, as one landing file
# --------------------------------------------------------------------------------------------------

HISTORY_WEEKS = 8  # a continued day's rate is its series' mean on that weekday over the last 8 weeks
CONTINUATION_NOISE = 0.15  # sd (log units) of the mean-one log-normal noise per series and day
DRIFT_LEVEL = (2.0, 3.0)  # --drift: every series' level is multiplied by a factor drawn uniformly in this range
# --drift: every series' weekly pattern is multiplied by these factors, Monday … Sunday (then rescaled so that
# its weekly mean changes by the level factor only): the weekend peak moves to Monday–Wednesday.
DRIFT_WEEKLY = np.array([1.40, 1.50, 1.30, 1.00, 0.75, 0.55, 0.50])
_EPOCH = date(1970, 1, 1)


def landed_files(landing: str | Path) -> list[str]:
    """Sales files already in a landing folder, as paths relative to it.

    First those under ``archive/`` (recursively, oldest modification time first), then those directly in the
    folder (by name). Hidden and in-progress names are skipped; other sub-folders (``rejected/``) are not read.
    """
    from forecasting_assets.ingest.landing import ARCHIVE, is_landing_name

    landing = Path(landing)
    if not landing.is_dir():
        return []
    archive = landing / ARCHIVE
    archived: list[Path] = []
    if archive.is_dir():
        for path in archive.rglob("*"):
            hidden = any(part.startswith(".") for part in path.relative_to(archive).parts)
            if not hidden and path.is_file() and is_landing_name(path.name):
                archived.append(path)
        archived.sort(key=lambda p: (p.stat().st_mtime, p.as_posix()))
    current = sorted(p for p in landing.iterdir() if p.is_file() and is_landing_name(p.name))
    return [p.relative_to(landing).as_posix() for p in archived + current]


def _category_days(ds: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """The codes of a raw ``ds`` column and the day of each category (days since 1970-01-01, NaN if unparsable)."""
    from forecasting_assets.ingest.validation import parse_date_strings

    cat = pd.Categorical(ds)
    parsed, _ = parse_date_strings(np.asarray(cat.categories, dtype=object))
    days = np.asarray(parsed.values).astype("datetime64[D]")
    return np.asarray(cat.codes), np.where(np.isnat(days), np.nan, days.astype(np.int64).astype(np.float64))


def _window_rows(frame: pd.DataFrame, hier: list[str], first: int, last: int, with_price: bool) -> dict[str, object]:
    """The rows of a raw sales frame dated ``first`` … ``last`` (day numbers): ids, day in the window, y, price."""
    codes, cat_day = _category_days(frame["ds"])
    inside = (cat_day >= first) & (cat_day <= last)  # NaN (unparsable) compares False
    take = np.flatnonzero((codes >= 0) & inside[np.maximum(codes, 0)]) if len(inside) else np.zeros(0, np.int64)
    rows: dict[str, object] = {c: pd.Categorical(frame[c])[take] for c in hier}
    rows["day"] = (cat_day[codes[take]] - first).astype(np.int64)
    rows["y"] = pd.to_numeric(pd.Series(np.asarray(frame["y"])[take]), errors="coerce").to_numpy(np.float64)
    if with_price:
        price = np.asarray(frame["price"])[take] if "price" in frame.columns else np.full(len(take), np.nan)
        rows["price"] = pd.to_numeric(pd.Series(price), errors="coerce").to_numpy(np.float64)
    return rows


def _series_index(parts: list[dict[str, object]], hier: list[str]) -> tuple[np.ndarray, pd.DataFrame]:
    """A series number per window row (series sorted by their id values) and the ids of every series."""
    from pandas.api.types import union_categoricals

    n_rows = sum(len(p["day"]) for p in parts)
    if not hier:  # a single unnamed series
        return np.zeros(n_rows, dtype=np.int64), pd.DataFrame(index=range(1 if n_rows else 0))
    ids = {c: union_categoricals([p[c] for p in parts], sort_categories=True) for c in hier}
    codes = pd.DataFrame({c: np.asarray(ids[c].codes) for c in hier})
    sid = codes.groupby(hier, sort=True).ngroup().to_numpy(np.int64)
    _, first_row = np.unique(sid, return_index=True)
    labels = pd.DataFrame({c: np.asarray(ids[c].categories, dtype=object)[codes[c].to_numpy()[first_row]] for c in hier})
    return sid, labels


def _last_prices(sid: np.ndarray, day: np.ndarray, price: np.ndarray, n_series: int) -> np.ndarray:
    """Each series' latest known price in the window (NaN when it has none)."""
    known = np.isfinite(price)
    s, d, p = sid[known], day[known], price[known]
    order = np.lexsort((d, s))
    s, p = s[order], p[order]
    last = np.flatnonzero(np.r_[s[1:] != s[:-1], True]) if len(s) else np.zeros(0, np.int64)
    out = np.full(n_series, np.nan)
    out[s[last]] = p[last]
    return out


def next_days_frame(
    source: str | Path | None,
    landing: str | Path,
    n_days: int,
    drift: bool = False,
    seed: int = 7,
) -> pd.DataFrame:
    """The ``n_days`` days after the latest demo day, every series of the source, in the landing layout.

    The latest demo day is the last sales day of ``source`` (default: the project's demo folder) and of every
    sales file already in ``landing`` or under ``landing/archive/`` (so repeated calls continue without gap
    or overlap). Columns: the source's hierarchy id columns and ``date``/``sales`` for an M5-format source
    (e.g. ``item_id, dept_id, cat_id, store_id, state_id, date, sales``); for a long source its own date and
    target columns and, if it has one, its price column (each series' latest price), in the source file's
    column order. Rows are day-major; dates are ``YYYY-MM-DD``; sales are non-negative integers.

    Values: per series and weekday, the mean over the last 8 weeks of history (source and landed files; days
    when nothing at all sold — closed stores — are left out), times a mean-one log-normal noise (sd 0.15) per
    series and day, drawn as Poisson counts. With ``drift``, every series' level is multiplied by a factor
    drawn uniformly in 2–3 and its weekly pattern by ``DRIFT_WEEKLY`` (the weekend peak moves to
    Monday–Wednesday). Deterministic given ``seed``, the first new day and the history.

    ``frame.attrs`` holds ``first_day``, ``last_day`` (ISO dates), ``n_series``, ``date_column``,
    ``target_column`` and ``drift``. Raises ``SourceError`` naming the folder when the source (or a landed
    file) has no readable sales, ``ValueError`` for ``n_days < 1`` or a source that is not daily.
    """
    from forecasting_assets.ingest.landing import landing_spec
    from forecasting_assets.ingest.sources import SourceError, file_columns, load_source_spec, read_raw_sales
    from forecasting_assets.paths import default_demo_folder
    from forecasting_assets.spec import freq_family

    if n_days < 1:
        raise ValueError(f"n_days must be >= 1, got {n_days}")
    source = Path(source) if source is not None else default_demo_folder()
    landing = Path(landing)
    if landing.resolve() == source.resolve():
        raise ValueError(f"the landing folder must not be the source folder ({source})")
    try:
        spec = load_source_spec(source)
        # Prices of an M5 folder are not needed (a long source's price column is: its landing files carry it).
        source_rows = read_raw_sales(source, replace(spec, prices_file=None))
        header = file_columns(source / spec.files[0])
    except SourceError as exc:
        detail = str(exc).removeprefix(f"{source}: ")
        raise SourceError(f"no readable demo sales in {source}: {detail}") from None
    if freq_family(spec.frequency) != "D":
        raise ValueError(f"{source}: continuation needs daily sales, the source's frequency is {spec.frequency!r}")
    frames = [source_rows]
    landed = landed_files(landing)
    if landed:
        try:
            frames.append(read_raw_sales(landing, landing_spec(spec, landed)))
        except SourceError as exc:
            raise SourceError(f"a sales file in the landing folder {landing} cannot be read: {exc}") from None
    del source_rows

    last_days = [np.nanmax(cat_day) for _, cat_day in (_category_days(f["ds"]) for f in frames) if np.isfinite(cat_day).any()]
    if not last_days:
        raise SourceError(f"no readable demo sales in {source}: no row has a parsable date")
    last = int(max(last_days))
    window = HISTORY_WEEKS * 7
    first = last - window + 1

    hier = spec.hierarchy_columns
    long_source = spec.format == "long"
    date_column, target_column = (spec.date_column, spec.target_column) if long_source else ("date", "sales")
    price_column = spec.price_column if long_source else None
    parts = [_window_rows(f, hier, first, last, price_column is not None) for f in frames]
    del frames
    sid, labels = _series_index(parts, hier)
    day = np.concatenate([p["day"] for p in parts])
    y = np.concatenate([p["y"] for p in parts])
    price = np.concatenate([p["price"] for p in parts]) if price_column else None
    n_series = len(labels)
    if n_series == 0:
        raise SourceError(f"no readable demo sales in {source}: no series has a sales day in the last {window} days")

    # A (series, day) given twice keeps its latest version: landed files over the source, newer over older.
    key = sid * window + day
    _, newest = np.unique(key[::-1], return_index=True)
    keep = len(key) - 1 - newest
    sid, day, y = sid[keep], day[keep], y[keep]
    last_price = _last_prices(sid, day, price[keep], n_series) if price is not None else None

    # Weekday means over the window, leaving out days when nothing sold at all (stores closed).
    known = np.isfinite(y)
    total = np.bincount(day[known], weights=y[known], minlength=window)
    closed = (np.bincount(day[known], minlength=window) > 0) & (total == 0)
    used = known & ~closed[day]
    weekday = (first + np.arange(window) + 3) % 7  # Monday = 0 (1970-01-01 was a Thursday)
    cell = sid[used] * 7 + weekday[day[used]]
    sums = np.bincount(cell, weights=y[used], minlength=n_series * 7).reshape(n_series, 7)
    counts = np.bincount(cell, minlength=n_series * 7).reshape(n_series, 7)
    mean = np.divide(sums.sum(axis=1), counts.sum(axis=1), out=np.zeros(n_series), where=counts.sum(axis=1) > 0)
    rate = np.where(counts > 0, sums / np.maximum(counts, 1), mean[:, None])  # series × weekday

    first_new = _EPOCH + timedelta(days=last + 1)
    noise_rng, drift_rng, count_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence([seed, first_new.toordinal()]).spawn(3)
    )
    if drift:
        factor = drift_rng.uniform(*DRIFT_LEVEL, n_series)
        shaped = rate * DRIFT_WEEKLY[None, :]
        old, new = rate.mean(axis=1), shaped.mean(axis=1)
        rate = shaped * np.divide(factor * old, new, out=np.zeros(n_series), where=new > 0)[:, None]
    new_days = last + 1 + np.arange(n_days)
    noise = np.exp(noise_rng.normal(-0.5 * CONTINUATION_NOISE**2, CONTINUATION_NOISE, (n_series, n_days)))
    sales = count_rng.poisson(rate[:, (new_days + 3) % 7] * noise).astype(np.int64)

    dates = np.datetime_as_string(new_days.astype("datetime64[D]"), unit="D")
    out: dict[str, object] = {c: np.tile(labels[c].to_numpy(), n_days) for c in hier}
    out[date_column] = np.repeat(dates, n_series)
    out[target_column] = sales.T.reshape(-1)
    if price_column:
        out[price_column] = np.tile(last_price, n_days)
    position = {c: i for i, c in enumerate(header)}
    columns = sorted(out, key=lambda c: position.get(c, len(header)))  # stable: date, target after M5 ids
    frame = pd.DataFrame(out)[columns]
    frame.attrs.update(
        first_day=str(dates[0]),
        last_day=str(dates[-1]),
        n_series=n_series,
        date_column=date_column,
        target_column=target_column,
        drift=bool(drift),
    )
    return frame


def next_days_file_name(first_day: str, last_day: str, drift: bool = False) -> str:
    """``sales_<first>_<last>.csv`` (``…_drift.csv`` for drifted days); days as ``YYYY-MM-DD``."""
    return f"sales_{first_day}_{last_day}{'_drift' if drift else ''}.csv"


def write_next_days_frame(frame: pd.DataFrame, landing: str | Path) -> Path:
    """Write a ``next_days_frame`` into ``landing`` (created if needed) atomically: through a hidden
    ``.<name>.<pid>.tmp`` file in the same folder, renamed to its final name with ``os.replace``."""
    landing = Path(landing)
    landing.mkdir(parents=True, exist_ok=True)
    name = next_days_file_name(frame.attrs["first_day"], frame.attrs["last_day"], frame.attrs.get("drift", False))
    return _atomic_write(landing / name, lambda p: frame.to_csv(p, index=False))


def write_next_days(
    source: str | Path | None,
    landing: str | Path,
    n_days: int,
    drift: bool = False,
    seed: int = 7,
) -> Path:
    """Write the next ``n_days`` demo days as one long sales file into ``landing``; returns its path
    (``sales_<first>_<last>[_drift].csv``). See ``next_days_frame``."""
    return write_next_days_frame(next_days_frame(source, landing, n_days, drift=drift, seed=seed), landing)


# --------------------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------------------


def _counts(text: str) -> int | tuple[int, ...]:
    """'3' -> 3, '4,3,3' -> (4, 3, 3)."""
    values = tuple(int(v) for v in text.split(",") if v.strip())
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive counts like 3 or 4,3,3, got {text!r}")
    return values[0] if len(values) == 1 else values


CONTINUATION_HELP = """\
continuation mode (to try the automation by hand):
  python -m forecasting_assets.demo_data --next-days N --out LANDING_FOLDER [--source SOURCE_FOLDER] [--drift] [--seed S]

  writes the N days after the latest demo day (the last day of the source folder and of every sales file
  already in LANDING_FOLDER and LANDING_FOLDER/archive/) as one long sales file
  LANDING_FOLDER/sales_<first YYYY-MM-DD>_<last YYYY-MM-DD>[_drift].csv, written under a hidden .tmp name
  and renamed, so the landing sensor never sees it half-written. Columns: the source's id columns, date and
  sales (a long source's own column names). Each series continues at its mean per weekday over the last
  8 weeks, with mild noise, as Poisson counts. --drift multiplies every series' level by a factor drawn in
  2-3 and changes its weekly pattern (the weekend peak moves to Monday-Wednesday), so drift checks fire.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m forecasting_assets.demo_data",
        description="Write realistic M5-shaped demo sales data, or continue it with the next days (--next-days).",
        epilog=CONTINUATION_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--out", type=Path, default=None,
        help="output folder (default: <home>/data/demo; with --next-days: the landing folder, default <home>/data/landing)",
    )  # fmt: skip
    parser.add_argument("--size", choices=sorted(PRESETS), default=None, help=f"preset shape (default {DEFAULT_SIZE})")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--format", dest="fmt", choices=FORMATS, default=None, help="m5 (wide, default) or long")
    parser.add_argument("--days", type=int, help="number of sales days")
    parser.add_argument("--states", type=int)
    parser.add_argument("--stores-per-state", type=_counts, help="N or one count per state, e.g. 4,3,3")
    parser.add_argument("--categories", type=int)
    parser.add_argument("--depts-per-cat", type=_counts, help="N or one count per category")
    parser.add_argument("--items-per-dept", type=_counts, help="N or one count per department")
    cont = parser.add_argument_group("continuation (instead of generating)")
    cont.add_argument("--next-days", type=int, metavar="N", help="write the N days after the latest demo day into --out")
    cont.add_argument("--source", type=Path, default=None, help="demo folder to continue (default: <home>/data/demo)")
    cont.add_argument(
        "--drift", action="store_true",
        help="drifted days: every series' level x U(2, 3) and its weekly peak moved from the weekend to Mon-Wed",
    )  # fmt: skip
    return parser


_GENERATION_FLAGS = {
    "size": "--size", "fmt": "--format", "days": "--days", "states": "--states",
    "stores_per_state": "--stores-per-state", "categories": "--categories",
    "depts_per_cat": "--depts-per-cat", "items_per_dept": "--items-per-dept",
}  # fmt: skip


def shape_from_args(args: argparse.Namespace) -> DemoShape:
    """The preset named by ``--size`` with the command-line overrides applied."""
    fields = ["days", "states", "stores_per_state", "categories", "depts_per_cat", "items_per_dept"]
    overrides = {name: getattr(args, name) for name in fields if getattr(args, name) is not None}
    shape = replace(PRESETS[args.size or DEFAULT_SIZE], **overrides)
    if shape.days < 1 or shape.states < 1 or shape.categories < 1:
        raise SystemExit("--days, --states and --categories must be >= 1")
    return shape


def _size_text(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1024 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return ""


def describe(data: DemoData, files: list[Path], seconds: float) -> str:
    """A few lines saying what was written."""
    shape, dates = data.shape, data.dates
    lines = [
        f"wrote {len(files)} files to {files[0].parent} in {seconds:.2f} s (seed {data.seed})",
        f"  {data.n_series:,} bottom series (item x store): {shape.states} states, {shape.n_stores} stores, "
        f"{shape.categories} categories, {sum(shape.depts())} departments, {shape.n_items:,} items",
        f"  {data.n_days:,} days: {dates[0]:%Y-%m-%d} .. {dates[-1]:%Y-%m-%d} "
        f"(calendar to {data.calendar['date'].iloc[-1]}), {int(data.sales[data.day_columns].to_numpy().sum()):,} units",
    ]
    lines += [f"  {path.name:<16} {_size_text(path.stat().st_size)}" for path in files]
    return "\n".join(lines)


def _continue(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[Path]:
    """``--next-days``: write the next days into the landing folder and say what was written."""
    from forecasting_assets.ingest.sources import SourceError
    from forecasting_assets.paths import landing_dir

    given = [flag for name, flag in _GENERATION_FLAGS.items() if getattr(args, name) is not None]
    if given:
        parser.error(f"--next-days continues existing demo data and cannot be combined with {', '.join(given)}")
    if args.next_days < 1:
        parser.error(f"--next-days must be >= 1, got {args.next_days}")
    landing = args.out if args.out is not None else landing_dir()
    started = time.perf_counter()
    try:
        frame = next_days_frame(args.source, landing, args.next_days, drift=args.drift, seed=args.seed)
        path = write_next_days_frame(frame, landing)
    except (SourceError, ValueError) as exc:
        raise SystemExit(f"error: {exc}") from None
    a = frame.attrs
    print(
        f"wrote {path} in {time.perf_counter() - started:.2f} s: {len(frame):,} rows "
        f"({a['n_series']:,} series x {args.next_days} days, {a['first_day']} .. {a['last_day']}"
        f"{', drifted' if args.drift else ''}, {int(frame[a['target_column']].sum()):,} units)"
    )
    return [path]


def main(argv: Sequence[str] | None = None) -> list[Path]:
    """Command-line entry point; returns the files written."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.next_days is not None:
        return _continue(parser, args)
    if args.source is not None or args.drift:
        parser.error("--source and --drift only apply with --next-days")
    shape = shape_from_args(args)
    if args.out is None:
        from forecasting_assets.paths import default_demo_folder

        args.out = default_demo_folder()
    started = time.perf_counter()
    data = generate_demo(shape, args.seed)
    files = write_data(data, args.out, args.fmt or "m5")
    print(describe(data, files, time.perf_counter() - started))
    return files


if __name__ == "__main__":
    main()
