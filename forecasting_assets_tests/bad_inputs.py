"""The bad-input matrix: each messy extract a retailer sends, fed through the real ingest code, and what happened.

Every case starts from the tiny demo project (an M5-style source folder) and either drops one file into
the landing folder — the way new sales arrive every night — or changes the source folder itself. The
harness then does what the pipeline does, with the pipeline's own functions: ``scan_landing`` (archive or
reject the file, as ``landing_folder_sensor`` does), ``read_landing_file`` + ``concat_raw_sales`` (the
``landed_sales`` and ``raw_sales`` assets), ``validate_sales`` (``validated_sales`` / ``sales_quarantine``),
``build_hierarchy`` (``hierarchical_series``), ``latest_day_coverage`` (the blocking check
``latest_day_is_complete``) and ``forecast_statistical`` (``base_forecasts``).

``test_bad_input.py`` asserts the expected outcome of each case; ``docs/bad-input.md`` is this module's
rendering of the observed outcomes (``make docs`` rewrites it, a test keeps it in step)::

    python -m forecasting_assets_tests.bad_inputs > docs/bad-input.md
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

# "today" of the validation in these cases (the pipeline uses the real date in $FORECASTING_TIMEZONE)
TODAY = pd.Timestamp("2026-11-23")
NAME = "sales_new.csv"  # the case's landing file
REFUSED, QUARANTINED, ACCEPTED = "file refused", "rows quarantined", "accepted"

Files = list[tuple[str, bytes]]  # (file name, content) dropped into the landing folder in this order


@dataclass
class Case:
    key: str
    title: str
    what: str  # what is wrong with the input, for the docs
    expect: str  # REFUSED / QUARANTINED / ACCEPTED
    expect_text: str  # a fragment of what the user is told
    landing: Callable[[pd.DataFrame], Files] | None = None  # given `days` normal next days
    source: Callable[[Path], str] | None = None  # changes the source folder; returns the series it touched
    days: int = 3


@dataclass
class Observation:
    outcome: str
    message: str
    rows_in: int = 0
    quarantined: int = 0
    facts: list[str] = field(default_factory=list)


def _csv(frame: pd.DataFrame, **kwargs) -> bytes:
    return frame.to_csv(index=False, **kwargs).encode()


def _with(frame: pd.DataFrame, row: int, **values) -> pd.DataFrame:
    frame = frame.astype({c: object for c in values}).copy()
    for column, value in values.items():
        frame.loc[row, column] = value
    return frame


def _truncated(frame: pd.DataFrame) -> Files:
    text = _csv(frame)
    return [(NAME, text[: len(text) - 12])]  # the write stopped 12 bytes before the end


def _across_files(frame: pd.DataFrame) -> Files:
    first_day = frame[frame["date"] == frame["date"].min()]
    corrected = first_day.assign(sales=first_day["sales"] + 1)
    return [("sales_first.csv", _csv(frame)), ("sales_correction.csv", _csv(corrected))]


def _five_times(frame: pd.DataFrame) -> Files:
    days = sorted(frame["date"].unique())
    earlier = [(f"sales_{i}.csv", _csv(frame[frame["date"] == day])) for i, day in enumerate(days[:2])]
    last = frame[frame["date"] == days[2]]
    return earlier + [(NAME, _csv(pd.concat([last] * 6, ignore_index=True)))]


def _weekly(frame: pd.DataFrame) -> Files:
    first = pd.Timestamp(frame["date"].min())
    one_day = frame[frame["date"] == frame["date"].min()]
    weeks = [one_day.assign(date=(first + pd.Timedelta(weeks=k)).date().isoformat(), sales=one_day["sales"] * 7) for k in range(3)]
    return [(NAME, _csv(pd.concat(weeks, ignore_index=True)))]


def _gap(frame: pd.DataFrame) -> Files:
    middle = sorted(frame["date"].unique())[1]
    first_series = (frame["item_id"] == frame["item_id"].iloc[0]) & (frame["store_id"] == frame["store_id"].iloc[0])
    return [(NAME, _csv(frame[~(first_series & (frame["date"] == middle))]))]


def _missing_store(frame: pd.DataFrame) -> Files:
    last = frame["date"].max()
    store = sorted(frame["store_id"].unique())[0]
    return [(NAME, _csv(frame[~((frame["date"] == last) & (frame["store_id"] == store))]))]


def _wide_beyond_calendar(frame: pd.DataFrame) -> Files:
    wide = frame[frame["date"] == frame["date"].min()].drop(columns=["date", "sales"]).assign(d_9999=1)
    return [(NAME, _csv(wide))]




def _zero_series(source: Path) -> str:
    return _set_series(source, lambda days: np.zeros(len(days), dtype=int))


def _one_sale(source: Path) -> str:
    def one(days):
        values = np.zeros(len(days), dtype=int)
        values[len(days) // 2] = 1
        return values

    return _set_series(source, one)


def _set_series(source: Path, values: Callable[[list[str]], np.ndarray]) -> str:
    wide = pd.read_csv(source / "sales.csv")
    days = [c for c in wide.columns if c.startswith("d_")]
    wide.loc[0, days] = values(days)
    wide.to_csv(source / "sales.csv", index=False)
    return f"{wide.loc[0, 'item_id']}/{wide.loc[0, 'store_id']}"


CASES: list[Case] = [
    Case("empty", "Empty file", "0 bytes", REFUSED, "is empty", landing=lambda f: [(NAME, b"")]),
    Case("header_only", "Header only", "the header line and no row", REFUSED, "no data rows",
         landing=lambda f: [(NAME, _csv(f.iloc[:0]))]),
    Case("wrong_delimiter", "Wrong delimiter", "`;` instead of `,`", REFUSED, "';'",
         landing=lambda f: [(NAME, _csv(f, sep=";"))]),
    Case("non_utf8", "Non-UTF-8 bytes", "a Latin-1 `é` in a store name on line 5", REFUSED, "not valid UTF-8",
         landing=lambda f: [(NAME, _csv(f).replace(b"CA_1", "CA_\xe9".encode("latin-1"), 4))]),
    Case("truncated", "Truncated last line", "the write stopped 12 bytes before the end", QUARANTINED, "is missing",
         landing=_truncated),
    Case("missing_column", "Missing required column", "no `sales` column", REFUSED, "column 'sales'",
         landing=lambda f: [(NAME, _csv(f.drop(columns=["sales"])))]),
    Case("extra_columns", "Extra unknown columns", "`promo_flag` and `comment` columns", ACCEPTED, "ignored columns: promo_flag, comment",
         landing=lambda f: [(NAME, _csv(f.assign(promo_flag=0, comment="x")))]),
    Case("text_in_sales", "Text in sales", "`sales` = `abc` on one row", QUARANTINED, "y 'abc' is not a number",
         landing=lambda f: [(NAME, _csv(_with(f, 3, sales="abc")))]),
    Case("unparsable_date", "Unparsable date", "`date` = `2012-13-45` on one row", QUARANTINED, "is not a date",
         landing=lambda f: [(NAME, _csv(_with(f, 3, date="2012-13-45")))]),
    Case("negative_sales", "Negative sales", "`sales` = `-3` on one row", QUARANTINED, "is negative",
         landing=lambda f: [(NAME, _csv(_with(f, 3, sales=-3)))]),
    Case("fractional_sales", "Fractional sales", "`sales` = `2.5` on one row", ACCEPTED, "",
         landing=lambda f: [(NAME, _csv(_with(f, 3, sales=2.5)))]),
    Case("nan_sales", "NaN sales", "`sales` = `NaN` on one row", QUARANTINED, "y is missing",
         landing=lambda f: [(NAME, _csv(_with(f, 3, sales="NaN")))]),
    Case("duplicate_within", "Duplicate keys within a file", "one item × store × day twice, different sales", QUARANTINED,
         "duplicate of", landing=lambda f: [(NAME, _csv(pd.concat([f, f.iloc[[3]].assign(sales=99)], ignore_index=True)))]),
    Case("duplicate_across", "Duplicate keys across files", "a second file corrects the first file's first day", QUARANTINED,
         "duplicate of", landing=_across_files),
    Case("before_calendar", "Date before the calendar", "one row dated 2010-05-01 (the calendar starts 2011-01-29)",
         QUARANTINED, "before the calendar's first day", landing=lambda f: [(NAME, _csv(_with(f, 3, date="2010-05-01")))]),
    Case("after_calendar", "Dates after the calendar", "31 new days; the calendar knows 28 days past the source", ACCEPTED,
         "after the calendar", landing=lambda f: [(NAME, _csv(f))], days=31),
    Case("wide_beyond_calendar", "M5 day column outside the calendar", "a wide fragment with column `d_9999`", REFUSED,
         "has no date for 1 day column", landing=_wide_beyond_calendar),
    Case("future", "Date in the future", "one row dated 2031-01-01", QUARANTINED, "is in the future",
         landing=lambda f: [(NAME, _csv(_with(f, 3, date="2031-01-01")))]),
    Case("gap", "Gap in a series", "one series misses the middle day of three", ACCEPTED, "count as 0 sales", landing=_gap),
    Case("missing_store", "A store missing on the latest day", "every row of one store absent on the last day", ACCEPTED,
         "latest_day_is_complete fails", landing=_missing_store),
    Case("unknown_ids", "Unknown store, department and item ids", "store `CA_9`, dept `FOODS_9`, item `FOODS_1_999`",
         QUARANTINED, "is not in the source files",
         landing=lambda f: [(NAME, _csv(_with(_with(_with(f, 0, store_id="CA_9"), 1, dept_id="FOODS_9"), 2, item_id="FOODS_1_999")))]),
    Case("item_moves", "Item moving between departments", "an item listed under another department", QUARANTINED,
         "is in dept_id 'FOODS_1'",
         landing=lambda f: [(NAME, _csv(_with(f, 0, dept_id="HOUSEHOLD_1")))]),
    Case("other_frequency", "A file of another frequency", "weekly totals (3 Saturdays) into a daily source", REFUSED,
         "follow frequency W-", landing=_weekly),
    Case("five_times", "A 5× larger file than usual", "6× the rows per day of the earlier files (a repeated export)",
         QUARANTINED, "unusually large", landing=_five_times),
    Case("zero_series", "A series that is all zeros", "one item × store sells nothing on any day", ACCEPTED, "forecast 0",
         source=_zero_series),
    Case("one_sale", "A series with one sale", "one item × store sells once in its whole history", ACCEPTED, "finite, >= 0",
         source=_one_sale),
]


def _base(root: Path) -> Path:
    """The tiny demo source folder, generated once per root."""
    from forecasting_assets.demo_data import write_demo

    base = root / "base_source"
    if not (base / "sales.csv").exists():
        write_demo(base, shape="tiny", seed=7)
    return base


def _short(text: str, folders: dict[Path, str], width: int = 260) -> str:
    for folder, label in folders.items():
        text = text.replace(str(folder), label)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def observe(case: Case, root: Path) -> Observation:
    """Run one case through the pipeline's own ingest functions in a fresh copy of the tiny demo."""
    from forecasting_assets.demo_data import next_days_frame
    from forecasting_assets.hierarchy.aggregation import build_hierarchy
    from forecasting_assets.ingest.assets import latest_day_coverage, newest_first
    from forecasting_assets.ingest.landing import ARCHIVE, read_landing_file, read_manifest, scan_landing, source_spec_for_landing
    from forecasting_assets.ingest.sources import concat_raw_sales, read_calendar, read_raw_sales
    from forecasting_assets.ingest.validation import days_after_calendar, fractional_sales_rows, validate_sales

    folder = root / case.key
    shutil.rmtree(folder, ignore_errors=True)
    source, landing = folder / "source", folder / "landing"
    shutil.copytree(_base(root), source)
    labels = {landing: "landing", source: "source"}
    touched = case.source(source) if case.source else None
    spec = source_spec_for_landing(source)
    last_scan = None
    if case.landing:
        landing.mkdir(parents=True)
        for name, content in case.landing(next_days_frame(source, landing, case.days, seed=1)):
            (landing / name).write_bytes(content)
            last_scan = scan_landing(landing, spec, settle_seconds=0)
        if last_scan.rejected:
            return Observation(REFUSED, "rejected/ + reason file: " + _short(last_scan.rejected[-1][1], labels))
    manifest = read_manifest(landing)
    landed = {b.key: read_landing_file(landing / ARCHIVE, b.archived_name, spec) for b in manifest}
    base_rows = read_raw_sales(source, spec)
    raw = concat_raw_sales([*newest_first(landed, [b.key for b in manifest]), base_rows])
    calendar = read_calendar(source, spec)
    valid, quarantine = validate_sales(raw, spec, today=TODAY, calendar=calendar)
    facts = []
    notes = manifest[-1].notes if manifest else ""
    if notes:
        facts.append(f"landing note: {notes}")
    after = days_after_calendar(valid, calendar)
    if after:
        facts.append(f"{after} day(s) after the calendar: kept, their event/SNAP features read as 0 (validated_sales metadata `days_after_calendar`, a warning in the run log)")
    hierarchy = build_hierarchy(valid, spec.levels, spec.frequency)
    if hierarchy.filled_gaps:
        facts.append(f"{hierarchy.filled_gaps} item × store day(s) without a valid row count as 0 sales in the aggregates (`filled_gaps` in the hierarchical_series metadata)")
    fractional = fractional_sales_rows(valid)
    if fractional:
        facts.append(f"{fractional} fractional value(s) kept as sold quantities (units may be weights; validated_sales metadata `fractional_sales_rows`)")
    coverage, _ = latest_day_coverage(valid, spec.hierarchy_columns)
    if coverage < 0.8:
        facts.append(f"latest_day_is_complete fails (blocking): {coverage:.0%} of the usual series on the latest day, so nothing downstream runs on it")
    if touched:
        facts.append(_forecast_fact(hierarchy.series, touched, spec))
    if len(quarantine):
        reasons = quarantine["reason"].drop_duplicates().tolist()
        shown = " / ".join(_short(r, labels, 170) for r in reasons[:2]) + (f" / … ({len(reasons)} distinct)" if len(reasons) > 2 else "")
        message = f"{len(quarantine)} of {len(raw)} rows to sales_quarantine: {shown}"
        return Observation(QUARANTINED, message, len(raw), len(quarantine), facts)
    return Observation(ACCEPTED, "no row quarantined", len(raw), 0, facts)


def _forecast_fact(series: pd.DataFrame, touched: str, spec) -> str:
    from forecasting_assets.models.statistical import STAT_MODELS, forecast_statistical

    item, store = touched.split("/")
    bottom = series[series["unique_id"].str.contains(item) & series["unique_id"].str.contains(store)]
    bottom = bottom[bottom["unique_id"] == bottom["unique_id"].iloc[0]]
    forecasts = forecast_statistical(bottom, horizon=28, freq=spec.frequency, season_length=spec.season_length)
    if isinstance(forecasts, tuple):
        forecasts = forecasts[0]
    values = forecasts[STAT_MODELS].to_numpy()
    ok = np.isfinite(values).all() and (values >= 0).all()
    means = ", ".join(f"{m} {forecasts[m].mean():.3f}" for m in STAT_MODELS)
    zero = " (forecast 0)" if ok and np.allclose(values, 0) else ""
    return f"statistical forecasts {'finite, >= 0' if ok else 'NOT finite/non-negative'}{zero}: mean per day {means}"


def observe_all(root: Path) -> dict[str, Observation]:
    return {case.key: observe(case, root) for case in CASES}


def render(observations: dict[str, Observation]) -> str:
    """The docs page: one row per case, from the observations."""
    lines = [
        "# Bad input: what the pipeline does with it",
        "",
        "Generated by `python -m forecasting_assets_tests.bad_inputs` (`make docs`) from the cases that",
        "`forecasting_assets_tests/test_bad_input.py` checks; do not edit by hand. Each case starts from the tiny",
        "demo project and drops one file into the landing folder (the nightly path: `landing_folder_sensor` →",
        "`landed_sales` → `raw_sales` → `validated_sales`), or changes the source folder itself (the last two).",
        "",
        "Nothing is dropped silently: a file that cannot be read as a whole is moved to `data/landing/rejected/`",
        "with `<name>.reason.txt` beside it (and an alert), and a row that fails a check goes to the",
        "`sales_quarantine` table with the check and the reason (`SELECT * FROM sales_quarantine` in DuckDB);",
        "`len(validated_sales) + len(sales_quarantine) == len(raw_sales)` always holds. The same reader serves",
        "the source folder: there an unreadable file fails the `raw_sales` run with the same message and every",
        "stored output stays as it was. Validation here uses today = " + TODAY.date().isoformat() + ".",
        "",
        "| Case | Input | What the pipeline did | What the user is told |",
        "|---|---|---|---|",
    ]
    for case in CASES:
        found = observations[case.key]
        told = "; ".join([found.message, *found.facts]).replace("|", "\\|")
        lines.append(f"| {case.title} | {case.what} | **{found.outcome}** | {told} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    import os

    home = Path(os.environ.get("FORECASTING_ASSETS_HOME", Path(__file__).resolve().parents[1]))
    scratch = home / "data" / ".tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch) as root:
        sys.stdout.write(render(observe_all(Path(root))))


if __name__ == "__main__":
    main()
