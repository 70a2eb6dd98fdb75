"""Row-level validation of raw sales: parse, check with pandera, split into validated rows and a quarantine.

``validate_sales(raw, spec)`` returns ``(validated, quarantine)`` with ``len(validated) + len(quarantine) ==
len(raw)``: nothing is dropped silently. The checks (pandera check names):

==========================  ==========================================================================
``id_not_empty``            every hierarchy id is present and not blank (NaN/None or '' fail)
``ds_is_date``              ``ds`` parses as a date (one format, detected from the values)
``y_is_number``             ``y`` is a finite number (text, empty and NaN fail)
``y_non_negative``          ``y >= 0``
``price_is_number``         ``price`` (if present) is a finite number or empty
``price_non_negative``      ``price >= 0``
``on_frequency``            ``ds`` lies on ``spec.frequency`` (``W-FRI`` → Fridays, ``MS`` → 1st of month)
``unique_key``              bottom ids + ``ds`` unique; the first occurrence is kept, later ones fail
``consistent_hierarchy``    an item in one dept and one cat, a dept in one cat, a store in one state (the
                            M5 parent pairs present); rows of a minority mapping fail (the parent with
                            the most rows is kept; ties → alphabetically first)
``known_id``                rows of a landed file (``source_file`` not one of ``spec.files``) name only ids
                            the source files know, per hierarchy column (a typo'd store would otherwise
                            start a new series); new series start in the source folder
``ds_not_in_future``        ``ds`` is not after ``today`` (when given)
``ds_in_calendar``          ``ds`` is not before the calendar's first day (when a calendar is given); days
                            after its last day are kept (their event/SNAP features read as 0) and counted
                            by ``days_after_calendar``
==========================  ==========================================================================

The parsing and the per-key work are vectorized over pandas ``Categorical`` codes (dates are parsed once per
distinct text, frequencies checked once per distinct date), so ~12 M rows validate in seconds. pandera is
imported inside the function (it is slow to import).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from forecasting_assets.spec import SourceSpec, freq_family

DATE_FORMATS = (
    "%Y-%m-%d",
    "%Y/%m/%d",
    "%Y%m%d",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%dT%H:%M:%S",
    "%m/%d/%Y",
    "%d/%m/%Y",
    "%d.%m.%Y",
    "%d-%m-%Y",
    "%m-%d-%Y",
    "%m/%d/%y",
    "%d/%m/%y",
    "%Y-%m",
)
# Known child → parent pairs of the M5 hierarchy (checked when both columns are hierarchy columns).
KNOWN_PARENTS = (("item_id", "dept_id"), ("item_id", "cat_id"), ("dept_id", "cat_id"), ("store_id", "state_id"))
CHECK_ORDER = (
    "id_not_empty",
    "ds_is_date",
    "y_is_number",
    "y_non_negative",
    "price_is_number",
    "price_non_negative",
    "on_frequency",
    "unique_key",
    "consistent_hierarchy",
    "known_id",
    "ds_not_in_future",
    "ds_in_calendar",
)
_NA_TEXT = frozenset(["", "na", "n/a", "nan", "-nan", "null", "none", "#n/a", "<na>"])
_NAT = np.iinfo(np.int64).min


# --------------------------------------------------------------------------------------------------------------
# Dates
# --------------------------------------------------------------------------------------------------------------


def detect_date_format(values: Any) -> str | None:
    """The strftime format that parses the most of ``values`` (a sample of up to 500 distinct texts).

    pandas' guess for the first value is tried first, then ``DATE_FORMATS`` in order; the first format parsing
    every sampled value wins. None when nothing parses.
    """
    from pandas.tseries.api import guess_datetime_format

    text = pd.Index(pd.Series(values, dtype=object).dropna().astype(str).str.strip().unique())
    text = text[text != ""]
    if not len(text):
        return None
    sample = text[np.unique(np.linspace(0, len(text) - 1, min(len(text), 500)).astype(int))]
    with warnings.catch_warnings():  # "Parsing dates in %d/%m/%Y format when dayfirst=False" is expected here
        warnings.simplefilter("ignore", UserWarning)
        guessed = guess_datetime_format(sample[0])
    candidates = list(dict.fromkeys([f for f in [guessed, *DATE_FORMATS] if f]))
    best, best_rate = None, 0.0
    for fmt in candidates:
        rate = float(pd.to_datetime(sample, format=fmt, errors="coerce").notna().mean())
        if rate > best_rate:
            best, best_rate = fmt, rate
        if rate == 1.0:
            break
    return best


def parse_date_strings(values: Any) -> tuple[pd.DatetimeIndex, str | None]:
    """Parse date texts with one detected format; unparsable values become NaT. Returns (dates, format)."""
    series = pd.Series(values, dtype=object)
    if len(series) and all(isinstance(v, pd.Timestamp) for v in series.dropna().iloc[:1]):
        return pd.DatetimeIndex(pd.to_datetime(series, errors="coerce")), None
    fmt = detect_date_format(series)
    if fmt is None:
        return pd.DatetimeIndex(np.full(len(series), np.datetime64("NaT"), dtype="datetime64[ns]")), None
    text = series.where(series.notna(), "").astype(str).str.strip()
    parsed = pd.to_datetime(text, format=fmt, errors="coerce")
    return pd.DatetimeIndex(parsed).astype("datetime64[ns]"), fmt


# --------------------------------------------------------------------------------------------------------------
# Column preparation (vectorized over categorical codes)
# --------------------------------------------------------------------------------------------------------------


def _categorical(values: pd.Series) -> pd.Categorical:
    from forecasting_assets.ingest.sources import _as_string_categorical

    return _as_string_categorical(values)


def _id_ok_by_code(cat: pd.Categorical) -> np.ndarray:
    """For each category: True when it is not blank."""
    return np.asarray(pd.Index(cat.categories).astype(str).str.strip() != "", dtype=bool)


def _id_ok(cat: pd.Categorical) -> np.ndarray:
    """Rows whose id is present and not blank."""
    codes = np.asarray(cat.codes)
    blank = np.asarray(pd.Index(cat.categories).astype(str).str.strip() == "", dtype=bool)
    blank = np.append(blank, True)  # code -1 → missing
    return ~blank[codes]


def _parse_ds(values: pd.Series) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Rows' dates as int64 ns (``_NAT`` when unparsable), a dense date code (-1 if NaT) and the format."""
    if pd.api.types.is_datetime64_any_dtype(values):
        ns = values.to_numpy(dtype="datetime64[ns]").view(np.int64)
        codes, _ = pd.factorize(ns)
        codes = np.where(ns == _NAT, -1, codes)
        return ns, codes, None
    cat = values.array if isinstance(values.dtype, pd.CategoricalDtype) else pd.Categorical(values)
    parsed, fmt = parse_date_strings(np.asarray(cat.categories, dtype=object))
    cat_ns = np.append(parsed.asi8, _NAT)  # index -1 → NaT
    ds_code_of_cat, _ = pd.factorize(cat_ns)
    ds_code_of_cat = np.where(cat_ns == _NAT, -1, ds_code_of_cat)
    codes = np.asarray(cat.codes)
    return cat_ns[codes], ds_code_of_cat[codes], fmt


def _to_float(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Numbers as float64 (NaN when not a number) and the mask of blank/missing values (vs text)."""
    if pd.api.types.is_bool_dtype(values):
        values = values.astype(str)
    if pd.api.types.is_numeric_dtype(values):
        numbers = values.to_numpy(dtype=np.float64)
        return numbers, np.isnan(numbers)
    if isinstance(values.dtype, pd.CategoricalDtype):
        cats = pd.Series(np.asarray(values.cat.categories, dtype=object))
        cat_numbers, cat_blank = _to_float(cats)
        codes = values.cat.codes.to_numpy()
        return np.append(cat_numbers, np.nan)[codes], np.append(cat_blank, True)[codes]
    obj = pd.Series(values.to_numpy(dtype=object))
    numbers = pd.to_numeric(obj, errors="coerce").to_numpy(dtype=np.float64)
    failed = np.isnan(numbers)
    blank = failed.copy()
    if failed.any():
        sub = obj[failed]
        blank[failed] = (sub.isna() | sub.astype(str).str.strip().str.lower().isin(_NA_TEXT)).to_numpy()
    return numbers, blank


def _combine_codes(code_arrays: list[np.ndarray], sizes: list[int]) -> tuple[np.ndarray, int]:
    """One int64 key per row from non-negative code arrays, and its bound (keys are < bound).

    Mixed-radix, so the key sorts like the tuple of codes while the bound stays below 2**62; beyond that the
    partial key is re-coded densely (order lost, uniqueness kept).
    """
    key = np.zeros(len(code_arrays[0]) if code_arrays else 0, dtype=np.int64)
    bound = 1
    for codes, size in zip(code_arrays, sizes):
        size = max(int(size), 1)
        if bound * size >= 2**62:
            key, uniques = pd.factorize(key)
            key = key.astype(np.int64)
            bound = max(len(uniques), 1)
        key = key * size + codes.astype(np.int64)
        bound *= size
    return key, bound


def _duplicates(key: np.ndarray, bound: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose key appeared on an earlier row, and for those rows the position of that first row (else -1)."""
    n = len(key)
    dup = np.zeros(n, dtype=bool)
    first = np.full(n, -1, dtype=np.int64)
    if n == 0:
        return dup, first
    if bound <= max(4 * n, 1 << 20):  # dense keys: count by direct addressing (the usual, duplicate-free case)
        counts = np.bincount(key, minlength=bound)
        candidates = np.flatnonzero(counts[key] > 1)
    else:
        codes, uniques = pd.factorize(key)
        counts = np.bincount(codes, minlength=len(uniques))
        candidates = np.flatnonzero(counts[codes] > 1)
    if not len(candidates):
        return dup, first
    codes, _ = pd.factorize(key[candidates])  # dense, numbered in order of first appearance
    previous_max = np.maximum.accumulate(np.concatenate(([-1], codes[:-1])))
    is_first = codes > previous_max
    first_of_code = candidates[is_first]
    dup[candidates[~is_first]] = True
    first[candidates[~is_first]] = first_of_code[codes[~is_first]]
    return dup, first


def bottom_key_columns(spec: SourceSpec) -> list[str]:
    """The id columns that identify a bottom series: the hierarchy columns minus known parents of others.

    E.g. ``store_id, item_id`` for the twelve M5 levels, ``store_id, dept_id`` for M5 levels 1–9, every id
    column of a generic hierarchy. (``spec.bottom_level`` is not used: it takes the *first* longest level,
    which for the M5 levels is Level6 ``state_id × cat_id``.)
    """
    hier = spec.hierarchy_columns
    implied = {parent for child, parent in KNOWN_PARENTS if child in hier and parent in hier}
    return [c for c in hier if c not in implied]


# --------------------------------------------------------------------------------------------------------------
# Text helpers for quarantine rows and reasons
# --------------------------------------------------------------------------------------------------------------


def _text(values: pd.Series, pos: np.ndarray) -> pd.Series:
    """The values at positions ``pos`` as text ('' when missing; integral floats without '.0')."""
    sub = values.iloc[pos]
    if isinstance(sub.dtype, pd.CategoricalDtype):
        out = sub.astype(object)
    elif pd.api.types.is_datetime64_any_dtype(sub):
        out = sub.dt.strftime("%Y-%m-%d").astype(object)
    elif pd.api.types.is_float_dtype(sub):
        out = sub.astype(str).str.replace(r"\.0$", "", regex=True).astype(object)
        out = out.where(sub.notna(), None)
    else:
        out = sub.astype(object).map(_format_value)
    out = out.where(pd.notna(out), "").astype(str)
    return pd.Series(out.to_numpy(dtype=object), index=pos)


def _format_value(value: Any) -> Any:
    """A raw value as text: integral floats without '.0', missing stays missing."""
    if isinstance(value, float):
        if np.isnan(value):
            return None
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    return value if value is None or isinstance(value, str) else str(value)


def _quoted(text: pd.Series) -> pd.Series:
    return "'" + text + "'"


# --------------------------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------------------------


def _hierarchy_flags(
    cats: dict[str, pd.Categorical], ok: dict[str, np.ndarray]
) -> dict[str, tuple[np.ndarray, pd.Series]]:
    """Rows with a minority child → parent mapping, per parent column: (bad mask, reason by position)."""
    flags: dict[str, tuple[np.ndarray, pd.Series]] = {}
    for child, parent in KNOWN_PARENTS:
        if child not in cats or parent not in cats:
            continue
        eligible = np.flatnonzero(ok[child] & ok[parent])
        if not len(eligible):
            continue
        c_codes = np.asarray(cats[child].codes)[eligible].astype(np.int64)
        p_codes = np.asarray(cats[parent].codes)[eligible].astype(np.int64)
        n_c, n_p = len(cats[child].categories), len(cats[parent].categories)
        if n_c * n_p <= 50_000_000:
            counts = np.bincount(c_codes * n_p + p_codes, minlength=n_c * n_p).reshape(n_c, n_p)
        else:  # pragma: no cover - huge parent columns: sparse counts
            pair, uniques = pd.factorize(c_codes * n_p + p_codes)
            counts = pd.Series(np.bincount(pair), index=uniques)
            counts = counts.groupby([uniques // n_p, uniques % n_p]).sum().unstack(fill_value=0)
            counts = counts.reindex(index=range(n_c), columns=range(n_p), fill_value=0).to_numpy()
        if (counts > 0).sum(axis=1).max() <= 1:
            continue  # every child has a single parent
        mode = counts.argmax(axis=1)  # most rows; ties → alphabetically first parent
        bad_local = p_codes != mode[c_codes]
        if not bad_local.any():
            continue
        child_total = counts.sum(axis=1)
        pos = eligible[bad_local]
        child_names = np.asarray(cats[child].categories, dtype=object)
        parent_names = np.asarray(cats[parent].categories, dtype=object)
        c_bad = c_codes[bad_local]
        mode_p = mode[c_bad]
        reason = (
            f"{parent} '"
            + pd.Series(parent_names[p_codes[bad_local]], index=pos).astype(str)
            + f"' but {child} '"
            + pd.Series(child_names[c_bad], index=pos).astype(str)
            + f"' is in {parent} '"
            + pd.Series(parent_names[mode_p], index=pos).astype(str)
            + "' in "
            + pd.Series(counts[c_bad, mode_p], index=pos).astype(str)
            + " of its "
            + pd.Series(child_total[c_bad], index=pos).astype(str)
            + " rows"
        )
        mask = np.zeros(len(ok[child]), dtype=bool)
        mask[pos] = True
        if parent in flags:  # keep the first reason of a row already flagged for this parent
            old_mask, old_reason = flags[parent]
            reason = pd.concat([old_reason, reason[~old_mask[pos]]]).sort_index()
            mask |= old_mask
        flags[parent] = (mask, reason)
    return flags


def _on_frequency_table(ds_ns: np.ndarray, frequency: str) -> tuple[np.ndarray, dict[int, str]]:
    """Distinct dates off the frequency (int64 ns) and a reason for each."""
    if freq_family(frequency) == "D":
        return np.array([], dtype=np.int64), {}
    from pandas.tseries.frequencies import to_offset

    offset = to_offset(frequency)
    dates = pd.unique(ds_ns[ds_ns != _NAT])
    stamps = pd.DatetimeIndex(dates.view("datetime64[ns]"))
    off = [i for i, ts in enumerate(stamps) if not offset.is_on_offset(ts)]
    reasons = {
        int(dates[i]): (
            f"ds {stamps[i]:%Y-%m-%d} ({stamps[i]:%A}) is not on the {frequency} frequency; "
            f"the previous {frequency} date is {offset.rollback(stamps[i]):%Y-%m-%d}"
        )
        for i in off
    }
    return np.asarray([dates[i] for i in off], dtype=np.int64), reasons


def quarantine_columns(spec: SourceSpec, has_price: bool) -> list[str]:
    """The columns of the quarantine frame."""
    return (
        ["source_file", "source_row"]
        + spec.hierarchy_columns
        + ["ds", "y"]
        + (["price"] if has_price else [])
        + ["check", "column", "reason"]
    )


def _empty_quarantine(spec: SourceSpec, has_price: bool) -> pd.DataFrame:
    cols = quarantine_columns(spec, has_price)
    return pd.DataFrame(
        {c: pd.Series([], dtype=np.int64 if c == "source_row" else "string") for c in cols}
    )


def days_after_calendar(validated: pd.DataFrame, calendar: pd.DataFrame | None) -> int:
    """Distinct sales days after the calendar's last day (their calendar features are unknown)."""
    if calendar is None or calendar.empty or validated.empty:
        return 0
    days = pd.DatetimeIndex(validated["ds"].unique())
    return int((days > calendar["ds"].max()).sum())


def fractional_sales_rows(validated: pd.DataFrame) -> int:
    """Rows whose sales are not whole numbers: kept (a source may sell by weight), and counted for the UI."""
    y = validated["y"].to_numpy()
    return int(np.count_nonzero(y != np.floor(y)))


def _unknown_ids(raw: pd.DataFrame, spec: SourceSpec, cats: dict[str, pd.Categorical]) -> dict[str, np.ndarray]:
    """Per hierarchy column: rows of landed files whose id never occurs in the source files' rows."""
    source = raw["source_file"]
    base = np.asarray(source.isin(spec.files)) if spec.files else np.zeros(len(raw), dtype=bool)
    if not base.any() or base.all():
        return {}
    flags = {}
    for c in spec.hierarchy_columns:
        codes = np.asarray(cats[c].codes)
        known = np.zeros(len(cats[c].categories) + 1, dtype=bool)  # last entry: code -1 (missing, checked elsewhere)
        known[codes[base]] = True
        known[-1] = True
        unknown = ~base & ~known[codes]
        if unknown.any():
            flags[c] = unknown
    return flags


def validate_sales(
    raw: pd.DataFrame,
    spec: SourceSpec,
    today: pd.Timestamp | None = None,
    calendar: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Validate raw sales rows; returns ``(validated, quarantine)``.

    ``today``: rows dated after it fail ``ds_not_in_future``; ``calendar`` (with a ``ds`` column): rows before
    its first day fail ``ds_in_calendar``. Either may be None (check skipped).

    ``validated``: hierarchy columns (categorical, sorted string categories), ``ds`` (datetime64[ns]), ``y``
    (float64), ``price`` (float64, if present), ``source_file`` (categorical), sorted by hierarchy columns then ``ds``. ``quarantine``: ``source_file,
    source_row``, the raw hierarchy columns, ``ds``, ``y`` (``price``) as text, plus ``check``, ``column`` and
    ``reason`` (joined with ``'; '`` when a row fails several checks), in the order of ``raw``.
    """
    import pandera.pandas as pa

    hier = spec.hierarchy_columns
    missing = [c for c in hier + ["ds", "y"] if c not in raw.columns]
    if missing:
        raise ValueError(f"raw sales lack column(s) {missing} (columns: {list(raw.columns)})")
    n = len(raw)
    has_price = "price" in raw.columns
    if not raw.index.equals(pd.RangeIndex(n)):
        raw = raw.reset_index(drop=True)
    if "source_file" not in raw.columns:
        raw = raw.assign(source_file="<frame>")
    if "source_row" not in raw.columns:
        raw = raw.assign(source_row=np.arange(1, n + 1))

    # --- parse (vectorized over categorical codes) ---------------------------------------------------------
    cats = {c: _categorical(raw[c]) for c in hier}
    ok = {c: _id_ok(cats[c]) for c in hier}
    ds_ns, ds_code, ds_format = _parse_ds(raw["ds"])
    y, y_blank = _to_float(raw["y"])
    price, price_blank = _to_float(raw["price"]) if has_price else (None, None)

    # --- duplicate keys: first occurrence kept ---------------------------------------------------------------
    key_cols = bottom_key_columns(spec)
    key_ok = ds_code >= 0
    for c in key_cols:
        key_ok &= ok[c]
    dup = np.zeros(n, dtype=bool)
    dup_first = np.full(n, -1, dtype=np.int64)
    eligible = np.flatnonzero(key_ok)
    if len(eligible):
        key, bound = _combine_codes(
            [np.asarray(cats[c].codes)[eligible] for c in key_cols] + [ds_code[eligible]],
            [len(cats[c].categories) for c in key_cols] + [int(ds_code.max()) + 1],
        )
        dup_local, first_local = _duplicates(key, bound)
        dup[eligible] = dup_local
        dup_first[eligible[dup_local]] = eligible[first_local[dup_local]]
        del key, dup_local, first_local  # at M5 size each is 59 M rows (0.5 GB as int64)
    del eligible, key_ok

    hierarchy_flags = _hierarchy_flags(cats, ok)
    unknown_ids = _unknown_ids(raw, spec, cats)
    off_dates, off_reasons = _on_frequency_table(ds_ns, spec.frequency)
    today_ns = None if today is None else pd.Timestamp(today).normalize().value
    calendar_start_ns = (
        None if calendar is None or calendar.empty else pd.Timestamp(calendar["ds"].min()).normalize().value
    )

    # --- pandera schema over the parsed frame --------------------------------------------------------------
    # id columns enter as their integer codes (-1 = missing): pandera cannot format NaN failure cases of
    # categorical columns (TypeError in its error message formatter), and codes are cheaper anyway.
    checked = pd.DataFrame({c: np.asarray(cats[c].codes) for c in hier})
    checked["ds"] = ds_ns.view("datetime64[ns]")
    checked["y"] = y
    if has_price:
        checked["price"] = price

    def at(mask: np.ndarray):
        """A check function passing rows where ``mask`` is False (precomputed, aligned on positions)."""
        def check(s: pd.Series) -> pd.Series:
            passed = ~mask if len(s) == len(mask) else ~mask[s.index.to_numpy()]
            return pd.Series(passed, index=s.index)

        return check

    columns: dict[str, Any] = {}
    for c in hier:
        id_table = np.append(_id_ok_by_code(cats[c]), False)  # code -1 (missing) → last entry
        checks = [
            pa.Check(lambda s, t=id_table: pd.Series(t[s.to_numpy()], index=s.index), name="id_not_empty",
                     ignore_na=False)
        ]
        if c in hierarchy_flags:
            checks.append(pa.Check(at(hierarchy_flags[c][0]), name="consistent_hierarchy", ignore_na=False))
        if c in unknown_ids:
            checks.append(pa.Check(at(unknown_ids[c]), name="known_id", ignore_na=False))
        columns[c] = pa.Column(nullable=True, checks=checks)
    ds_checks = [
        pa.Check(lambda s: s.notna(), name="ds_is_date", ignore_na=False),
        pa.Check(at(dup), name="unique_key", ignore_na=True),
    ]
    if len(off_dates):
        ds_checks.append(
            pa.Check(lambda s: ~s.isin(off_dates.view("datetime64[ns]")), name="on_frequency", ignore_na=True)
        )
    if today_ns is not None:
        ds_checks.append(pa.Check(at((ds_code >= 0) & (ds_ns > today_ns)), name="ds_not_in_future", ignore_na=True))
    if calendar_start_ns is not None:
        ds_checks.append(pa.Check(at((ds_code >= 0) & (ds_ns < calendar_start_ns)), name="ds_in_calendar", ignore_na=True))
    columns["ds"] = pa.Column("datetime64[ns]", nullable=True, checks=ds_checks)
    columns["y"] = pa.Column(
        "float64",
        nullable=True,
        checks=[
            pa.Check(lambda s: np.isfinite(s), name="y_is_number", ignore_na=False),
            pa.Check(lambda s: ~(s < 0) | ~np.isfinite(s), name="y_non_negative", ignore_na=True),
        ],
    )
    if has_price:
        columns["price"] = pa.Column(
            "float64",
            nullable=True,
            checks=[
                pa.Check(at(~(np.isfinite(price) | price_blank)), name="price_is_number", ignore_na=False),
                pa.Check(lambda s: ~(s < 0) | ~np.isfinite(s), name="price_non_negative", ignore_na=True),
            ],
        )
    schema = pa.DataFrameSchema(columns, strict=False, coerce=False, name="raw_sales")
    try:
        schema.validate(checked, lazy=True, inplace=True)
        failures = pd.DataFrame(columns=["column", "check", "index"])
    except pa.errors.SchemaErrors as err:
        failures = err.failure_cases
    failures = failures[["column", "check", "index"]]
    unexpected = failures[~failures["check"].isin(CHECK_ORDER)]
    if len(unexpected):
        raise ValueError(f"unexpected schema failures:\n{unexpected.head()}")
    del checked

    # --- reasons, one quarantine row per failing raw row ---------------------------------------------------
    failures = failures.assign(index=failures["index"].astype(np.int64))
    entries: list[tuple[str, str, pd.Series]] = []  # (check, column, reason by position)
    check_rank = {c: i for i, c in enumerate(CHECK_ORDER)}
    column_rank = {c: i for i, c in enumerate(hier + ["ds", "y", "price"])}
    groups = sorted(
        failures.groupby(["check", "column"], sort=False).groups.items(),
        key=lambda kv: (check_rank[kv[0][0]], column_rank.get(kv[0][1], 99)),
    )
    for (check, column), rows in groups:
        pos = np.unique(failures.loc[rows, "index"].to_numpy())
        reason = _reasons(check, column, pos, raw, ds_ns, ds_format, y, y_blank, price, price_blank,
                          key_cols, dup_first, off_reasons, hierarchy_flags, spec, today_ns, calendar_start_ns)
        label = "/".join(key_cols + ["ds"]) if check == "unique_key" else column
        entries.append((check, label, reason))

    del failures, dup, dup_first, ok  # the reasons are built: free these rows before the validated copy
    bad = np.zeros(n, dtype=bool)
    for _, _, reason in entries:
        bad[reason.index.to_numpy()] = True
    q_pos = np.flatnonzero(bad)
    if len(q_pos):
        joined = {k: pd.Series("", index=q_pos, dtype=object) for k in ("check", "column", "reason")}
        for check, column, reason in entries:
            pos = reason.index
            for k, value in (("check", check), ("column", column), ("reason", reason)):
                current = joined[k].loc[pos]
                sep = pd.Series(np.where(current == "", "", "; "), index=pos, dtype=object)
                joined[k].loc[pos] = current + sep + value
        quarantine = pd.DataFrame(
            {
                "source_file": _text(raw["source_file"], q_pos),
                "source_row": raw["source_row"].to_numpy()[q_pos].astype(np.int64),
                **{c: _text(raw[c], q_pos) for c in hier},
                "ds": _text(raw["ds"], q_pos),
                "y": _text(raw["y"], q_pos),
                **({"price": _text(raw["price"], q_pos)} if has_price else {}),
                **joined,
            }
        ).reset_index(drop=True)
        quarantine = quarantine.astype({c: "string" for c in quarantine.columns if c != "source_row"})
    else:
        quarantine = _empty_quarantine(spec, has_price)

    validated = _validated_frame(raw, spec, cats, ds_ns, ds_code, y, price, np.flatnonzero(~bad))
    assert len(validated) + len(quarantine) == n, "row-count invariant broken"
    return validated, quarantine


def _reasons(
    check: str,
    column: str,
    pos: np.ndarray,
    raw: pd.DataFrame,
    ds_ns: np.ndarray,
    ds_format: str | None,
    y: np.ndarray,
    y_blank: np.ndarray,
    price: np.ndarray | None,
    price_blank: np.ndarray | None,
    key_cols: list[str],
    dup_first: np.ndarray,
    off_reasons: dict[int, str],
    hierarchy_flags: dict[str, tuple[np.ndarray, pd.Series]],
    spec: SourceSpec,
    today_ns: int | None = None,
    calendar_start_ns: int | None = None,
) -> pd.Series:
    """Human-readable reasons (indexed by row position) of one check's failures."""
    index = pd.Index(pos)
    if check == "id_not_empty":
        return pd.Series(f"{column} is missing or empty", index=index, dtype=object)
    if check == "ds_is_date":
        text = _text(raw["ds"], pos)
        expected = f"the format {ds_format}" if ds_format else "a recognizable date format"
        return ("ds " + _quoted(text) + f" is not a date in {expected}").where(text.str.strip() != "", "ds is empty")
    if check in ("y_is_number", "price_is_number"):
        name = "y" if check == "y_is_number" else "price"
        text = _text(raw[name], pos)
        blank = (y_blank if name == "y" else price_blank)[pos]
        values = (y if name == "y" else price)[pos]
        reason = (name + " " + _quoted(text) + " is not a number").where(~np.isinf(values), name + " "
                                                                           + _quoted(text) + " is not finite")
        return reason.where(~blank, f"{name} is missing (empty or NaN)")
    if check in ("y_non_negative", "price_non_negative"):
        name = "y" if check == "y_non_negative" else "price"
        return name + " " + _text(raw[name], pos) + " is negative"
    if check == "on_frequency":
        table = pd.Series(list(off_reasons.values()), index=np.fromiter(off_reasons, dtype=np.int64), dtype=object)
        return pd.Series(table.reindex(ds_ns[pos]).to_numpy(), index=index, dtype=object)
    if check == "unique_key":
        first = dup_first[pos]
        text = (
            "duplicate of "
            + _text(raw["source_file"], first).to_numpy()
            + " row "
            + raw["source_row"].to_numpy()[first].astype(str).astype(object)
            + f" (same {', '.join(key_cols)} and ds; the first row is kept)"
        )
        return pd.Series(text, index=index, dtype=object)
    if check == "consistent_hierarchy":
        return hierarchy_flags[column][1].reindex(index)
    if check == "known_id":
        sources = ", ".join(spec.files)
        return (column + " " + _quoted(_text(raw[column], pos))
                + f" is not in the source files ({sources}); new series start there, not in a landed file")
    if check == "ds_not_in_future":
        today_text = pd.Timestamp(today_ns).date().isoformat()
        return "ds " + _quoted(_text(raw["ds"], pos)) + f" is in the future (today is {today_text})"
    if check == "ds_in_calendar":
        first = pd.Timestamp(calendar_start_ns).date().isoformat()
        return "ds " + _quoted(_text(raw["ds"], pos)) + f" is before the calendar's first day {first}"
    raise ValueError(f"unknown check {check}")  # pragma: no cover


def _date_rank(ds_ns: np.ndarray, ds_code: np.ndarray) -> np.ndarray:
    """Each row's rank among the distinct dates (via the dense date codes: O(rows), no sort of all rows)."""
    n_codes = int(ds_code.max()) + 1 if len(ds_code) else 0
    code_ns = np.zeros(n_codes, dtype=np.int64)
    valid = ds_code >= 0
    code_ns[ds_code[valid]] = ds_ns[valid]
    rank = np.empty(n_codes, dtype=np.int64)
    rank[np.argsort(code_ns, kind="stable")] = np.arange(n_codes)
    return np.where(valid, rank[np.maximum(ds_code, 0)], -1)


def _validated_frame(
    raw: pd.DataFrame,
    spec: SourceSpec,
    cats: dict[str, pd.Categorical],
    ds_ns: np.ndarray,
    ds_code: np.ndarray,
    y: np.ndarray,
    price: np.ndarray | None,
    keep: np.ndarray,
) -> pd.DataFrame:
    """The passing rows sorted by hierarchy columns then ds, with the contract dtypes."""
    hier = spec.hierarchy_columns
    every_row = len(keep) == len(ds_ns)  # nothing quarantined (the usual case): no copies to select rows

    def kept(values: np.ndarray) -> np.ndarray:
        return values if every_row else values[keep]

    if len(keep):
        date_rank = kept(_date_rank(ds_ns, ds_code))
        sizes = [len(cats[c].categories) for c in hier] + [int(date_rank.max()) + 1]
        if float(np.prod([float(x) for x in sizes])) < 2**62:  # one order-preserving int64 key (sorted categories)
            key, _ = _combine_codes([kept(np.asarray(cats[c].codes)) for c in hier] + [date_rank], sizes)
            order = None if bool(np.all(key[1:] >= key[:-1])) else keep[np.argsort(key, kind="stable")]
            del key
        else:
            order = keep[np.lexsort([date_rank] + [kept(np.asarray(cats[c].codes)) for c in reversed(hier)])]
        del date_rank
    else:
        order = keep

    def ordered(values: np.ndarray) -> np.ndarray:
        """The kept rows in order (already in order: the kept rows themselves; every row: no copy at all)."""
        return kept(values) if order is None else values[order]

    out: dict[str, Any] = {}
    for c in hier:
        # categorical (sorted string categories): at M5 size (59 M rows) a column of Python strings costs
        # ~0.5 GB and every groupby on it hashes strings; codes cost 2–4 bytes a row
        names = pd.Index(np.asarray(cats[c].categories, dtype=object).astype(str))
        out[c] = pd.Categorical.from_codes(ordered(np.asarray(cats[c].codes)), categories=names)
    out["ds"] = ordered(ds_ns).view("datetime64[ns]")
    out["y"] = ordered(y)
    if price is not None:
        out["price"] = ordered(price)
    source = _categorical(raw["source_file"])
    out["source_file"] = pd.Categorical.from_codes(ordered(np.asarray(source.codes)), categories=pd.Index(source.categories.astype(str)))
    return pd.DataFrame(out, copy=False)
